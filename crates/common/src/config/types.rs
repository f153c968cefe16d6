//! Typed configuration, one struct per config class.
//!
//! Field names are the Java names in snake case; serde spells them in camelCase, like the YAML
//! files. Every `Default` is the Java default (see `docs/configuration.md`); the key table in
//! [`super::keys`] repeats those defaults as text and a test keeps the two in step.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A credential. Debug, Display and Serialize show `****` plus the last four characters (only
/// `****` when the value has four characters or fewer); [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, for the one place that needs it (an S3 client, an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The redacted form used everywhere else.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

/// `****` plus the last four characters of `value`, or `****` alone for short values.
pub(crate) fn redact(value: &str) -> String {
    let count = value.chars().count();
    if count <= 4 {
        return "****".to_owned();
    }
    let tail: String = value.chars().skip(count - 4).collect();
    format!("****{tail}")
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

/// A logback level. Accepted in any case, written in upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// Nothing is logged.
    Off,
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default level.
    Info,
    /// Debugging detail.
    Debug,
    /// Everything, including tracing detail.
    Trace,
    /// Everything.
    All,
}

impl LogLevel {
    /// Every level, in order of increasing verbosity.
    pub const NAMES: &'static [&'static str] =
        &["OFF", "ERROR", "WARN", "INFO", "DEBUG", "TRACE", "ALL"];

    fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_uppercase().as_str() {
            "OFF" => Self::Off,
            "ERROR" => Self::Error,
            "WARN" => Self::Warn,
            "INFO" => Self::Info,
            "DEBUG" => Self::Debug,
            "TRACE" => Self::Trace,
            "ALL" => Self::All,
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| {
            de::Error::custom(format!("expected one of {}", LogLevel::NAMES.join(", ")))
        })
    }
}

/// How the executor counts a task's threads (`threadCheckerType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ThreadCheckerType {
    /// `ps` on the task's top process.
    #[default]
    Ps,
    /// The task's cgroup `tasks` file.
    Cgroup,
    /// `/proc/<pid>/status`.
    ProcStatus,
}

impl ThreadCheckerType {
    /// The accepted spellings.
    pub const NAMES: &'static [&'static str] = &["PS", "CGROUP", "PROC_STATUS"];
}

/// A logrotate schedule (`logrotateFrequency`, and per extra file): the same type the task
/// records carry, so a per-deploy override and the config default compare directly.
pub use crate::records::LogrotateFrequency;

/// Compressor the cleanup uses for abandoned rotations (`compressionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CompressionType {
    /// `gzip`, `.gz`.
    #[default]
    Gzip,
    /// `bzip2`, `.bz2`.
    Bzip2,
    /// `bgzip`, `.gz`.
    Bgzip,
}

impl CompressionType {
    /// The accepted spellings.
    pub const NAMES: &'static [&'static str] = &["GZIP", "BZIP2", "BGZIP"];
}

/// Credentials for one bucket (`s3BucketCredentials` values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketCredentials {
    /// AWS access key id.
    pub access_key: Secret,
    /// AWS secret access key.
    pub secret_key: Secret,
}

/// Keys every class has (Java `BaseRunnerConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CommonKeys {
    /// Name of the daemon's log file. Each daemon has its own default; absent for base and s3.
    pub logging_filename: Option<String>,
    /// Directory of the daemon's log file; inherited from base (default `/var/log/singularity/`).
    pub logging_directory: Option<PathBuf>,
    /// Logger name → level; base entries apply first, then the class's own.
    pub logging_level: BTreeMap<String, LogLevel>,
    /// Logback pattern of the Java daemons, kept for compatibility.
    pub logging_pattern: String,
    /// Hostname override; absent means the local hostname.
    pub hostname: Option<String>,
}

/// The Java default logging pattern.
pub const DEFAULT_LOGGING_PATTERN: &str =
    "%-5level [%d] [%.15thread] %logger{50} %contextName - %msg%n";

impl Default for CommonKeys {
    fn default() -> Self {
        Self {
            logging_filename: None,
            logging_directory: None,
            logging_level: BTreeMap::new(),
            logging_pattern: DEFAULT_LOGGING_PATTERN.to_owned(),
            hostname: None,
        }
    }
}

impl CommonKeys {
    fn with_filename(filename: &str) -> Self {
        Self {
            logging_filename: Some(filename.to_owned()),
            ..Self::default()
        }
    }
}

/// `singularity.base.*` (Java `SingularityRunnerBaseConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BaseConfig {
    /// Logging and hostname keys.
    #[serde(flatten)]
    pub common: CommonKeys,
    /// Where `*.s3.json` upload metadata is written and watched.
    pub s3_uploader_metadata_directory: PathBuf,
    /// Suffix of upload metadata files.
    pub s3_uploader_metadata_suffix: String,
    /// Where `*.tail.json` log-watcher metadata is written.
    pub log_watcher_metadata_directory: PathBuf,
    /// Suffix of log-watcher metadata files.
    pub log_watcher_metadata_suffix: String,
    /// Sentry DSN; errors are reported there when set.
    pub sentry_dsn: Option<String>,
    /// Prefix of Sentry messages.
    pub sentry_prefix: String,
    /// `tar --use-compress-program` value used instead of `-z`.
    pub use_compress_program: Option<String>,
}

