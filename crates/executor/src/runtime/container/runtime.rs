//! [`ContainerRuntime`]: a task runtime running each task in a container of any
//! [`ContainerEngine`].
//!
//! Before staging, the container is planned (a bad parameter or image scheme fails the task
//! before anything is downloaded) and a registry image is pulled when the engine lacks it
//! or `force_pull_image` is set, with `maxDockerPullAttempts` attempts inside one deadline.
//! After staging, a `docker-archive://` tarball is loaded unless its image is already
//! present; the image description is written to `docker_image.json`; the container is
//! created, attached (so no output is missed), started, and its output appended to
//! `service.log`. Kills signal the container's main process at once. When it ends, the
//! output is drained and the container removed.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use singularity_common::naming;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::plan::{ContainerOptions, ImageSource, plan};
use super::{ContainerEngine, EngineError, EngineErrorKind, OutputStream};
use crate::procfs;
use crate::runtime::process::open_append;
use crate::runtime::{
    BoxFuture, ExitStatus, Preparation, RuntimeError, StartedTask, StopSignal, TaskControl,
    TaskRuntime, TaskSpec,
};

/// How long output may keep arriving after the container stopped.
const OUTPUT_DRAIN: Duration = Duration::from_secs(5);

/// Pause between pull attempts, grown linearly with the attempt number.
const PULL_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Runs tasks as containers of `E`.
#[derive(Debug)]
pub struct ContainerRuntime<E> {
    engine: Arc<E>,
    options: ContainerOptions,
}

fn engine_error(context: &str, error: EngineError) -> RuntimeError {
    RuntimeError::Container(format!("{context}: {error}"))
}

impl<E: ContainerEngine> ContainerRuntime<E> {
    /// A runtime creating containers on `engine`.
    pub fn new(engine: E, options: ContainerOptions) -> Self {
        Self {
            engine: Arc::new(engine),
            options,
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<E> {
        &self.engine
    }

    async fn prepare(&self, spec: &TaskSpec) -> Result<(), RuntimeError> {
        let plan = plan(spec, &self.options).map_err(|e| RuntimeError::Container(e.0))?;
        let ImageSource::Registry {
            reference,
            repository,
            tag,
        } = &plan.image
        else {
            return Ok(());
        };
        if !plan.force_pull {
            let present = self
                .engine
                .image_id(reference)
                .await
                .map_err(|e| engine_error("cannot inspect the image", e))?;
            if present.is_some() {
                tracing::info!(
                    task_id = spec.task_id,
                    image = reference,
                    "image present; not pulled"
                );
                return Ok(());
            }
        }
        self.pull(&spec.task_id, reference, repository, tag).await
    }

    /// Pulls with `pull_attempts` attempts inside `pull_timeout`. A missing image is not
    /// retried: the registry's answer will not change.
    async fn pull(
        &self,
        task_id: &str,
        reference: &str,
        repository: &str,
        tag: &str,
    ) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let deadline = started + self.options.pull_timeout;
        let attempts = self.options.pull_attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let auth = self
                .options
                .auth
                .as_ref()
                .and_then(|a| a.for_repository(repository));
            let pull = self.engine.pull_image(repository, tag, auth.as_ref());
            match tokio::time::timeout(remaining, pull).await {
                Ok(Ok(())) => {
                    tracing::info!(task_id, image = reference, attempt, elapsed = ?started.elapsed(), "image pulled");
                    return Ok(());
                }
                Ok(Err(error)) => {
                    tracing::warn!(task_id, image = reference, attempt, attempts, %error, "pull failed");
                    last = error.message;
                    if error.kind == EngineErrorKind::NotFound {
                        break;
                    }
                }
                Err(_) => {
                    last = format!("no image within {}s", self.options.pull_timeout.as_secs());
                    break;
                }
            }
            if attempt < attempts {
                let pause = (PULL_RETRY_PAUSE * attempt)
                    .min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
            }
        }
        Err(RuntimeError::Container(format!(
            "Could not pull docker image {reference}: {last}"
        )))
    }

    /// Loads the tarball unless the engine has its image; returns the image id.
    async fn load_archive(&self, task_id: &str, path: &Path) -> Result<String, RuntimeError> {
        let file = path.to_path_buf();
        let id = tokio::task::spawn_blocking(move || archive_image_id(&file))
            .await
            .map_err(|e| RuntimeError::Container(e.to_string()))?
            .map_err(|e| {
                RuntimeError::Container(format!(
                    "cannot read the docker-archive {}: {e}",
                    path.display()
                ))
            })?;
        let present = self
            .engine
            .image_id(&id)
            .await
            .map_err(|e| engine_error("cannot inspect the image", e))?;
        if present.is_some() {
            tracing::info!(task_id, image = id, "archive image present; not loaded");
        } else {
            let started = Instant::now();
            self.engine
                .load_image(path)
                .await
                .map_err(|e| engine_error(&format!("cannot load {}", path.display()), e))?;
            tracing::info!(task_id, image = id, elapsed = ?started.elapsed(), "archive image loaded");
        }
        Ok(id)
    }

