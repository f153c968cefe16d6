//! Every name one daemon writes and another looks for.
//!
//! The executor, the cleanup, the uploader and the downloader meet only through files, so
//! they must agree on each name byte for byte. Names are made here and nowhere else; callers
//! never assemble them with `format!`.
//!
//! ```text
//! <globalTaskDefinitionDirectory>/<safeTaskId>.task.json
//! <s3UploaderMetadataDirectory>/<taskId>-<hint>.s3.json
//! <logWatcherMetadataDirectory>/<sha256hex(serviceLogPath)>.tail.json
//! <artifactCacheDirectory>/<md5>-<filename> | <filename>
//! <executorCleanupResultsDirectory>/<epochMillis>.cleanup.json
//! <sandbox>/<safeTaskId>/                       the task directory
//! ```

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::records::LogrotateFrequency;
pub use crate::task_id::safe_task_id;

/// Docker container name prefix (`dockerPrefix`).
pub const DEFAULT_DOCKER_PREFIX: &str = "se-";
/// Task definition file suffix (`globalTaskDefinitionSuffix`).
pub const DEFAULT_TASK_DEFINITION_SUFFIX: &str = ".task.json";
/// Upload metadata file suffix (`s3UploaderMetadataSuffix`).
pub const DEFAULT_S3_METADATA_SUFFIX: &str = ".s3.json";
/// Tail metadata file suffix (`logWatcherMetadataSuffix`).
pub const DEFAULT_TAIL_METADATA_SUFFIX: &str = ".tail.json";
/// Cleanup statistics file suffix (`executorCleanupResultsSuffix`).
pub const DEFAULT_CLEANUP_RESULTS_SUFFIX: &str = ".cleanup.json";

/// The `%group` value when the request has no group.
pub const DEFAULT_REQUEST_GROUP: &str = "default";
/// Upload metadata hint of the rotated service log.
pub const DEFAULT_S3_UPLOAD_HINT: &str = "default";
/// Upload metadata hint of the raw service log when rotation is skipped.
pub const UNROTATED_S3_UPLOAD_HINT: &str = "unrotated";
/// Glob suffix of rotated, compressed files (`.gz`, `.bz2`, ...).
pub const ROTATED_COMPRESSED_GLOB_SUFFIX: &str = "*.[gb]z*";

// Names inside the task directory.

/// Output of the user command (`serviceLog`).
pub const SERVICE_LOG: &str = "service.log";
/// Last lines of the service log, written at teardown (`serviceFinishedTailLog`).
pub const SERVICE_FINISHED_TAIL_LOG: &str = "tail_of_finished_service.log";
/// Where rotated service logs go (`logrotateToDirectory`).
pub const LOGS_DIRECTORY: &str = "logs";
/// The user command's working directory (`taskAppDirectory`).
pub const APP_DIRECTORY: &str = "app";
/// Temp directory created by the runner script.
pub const TMP_DIRECTORY: &str = "tmp";
/// Default of the task definition's `logrotateStateFile` field, kept in the record for Java's
/// readers; no such file is made (logs are rotated in-process).
pub const LOGROTATE_STATE_FILE: &str = "logrotate.status";
/// The runner script.
pub const RUNNER_SCRIPT: &str = "runner.sh";
/// Exported environment of a non-docker task.
pub const DEPLOY_ENV: &str = "deploy.env";
/// Environment file of a docker task.
pub const DOCKER_ENV: &str = "docker.env";
/// `docker image inspect` output of a docker task.
pub const DOCKER_IMAGE_JSON: &str = "docker_image.json";
/// Per-task executor log (`executorJavaLog`).
pub const EXECUTOR_JAVA_LOG: &str = "executor.java.log";
/// Runner script output (`executorBashLog`).
pub const EXECUTOR_BASH_LOG: &str = "executor.bash.log";
/// Signature verification output (`signatureVerifyOut`).
pub const SIGNATURE_VERIFY_OUT: &str = "executor.gpg.out";
/// Pid file the app may write, for the `{PID}` placeholder (`shellCommandPidFile`).
pub const TASK_PID_FILE: &str = ".task-pid";
/// Shell command output template (`shellCommandOutFile`).
pub const SHELL_COMMAND_OUT_FILE: &str = "executor.commands.{NAME}.{TIMESTAMP}.log";
/// Profile scripts the runner sources from `app/`.
pub const PROFILE_D_DIRECTORY: &str = ".profile.d";

