//! Cgroups seen from the host: where the hierarchies are mounted (`/proc/self/mountinfo`,
//! no `findmnt`), which cgroups a process is in (`/proc/<pid>/cgroup`), the parent an engine
//! takes to create containers under a given cgroup, a cgroup's CFS quota, and a container's
//! thread count.
//!
//! cgroup v1 (a hierarchy per controller, or several co-mounted), v2 (unified) and the hybrid
//! of both are told apart from the mounts, never assumed from paths.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where the kernel lists the mounts this process sees.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The cgroup interface a controller is used through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// A v1 hierarchy holding the controller.
    V1,
    /// The unified v2 hierarchy.
    V2,
}

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The cgroup shown at the mount point: `/`, unless the mount shows a subtree (a bind
    /// mount, or a cgroup namespace).
    pub root: String,
    /// v1: its controllers, and `name=...` for a named hierarchy; empty for v2.
    pub controllers: Vec<String>,
    /// The unified (v2) hierarchy.
    pub unified: bool,
}

impl Hierarchy {
    /// The directory of `cgroup` (a path as `/proc/<pid>/cgroup` gives it) under this mount;
    /// `None` when the mount does not show that cgroup.
    pub fn dir(&self, cgroup: &str) -> Option<PathBuf> {
        let relative = if self.root == "/" {
            cgroup
        } else {
            let rest = cgroup.strip_prefix(self.root.as_str())?;
            if !rest.is_empty() && !rest.starts_with('/') {
                return None;
            }
            rest
        };
        let relative = relative.trim_start_matches('/');
        if relative.split('/').any(|part| part == "..") {
            return None;
        }
        Some(if relative.is_empty() {
            self.mount_point.clone()
        } else {
            self.mount_point.join(relative)
        })
    }

    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The cgroup hierarchies mounted on this host, in mount order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    hierarchies: Vec<Hierarchy>,
}

impl Mounts {
    /// The cgroup mounts of a `/proc/<pid>/mountinfo` text; other lines are skipped.
    pub fn parse(mountinfo: &str) -> Self {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for line in mountinfo.lines() {
            let Some(hierarchy) = parse_mount_line(line) else {
                continue;
            };
            // A hierarchy mounted twice (bind mounts) is used where it was mounted first.
            let seen = hierarchies
                .iter()
                .any(|h| h.unified == hierarchy.unified && h.controllers == hierarchy.controllers);
            if !seen {
                hierarchies.push(hierarchy);
            }
        }
        Self { hierarchies }
    }

    /// The mounts this process sees ([`MOUNTINFO`]).
    pub fn read() -> io::Result<Self> {
        Ok(Self::parse(&fs::read_to_string(MOUNTINFO)?))
    }

    /// Every hierarchy.
    pub fn hierarchies(&self) -> &[Hierarchy] {
        &self.hierarchies
    }

    /// The v1 hierarchy holding `controller` (`cpu`, `memory`, `name=systemd`).
    pub fn v1(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|h| !h.unified && h.has(controller))
    }

    /// The unified hierarchy.
    pub fn unified(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.unified)
    }

    /// The directory holding `controller`'s files for a process in `membership`, and which
    /// interface it is: the v1 hierarchy of the controller, else the unified one (on a hybrid
    /// host the unified hierarchy holds no controller that v1 holds).
    pub fn controller_dir(
        &self,
        membership: &Membership,
        controller: &str,
    ) -> Option<(CgroupVersion, PathBuf)> {
        if let Some(hierarchy) = self.v1(controller) {
            let path = membership.v1_path(controller)?;
            return Some((CgroupVersion::V1, hierarchy.dir(path)?));
        }
        let path = membership.unified_path()?;
        Some((CgroupVersion::V2, self.unified()?.dir(path)?))
    }
}

