//! Reading what the Java side may write: alternative spellings, short forms, defaults, nulls,
//! unknown fields; and the errors for what cannot be read.

use std::path::Path;

use pretty_assertions::assert_eq;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use singularity_common::records::{
    ArtifactDownloadRequest, ArtifactList, CleanupResults, EmbeddedArtifact, ExecutorData,
    S3Artifact, S3UploadMetadata, S3UploaderFile, SingularityTaskExecutorData, TailMetadata,
    TaskDefinition, UploaderType,
};

/// Parses `input` as `T` and returns what `T` writes back.
fn normalise<T: DeserializeOwned + serde::Serialize>(input: Value) -> Value {
    let parsed: T = serde_json::from_value(input).expect("parses");
    serde_json::to_value(parsed).expect("serializes")
}

fn error_of<T: DeserializeOwned + std::fmt::Debug>(input: Value) -> String {
    serde_json::from_value::<T>(input)
        .expect_err("must not parse")
        .to_string()
}

const REQUIRED_METADATA: [(&str, &str); 4] = [
    ("directory", "/d"),
    ("fileGlob", "*.gz"),
    ("s3Bucket", "b"),
    ("s3KeyFormat", "k/%filename"),
];

fn minimal_metadata() -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in REQUIRED_METADATA {
        m.insert(k.into(), v.into());
    }
    Value::Object(m)
}

#[test]
fn s3_metadata_defaults_are_written_in_full() {
    assert_eq!(
        normalise::<S3UploadMetadata>(minimal_metadata()),
        json!({
            "directory": "/d", "fileGlob": "*.gz", "s3Bucket": "b", "s3KeyFormat": "k/%filename",
            "finished": false, "uploadImmediately": false, "checkSubdirectories": false,
            "compressBeforeUpload": false, "checkIfOpen": true, "uploaderType": "S3",
            "gcsCredentials": {}, "useS3ServerSideEncryption": false
        })
    );
    let m: S3UploadMetadata = serde_json::from_value(minimal_metadata()).unwrap();
    assert_eq!(m, S3UploadMetadata::new("/d", "*.gz", "b", "k/%filename"));
}

#[test]
fn s3_metadata_reads_both_storage_class_spellings() {
    let mut read = minimal_metadata();
    read["storageClass"] = json!("STANDARD_IA");
    let written = normalise::<S3UploadMetadata>(read);
    assert_eq!(written["s3StorageClass"], "STANDARD_IA");
    assert!(written.get("storageClass").is_none());

    let mut both = minimal_metadata();
    both["storageClass"] = json!("GLACIER");
    both["s3StorageClass"] = json!("STANDARD_IA");
    let m: S3UploadMetadata = serde_json::from_value(both).unwrap();
    assert_eq!(m.storage_class.as_deref(), Some("STANDARD_IA"));

    let mut written_form = minimal_metadata();
    written_form["s3StorageClass"] = json!("ONEZONE_IA");
    let m: S3UploadMetadata = serde_json::from_value(written_form).unwrap();
    assert_eq!(m.storage_class.as_deref(), Some("ONEZONE_IA"));
}

#[test]
fn s3_metadata_nulls_read_as_defaults() {
    let mut m = minimal_metadata();
    for key in [
        "finished",
        "checkIfOpen",
        "gcsCredentials",
        "uploaderType",
        "pid",
        "storageClass",
        "onFinishGlob",
    ] {
        m[key] = Value::Null;
    }
    assert_eq!(
        normalise::<S3UploadMetadata>(m),
        normalise::<S3UploadMetadata>(minimal_metadata())
    );
}

#[test]
fn s3_metadata_missing_required_fields_are_named() {
    for (key, _) in REQUIRED_METADATA {
        let mut m = minimal_metadata();
        m.as_object_mut().unwrap().remove(key);
        let err = error_of::<S3UploadMetadata>(m);
        assert!(
            err.contains(&format!("missing field `{key}`")),
            "{key}: {err}"
        );
    }
}

