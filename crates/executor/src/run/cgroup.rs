//! The executor's own cgroup: the one a Mesos agent with cgroup isolation made for the task
//! (`mesosCgroupIsolation`, on by default). Containers are created under it
//! ([`super::container`]), so the agent's limits and statistics cover them, and
//! `cpuHardLimit` is its CFS quota ([`CpuHardLimit`]), put back by a watcher whenever
//! something else rewrites it: the agent does on every resource update.
//!
//! The cgroup is the deepest one of `procCgroupFormat` (`/proc/%s/cgroup`, `%s` the
//! executor's pid) among the resource controllers; the hierarchies come from
//! `/proc/self/mountinfo`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use inotify::{Inotify, WatchMask};
use singularity_containers::cgroup::{CgroupVersion, CpuQuota, Membership, Mounts, ParentError};
use singularity_logs::ServiceLog;
use tokio::task::{AbortHandle, JoinHandle};

use super::{BackendError, BoxFuture, Preparation, StartedTask, TaskBackend, TaskSpec};

/// How often the quota is checked even without an event (events can be lost when the
/// watcher's queue overflows, or the watch could not be set up).
const RESCAN: Duration = Duration::from_secs(10);

/// The executor's cgroup, or why it has none that can be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorCgroup {
    path: Result<String, String>,
    cpu: Result<(CgroupVersion, PathBuf), String>,
}

impl ExecutorCgroup {
    /// The cgroup of process `pid` from `proc_cgroup_format` (`%s` replaced by the pid), in
    /// the hierarchies of `mounts`.
    pub fn read(proc_cgroup_format: &str, pid: u32, mounts: &Mounts) -> Self {
        let file = PathBuf::from(proc_cgroup_format.replacen("%s", &pid.to_string(), 1));
        let membership = match Membership::read(&file) {
            Ok(membership) => membership,
            Err(error) => {
                return Self {
                    path: Err(error.to_string()),
                    cpu: Err(error.to_string()),
                };
            }
        };
        let path = match membership.deepest() {
            None => Err(format!("{} names no cgroup", file.display())),
            Some(path) if path.trim_matches('/').is_empty() => Err(ParentError::Root.to_string()),
            // An engine would create a missing parent and put the container there, away from
            // the executor.
            Some(path)
                if !mounts
                    .hierarchies()
                    .iter()
                    .filter_map(|h| h.dir(path))
                    .any(|dir| dir.is_dir()) =>
            {
                Err(format!(
                    "the executor's cgroup {path} (from {}) exists in no mounted cgroup hierarchy",
                    file.display()
                ))
            }
            Some(path) => Ok(path.to_owned()),
        };
        let cpu = match mounts.controller_dir(&membership, "cpu") {
            None => Err(format!(
                "no mounted cgroup hierarchy holds the executor's cpu cgroup (from {})",
                file.display()
            )),
            Some((_, dir)) if mounts.hierarchies().iter().any(|h| h.mount_point == dir) => {
                Err(format!(
                    "the executor's cpu cgroup is the root of its hierarchy ({}): a quota there \
                     would hold the whole host",
                    dir.display()
                ))
            }
            Some((_, dir)) if !dir.is_dir() => Err(format!(
                "the executor's cpu cgroup {} does not exist",
                dir.display()
            )),
            Some(found) => Ok(found),
        };
        Self { path, cpu }
    }

    /// This process's cgroup, with the hierarchies mounted here.
    pub fn of_self(proc_cgroup_format: &str) -> Self {
        Self::read(
            proc_cgroup_format,
            std::process::id(),
            singularity_containers::cgroup::host_mounts(),
        )
    }

    /// The cgroup (a path as `/proc/<pid>/cgroup` gives it), or why there is none.
    pub fn path(&self) -> Result<&str, &str> {
        self.path.as_deref().map_err(String::as_str)
    }

    /// The directory of its cpu controller and the interface it has, or why there is none.
    pub fn cpu_dir(&self) -> Result<(CgroupVersion, &Path), &str> {
        match &self.cpu {
            Ok((version, dir)) => Ok((*version, dir.as_path())),
            Err(reason) => Err(reason),
        }
    }
}

