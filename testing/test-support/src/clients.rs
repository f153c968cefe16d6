//! Independent S3 clients (s5cmd, boto3) to check what the code under test put in S3, or to
//! prepare what it should find there.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use crate::services::{python, s5cmd_path};

/// Where an S3-protocol server is and how to sign for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Endpoint {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Region to sign with.
    pub region: String,
}

/// One object as listed by s5cmd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Key inside the bucket.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// Runs `s5cmd --endpoint-url ENDPOINT ARGS...` with the endpoint's credentials and region in
/// its environment and nothing else AWS-related inherited. s5cmd addresses non-AWS endpoints
/// path-style.
pub fn s5cmd(s3: &S3Endpoint, args: &[&str]) -> Output {
    let mut cmd = s5cmd_command(s3);
    cmd.args(args);
    run(&mut cmd, None)
}

fn s5cmd_command(s3: &S3Endpoint) -> Command {
    let mut cmd = Command::new(s5cmd_path());
    cmd.arg("--endpoint-url").arg(&s3.endpoint);
    // Retries only slow down tests that expect an error.
    cmd.args(["--retry-count", "1"]);
    scrub_aws_env(&mut cmd);
    cmd.env("AWS_ACCESS_KEY_ID", &s3.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret_key)
        .env("AWS_REGION", &s3.region);
    cmd
}

/// Removes inherited AWS settings that would redirect or re-sign a client's requests.
fn scrub_aws_env(cmd: &mut Command) {
    for var in [
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "S3_ENDPOINT_URL",
        "AWS_CA_BUNDLE",
        "AWS_DEFAULT_REGION",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
}

fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => panic!("run {cmd:?}: {err}"),
    };
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take())
        && let Err(err) = pipe.write_all(data)
    {
        panic!("write stdin of {cmd:?}: {err}");
    }
    match child.wait_with_output() {
        Ok(output) => output,
        Err(err) => panic!("wait for {cmd:?}: {err}"),
    }
}

fn expect_success(what: &str, output: Output) -> Vec<u8> {
    if !output.status.success() {
        panic!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout),
        );
    }
    output.stdout
}

impl S3Endpoint {
    /// [`s5cmd`] against this endpoint.
    pub fn s5cmd(&self, args: &[&str]) -> Output {
        s5cmd(self, args)
    }

    /// The object's bytes, read by `s5cmd cat`. Panics if s5cmd fails (e.g. no such key).
    pub fn s5cmd_cat(&self, bucket: &str, key: &str) -> Vec<u8> {
        let url = format!("s3://{bucket}/{key}");
        expect_success(&format!("s5cmd cat {url}"), self.s5cmd(&["cat", &url]))
    }

    /// Objects under `prefix` (`""` for all), sorted by key. An empty bucket or prefix gives
    /// an empty list.
    pub fn s5cmd_ls(&self, bucket: &str, prefix: &str) -> Vec<ListedObject> {
        let url = format!("s3://{bucket}/{prefix}*");
        let output = self.s5cmd(&["--json", "ls", &url]);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            // s5cmd exits 1 with "no object found" for an empty listing.
            if stderr.contains("no object found") || stdout.contains("no object found") {
                return Vec::new();
            }
            panic!(
                "s5cmd ls {url} failed ({}): {stderr}{stdout}",
                output.status
            );
        }
        let bucket_prefix = format!("s3://{bucket}/");
        let mut objects: Vec<ListedObject> = stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .filter_map(|line| {
                let value: serde_json::Value = match serde_json::from_str(line) {
                    Ok(v) => v,
                    Err(err) => panic!("s5cmd ls printed {line:?}: {err}"),
                };
                if value["type"] == "directory" {
                    return None;
                }
                let key = value["key"].as_str().unwrap_or_default();
                Some(ListedObject {
                    key: key.strip_prefix(&bucket_prefix).unwrap_or(key).to_owned(),
                    size: value["size"].as_u64().unwrap_or(0),
                })
            })
            .collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        objects
    }

    /// Uploads `data` as `bucket/key` with `s5cmd cp` from a temp file.
    pub fn s5cmd_put(&self, bucket: &str, key: &str, data: &[u8]) {
        let mut file = match tempfile::NamedTempFile::new() {
            Ok(f) => f,
            Err(err) => panic!("temp file for s5cmd_put: {err}"),
        };
        if let Err(err) = file.write_all(data).and_then(|()| file.flush()) {
            panic!("write temp file for s5cmd_put: {err}");
        }
        let src = file.path().to_string_lossy().into_owned();
        let url = format!("s3://{bucket}/{key}");
        expect_success(
            &format!("s5cmd cp {src} {url}"),
            self.s5cmd(&["cp", &src, &url]),
        );
    }

    /// Bytes `first..=last` of the object, read with a ranged GET by boto3 (path-style).
    pub fn boto3_get_range(&self, bucket: &str, key: &str, first: u64, last: u64) -> Vec<u8> {
        let output = self.boto3(
            BOTO3_GET_RANGE,
            &[bucket, key, &first.to_string(), &last.to_string()],
        );
        expect_success("boto3 ranged get_object", output)
    }

    /// Runs a Python script with `s3`, a boto3 S3 client for this endpoint (path-style, no
    /// retries), already defined; `args` are in `sys.argv[1:]`.
    pub fn boto3(&self, script: &str, args: &[&str]) -> Output {
        let program = format!("{BOTO3_PRELUDE}\n{script}");
        let mut cmd = Command::new(python());
        cmd.arg("-c").arg(program).args(args);
        scrub_aws_env(&mut cmd);
        cmd.env("SE_S3_ENDPOINT", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_REGION", &self.region);
        run(&mut cmd, None)
    }
}

const BOTO3_PRELUDE: &str = r#"
import os, sys
import boto3
from botocore.config import Config
s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["SE_S3_ENDPOINT"],
    region_name=os.environ["AWS_REGION"],
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)
"#;

const BOTO3_GET_RANGE: &str = r#"
bucket, key, first, last = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
resp = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")
want = f"bytes {first}-{last}/"
if not resp["ContentRange"].startswith(want):
    sys.exit(f"Content-Range {resp['ContentRange']!r}, expected {want}<size>")
sys.stdout.buffer.write(resp["Body"].read())
"#;
