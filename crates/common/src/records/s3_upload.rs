//! `*.s3.json`: what the uploader should upload from one directory.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{default_true, null_as_default, null_as_true};

/// Which object store an upload goes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UploaderType {
    /// Amazon S3 (or an S3-protocol store).
    #[default]
    S3,
    /// Google Cloud Storage.
    #[serde(rename = "GCS")]
    Gcs,
}

/// Upload metadata: files matching `file_glob` in `directory` go to `s3_bucket` under keys made
/// from `s3_key_format`. Its identity is `(directory, fileGlob)`; see [`Self::identity`].
///
/// Reads `storageClass` or `s3StorageClass` (the latter wins when both are present) and writes
/// `s3StorageClass`. `gcsCredentials` is always written, `{}` when empty.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "S3UploadMetadataWire")]
pub struct S3UploadMetadata {
    /// Directory to scan.
    pub directory: PathBuf,
    /// Glob matched against each file's basename.
    pub file_glob: String,
    /// Target bucket (S3 or GCS).
    pub s3_bucket: String,
    /// Key template, task-level tokens already expanded.
    pub s3_key_format: String,
    /// Upload what is left, then delete this metadata file and stop.
    pub finished: bool,
    /// Extra glob uploaded only once finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_finish_glob: Option<String>,
    /// When this process is gone, the metadata counts as finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Per-metadata access key; used only together with the secret key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_access_key: Option<String>,
    /// Per-metadata secret key; used only together with the access key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_secret_key: Option<String>,
    /// Expire after this long without new files; negative means never. The uploader's
    /// `stopCheckingAfterMillisWithoutNewFile` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_after_millis_without_new_file: Option<i64>,
    /// S3 storage class.
    #[serde(rename = "s3StorageClass", skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Apply the storage class only to files larger than this; always when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apply_storage_class_if_over_bytes: Option<i64>,
    /// Upload now, skip the open-file check, retry until nothing matches.
    pub upload_immediately: bool,
    /// Recurse into subdirectories.
    pub check_subdirectories: bool,
    /// Gzip matching files (not already `.gz`) before upload.
    pub compress_before_upload: bool,
    /// Skip files still open by some process.
    pub check_if_open: bool,
    /// S3 or GCS.
    pub uploader_type: UploaderType,
    /// GCS service-account JSON; empty means application default credentials.
    pub gcs_credentials: serde_json::Map<String, serde_json::Value>,
    /// GCS storage class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcs_storage_class: Option<String>,
    /// S3: SSE-KMS key id. GCS: customer-supplied key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<String>,
    /// S3 SSE with AES256.
    pub use_s3_server_side_encryption: bool,
}

impl S3UploadMetadata {
    /// Metadata with the required fields set and every other field at its default.
    pub fn new(
        directory: impl Into<PathBuf>,
        file_glob: impl Into<String>,
        s3_bucket: impl Into<String>,
        s3_key_format: impl Into<String>,
    ) -> Self {
        S3UploadMetadata {
            directory: directory.into(),
            file_glob: file_glob.into(),
            s3_bucket: s3_bucket.into(),
            s3_key_format: s3_key_format.into(),
            finished: false,
            on_finish_glob: None,
            pid: None,
            s3_access_key: None,
            s3_secret_key: None,
            finished_after_millis_without_new_file: None,
            storage_class: None,
            apply_storage_class_if_over_bytes: None,
            upload_immediately: false,
            check_subdirectories: false,
            compress_before_upload: false,
            check_if_open: true,
            uploader_type: UploaderType::S3,
            gcs_credentials: serde_json::Map::new(),
            gcs_storage_class: None,
            encryption_key: None,
            use_s3_server_side_encryption: false,
        }
    }

    /// What makes two metadata files describe the same uploader.
    pub fn identity(&self) -> (&Path, &str) {
        (&self.directory, &self.file_glob)
    }
}

