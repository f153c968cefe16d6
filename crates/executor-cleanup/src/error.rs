//! The errors of the cleanup job.

use std::path::PathBuf;

use singularity_common::exit::{self, ExitStatus};

/// The configuration cannot be used (exit 78).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The configuration was loaded without a class the cleanup needs.
    #[error("the configuration was loaded without the {class} class")]
    ClassMissing {
        /// The class.
        class: &'static str,
    },
    /// `singularityClientCredentialsPath` cannot be read.
    #[error("singularityClientCredentialsPath = {}: {source}", path.display())]
    CredentialsRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `singularityClientCredentialsPath` does not hold `{headerName, token}`.
    #[error("singularityClientCredentialsPath = {}: not {{\"headerName\", \"token\"}} JSON: {source}", path.display())]
    CredentialsParse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The credentials header name is not a valid HTTP header name.
    #[error("singularityClientCredentials headerName = {name:?}: not a valid HTTP header name")]
    HeaderName {
        /// The name.
        name: String,
    },
    /// The credentials token cannot be sent as a header value.
    #[error("singularityClientCredentials token: not a valid HTTP header value")]
    HeaderValue,
    /// An HTTP client cannot be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl ExitStatus for SettingsError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Client(_) => exit::FAILURE,
            _ => exit::CONFIG,
        }
    }
}

/// The run failed unexpectedly (exit 1). Expected failures (the API unreachable, one task's
/// files) are counted in the results instead.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The task definition directory cannot be listed.
    #[error("cannot list the task definition directory {}: {source}", path.display())]
    ListDefinitions {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The results file cannot be written.
    #[error("cannot write the results: {0}")]
    Results(#[source] singularity_common::fsio::RecordError),
    /// The Prometheus text file cannot be written.
    #[error("cannot write the Prometheus text file {}: {source}", path.display())]
    Textfile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A worker panicked or was cancelled.
    #[error("a cleanup worker failed: {0}")]
    Worker(#[source] tokio::task::JoinError),
}

impl ExitStatus for RunError {}
