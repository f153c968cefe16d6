//! Deploy artifacts: files the executor (or the downloader) puts into the task directory.

use serde::{Deserialize, Serialize};

use super::{base64_bytes, null_as_default};
use crate::naming;

/// The fields every artifact kind has.
pub trait Artifact {
    /// The artifact's name (informational).
    fn name(&self) -> &str;
    /// The file name it is stored under, in the cache and in the target directory.
    fn filename(&self) -> &str;
    /// Expected MD5 of the content, lowercase or uppercase hex.
    fn md5sum(&self) -> Option<&str>;
    /// A directory relative to the task directory to place the artifact in.
    fn target_folder_relative_to_task(&self) -> Option<&str>;
}

/// An artifact fetched from elsewhere (S3 or a URL) through the artifact cache.
pub trait RemoteArtifact: Artifact {
    /// Expected size in bytes.
    fn filesize(&self) -> Option<i64>;
    /// Whether the content is an [`ArtifactList`] to expand (one level only).
    fn is_artifact_list(&self) -> bool;

    /// The file name in the artifact cache: `<md5>-<filename>`, or `<filename>` without md5.
    fn cache_name(&self) -> String {
        naming::artifact_cache_name(self.md5sum(), self.filename())
    }
}

macro_rules! impl_artifact {
    ($($ty:ty),*) => {$(
        impl Artifact for $ty {
            fn name(&self) -> &str {
                &self.name
            }
            fn filename(&self) -> &str {
                &self.filename
            }
            fn md5sum(&self) -> Option<&str> {
                self.md5sum.as_deref()
            }
            fn target_folder_relative_to_task(&self) -> Option<&str> {
                self.target_folder_relative_to_task.as_deref()
            }
        }
    )*};
}

macro_rules! impl_remote_artifact {
    ($($ty:ty),*) => {$(
        impl RemoteArtifact for $ty {
            fn filesize(&self) -> Option<i64> {
                self.filesize
            }
            fn is_artifact_list(&self) -> bool {
                self.is_artifact_list.unwrap_or(false)
            }
        }
    )*};
}

impl_artifact!(
    EmbeddedArtifact,
    ExternalArtifact,
    S3Artifact,
    S3ArtifactSignature
);
impl_remote_artifact!(ExternalArtifact, S3Artifact, S3ArtifactSignature);

/// An artifact whose content travels inside the executor data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedArtifact {
    /// See [`Artifact::name`].
    #[serde(default)]
    pub name: String,
    /// See [`Artifact::filename`].
    pub filename: String,
    /// See [`Artifact::md5sum`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5sum: Option<String>,
    /// See [`Artifact::target_folder_relative_to_task`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_folder_relative_to_task: Option<String>,
    /// The file's bytes (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub content: Vec<u8>,
}

/// An artifact downloaded from a URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalArtifact {
    /// See [`Artifact::name`].
    #[serde(default)]
    pub name: String,
    /// See [`Artifact::filename`].
    pub filename: String,
    /// See [`Artifact::md5sum`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5sum: Option<String>,
    /// See [`Artifact::target_folder_relative_to_task`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_folder_relative_to_task: Option<String>,
    /// See [`RemoteArtifact::filesize`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesize: Option<i64>,
    /// See [`RemoteArtifact::is_artifact_list`]; kept as read so it round-trips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_artifact_list: Option<bool>,
    /// Where to download it from.
    pub url: String,
}

/// An artifact downloaded from S3.
///
/// Equality compares every field, the object key included (Singularity's Java `equals` skips
/// the key by mistake).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Artifact {
    /// See [`Artifact::name`].
    #[serde(default)]
    pub name: String,
    /// See [`Artifact::filename`].
    pub filename: String,
    /// See [`Artifact::md5sum`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5sum: Option<String>,
    /// See [`Artifact::target_folder_relative_to_task`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_folder_relative_to_task: Option<String>,
    /// See [`RemoteArtifact::filesize`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesize: Option<i64>,
    /// See [`RemoteArtifact::is_artifact_list`]; kept as read so it round-trips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_artifact_list: Option<bool>,
    /// The bucket.
    pub s3_bucket: String,
    /// The object key.
    pub s3_object_key: String,
}

/// A detached signature stored in S3, verifying the S3 artifact whose `filename` is
/// `artifact_filename`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3ArtifactSignature {
    /// See [`Artifact::name`].
    #[serde(default)]
    pub name: String,
    /// See [`Artifact::filename`].
    pub filename: String,
    /// See [`Artifact::md5sum`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5sum: Option<String>,
    /// See [`Artifact::target_folder_relative_to_task`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_folder_relative_to_task: Option<String>,
    /// See [`RemoteArtifact::filesize`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesize: Option<i64>,
    /// See [`RemoteArtifact::is_artifact_list`]; kept as read so it round-trips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_artifact_list: Option<bool>,
    /// The bucket.
    pub s3_bucket: String,
    /// The object key.
    pub s3_object_key: String,
    /// The `filename` of the S3 artifact this signature belongs to.
    pub artifact_filename: String,
}

impl S3ArtifactSignature {
    /// The signature file itself as a plain S3 artifact, for downloading it.
    pub fn to_s3_artifact(&self) -> S3Artifact {
        S3Artifact {
            name: self.name.clone(),
            filename: self.filename.clone(),
            md5sum: self.md5sum.clone(),
            target_folder_relative_to_task: self.target_folder_relative_to_task.clone(),
            filesize: self.filesize,
            is_artifact_list: self.is_artifact_list,
            s3_bucket: self.s3_bucket.clone(),
            s3_object_key: self.s3_object_key.clone(),
        }
    }
}

/// The content of a remote artifact with `isArtifactList: true`. A `null` list reads as empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactList {
    /// Embedded artifacts.
    #[serde(default, deserialize_with = "null_as_default")]
    pub embedded_artifacts: Vec<EmbeddedArtifact>,
    /// URL artifacts.
    #[serde(default, deserialize_with = "null_as_default")]
    pub external_artifacts: Vec<ExternalArtifact>,
    /// S3 artifacts.
    #[serde(default, deserialize_with = "null_as_default")]
    pub s3_artifacts: Vec<S3Artifact>,
    /// Signatures of S3 artifacts.
    #[serde(default, deserialize_with = "null_as_default")]
    pub s3_artifact_signatures: Vec<S3ArtifactSignature>,
}
