//! Every JSON example of the compatibility spec, and a full example of each record, survives
//! parse → serialize unchanged (compared as JSON values).

use std::path::{Path, PathBuf};

use pretty_assertions::assert_eq;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use singularity_common::records::{
    Artifact, ArtifactDownloadRequest, ArtifactList, CleanupResults, LogrotateFrequency,
    RemoteArtifact, S3UploadMetadata, SingularityTaskExecutorData, TailMetadata, TaskDefinition,
    UploaderType,
};
use singularity_common::task_id::TaskId;

fn data_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/records")
        .join(name)
}

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(data_file(name)).expect("readable test data");
    serde_json::from_str(&text).expect("test data is JSON")
}

/// Parses `name` as `T`, checks that serializing gives the same JSON value, and returns it.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let original = load(name);
    let parsed: T = serde_json::from_value(original.clone()).expect(name);
    let written = serde_json::to_value(&parsed).expect(name);
    assert_eq!(written, original, "{name}");
    // Serializing to text and parsing that again is stable too.
    let text = serde_json::to_string(&parsed).expect(name);
    let again: T = serde_json::from_str(&text).expect(name);
    assert_eq!(
        serde_json::to_value(&again).expect(name),
        original,
        "{name}"
    );
    parsed
}

#[test]
fn s3_upload_metadata_spec_example() {
    let m: S3UploadMetadata = round_trip("s3_upload_metadata.spec.json");
    assert_eq!(m.file_glob, "service.log*.[gb]z*");
    assert_eq!(m.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(m.apply_storage_class_if_over_bytes, Some(75000));
    assert!(m.check_if_open);
    assert!(!m.finished);
    assert_eq!(m.uploader_type, UploaderType::S3);
    assert!(m.gcs_credentials.is_empty());
    assert_eq!(m.identity().1, "service.log*.[gb]z*");
}

#[test]
fn s3_upload_metadata_every_field() {
    let m: S3UploadMetadata = round_trip("s3_upload_metadata.full.json");
    assert_eq!(m.pid, Some(4242));
    assert_eq!(m.finished_after_millis_without_new_file, Some(-1));
    assert_eq!(m.uploader_type, UploaderType::Gcs);
    assert_eq!(m.storage_class.as_deref(), Some("GLACIER_IR"));
    assert_eq!(m.gcs_credentials["project_id"], "p");
    assert!(!m.check_if_open);
}

#[test]
fn artifact_download_request_spec_example() {
    let r: ArtifactDownloadRequest = round_trip("artifact_download_request.spec.json");
    assert_eq!(r.target_directory, Path::new("/abs/path/to/task/dir"));
    assert_eq!(r.timeout_millis, Some(180_000));
    assert_eq!(r.s3_artifact.s3_object_key, "myapp/1.2.3/app.tar.gz");
    assert_eq!(r.s3_artifact.filesize(), Some(12345));
    assert_eq!(r.s3_artifact.cache_name(), "0cc1...-app.tar.gz");
}

#[test]
fn tail_metadata_spec_example() {
    let t: TailMetadata = round_trip("tail_metadata.spec.json");
    assert_eq!(t.tag, "myapp");
    assert_eq!(t.extra_fields["team"], "infra");
    assert!(!t.finished);
}

#[test]
fn cleanup_results_spec_example() {
    let c: CleanupResults = round_trip("cleanup_results.spec.json");
    assert_eq!(c.total_task_files, 12);
    assert_eq!(c.error_tasks, 1);
    assert!(c.error_message.is_some());
}

#[test]
fn artifact_list_spec_example() {
    let l: ArtifactList = round_trip("artifact_list.spec.json");
    assert_eq!(l, ArtifactList::default());
}

#[test]
fn task_id_spec_example() {
    let id: TaskId = round_trip("task_id.spec.json");
    assert_eq!(id.to_string(), "myreq-dep1-1668780000000-1-host_a-rack1");
}

#[test]
fn task_executor_data_with_every_field_and_artifact_kind() {
    let d: SingularityTaskExecutorData = round_trip("task_executor_data.full.json");
    let e = &d.executor_data;
    assert_eq!(e.cmd, "java -jar app.jar");
    assert_eq!(e.embedded_artifacts[0].content, b"hello world\n");
    assert_eq!(
        e.embedded_artifacts[0].target_folder_relative_to_task(),
        Some("app/conf")
    );
    assert_eq!(
        e.external_artifacts[0].url,
        "https://artifacts.example.com/tool.tar.gz"
    );
    assert!(!e.external_artifacts[0].is_artifact_list());
    assert!(e.s3_artifacts[1].is_artifact_list());
    assert_eq!(
        e.s3_artifacts[0].cache_name(),
        "0cc175b9c0f1b6a831c399e269772661-app.tar.gz"
    );
    let sigs = e.s3_artifact_signatures.as_ref().unwrap();
    assert_eq!(sigs[0].artifact_filename, "app.tar.gz");
    assert_eq!(sigs[0].to_s3_artifact().filename(), "app.tar.gz.asc");
    assert_eq!(e.logrotate_frequency, Some(LogrotateFrequency::Hourly));
    assert!(e.is_successful_exit_code(143));
    assert!(!e.is_successful_exit_code(1));
    assert_eq!(e.logging_extra_fields["env"], "prod");

    let files = d.s3_uploader_additional_files.as_ref().unwrap();
    assert_eq!(files.len(), 2);
    assert!(files[0].compress_before_upload && !files[0].check_if_open);
    assert_eq!(files[1].filename, "gc.log");
    assert!(files[1].check_if_open);
    assert_eq!(d.effective_request_group(), "platform");
    assert_eq!(d.cpu_hard_limit, Some(4));
    let hc = d.healthcheck_options.as_ref().unwrap();
    assert_eq!(
        hc.healthcheck_result_file_path.as_deref(),
        Some("app/healthy")
    );
    assert_eq!(hc.failure_status_codes.as_deref(), Some(&[500, 503][..]));
}

#[test]
fn task_definition_full_example() {
    let t: TaskDefinition = round_trip("task_definition.full.json");
    let dir = Path::new(
        "/mnt/mesos/slaves/S1/frameworks/Singularity/executors/e1/runs/r1/myreq-dep1-1668780000000-1-host_a-rack1",
    );
    assert_eq!(t.task_directory, dir);
    assert_eq!(t.executor_pid(), Some(12345));
    assert_eq!(t.service_log_out_path(), dir.join("service.log"));
    assert_eq!(t.signature_verify_out_path(), dir.join("executor.gpg.out"));
    assert_eq!(t.logrotate_state_file_path(), dir.join("logrotate.status"));
    assert_eq!(t.task_app_directory_path(), dir.join("app"));
    assert_eq!(t.executor_bash_out_path(), dir.join("executor.bash.log"));
    assert_eq!(
        t.service_finished_tail_log_path(),
        dir.join("tail_of_finished_service.log")
    );
    assert_eq!(
        t.healthcheck_result_file_path(),
        Some(dir.join("app/healthy"))
    );
    assert_eq!(t.service_log_out_extension, "log");
}
