//! Images: references split as `docker pull` splits them, pulls with attempts inside one
//! deadline, and the image id of a `docker save` tarball.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use crate::auth::AuthSource;
use crate::engine::{ContainerEngine, EngineError, EngineErrorKind};

/// Pause between pull attempts, grown linearly with the attempt number.
const PULL_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// A registry image reference, split for a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// The reference given to the engine (`repository:tag` or `repository@digest`).
    pub reference: String,
    /// Repository part.
    pub repository: String,
    /// Tag, or the digest for a digest reference.
    pub tag: String,
}

impl ImageReference {
    /// `reference` split into repository and tag (or digest); a reference without either
    /// means `latest`, as `docker pull` does.
    pub fn parse(reference: &str) -> Self {
        let (repository, tag) = split_reference(reference);
        let reference = if reference.contains('@') {
            format!("{repository}@{tag}")
        } else {
            format!("{repository}:{tag}")
        };
        Self {
            reference,
            repository,
            tag,
        }
    }
}

/// Splits a registry reference into repository and tag (or digest); a reference without
/// either means `latest`, as `docker pull` does.
pub fn split_reference(reference: &str) -> (String, String) {
    if let Some((repository, digest)) = reference.split_once('@') {
        return (repository.to_owned(), digest.to_owned());
    }
    let name_start = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[name_start..].rfind(':') {
        Some(i) => (
            reference[..name_start + i].to_owned(),
            reference[name_start + i + 1..].to_owned(),
        ),
        None => (reference.to_owned(), "latest".to_owned()),
    }
}

/// How hard a pull tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullPolicy {
    /// Attempts in all (at least one is made).
    pub attempts: u32,
    /// Deadline of the pull, all attempts together.
    pub timeout: Duration,
}

/// A pull did not bring the image.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The last attempt failed (or the registry said the image does not exist).
    #[error("Could not pull docker image {reference}: {source}")]
    Failed {
        /// The reference pulled.
        reference: String,
        /// The last attempt's error.
        source: EngineError,
    },
    /// The deadline passed first.
    #[error("Could not pull docker image {reference}: no image within {}s", timeout.as_secs())]
    TimedOut {
        /// The reference pulled.
        reference: String,
        /// The deadline.
        timeout: Duration,
    },
}

/// Pulls `image` with `policy.attempts` attempts inside `policy.timeout`, with the
/// credentials `auth` gives for its registry. A missing image is not retried: the registry's
/// answer will not change.
pub async fn pull<E: ContainerEngine>(
    engine: &E,
    image: &ImageReference,
    auth: Option<&AuthSource>,
    policy: PullPolicy,
) -> Result<(), PullError> {
    let reference = image.reference.as_str();
    let credentials = auth.and_then(|a| a.for_repository(&image.repository));
    let pulled = with_attempts(
        reference,
        policy,
        || engine.pull_image(&image.repository, &image.tag, credentials.as_ref()),
        |error: &EngineError| error.kind != EngineErrorKind::NotFound,
    )
    .await;
    match pulled {
        Some(result) => result.map_err(|source| PullError::Failed {
            reference: reference.to_owned(),
            source,
        }),
        None => Err(PullError::TimedOut {
            reference: reference.to_owned(),
            timeout: policy.timeout,
        }),
    }
}

/// Runs `attempt` up to `policy.attempts` times inside `policy.timeout`, pausing longer
/// after each failure; a failure `retry` refuses ends it. `None` when the deadline passed
/// first.
pub(crate) async fn with_attempts<T, E, F, Fut>(
    image: &str,
    policy: PullPolicy,
    mut attempt: F,
    retry: impl Fn(&E) -> bool,
) -> Option<Result<T, E>>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let deadline = started + policy.timeout;
    let attempts = policy.attempts.max(1);
    let mut made = 1;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let error = match tokio::time::timeout(remaining, attempt()).await {
            Ok(Ok(value)) => {
                tracing::info!(image, attempt = made, elapsed = ?started.elapsed(), "image pulled");
                return Some(Ok(value));
            }
            Ok(Err(error)) => error,
            Err(_) => return None,
        };
        tracing::warn!(image, attempt = made, attempts, %error, "pull failed");
        if !retry(&error) || made >= attempts {
            return Some(Err(error));
        }
        let pause =
            (PULL_RETRY_PAUSE * made).min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
        made += 1;
    }
}

