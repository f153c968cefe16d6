//! What depends on process-global state (environment, signals, the global subscriber) runs
//! in a child process: each parent test re-runs this test binary with one `child_*` test
//! selected and `SE_RUNTIME_CHILD` naming it. Run directly, the `child_*` tests do nothing.

use std::io::{BufRead as _, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use singularity_runtime::{
    LogFormat, S3ClientOptions, Shutdown, ShutdownSignal, TracingError, build_s3_client,
    init_tracing, log_startup, notify_ready, notify_status, notify_stopping, shutdown_signal,
};
use singularity_test_support::S3Server;

const CHILD_VAR: &str = "SE_RUNTIME_CHILD";

/// `Command` running only the test `name` of this binary as the child.
fn child(name: &str) -> Command {
    // The test binary names a test by its path below the crate root: `process::child_notify`.
    let (_crate, module) = module_path!()
        .split_once("::")
        .expect("this file is a module of the test crate");
    let test = format!("{module}::{name}");
    let mut cmd = Command::new(std::env::current_exe().expect("path of this test binary"));
    cmd.args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, name)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

fn is_child(name: &str) -> bool {
    std::env::var(CHILD_VAR).as_deref() == Ok(name)
}

fn assert_child_ok(out: &Output) {
    assert!(
        out.status.success(),
        "child failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The filter matched exactly one test: it really ran.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

// ------------------------------------------------------------------------- sd_notify

#[test]
fn notify_sends_to_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let out = child("child_notify")
        .env("NOTIFY_SOCKET", &path)
        .output()
        .unwrap();
    assert_child_ok(&out);

    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..3 {
        let n = socket.recv(&mut buf).unwrap();
        received.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(
        received,
        ["READY=1\n", "STATUS=watching 3 files\n", "STOPPING=1\n"]
    );
}

#[test]
fn child_notify() {
    if !is_child("child_notify") {
        return;
    }
    notify_ready().unwrap();
    notify_status("watching\n3 files").unwrap();
    notify_stopping().unwrap();
}

#[test]
fn notify_without_socket_is_a_no_op() {
    let out = child("child_notify_absent")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    assert_child_ok(&out);
}

#[test]
fn child_notify_absent() {
    if !is_child("child_notify_absent") {
        return;
    }
    assert!(std::env::var_os("NOTIFY_SOCKET").is_none());
    notify_ready().unwrap();
    notify_stopping().unwrap();
}

// ------------------------------------------------------------------------------ signals

#[test]
fn sigterm_resolves_shutdown_signal() {
    for (signal, expected) in [("-TERM", "SIGTERM"), ("-INT", "SIGINT")] {
        let mut proc = child("child_wait_for_signal")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(proc.stdout.take().unwrap());
        let mut line = String::new();
        // libtest prints its own lines first; wait for the child's.
        loop {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "child ended early"
            );
            if line.contains("handlers installed") {
                break;
            }
        }
        let kill = Command::new("kill")
            .args([signal, &proc.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let status = proc.wait().unwrap();
        assert!(status.success(), "child exit {status}: {rest}");
        assert!(rest.contains(&format!("got {expected}")), "{rest}");
        assert!(rest.contains("shutdown triggered"), "{rest}");
    }
}

#[test]
fn child_wait_for_signal() {
    if !is_child("child_wait_for_signal") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let signal = shutdown_signal().unwrap();
        let shutdown = Shutdown::on_signals().unwrap();
        println!("handlers installed");
        let got: ShutdownSignal = tokio::time::timeout(Duration::from_secs(30), signal)
            .await
            .expect("no signal within 30 s");
        println!("got {got}");
        tokio::time::timeout(Duration::from_secs(5), shutdown.wait())
            .await
            .expect("Shutdown::on_signals not triggered");
        println!("shutdown triggered");
    });
}

// ------------------------------------------------------------------------------ tracing

#[test]
fn tracing_json_to_stderr_filtered_by_rust_log() {
    // This module's events have its path as their target (`runtime::process`).
    let out = child("child_tracing")
        .env(
            "RUST_LOG",
            format!("warn,{}=debug,singularity_runtime=info", module_path!()),
        )
        .output()
        .unwrap();
    assert_child_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["fields"]["message"].as_str().unwrap_or_default())
        .collect();
    // `info` from another target is filtered out; debug from this test and info from the
    // runtime crate are let through.
    assert!(messages.contains(&"starting"), "{stderr}");
    assert!(messages.contains(&"debug from process"), "{stderr}");
    assert!(messages.contains(&"warning elsewhere"), "{stderr}");
    assert!(!messages.contains(&"info elsewhere"), "{stderr}");
    let start = events
        .iter()
        .find(|e| e["fields"]["message"] == "starting")
        .unwrap();
    assert_eq!(start["fields"]["service"], "test-service");
    assert_eq!(start["fields"]["version"], "1.2.3");
    assert_eq!(start["level"], "INFO");
    assert!(
        start["fields"]["config_files"]
            .as_str()
            .unwrap()
            .contains("/etc/singularity.s3uploader.yaml")
    );
}

#[test]
fn child_tracing() {
    if !is_child("child_tracing") {
        return;
    }
    init_tracing("test-service", LogFormat::Json, "error").unwrap();
    let again = init_tracing("test-service", LogFormat::Text, "info");
    assert!(matches!(again, Err(TracingError::AlreadyInitialized(_))));
    log_startup(
        "test-service",
        "1.2.3",
        &["/etc/singularity.s3uploader.yaml"],
    );
    tracing::debug!("debug from process");
    tracing::info!(target: "elsewhere", "info elsewhere");
    tracing::warn!(target: "elsewhere", "warning elsewhere");
}

#[test]
fn invalid_rust_log_is_an_error() {
    let out = child("child_tracing_invalid")
        .env("RUST_LOG", "info,[unclosed")
        .output()
        .unwrap();
    assert_child_ok(&out);
}

#[test]
fn child_tracing_invalid() {
    if !is_child("child_tracing_invalid") {
        return;
    }
    let err = init_tracing("svc", LogFormat::Text, "info").unwrap_err();
    assert!(matches!(
        err,
        TracingError::InvalidFilter {
            source_name: "RUST_LOG",
            ..
        }
    ));
    assert!(err.to_string().contains("[unclosed"), "{err}");
}

#[test]
fn invalid_default_level_is_an_error() {
    let out = child("child_tracing_invalid_default").output().unwrap();
    assert_child_ok(&out);
}

#[test]
fn child_tracing_invalid_default() {
    if !is_child("child_tracing_invalid_default") {
        return;
    }
    let err = init_tracing("svc", LogFormat::Text, "[unclosed").unwrap_err();
    assert!(matches!(
        err,
        TracingError::InvalidFilter {
            source_name: "default level",
            ..
        }
    ));
    // The failed call installed nothing.
    init_tracing("svc", LogFormat::Text, "info").unwrap();
}

// ------------------------------------------------------------------ AWS default chain

#[test]
fn default_chain_uses_environment_credentials() {
    let s3 = S3Server::start();
    s3.create_bucket("chain");
    let out = child("child_default_chain")
        .env("AWS_ACCESS_KEY_ID", s3.access_key())
        .env("AWS_SECRET_ACCESS_KEY", s3.secret_key())
        .env("SE_TEST_ENDPOINT", s3.endpoint())
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    assert_child_ok(&out);
    assert_eq!(s3.s5cmd_cat("chain", "from-env"), b"env credentials");
}

#[test]
fn child_default_chain() {
    if !is_child("child_default_chain") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = build_s3_client(&S3ClientOptions {
            endpoint: Some(std::env::var("SE_TEST_ENDPOINT").unwrap()),
            path_style: true,
            ..Default::default()
        })
        .await;
        // No region anywhere: the default.
        assert_eq!(
            client.config().region().map(|r| r.as_ref()),
            Some(singularity_runtime::DEFAULT_REGION)
        );
        client
            .put_object()
            .bucket("chain")
            .key("from-env")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                b"env credentials",
            ))
            .send()
            .await
            .unwrap();
    });
}

#[test]
fn region_from_environment_when_not_configured() {
    let out = child("child_env_region")
        .env("AWS_REGION", "ap-south-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    assert_child_ok(&out);
}

#[test]
fn child_env_region() {
    if !is_child("child_env_region") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let from_env = build_s3_client(&S3ClientOptions::default()).await;
        assert_eq!(
            from_env.config().region().map(|r| r.as_ref()),
            Some("ap-south-1")
        );
        let configured = build_s3_client(&S3ClientOptions {
            region: Some("eu-central-1".to_owned()),
            ..Default::default()
        })
        .await;
        assert_eq!(
            configured.config().region().map(|r| r.as_ref()),
            Some("eu-central-1")
        );
    });
}
