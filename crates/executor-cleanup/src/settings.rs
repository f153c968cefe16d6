//! What the cleanup takes from the configuration classes base, executor and executor cleanup.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use singularity_common::config::{
    BaseConfig, ExecutorCleanupConfig, ExecutorConfig, LoadedConfig, SingularityClientCredentials,
};

use crate::error::SettingsError;

/// Everything [`crate::run`] needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The base class (metadata directories).
    pub base: BaseConfig,
    /// The executor class (task definitions, log settings, container names).
    pub executor: ExecutorConfig,
    /// The executor cleanup class.
    pub cleanup: ExecutorCleanupConfig,
    /// This agent's host name: `hostname` from the configuration, else the system's.
    pub hostname: String,
    /// The agent state URL giving the agent id.
    pub agent_state_url: String,
    /// `{http|https}://<host>/<contextPath>` for each of `singularityHosts`.
    pub api_bases: Vec<String>,
    /// The credentials header, the file's winning over the inline value.
    pub credentials: Option<(HeaderName, HeaderValue)>,
    /// Deadline of each request.
    pub request_timeout: Duration,
    /// Only print what would be done.
    pub dry_run: bool,
}

impl Settings {
    /// The settings a loaded configuration gives.
    pub fn from_loaded(loaded: &LoadedConfig, dry_run: bool) -> Result<Self, SettingsError> {
        let mut executor = loaded
            .executor
            .clone()
            .ok_or(SettingsError::ClassMissing { class: "executor" })?;
        let cleanup = loaded
            .executor_cleanup
            .clone()
            .ok_or(SettingsError::ClassMissing {
                class: "executor.cleanup",
            })?;
        let hostname = cleanup
            .common
            .hostname
            .clone()
            .or_else(|| loaded.base.common.hostname.clone())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(system_hostname);
        let agent_state_url = cleanup
            .mesos_agent_state_url
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| format!("http://{hostname}:5051/slave(1)/state"));
        let scheme = if cleanup.singularity_use_ssl {
            "https"
        } else {
            "http"
        };
        let context = cleanup.singularity_context_path.trim_matches('/');
        let api_bases = cleanup
            .singularity_hosts
            .iter()
            .map(|host| {
                if context.is_empty() {
                    format!("{scheme}://{host}")
                } else {
                    format!("{scheme}://{host}/{context}")
                }
            })
            .collect();
        let credentials = credentials(&cleanup)?;
        // The cleanup's upload fallbacks rank where the executor's settings do (after the
        // task's own), so a task's final records match the ones its executor started with.
        if executor
            .s3_uploader_bucket
            .as_deref()
            .is_none_or(str::is_empty)
            && !cleanup.default_s3_bucket.is_empty()
        {
            executor.s3_uploader_bucket = Some(cleanup.default_s3_bucket.clone());
        }
        if executor
            .s3_uploader_key_pattern
            .as_deref()
            .is_none_or(str::is_empty)
        {
            executor.s3_uploader_key_pattern = Some(cleanup.s3_key_format.clone());
        }
        Ok(Self {
            base: loaded.base.clone(),
            executor,
            request_timeout: Duration::from_millis(cleanup.singularity_request_timeout_millis),
            cleanup,
            hostname,
            agent_state_url,
            api_bases,
            credentials,
            dry_run,
        })
    }

    /// `<globalTaskDefinitionDirectory>`.
    pub fn definition_directory(&self) -> &PathBuf {
        &self.executor.global_task_definition_directory
    }
}

/// The credentials file when configured, else the inline value.
fn credentials(
    cleanup: &ExecutorCleanupConfig,
) -> Result<Option<(HeaderName, HeaderValue)>, SettingsError> {
    let configured = match &cleanup.singularity_client_credentials_path {
        Some(path) if !path.as_os_str().is_empty() => {
            let text = std::fs::read(path).map_err(|source| SettingsError::CredentialsRead {
                path: path.clone(),
                source,
            })?;
            let parsed: SingularityClientCredentials =
                serde_json::from_slice(&text).map_err(|source| {
                    SettingsError::CredentialsParse {
                        path: path.clone(),
                        source,
                    }
                })?;
            Some(parsed)
        }
        _ => cleanup.singularity_client_credentials.clone(),
    };
    let Some(credentials) = configured else {
        return Ok(None);
    };
    let name = HeaderName::from_bytes(credentials.header_name.as_bytes()).map_err(|_| {
        SettingsError::HeaderName {
            name: credentials.header_name.clone(),
        }
    })?;
    let mut value = HeaderValue::from_str(credentials.token.expose())
        .map_err(|_| SettingsError::HeaderValue)?;
    value.set_sensitive(true);
    Ok(Some((name, value)))
}

/// The host name the kernel reports (`uname -n`).
pub fn system_hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
