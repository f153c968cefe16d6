//! The task definition, S3 upload metadata and tail metadata files as the executor writes
//! them: names, content, phases, and atomic replacement.

use std::fs;
use std::path::{Path, PathBuf};

use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use singularity_common::config::{BaseConfig, ExecutorConfig};
use singularity_common::records::{S3UploadMetadata, SingularityTaskExecutorData, TaskDefinition};
use singularity_executor::records::{
    LogPhase, MetadataError, TaskLogContext, build_task_definition, write_log_metadata,
    write_task_definition,
};
use tempfile::TempDir;

const TASK: &str = "myreq-dep1-1668780000000-1-host_a-rack1";

struct Dirs {
    _root: TempDir,
    task_dir: PathBuf,
    s3: PathBuf,
    tail: PathBuf,
    definitions: PathBuf,
}

impl Dirs {
    fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("se-test-")
            .tempdir()
            .expect("temp dir");
        let dirs = Dirs {
            task_dir: root.path().join("sandbox").join(TASK),
            s3: root.path().join("s3"),
            tail: root.path().join("tail"),
            definitions: root.path().join("definitions"),
            _root: root,
        };
        for d in [&dirs.task_dir, &dirs.s3, &dirs.tail, &dirs.definitions] {
            fs::create_dir_all(d).expect("test dirs");
        }
        dirs
    }

    fn base(&self) -> BaseConfig {
        BaseConfig {
            s3_uploader_metadata_directory: self.s3.clone(),
            log_watcher_metadata_directory: self.tail.clone(),
            ..BaseConfig::default()
        }
    }

    fn executor(&self) -> ExecutorConfig {
        ExecutorConfig {
            global_task_definition_directory: self.definitions.clone(),
            ..ExecutorConfig::default()
        }
    }

    fn context(&self, data: Value) -> TaskLogContext {
        TaskLogContext::new(
            TASK.parse().expect("task id"),
            &self.task_dir,
            executor_data(data),
        )
    }
}

fn executor_data(mut json: Value) -> SingularityTaskExecutorData {
    json["cmd"] = Value::from("run");
    serde_json::from_value(json).expect("executor data")
}

/// Every file in `dir`, hidden ones included, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("readable dir")
        .map(|e| {
            let name = e.expect("dir entry").file_name();
            name.into_string().expect("UTF-8 name")
        })
        .collect();
    names.sort();
    names
}

fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).expect("readable file");
    serde_json::from_slice(&bytes).expect("JSON file")
}

fn sha256_hex(text: &str) -> String {
    // Computed by the coreutils sha256sum, independently of the code under test.
    let output = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8(output.stdout).expect("hex digest")[..64].to_owned()
}

#[test]
fn start_and_end_metadata_of_a_tagged_task() {
    let dirs = Dirs::new();
    let task = dirs.context(json!({
        "defaultS3Bucket": "my-logs",
        "s3UploaderKeyPattern": "%requestId/%Y/%m/%taskId_%index-%s-%filename",
        "s3StorageClass": "STANDARD_IA",
        "applyS3StorageClassAfterBytes": 75000,
        "loggingTag": "myapp",
        "loggingExtraFields": {"team": "infra"}
    }));

    let report =
        write_log_metadata(&task, LogPhase::Start, &dirs.base(), &dirs.executor()).unwrap();
    let s3_file = dirs.s3.join(format!("{TASK}-default.s3.json"));
    let service_log = dirs.task_dir.join("service.log");
    let tail_file = dirs.tail.join(format!(
        "{}.tail.json",
        sha256_hex(service_log.to_str().unwrap())
    ));
    assert_eq!(report.s3_metadata, std::slice::from_ref(&s3_file));
    assert_eq!(report.tail_metadata.as_ref(), Some(&tail_file));
    assert!(report.skipped.is_empty());
    assert_eq!(files(&dirs.s3), [format!("{TASK}-default.s3.json")]);

    let expected = json!({
        "directory": dirs.task_dir.join("logs"),
        "fileGlob": "service.log*.[gb]z*",
        "s3Bucket": "my-logs",
        "s3KeyFormat": format!("myreq/%Y/%m/{TASK}_%index-%s-%filename"),
        "finished": false,
        "s3StorageClass": "STANDARD_IA",
        "applyStorageClassIfOverBytes": 75000,
        "uploadImmediately": false,
        "checkSubdirectories": false,
        "compressBeforeUpload": false,
        "checkIfOpen": true,
        "uploaderType": "S3",
        "gcsCredentials": {},
        "useS3ServerSideEncryption": false
    });
    assert_eq!(read_json(&s3_file), expected);
    assert_eq!(
        read_json(&tail_file),
        json!({"filename": service_log, "tag": "myapp",
               "extraFields": {"team": "infra"}, "finished": false})
    );
    // The uploader reads what was written.
    let parsed: S3UploadMetadata = serde_json::from_value(read_json(&s3_file)).unwrap();
    assert_eq!(parsed.directory, dirs.task_dir.join("logs"));

    // Teardown rewrites the same files in place.
    write_log_metadata(&task, LogPhase::End, &dirs.base(), &dirs.executor()).unwrap();
    let mut finished = expected;
    finished["finished"] = json!(true);
    finished["uploadImmediately"] = json!(true);
    assert_eq!(read_json(&s3_file), finished);
    assert_eq!(read_json(&tail_file)["finished"], json!(true));
    assert_eq!(files(&dirs.s3), [format!("{TASK}-default.s3.json")]);
    assert_eq!(files(&dirs.tail).len(), 1, "no temp file left behind");
}