/// The mounts of this host, read once; none when `/proc/self/mountinfo` cannot be read.
pub fn host_mounts() -> &'static Mounts {
    static MOUNTS: OnceLock<Mounts> = OnceLock::new();
    MOUNTS.get_or_init(|| {
        Mounts::read().unwrap_or_else(|error| {
            tracing::warn!(file = MOUNTINFO, %error, "cannot read the cgroup mounts");
            Mounts::default()
        })
    })
}

/// One `mountinfo` line as a cgroup hierarchy: `id parent major:minor root mount-point
/// options [optional fields...] - fstype source super-options`.
fn parse_mount_line(line: &str) -> Option<Hierarchy> {
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let root = fields.nth(3)?;
    let mount_point = fields.next()?;
    let mut after = after.split(' ');
    let fstype = after.next()?;
    let super_options = after.nth(1).unwrap_or_default();
    let (unified, controllers) = match fstype {
        "cgroup2" => (true, Vec::new()),
        "cgroup" => {
            // The super options name the hierarchy's controllers among mount flags.
            let controllers = super_options
                .split(',')
                .filter(|o| {
                    !matches!(*o, "rw" | "ro")
                        && !is_v1_mount_flag(o)
                        && (!o.contains('=') || o.starts_with("name="))
                })
                .map(str::to_owned)
                .collect();
            (false, controllers)
        }
        _ => return None,
    };
    Some(Hierarchy {
        mount_point: PathBuf::from(unescape(mount_point)),
        root: unescape(root),
        controllers,
        unified,
    })
}

/// v1 mount options that are not controllers.
fn is_v1_mount_flag(option: &str) -> bool {
    matches!(
        option,
        "noprefix" | "clone_children" | "xattr" | "cpuset_v2_mode" | "favordynmods"
    ) || option.starts_with("release_agent=")
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        if bytes[i] == b'\\'
            && let Some(digits) = octal
        {
            let code = digits
                .iter()
                .fold(0_u32, |n, d| n * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(code).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// v1: the hierarchy's controllers (`name=...` for a named one); empty: the v2 line.
    controllers: Vec<String>,
    path: String,
}

/// The cgroups a process is in, from its `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    entries: Vec<Entry>,
}

/// A `/proc/<pid>/cgroup` file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// It cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A line is not `id:controllers:path`.
    #[error("{}: line {line:?} is not `id:controllers:path`", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line.
        line: String,
    },
}

impl Membership {
    /// Parses a `/proc/<pid>/cgroup` text; `Err` holds the first malformed line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut fields = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(line.to_owned());
            };
            if !path.starts_with('/') {
                return Err(line.to_owned());
            }
            entries.push(Entry {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path: path.to_owned(),
            });
        }
        Ok(Self { entries })
    }

    /// Reads and parses `file` (`/proc/<pid>/cgroup`).
    pub fn read(file: &Path) -> Result<Self, MembershipError> {
        let text = fs::read_to_string(file).map_err(|source| MembershipError::Read {
            path: file.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|line| MembershipError::Malformed {
            path: file.to_owned(),
            line,
        })
    }

    /// The cgroup of the v1 hierarchy holding `controller`.
    pub fn v1_path(&self, controller: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.controllers.iter().any(|c| c == controller))
            .map(|e| e.path.as_str())
    }

    /// The cgroup in the unified hierarchy (the `0::` line).
    pub fn unified_path(&self) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.controllers.is_empty())
            .map(|e| e.path.as_str())
    }

    /// The deepest cgroup among the resource controllers: the one a Mesos agent made for the
    /// executor (`/mesos/<container id>`). Named v1 hierarchies (`name=systemd`) and, on a
    /// hybrid host, the unified line are left out: the agent does not place the executor
    /// there. The first of equally deep ones wins.
    pub fn deepest(&self) -> Option<&str> {
        let resource = |e: &&Entry| {
            !e.controllers.is_empty() && e.controllers.iter().all(|c| !c.starts_with("name="))
        };
        let candidates: Vec<&Entry> = if self.entries.iter().any(|e| resource(&e)) {
            self.entries.iter().filter(resource).collect()
        } else {
            self.entries
                .iter()
                .filter(|e| e.controllers.is_empty())
                .collect()
        };
        let depth = |path: &str| path.split('/').filter(|p| !p.is_empty()).count();
        let mut best: Option<&Entry> = None;
        for entry in candidates {
            if best.is_none_or(|b| depth(&entry.path) > depth(&b.path)) {
                best = Some(entry);
            }
        }
        best.map(|e| e.path.as_str())
    }
}