#[test]
fn s3_metadata_rejects_unknown_uploader_type() {
    let mut m = minimal_metadata();
    m["uploaderType"] = json!("AZURE");
    let err = error_of::<S3UploadMetadata>(m);
    assert!(err.contains("AZURE"), "{err}");
    let mut m = minimal_metadata();
    m["uploaderType"] = json!("GCS");
    let m: S3UploadMetadata = serde_json::from_value(m).unwrap();
    assert_eq!(m.uploader_type, UploaderType::Gcs);
}

#[test]
fn unknown_fields_are_ignored_everywhere() {
    let mut m = minimal_metadata();
    m["someFutureField"] = json!({"nested": [1, 2]});
    let m: S3UploadMetadata = serde_json::from_value(m).unwrap();
    assert_eq!(m.s3_bucket, "b");

    let t: TailMetadata =
        serde_json::from_value(json!({"filename": "/s/service.log", "tag": "t", "color": "blue"}))
            .unwrap();
    assert_eq!(t.filename, Path::new("/s/service.log"));

    let d: SingularityTaskExecutorData = serde_json::from_value(json!({
        "cmd": "run", "whatever": 1, "s3UploaderAdditionalFiles": [{"filename": "a", "x": 1}],
        "healthcheckOptions": {"intervalSeconds": 5, "newKnob": true},
        "s3Artifacts": [{"filename": "f", "s3Bucket": "b", "s3ObjectKey": "k", "extra": null}]
    }))
    .unwrap();
    assert_eq!(d.executor_data.cmd, "run");
    assert_eq!(d.s3_uploader_additional_files.unwrap()[0].filename, "a");

    let c: CleanupResults = serde_json::from_value(json!({"invalidTasks": 3, "z": 0})).unwrap();
    assert_eq!(c.invalid_tasks, 3);
}

#[test]
fn uploader_file_from_string_or_object() {
    let from_string: S3UploaderFile = serde_json::from_value(json!("service.log")).unwrap();
    assert_eq!(from_string, S3UploaderFile::from_filename("service.log"));
    assert_eq!(
        serde_json::to_value(&from_string).unwrap(),
        json!({"filename": "service.log", "checkSubdirectories": false,
               "compressBeforeUpload": false, "checkIfOpen": true})
    );

    let from_object: S3UploaderFile = serde_json::from_value(json!({
        "filename": "gc.log", "directory": "logs", "checkIfOpen": false
    }))
    .unwrap();
    assert_eq!(from_object.directory.as_deref(), Some("logs"));
    assert!(!from_object.check_if_open);
    assert!(!from_object.compress_before_upload);

    let mixed: Vec<S3UploaderFile> =
        serde_json::from_value(json!(["a.log", {"filename": "b.log"}])).unwrap();
    assert_eq!(mixed[0], S3UploaderFile::from_filename("a.log"));
    assert_eq!(mixed[1], S3UploaderFile::from_filename("b.log"));

    let err = error_of::<S3UploaderFile>(json!({"directory": "logs"}));
    assert!(err.contains("missing field `filename`"), "{err}");
    let err = error_of::<S3UploaderFile>(json!(42));
    assert!(
        err.contains("a file name or an s3UploaderAdditionalFiles object"),
        "{err}"
    );
}

#[test]
fn uploader_file_string_form_inside_executor_data() {
    let d: SingularityTaskExecutorData = serde_json::from_value(json!({
        "cmd": "run", "s3UploaderAdditionalFiles": ["service.log", {"filename": "x", "s3UploaderFilenameHint": "h"}]
    }))
    .unwrap();
    let files = d.s3_uploader_additional_files.unwrap();
    assert_eq!(files[0], S3UploaderFile::from_filename("service.log"));
    assert_eq!(files[1].s3_uploader_filename_hint.as_deref(), Some("h"));
}

