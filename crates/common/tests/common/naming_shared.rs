//! The names one daemon writes are the names another finds: records written under
//! `naming` names are found again by the suffix scans and parsers the readers use.

use std::fs;
use std::path::Path;

use pretty_assertions::assert_eq;

use singularity_common::fsio::{read_json_opt, write_json_atomic};
use singularity_common::keyfmt::{TaskKeyTokens, format_task_key_pattern};
use singularity_common::naming::{self, *};
use singularity_common::records::{S3UploadMetadata, TailMetadata, TaskDefinition};
use singularity_common::task_id::TaskId;

const TASK: &str = "my-req-dep1-1668780000000-3-ip_10_0_0_1-us_east_1a";

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("readable dir")
        .map(|e| {
            let name = e.expect("dir entry").file_name();
            name.into_string().expect("UTF-8 name")
        })
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

#[test]
fn container_name_round_trips_through_docker_listing() {
    let id: TaskId = TASK.parse().unwrap();
    let name = container_name(DEFAULT_DOCKER_PREFIX, &id.to_string());
    // Docker lists names as "/<name>".
    let listed = format!("/{name}");
    let found = task_id_from_container_name(DEFAULT_DOCKER_PREFIX, &listed).unwrap();
    assert_eq!(found.parse::<TaskId>().unwrap(), id);
}

#[test]
fn cleanup_finds_the_definition_the_executor_wrote() {
    let defs = tempfile::tempdir().unwrap();
    let sandbox = tempfile::tempdir().unwrap();
    let task_dir = task_directory(sandbox.path(), TASK);
    let definition = serde_json::json!({
        "taskId": TASK,
        "executorData": {"cmd": "run"},
        "taskDirectory": task_dir,
        "executorPid": "1",
        "serviceLogOut": task_dir.join(SERVICE_LOG),
        "serviceLogOutExtension": "log",
        "serviceFinishedTailLog": task_dir.join(SERVICE_FINISHED_TAIL_LOG),
        "taskAppDirectory": task_dir.join(APP_DIRECTORY),
        "executorBashOut": task_dir.join(EXECUTOR_BASH_LOG),
        "logrotateStateFile": task_dir.join(LOGROTATE_STATE_FILE),
        "signatureVerifyOut": SIGNATURE_VERIFY_OUT
    });
    let definition: TaskDefinition = serde_json::from_value(definition).unwrap();
    let path = defs.path().join(task_definition_file_name(
        TASK,
        DEFAULT_TASK_DEFINITION_SUFFIX,
    ));
    write_json_atomic(&path, &definition).unwrap();

    let found = files_with_suffix(defs.path(), DEFAULT_TASK_DEFINITION_SUFFIX);
    assert_eq!(found, [format!("{TASK}.task.json")]);
    let read: TaskDefinition = read_json_opt(&defs.path().join(&found[0]))
        .unwrap()
        .unwrap();
    assert_eq!(read, definition);
    assert_eq!(read.task_id.parse::<TaskId>().unwrap().to_string(), TASK);
    assert_eq!(
        read.logrotate_state_file_path(),
        task_dir.join("logrotate.status")
    );
}

#[test]
fn uploader_finds_the_metadata_the_executor_wrote() {
    let meta_dir = tempfile::tempdir().unwrap();
    let id: TaskId = TASK.parse().unwrap();
    let key = format_task_key_pattern(
        "%requestId/%group/%Y/%m/%taskId_%index-%s-%filename",
        &TaskKeyTokens::new(&id, None, None),
    );
    let task_dir = task_directory(Path::new("/sandbox"), TASK);
    let mut m = S3UploadMetadata::new(
        task_dir.join(LOGS_DIRECTORY),
        s3_upload_file_glob(SERVICE_LOG, false),
        "bucket",
        key,
    );
    m.storage_class = Some("STANDARD_IA".into());
    let name = s3_metadata_file_name(TASK, DEFAULT_S3_UPLOAD_HINT, DEFAULT_S3_METADATA_SUFFIX);
    write_json_atomic(&meta_dir.path().join(&name), &m).unwrap();

    // A second writer (the cleanup) rewrites the same file: same name, same identity.
    m.finished = true;
    m.upload_immediately = true;
    write_json_atomic(&meta_dir.path().join(&name), &m).unwrap();

    let found = files_with_suffix(meta_dir.path(), DEFAULT_S3_METADATA_SUFFIX);
    assert_eq!(found, std::slice::from_ref(&name));
    let read: S3UploadMetadata = read_json_opt(&meta_dir.path().join(&name))
        .unwrap()
        .unwrap();
    assert_eq!(read, m);
    assert_eq!(
        read.s3_key_format,
        format!("my-req/default/%Y/%m/{TASK}_%index-%s-%filename")
    );
    assert_eq!(read.identity().1, "service.log*.[gb]z*");
}

#[test]
fn tail_metadata_is_named_after_the_service_log_path() {
    let dir = tempfile::tempdir().unwrap();
    let log = task_directory(Path::new("/sandbox"), TASK).join(SERVICE_LOG);
    let t = TailMetadata {
        filename: log.clone(),
        tag: "app".into(),
        extra_fields: Default::default(),
        finished: false,
    };
    let name = tail_metadata_file_name(&log, DEFAULT_TAIL_METADATA_SUFFIX);
    write_json_atomic(&dir.path().join(&name), &t).unwrap();
    let read: TailMetadata = read_json_opt(&dir.path().join(&name)).unwrap().unwrap();
    // A watcher recomputes the name from the content.
    assert_eq!(
        tail_metadata_file_name(&read.filename, DEFAULT_TAIL_METADATA_SUFFIX),
        name
    );
    assert_eq!(name.len(), 64 + ".tail.json".len());
}

#[test]
fn names_with_colons_stay_consistent() {
    let id = "my:req-dep1-1-1-h-r";
    let sandbox = Path::new("/sandbox");
    let dir = naming::task_directory(sandbox, id);
    let def = task_definition_file_name(id, DEFAULT_TASK_DEFINITION_SUFFIX);
    // The task directory and the definition use the safe id; the rest use the raw id.
    assert_eq!(dir, sandbox.join("my_req-dep1-1-1-h-r"));
    assert_eq!(def, "my_req-dep1-1-1-h-r.task.json");
    assert_eq!(
        s3_metadata_file_name(id, "default", ".s3.json"),
        "my:req-dep1-1-1-h-r-default.s3.json"
    );
}