/// How an engine makes containers' cgroups (`docker info`'s `CgroupDriver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    /// Directories in the cgroup filesystem: a parent is a cgroup path.
    Cgroupfs,
    /// systemd units: a parent is a slice name.
    Systemd,
}

/// Why containers cannot be created under a cgroup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParentError {
    /// The root cgroup: nothing made a cgroup for the executor.
    #[error("the executor is in the root cgroup, not in a cgroup of its own")]
    Root,
    /// The systemd driver takes only slices.
    #[error(
        "the engine's systemd cgroup driver takes only a slice as the parent, and {path} is not a slice"
    )]
    NotASlice {
        /// The cgroup.
        path: String,
    },
}

/// The cgroup parent an engine with `driver` takes to create containers under `cgroup` (a
/// path as `/proc/<pid>/cgroup` gives it): the path itself for cgroupfs, the innermost slice
/// (`/mesos.slice/mesos-x.slice` → `mesos-x.slice`) for systemd.
pub fn engine_parent(driver: CgroupDriver, cgroup: &str) -> Result<String, ParentError> {
    let parts: Vec<&str> = cgroup.split('/').filter(|p| !p.is_empty()).collect();
    let Some(last) = parts.last() else {
        return Err(ParentError::Root);
    };
    match driver {
        CgroupDriver::Cgroupfs => Ok(format!("/{}", parts.join("/"))),
        CgroupDriver::Systemd => {
            // systemd spells nesting in the name: `a-b.slice` lives in `a.slice`.
            let mut expected_prefix = String::new();
            for part in &parts {
                let Some(name) = part.strip_suffix(".slice") else {
                    return Err(ParentError::NotASlice {
                        path: cgroup.to_owned(),
                    });
                };
                if !name.starts_with(&expected_prefix) || name.is_empty() {
                    return Err(ParentError::NotASlice {
                        path: cgroup.to_owned(),
                    });
                }
                expected_prefix = format!("{name}-");
            }
            Ok((*last).to_owned())
        }
    }
}

/// A cgroup's CFS bandwidth limit: `quota_us` of CPU time per `period_us` (v1
/// `cpu.cfs_quota_us` and `cpu.cfs_period_us`, v2 `cpu.max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    /// µs per period; `None`: no limit.
    pub quota_us: Option<u64>,
    /// The period in µs.
    pub period_us: u64,
}

/// A cgroup file that cannot be read, understood or written.
#[derive(Debug, thiserror::Error)]
pub enum CgroupFileError {
    /// Reading failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The content is not what the kernel writes there.
    #[error("{}: unexpected content {content:?}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held.
        content: String,
    },
    /// Writing failed.
    #[error("cannot write {value} to {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The value.
        value: String,
        /// The cause.
        source: io::Error,
    },
}

impl CpuQuota {
    /// v1 quota file.
    pub const V1_QUOTA: &str = "cpu.cfs_quota_us";
    /// v1 period file.
    pub const V1_PERIOD: &str = "cpu.cfs_period_us";
    /// v2 file (`quota period`, `max period`).
    pub const V2_MAX: &str = "cpu.max";

    /// `cores` CPUs' worth of time per `period_us`.
    pub fn cores(cores: u64, period_us: u64) -> Self {
        Self {
            quota_us: Some(cores.saturating_mul(period_us)),
            period_us,
        }
    }