#[test]
fn executor_data_defaults() {
    assert_eq!(
        normalise::<ExecutorData>(json!({"cmd": "sleep 1"})),
        json!({"cmd": "sleep 1", "embeddedArtifacts": [], "externalArtifacts": [],
               "s3Artifacts": [], "successfulExitCodes": [], "extraCmdLineArgs": [],
               "loggingExtraFields": {}})
    );
    // Nulls read as the defaults, and absent optionals stay absent.
    assert_eq!(
        normalise::<ExecutorData>(json!({"cmd": "sleep 1", "successfulExitCodes": null,
            "extraCmdLineArgs": null, "loggingExtraFields": null, "s3Artifacts": null,
            "user": null, "s3ArtifactSignatures": null})),
        normalise::<ExecutorData>(json!({"cmd": "sleep 1"}))
    );
}

#[test]
fn task_executor_data_is_one_flat_object() {
    let d: SingularityTaskExecutorData = serde_json::from_value(json!({
        "cmd": "run", "user": "app", "serviceLog": "out.log", "requestGroup": "g"
    }))
    .unwrap();
    assert_eq!(d.executor_data.user.as_deref(), Some("app"));
    assert_eq!(d.effective_service_log(), "out.log");
    assert_eq!(
        d.effective_service_finished_tail_log(),
        "tail_of_finished_service.log"
    );
    let written = serde_json::to_value(&d).unwrap();
    assert_eq!(
        written,
        json!({"cmd": "run", "user": "app", "serviceLog": "out.log", "requestGroup": "g",
               "embeddedArtifacts": [], "externalArtifacts": [], "s3Artifacts": [],
               "successfulExitCodes": [], "extraCmdLineArgs": [], "loggingExtraFields": {}})
    );
    assert!(written.get("executorData").is_none());

    let bare: SingularityTaskExecutorData =
        serde_json::from_value(json!({"cmd": "run", "serviceLog": ""})).unwrap();
    assert_eq!(bare.effective_service_log(), "service.log");
    assert_eq!(bare.effective_request_group(), "default");
    assert_eq!(bare.s3_uploader_additional_files, None);
}

#[test]
fn executor_data_missing_cmd_is_named() {
    let err = error_of::<SingularityTaskExecutorData>(json!({"user": "app"}));
    assert!(err.contains("missing field `cmd`"), "{err}");
    // A raw command string (what the scheduler sends without executor data) is not accepted.
    assert!(serde_json::from_str::<SingularityTaskExecutorData>("\"sleep 100\"").is_err());
}

#[test]
fn logrotate_frequency_must_be_a_known_name() {
    let err = error_of::<ExecutorData>(json!({"cmd": "x", "logrotateFrequency": "FORTNIGHTLY"}));
    assert!(err.contains("FORTNIGHTLY"), "{err}");
}

#[test]
fn artifacts_require_their_identifying_fields() {
    let cases = [
        (
            json!({"name": "a", "s3Bucket": "b", "s3ObjectKey": "k"}),
            "filename",
        ),
        (json!({"filename": "f", "s3ObjectKey": "k"}), "s3Bucket"),
        (json!({"filename": "f", "s3Bucket": "b"}), "s3ObjectKey"),
    ];
    for (input, field) in cases {
        let err = error_of::<S3Artifact>(input);
        assert!(err.contains(&format!("missing field `{field}`")), "{err}");
    }
    let err = error_of::<EmbeddedArtifact>(json!({"filename": "f"}));
    assert!(err.contains("missing field `content`"), "{err}");
    // `name` is informational; Java omits it when null, so it may be absent.
    let a: S3Artifact =
        serde_json::from_value(json!({"filename": "f", "s3Bucket": "b", "s3ObjectKey": "k"}))
            .unwrap();
    assert_eq!(a.name, "");
}

#[test]
fn embedded_content_is_base64() {
    let a: EmbeddedArtifact =
        serde_json::from_value(json!({"name": "n", "filename": "f", "content": "AAEC/w=="}))
            .unwrap();
    assert_eq!(a.content, [0, 1, 2, 255]);
    assert_eq!(serde_json::to_value(&a).unwrap()["content"], "AAEC/w==");

    // Unpadded and line-wrapped input is accepted; the output is canonical.
    let a: EmbeddedArtifact =
        serde_json::from_value(json!({"filename": "f", "content": "AAEC\n/w"})).unwrap();
    assert_eq!(a.content, [0, 1, 2, 255]);
    assert_eq!(serde_json::to_value(&a).unwrap()["content"], "AAEC/w==");

    let err = error_of::<EmbeddedArtifact>(json!({"filename": "f", "content": "!!!"}));
    assert!(err.contains("invalid base64"), "{err}");
}

