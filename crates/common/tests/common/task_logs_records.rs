//! The records built by `task_logs` are byte-for-byte the spec's examples when built from the
//! executor data that produced them.

use std::path::{Path, PathBuf};

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use singularity_common::config::ExecutorConfig;
use singularity_common::naming;
use singularity_common::records::SingularityTaskExecutorData;
use singularity_common::task_id::TaskId;
use singularity_common::task_logs::{
    LogPhase, SkipReason, UploadDefaults, service_log_path, tail_metadata, task_definition,
    upload_plan,
};

const TASK: &str = "myreq-dep1-1668780000000-1-host_a-rack1";
const TASK_DIR: &str = "/mnt/mesos/slaves/S1/frameworks/Singularity/executors/e1/runs/r1/\
                        myreq-dep1-1668780000000-1-host_a-rack1";

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/records")
        .join(name);
    let text = std::fs::read_to_string(path).expect("readable test data");
    serde_json::from_str(&text).expect("test data is JSON")
}

fn task_id() -> TaskId {
    TASK.parse().expect("valid task id")
}

/// The executor data the scheduler sends for a request in group `platform` with the default
/// S3 settings of the spec's example.
fn spec_data() -> SingularityTaskExecutorData {
    serde_json::from_value(json!({
        "cmd": "java -jar app.jar",
        "defaultS3Bucket": "my-logs",
        "s3UploaderKeyPattern": "%requestId/%Y/%m/%taskId_%index-%s-%filename",
        "serviceLog": "service.log",
        "s3StorageClass": "STANDARD_IA",
        "applyS3StorageClassAfterBytes": 75000
    }))
    .expect("valid executor data")
}

#[test]
fn the_spec_s3_metadata_example_is_reproduced() {
    let plan = upload_plan(
        &task_id(),
        Path::new(TASK_DIR),
        &spec_data(),
        &UploadDefaults::default(),
        LogPhase::Start,
    );
    assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
    assert_eq!(plan.uploads.len(), 1);
    let upload = &plan.uploads[0];
    assert_eq!(
        upload.file_name(TASK, naming::DEFAULT_S3_METADATA_SUFFIX),
        format!("{TASK}-default.s3.json")
    );
    assert_eq!(
        serde_json::to_value(&upload.metadata).expect("serializable"),
        load("s3_upload_metadata.spec.json")
    );
}

#[test]
fn at_the_end_every_record_is_finished_and_immediate() {
    let mut expected = load("s3_upload_metadata.spec.json");
    expected["finished"] = json!(true);
    expected["uploadImmediately"] = json!(true);
    let plan = upload_plan(
        &task_id(),
        Path::new(TASK_DIR),
        &spec_data(),
        &UploadDefaults::default(),
        LogPhase::End,
    );
    assert_eq!(plan.uploads.len(), 1);
    assert_eq!(
        serde_json::to_value(&plan.uploads[0].metadata).expect("serializable"),
        expected
    );
}

#[test]
fn additional_files_of_the_full_example() {
    let full = load("task_definition.full.json");
    let data: SingularityTaskExecutorData =
        serde_json::from_value(full["executorData"].clone()).expect("valid executor data");
    let defaults = UploadDefaults::from_executor_config(&ExecutorConfig::default());
    let plan = upload_plan(
        &task_id(),
        Path::new(TASK_DIR),
        &data,
        &defaults,
        LogPhase::Start,
    );
    assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
    let named: Vec<(String, Value)> = plan
        .uploads
        .iter()
        .map(|u| {
            (
                u.file_name(TASK, ".s3.json"),
                serde_json::to_value(&u.metadata).expect("serializable"),
            )
        })
        .collect();
    let common = json!({
        "finished": false, "uploadImmediately": false, "uploaderType": "S3",
        "gcsCredentials": {}, "useS3ServerSideEncryption": false
    });
    let with_common = |mut v: Value| {
        for (k, x) in common.as_object().expect("object") {
            v[k] = x.clone();
        }
        v
    };
    assert_eq!(
        named,
        vec![
            (
                format!("{TASK}-access.s3.json"),
                with_common(json!({
                    "directory": format!("{TASK_DIR}/app/logs"),
                    "fileGlob": "access.log*",
                    "s3Bucket": "other-logs",
                    "s3KeyFormat": format!("myreq/access/%Y/%m/%d/{TASK}-%index-%s-%filename"),
                    "s3StorageClass": "STANDARD_IA",
                    "applyStorageClassIfOverBytes": 1000,
                    "checkSubdirectories": true,
                    "compressBeforeUpload": true,
                    "checkIfOpen": false
                }))
            ),
            (
                format!("{TASK}-file2.s3.json"),
                with_common(json!({
                    "directory": TASK_DIR,
                    "fileGlob": "gc.log*.[gb]z*",
                    "s3Bucket": "my-logs",
                    "s3KeyFormat": format!("myreq/%Y/%m/{TASK}_%index-%s-%filename"),
                    "s3StorageClass": "STANDARD_IA",
                    "applyStorageClassIfOverBytes": 75000,
                    "checkSubdirectories": false,
                    "compressBeforeUpload": false,
                    "checkIfOpen": true
                }))
            ),
            (
                format!("{TASK}-default.s3.json"),
                with_common(json!({
                    "directory": format!("{TASK_DIR}/logs"),
                    "fileGlob": "service.log*.[gb]z*",
                    "s3Bucket": "my-logs",
                    "s3KeyFormat": format!("myreq/%Y/%m/{TASK}_%index-%s-%filename"),
                    "s3StorageClass": "STANDARD_IA",
                    "applyStorageClassIfOverBytes": 75000,
                    "checkSubdirectories": false,
                    "compressBeforeUpload": false,
                    "checkIfOpen": true
                }))
            ),
        ]
    );
}