/// The docker container of a task: `<prefix><taskId>`.
pub fn container_name(prefix: &str, task_id: &str) -> String {
    format!("{prefix}{task_id}")
}

/// The task id in a container name, or `None` if the name is not one of ours.
///
/// The Docker API returns names with a leading `/`, which is stripped first.
pub fn task_id_from_container_name<'a>(prefix: &str, name: &'a str) -> Option<&'a str> {
    let name = name.strip_prefix('/').unwrap_or(name);
    name.strip_prefix(prefix).filter(|rest| !rest.is_empty())
}

/// The task definition file: `<safeTaskId><suffix>`.
pub fn task_definition_file_name(task_id: &str, suffix: &str) -> String {
    format!("{}{suffix}", safe_task_id(task_id))
}

/// An upload metadata file: `<taskId>-<hint><suffix>`.
pub fn s3_metadata_file_name(task_id: &str, hint: &str, suffix: &str) -> String {
    format!("{task_id}-{hint}{suffix}")
}

/// The upload metadata hint of the `n`-th (1-based) additional file without its own hint.
pub fn additional_file_s3_hint(n: usize) -> String {
    format!("file{n}")
}

/// The glob an upload metadata file uses for an uploaded file name: `<filename>*` when the
/// uploader compresses, the name itself when it already is a glob, else the name followed by
/// its compressed rotations.
pub fn s3_upload_file_glob(filename: &str, compress_before_upload: bool) -> String {
    if compress_before_upload {
        format!("{filename}*")
    } else if filename.contains('*') {
        filename.to_owned()
    } else {
        format!("{filename}{ROTATED_COMPRESSED_GLOB_SUFFIX}")
    }
}

/// The tail metadata file: lowercase hex SHA-256 of the service log path, then `suffix`.
pub fn tail_metadata_file_name(service_log_path: &Path, suffix: &str) -> String {
    let digest = Sha256::digest(service_log_path.as_os_str().as_encoded_bytes());
    format!("{}{suffix}", hex::encode(digest))
}

/// A cached artifact: `<md5>-<filename>`, or `<filename>` without md5.
pub fn artifact_cache_name(md5: Option<&str>, filename: &str) -> String {
    match md5 {
        Some(md5) => format!("{md5}-{filename}"),
        None => filename.to_owned(),
    }
}

/// A cleanup statistics file: `<epochMillis><suffix>`.
pub fn cleanup_results_file_name(epoch_millis: i64, suffix: &str) -> String {
    format!("{epoch_millis}{suffix}")
}

/// The main logrotate conf the Java executor wrote for a task (in `logrotateConfDirectory`):
/// the task id. Nothing here writes it; the cleanup removes one a Java executor left behind.
pub fn logrotate_conf_name(task_id: &str) -> String {
    task_id.to_owned()
}

/// A Java executor's cron-forced logrotate conf (in `logrotateHourlyConfDirectory`):
/// `<taskId>.<FREQUENCY>`.
pub fn logrotate_forced_conf_name(task_id: &str, frequency: LogrotateFrequency) -> String {
    format!("{task_id}.{}", frequency.as_str())
}

/// A Java executor's size-based logrotate conf (in `logrotateHourlyConfDirectory`):
/// `<taskId>.sizebased`.
pub fn logrotate_sizebased_conf_name(task_id: &str) -> String {
    format!("{task_id}.sizebased")
}

/// A Java executor's cron file for a task (in `cronDirectory`): `<taskId>.logrotate`.
pub fn cron_file_name(task_id: &str) -> String {
    format!("{task_id}.logrotate")
}

