//! Daemonless containers left behind: the OCI runtime's half of the orphan sweep.
//!
//! A daemonless container is a child of its executor, which deletes it when the task ends;
//! an executor that was killed leaves the runtime's state (and perhaps a running container)
//! and the bundle under `<ociImageStoreDirectory>/bundles`. Every container the runtime
//! (`ociRuntime`, `ociRuntimeRoot`) lists as `<dockerPrefix><taskId>` whose task Singularity
//! does not list as active is deleted by force (killed first) and its bundle removed. A
//! runtime that is not installed means no daemonless container was ever run here: nothing to
//! sweep, no error.

use std::collections::HashSet;
use std::io;
use std::path::Path;

use singularity_common::naming;
use singularity_containers::oci::{OciError, OciRuntime};

use crate::docker::SweepReport;

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
    Ok(report)
}
