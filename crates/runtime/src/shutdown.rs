//! Shutdown as a value: triggered by SIGTERM / SIGINT or by code (tests), awaited by every
//! part of a daemon that must stop taking work.

use std::future::{Future, IntoFuture};

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Which signal asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownSignal {
    /// SIGTERM (systemd stop, `docker stop`, `kill`).
    Terminate,
    /// SIGINT (Ctrl-C).
    Interrupt,
}

impl std::fmt::Display for ShutdownSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Terminate => "SIGTERM",
            Self::Interrupt => "SIGINT",
        })
    }
}

/// Installing a signal handler failed.
#[derive(Debug, thiserror::Error)]
#[error("install a {signal} handler: {source}")]
pub struct SignalError {
    /// The signal.
    pub signal: ShutdownSignal,
    /// Why it failed.
    pub source: std::io::Error,
}

/// Installs SIGTERM and SIGINT handlers now and returns a future resolving with the first of
/// them to arrive. From this call on, those signals no longer kill the process.
///
/// Must be called inside a tokio runtime.
pub fn shutdown_signal() -> Result<impl Future<Output = ShutdownSignal> + Send, SignalError> {
    let mut term = signal(SignalKind::terminate()).map_err(|source| SignalError {
        signal: ShutdownSignal::Terminate,
        source,
    })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| SignalError {
        signal: ShutdownSignal::Interrupt,
        source,
    })?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => ShutdownSignal::Terminate,
            _ = int.recv() => ShutdownSignal::Interrupt,
        }
    })
}

/// A shutdown request shared by every part of a daemon. Clones share one state: triggering
/// any of them wakes all waiters, now and later.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let shutdown = singularity_runtime::Shutdown::new();
/// let worker = tokio::spawn(shutdown.clone().into_future());
/// shutdown.trigger();
/// worker.await.unwrap();
/// assert!(shutdown.is_triggered());
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A shutdown that only code triggers.
    pub fn new() -> Self {
        Self::default()
    }

    /// A shutdown triggered by SIGTERM or SIGINT (and by code). Installs the handlers now and
    /// spawns a task waiting for them; must be called inside a tokio runtime.
    pub fn on_signals() -> Result<Self, SignalError> {
        let signal = shutdown_signal()?;
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                sig = signal => {
                    tracing::info!(signal = %sig, "shutting down");
                    trigger.trigger();
                }
                () = trigger.wait() => {}
            }
        });
        Ok(shutdown)
    }

    /// Requests shutdown. Idempotent.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether shutdown was requested.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown is requested (at once if it already was).
    pub async fn wait(&self) {
        self.token.cancelled().await;
    }

    /// The underlying token, for APIs that take one.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

impl IntoFuture for Shutdown {
    type Output = ();
    type IntoFuture = WaitForCancellationFutureOwned;

    fn into_future(self) -> Self::IntoFuture {
        self.token.cancelled_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn trigger_wakes_every_clone() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_triggered());
        let waiters: Vec<_> = (0..3)
            .map(|_| tokio::spawn(shutdown.clone().into_future()))
            .collect();
        let by_ref = shutdown.clone();
        let by_ref = tokio::spawn(async move { by_ref.wait().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!by_ref.is_finished());

        shutdown.clone().trigger();
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .unwrap()
                .unwrap();
        }
        by_ref.await.unwrap();
        assert!(shutdown.is_triggered());
        // Waiting after the fact returns at once; triggering again is harmless.
        shutdown.trigger();
        tokio::time::timeout(Duration::from_millis(100), shutdown.wait())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn signal_shutdown_also_triggers_by_code() {
        let shutdown = Shutdown::on_signals().unwrap();
        assert!(!shutdown.is_triggered());
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(1), shutdown.wait())
            .await
            .unwrap();
    }

    #[test]
    fn signal_names() {
        assert_eq!(ShutdownSignal::Terminate.to_string(), "SIGTERM");
        assert_eq!(ShutdownSignal::Interrupt.to_string(), "SIGINT");
    }
}