impl Default for BaseConfig {
    fn default() -> Self {
        Self {
            common: CommonKeys {
                logging_directory: Some(PathBuf::from("/var/log/singularity/")),
                ..CommonKeys::default()
            },
            s3_uploader_metadata_directory: PathBuf::new(),
            s3_uploader_metadata_suffix: ".s3.json".to_owned(),
            log_watcher_metadata_directory: PathBuf::new(),
            log_watcher_metadata_suffix: ".tail.json".to_owned(),
            sentry_dsn: None,
            sentry_prefix: String::new(),
            use_compress_program: None,
        }
    }
}

/// `singularity.s3base.*` (Java `SingularityS3Configuration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct S3BaseConfig {
    /// Logging and hostname keys.
    #[serde(flatten)]
    pub common: CommonKeys,
    /// Artifact cache shared by the executor and the downloader.
    pub artifact_cache_directory: PathBuf,
    /// Default access key; absent means the AWS default credential chain.
    pub s3_access_key: Option<Secret>,
    /// Default secret key.
    pub s3_secret_key: Option<Secret>,
    /// Ranged-download chunk size in bytes.
    pub s3_chunk_size: u64,
    /// Time budget for all chunks of one object.
    pub s3_download_timeout_millis: u64,
    /// Time limit of one chunk attempt.
    pub s3_chunk_download_timeout_millis: u64,
    /// Retries per chunk.
    pub s3_chunk_retries: u32,
    /// Downloader HTTP port on localhost; absent or 0 disables the TCP listener.
    pub local_download_http_port: Option<u16>,
    /// HTTP path of the download endpoint.
    pub local_download_path: String,
    /// Downloader unix socket.
    pub local_download_socket: Option<PathBuf>,
    /// Per-bucket credentials.
    pub s3_bucket_credentials: BTreeMap<String, BucketCredentials>,
    /// Custom S3 endpoint URL (honoured by the uploader and the downloader).
    pub s3_endpoint: Option<String>,
    /// Force the SigV2 signer.
    pub s3_use_v2_signing: bool,
    /// Metrics dump file.
    pub metrics_file_path: Option<PathBuf>,
    /// Path-style bucket addressing, for S3-compatible servers.
    pub s3_path_style_access: bool,
    /// Region; absent means the SDK default chain, then `us-east-1`.
    pub s3_region: Option<String>,
}

impl Default for S3BaseConfig {
    fn default() -> Self {
        Self {
            common: CommonKeys::default(),
            artifact_cache_directory: PathBuf::new(),
            s3_access_key: None,
            s3_secret_key: None,
            s3_chunk_size: 104_857_600,
            s3_download_timeout_millis: 120_000,
            s3_chunk_download_timeout_millis: 30_000,
            s3_chunk_retries: 3,
            local_download_http_port: Some(7070),
            local_download_path: "/download".to_owned(),
            local_download_socket: None,
            s3_bucket_credentials: BTreeMap::new(),
            s3_endpoint: None,
            s3_use_v2_signing: false,
            metrics_file_path: None,
            s3_path_style_access: false,
            s3_region: None,
        }
    }
}

/// `logrotateCompressionSettings`: each set value becomes a logrotate directive.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LogrotateCompressionSettings {
    /// `compresscmd`.
    pub compress_cmd: Option<String>,
    /// `uncompresscmd`.
    pub uncompress_cmd: Option<String>,
    /// `compressoptions`.
    pub compress_options: Option<String>,
    /// `compressext`.
    pub compress_ext: Option<String>,
}

/// One `logrotateAdditionalFiles` element: a file name, or an object with more settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogrotateAdditionalFile {
    /// File name or glob, relative to the task directory.
    pub filename: String,
    /// Extension kept after the date in rotated names.
    pub extension: Option<String>,
    /// Date format of rotated names.
    pub dateformat: Option<String>,
    /// Schedule for this file instead of the task's.
    pub logrotate_frequency_override: Option<LogrotateFrequency>,
    /// Rotate by size instead (`10M`).
    pub logrotate_size_override: Option<String>,
    /// Let the cleanup delete the file.
    pub delete_in_executor_cleanup: bool,
}

impl LogrotateAdditionalFile {
    /// An element given as a plain file name.
    pub fn named(filename: impl Into<String>) -> Self {
        Self {
            filename: filename.into(),
            extension: None,
            dateformat: None,
            logrotate_frequency_override: None,
            logrotate_size_override: None,
            delete_in_executor_cleanup: false,
        }
    }
}

/// A value of one field of a [`LogrotateAdditionalFile`] that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdditionalFileProblem {
    /// The field (`filename`, `extension`, `dateformat`, `logrotateSizeOverride`).
    pub field: &'static str,
    /// The value as configured.
    pub value: String,
    /// Why it is refused.
    pub reason: String,
}