    async fn write_image_description(
        &self,
        image: &str,
        task_dir: &Path,
    ) -> Result<(), RuntimeError> {
        let description = self
            .engine
            .inspect_image(image)
            .await
            .map_err(|e| engine_error(&format!("cannot inspect image {image}"), e))?;
        // `docker image inspect` prints a list. Informational, like the file Singularity's
        // runner wrote with a redirect: no sync.
        let bytes = serde_json::to_vec_pretty(&[description])
            .map_err(|e| RuntimeError::Container(e.to_string()))?;
        let path = task_dir.join(naming::DOCKER_IMAGE_JSON);
        tokio::fs::write(&path, bytes)
            .await
            .map_err(|source| RuntimeError::Spawn {
                what: path.display().to_string(),
                source,
            })
    }

    async fn start_container(&self, spec: &TaskSpec) -> Result<StartedTask, RuntimeError> {
        let mut plan = plan(spec, &self.options).map_err(|e| RuntimeError::Container(e.0))?;
        if let ImageSource::Archive { path } = &plan.image {
            plan.config.image = self.load_archive(&spec.task_id, path).await?;
        }
        self.write_image_description(&plan.config.image, &spec.task_dir)
            .await?;
        let log = open_append(&spec.service_log).map_err(|source| RuntimeError::ServiceLog {
            path: spec.service_log.clone(),
            source,
        })?;

        let name = plan.config.name.clone();
        let id = match self.engine.create(&plan.config).await {
            Err(error) if error.kind == EngineErrorKind::Conflict => {
                // Left by an earlier executor of the same task: it cannot be running a task
                // that is being launched now.
                tracing::warn!(
                    task_id = spec.task_id,
                    container = name,
                    "removing a leftover container of the same name"
                );
                self.remove_quietly(&name).await;
                self.engine.create(&plan.config).await
            }
            other => other,
        }
        .map_err(|e| engine_error(&format!("cannot create container {name}"), e))?;

        let output = match self.engine.attach(&id).await {
            Ok(output) => output,
            Err(error) => {
                self.remove_quietly(&id).await;
                return Err(engine_error(
                    &format!("cannot attach to container {name}"),
                    error,
                ));
            }
        };
        let pump = tokio::spawn(pump(output, log));
        if let Err(error) = self.engine.start(&id).await {
            pump.abort();
            self.remove_quietly(&id).await;
            return Err(engine_error(
                &format!("cannot start container {name}"),
                error,
            ));
        }
        let pid = match self.engine.main_pid(&id).await {
            Ok(pid) => pid.unwrap_or(0),
            Err(error) => {
                tracing::warn!(task_id = spec.task_id, %error, "cannot read the container's pid");
                0
            }
        };

        let control = Arc::new(ContainerControl {
            engine: Arc::clone(&self.engine),
            id: id.clone(),
            task_id: spec.task_id.clone(),
            pid,
        });
        let engine = Arc::clone(&self.engine);
        let task_id = spec.task_id.clone();
        let exit = Box::pin(async move {
            let ended = engine.wait(&id).await;
            drain(pump).await;
            match engine.remove(&id).await {
                Ok(()) => {}
                Err(error) if error.is_not_found() => {}
                Err(error) => {
                    tracing::warn!(task_id, container = id, %error, "cannot remove the container")
                }
            }
            let ended = ended.map_err(|error| RuntimeError::Wait {
                task_id,
                source: io::Error::other(error.message),
            })?;
            Ok(ExitStatus {
                code: Some(i32::try_from(ended.code).unwrap_or(i32::MAX)),
                signal: None,
                oom_killed: ended.oom_killed,
            })
        });
        Ok(StartedTask {
            pid,
            process_name: "docker".to_owned(),
            control,
            exit,
            kill_grace: Some(self.options.stop_timeout),
        })
    }

    async fn remove_quietly(&self, id: &str) {
        if let Err(error) = self.engine.remove(id).await
            && !error.is_not_found()
        {
            tracing::warn!(container = id, %error, "cannot remove the container");
        }
    }
}

impl<E: ContainerEngine> TaskRuntime for ContainerRuntime<E> {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn before_staging<'a>(&'a self, spec: &'a TaskSpec) -> Option<Preparation<'a>> {
        let pulls = plan(spec, &self.options)
            .map(|p| matches!(p.image, ImageSource::Registry { .. }))
            .unwrap_or(false);
        Some(Preparation {
            announce: pulls.then_some("Pulling image..."),
            work: Box::pin(self.prepare(spec)),
        })
    }