#[test]
fn artifact_list_nulls_read_as_empty() {
    let l: ArtifactList = serde_json::from_value(json!({
        "embeddedArtifacts": null, "externalArtifacts": null,
        "s3Artifacts": [{"filename": "f", "s3Bucket": "b", "s3ObjectKey": "k"}]
    }))
    .unwrap();
    assert!(l.embedded_artifacts.is_empty() && l.external_artifacts.is_empty());
    assert!(l.s3_artifact_signatures.is_empty());
    assert_eq!(l.s3_artifacts.len(), 1);
    assert_eq!(
        serde_json::to_value(&l).unwrap(),
        json!({"embeddedArtifacts": [], "externalArtifacts": [],
               "s3Artifacts": [{"name": "", "filename": "f", "s3Bucket": "b", "s3ObjectKey": "k"}],
               "s3ArtifactSignatures": []})
    );
}

fn java_style_definition() -> Value {
    json!({
        "taskId": "myreq-dep1-1668780000000-1-host_a-rack1",
        "executorData": {"cmd": "run", "healthcheckOptions": {"healthcheckResultFilePath": "ok"}},
        "taskDirectory": "/sandbox/myreq-dep1-1668780000000-1-host_a-rack1",
        "executorPid": 777,
        "serviceLogOut": "/sandbox/myreq-dep1-1668780000000-1-host_a-rack1/service.log",
        "serviceLogOutExtension": "log",
        "serviceFinishedTailLog": "tail_of_finished_service.log",
        "taskAppDirectory": "app",
        "executorBashOut": "executor.bash.log",
        "logrotateStateFilePath": "logrotate.status",
        "signatureVerifyOut": "executor.gpg.out"
    })
}

#[test]
fn task_definition_reads_both_logrotate_state_spellings() {
    let written = normalise::<TaskDefinition>(java_style_definition());
    assert_eq!(written["logrotateStateFile"], "logrotate.status");
    assert!(written.get("logrotateStateFilePath").is_none());

    let mut both = java_style_definition();
    both["logrotateStateFile"] = json!("/abs/state");
    let t: TaskDefinition = serde_json::from_value(both).unwrap();
    assert_eq!(t.logrotate_state_file_path(), Path::new("/abs/state"));
}

#[test]
fn task_definition_pid_is_written_as_a_string() {
    let written = normalise::<TaskDefinition>(java_style_definition());
    assert_eq!(written["executorPid"], "777");
    let t: TaskDefinition = serde_json::from_value(java_style_definition()).unwrap();
    assert_eq!(t.executor_pid(), Some(777));

    for (pid, want) in [
        (json!("12345"), Some(12345)),
        (json!("0"), None),
        (json!("-1"), None),
        (json!("abc"), None),
        (json!(null), None),
    ] {
        let mut d = java_style_definition();
        d["executorPid"] = pid.clone();
        let t: TaskDefinition = serde_json::from_value(d).unwrap();
        assert_eq!(t.executor_pid(), want, "{pid}");
    }
}

#[test]
fn task_definition_resolves_relative_and_absolute_paths() {
    let t: TaskDefinition = serde_json::from_value(java_style_definition()).unwrap();
    let dir = Path::new("/sandbox/myreq-dep1-1668780000000-1-host_a-rack1");
    assert_eq!(t.service_log_out_path(), dir.join("service.log"));
    assert_eq!(
        t.service_finished_tail_log_path(),
        dir.join("tail_of_finished_service.log")
    );
    assert_eq!(t.task_app_directory_path(), dir.join("app"));
    assert_eq!(t.executor_bash_out_path(), dir.join("executor.bash.log"));
    assert_eq!(t.logrotate_state_file_path(), dir.join("logrotate.status"));
    assert_eq!(t.signature_verify_out_path(), dir.join("executor.gpg.out"));
    // From the executor data's health check when the definition has no path of its own.
    assert_eq!(t.healthcheck_result_file_path(), Some(dir.join("app/ok")));
    assert_eq!(t.resolve(Path::new("/etc/x")), Path::new("/etc/x"));
}

