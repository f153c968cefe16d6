//! The client of the local S3 downloader service (`useLocalDownloadService`).
//!
//! Requests go to the unix socket `localDownloadSocket` when it is set, else over HTTP to
//! `127.0.0.1:<localDownloadHttpPort><localDownloadPath>` (the port as a plain number: the Java
//! executor formatted it as `Optional[7070]`, so its HTTP mode never worked). All requests of a
//! task are sent at once, at most `localDownloadServiceMaxConnections` in flight, each with
//! `timeoutMillis = localDownloadServiceTimeoutMillis` and the same client-side deadline.

use std::sync::Arc;
use std::time::Duration;

use singularity_common::config::{ExecutorConfig, S3BaseConfig};
use singularity_common::records::ArtifactDownloadRequest;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::DownloaderError;

/// Longest failure body kept for the log.
const MAX_MESSAGE: usize = 1024;

/// Where and how to reach the downloader.
#[derive(Debug, Clone)]
pub(crate) struct DownloaderClient {
    http: reqwest::Client,
    url: String,
    timeout: Duration,
    max_connections: usize,
}

/// One failed request.
#[derive(Debug)]
pub(crate) struct RequestFailure {
    pub name: String,
    pub error: DownloaderError,
}

impl DownloaderClient {
    /// The client the configuration describes, or why there is none (no socket and no port).
    pub(crate) fn from_config(
        executor: &ExecutorConfig,
        s3: &S3BaseConfig,
    ) -> Result<Self, DownloaderError> {
        let path = if s3.local_download_path.starts_with('/') {
            s3.local_download_path.clone()
        } else {
            format!("/{}", s3.local_download_path)
        };
        let timeout = Duration::from_millis(executor.local_download_service_timeout_millis);
        let builder = reqwest::Client::builder().no_proxy();
        let (builder, url) = match (&s3.local_download_socket, s3.local_download_http_port) {
            (Some(socket), _) => (
                builder.unix_socket(socket.clone()),
                format!("http://localhost{path}"),
            ),
            (None, Some(port)) if port != 0 => (builder, format!("http://127.0.0.1:{port}{path}")),
            _ => return Err(DownloaderError::NotConfigured),
        };
        let http = builder.build().map_err(DownloaderError::Client)?;
        Ok(DownloaderClient {
            http,
            url,
            timeout,
            max_connections: usize::try_from(executor.local_download_service_max_connections)
                .unwrap_or(usize::MAX)
                .max(1),
        })
    }

    /// The URL requests go to.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Sends every request concurrently and waits for all of them; the failures, if any.
    pub(crate) async fn download_all(
        &self,
        requests: Vec<(String, ArtifactDownloadRequest)>,
    ) -> Vec<RequestFailure> {
        let permits = Arc::new(Semaphore::new(self.max_connections));
        let mut tasks = JoinSet::new();
        for (name, mut request) in requests {
            request.timeout_millis = Some(self.timeout.as_millis() as u64);
            let client = self.clone();
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let target = request.target_directory.clone();
                let result = client.download(&request).await;
                (name, target, result)
            });
        }
        let mut failures = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((name, target, Ok(()))) => {
                    tracing::info!(artifact = %name, target = %target.display(), "downloader placed artifact");
                }
                Ok((name, _, Err(error))) => failures.push(RequestFailure { name, error }),
                Err(e) => failures.push(RequestFailure {
                    name: "?".to_owned(),
                    error: DownloaderError::Join(e),
                }),
            }
        }
        failures
    }

    async fn download(&self, request: &ArtifactDownloadRequest) -> Result<(), DownloaderError> {
        let body = serde_json::to_vec(request).map_err(DownloaderError::Encode)?;
        let response = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(self.timeout)
            .body(body)
            .send()
            .await
            .map_err(DownloaderError::Request)?;
        let status = response.status();
        if status == reqwest::StatusCode::OK {
            return Ok(());
        }
        let mut text = response.text().await.unwrap_or_default();
        if text.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        Err(DownloaderError::Status {
            status,
            body: text.trim().to_owned(),
        })
    }
}