    fn start<'a>(&'a self, spec: &'a TaskSpec) -> BoxFuture<'a, Result<StartedTask, RuntimeError>> {
        Box::pin(self.start_container(spec))
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

/// Signals and counts one container.
#[derive(Debug)]
struct ContainerControl<E> {
    engine: Arc<E>,
    id: String,
    task_id: String,
    pid: u32,
}

impl<E: ContainerEngine> TaskControl for ContainerControl<E> {
    fn signal(&self, signal: StopSignal) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            match self.engine.signal(&self.id, signal).await {
                Ok(()) => Ok(()),
                // Already stopped or gone: nothing left to signal.
                Err(error)
                    if matches!(
                        error.kind,
                        EngineErrorKind::NotFound | EngineErrorKind::Conflict
                    ) =>
                {
                    Ok(())
                }
                Err(error) => Err(RuntimeError::Signal {
                    task_id: self.task_id.clone(),
                    signal,
                    source: io::Error::other(error.message),
                }),
            }
        })
    }

    fn thread_count(&self) -> BoxFuture<'_, Result<u64, RuntimeError>> {
        Box::pin(async move {
            let pid = self.pid;
            if pid == 0 {
                return Ok(0);
            }
            tokio::task::spawn_blocking(move || procfs::cgroup_threads(pid))
                .await
                .map_err(io::Error::other)
                .and_then(|r| r)
                .map_err(|source| RuntimeError::Threads {
                    task_id: self.task_id.clone(),
                    source,
                })
        })
    }
}

/// Copies the container's output into the service log until it ends.
async fn pump(mut output: OutputStream, log: File) {
    while let Some(chunk) = output.next().await {
        match chunk {
            Ok(bytes) => {
                if let Err(error) = (&log).write_all(&bytes) {
                    tracing::warn!(%error, "cannot append container output to the service log");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "container output interrupted");
                return;
            }
        }
    }
}

async fn drain(pump: JoinHandle<()>) {
    let abort = pump.abort_handle();
    if tokio::time::timeout(OUTPUT_DRAIN, pump).await.is_err() {
        tracing::warn!("container output still open after it stopped; no longer copied");
        abort.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use crate::runtime::container::ContainerConfig;
    use crate::runtime::container::ContainerExit;

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
            _: Option<&super::super::RegistryAuth>,
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
        async fn create(&self, _: &ContainerConfig) -> Result<String, EngineError> {
            unreachable!("not used")
        }
        async fn attach(&self, _: &str) -> Result<OutputStream, EngineError> {
            unreachable!("not used")
        }
        async fn start(&self, _: &str) -> Result<(), EngineError> {
            unreachable!("not used")
        }
        async fn signal(&self, _: &str, _: StopSignal) -> Result<(), EngineError> {
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
        async fn remove(&self, _: &str) -> Result<(), EngineError> {
            unreachable!("not used")
        }
    }

    fn runtime(
        engine: ScriptedPulls,
        attempts: u32,
        timeout: Duration,
    ) -> ContainerRuntime<ScriptedPulls> {
        ContainerRuntime::new(
            engine,
            ContainerOptions {
                pull_attempts: attempts,
                pull_timeout: timeout,
                ..ContainerOptions::default()
            },
        )
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
        let rt = runtime(engine, 3, Duration::from_secs(60));
        rt.pull("t", "r:1", "r", "1")
            .await
            .expect("third attempt succeeds");
        assert_eq!(*rt.engine().pulls.lock().expect("lock"), 3);

        let engine = ScriptedPulls::default();
        engine.answers.lock().expect("lock").extend([
            Err(EngineError::new(EngineErrorKind::Other, "first")),
            Err(EngineError::new(EngineErrorKind::Other, "second")),
        ]);
        let rt = runtime(engine, 2, Duration::from_secs(60));
        let error = rt.pull("t", "r:1", "r", "1").await.expect_err("both fail");
        assert_eq!(error.to_string(), "Could not pull docker image r:1: second");
        assert_eq!(*rt.engine().pulls.lock().expect("lock"), 2);
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
        let rt = runtime(engine, 5, Duration::from_secs(60));
        let error = rt.pull("t", "r:1", "r", "1").await.expect_err("missing");
        assert_eq!(
            error.to_string(),
            "Could not pull docker image r:1: manifest unknown"
        );
        assert_eq!(*rt.engine().pulls.lock().expect("lock"), 1);

        let rt = runtime(
            ScriptedPulls {
                hang: true,
                ..ScriptedPulls::default()
            },
            5,
            Duration::from_secs(30),
        );
        let started = Instant::now();
        let error = rt.pull("t", "r:1", "r", "1").await.expect_err("deadline");
        assert_eq!(
            error.to_string(),
            "Could not pull docker image r:1: no image within 30s"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }
}