impl LogrotateAdditionalFile {
    /// What is wrong with the entry, field by field (the date format only when the entry sets
    /// its own).
    pub fn problems(&self) -> Vec<AdditionalFileProblem> {
        let mut problems = Vec::new();
        let mut refuse = |field, value: &str, reason: String| {
            problems.push(AdditionalFileProblem {
                field,
                value: value.to_owned(),
                reason,
            });
        };
        let filename = self.filename.trim();
        let path = std::path::Path::new(filename);
        if filename.is_empty() {
            refuse("filename", &self.filename, "must not be empty".to_owned());
        } else if path.is_absolute()
            || path
                .components()
                .any(|part| part == std::path::Component::ParentDir)
        {
            refuse(
                "filename",
                &self.filename,
                "must be relative to the task directory, without `..`".to_owned(),
            );
        }
        if let Some(extension) = &self.extension
            && extension.contains('/')
        {
            refuse("extension", extension, "must not contain `/`".to_owned());
        }
        if let Some(dateformat) = &self.dateformat
            && let Err(reason) = check_rotation_dateformat(dateformat)
        {
            refuse("dateformat", dateformat, reason);
        }
        if let Some(size) = &self.logrotate_size_override
            && !size.trim().is_empty()
            && let Err(reason) = parse_logrotate_size(size.trim())
        {
            refuse("logrotateSizeOverride", size, reason);
        }
        problems
    }
}

/// Parses a logrotate `size`: bytes, or a number followed by `k`, `M` or `G` (powers of
/// 1024, either case).
pub fn parse_logrotate_size(text: &str) -> Result<u64, String> {
    let (digits, multiplier) = match text.char_indices().last() {
        Some((at, 'k' | 'K')) => (&text[..at], 1 << 10),
        Some((at, 'm' | 'M')) => (&text[..at], 1 << 20),
        Some((at, 'g' | 'G')) => (&text[..at], 1 << 30),
        _ => (text, 1),
    };
    let number: u64 = digits
        .trim()
        .parse()
        .map_err(|_| "expected a size such as 10M, 500k, 1G or a byte count".to_owned())?;
    if number == 0 {
        return Err("must be greater than 0".to_owned());
    }
    number
        .checked_mul(multiplier)
        .ok_or_else(|| "too large".to_owned())
}

/// Checks a rotation date format (`logrotateDateformat`, `logrotateExtrasDateformat`, an
/// entry's `dateformat`), given with or without its leading `-`: it becomes part of a file
/// name, so every `%` item must be a known one and the result must not contain `/`.
pub fn check_rotation_dateformat(format: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    let format = format.strip_prefix('-').unwrap_or(format);
    if format.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        return Err("not a valid date format (logrotate's are %Y %m %d %H %M %S %V %s)".to_owned());
    }
    if format.contains('/') {
        return Err("must not contain `/`".to_owned());
    }
    Ok(())
}

/// The object form of [`LogrotateAdditionalFile`], as serde reads it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogrotateAdditionalFileObject {
    filename: String,
    #[serde(default)]
    extension: Option<String>,
    #[serde(default)]
    dateformat: Option<String>,
    #[serde(default)]
    logrotate_frequency_override: Option<LogrotateFrequency>,
    #[serde(default)]
    logrotate_size_override: Option<String>,
    #[serde(default)]
    delete_in_executor_cleanup: bool,
}

impl<'de> Deserialize<'de> for LogrotateAdditionalFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FileVisitor;

        impl<'de> Visitor<'de> for FileVisitor {
            type Value = LogrotateAdditionalFile;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a file name or an object with a filename")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(LogrotateAdditionalFile::named(value))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let object = LogrotateAdditionalFileObject::deserialize(
                    de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(LogrotateAdditionalFile {
                    filename: object.filename,
                    extension: object.extension,
                    dateformat: object.dateformat,
                    logrotate_frequency_override: object.logrotate_frequency_override,
                    logrotate_size_override: object.logrotate_size_override,
                    delete_in_executor_cleanup: object.delete_in_executor_cleanup,
                })
            }
        }

        deserializer.deserialize_any(FileVisitor)
    }
}

/// One `shellCommands` element: a command the UI may ask the executor to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShellCommand {
    /// Name the request refers to.
    pub name: String,
    /// argv; `{PID}` and `{USER}` elements are replaced.
    #[serde(default)]
    pub command: Vec<String>,
    /// Optional flags the request may turn on.
    #[serde(default)]
    pub options: Vec<ShellCommandOption>,
    /// Do not prepend `shellCommandPrefix`.
    #[serde(default)]
    pub skip_command_prefix: bool,
    /// Do not prepend `shellCommandPrefix` for docker tasks.
    #[serde(default)]
    pub skip_command_prefix_docker_only: bool,
}

/// A flag of a [`ShellCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShellCommandOption {
    /// Option name used in requests.
    pub name: String,
    /// Argument appended when the option is requested.
    pub flag: String,
}

