//! The one entry every daemon binary runs through after its configuration is loaded: build the
//! async runtime, turn SIGTERM / SIGINT into a [`Shutdown`], run the daemon, log its error and
//! map it to the process exit code through [`ExitStatus`], then give abandoned work a short
//! grace before the process exits.
//!
//! A long-running daemon's `run` returns once shutdown was requested and its work drained; a
//! one-shot job's `run` returns when its work is done (it may still stop early on a signal).
//! Either way `Ok(())` exits 0 and an error exits with its [`ExitStatus::exit_code`].

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use singularity_common::exit::{self, ExitStatus};

use crate::shutdown::Shutdown;

/// How long tasks still running after `run` returned (requests past their grace, blocking
/// reads cut off) may hold the process up before it exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Runs `run` on a new multi-thread tokio runtime with a [`Shutdown`] triggered by SIGTERM or
/// SIGINT, and returns the process exit code: [`exit::OK`] when `run` succeeds, the error's
/// [`ExitStatus::exit_code`] (logged with its causes) when it fails, [`exit::FAILURE`] when
/// the runtime or the signal handlers cannot be set up. Tasks still running after `run`
/// returned get [`SHUTDOWN_GRACE`].
pub fn run_daemon<F, Fut, E>(run: F) -> ExitCode
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: ExitStatus,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let code = runtime.block_on(async move {
        let shutdown = match Shutdown::on_signals() {
            Ok(shutdown) => shutdown,
            Err(error) => {
                tracing::error!("{}", error_chain(&error));
                return exit::FAILURE;
            }
        };
        match run(shutdown).await {
            Ok(()) => exit::OK,
            Err(error) => {
                tracing::error!("{}", error_chain(&error));
                error.exit_code()
            }
        }
    });
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    ExitCode::from(code)
}

/// Logs a configuration the daemon cannot use (found after loading, by the daemon's own
/// settings) and returns the exit code its error names (78 for a configuration error).
pub fn invalid_config(error: &dyn ExitStatus) -> ExitCode {
    tracing::error!(error = %error_chain(error), "the configuration is invalid");
    ExitCode::from(error.exit_code())
}

/// The error and its sources, `: `-separated, skipping sources whose text the previous level
/// already contains (thiserror messages often embed their source).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    use std::fmt::Write as _;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Failed {
        #[error("bad config")]
        Config,
        #[error("open {path}: {source}")]
        Open {
            path: &'static str,
            source: std::io::Error,
        },
        #[error("wrapped")]
        Wrapped(#[source] std::io::Error),
    }

    impl ExitStatus for Failed {
        fn exit_code(&self) -> u8 {
            match self {
                Self::Config => exit::CONFIG,
                _ => exit::FAILURE,
            }
        }
    }

    #[test]
    fn exit_codes_come_from_the_error() {
        assert_eq!(
            run_daemon(|_| async { Ok::<(), Failed>(()) }),
            ExitCode::from(exit::OK)
        );
        assert_eq!(
            run_daemon(|_| async { Err(Failed::Config) }),
            ExitCode::from(exit::CONFIG)
        );
        assert_eq!(
            run_daemon(|_| async { Err(Failed::Wrapped(std::io::Error::other("disk gone"))) }),
            ExitCode::from(exit::FAILURE)
        );
    }

    #[test]
    fn the_run_gets_a_live_shutdown() {
        let code = run_daemon(|shutdown| async move {
            assert!(!shutdown.is_triggered());
            shutdown.trigger();
            shutdown.wait().await;
            Ok::<(), Failed>(())
        });
        assert_eq!(code, ExitCode::from(exit::OK));
    }

    #[test]
    fn chains_skip_sources_already_in_the_message() {
        let open = Failed::Open {
            path: "/x",
            source: std::io::Error::other("denied"),
        };
        assert_eq!(error_chain(&open), "open /x: denied");
        let wrapped = Failed::Wrapped(std::io::Error::other("disk gone"));
        assert_eq!(error_chain(&wrapped), "wrapped: disk gone");
    }
}