#[test]
fn additional_files_unrotated_and_skips() {
    let dirs = Dirs::new();
    let task = dirs.context(json!({
        "defaultS3Bucket": "my-logs",
        "s3UploaderKeyPattern": "%taskId/%filename",
        "skipLogrotateAndCompress": true,
        "s3UploaderAdditionalFiles": [
            "gc.log",
            {"filename": "access.log", "s3UploaderFilenameHint": "access", "directory": "app/logs",
             "compressBeforeUpload": true, "checkIfOpen": false, "s3UploaderBucket": "access-logs",
             "s3UploaderKeyPattern": "access/%requestId/%filename"},
            {"filename": "*.hprof", "directory": "../outside"}
        ]
    }));

    let report =
        write_log_metadata(&task, LogPhase::Start, &dirs.base(), &dirs.executor()).unwrap();
    assert_eq!(
        report.tail_metadata, None,
        "no loggingTag, no tail metadata"
    );
    assert!(files(&dirs.tail).is_empty());
    assert_eq!(report.skipped.len(), 1);
    assert!(
        report.skipped[0].to_string().contains("outside"),
        "{}",
        report.skipped[0]
    );
    assert_eq!(
        files(&dirs.s3),
        [
            format!("{TASK}-access.s3.json"),
            format!("{TASK}-default.s3.json"),
            format!("{TASK}-file1.s3.json"),
        ]
    );
    let gc = read_json(&dirs.s3.join(format!("{TASK}-file1.s3.json")));
    assert_eq!(gc["directory"], json!(dirs.task_dir));
    assert_eq!(gc["fileGlob"], json!("gc.log*.[gb]z*"));
    assert_eq!(gc["s3KeyFormat"], json!(format!("{TASK}/%filename")));
    let access = read_json(&dirs.s3.join(format!("{TASK}-access.s3.json")));
    assert_eq!(access["directory"], json!(dirs.task_dir.join("app/logs")));
    assert_eq!(access["fileGlob"], json!("access.log*"));
    assert_eq!(access["s3Bucket"], json!("access-logs"));
    assert_eq!(access["s3KeyFormat"], json!("access/myreq/%filename"));
    assert_eq!(access["compressBeforeUpload"], json!(true));
    assert_eq!(access["checkIfOpen"], json!(false));

    write_log_metadata(&task, LogPhase::End, &dirs.base(), &dirs.executor()).unwrap();
    let unrotated = read_json(&dirs.s3.join(format!("{TASK}-unrotated.s3.json")));
    assert_eq!(unrotated["directory"], json!(dirs.task_dir));
    assert_eq!(unrotated["fileGlob"], json!("service.log"));
    assert_eq!(unrotated["finished"], json!(true));
    assert_eq!(unrotated["uploadImmediately"], json!(true));
    for name in files(&dirs.s3) {
        assert_eq!(
            read_json(&dirs.s3.join(&name))["finished"],
            json!(true),
            "{name}"
        );
    }
}

#[test]
fn no_bucket_writes_no_file() {
    let dirs = Dirs::new();
    let task = dirs.context(json!({"defaultS3Bucket": "", "s3UploaderKeyPattern": ""}));
    let report =
        write_log_metadata(&task, LogPhase::Start, &dirs.base(), &dirs.executor()).unwrap();
    assert!(report.s3_metadata.is_empty());
    assert_eq!(report.skipped.len(), 1);
    assert!(files(&dirs.s3).is_empty());

    // The executor's own s3UploaderBucket is the last resort.
    let mut executor = dirs.executor();
    executor.s3_uploader_bucket = Some("agent-logs".into());
    write_log_metadata(&task, LogPhase::Start, &dirs.base(), &executor).unwrap();
    let written = read_json(&dirs.s3.join(format!("{TASK}-default.s3.json")));
    assert_eq!(written["s3Bucket"], json!("agent-logs"));
    assert_eq!(
        written["s3KeyFormat"],
        json!(format!("myreq/%Y/%m/{TASK}_%index-%s-%filename"))
    );
}

