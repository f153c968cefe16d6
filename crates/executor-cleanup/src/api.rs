//! The HTTP calls of the cleanup: the Mesos agent's state (for the agent id) and the
//! Singularity API (active tasks, decommissioned agents, task histories).
//!
//! API requests go to `singularityHosts` in a random order, failing over to the next host;
//! up to [`ATTEMPTS`] attempts in all, with backoff, on 5xx answers and network errors; every
//! request has the configured deadline. A 404 of a task history means "no history"; other 4xx
//! answers (bad credentials) fail at once.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use singularity_runtime::Backoff;

use crate::error::SettingsError;
use crate::settings::Settings;

/// Attempts of one call, the first included.
pub const ATTEMPTS: u32 = 3;

/// A call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The answer was an error status.
    #[error("GET {url}: HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// No answer (connection, deadline).
    #[error("GET {url}: {source}")]
    Request {
        /// The URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The answer is not the expected JSON.
    #[error("GET {url}: unexpected answer: {source}")]
    Decode {
        /// The URL.
        url: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A URL cannot be built.
    #[error("{url} is not a valid URL")]
    Url {
        /// The text.
        url: String,
    },
    /// `singularityHosts` is empty.
    #[error("singularityHosts is empty")]
    NoHosts,
}

impl ApiError {
    fn retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status >= 500,
            Self::Request { .. } => true,
            _ => false,
        }
    }
}

/// The last update of a task, and whether it ran in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskHistory {
    /// The last update's state, e.g. `TASK_FAILED`; `None` when the task has no update.
    pub last_state: Option<String>,
    /// The last update's time, epoch milliseconds.
    pub last_update_millis: Option<i64>,
    /// The deploy's `containerInfo.type` is `DOCKER`.
    pub docker: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryWire {
    #[serde(default)]
    task_updates: Vec<UpdateWire>,
    task: Option<TaskWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateWire {
    task_state: String,
    timestamp: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskWire {
    task_request: Option<TaskRequestWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskRequestWire {
    deploy: Option<DeployWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeployWire {
    container_info: Option<ContainerInfoWire>,
}

#[derive(Debug, Deserialize)]
struct ContainerInfoWire {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IdWire {
    id: String,
}

#[derive(Debug, Deserialize)]
struct AgentWire {
    host: Option<String>,
}

/// The client of both services.
#[derive(Debug, Clone)]
pub struct SingularityClient {
    http: reqwest::Client,
    /// Without the credentials header: the agent gets no API token.
    agent_http: reqwest::Client,
    bases: Vec<String>,
    backoff: Backoff,
}

impl SingularityClient {
    /// A client for the hosts and credentials of `settings`.
    pub fn new(settings: &Settings) -> Result<Self, SettingsError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some((name, value)) = &settings.credentials {
            headers.insert(name.clone(), value.clone());
        }
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout)
            .default_headers(headers)
            .build()
            .map_err(SettingsError::Client)?;
        let agent_http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout)
            .build()
            .map_err(SettingsError::Client)?;
        Ok(Self {
            http,
            agent_http,
            bases: settings.api_bases.clone(),
            backoff: Backoff {
                attempts: ATTEMPTS,
                base: Duration::from_millis(200),
                max: Duration::from_secs(2),
            },
        })
    }

    /// The same client with another backoff (tests).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The agent id from the agent's state endpoint (no credentials sent there).
    pub async fn agent_id(&self, state_url: &str) -> Result<String, ApiError> {
        let url = Url::parse(state_url).map_err(|_| ApiError::Url {
            url: state_url.to_owned(),
        })?;
        let mut failures = 0;
        loop {
            let result = self.fetch::<IdWire>(url.clone(), false).await;
            match result {
                Ok(Some(state)) => return Ok(state.id),
                Ok(None) => {
                    return Err(ApiError::Status {
                        url: url.to_string(),
                        status: 404,
                        body: String::new(),
                    });
                }
                Err(error) => {
                    failures += 1;
                    if !error.retryable() || self.backoff.gives_up_after(failures) {
                        return Err(error);
                    }
                    tokio::time::sleep(self.backoff.delay(failures - 1)).await;
                }
            }
        }
    }

    /// The ids of the tasks Singularity has active on `agent_id`.
    pub async fn active_task_ids(&self, agent_id: &str) -> Result<HashSet<String>, ApiError> {
        let ids: Vec<IdWire> = self
            .api(&["tasks", "active", "slave", agent_id, "ids"], None)
            .await?
            .unwrap_or_default();
        Ok(ids.into_iter().map(|t| t.id).collect())
    }

    /// Whether `host` is a DECOMMISSIONED agent.
    pub async fn is_decommissioned(&self, host: &str) -> Result<bool, ApiError> {
        let agents: Vec<AgentWire> = self
            .api(&["agents"], Some(("state", "DECOMMISSIONED")))
            .await?
            .unwrap_or_default();
        Ok(agents.iter().any(|a| a.host.as_deref() == Some(host)))
    }

    /// The history of `task_id`; `None` when Singularity has none (404).
    pub async fn task_history(&self, task_id: &str) -> Result<Option<TaskHistory>, ApiError> {
        let wire: Option<HistoryWire> = self.api(&["history", "task", task_id], None).await?;
        Ok(wire.map(|history| {
            let last = history.task_updates.last();
            TaskHistory {
                last_state: last.map(|u| u.task_state.clone()),
                last_update_millis: last.map(|u| u.timestamp),
                docker: history
                    .task
                    .and_then(|t| t.task_request)
                    .and_then(|r| r.deploy)
                    .and_then(|d| d.container_info)
                    .and_then(|c| c.kind)
                    .is_some_and(|k| k.eq_ignore_ascii_case("DOCKER")),
            }
        }))
    }

    /// GET `segments` under a random host, failing over; `Ok(None)` for 404.
    async fn api<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: Option<(&str, &str)>,
    ) -> Result<Option<T>, ApiError> {
        if self.bases.is_empty() {
            return Err(ApiError::NoHosts);
        }
        let mut order: Vec<&String> = self.bases.iter().collect();
        fastrand::shuffle(&mut order);
        let mut failures = 0u32;
        loop {
            let base = order[failures as usize % order.len()];
            let mut url = Url::parse(base).map_err(|_| ApiError::Url { url: base.clone() })?;
            url.path_segments_mut()
                .map_err(|()| ApiError::Url { url: base.clone() })?
                .pop_if_empty()
                .extend(segments);
            if let Some((key, value)) = query {
                url.query_pairs_mut().append_pair(key, value);
            }
            match self.fetch(url, true).await {
                Ok(answer) => return Ok(answer),
                Err(error) => {
                    failures += 1;
                    if !error.retryable() || self.backoff.gives_up_after(failures) {
                        return Err(error);
                    }
                    tracing::debug!(%error, "retrying on another host");
                    tokio::time::sleep(self.backoff.delay(failures - 1)).await;
                }
            }
        }
    }

    async fn fetch<T: DeserializeOwned>(
        &self,
        url: Url,
        with_credentials: bool,
    ) -> Result<Option<T>, ApiError> {
        let text = url.to_string();
        let client = if with_credentials {
            &self.http
        } else {
            &self.agent_http
        };
        let request = client.get(url);
        let response = request
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|source| ApiError::Request {
                url: text.clone(),
                source,
            })?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = response.bytes().await.map_err(|source| ApiError::Request {
            url: text.clone(),
            source,
        })?;
        if !status.is_success() {
            let start = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(ApiError::Status {
                url: text,
                status: status.as_u16(),
                body: start,
            });
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|source| ApiError::Decode { url: text, source })
    }
}
