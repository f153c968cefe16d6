//! Step 2, stage: puts a task's artifacts into its sandbox before the task starts, then hands
//! the task directory to the task's user ([`give_to_user`]).
//!
//! Order, as Singularity's executor: embedded artifacts, then S3 artifacts and their
//! signatures, then external (URL) artifacts; then signature verification; then the content of
//! every artifact list (`isArtifactList: true`), staged the same way, one level deep (a list
//! inside a list is placed as a file, not expanded).
//!
//! - **Target.** The task directory, or `<taskDir>/<targetFolderRelativeToTask>`. An absolute
//!   folder, or one leaving the task directory through `..`, is ignored with a warning.
//! - **Embedded.** Written exclusively (an existing file is an error), md5-checked.
//! - **S3.** With `useLocalDownloadService`, every S3 artifact and signature is requested from
//!   the downloader at once: over `localDownloadSocket` when set, else over HTTP to
//!   `127.0.0.1:<localDownloadHttpPort><localDownloadPath>`, at most
//!   `localDownloadServiceMaxConnections` in flight, each with `timeoutMillis =
//!   localDownloadServiceTimeoutMillis`. If any request fails, all of them are fetched
//!   in-process instead ("falling back to in-task fetch"). In-process, an object goes into the
//!   shared cache (`artifactCacheDirectory`, `<md5>-<filename>`): a hit needs the file, its
//!   size and its md5; a miss streams the object into a temp file, verifies size and md5, and
//!   renames it into place (mode 0644).
//! - **External.** Downloaded in-process (no `wget`) into the same cache, the same way.
//! - **Placing.** `.tar.gz` / `.tgz` artifacts are extracted in-process with the downloader's
//!   protected extraction ([`singularity_artifacts::place_artifact`]); other files are copied.
//!   `useCompressProgram` does not apply: decompression is in-process.
//! - **Signatures.** Each S3 signature is matched with the S3 artifact whose `filename` is its
//!   `artifactFilename`; `artifactSignatureVerificationCommand` runs for each pair on the cached
//!   files (`{artifactPath}`, `{artifactSignaturePath}`), in the task directory, its output
//!   appended to `signatureVerifyOut`; the `failOn*` settings decide what fails the task.
//! - **Cancellation.** Cancelling the token abandons the in-flight download or request at once
//!   and returns [`StagingError::Cancelled`]; partial cache files are removed. An extraction or
//!   copy already running on a blocking thread finishes there (it is bounded and
//!   all-or-nothing), and a verification command is killed.
//! - **Errors.** [`StagingError::is_verification_failure`] tells content failing its md5, size
//!   or signature (TASK_FAILED) from everything else (TASK_LOST).

mod cache;
mod downloader;
mod error;
mod fetch;
mod ownership;
mod signatures;

use std::path::{Component, Path, PathBuf};

use singularity_common::config::{BaseConfig, ExecutorConfig, S3BaseConfig};
use singularity_common::records::{
    Artifact, ArtifactDownloadRequest, ArtifactList, EmbeddedArtifact, ExternalArtifact,
    RemoteArtifact, S3Artifact, S3ArtifactSignature, SingularityTaskExecutorData,
};
use tokio_util::sync::CancellationToken;

pub use error::{
    ArtifactListError, DownloaderError, DownloaderFallback, HttpFetchError, S3ReadError,
    StagingError,
};
pub use ownership::give_to_user;

use downloader::DownloaderClient;
use fetch::Fetcher;

use crate::settings::Settings;

/// What staging needs to know about the task and the agent.
#[derive(Debug, Clone)]
pub struct StagingContext {
    /// The task directory (`<sandbox>/<safeTaskId>`); it must exist.
    pub task_dir: PathBuf,
    /// The executor configuration (downloader use, signature settings).
    pub executor: ExecutorConfig,
    /// The s3base configuration (cache directory, S3 access, downloader address).
    pub s3: S3BaseConfig,
    /// The base configuration.
    pub base: BaseConfig,
}

impl StagingContext {
    /// The context of the task directory `task_dir` under `settings`.
    pub fn new(task_dir: impl Into<PathBuf>, settings: &Settings) -> Self {
        Self {
            task_dir: task_dir.into(),
            executor: settings.executor.clone(),
            s3: settings.s3.clone(),
            base: settings.base.clone(),
        }
    }
}

