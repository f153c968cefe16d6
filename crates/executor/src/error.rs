//! The executor's top-level error: what ends the process, and with which exit code.

use singularity_common::exit::{self, ExitStatus};

use crate::agent::AgentError;
use crate::run::select::BackendSetupError;
use crate::settings::MissingClass;
use crate::standalone::StandaloneError;

/// Why the executor process ends other than cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The configuration lacks the executor's classes.
    #[error("the configuration is invalid: {0}")]
    Config(#[from] MissingClass),
    /// The task backends could not be built.
    #[error(transparent)]
    Backends(#[from] BackendSetupError),
    /// The async runtime could not be started.
    #[error("cannot start the async runtime: {0}")]
    AsyncRuntime(#[source] std::io::Error),
    /// Serving the Mesos agent ended in a failure.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The standalone task did not finish.
    #[error(transparent)]
    Standalone(#[from] StandaloneError),
}

impl ExitStatus for ExecutorError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => exit::CONFIG,
            Self::Backends(_) | Self::AsyncRuntime(_) => exit::FAILURE,
            Self::Agent(error) => error.exit_code(),
            Self::Standalone(error) => error.exit_code(),
        }
    }
}

impl ExitStatus for BackendSetupError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_names_its_exit_code() {
        assert_eq!(
            ExecutorError::from(MissingClass::new("executor")).exit_code(),
            exit::CONFIG
        );
        assert_eq!(
            ExecutorError::from(AgentError::StatusUpdateRefused).exit_code(),
            exit::EXECUTOR_STATUS_UPDATE
        );
        assert_eq!(
            ExecutorError::from(AgentError::Unacknowledged { count: 2 }).exit_code(),
            exit::FAILURE
        );
        assert_eq!(
            ExecutorError::AsyncRuntime(std::io::Error::other("x")).exit_code(),
            exit::FAILURE
        );
    }
}