/// The image id (`sha256:...`) of a `docker save` tarball, from its `manifest.json`.
pub fn archive_image_id(tarball: &Path) -> io::Result<String> {
    let mut archive = tar::Archive::new(File::open(tarball)?);
    for entry in archive.entries_with_seek()? {
        let mut entry = entry?;
        if entry.path()?.as_ref() != Path::new("manifest.json") {
            continue;
        }
        let mut manifest = String::new();
        entry.read_to_string(&mut manifest)?;
        return image_id_from_manifest(&manifest).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "manifest.json names no image config",
            )
        });
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "no manifest.json: not a `docker save` tarball",
    ))
}

/// `sha256:<hex>` from the first entry's `Config` (`<hex>.json` in the legacy layout,
/// `blobs/sha256/<hex>` in the OCI one).
pub fn image_id_from_manifest(manifest: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(manifest).ok()?;
    let config = value.get(0)?.get("Config")?.as_str()?;
    let file = Path::new(config).file_name()?.to_str()?;
    let hex = file.strip_suffix(".json").unwrap_or(file);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::engine::{
        ContainerConfig, ContainerExit, ContainerSummary, MountPoint, OutputStream, RegistryAuth,
        Signal,
    };

    #[test]
    fn references_split_like_docker_pull() {
        assert_eq!(
            split_reference("127.0.0.1:5000/test/busybox:1"),
            ("127.0.0.1:5000/test/busybox".into(), "1".into())
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/test/busybox"),
            ("127.0.0.1:5000/test/busybox".into(), "latest".into())
        );
        assert_eq!(
            split_reference("busybox@sha256:abc"),
            ("busybox".into(), "sha256:abc".into())
        );
        assert_eq!(
            split_reference("ubuntu"),
            ("ubuntu".into(), "latest".into())
        );
        assert_eq!(
            ImageReference::parse("busybox"),
            ImageReference {
                reference: "busybox:latest".into(),
                repository: "busybox".into(),
                tag: "latest".into()
            }
        );
        assert_eq!(
            ImageReference::parse("busybox@sha256:abc").reference,
            "busybox@sha256:abc"
        );
    }

    #[test]
    fn image_ids_come_from_either_manifest_layout() {
        let hex = "a".repeat(64);
        assert_eq!(
            image_id_from_manifest(&format!(
                r#"[{{"Config":"{hex}.json","RepoTags":["x:1"]}}]"#
            )),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(
            image_id_from_manifest(&format!(r#"[{{"Config":"blobs/sha256/{hex}"}}]"#)),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(image_id_from_manifest(r#"[{"Config":"short.json"}]"#), None);
        assert_eq!(image_id_from_manifest("[]"), None);
    }

    /// Answers pulls from a script and counts them.
    #[derive(Debug, Default)]
    struct ScriptedPulls {
        answers: Mutex<VecDeque<Result<(), EngineError>>>,
        pulls: Mutex<u32>,
        hang: bool,
    }

    impl ContainerEngine for ScriptedPulls {
        async fn image_id(&self, _: &str) -> Result<Option<String>, EngineError> {
            Ok(None)
        }
        async fn inspect_image(&self, _: &str) -> Result<serde_json::Value, EngineError> {
            unreachable!("not used")
        }
        async fn load_image(&self, _: &Path) -> Result<(), EngineError> {
            unreachable!("not used")
        }
        async fn pull_image(
            &self,
            _: &str,
            _: &str,
            _: Option<&RegistryAuth>,
        ) -> Result<(), EngineError> {
            *self.pulls.lock().expect("lock") += 1;
            if self.hang {
                std::future::pending::<()>().await;
            }
            self.answers
                .lock()
                .expect("lock")
                .pop_front()
                .unwrap_or(Ok(()))
        }
        async fn remove_image(&self, _: &str) -> Result<(), EngineError> {
            unreachable!("not used")
        }
        async fn cgroup_driver(&self) -> Result<crate::cgroup::CgroupDriver, EngineError> {
            unreachable!("not used")
        }
        async fn create(&self, _: &ContainerConfig) -> Result<String, EngineError> {
            unreachable!("not used")
        }
        async fn attach(&self, _: &str) -> Result<OutputStream, EngineError> {
            unreachable!("not used")
        }
        async fn start(&self, _: &str) -> Result<(), EngineError> {
            unreachable!("not used")
        }
        async fn signal(&self, _: &str, _: Signal) -> Result<(), EngineError> {
            unreachable!("not used")
        }
        async fn stop(&self, _: &str, _: Duration) -> Result<(), EngineError> {
            unreachable!("not used")
        }
        async fn wait(&self, _: &str) -> Result<ContainerExit, EngineError> {
            unreachable!("not used")
        }
        async fn main_pid(&self, _: &str) -> Result<Option<u32>, EngineError> {
            unreachable!("not used")
        }
        async fn exec(
            &self,
            _: &str,
            _: &[String],
            _: &[String],
        ) -> Result<crate::ExecSession, EngineError> {
            unreachable!("not used")
        }
        async fn exec_exit_code(&self, _: &str) -> Result<Option<i64>, EngineError> {
            unreachable!("not used")
        }
        async fn remove(&self, _: &str) -> Result<(), EngineError> {
            unreachable!("not used")
        }
        async fn list(&self, _: &str) -> Result<Vec<ContainerSummary>, EngineError> {
            unreachable!("not used")
        }
        async fn mounts(&self, _: &str) -> Result<Vec<MountPoint>, EngineError> {
            unreachable!("not used")
        }
    }

    fn policy(attempts: u32, timeout: Duration) -> PullPolicy {
        PullPolicy { attempts, timeout }
    }

    fn image() -> ImageReference {
        ImageReference::parse("r:1")
    }

    #[tokio::test(start_paused = true)]
    async fn every_pull_attempt_is_made_before_giving_up() {
        let engine = ScriptedPulls::default();
        engine.answers.lock().expect("lock").extend([
            Err(EngineError::new(
                EngineErrorKind::Unreachable,
                "connection refused",
            )),
            Err(EngineError::new(
                EngineErrorKind::Other,
                "TLS handshake timeout",
            )),
            Ok(()),
        ]);
        pull(&engine, &image(), None, policy(3, Duration::from_secs(60)))
            .await
            .expect("third attempt succeeds");
        assert_eq!(*engine.pulls.lock().expect("lock"), 3);

        let engine = ScriptedPulls::default();
        engine.answers.lock().expect("lock").extend([
            Err(EngineError::new(EngineErrorKind::Other, "first")),
            Err(EngineError::new(EngineErrorKind::Other, "second")),
        ]);
        let error = pull(&engine, &image(), None, policy(2, Duration::from_secs(60)))
            .await
            .expect_err("both fail");
        assert_eq!(error.to_string(), "Could not pull docker image r:1: second");
        assert_eq!(*engine.pulls.lock().expect("lock"), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_image_is_not_retried_and_a_hung_pull_hits_the_deadline() {
        let engine = ScriptedPulls::default();
        engine
            .answers
            .lock()
            .expect("lock")
            .push_back(Err(EngineError::new(
                EngineErrorKind::NotFound,
                "manifest unknown",
            )));
        let error = pull(&engine, &image(), None, policy(5, Duration::from_secs(60)))
            .await
            .expect_err("missing");
        assert_eq!(
            error.to_string(),
            "Could not pull docker image r:1: manifest unknown"
        );
        assert_eq!(*engine.pulls.lock().expect("lock"), 1);

        let engine = ScriptedPulls {
            hang: true,
            ..ScriptedPulls::default()
        };
        let started = Instant::now();
        let error = pull(&engine, &image(), None, policy(5, Duration::from_secs(30)))
            .await
            .expect_err("deadline");
        assert_eq!(
            error.to_string(),
            "Could not pull docker image r:1: no image within 30s"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }
}