/// A shell command request (`runShellCommandBeforeKillDueToThreads`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShellCommandRequest {
    /// Name of a configured [`ShellCommand`].
    pub name: String,
    /// User recorded as the requester.
    #[serde(default)]
    pub user: Option<String>,
    /// Names of the options to turn on.
    #[serde(default)]
    pub options: Vec<String>,
    /// Replaces `{NAME}` in the output file name.
    #[serde(default)]
    pub logfile_name: Option<String>,
}

/// `dockerAuthConfig`: registry credentials for image pulls.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DockerAuthConfig {
    /// Use `~/.docker/config.json` instead of the fields below.
    pub from_docker_config: bool,
    /// Registry user.
    pub username: Option<String>,
    /// Registry password.
    pub password: Option<Secret>,
    /// Registry e-mail.
    pub email: Option<String>,
    /// Registry address.
    pub server_address: Option<String>,
}

/// `singularity.executor.*` (Java `SingularityExecutorConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExecutorConfig {
    /// Logging and hostname keys.
    #[serde(flatten)]
    pub common: CommonKeys,
    /// Per-task executor log, in the task directory.
    pub executor_java_log: String,
    /// runner.sh output, in the task directory.
    pub executor_bash_log: String,
    /// User when `executorData.user` is absent.
    pub default_run_as_user: String,
    /// Working directory of the task command, relative to the task directory.
    pub task_app_directory: String,
    /// Longest wait for in-flight work at shutdown.
    pub shutdown_timeout_wait_millis: u64,
    /// Exit when no task arrives within this after start.
    pub initial_idle_executor_shutdown_wait_millis: u64,
    /// Exit this long after the last task finished.
    pub idle_executor_shutdown_wait_millis: u64,
    /// Pause before stopping the driver.
    pub stop_driver_after_millis: u64,
    /// Where task definitions are written.
    pub global_task_definition_directory: PathBuf,
    /// Suffix of task definition files.
    pub global_task_definition_suffix: String,
    /// Default SIGTERM → SIGKILL delay.
    pub hard_kill_after_millis: u64,
    /// Threads delivering kills.
    pub kill_threads: u32,
    /// Thread-checker pool size.
    pub thread_check_threads: u32,
    /// Thread-check interval.
    pub check_threads_every_millis: u64,
    /// Status messages are cut to this many characters.
    pub max_task_message_length: u32,
    /// logrotate binary.
    pub logrotate_command: String,
    /// logrotate state file, relative to the task directory.
    pub logrotate_state_file: String,
    /// Directory of the main per-task logrotate conf.
    pub logrotate_conf_directory: PathBuf,
    /// Directory of the cron-forced and size-based confs.
    pub logrotate_hourly_conf_directory: PathBuf,
    /// `olddir` of service.log rotations, relative to the task directory.
    pub logrotate_to_directory: PathBuf,
    /// logrotate `maxage`.
    pub logrotate_maxage_days: u32,
    /// logrotate `rotate`.
    pub logrotate_count: u32,
    /// service.log date format.
    pub logrotate_dateformat: String,
    /// Date format of extra files.
    pub logrotate_extras_dateformat: String,
    /// Send cron logrotate output to /dev/null.
    pub ignore_logrotate_output: bool,
    /// Compression directives.
    pub logrotate_compression_settings: LogrotateCompressionSettings,
    /// Extra files to rotate.
    pub logrotate_additional_files: Vec<LogrotateAdditionalFile>,
    /// Lines copied into the tail file at teardown; 0 or less disables.
    pub tail_log_lines_to_save: i64,
    /// Fetch S3 artifacts through the downloader.
    pub use_local_download_service: bool,
    /// Downloader request time limit.
    pub local_download_service_timeout_millis: u64,
    /// Concurrent downloader requests.
    pub local_download_service_max_connections: u32,
    /// Unused by Java's thread checker; kept for compatibility.
    pub max_task_threads: Option<u32>,
    /// Container name prefix.
    pub docker_prefix: String,
    /// `docker stop` time limit in seconds.
    pub docker_stop_timeout: u32,
    /// Executor environment variables copied into containers.
    pub docker_inherit_variables: Vec<String>,
    /// CGROUP thread checker: tasks file format.
    pub cgroups_mesos_cpu_tasks_format: String,
    /// CGROUP thread checker: `/proc/<pid>/cgroup` format.
    pub proc_cgroup_format: String,
    /// Prefix used to run as another user.
    pub switch_user_command_format: String,
    /// Signature verification argv.
    pub artifact_signature_verification_command: Vec<String>,
    /// A failed verification fails the task.
    pub fail_task_on_invalid_artifact_signature: bool,
    /// An artifact without a signature fails the task.
    pub fail_on_artifact_with_no_matching_signature: bool,
    /// A signature without an artifact fails the task.
    pub fail_on_signature_with_no_matching_artifact: bool,
    /// Output of signature verification, in the task directory.
    pub signature_verify_out: String,
    /// Commands the UI may run.
    pub shell_commands: Vec<ShellCommand>,
    /// Output file of shell commands.
    pub shell_command_out_file: String,
    /// Placeholder replaced by the task pid.
    pub shell_command_pid_placeholder: String,
    /// Placeholder replaced by the task user.
    pub shell_command_user_placeholder: String,
    /// File in the task directory holding the pid for `{PID}`.
    pub shell_command_pid_file: String,
    /// argv prefix of shell commands.
    pub shell_command_prefix: Vec<String>,
    /// Command run before a kill for too many threads.
    pub run_shell_command_before_kill_due_to_threads: Option<ShellCommandRequest>,
    /// Time limit of one Docker API call.
    pub docker_client_time_limit_seconds: u64,
    /// Docker client connections.
    pub docker_client_connection_pool_size: u32,
    /// Image pull attempts.
    pub max_docker_pull_attempts: u32,
    /// Registry credentials.
    pub docker_auth_config: Option<DockerAuthConfig>,
    /// Thread counting method.
    pub thread_checker_type: ThreadCheckerType,
    /// Default rotation schedule.
    pub logrotate_frequency: LogrotateFrequency,
    /// Where per-task cron files go.
    pub cron_directory: PathBuf,
    /// Maintain `user.logstart`/`user.logend` xattrs.
    pub use_file_attributes: bool,
    /// File health check retries.
    pub default_healthcheck_max_retries: u32,
    /// File health check base time limit.
    pub default_healthcheck_base_timeout_seconds: u64,
    /// File health check interval (Java key `defaultHealthcheckInternvalSeconds`).
    #[serde(rename = "defaultHealthcheckInternvalSeconds")]
    pub default_healthcheck_interval_seconds: u64,
    /// CFS period in µs.
    pub default_cfs_period: u64,
    /// Bash inserted into runner.sh.
    pub extra_script_content: String,
    /// Bash inserted into the docker runner.sh.
    pub extra_docker_script_content: String,
    /// Force a rotation when service.log exceeds this many MiB.
    pub max_service_log_size_mb: Option<u64>,
    /// Per-task budget of rotated service logs awaiting upload, in MiB; 0 is unbounded.
    pub max_rotated_logs_not_uploaded_mb: u64,
    /// Check that assigned ports are free at launch.
    pub verify_assigned_ports: bool,
    /// Upload bucket when the task data names none.
    pub s3_uploader_bucket: Option<String>,
    /// Upload key pattern when the task data names none.
    pub s3_uploader_key_pattern: Option<String>,
    /// Source `/etc/profile.d/*.sh` and `app/.profile.d/*` before the task command.
    pub source_profile_scripts: bool,
    /// Unix socket of the Docker-compatible engine.
    pub docker_socket: PathBuf,
    /// Deadline of an image pull, all attempts together.
    pub docker_pull_timeout_seconds: u64,
    /// Container memory, cpu and pids limits from the task's resources.
    pub docker_limits_from_resources: bool,
    /// Path prefix as the executor sees it → the same directory's path on the engine's host,
    /// for an executor running in a container beside the host's engine.
    pub docker_host_path_mappings: BTreeMap<PathBuf, PathBuf>,
    /// The executor runs in its task's cgroup: containers go under it, `cpuHardLimit` into it.
    pub mesos_cgroup_isolation: bool,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            common: CommonKeys::with_filename("singularity-executor.log"),
            executor_java_log: "executor.java.log".to_owned(),
            executor_bash_log: "executor.bash.log".to_owned(),
            default_run_as_user: String::new(),
            task_app_directory: "app".to_owned(),
            shutdown_timeout_wait_millis: 300_000,
            initial_idle_executor_shutdown_wait_millis: 60_000,
            idle_executor_shutdown_wait_millis: 10_000,
            stop_driver_after_millis: 1_000,
            global_task_definition_directory: PathBuf::new(),
            global_task_definition_suffix: ".task.json".to_owned(),
            hard_kill_after_millis: 180_000,
            kill_threads: 1,
            thread_check_threads: 1,
            check_threads_every_millis: 5_000,
            max_task_message_length: 80,
            logrotate_command: "logrotate".to_owned(),
            logrotate_state_file: "logrotate.status".to_owned(),
            logrotate_conf_directory: PathBuf::from("/etc/logrotate.d"),
            logrotate_hourly_conf_directory: PathBuf::from("/etc/logrotate.d/hourly"),
            logrotate_to_directory: PathBuf::from("logs"),
            logrotate_maxage_days: 7,
            logrotate_count: 20,
            logrotate_dateformat: "%Y%m%d%s".to_owned(),
            logrotate_extras_dateformat: "%Y%m%d".to_owned(),
            ignore_logrotate_output: false,
            logrotate_compression_settings: LogrotateCompressionSettings::default(),
            logrotate_additional_files: Vec::new(),
            tail_log_lines_to_save: 2_500,
            use_local_download_service: false,
            local_download_service_timeout_millis: 180_000,
            local_download_service_max_connections: 25,
            max_task_threads: None,
            docker_prefix: "se-".to_owned(),
            docker_stop_timeout: 15,
            docker_inherit_variables: Vec::new(),
            cgroups_mesos_cpu_tasks_format: "/cgroup/cpu/%s/tasks".to_owned(),
            proc_cgroup_format: "/proc/%s/cgroup".to_owned(),
            switch_user_command_format: "sudo -E -u %s".to_owned(),
            artifact_signature_verification_command: vec![
                "/usr/bin/gpg".to_owned(),
                "--verify".to_owned(),
                "{artifactSignaturePath}".to_owned(),
            ],
            fail_task_on_invalid_artifact_signature: true,
            fail_on_artifact_with_no_matching_signature: false,
            fail_on_signature_with_no_matching_artifact: false,
            signature_verify_out: "executor.gpg.out".to_owned(),
            shell_commands: Vec::new(),
            shell_command_out_file: "executor.commands.{NAME}.{TIMESTAMP}.log".to_owned(),
            shell_command_pid_placeholder: "{PID}".to_owned(),
            shell_command_user_placeholder: "{USER}".to_owned(),
            shell_command_pid_file: ".task-pid".to_owned(),
            shell_command_prefix: Vec::new(),
            run_shell_command_before_kill_due_to_threads: None,
            docker_client_time_limit_seconds: 300,
            docker_client_connection_pool_size: 5,
            max_docker_pull_attempts: 2,
            docker_auth_config: None,
            thread_checker_type: ThreadCheckerType::Ps,
            logrotate_frequency: LogrotateFrequency::Daily,
            cron_directory: PathBuf::from("/etc/cron.d"),
            use_file_attributes: false,
            default_healthcheck_max_retries: 6,
            default_healthcheck_base_timeout_seconds: 30,
            default_healthcheck_interval_seconds: 5,
            default_cfs_period: 100_000,
            extra_script_content: String::new(),
            extra_docker_script_content: String::new(),
            max_service_log_size_mb: None,
            max_rotated_logs_not_uploaded_mb: 1_024,
            verify_assigned_ports: false,
            s3_uploader_bucket: None,
            s3_uploader_key_pattern: None,
            source_profile_scripts: false,
            docker_socket: PathBuf::from("/var/run/docker.sock"),
            docker_pull_timeout_seconds: 600,
            docker_limits_from_resources: false,
            docker_host_path_mappings: BTreeMap::new(),
            mesos_cgroup_isolation: true,
        }
    }
}