#[test]
fn group_tag_and_host_tokens_are_expanded() {
    let mut data = spec_data();
    data.s3_uploader_key_pattern = Some("%group/%tag/%host/%deployId/%requestId/%s".into());
    data.request_group = Some("platform".into());
    data.executor_data.logging_tag = Some("web".into());
    let plan = upload_plan(
        &task_id(),
        Path::new(TASK_DIR),
        &data,
        &UploadDefaults::default(),
        LogPhase::Start,
    );
    assert_eq!(
        plan.uploads[0].metadata.s3_key_format,
        "platform/web/host_a/dep1/myreq/%s"
    );
}

#[test]
fn no_bucket_anywhere_gives_no_record() {
    let mut data = spec_data();
    data.default_s3_bucket = Some(String::new());
    let plan = upload_plan(
        &task_id(),
        Path::new(TASK_DIR),
        &data,
        &UploadDefaults::default(),
        LogPhase::End,
    );
    assert!(plan.uploads.is_empty());
    assert_eq!(plan.skipped.len(), 1);
    assert_eq!(plan.skipped[0].hint, "default");
    assert_eq!(plan.skipped[0].reason, SkipReason::NoBucket);
}

#[test]
fn the_spec_tail_metadata_example_is_reproduced() {
    let data: SingularityTaskExecutorData = serde_json::from_value(json!({
        "cmd": "run",
        "loggingTag": "myapp",
        "loggingExtraFields": {"team": "infra", "env": "prod"}
    }))
    .expect("valid executor data");
    let log = service_log_path(Path::new("/sandbox").join(TASK).as_path(), &data);
    let tail = tail_metadata(&log, &data, LogPhase::Start).expect("tagged");
    assert_eq!(
        serde_json::to_value(&tail).expect("serializable"),
        load("tail_metadata.spec.json")
    );
    assert_eq!(
        naming::tail_metadata_file_name(&log, naming::DEFAULT_TAIL_METADATA_SUFFIX),
        format!(
            "{}.tail.json",
            hex_sha256(format!("/sandbox/{TASK}/service.log").as_bytes())
        )
    );
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn the_task_definition_has_the_spec_shape() {
    let mut expected = load("task_definition.full.json");
    let data: SingularityTaskExecutorData =
        serde_json::from_value(expected["executorData"].clone()).expect("valid executor data");
    let definition = task_definition(
        TASK,
        data,
        Path::new(TASK_DIR),
        12345,
        &ExecutorConfig::default(),
    );
    // Singularity writes the deploy's value as given and resolves it against `app/` itself.
    expected["healthcheckResultFilePath"] = json!("app/healthy");
    assert_eq!(
        serde_json::to_value(&definition).expect("serializable"),
        expected
    );
}

#[test]
fn the_task_definition_follows_the_names_in_data_and_config() {
    let data: SingularityTaskExecutorData = serde_json::from_value(json!({
        "cmd": "run",
        "serviceLog": "output",
        "serviceFinishedTailLog": "tail.txt"
    }))
    .expect("valid executor data");
    let config = ExecutorConfig {
        task_app_directory: "work".into(),
        executor_bash_log: "runner.log".into(),
        logrotate_state_file: "rotate.state".into(),
        signature_verify_out: "sig.out".into(),
        ..ExecutorConfig::default()
    };
    let dir = PathBuf::from("/s/t");
    let def = task_definition(TASK, data, &dir, 7, &config);
    let v = serde_json::to_value(&def).expect("serializable");
    assert_eq!(v["serviceLogOut"], json!("/s/t/output"));
    assert_eq!(v["serviceLogOutExtension"], json!(""));
    assert_eq!(v["serviceFinishedTailLog"], json!("/s/t/tail.txt"));
    assert_eq!(v["taskAppDirectory"], json!("/s/t/work"));
    assert_eq!(v["executorBashOut"], json!("/s/t/runner.log"));
    assert_eq!(v["logrotateStateFile"], json!("/s/t/rotate.state"));
    assert_eq!(v["signatureVerifyOut"], json!("sig.out"));
    assert_eq!(v["executorPid"], json!("7"));
    assert!(v.get("healthcheckResultFilePath").is_none());
    assert!(v.get("healthcheckOptions").is_none());
}
