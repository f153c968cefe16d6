//! systemd readiness notifications (`Type=notify` units).

use sd_notify::NotifyState;

/// Sending a notification to `NOTIFY_SOCKET` failed.
#[derive(Debug, thiserror::Error)]
#[error("notify systemd ({state}): {source}")]
pub struct NotifyError {
    /// What was being sent, e.g. `READY=1`.
    pub state: String,
    /// Why it failed.
    pub source: std::io::Error,
}

fn send(state: NotifyState<'_>) -> Result<(), NotifyError> {
    // The variable is left set: the daemon sends more than one notification, and it is
    // process-global state that cannot be changed safely once threads run.
    sd_notify::notify(false, std::slice::from_ref(&state)).map_err(|source| NotifyError {
        state: state.to_string().trim_end().to_owned(),
        source,
    })
}

/// Tells systemd start-up is complete (`READY=1`). A no-op without `NOTIFY_SOCKET`.
pub fn notify_ready() -> Result<(), NotifyError> {
    send(NotifyState::Ready)
}

/// Tells systemd the service is stopping (`STOPPING=1`). A no-op without `NOTIFY_SOCKET`.
pub fn notify_stopping() -> Result<(), NotifyError> {
    send(NotifyState::Stopping)
}

/// Sets the status line `systemctl status` shows (`STATUS=...`). A no-op without
/// `NOTIFY_SOCKET`.
pub fn notify_status(status: &str) -> Result<(), NotifyError> {
    // A newline would end the datagram's field early.
    let status = status.replace('\n', " ");
    send(NotifyState::Status(&status))
}
