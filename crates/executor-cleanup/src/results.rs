//! The run's statistics: `<executorCleanupResultsDirectory>/<epochMillis><suffix>` with
//! Singularity's fields, written atomically; old ones pruned; optionally the same counts as a
//! Prometheus text file for node_exporter's textfile collector.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use singularity_common::fsio::{write_bytes_atomic, write_json_atomic};
use singularity_common::naming;
use singularity_common::records::CleanupResults;

use crate::error::RunError;
use crate::metrics;
use crate::settings::Settings;

/// What a run reports besides Singularity's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Singularity's counters and the reason a run stopped early.
    pub results: CleanupResults,
    /// Containers stopped and removed by the orphan sweep.
    pub containers_removed: u64,
    /// Containers the sweep failed to remove.
    pub container_errors: u64,
}

/// Writes the results file (and the text file when configured) and prunes old results;
/// returns the results file.
pub fn write(
    report: &RunReport,
    settings: &Settings,
    now: SystemTime,
) -> Result<PathBuf, RunError> {
    let cleanup = &settings.cleanup;
    let millis = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let path = cleanup
        .executor_cleanup_results_directory
        .join(naming::cleanup_results_file_name(
            millis,
            &cleanup.executor_cleanup_results_suffix,
        ));
    write_json_atomic(&path, &report.results).map_err(RunError::Results)?;
    if cleanup.executor_cleanup_results_max_age_millis > 0 {
        prune(
            &cleanup.executor_cleanup_results_directory,
            &cleanup.executor_cleanup_results_suffix,
            Duration::from_millis(cleanup.executor_cleanup_results_max_age_millis),
            now,
            &path,
        );
    }
    if let Some(textfile) = cleanup
        .prometheus_textfile_path
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        write_bytes_atomic(textfile, prometheus_text(report, millis).as_bytes()).map_err(
            |source| RunError::Textfile {
                path: textfile.clone(),
                source,
            },
        )?;
    }
    Ok(path)
}

/// Deletes results files older than `max_age`, never `keep`.
fn prune(dir: &Path, suffix: &str, max_age: Duration, now: SystemTime, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let named = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(suffix) && !n.starts_with('.'));
        if !named || path == keep {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|modified| now.duration_since(modified).is_ok_and(|age| age > max_age));
        if old && let Err(error) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), %error, "cannot delete an old results file");
        }
    }
}

/// The counts in Prometheus text exposition format.
pub fn prometheus_text(report: &RunReport, millis: i64) -> String {
    let r = &report.results;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP {} Task definitions of the last run, by outcome.\n# TYPE {} gauge",
        metrics::TASKS,
        metrics::TASKS
    );
    for (outcome, value) in [
        ("cleaned", r.successfully_cleaned_tasks),
        ("waiting", r.waiting_tasks),
        ("running", r.running_tasks_ignored),
        ("io_error", r.io_error_tasks),
        ("error", r.error_tasks),
        ("invalid", r.invalid_tasks),
    ] {
        let _ = writeln!(out, "{}{{outcome=\"{outcome}\"}} {value}", metrics::TASKS);
    }
    for (name, help, value) in [
        (
            metrics::TASK_FILES,
            "Task definition files found by the last run.",
            r.total_task_files,
        ),
        (
            metrics::ACTIVE_TASKS,
            "Tasks Singularity reported active on this agent.",
            r.mesos_running_tasks,
        ),
        (
            metrics::CONTAINERS_REMOVED,
            "Orphaned containers removed by the last run.",
            report.containers_removed,
        ),
        (
            metrics::CONTAINER_ERRORS,
            "Orphaned containers the last run failed to remove.",
            report.container_errors,
        ),
        (
            metrics::ABORTED,
            "1 when the last run stopped before cleaning (see errorMessage in its results file).",
            u64::from(r.error_message.is_some()),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP {name} When the last run ended, in seconds since the epoch.\n# TYPE {name} gauge\n{name} {}",
        millis as f64 / 1000.0,
        name = metrics::LAST_RUN,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_file_has_every_count_once() {
        let report = RunReport {
            results: CleanupResults {
                successfully_cleaned_tasks: 3,
                error_message: Some("API down".into()),
                ..CleanupResults::default()
            },
            containers_removed: 2,
            container_errors: 0,
        };
        let text = prometheus_text(&report, 1_700_000_000_500);
        assert!(text.contains("singularity_executor_cleanup_tasks{outcome=\"cleaned\"} 3\n"));
        assert!(text.contains("singularity_executor_cleanup_aborted 1\n"));
        assert!(text.contains("singularity_executor_cleanup_containers_removed 2\n"));
        assert!(
            text.contains("singularity_executor_cleanup_last_run_timestamp_seconds 1700000000.5\n")
        );
        assert_eq!(text.matches("# TYPE").count(), 7);
    }

    #[test]
    fn pruning_keeps_new_files_and_others() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let old = dir.path().join("1.cleanup.json");
        let new = dir.path().join("2.cleanup.json");
        let other = dir.path().join("notes.txt");
        for p in [&old, &new, &other] {
            std::fs::write(p, "{}").unwrap();
        }
        let past = now - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(past)
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(&other)
            .unwrap()
            .set_modified(past)
            .unwrap();
        prune(
            dir.path(),
            ".cleanup.json",
            Duration::from_secs(60),
            now,
            &new,
        );
        assert!(!old.exists());
        assert!(new.exists());
        assert!(other.exists());
    }
}