/// Puts `cpuHardLimit` into the executor's cpu cgroup while a task with one runs, around any
/// backend: `cpuHardLimit × defaultCfsPeriod` µs per `defaultCfsPeriod` (v1
/// `cpu.cfs_quota_us` and `cpu.cfs_period_us`, v2 `cpu.max`), written before the task starts
/// and put back whenever it changes until the task has ended. Failing to, the task still
/// runs; the reason is logged. Without the executor's cgroup (`mesosCgroupIsolation: false`)
/// a plain task's limit has nowhere to go and is logged as not applied; a container's is its
/// own quota ([`super::container::plan`]).
///
/// Tasks of one executor share its cgroup: the latest task's limit holds, and its watch
/// replaces the earlier one (two watches wanting different values would rewrite each other's
/// values forever).
pub struct CpuHardLimit {
    inner: Arc<dyn TaskBackend>,
    cgroup: Option<Arc<ExecutorCgroup>>,
    period_us: u64,
    latest: Mutex<Option<AbortHandle>>,
}

impl fmt::Debug for CpuHardLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpuHardLimit")
            .field("inner", &self.inner)
            .field("cgroup", &self.cgroup)
            .field("period_us", &self.period_us)
            .finish()
    }
}

impl CpuHardLimit {
    /// `inner`'s tasks, with their `cpuHardLimit` as the quota of `cgroup`, per `period_us`.
    pub fn new(
        inner: Arc<dyn TaskBackend>,
        cgroup: Option<Arc<ExecutorCgroup>>,
        period_us: u64,
    ) -> Self {
        Self {
            inner,
            cgroup,
            period_us: period_us.max(1),
            latest: Mutex::new(None),
        }
    }

    fn enforce(&self, spec: &TaskSpec, cores: u64) -> Option<QuotaWatch> {
        let task_id = spec.task_id.as_str();
        let Some(cgroup) = &self.cgroup else {
            if !spec.is_docker() {
                tracing::warn!(
                    task_id,
                    "cpuHardLimit is not applied: mesosCgroupIsolation is off, so the task has no cgroup of its own"
                );
            }
            return None;
        };
        let (version, dir) = match cgroup.cpu_dir() {
            Ok(found) => found,
            Err(reason) => {
                tracing::warn!(task_id, reason, "cpuHardLimit is not applied");
                return None;
            }
        };
        let wanted = CpuQuota::cores(cores, self.period_us);
        put_back(task_id, dir, version, wanted);
        tracing::info!(
            task_id,
            cgroup = %dir.display(),
            quota_us = wanted.quota_us,
            period_us = wanted.period_us,
            "cpuHardLimit applied; watching the quota"
        );
        let watch = QuotaWatch::start(task_id, dir, version, wanted);
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(earlier) = latest.replace(watch.task.abort_handle()) {
            earlier.abort();
        }
        Some(watch)
    }
}

impl TaskBackend for CpuHardLimit {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn before_staging<'a>(&'a self, spec: &'a TaskSpec) -> Option<Preparation<'a>> {
        self.inner.before_staging(spec)
    }

    fn start<'a>(
        &'a self,
        spec: &'a TaskSpec,
        log: Arc<ServiceLog>,
    ) -> BoxFuture<'a, Result<StartedTask, BackendError>> {
        Box::pin(async move {
            let watch = spec
                .cpu_hard_limit
                .and_then(|cores| self.enforce(spec, cores));
            let mut started = self.inner.start(spec, log).await?;
            if let Some(watch) = watch {
                let exit = started.exit;
                started.exit = Box::pin(async move {
                    let status = exit.await;
                    drop(watch);
                    status
                });
            }
            Ok(started)
        })
    }
}

/// Reads the quota of `dir` and writes `wanted` where it differs; logs what it did.
fn put_back(task_id: &str, dir: &Path, version: CgroupVersion, wanted: CpuQuota) {
    let current = match CpuQuota::read(dir, version) {
        Ok(current) if current == wanted => return,
        Ok(current) => Some(current),
        Err(error) => {
            tracing::warn!(task_id, %error, "cannot read the CFS quota");
            None
        }
    };
    match wanted.write(dir, version, current.as_ref()) {
        Ok(()) => {
            if let Some(found) = current {
                tracing::info!(
                    task_id,
                    found_quota_us = found.quota_us,
                    found_period_us = found.period_us,
                    quota_us = wanted.quota_us,
                    period_us = wanted.period_us,
                    "CFS quota set"
                );
            }
        }
        Err(error) => tracing::warn!(task_id, %error, "cannot set the CFS quota"),
    }
}