    /// The files holding the limit in a cgroup directory of `version`.
    pub fn files(version: CgroupVersion) -> &'static [&'static str] {
        match version {
            CgroupVersion::V1 => &[Self::V1_QUOTA, Self::V1_PERIOD],
            CgroupVersion::V2 => &[Self::V2_MAX],
        }
    }

    /// The limit of the cgroup directory `dir`.
    pub fn read(dir: &Path, version: CgroupVersion) -> Result<Self, CgroupFileError> {
        match version {
            CgroupVersion::V1 => {
                let quota = read_trimmed(&dir.join(Self::V1_QUOTA))?;
                let period = read_trimmed(&dir.join(Self::V1_PERIOD))?;
                let quota_us = match quota.1.as_str() {
                    "-1" => None,
                    n => Some(n.parse().map_err(|_| parse_error(quota.0.clone(), n))?),
                };
                let period_us = period
                    .1
                    .parse()
                    .map_err(|_| parse_error(period.0.clone(), &period.1))?;
                Ok(Self {
                    quota_us,
                    period_us,
                })
            }
            CgroupVersion::V2 => {
                let (path, content) = read_trimmed(&dir.join(Self::V2_MAX))?;
                let (quota, period) = content
                    .split_once(' ')
                    .ok_or_else(|| parse_error(path.clone(), &content))?;
                let quota_us = match quota {
                    "max" => None,
                    n => Some(n.parse().map_err(|_| parse_error(path.clone(), &content))?),
                };
                let period_us = period
                    .parse()
                    .map_err(|_| parse_error(path.clone(), &content))?;
                Ok(Self {
                    quota_us,
                    period_us,
                })
            }
        }
    }

    /// Writes this limit into the cgroup directory `dir`; on v1 only the files that differ
    /// from `current`, period first (the kernel checks each value against the other).
    pub fn write(
        &self,
        dir: &Path,
        version: CgroupVersion,
        current: Option<&CpuQuota>,
    ) -> Result<(), CgroupFileError> {
        let quota = self
            .quota_us
            .map_or_else(|| "-1".to_owned(), |q| q.to_string());
        match version {
            CgroupVersion::V1 => {
                if current.is_none_or(|c| c.period_us != self.period_us) {
                    write_value(&dir.join(Self::V1_PERIOD), &self.period_us.to_string())?;
                }
                if current.is_none_or(|c| c.quota_us != self.quota_us) {
                    write_value(&dir.join(Self::V1_QUOTA), &quota)?;
                }
                Ok(())
            }
            CgroupVersion::V2 => {
                let quota = self
                    .quota_us
                    .map_or_else(|| "max".to_owned(), |q| q.to_string());
                write_value(
                    &dir.join(Self::V2_MAX),
                    &format!("{quota} {}", self.period_us),
                )
            }
        }
    }
}

fn parse_error(path: PathBuf, content: &str) -> CgroupFileError {
    CgroupFileError::Parse {
        path,
        content: content.to_owned(),
    }
}