/// Stages the artifacts of `data` into `ctx.task_dir`; see the module documentation.
pub async fn stage_artifacts(
    ctx: &StagingContext,
    data: &SingularityTaskExecutorData,
    cancel: CancellationToken,
) -> Result<(), StagingError> {
    if cancel.is_cancelled() {
        return Err(StagingError::Cancelled);
    }
    let mut stager = Stager {
        ctx,
        fetcher: Fetcher::new(&ctx.s3),
    };
    let staging = stager.run(data);
    tokio::select! {
        biased;
        () = cancel.cancelled() => {
            tracing::info!(task_dir = %ctx.task_dir.display(), "artifact staging cancelled");
            Err(StagingError::Cancelled)
        }
        result = staging => result,
    }
}

/// The artifacts of one level: the executor data's, or an artifact list's.
#[derive(Debug, Default)]
struct ArtifactSet {
    embedded: Vec<EmbeddedArtifact>,
    s3: Vec<S3Artifact>,
    signatures: Vec<S3ArtifactSignature>,
    external: Vec<ExternalArtifact>,
}

impl From<ArtifactList> for ArtifactSet {
    fn from(list: ArtifactList) -> Self {
        ArtifactSet {
            embedded: list.embedded_artifacts,
            s3: list.s3_artifacts,
            signatures: list.s3_artifact_signatures,
            external: list.external_artifacts,
        }
    }
}

/// A placed artifact list, to expand.
struct PlacedList {
    name: String,
    path: PathBuf,
}

struct Stager<'a> {
    ctx: &'a StagingContext,
    fetcher: Fetcher,
}

impl Stager<'_> {
    async fn run(&mut self, data: &SingularityTaskExecutorData) -> Result<(), StagingError> {
        let executor_data = &data.executor_data;
        let top = ArtifactSet {
            embedded: executor_data.embedded_artifacts.clone(),
            s3: executor_data.s3_artifacts.clone(),
            signatures: executor_data
                .s3_artifact_signatures
                .clone()
                .unwrap_or_default(),
            external: executor_data.external_artifacts.clone(),
        };
        let lists = self.stage_set(&top).await?;
        for list in lists {
            let content = read_list(&list).await?;
            tracing::info!(
                artifact = %list.name,
                path = %list.path.display(),
                embedded = content.embedded.len(),
                s3 = content.s3.len(),
                signatures = content.signatures.len(),
                external = content.external.len(),
                "expanding artifact list"
            );
            let nested = self.stage_set(&content).await?;
            for inner in nested {
                tracing::warn!(
                    artifact = %inner.name,
                    path = %inner.path.display(),
                    "artifact list inside an artifact list: placed, not expanded"
                );
            }
        }
        Ok(())
    }

    /// Stages one level; returns the artifact lists it placed.
    async fn stage_set(&mut self, set: &ArtifactSet) -> Result<Vec<PlacedList>, StagingError> {
        for artifact in &set.embedded {
            self.stage_embedded(artifact).await?;
        }

        let mut s3: Vec<S3Artifact> = set.s3.clone();
        s3.extend(
            set.signatures
                .iter()
                .map(S3ArtifactSignature::to_s3_artifact),
        );
        if !s3.is_empty() {
            self.stage_s3(&s3).await?;
        }

        for artifact in &set.external {
            let target = self.target_dir(artifact);
            let cached = self.fetcher.fetch_external(artifact).await?;
            cache::place(&artifact.name, cached, &target, &artifact.filename).await?;
            tracing::info!(artifact = %artifact.name, target = %target.display(), "placed external artifact");
        }

        signatures::verify(self.ctx, &set.s3, &set.signatures).await?;

        let mut lists = Vec::new();
        for artifact in &s3 {
            self.collect_list(artifact, &mut lists);
        }
        for artifact in &set.external {
            self.collect_list(artifact, &mut lists);
        }
        Ok(lists)
    }

    fn collect_list(&self, artifact: &impl RemoteArtifact, lists: &mut Vec<PlacedList>) {
        if artifact.is_artifact_list() {
            lists.push(PlacedList {
                name: artifact.name().to_owned(),
                path: self.target_dir(artifact).join(artifact.filename()),
            });
        }
    }

    async fn stage_embedded(&self, artifact: &EmbeddedArtifact) -> Result<(), StagingError> {
        let target = self.target_dir(artifact);
        let name = artifact.name.clone();
        let filename = artifact.filename.clone();
        let content = artifact.content.clone();
        let md5 = artifact.md5sum.clone();
        let dir = target.clone();
        let written = tokio::task::spawn_blocking(move || {
            singularity_artifacts::write_embedded(&dir, &filename, &content, md5.as_deref())
        })
        .await?;
        let path = written.map_err(|source| StagingError::Embedded {
            name,
            source: Box::new(source),
        })?;
        tracing::info!(artifact = %artifact.name, path = %path.display(), "wrote embedded artifact");
        Ok(())
    }

    /// S3 artifacts and signatures: through the downloader when configured, falling back to
    /// in-process downloads of all of them if any request fails.
    async fn stage_s3(&mut self, artifacts: &[S3Artifact]) -> Result<(), StagingError> {
        if self.ctx.executor.use_local_download_service {
            match self.stage_s3_with_downloader(artifacts).await {
                Ok(()) => return Ok(()),
                Err(reason) => tracing::warn!(
                    task_dir = %self.ctx.task_dir.display(),
                    "{reason}; falling back to in-task fetch"
                ),
            }
        }
        for artifact in artifacts {
            let target = self.target_dir(artifact);
            let cached = self.fetcher.fetch_s3(artifact).await?;
            cache::place(&artifact.name, cached, &target, &artifact.filename).await?;
            tracing::info!(artifact = %artifact.name, target = %target.display(), "placed S3 artifact");
        }
        Ok(())
    }

    /// `Err` says why the downloader did not stage everything.
    async fn stage_s3_with_downloader(
        &self,
        artifacts: &[S3Artifact],
    ) -> Result<(), DownloaderFallback> {
        let client = DownloaderClient::from_config(&self.ctx.executor, &self.ctx.s3)
            .map_err(|source| DownloaderFallback::Unusable { source })?;
        let mut requests = Vec::with_capacity(artifacts.len());
        for artifact in artifacts {
            let target = self.target_dir(artifact);
            // The downloader extracts into existing directories only.
            if let Err(source) = tokio::fs::create_dir_all(&target).await {
                return Err(DownloaderFallback::CreateTarget {
                    path: target,
                    source,
                });
            }
            requests.push((
                artifact.name.clone(),
                ArtifactDownloadRequest {
                    target_directory: target,
                    s3_artifact: artifact.clone(),
                    timeout_millis: None,
                },
            ));
        }
        tracing::info!(
            url = client.url(),
            socket = ?self.ctx.s3.local_download_socket,
            artifacts = requests.len(),
            "requesting S3 artifacts from the local download service"
        );
        let failures = client.download_all(requests).await;
        if failures.is_empty() {
            return Ok(());
        }
        for failure in &failures {
            tracing::warn!(
                artifact = %failure.name,
                "local download service failed: {}",
                failure.error
            );
        }
        Err(DownloaderFallback::Failed {
            failed: failures.len(),
            requested: artifacts.len(),
        })
    }

    /// Where an artifact goes: the task directory, or the artifact's relative folder in it.
    fn target_dir(&self, artifact: &impl Artifact) -> PathBuf {
        target_dir(
            &self.ctx.task_dir,
            artifact.name(),
            artifact.target_folder_relative_to_task(),
        )
    }
}

