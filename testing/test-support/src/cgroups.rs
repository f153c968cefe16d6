//! Real cgroups for tests: [`TestCgroup`] stands for the cgroup a Mesos agent makes for an
//! executor. Read from `/proc/self/mountinfo` and `/proc/self/cgroup` here, independently of
//! the product's own reader, so a test checks the product against a second opinion.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The controllers a Mesos agent's isolators typically put an executor in.
pub const CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory", "pids"];

/// One v1 hierarchy: its mount point and the cgroup this test process is in there.
#[derive(Debug, Clone)]
struct Hierarchy {
    mount: PathBuf,
    controllers: Vec<String>,
}

/// `<base>/se-test-<random>` in every v1 hierarchy of `CONTROLLERS`, where `base` is the
/// deepest cgroup this test process is in, so the test cgroup stays inside whatever confines
/// the test run. Dropping it kills what is left in it and removes it from every hierarchy
/// (engines create a container's parent in all of them), with the levels above it that it
/// created.
#[derive(Debug)]
pub struct TestCgroup {
    path: String,
    base: String,
    hierarchies: Vec<Hierarchy>,
}

/// Test cgroups alive in this process, and the levels above them that no hierarchy had
/// before the first was made (engines create them in every hierarchy), outermost first:
/// removed when the last one goes.
static LIVE: Mutex<(usize, Vec<PathBuf>)> = Mutex::new((0, Vec::new()));

fn v1_hierarchies() -> Vec<Hierarchy> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mount = before.split(' ').nth(4)?;
            let mut after = after.split(' ');
            if after.next()? != "cgroup" {
                return None;
            }
            let options = after.nth(1)?;
            Some(Hierarchy {
                mount: PathBuf::from(mount),
                controllers: options.split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// Every cgroup mount (v1 and v2).
fn all_mounts() -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fstype = after.split(' ').next()?;
            let mount = before.split(' ').nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(mount))
        })
        .collect()
}

/// The deepest cgroup of this process among the resource controllers.
fn own_deepest() -> String {
    let text = fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            (!controllers.is_empty() && !controllers.starts_with("name=")).then(|| path.to_owned())
        })
        .max_by_key(|path| path.split('/').filter(|p| !p.is_empty()).count())
        .unwrap_or_else(|| "/".to_owned())
}

impl TestCgroup {
    /// Creates it; panics, naming the reason, when this host has no v1 hierarchy for one of
    /// `CONTROLLERS` or the tests do not run as root.
    pub fn create() -> Self {
        assert!(
            nix_is_root(),
            "cgroup tests need root, to create cgroups and move processes into them"
        );
        let all = v1_hierarchies();
        let hierarchies: Vec<Hierarchy> = CONTROLLERS
            .iter()
            .map(|controller| {
                all.iter()
                    .find(|h| h.controllers.iter().any(|c| c == controller))
                    .cloned()
                    .unwrap_or_else(|| {
                        panic!(
                            "no cgroup v1 hierarchy holds the {controller} controller on this host \
                             (these tests need cgroup v1, as docs/cgroups.md says)"
                        )
                    })
            })
            .fold(Vec::new(), |mut unique, h| {
                if !unique.iter().any(|u: &Hierarchy| u.mount == h.mount) {
                    unique.push(h);
                }
                unique
            });
        let base = own_deepest();
        let name = crate::unique_name("se-test-cg");
        let path = format!("{}/{name}", base.trim_end_matches('/'));
        {
            let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
            if live.0 == 0 {
                live.1.clear();
                for mount in all_mounts() {
                    let mut dir = mount.clone();
                    for part in base.split('/').filter(|p| !p.is_empty()) {
                        dir.push(part);
                        if !dir.exists() {
                            live.1.push(dir.clone());
                        }
                    }
                }
            }
            live.0 += 1;
        }
        for hierarchy in &hierarchies {
            create_levels(&hierarchy.mount, &path);
        }
        Self {
            path,
            base,
            hierarchies,
        }
    }

    /// The cgroup as `/proc/<pid>/cgroup` names it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The cgroup this one was made in.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Its directory in the hierarchy of `controller`.
    pub fn dir(&self, controller: &str) -> PathBuf {
        let hierarchy = self
            .hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .unwrap_or_else(|| panic!("the test cgroup is not in a {controller} hierarchy"));
        hierarchy.mount.join(self.path.trim_start_matches('/'))
    }

    /// Reads one of its files in `controller`'s hierarchy, trimmed.
    pub fn read(&self, controller: &str, file: &str) -> String {
        let path = self.dir(controller).join(file);
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    /// Writes one of its files in `controller`'s hierarchy, as another agent would.
    pub fn write(&self, controller: &str, file: &str, value: &str) {
        let path = self.dir(controller).join(file);
        fs::write(&path, value)
            .unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
    }

    /// Every process in it or in a cgroup below it, in `controller`'s hierarchy.
    pub fn procs(&self, controller: &str) -> Vec<u32> {
        let mut pids = Vec::new();
        for dir in tree(&self.dir(controller)) {
            let text = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        pids
    }

    /// The cgroups below it in `controller`'s hierarchy, as paths relative to it.
    pub fn children(&self, controller: &str) -> Vec<String> {
        let top = self.dir(controller);
        tree(&top)
            .into_iter()
            .filter(|d| *d != top)
            .filter_map(|d| Some(d.strip_prefix(&top).ok()?.display().to_string()))
            .collect()
    }

    /// A shell line moving the shell running it into this cgroup in every hierarchy, for
    /// `sh -c '<line> exec "$0" "$@"' program args...`.
    pub fn enter_line(&self) -> String {
        self.hierarchies
            .iter()
            .map(|h| {
                format!(
                    "echo $$ > '{}/cgroup.procs' && ",
                    h.mount.join(self.path.trim_start_matches('/')).display()
                )
            })
            .collect()
    }
}

fn nix_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            Some(uid.split_whitespace().nth(1)? == "0")
        })
        .unwrap_or(false)
}

/// Creates `path` under `mount` level by level, retrying when a concurrent test removes a
/// shared level in between.
fn create_levels(mount: &Path, path: &str) {
    for _ in 0..20 {
        let mut dir = mount.to_path_buf();
        let mut failed = false;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            dir.push(part);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    failed = true;
                    break;
                }
                Err(e) => panic!("create cgroup {}: {e}", dir.display()),
            }
        }
        if !failed {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("cannot create cgroup {path} under {}", mount.display());
}

/// `top` and every directory below it, parents before children.
fn tree(top: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![top.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
        out.push(dir);
    }
    out
}

/// Kills every process in `top`'s tree and removes the tree, children first.
fn remove_tree(top: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dirs = tree(top);
        for dir in &dirs {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        let mut left = false;
        for dir in dirs.iter().rev() {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => left = true,
            }
        }
        if !left || Instant::now() > deadline {
            if left {
                eprintln!("test cgroup {} could not be removed", top.display());
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let relative = self.path.trim_start_matches('/').to_owned();
        for mount in all_mounts() {
            let top = mount.join(&relative);
            if top.exists() {
                remove_tree(&top);
            }
        }
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.0 -= 1;
        if live.0 == 0 {
            for dir in live.1.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
        }
    }
}
