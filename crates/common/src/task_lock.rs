//! The per-task lock the executor and the cleanup both take, so they never work on one task's
//! files at the same time.
//!
//! The lock is an exclusive `flock` on the task definition file itself
//! (`<globalTaskDefinitionDirectory>/<safeTaskId>.task.json`): it needs no extra file the
//! cleanup would have to count or delete, the kernel drops it when its holder dies (a
//! SIGKILLed executor never leaves a stale lock), and a definition deleted by the cleanup
//! cannot be locked again by a late executor, which then knows the task is finished.
//!
//! - The executor takes it, waiting, around its teardown ([`TaskLock::acquire`]).
//! - The cleanup tries it without waiting ([`TaskLock::try_acquire`]) and leaves a task whose
//!   lock is held alone for this run: its executor is still finishing it.
//!
//! The definition is written once at launch (atomically, by rename) before either side locks
//! it; after locking, both check that the path still names the locked file
//! ([`LockOutcome::Gone`] otherwise).

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// An exclusive lock on a task definition, released on drop (or when the process dies).
#[derive(Debug)]
pub struct TaskLock {
    file: File,
    path: PathBuf,
}

/// What locking a task definition found.
#[derive(Debug)]
pub enum LockOutcome {
    /// The lock is held by the caller now.
    Locked(TaskLock),
    /// Another process holds it ([`TaskLock::try_acquire`] only).
    Busy,
    /// The definition does not exist (any more): the task was finished and removed.
    Gone,
}

impl TaskLock {
    /// Takes the lock on the definition at `path`, waiting for its holder to release it.
    pub fn acquire(path: &Path) -> io::Result<LockOutcome> {
        Self::lock(path, true)
    }

    /// Takes the lock on the definition at `path` if nobody holds it.
    pub fn try_acquire(path: &Path) -> io::Result<LockOutcome> {
        Self::lock(path, false)
    }

    /// The definition this lock is on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(path: &Path, wait: bool) -> io::Result<LockOutcome> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(LockOutcome::Gone),
            Err(error) => return Err(error),
        };
        if wait {
            file.lock()?;
        } else {
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(LockOutcome::Busy),
                Err(TryLockError::Error(error)) => return Err(error),
            }
        }
        // The holder we waited for may have deleted the definition: the lock is then on a
        // file nobody else can find, and the task is done.
        let locked = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(now) if now.dev() == locked.dev() && now.ino() == locked.ino() => {
                Ok(LockOutcome::Locked(TaskLock {
                    file,
                    path: path.to_owned(),
                }))
            }
            Ok(_) => Ok(LockOutcome::Gone),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(LockOutcome::Gone),
            Err(error) => Err(error),
        }
    }

    /// Deletes the definition while still holding the lock, so no one can take it after.
    pub fn delete_definition(self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        }?;
        drop(self.file);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(dir: &Path) -> PathBuf {
        let path = dir.join("t.task.json");
        std::fs::write(&path, "{}").unwrap();
        path
    }

    #[test]
    fn a_held_lock_is_busy_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = definition(dir.path());
        let LockOutcome::Locked(held) = TaskLock::try_acquire(&path).unwrap() else {
            panic!("the first lock must succeed");
        };
        assert!(matches!(
            TaskLock::try_acquire(&path).unwrap(),
            LockOutcome::Busy
        ));
        drop(held);
        assert!(matches!(
            TaskLock::try_acquire(&path).unwrap(),
            LockOutcome::Locked(_)
        ));
    }

    #[test]
    fn a_waiter_learns_that_the_holder_deleted_the_definition() {
        let dir = tempfile::tempdir().unwrap();
        let path = definition(dir.path());
        let LockOutcome::Locked(held) = TaskLock::acquire(&path).unwrap() else {
            panic!("the first lock must succeed");
        };
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || TaskLock::acquire(&path).unwrap())
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        held.delete_definition().unwrap();
        assert!(matches!(waiter.join().unwrap(), LockOutcome::Gone));
        assert!(matches!(
            TaskLock::try_acquire(&path).unwrap(),
            LockOutcome::Gone
        ));
    }
}
