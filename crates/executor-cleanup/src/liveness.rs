//! Whether the executor recorded in a task definition is still alive.
//!
//! A bare "does the pid exist" check is fooled by pid reuse: on a busy host the executor's pid
//! is soon someone else's, and the task would be skipped forever. The executor writes its
//! definition after it started, so the process holding the pid is that executor only if it
//! started no later than the definition was written. Zombies count as dead.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Start times come in clock ticks and the boot time in whole seconds: allow for both.
const START_TIME_SLACK: Duration = Duration::from_secs(2);

/// What `/proc` says about the recorded pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The executor that wrote the definition still runs.
    Alive,
    /// No such process (or a zombie).
    Gone,
    /// The pid belongs to a process started after the definition was written.
    Reused,
}

/// Checks `pid` against a definition written at `written`.
pub fn executor_liveness(pid: u32, written: SystemTime) -> Liveness {
    executor_liveness_in(Path::new("/proc"), pid, written)
}

fn executor_liveness_in(proc: &Path, pid: u32, written: SystemTime) -> Liveness {
    let Ok(stat) = std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) else {
        return Liveness::Gone;
    };
    let Some((state, start_ticks)) = parse_stat(&stat) else {
        return Liveness::Gone;
    };
    if state == 'Z' || state == 'X' {
        return Liveness::Gone;
    }
    let Some(boot) = boot_time(proc) else {
        // Without a boot time the start cannot be placed: trust the pid, as Singularity did.
        return Liveness::Alive;
    };
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let started = boot + Duration::from_millis(start_ticks.saturating_mul(1000) / ticks);
    if started <= written + START_TIME_SLACK {
        Liveness::Alive
    } else {
        Liveness::Reused
    }
}

/// The state letter and start time (clock ticks after boot) of a `/proc/<pid>/stat` line.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    // The command name may hold spaces and parentheses: fields start after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3 (state); starttime is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn boot_time(proc: &Path) -> Option<SystemTime> {
    let stat = std::fs::read_to_string(proc.join("stat")).ok()?;
    let seconds: u64 = stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(parse_stat(line), Some(('S', 98765)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_for_a_later_definition_and_reused_for_an_earlier_one() {
        let me = std::process::id();
        let now = SystemTime::now();
        assert_eq!(executor_liveness(me, now), Liveness::Alive);
        let long_ago = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(executor_liveness(me, long_ago), Liveness::Reused);
    }

    #[test]
    fn a_missing_pid_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            executor_liveness_in(dir.path(), 12345, SystemTime::now()),
            Liveness::Gone
        );
    }
}
