//! The body of the downloader's POST.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::artifacts::S3Artifact;

/// Asks the downloader to fetch `s3_artifact` into `target_directory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactDownloadRequest {
    /// Absolute path of the task directory (or the artifact's folder in it).
    pub target_directory: PathBuf,
    /// What to fetch.
    pub s3_artifact: S3Artifact,
    /// How long the caller waits, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_millis: Option<u64>,
}
