//! `*.tail.json`: tells an external log watcher to follow a task's service log.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::null_as_default;

/// Tail metadata, written only when the executor data has a `loggingTag`: `finished: false` at
/// task setup, `finished: true` at teardown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TailMetadata {
    /// Absolute path of the service log.
    pub filename: PathBuf,
    /// The executor data's `loggingTag`.
    pub tag: String,
    /// The executor data's `loggingExtraFields`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub extra_fields: BTreeMap<String, String>,
    /// Whether the task has finished.
    #[serde(default, deserialize_with = "null_as_default")]
    pub finished: bool,
}