fn read_trimmed(path: &Path) -> Result<(PathBuf, String), CgroupFileError> {
    match fs::read_to_string(path) {
        Ok(content) => Ok((path.to_owned(), content.trim().to_owned())),
        Err(source) => Err(CgroupFileError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn write_value(path: &Path, value: &str) -> Result<(), CgroupFileError> {
    // One write(2) of the whole value, as the kernel wants it; never creates the file.
    let write = || -> io::Result<()> {
        use std::io::Write as _;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)?;
        file.write_all(value.as_bytes())
    };
    write().map_err(|source| CgroupFileError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// Threads (tasks) in the pids cgroup of `pid`, which a container's processes share; the
/// threads of `pid` alone when the cgroup cannot be read.
pub fn threads(pid: u32) -> io::Result<u64> {
    let file = PathBuf::from(format!("/proc/{pid}/cgroup"));
    if let Ok(membership) = Membership::read(&file)
        && let Some((_, dir)) = host_mounts().controller_dir(&membership, "pids")
    {
        // `pids.current` in both versions.
        if let Ok(current) = fs::read_to_string(dir.join("pids.current"))
            && let Ok(n) = current.trim().parse()
        {
            return Ok(n);
        }
    }
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    process_threads(&status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable status"))
}

/// The `Threads:` field of a `/proc/<pid>/status`.
fn process_threads(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mounts of a hybrid host with cpu and cpuacct in separate hierarchies.
    const HYBRID: &str = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn v1_hierarchies_and_the_unified_one_are_read_from_mountinfo() {
        let mounts = Mounts::parse(HYBRID);
        assert_eq!(mounts.hierarchies().len(), 6);
        let cpu = mounts.v1("cpu").expect("cpu");
        assert_eq!(cpu.mount_point, Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(cpu.controllers, ["cpu"]);
        assert_eq!(
            mounts.v1("name=systemd").expect("named").controllers,
            ["name=systemd"]
        );
        assert_eq!(
            mounts.unified().expect("unified").mount_point,
            Path::new("/sys/fs/cgroup/unified")
        );
        assert!(mounts.v1("blkio").is_none());

        let comounted = "35 31 0:32 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                         36 31 0:33 /mesos /mnt/my\\040cgroups rw shared:1 - cgroup cgroup rw,memory,clone_children\n";
        let mounts = Mounts::parse(comounted);
        assert_eq!(
            mounts.v1("cpuacct").expect("cpuacct").controllers,
            ["cpu", "cpuacct"]
        );
        let memory = mounts.v1("memory").expect("memory");
        assert_eq!(memory.mount_point, Path::new("/mnt/my cgroups"));
        assert_eq!(memory.root, "/mesos");
        assert_eq!(memory.controllers, ["memory"]);
    }

    #[test]
    fn a_cgroups_directory_is_under_the_mount_of_its_hierarchy() {
        let hierarchy = Hierarchy {
            mount_point: PathBuf::from("/c"),
            root: "/mesos".into(),
            controllers: vec!["cpu".into()],
            unified: false,
        };
        assert_eq!(hierarchy.dir("/mesos/x"), Some(PathBuf::from("/c/x")));
        assert_eq!(hierarchy.dir("/mesos"), Some(PathBuf::from("/c")));
        assert_eq!(hierarchy.dir("/mesosx"), None);
        assert_eq!(hierarchy.dir("/other"), None);
        let root = Hierarchy {
            root: "/".into(),
            ..hierarchy
        };
        assert_eq!(root.dir("/"), Some(PathBuf::from("/c")));
        assert_eq!(root.dir("/a/../b"), None);
    }

    const MESOS_V1: &str = "\
12:name=systemd:/system.slice/mesos-agent.service/some/deeper/path
9:pids:/mesos/0f1e
5:memory:/mesos/0f1e
3:cpuset:/
2:cpu,cpuacct:/mesos/0f1e
0::/
";

    #[test]
    fn the_deepest_resource_cgroup_is_the_executors() {
        let membership = Membership::parse(MESOS_V1).expect("parses");
        assert_eq!(membership.deepest(), Some("/mesos/0f1e"));
        assert_eq!(membership.v1_path("cpuacct"), Some("/mesos/0f1e"));
        assert_eq!(membership.v1_path("cpuset"), Some("/"));
        assert_eq!(membership.unified_path(), Some("/"));

        let v2 = Membership::parse("0::/mesos/0f1e/executor\n").expect("parses");
        assert_eq!(v2.deepest(), Some("/mesos/0f1e/executor"));
        let nowhere = Membership::parse("1:cpu:/\n2:memory:/\n0::/\n").expect("parses");
        assert_eq!(nowhere.deepest(), Some("/"));

        assert_eq!(
            Membership::parse("2:cpu\n").expect_err("two fields"),
            "2:cpu"
        );
        assert!(Membership::parse("2:cpu:relative").is_err());
    }

    #[test]
    fn a_controllers_directory_follows_the_process_into_v1_or_v2() {
        let membership = Membership::parse(MESOS_V1).expect("parses");
        let mounts = Mounts::parse(HYBRID);
        assert_eq!(
            mounts.controller_dir(&membership, "cpu"),
            Some((
                CgroupVersion::V1,
                PathBuf::from("/sys/fs/cgroup/cpu/mesos/0f1e")
            ))
        );
        let v2_mounts = Mounts::parse("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let v2 = Membership::parse("0::/mesos/0f1e\n").expect("parses");
        assert_eq!(
            v2_mounts.controller_dir(&v2, "cpu"),
            Some((
                CgroupVersion::V2,
                PathBuf::from("/sys/fs/cgroup/mesos/0f1e")
            ))
        );
        assert_eq!(Mounts::default().controller_dir(&v2, "cpu"), None);
    }

    #[test]
    fn the_parent_is_a_path_for_cgroupfs_and_a_slice_for_systemd() {
        use CgroupDriver::*;
        assert_eq!(
            engine_parent(Cgroupfs, "/mesos/0f1e").as_deref(),
            Ok("/mesos/0f1e")
        );
        assert_eq!(engine_parent(Cgroupfs, "/"), Err(ParentError::Root));
        assert_eq!(engine_parent(Systemd, ""), Err(ParentError::Root));
        assert_eq!(
            engine_parent(Systemd, "/mesos.slice/mesos-0f1e.slice").as_deref(),
            Ok("mesos-0f1e.slice")
        );
        assert_eq!(
            engine_parent(Systemd, "/mesos/0f1e"),
            Err(ParentError::NotASlice {
                path: "/mesos/0f1e".into()
            })
        );
        assert!(engine_parent(Systemd, "/a.slice/b.slice").is_err());
        assert!(engine_parent(Systemd, "/system.slice/mesos.service").is_err());
    }

    #[test]
    fn the_cpu_quota_round_trips_through_v1_and_v2_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        std::fs::write(path.join(CpuQuota::V1_QUOTA), "-1\n").expect("quota");
        std::fs::write(path.join(CpuQuota::V1_PERIOD), "100000\n").expect("period");
        let current = CpuQuota::read(path, CgroupVersion::V1).expect("reads");
        assert_eq!(
            current,
            CpuQuota {
                quota_us: None,
                period_us: 100_000
            }
        );
        let wanted = CpuQuota::cores(2, 50_000);
        wanted
            .write(path, CgroupVersion::V1, Some(&current))
            .expect("writes");
        assert_eq!(
            CpuQuota::read(path, CgroupVersion::V1).expect("reads"),
            wanted
        );

        std::fs::write(path.join(CpuQuota::V2_MAX), "max 100000\n").expect("max");
        assert_eq!(
            CpuQuota::read(path, CgroupVersion::V2).expect("reads"),
            current
        );
        wanted.write(path, CgroupVersion::V2, None).expect("writes");
        assert_eq!(
            std::fs::read_to_string(path.join(CpuQuota::V2_MAX)).expect("max"),
            "100000 50000"
        );
        std::fs::write(path.join(CpuQuota::V2_MAX), "lots\n").expect("max");
        let error = CpuQuota::read(path, CgroupVersion::V2).expect_err("garbage");
        assert!(
            error
                .to_string()
                .ends_with("cpu.max: unexpected content \"lots\""),
            "{error}"
        );
        let missing = CpuQuota::read(&path.join("gone"), CgroupVersion::V1).expect_err("gone");
        assert!(missing.to_string().starts_with("cannot read "), "{missing}");
    }

    #[test]
    fn this_process_has_a_thread_count() {
        assert!(threads(std::process::id()).expect("readable") >= 1);
    }

    #[test]
    fn the_status_file_names_the_threads() {
        assert_eq!(
            process_threads("Name:\tsh\nThreads:\t7\nVmRSS:\t1 kB\n"),
            Some(7)
        );
        assert_eq!(process_threads("Name:\tsh\n"), None);
    }
}
