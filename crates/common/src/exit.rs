//! Process exit codes, in one place.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | runtime failure |
//! | 2 | executor: failure inside the idle-exit check (Singularity's code) |
//! | 3 | executor: failure while finishing a task (Singularity's code) |
//! | 4 | executor: a status update could not be sent to the agent (Singularity's code) |
//! | 78 | invalid configuration (`EX_CONFIG` from sysexits.h) |

/// Everything went well.
pub const OK: u8 = 0;
/// A runtime failure: the daemon could not do its work.
pub const FAILURE: u8 = 1;
/// Executor: an error inside the idle-exit check.
pub const EXECUTOR_EXIT_CHECK: u8 = 2;
/// Executor: an error while finishing a task.
pub const EXECUTOR_FINISH_TASK: u8 = 3;
/// Executor: a status update could not be delivered to the agent.
pub const EXECUTOR_STATUS_UPDATE: u8 = 4;
/// The configuration is invalid (`EX_CONFIG`).
pub const CONFIG: u8 = 78;

/// An error that knows the code its process ends with. Every daemon's top-level error
/// implements it, so a binary maps a failure to its exit code in one call instead of
/// inspecting the error's type.
pub trait ExitStatus: std::error::Error {
    /// The process exit code for this error; [`FAILURE`] unless the error says otherwise.
    fn exit_code(&self) -> u8 {
        FAILURE
    }
}
