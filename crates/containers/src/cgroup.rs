//! Threads of a container, counted from the host: every process of a container shares the
//! pids cgroup of its main process.

use std::fs;
use std::io;

/// The cgroup path of a process in the pids hierarchy, from its `/proc/<pid>/cgroup`: the
/// `pids` controller line of cgroup v1 (`true`), else the unified v2 line (`false`).
pub fn parse_pids_cgroup(proc_cgroup: &str) -> Option<(bool, String)> {
    let mut unified = None;
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        if controllers.split(',').any(|c| c == "pids") {
            return Some((true, path.to_owned()));
        }
        if controllers.is_empty() {
            unified = Some((false, path.to_owned()));
        }
    }
    unified
}

/// Threads (tasks) in the pids cgroup of `pid`, which a container's processes share; the
/// threads of `pid` alone when the cgroup cannot be read.
pub fn threads(pid: u32) -> io::Result<u64> {
    let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    if let Some((v1, path)) = parse_pids_cgroup(&cgroup) {
        let base = if v1 {
            "/sys/fs/cgroup/pids"
        } else {
            "/sys/fs/cgroup"
        };
        let file = format!("{base}{path}/pids.current");
        if let Ok(current) = fs::read_to_string(&file)
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

    #[test]
    fn the_pids_cgroup_is_found_in_either_hierarchy() {
        let v1 = "12:memory:/docker/abc\n5:pids:/docker/abc\n1:name=systemd:/docker/abc\n0::/";
        assert_eq!(parse_pids_cgroup(v1), Some((true, "/docker/abc".into())));
        let v2 = "0::/system.slice/docker-abc.scope";
        assert_eq!(
            parse_pids_cgroup(v2),
            Some((false, "/system.slice/docker-abc.scope".into()))
        );
        assert_eq!(parse_pids_cgroup("garbage"), None);
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
