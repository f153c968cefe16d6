//! Locating (and building) the daemons' binaries.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The path of daemon `name`, built once per test run with the same cargo and profile
/// directory (binaries of other packages have no `CARGO_BIN_EXE_*`).
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args([
                "build",
                "-p",
                "singularity-executor",
                "-p",
                "singularity-s3-uploader",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the daemons failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"));
        target.join("debug")
    });
    let path = dir.join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}