/// `singularityClientCredentials`: an HTTP header sent to the Singularity API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SingularityClientCredentials {
    /// Header name.
    pub header_name: String,
    /// Header value.
    pub token: Secret,
}

/// `singularity.executor.cleanup.*` (Java `SingularityExecutorCleanupConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExecutorCleanupConfig {
    /// Logging and hostname keys.
    #[serde(flatten)]
    pub common: CommonKeys,
    /// Abort when Singularity reports no active task on this agent.
    pub safe_mode_wont_run_with_no_tasks: bool,
    /// Where cleanup statistics are written.
    pub executor_cleanup_results_directory: PathBuf,
    /// Suffix of statistics files.
    pub executor_cleanup_results_suffix: String,
    /// Keep `app/` of failed tasks this long.
    pub cleanup_app_directory_of_failed_tasks_after_millis: u64,
    /// `host:port` of the Singularity API.
    pub singularity_hosts: Vec<String>,
    /// Use https.
    pub singularity_use_ssl: bool,
    /// API context path, e.g. `singularity/api`.
    pub singularity_context_path: String,
    /// Stop and remove orphaned containers.
    pub run_docker_cleanup: bool,
    /// Header sent to the API.
    pub singularity_client_credentials: Option<SingularityClientCredentials>,
    /// JSON file with the header (wins over the inline one).
    pub singularity_client_credentials_path: Option<PathBuf>,
    /// With no tasks on a decommissioned host: clean (true) or stop (false).
    pub clean_tasks_when_decommissioned: bool,
    /// Compressor for abandoned rotations.
    pub compression_type: CompressionType,
    /// Fallback service log name.
    pub default_service_log: String,
    /// Fallback tail log name.
    pub default_service_finished_tail_log: String,
    /// Fallback upload file list.
    pub s3_uploader_additional_files: Vec<String>,
    /// Fallback upload bucket.
    pub default_s3_bucket: String,
    /// Fallback upload key pattern.
    pub s3_key_format: String,
    /// Agent state URL; absent: `http://<hostname>:5051/slave(1)/state`.
    pub mesos_agent_state_url: Option<String>,
    /// Deadline of each API request.
    pub singularity_request_timeout_millis: u64,
    /// Statistics files older than this are deleted; 0 keeps them.
    pub executor_cleanup_results_max_age_millis: u64,
    /// Prometheus text file with the run's counts.
    pub prometheus_textfile_path: Option<PathBuf>,
    /// Longest random wait before a run.
    pub max_start_delay_seconds: u64,
    /// Tasks cleaned at the same time.
    pub cleanup_threads: u32,
}

