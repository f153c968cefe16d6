//! The end of staging: the staged task directory handed to the task's user.

use std::fs;
use std::io;
use std::path::Path;

/// Gives user `uid`/`gid` the task directory (recursively: staged artifacts belong to the
/// executor until now) and the sandbox directory itself, so the user can reach `app/`.
/// Singularity's runner did `chown -R <user> $MESOS_SANDBOX` for the same reason.
pub fn give_to_user(sandbox: &Path, task_dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(sandbox, Some(uid), Some(gid))?;
    chown_tree(task_dir, uid, gid)
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}
