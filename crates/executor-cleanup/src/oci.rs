//! Daemonless containers left behind: the OCI runtime's half of the orphan sweep.
//!
//! A daemonless container is a child of its executor, which deletes it when the task ends;
//! an executor that was killed leaves the runtime's state (and perhaps a running container)
//! and the bundle under `<ociImageStoreDirectory>/bundles`. Every container the runtime
//! (`ociRuntime`, `ociRuntimeRoot`) lists as `<dockerPrefix><taskId>` whose task Singularity
//! does not list as active is deleted by force (killed first) and its bundle removed. A
//! runtime that is not installed means no daemonless container was ever run here: nothing to
//! sweep, no error.
//!
//! An executor killed before the runtime created its container, or after deleting it but
//! before removing the bundle, leaves a bundle the runtime does not list; one killed while
//! unpacking an image leaves a directory in the store's `tmp/`. Bundles of tasks not active
//! go too, and `tmp/` entries untouched for [`STALE_UNPACK`].

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use singularity_common::naming;
use singularity_containers::oci::{OciError, OciRuntime};

use crate::docker::SweepReport;

/// Age past which an entry of the image store's `tmp/` is an abandoned unpacking: no import
/// takes a day.
pub const STALE_UNPACK: Duration = Duration::from_secs(24 * 3600);

/// Deletes the orphaned daemonless containers and their bundles under `bundles` (with
/// `dry_run`, only lists them).
pub async fn sweep(
    runtime: &OciRuntime,
    prefix: &str,
    bundles: &Path,
    active: &HashSet<String>,
    dry_run: bool,
) -> Result<SweepReport, OciError> {
    let mut report = SweepReport::default();
    let listed = match runtime.list(prefix).await {
        Ok(listed) => listed,
        Err(OciError::Spawn { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(
                runtime = %runtime.binary().display(),
                "no OCI runtime installed; no daemonless container to sweep"
            );
            return Ok(report);
        }
        Err(error) => return Err(error),
    };
    let listed_names: HashSet<String> = listed.iter().cloned().collect();
    for name in listed {
        let Some(task_id) = naming::task_id_from_container_name(prefix, &name) else {
            continue;
        };
        if active.contains(task_id) {
            report.kept.push(name);
            continue;
        }
        if dry_run {
            println!("would delete daemonless container {name}");
            report.removed.push(name);
            continue;
        }
        match runtime.delete(&name).await {
            Ok(()) => {
                let bundle = bundles.join(&name);
                match tokio::fs::remove_dir_all(&bundle).await {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => {
                        tracing::warn!(bundle = %bundle.display(), %error, "cannot remove the bundle of an orphaned container");
                    }
                }
                tracing::info!(name, "removed an orphaned daemonless container");
                report.removed.push(name);
            }
            Err(error) => {
                tracing::warn!(name, %error, "cannot remove an orphaned daemonless container");
                report.failed.push((name, error.to_string()));
            }
        }
    }
    remove_unlisted_bundles(bundles, prefix, active, &listed_names, dry_run).await;
    Ok(report)
}

/// Removes the bundles under `bundles` of tasks not active whose container the runtime does
/// not list.
async fn remove_unlisted_bundles(
    bundles: &Path,
    prefix: &str,
    active: &HashSet<String>,
    listed: &HashSet<String>,
    dry_run: bool,
) {
    let Ok(mut entries) = tokio::fs::read_dir(bundles).await else {
        return; // none made here
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(task_id) = naming::task_id_from_container_name(prefix, &name) else {
            continue;
        };
        if active.contains(task_id) || listed.contains(&name) {
            continue;
        }
        if dry_run {
            println!("would remove the bundle {}", entry.path().display());
            continue;
        }
        match tokio::fs::remove_dir_all(entry.path()).await {
            Ok(()) => tracing::info!(
                name,
                "removed the bundle of a container that never ran or was deleted"
            ),
            Err(error) => tracing::warn!(name, %error, "cannot remove an orphaned bundle"),
        }
    }
}

/// Removes the entries of the image store's `tmp/` (`store`) untouched for `older_than`:
/// unpackings and pulls of executors that were killed.
pub async fn remove_stale_unpackings(store: &Path, older_than: Duration, dry_run: bool) {
    let tmp = store.join("tmp");
    let Ok(mut entries) = tokio::fs::read_dir(&tmp).await else {
        return;
    };
    let now = SystemTime::now();
    while let Ok(Some(entry)) = entries.next_entry().await {
        let Ok(modified) = entry.metadata().await.and_then(|m| m.modified()) else {
            continue;
        };
        if now.duration_since(modified).unwrap_or_default() < older_than {
            continue;
        }
        let path = entry.path();
        if dry_run {
            println!("would remove the abandoned unpacking {}", path.display());
            continue;
        }
        let removed = if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
            tokio::fs::remove_dir_all(&path).await
        } else {
            tokio::fs::remove_file(&path).await
        };
        match removed {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed an abandoned image unpacking")
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot remove an abandoned image unpacking");
            }
        }
    }
}