impl Default for ExecutorCleanupConfig {
    fn default() -> Self {
        Self {
            common: CommonKeys::with_filename("singularity-executor-cleanup.log"),
            safe_mode_wont_run_with_no_tasks: true,
            executor_cleanup_results_directory: PathBuf::new(),
            executor_cleanup_results_suffix: ".cleanup.json".to_owned(),
            cleanup_app_directory_of_failed_tasks_after_millis: 86_400_000,
            singularity_hosts: Vec::new(),
            singularity_use_ssl: false,
            singularity_context_path: String::new(),
            run_docker_cleanup: false,
            singularity_client_credentials: None,
            singularity_client_credentials_path: None,
            clean_tasks_when_decommissioned: true,
            compression_type: CompressionType::Gzip,
            default_service_log: "service.log".to_owned(),
            default_service_finished_tail_log: "tail_of_finished_service.log".to_owned(),
            s3_uploader_additional_files: vec!["service.log".to_owned()],
            default_s3_bucket: String::new(),
            s3_key_format: "%requestId/%Y/%m/%taskId_%index-%s-%filename".to_owned(),
            mesos_agent_state_url: None,
            singularity_request_timeout_millis: 10_000,
            executor_cleanup_results_max_age_millis: 7 * 86_400_000,
            prometheus_textfile_path: None,
            max_start_delay_seconds: 300,
            cleanup_threads: 8,
        }
    }
}