/// Secrets (the S3 secret key and the GCS credentials) are redacted.
impl fmt::Debug for S3UploadMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |present: bool| if present { Some("<redacted>") } else { None };
        f.debug_struct("S3UploadMetadata")
            .field("directory", &self.directory)
            .field("file_glob", &self.file_glob)
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_key_format", &self.s3_key_format)
            .field("finished", &self.finished)
            .field("on_finish_glob", &self.on_finish_glob)
            .field("pid", &self.pid)
            .field("s3_access_key", &self.s3_access_key)
            .field("s3_secret_key", &redacted(self.s3_secret_key.is_some()))
            .field(
                "finished_after_millis_without_new_file",
                &self.finished_after_millis_without_new_file,
            )
            .field("storage_class", &self.storage_class)
            .field(
                "apply_storage_class_if_over_bytes",
                &self.apply_storage_class_if_over_bytes,
            )
            .field("upload_immediately", &self.upload_immediately)
            .field("check_subdirectories", &self.check_subdirectories)
            .field("compress_before_upload", &self.compress_before_upload)
            .field("check_if_open", &self.check_if_open)
            .field("uploader_type", &self.uploader_type)
            .field(
                "gcs_credentials",
                &redacted(!self.gcs_credentials.is_empty()),
            )
            .field("gcs_storage_class", &self.gcs_storage_class)
            .field("encryption_key", &self.encryption_key)
            .field(
                "use_s3_server_side_encryption",
                &self.use_s3_server_side_encryption,
            )
            .finish()
    }
}

/// The accepted input, with both storage class spellings.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3UploadMetadataWire {
    directory: PathBuf,
    file_glob: String,
    s3_bucket: String,
    s3_key_format: String,
    #[serde(default, deserialize_with = "null_as_default")]
    finished: bool,
    #[serde(default)]
    on_finish_glob: Option<String>,
    #[serde(default)]
    pid: Option<i32>,
    #[serde(default)]
    s3_access_key: Option<String>,
    #[serde(default)]
    s3_secret_key: Option<String>,
    #[serde(default)]
    finished_after_millis_without_new_file: Option<i64>,
    #[serde(default)]
    storage_class: Option<String>,
    #[serde(default)]
    s3_storage_class: Option<String>,
    #[serde(default)]
    apply_storage_class_if_over_bytes: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    upload_immediately: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    check_subdirectories: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    compress_before_upload: bool,
    #[serde(default = "default_true", deserialize_with = "null_as_true")]
    check_if_open: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    uploader_type: UploaderType,
    #[serde(default, deserialize_with = "null_as_default")]
    gcs_credentials: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    gcs_storage_class: Option<String>,
    #[serde(default)]
    encryption_key: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    use_s3_server_side_encryption: bool,
}

impl From<S3UploadMetadataWire> for S3UploadMetadata {
    fn from(w: S3UploadMetadataWire) -> Self {
        S3UploadMetadata {
            directory: w.directory,
            file_glob: w.file_glob,
            s3_bucket: w.s3_bucket,
            s3_key_format: w.s3_key_format,
            finished: w.finished,
            on_finish_glob: w.on_finish_glob,
            pid: w.pid,
            s3_access_key: w.s3_access_key,
            s3_secret_key: w.s3_secret_key,
            finished_after_millis_without_new_file: w.finished_after_millis_without_new_file,
            storage_class: w.s3_storage_class.or(w.storage_class),
            apply_storage_class_if_over_bytes: w.apply_storage_class_if_over_bytes,
            upload_immediately: w.upload_immediately,
            check_subdirectories: w.check_subdirectories,
            compress_before_upload: w.compress_before_upload,
            check_if_open: w.check_if_open,
            uploader_type: w.uploader_type,
            gcs_credentials: w.gcs_credentials,
            gcs_storage_class: w.gcs_storage_class,
            encryption_key: w.encryption_key,
            use_s3_server_side_encryption: w.use_s3_server_side_encryption,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let mut m = S3UploadMetadata::new("/d", "*", "b", "k");
        m.s3_access_key = Some("AKIAEXAMPLE".into());
        m.s3_secret_key = Some("very-secret".into());
        m.gcs_credentials
            .insert("private_key".into(), "-----BEGIN PRIVATE KEY-----".into());
        let text = format!("{m:?}");
        assert!(!text.contains("very-secret"), "{text}");
        assert!(!text.contains("BEGIN PRIVATE KEY"), "{text}");
        assert!(text.contains("AKIAEXAMPLE"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }

    #[test]
    fn identity_is_directory_and_glob() {
        let a = S3UploadMetadata::new("/d", "*.gz", "b1", "k1");
        let mut b = S3UploadMetadata::new("/d", "*.gz", "b2", "k2");
        b.finished = true;
        assert_eq!(a.identity(), b.identity());
        assert_ne!(a, b);
        assert_eq!(a.identity(), (Path::new("/d"), "*.gz"));
    }
}
