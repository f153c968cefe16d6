//! Process-group views from `/proc`: which processes belong to a task, how many threads they
//! run. A task is its own process group, so its forked children are found even after they
//! were re-parented, and none of them escape the thread limit or the final sweep.

use std::fs;
use std::io;
use std::path::Path;

/// One process of a group, as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupMember {
    /// The process id.
    pub pid: u32,
    /// `num_threads`.
    pub threads: u64,
}

/// The fields of `/proc/<pid>/stat` used here: state, process group and thread count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFields {
    /// One-letter state (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Process group id.
    pub pgrp: i64,
    /// Number of threads.
    pub threads: u64,
}

/// Parses a `/proc/<pid>/stat` line. The command name sits in parentheses and may itself
/// contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(line: &str) -> Option<StatFields> {
    let rest = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) ... num_threads(20), i.e. indexes 0, 2 and 17.
    Some(StatFields {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        threads: fields.get(17)?.parse().ok()?,
    })
}

/// Every live (not zombie) process whose process group is `pgid`, read from `proc_root`
/// (normally `/proc`). Processes that vanish during the scan are skipped.
pub fn group_members_in(proc_root: &Path, pgid: u32) -> io::Result<Vec<GroupMember>> {
    let mut members = Vec::new();
    for entry in fs::read_dir(proc_root)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(line) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(stat) = parse_stat(&line) else {
            continue;
        };
        if stat.pgrp == i64::from(pgid) && !matches!(stat.state, 'Z' | 'X' | 'x') {
            members.push(GroupMember {
                pid,
                threads: stat.threads,
            });
        }
    }
    Ok(members)
}

/// [`group_members_in`] on `/proc`.
pub fn group_members(pgid: u32) -> io::Result<Vec<GroupMember>> {
    group_members_in(Path::new("/proc"), pgid)
}

/// Threads of every live process in the group.
pub fn group_threads(pgid: u32) -> io::Result<u64> {
    Ok(group_members(pgid)?.iter().map(|m| m.threads).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let line = "4242 (odd) name (x)) S 1 4240 4240 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 7 0 \
                    12345 1000 100 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(StatFields {
                state: 'S',
                pgrp: 4240,
                threads: 7
            })
        );
    }

    #[test]
    fn short_or_garbled_lines_are_rejected() {
        assert_eq!(parse_stat("12 (sh) S 1"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn the_scan_finds_this_process_in_its_group() {
        let pgid = nix::unistd::getpgrp().as_raw().unsigned_abs();
        let members = group_members(pgid).expect("/proc is readable");
        assert!(members.iter().any(|m| m.pid == std::process::id()));
        assert!(members.iter().all(|m| m.threads >= 1));
    }
}