/// One `s3ContentHeaders` element; the first whose suffix matches wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3ContentHeaders {
    /// File name suffix to match.
    pub filename_ends_with: String,
    /// `Content-Type` to set.
    #[serde(default)]
    pub content_type: Option<String>,
    /// `Content-Encoding` to set.
    #[serde(default)]
    pub content_encoding: Option<String>,
}

/// `singularity.s3uploader.*` (Java `SingularityS3UploaderConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct S3UploaderConfig {
    /// Logging and hostname keys.
    #[serde(flatten)]
    pub common: CommonKeys,
    /// How often the stop flag is checked.
    pub poll_for_shut_down_millis: u64,
    /// Upload workers.
    pub executor_max_upload_threads: u32,
    /// Period of the upload pass.
    pub check_uploads_every_seconds: u64,
    /// Period of the full metadata rescan.
    pub recheck_files_every_seconds: u64,
    /// Default expiry without new files.
    pub stop_checking_after_millis_without_new_file: u64,
    /// Access key; absent falls back to s3base, then the AWS default chain.
    pub s3_access_key: Option<Secret>,
    /// Secret key.
    pub s3_secret_key: Option<Secret>,
    /// Above this size, uploads are multipart.
    pub max_single_upload_size_bytes: u64,
    /// Multipart part size.
    pub upload_part_size: u64,
    /// Wait between attempts.
    pub retry_wait_ms: u64,
    /// Attempts per file.
    pub retry_count: u32,
    /// Skip files still open by a process.
    pub check_for_open_files: bool,
    /// Use `fuser` instead of `lsof`.
    pub check_open_files_via_fuser: bool,
    /// Per-bucket credentials.
    pub s3_bucket_credentials: BTreeMap<String, BucketCredentials>,
    /// Content headers by file name suffix.
    pub s3_content_headers: Vec<S3ContentHeaders>,
    /// Port of the `/metrics` and `/healthz` listener on 127.0.0.1; absent or 0: none.
    pub metrics_http_port: Option<u16>,
    /// SQLite ledger of every file's upload state.
    pub ledger_path: PathBuf,
    /// Time in-flight uploads get to finish after SIGTERM.
    pub shutdown_grace_millis: u64,
    /// Deadline of one S3 request without a body; requests with a body get more per MiB.
    pub s3_request_timeout_millis: u64,
    /// Longest wait before a failed file is tried again.
    pub retry_max_wait_millis: u64,
    /// Quiet time after a file system event before the scan it wakes.
    pub debounce_millis: u64,
    /// Parts of one multipart upload in flight at once.
    pub upload_part_concurrency: u32,
}

impl Default for S3UploaderConfig {
    fn default() -> Self {
        Self {
            common: CommonKeys::with_filename("singularity-s3uploader.log"),
            poll_for_shut_down_millis: 1_000,
            executor_max_upload_threads: 25,
            check_uploads_every_seconds: 600,
            recheck_files_every_seconds: 600,
            stop_checking_after_millis_without_new_file: 604_800_000,
            s3_access_key: None,
            s3_secret_key: None,
            max_single_upload_size_bytes: 5_368_709_120,
            upload_part_size: 20_971_520,
            retry_wait_ms: 1_000,
            retry_count: 2,
            check_for_open_files: true,
            check_open_files_via_fuser: false,
            s3_bucket_credentials: BTreeMap::new(),
            s3_content_headers: Vec::new(),
            metrics_http_port: None,
            ledger_path: PathBuf::from("/var/lib/singularity/s3uploader.db"),
            shutdown_grace_millis: 20_000,
            s3_request_timeout_millis: 60_000,
            retry_max_wait_millis: 300_000,
            debounce_millis: 200,
            upload_part_concurrency: 4,
        }
    }
}

