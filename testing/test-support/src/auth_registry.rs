//! A docker-registry of a test's own behind basic auth (htpasswd), for pulls with registry
//! credentials: Docker's and the daemonless ones.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::services::{docker_host, test_image};

/// The user the registry accepts.
pub const REGISTRY_USER: &str = "se-user";
/// Its password (with a space, as real ones may have).
pub const REGISTRY_PASSWORD: &str = "se-pass word";

/// A `docker-registry serve` on a free loopback port requiring [`REGISTRY_USER`] and
/// [`REGISTRY_PASSWORD`]; stopped (by pid) when dropped.
#[derive(Debug)]
pub struct AuthRegistry {
    addr: String,
    process: Child,
    _dir: tempfile::TempDir,
}

impl AuthRegistry {
    /// Starts one and waits until it listens.
    #[track_caller]
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let hash = bcrypt::hash_with_result(REGISTRY_PASSWORD, 5)
            .expect("bcrypt")
            .format_for_version(bcrypt::Version::TwoY);
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{REGISTRY_USER}:{hash}\n")).expect("htpasswd");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage: {{filesystem: {{rootdirectory: {}}}}}\n\
                 http: {{addr: {addr}}}\n\
                 auth: {{htpasswd: {{realm: se-test, path: {}}}}}\n",
                dir.path().join("data").display(),
                htpasswd.display()
            ),
        )
        .expect("registry config");
        let process = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).expect("log"))
            .spawn()
            .expect("docker-registry (installed by scripts/services.sh)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the auth registry never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            addr,
            process,
            _dir: dir,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Pushes the test image as `auth/busybox:1` with a docker CLI login kept in
    /// `docker_config` (a directory, as `~/.docker`), then removes the local tag so that a
    /// task must pull it; returns the reference.
    #[track_caller]
    pub fn push_test_image(&self, docker_config: &Path) -> String {
        let config = docker_config.display().to_string();
        let cli = |args: &[&str], input: Option<&str>| {
            let mut command = Command::new("docker");
            command
                .args(args)
                .env("DOCKER_HOST", docker_host())
                .env("DOCKER_CONFIG", &config)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = command.spawn().expect("docker CLI");
            if let Some(input) = input {
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(input.as_bytes())
                    .expect("write");
            }
            let output = child.wait_with_output().expect("docker CLI");
            assert!(output.status.success(), "docker {args:?}: {output:?}");
        };
        cli(
            &["login", &self.addr, "-u", REGISTRY_USER, "--password-stdin"],
            Some(REGISTRY_PASSWORD),
        );
        let reference = format!("{}/auth/busybox:1", self.addr);
        cli(&["tag", &test_image(), &reference], None);
        cli(&["push", &reference], None);
        cli(&["rmi", &reference], None);
        reference
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