/// The task directory: `<sandbox>/<safeTaskId>`.
pub fn task_directory(sandbox: &Path, task_id: &str) -> PathBuf {
    sandbox.join(safe_task_id(task_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "myreq-dep1-1668780000000-1-host_a-rack1";
    const COLON_ID: &str = "my:req-dep1-1668780000000-1-host_a-rack1";

    #[test]
    fn container_names() {
        assert_eq!(
            container_name(DEFAULT_DOCKER_PREFIX, ID),
            format!("se-{ID}")
        );
        assert_eq!(container_name("", ID), ID);
    }

    #[test]
    fn task_id_from_container_names() {
        let name = container_name(DEFAULT_DOCKER_PREFIX, ID);
        assert_eq!(task_id_from_container_name("se-", &name), Some(ID));
        assert_eq!(
            task_id_from_container_name("se-", &format!("/{name}")),
            Some(ID)
        );
        assert_eq!(task_id_from_container_name("se-", "/other"), None);
        assert_eq!(task_id_from_container_name("se-", "/se-"), None);
        assert_eq!(task_id_from_container_name("se-", "xse-abc"), None);
        assert_eq!(task_id_from_container_name("se-", "//se-abc"), None);
        assert_eq!(task_id_from_container_name("", "/abc"), Some("abc"));
    }

    #[test]
    fn task_definition_uses_the_safe_id() {
        assert_eq!(
            task_definition_file_name(ID, DEFAULT_TASK_DEFINITION_SUFFIX),
            format!("{ID}.task.json")
        );
        assert_eq!(
            task_definition_file_name(COLON_ID, ".task.json"),
            "my_req-dep1-1668780000000-1-host_a-rack1.task.json"
        );
    }

    #[test]
    fn s3_metadata_uses_the_raw_id() {
        assert_eq!(
            s3_metadata_file_name(ID, DEFAULT_S3_UPLOAD_HINT, DEFAULT_S3_METADATA_SUFFIX),
            format!("{ID}-default.s3.json")
        );
        assert_eq!(
            s3_metadata_file_name(COLON_ID, &additional_file_s3_hint(2), ".s3.json"),
            format!("{COLON_ID}-file2.s3.json")
        );
        assert_eq!(
            s3_metadata_file_name(ID, UNROTATED_S3_UPLOAD_HINT, ".x"),
            format!("{ID}-unrotated.x")
        );
    }

    #[test]
    fn upload_globs() {
        assert_eq!(
            s3_upload_file_glob("service.log", false),
            "service.log*.[gb]z*"
        );
        assert_eq!(s3_upload_file_glob("access.log", true), "access.log*");
        assert_eq!(s3_upload_file_glob("*.hprof", false), "*.hprof");
        assert_eq!(s3_upload_file_glob("*.hprof", true), "*.hprof*");
    }

    #[test]
    fn tail_metadata_is_sha256_of_the_path() {
        // sha256("/tmp/service.log"), computed independently with sha256sum.
        assert_eq!(
            tail_metadata_file_name(Path::new("/tmp/service.log"), DEFAULT_TAIL_METADATA_SUFFIX),
            "d1376f5e02d6576166e2ac3cacbfe5f8493faa743d5940a38058fa49b84f837c.tail.json"
        );
        // sha256("") is well known.
        assert_eq!(
            tail_metadata_file_name(Path::new(""), ""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn artifact_cache_names() {
        assert_eq!(
            artifact_cache_name(Some("0cc175b9c0f1b6a831c399e269772661"), "app.tar.gz"),
            "0cc175b9c0f1b6a831c399e269772661-app.tar.gz"
        );
        assert_eq!(artifact_cache_name(None, "app.tar.gz"), "app.tar.gz");
    }

    #[test]
    fn cleanup_results_names() {
        assert_eq!(
            cleanup_results_file_name(1_668_781_234_567, DEFAULT_CLEANUP_RESULTS_SUFFIX),
            "1668781234567.cleanup.json"
        );
    }

    #[test]
    fn java_executor_logrotate_and_cron_names() {
        assert_eq!(logrotate_conf_name(COLON_ID), COLON_ID);
        assert_eq!(
            logrotate_forced_conf_name(ID, LogrotateFrequency::EveryFiveMinutes),
            format!("{ID}.EVERY_FIVE_MINUTES")
        );
        assert_eq!(
            logrotate_forced_conf_name(ID, LogrotateFrequency::Hourly),
            format!("{ID}.HOURLY")
        );
        assert_eq!(logrotate_sizebased_conf_name(ID), format!("{ID}.sizebased"));
        assert_eq!(cron_file_name(ID), format!("{ID}.logrotate"));
    }

    #[test]
    fn task_directories() {
        assert_eq!(
            task_directory(Path::new("/sandbox"), COLON_ID),
            Path::new("/sandbox/my_req-dep1-1668780000000-1-host_a-rack1")
        );
        assert_eq!(safe_task_id("a:b"), "a_b");
    }
}
