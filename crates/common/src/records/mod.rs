//! The records the daemons exchange through files and HTTP, as serde models.
//!
//! The JSON is what Singularity's Java mapper reads and writes:
//! - field names are camelCase;
//! - unknown fields are ignored on read (newer writers must not break older readers);
//! - absent optional values are omitted on write, never written as `null`;
//! - byte arrays are base64 strings.
//!
//! | type | where it lives | written by | read by |
//! |---|---|---|---|
//! | [`SingularityTaskExecutorData`] | `TaskInfo.data` | scheduler | executor |
//! | [`TaskDefinition`] | `<safeTaskId>.task.json` | executor | cleanup |
//! | [`S3UploadMetadata`] | `<taskId>-<hint>.s3.json` | executor, cleanup | uploader |
//! | [`TailMetadata`] | `<sha256(serviceLog)>.tail.json` | executor | an external log watcher |
//! | [`CleanupResults`] | `<epochMillis>.cleanup.json` | cleanup | operators |
//! | [`ArtifactDownloadRequest`] | downloader POST body | executor | downloader |
//!
//! Where Java reads one spelling and writes another (`storageClass`/`s3StorageClass`,
//! `logrotateStateFilePath`/`logrotateStateFile`), both are accepted and the written one is
//! produced.

mod artifacts;
mod cleanup;
mod download;
mod executor_data;
mod s3_upload;
mod tail;
mod task_definition;

pub use artifacts::{
    Artifact, ArtifactList, EmbeddedArtifact, ExternalArtifact, RemoteArtifact, S3Artifact,
    S3ArtifactSignature,
};
pub use cleanup::CleanupResults;
pub use download::ArtifactDownloadRequest;
pub use executor_data::{
    ExecutorData, HealthcheckOptions, LogrotateFrequency, ParseLogrotateFrequencyError,
    S3UploaderFile, SingularityTaskExecutorData,
};
pub use s3_upload::{S3UploadMetadata, UploaderType};
pub use tail::TailMetadata;
pub use task_definition::TaskDefinition;

use serde::{Deserialize, Deserializer};

/// Reads `null` as the type's default, for collections the Java side may write as `null`.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The default of booleans whose Java default is true.
fn default_true() -> bool {
    true
}

/// Reads `null` as `true`, for booleans whose Java default is true.
fn null_as_true<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(deserializer)?.unwrap_or(true))
}

/// Byte arrays as base64 strings, as Jackson writes them (standard alphabet, padded).
/// Reading tolerates missing padding and embedded line breaks.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::DecodePaddingMode;
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
    use serde::{Deserialize, Deserializer, Serializer};

    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        LENIENT
            .decode(compact.as_bytes())
            .map_err(|e| serde::de::Error::custom(format_args!("invalid base64: {e}")))
    }
}