#[test]
fn a_missing_metadata_directory_is_an_error_naming_it() {
    let dirs = Dirs::new();
    let task = dirs.context(json!({"defaultS3Bucket": "b", "loggingTag": "t"}));
    let mut base = dirs.base();
    base.s3_uploader_metadata_directory = dirs.s3.join("missing");
    let err = write_log_metadata(&task, LogPhase::Start, &base, &dirs.executor()).unwrap_err();
    assert!(matches!(err, MetadataError::Partial { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    // The tail metadata was still written.
    assert_eq!(files(&dirs.tail).len(), 1);
}

#[test]
fn task_definition_is_written_under_the_safe_task_id() {
    let dirs = Dirs::new();
    let id = "my:req-dep1-1668780000000-1-host_a-rack1";
    let data = executor_data(json!({
        "healthcheckOptions": {"healthcheckResultFilePath": "healthy", "intervalSeconds": 2}
    }));
    let definition = build_task_definition(id, data, &dirs.task_dir, 4242, &dirs.executor());
    let path = write_task_definition(&definition, &dirs.executor()).unwrap();
    assert_eq!(
        path,
        dirs.definitions
            .join("my_req-dep1-1668780000000-1-host_a-rack1.task.json")
    );
    let task_dir = dirs.task_dir.display().to_string();
    let written = read_json(&path);
    assert_eq!(
        written,
        json!({
            "taskId": id,
            "executorData": {
                "cmd": "run", "embeddedArtifacts": [], "externalArtifacts": [], "s3Artifacts": [],
                "successfulExitCodes": [], "extraCmdLineArgs": [], "loggingExtraFields": {},
                "healthcheckOptions": {"healthcheckResultFilePath": "healthy", "intervalSeconds": 2}
            },
            "taskDirectory": task_dir,
            "executorPid": "4242",
            "serviceLogOut": format!("{task_dir}/service.log"),
            "serviceLogOutExtension": "log",
            "serviceFinishedTailLog": format!("{task_dir}/tail_of_finished_service.log"),
            "taskAppDirectory": format!("{task_dir}/app"),
            "executorBashOut": format!("{task_dir}/executor.bash.log"),
            "logrotateStateFile": format!("{task_dir}/logrotate.status"),
            "signatureVerifyOut": "executor.gpg.out",
            "healthcheckResultFilePath": "healthy",
            "healthcheckOptions": {"healthcheckResultFilePath": "healthy", "intervalSeconds": 2}
        })
    );
    let read: TaskDefinition = serde_json::from_value(written).unwrap();
    assert_eq!(read, definition);
    let context = TaskLogContext::from_definition(&read).unwrap();
    assert_eq!(
        context.service_log_path(),
        dirs.task_dir.join("service.log")
    );

    // Rewriting replaces the file whole, leaving no temp file.
    let again = build_task_definition(id, read.executor_data, &dirs.task_dir, 1, &dirs.executor());
    write_task_definition(&again, &dirs.executor()).unwrap();
    assert_eq!(read_json(&path)["executorPid"], json!("1"));
    assert_eq!(
        files(&dirs.definitions),
        ["my_req-dep1-1668780000000-1-host_a-rack1.task.json"]
    );
}

#[test]
fn atomic_writes_leave_readers_the_old_or_the_new_file() {
    let dirs = Dirs::new();
    let task = dirs.context(json!({"defaultS3Bucket": "b"}));
    let path = dirs.s3.join(format!("{TASK}-default.s3.json"));
    write_log_metadata(&task, LogPhase::Start, &dirs.base(), &dirs.executor()).unwrap();
    let before = fs::metadata(&path).unwrap();

    // A reader holding the old file keeps its content; the new content arrives by rename
    // (a new inode), never by truncating the file a reader may have open.
    let old = fs::File::open(&path).unwrap();
    write_log_metadata(&task, LogPhase::End, &dirs.base(), &dirs.executor()).unwrap();
    let after = fs::metadata(&path).unwrap();
    use std::os::unix::fs::MetadataExt as _;
    assert_ne!(before.ino(), after.ino());
    let old_content: Value = serde_json::from_reader(old).unwrap();
    assert_eq!(old_content["finished"], json!(false));
    assert_eq!(read_json(&path)["finished"], json!(true));
    assert_eq!(after.mode() & 0o777, 0o644);
}