#[test]
fn task_definition_writes_healthcheck_options_from_the_executor_data() {
    let mut input = java_style_definition();
    // A stale top-level copy is ignored; the executor data's is written.
    input["healthcheckOptions"] = json!({"maxRetries": 99});
    let written = normalise::<TaskDefinition>(input);
    assert_eq!(
        written["healthcheckOptions"],
        json!({"healthcheckResultFilePath": "ok"})
    );

    let mut no_hc = java_style_definition();
    no_hc["executorData"] = json!({"cmd": "run"});
    let written = normalise::<TaskDefinition>(no_hc);
    assert!(written.get("healthcheckOptions").is_none());
    assert!(written.get("healthcheckResultFilePath").is_none());
}

#[test]
fn task_definition_missing_paths_take_sandbox_names() {
    let t: TaskDefinition = serde_json::from_value(json!({
        "taskId": "r-d-1-1-h-k", "executorData": {"cmd": "run"}, "taskDirectory": "/s/t"
    }))
    .unwrap();
    assert_eq!(t.service_log_out_path(), Path::new("/s/t/service.log"));
    assert_eq!(t.task_app_directory_path(), Path::new("/s/t/app"));
    assert_eq!(
        t.logrotate_state_file_path(),
        Path::new("/s/t/logrotate.status")
    );
    assert_eq!(t.executor_pid(), None);
    assert_eq!(t.healthcheck_result_file_path(), None);
}

#[test]
fn task_definition_missing_required_fields_are_named() {
    for key in ["taskId", "executorData", "taskDirectory"] {
        let mut d = java_style_definition();
        d.as_object_mut().unwrap().remove(key);
        let err = error_of::<TaskDefinition>(d);
        assert!(
            err.contains(&format!("missing field `{key}`")),
            "{key}: {err}"
        );
    }
    let mut d = java_style_definition();
    d["executorData"] = json!({"user": "x"});
    let err = error_of::<TaskDefinition>(d);
    assert!(err.contains("missing field `cmd`"), "{err}");
}

#[test]
fn download_request_requires_target_and_artifact() {
    let artifact = json!({"filename": "f", "s3Bucket": "b", "s3ObjectKey": "k"});
    let err = error_of::<ArtifactDownloadRequest>(json!({"s3Artifact": artifact}));
    assert!(err.contains("missing field `targetDirectory`"), "{err}");
    let err = error_of::<ArtifactDownloadRequest>(json!({"targetDirectory": "/t"}));
    assert!(err.contains("missing field `s3Artifact`"), "{err}");
    assert_eq!(
        normalise::<ArtifactDownloadRequest>(
            json!({"targetDirectory": "/t", "s3Artifact": artifact})
        ),
        json!({"targetDirectory": "/t",
               "s3Artifact": {"name": "", "filename": "f", "s3Bucket": "b", "s3ObjectKey": "k"}})
    );
}

#[test]
fn cleanup_results_omit_absent_error_message() {
    let c = CleanupResults {
        total_task_files: 3,
        ..CleanupResults::default()
    };
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        json!({"totalTaskFiles": 3, "mesosRunningTasks": 0, "waitingTasks": 0,
               "runningTasksIgnored": 0, "successfullyCleanedTasks": 0, "ioErrorTasks": 0,
               "errorTasks": 0, "invalidTasks": 0})
    );
}

#[test]
fn tail_metadata_defaults() {
    assert_eq!(
        normalise::<TailMetadata>(json!({"filename": "/s/service.log", "tag": "t"})),
        json!({"filename": "/s/service.log", "tag": "t", "extraFields": {}, "finished": false})
    );
    let err = error_of::<TailMetadata>(json!({"filename": "/s/service.log"}));
    assert!(err.contains("missing field `tag`"), "{err}");
}
