//! A task's logs, from the bytes its processes write to compressed files the S3 uploader takes.
//!
//! The executor is the only writer of a task's `service.log`; this crate rotates it in-process
//! (rename-based, at a line boundary, never copy-and-truncate), compresses the finished segments
//! under names Singularity's upload glob (`service.log*.[gb]z*`) matches, keeps disk use bounded,
//! and finishes a task's logs at teardown. The cleanup job uses the same code to recover the logs
//! of a task whose executor died.
//!
//! ```text
//! <taskDir>/service.log                                  live: the writer appends here
//! <taskDir>/.service.log.new                             fresh file, renamed over service.log
//! <taskDir>/<logrotateToDirectory>/service.log-<date>.log         rotated segment
//! <taskDir>/<logrotateToDirectory>/.service.log-<date>.log.compressing   being compressed
//! <taskDir>/<logrotateToDirectory>/service.log-<date>.log.gz      what the uploader takes
//! <taskDir>/tail_of_finished_service.log                 last lines, written at teardown
//! ```
//!
//! - [`LogSettings`]: the pipeline of one task, from the executor configuration and the
//!   task's executor data.
//! - [`ServiceLog`]: the writer the executor's output pumps feed; size and clock-aligned time
//!   triggers, compression on a background thread, retention. It never blocks or fails the
//!   task: write errors are counted and reported by one marker line once writing works again.
//! - [`finish`]: teardown — final rotation, the tail file, an empty `service.log` removed.
//! - [`recover()`]: for the cleanup job; idempotent.
//! - [`compress::compress_segment`]: the segment sink other modules (additional files) use.
//! - [`additional`]: files the task writes itself (`logrotateAdditionalFiles`), rotated without
//!   losing what the task appends meanwhile.

pub mod additional;
pub mod compress;
pub mod names;
pub mod recover;
pub mod retention;
pub mod settings;
pub mod tail;
pub mod teardown;
pub mod writer;

use std::io;
use std::path::PathBuf;

pub use recover::{RecoveryReport, recover};
pub use settings::{Compression, CompressionKind, LogSettings, Retention};
pub use teardown::{FinishReport, finish};
pub use writer::{ServiceLog, WriterStats};

/// xattr holding the epoch milliseconds of a log's first line (read by the uploader).
pub const LOG_START_XATTR: &str = "user.logstart";
/// xattr holding the epoch milliseconds of a rotation (read by the uploader).
pub const LOG_END_XATTR: &str = "user.logend";

/// What went wrong with a task's logs.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A setting the pipeline cannot honour.
    #[error("{field} = {value}: {reason}")]
    Setting {
        /// The configuration key.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`compress`, `rename`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl LogError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