/// Keeps a cgroup's quota at one value until dropped: inotify on the cgroup directory wakes
/// it when one of the quota files is written, and a rescan every [`RESCAN`] catches what
/// events miss.
#[derive(Debug)]
struct QuotaWatch {
    task: JoinHandle<()>,
}

impl QuotaWatch {
    fn start(task_id: &str, dir: &Path, version: CgroupVersion, wanted: CpuQuota) -> Self {
        let events = Inotify::init().and_then(|inotify| {
            inotify.watches().add(dir, WatchMask::MODIFY)?;
            inotify.into_event_stream(vec![0_u8; 4096])
        });
        let events = match events {
            Ok(events) => Some(events),
            Err(error) => {
                tracing::warn!(
                    task_id,
                    cgroup = %dir.display(),
                    %error,
                    "cannot watch the CFS quota; it is checked every {}s instead",
                    RESCAN.as_secs()
                );
                None
            }
        };
        let task_id = task_id.to_owned();
        let dir = dir.to_owned();
        let files = CpuQuota::files(version);
        let task = tokio::spawn(async move {
            let mut events = events;
            let mut rescan = tokio::time::interval(RESCAN);
            rescan.tick().await;
            loop {
                let event = async {
                    match events.as_mut() {
                        Some(events) => events.next().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    event = event => match event {
                        Some(Ok(event)) => {
                            let named = event.name.as_deref().and_then(|n| n.to_str());
                            if named.is_some_and(|n| files.contains(&n)) {
                                put_back(&task_id, &dir, version, wanted);
                            }
                        }
                        Some(Err(error)) => {
                            tracing::warn!(task_id, %error, "the CFS quota watch failed; checking every {}s", RESCAN.as_secs());
                            events = None;
                        }
                        None => events = None,
                    },
                    _ = rescan.tick() => put_back(&task_id, &dir, version, wanted),
                }
            }
        });
        Self { task }
    }
}

impl Drop for QuotaWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn cgroup_file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("cgroup-%s");
        std::fs::write(dir.path().join("cgroup-7"), text).expect("write");
        let format = file.display().to_string();
        (dir, format)
    }

    #[test]
    fn an_unreadable_root_or_missing_cgroup_is_a_reason_not_a_failure() {
        let mounts = Mounts::parse(HYBRID);
        let none = ExecutorCgroup::read("/nonexistent/%s/cgroup", 7, &mounts);
        assert!(
            none.path()
                .expect_err("no file")
                .starts_with("cannot read /nonexistent/7/cgroup: "),
            "{none:?}"
        );
        assert!(none.cpu_dir().is_err());

        let (_dir, format) = cgroup_file("2:cpu:/\n1:memory:/\n0::/\n");
        let root = ExecutorCgroup::read(&format, 7, &mounts);
        assert_eq!(
            root.path(),
            Err("the executor is in the root cgroup, not in a cgroup of its own")
        );
        assert!(
            root.cpu_dir()
                .expect_err("root")
                .starts_with("the executor's cpu cgroup is the root"),
            "{root:?}"
        );

        let (_dir, format) = cgroup_file("2:cpu:/se-test-gone\n1:memory:/se-test-gone\n0::/\n");
        let gone = ExecutorCgroup::read(&format, 7, &mounts);
        assert!(
            gone.path()
                .expect_err("gone")
                .starts_with("the executor's cgroup /se-test-gone (from "),
            "{gone:?}"
        );
        assert!(
            gone.cpu_dir()
                .expect_err("gone")
                .ends_with("/sys/fs/cgroup/cpu/se-test-gone does not exist"),
            "{gone:?}"
        );
    }

    #[tokio::test]
    async fn the_watch_puts_the_quota_back_and_stops_when_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let quota = dir.path().join(CpuQuota::V1_QUOTA);
        std::fs::write(&quota, "-1").expect("quota");
        std::fs::write(dir.path().join(CpuQuota::V1_PERIOD), "100000").expect("period");
        let wanted = CpuQuota::cores(3, 100_000);
        put_back("t", dir.path(), CgroupVersion::V1, wanted);
        assert_eq!(std::fs::read_to_string(&quota).expect("quota"), "300000");

        let watch = QuotaWatch::start("t", dir.path(), CgroupVersion::V1, wanted);
        // Let the watcher reach its first wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
        std::fs::write(&quota, "150000").expect("overwrite");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while std::fs::read_to_string(&quota).expect("quota") != "300000" {
            assert!(tokio::time::Instant::now() < deadline, "not put back");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        drop(watch);
        tokio::time::sleep(Duration::from_millis(20)).await;
        std::fs::write(&quota, "150000").expect("overwrite");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(std::fs::read_to_string(&quota).expect("quota"), "150000");
    }

    fn plain_task(dir: &Path, id: &str, cores: u64) -> TaskSpec {
        TaskSpec {
            task_id: id.into(),
            task_dir: dir.to_path_buf(),
            app_dir: dir.to_path_buf(),
            command: "sleep 30".into(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            run_as: None,
            max_open_files: None,
            source_profile_scripts: false,
            service_log: dir.join(format!("{id}.log")),
            container: None,
            container_env: Vec::new(),
            cpus: None,
            mem_mib: None,
            max_threads: None,
            cpu_hard_limit: Some(cores),
        }
    }

    /// A service log of its own for task `id`, in a directory under `dir`.
    fn log(dir: &Path, id: &str) -> Arc<ServiceLog> {
        let task_dir = dir.join(id);
        std::fs::create_dir_all(&task_dir).expect("task dir");
        let data = serde_json::from_str(r#"{"cmd":"x"}"#).expect("data");
        let settings = singularity_logs::LogSettings::new(
            &singularity_common::config::ExecutorConfig::default(),
            &data,
            &task_dir,
        )
        .expect("settings");
        Arc::new(ServiceLog::open(settings).expect("log"))
    }

    async fn stays(file: &Path, value: &str) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(std::fs::read_to_string(file).expect("read"), value);
    }

    async fn becomes(file: &Path, value: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while std::fs::read_to_string(file).expect("read") != value {
            assert!(tokio::time::Instant::now() < deadline, "never {value}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn the_latest_tasks_limit_holds_until_it_ends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let quota = dir.path().join(CpuQuota::V1_QUOTA);
        std::fs::write(&quota, "-1").expect("quota");
        std::fs::write(dir.path().join(CpuQuota::V1_PERIOD), "100000").expect("period");
        let cgroup = ExecutorCgroup {
            path: Ok("/mesos/x".into()),
            cpu: Ok((CgroupVersion::V1, dir.path().to_path_buf())),
        };
        let backend = CpuHardLimit::new(
            Arc::new(super::super::process::ProcessBackend::new("/nonexistent")),
            Some(Arc::new(cgroup)),
            100_000,
        );

        let first = backend
            .start(&plain_task(dir.path(), "a", 2), log(dir.path(), "a"))
            .await
            .expect("starts");
        assert_eq!(std::fs::read_to_string(&quota).expect("read"), "200000");
        let second = backend
            .start(&plain_task(dir.path(), "b", 3), log(dir.path(), "b"))
            .await
            .expect("starts");
        assert_eq!(std::fs::read_to_string(&quota).expect("read"), "300000");

        std::fs::write(&quota, "150000").expect("overwrite");
        becomes(&quota, "300000").await;
        stays(&quota, "300000").await;

        second.stop(Duration::from_secs(5)).await.expect("stops");
        std::fs::write(&quota, "150000").expect("overwrite");
        stays(&quota, "150000").await;
        first.stop(Duration::from_secs(5)).await.expect("stops");
    }

    #[test]
    fn the_cgroup_is_read_from_the_configured_file() {
        // This process's own cgroup, wherever the tests run: it exists.
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("own cgroup");
        let (_dir, format) = cgroup_file(&own);
        let mounts = Mounts::read().expect("mounts");
        let cgroup = ExecutorCgroup::read(&format, 7, &mounts);
        let deepest = Membership::parse(&own)
            .expect("parses")
            .deepest()
            .map(str::to_owned);
        match deepest.as_deref() {
            Some("/") | None => assert!(cgroup.path().is_err()),
            Some(path) => assert_eq!(cgroup.path(), Ok(path)),
        }
    }
}