fn target_dir(task_dir: &Path, name: &str, folder: Option<&str>) -> PathBuf {
    let Some(folder) = folder.filter(|f| !f.is_empty()) else {
        return task_dir.to_path_buf();
    };
    let relative = Path::new(folder);
    if relative.is_absolute() {
        tracing::warn!(artifact = %name, folder, "targetFolderRelativeToTask is absolute; using the task directory");
        return task_dir.to_path_buf();
    }
    if relative.components().any(|c| c == Component::ParentDir) {
        tracing::warn!(artifact = %name, folder, "targetFolderRelativeToTask contains `..`; using the task directory");
        return task_dir.to_path_buf();
    }
    task_dir.join(relative)
}

async fn read_list(list: &PlacedList) -> Result<ArtifactSet, StagingError> {
    let error = |source: ArtifactListError| StagingError::ArtifactList {
        name: list.name.clone(),
        path: list.path.clone(),
        source,
    };
    let bytes = tokio::fs::read(&list.path)
        .await
        .map_err(|e| error(ArtifactListError::Read(e)))?;
    let parsed: ArtifactList =
        serde_json::from_slice(&bytes).map_err(|e| error(ArtifactListError::Parse(e)))?;
    Ok(parsed.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_folders() {
        let task = Path::new("/s/task");
        assert_eq!(target_dir(task, "a", None), task);
        assert_eq!(target_dir(task, "a", Some("")), task);
        assert_eq!(
            target_dir(task, "a", Some("app/conf")),
            task.join("app/conf")
        );
        assert_eq!(target_dir(task, "a", Some("/etc")), task);
        assert_eq!(target_dir(task, "a", Some("app/../../x")), task);
    }
}
