//! A small file system for full-disk tests: a tmpfs of a given size mounted on a directory,
//! unmounted on drop. Needs root (CAP_SYS_ADMIN), as the tests run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs.
#[derive(Debug)]
pub struct SmallFs {
    dir: PathBuf,
}

impl SmallFs {
    /// Mounts a tmpfs of `bytes` on `dir` (which must exist and be empty). Panics naming
    /// the cause when it cannot: these tests need root.
    pub fn mount(dir: &Path, bytes: u64) -> Self {
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0755"))
            .arg("tmpfs")
            .arg(dir)
            .output();
        match output {
            Ok(output) if output.status.success() => Self {
                dir: dir.to_owned(),
            },
            Ok(output) => panic!(
                "mount a {bytes}-byte tmpfs on {} (full-disk tests need root): {}",
                dir.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(error) => panic!("run mount: {error}"),
        }
    }

    /// Where it is mounted.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazily: a process the test started may still hold a file open in it.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