/// `singularity.s3downloader.*` (Java `SingularityS3DownloaderConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct S3DownloaderConfig {
    /// Logging and hostname keys.
    #[serde(flatten)]
    pub common: CommonKeys,
    /// Idle time limit of an HTTP connection.
    pub http_server_timeout: u64,
    /// Threads accepting and de-duplicating requests.
    pub num_enqueue_threads: u32,
    /// Delay before retrying a request whose artifact is already downloading.
    pub millis_to_wait_for_re_enqueue: u64,
    /// Concurrent downloads.
    pub num_downloader_threads: u32,
    /// Unix socket accept backlog.
    pub unix_accept_queue_size: u32,
    /// Request targets must lie under one of these.
    pub allowed_target_directories: Vec<PathBuf>,
    /// Artifact cache size limit in bytes.
    pub artifact_cache_max_bytes: u64,
    /// Size of one ranged GET of a download (supersedes `s3ChunkSize` for downloads).
    pub download_part_size_bytes: u64,
    /// Ranged GETs of one download in flight at once.
    pub download_part_concurrency: u32,
    /// How long a request is held when it names no `timeoutMillis`.
    pub default_request_timeout_millis: u64,
    /// Cap on the bytes one tarball may extract to.
    pub max_extracted_bytes: u64,
    /// Cap on the entries of one tarball.
    pub max_extracted_entries: u64,
    /// Time in-flight requests get to finish after SIGTERM.
    pub shutdown_grace_millis: u64,
}

impl Default for S3DownloaderConfig {
    fn default() -> Self {
        Self {
            common: CommonKeys::with_filename("singularity-s3downloader.log"),
            http_server_timeout: 1_800_000,
            num_enqueue_threads: 10,
            millis_to_wait_for_re_enqueue: 5_000,
            num_downloader_threads: 5,
            unix_accept_queue_size: 128,
            allowed_target_directories: vec![
                PathBuf::from("/var/lib/mesos"),
                PathBuf::from("/tmp/mesos"),
            ],
            artifact_cache_max_bytes: 10_737_418_240,
            download_part_size_bytes: 4_194_304,
            download_part_concurrency: 6,
            default_request_timeout_millis: 30_000,
            max_extracted_bytes: 34_359_738_368,
            max_extracted_entries: 1_000_000,
            shutdown_grace_millis: 20_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_logrotate_reads_them() {
        assert_eq!(parse_logrotate_size("4096"), Ok(4096));
        assert_eq!(parse_logrotate_size("100k"), Ok(100 << 10));
        assert_eq!(parse_logrotate_size("100K"), Ok(100 << 10));
        assert_eq!(parse_logrotate_size("10M"), Ok(10 << 20));
        assert_eq!(parse_logrotate_size("2G"), Ok(2 << 30));
        assert!(parse_logrotate_size("10MB").is_err());
        assert!(parse_logrotate_size("M").is_err());
        assert!(parse_logrotate_size("0").is_err());
        assert!(parse_logrotate_size("-5k").is_err());
    }

    #[test]
    fn rotation_date_formats_must_make_file_names() {
        assert_eq!(check_rotation_dateformat("%Y%m%d%s"), Ok(()));
        assert_eq!(check_rotation_dateformat("-%Y-%m-%d"), Ok(()));
        assert!(check_rotation_dateformat("%Y/%m").is_err());
        assert!(check_rotation_dateformat("%Q").is_err());
        assert!(check_rotation_dateformat("-").is_err());
    }

    #[test]
    fn secrets_show_only_their_last_four_characters() {
        let secret = Secret::new("AKIAABCDEFGH1234");
        assert_eq!(secret.to_string(), "****1234");
        assert_eq!(format!("{secret:?}"), "****1234");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"****1234\"");
        assert_eq!(secret.expose(), "AKIAABCDEFGH1234");
        assert_eq!(Secret::new("abcd").to_string(), "****");
        assert_eq!(Secret::new("").to_string(), "****");
        assert_eq!(Secret::new("ééééé").to_string(), "****éééé");
    }

    #[test]
    fn log_levels_are_case_insensitive() {
        let level: LogLevel = serde_json::from_str("\"debug\"").unwrap();
        assert_eq!(level, LogLevel::Debug);
        let error = serde_json::from_str::<LogLevel>("\"LOUD\"").unwrap_err();
        assert!(error.to_string().starts_with("expected one of OFF, ERROR"));
    }

    #[test]
    fn an_additional_file_is_a_name_or_an_object() {
        let files: Vec<LogrotateAdditionalFile> = serde_json::from_str(
            r#"["logs/gc.log", {"filename": "access.log", "logrotateFrequencyOverride": "HOURLY"}]"#,
        )
        .unwrap();
        assert_eq!(files[0], LogrotateAdditionalFile::named("logs/gc.log"));
        assert_eq!(
            files[1].logrotate_frequency_override,
            Some(LogrotateFrequency::Hourly)
        );
        assert!(serde_json::from_str::<LogrotateAdditionalFile>("{}").is_err());
    }
}
