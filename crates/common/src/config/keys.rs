//! The key table: every key of every class with its three spellings, kind, default and meaning.
//!
//! Parsing, validation, `--check-config` messages and `docs/configuration.md` all read this
//! table; unit tests prove it agrees with the structs in [`super::types`].

use std::fmt;

/// A configuration class: one Java config bean, one file per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigClass {
    /// `singularity.base.*`: metadata directories and logging, read by every daemon.
    Base,
    /// `singularity.s3base.*`: S3 access and the artifact cache.
    S3Base,
    /// `singularity.executor.*`.
    Executor,
    /// `singularity.executor.cleanup.*`.
    ExecutorCleanup,
    /// `singularity.s3uploader.*`.
    S3Uploader,
    /// `singularity.s3downloader.*`.
    S3Downloader,
}

impl ConfigClass {
    /// Every class, in load and render order.
    pub const ALL: [ConfigClass; 6] = [
        Self::Base,
        Self::S3Base,
        Self::Executor,
        Self::ExecutorCleanup,
        Self::S3Uploader,
        Self::S3Downloader,
    ];

    /// The classes the executor loads.
    pub const FOR_EXECUTOR: &'static [ConfigClass] = &[Self::Base, Self::S3Base, Self::Executor];
    /// The classes the cleanup job loads (it reuses the executor's settings).
    pub const FOR_EXECUTOR_CLEANUP: &'static [ConfigClass] = &[
        Self::Base,
        Self::S3Base,
        Self::Executor,
        Self::ExecutorCleanup,
    ];
    /// The classes the uploader loads.
    pub const FOR_S3_UPLOADER: &'static [ConfigClass] =
        &[Self::Base, Self::S3Base, Self::S3Uploader];
    /// The classes the downloader loads.
    pub const FOR_S3_DOWNLOADER: &'static [ConfigClass] =
        &[Self::Base, Self::S3Base, Self::S3Downloader];

    /// File stem: `<dir>/singularity.<stem>.{properties,yaml,toml}`.
    pub fn stem(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::S3Base => "s3base",
            Self::Executor => "executor",
            Self::ExecutorCleanup => "executor.cleanup",
            Self::S3Uploader => "s3uploader",
            Self::S3Downloader => "s3downloader",
        }
    }

    /// Section of a consolidated YAML file.
    pub fn yaml_section(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::S3Base => "s3",
            Self::Executor => "executor",
            Self::ExecutorCleanup => "executorCleanup",
            Self::S3Uploader => "s3uploader",
            Self::S3Downloader => "s3downloader",
        }
    }

    /// Table of a consolidated TOML file.
    pub fn toml_table(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::S3Base => "s3",
            Self::Executor => "executor",
            Self::ExecutorCleanup => "executor_cleanup",
            Self::S3Uploader => "s3uploader",
            Self::S3Downloader => "s3downloader",
        }
    }

    /// Prefix of this class's `.properties` keys (base has none).
    pub fn properties_prefix(self) -> &'static str {
        match self {
            Self::Base => "",
            Self::S3Base => "s3.",
            Self::Executor => "executor.",
            Self::ExecutorCleanup => "executor.cleanup.",
            Self::S3Uploader => "s3uploader.",
            Self::S3Downloader => "s3downloader.",
        }
    }

    /// Every key of this class: the common keys first, then the class's own.
    pub fn keys(self) -> impl Iterator<Item = &'static KeySpec> {
        let (common, own): (&'static [KeySpec], &'static [KeySpec]) = match self {
            Self::Base => (&BASE_COMMON, BASE_KEYS),
            Self::S3Base => (&S3BASE_COMMON, S3BASE_KEYS),
            Self::Executor => (&EXECUTOR_COMMON, EXECUTOR_KEYS),
            Self::ExecutorCleanup => (&CLEANUP_COMMON, CLEANUP_KEYS),
            Self::S3Uploader => (&UPLOADER_COMMON, UPLOADER_KEYS),
            Self::S3Downloader => (&DOWNLOADER_COMMON, DOWNLOADER_KEYS),
        };
        common.iter().chain(own.iter())
    }

    /// The key whose YAML name (or YAML alias) is `name`.
    pub fn find_yaml(self, name: &str) -> Option<&'static KeySpec> {
        self.keys()
            .find(|spec| spec.yaml == name || spec.yaml_aliases.contains(&name))
    }

    /// The key whose TOML name is `name`.
    pub fn find_toml(self, name: &str) -> Option<&'static KeySpec> {
        self.keys().find(|spec| spec.toml == name)
    }

    /// The key a `.properties` line named `name` sets in this class's own file.
    pub fn find_property(self, name: &str) -> Option<(&'static KeySpec, PropertyTarget)> {
        self.keys().find_map(|spec| {
            spec.properties
                .iter()
                .find_map(|spelling| match_spelling(spelling, spec.kind, name))
                .map(|target| (spec, target))
        })
    }

    /// The class that owns a `.properties` key in a consolidated file: the first class, in
    /// [`ConfigClass::ALL`] order, that knows the spelling.
    pub fn route_property(name: &str) -> Option<(ConfigClass, &'static KeySpec, PropertyTarget)> {
        Self::ALL.into_iter().find_map(|class| {
            class
                .find_property(name)
                .map(|(spec, target)| (class, spec, target))
        })
    }

    /// The Java log file name default, if the class has one.
    pub fn default_logging_filename(self) -> Option<&'static str> {
        match self {
            Self::Base | Self::S3Base => None,
            Self::Executor => Some("singularity-executor.log"),
            Self::ExecutorCleanup => Some("singularity-executor-cleanup.log"),
            Self::S3Uploader => Some("singularity-s3uploader.log"),
            Self::S3Downloader => Some("singularity-s3downloader.log"),
        }
    }
}

impl fmt::Display for ConfigClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.stem())
    }
}

/// What a value must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// `true` or `false`.
    Bool,
    /// A whole number.
    Integer,
    /// Text.
    String,
    /// A file system path.
    Path,
    /// One of a fixed set of names.
    Choice(&'static [&'static str]),
    /// A list of strings (comma separated in `.properties`).
    List,
    /// A list of file names or file objects (comma separated names in `.properties`).
    FileList,
    /// Logger name → level (`logging.level.<logger>` lines in `.properties`).
    LogLevels,
    /// Bucket → `{accessKey, secretKey}` (`…<bucket>.access.key` lines in `.properties`).
    BucketCredentials,
    /// An object or a list of objects (JSON text in `.properties`).
    Json,
}

impl ValueKind {
    /// How the docs and messages describe the expected value.
    pub fn expected(self) -> String {
        match self {
            Self::Bool => "expected true or false".to_owned(),
            Self::Integer => "expected an integer".to_owned(),
            Self::String | Self::Path => "expected a string".to_owned(),
            Self::Choice(names) => format!("expected one of {}", names.join(", ")),
            Self::List => "expected a list of strings".to_owned(),
            Self::FileList => "expected a list of file names or file objects".to_owned(),
            Self::LogLevels => "expected a map of logger name to level".to_owned(),
            Self::BucketCredentials => {
                "expected a map of bucket to {accessKey, secretKey}".to_owned()
            }
            Self::Json => "expected an object or a list of objects".to_owned(),
        }
    }
}

/// Whether a key must be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// May be left unset.
    Optional,
    /// Must be set and non-empty.
    Required,
    /// Must name an existing directory (a default counts when there is one).
    ExistingDirectory,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// camelCase name: YAML files, the canonical name, and the serde name of the field.
    pub yaml: &'static str,
    /// Other YAML spellings accepted.
    pub yaml_aliases: &'static [&'static str],
    /// snake_case name used in TOML files.
    pub toml: &'static str,
    /// Dotted `.properties` spellings, documented one first. `<name>` marks a map entry.
    pub properties: &'static [&'static str],
    /// What the value must look like.
    pub kind: ValueKind,
    /// The value is, or contains, a credential.
    pub secret: bool,
    /// Whether it must be set.
    pub requirement: Requirement,
    /// Smallest allowed value (Java `@Min`).
    pub min: Option<u64>,
    /// Largest allowed value (Java `@Max`).
    pub max: Option<u64>,
    /// The default as text: empty means absent; `""` means the empty string.
    pub default: &'static str,
    /// One-line meaning.
    pub meaning: &'static str,
    /// Not in the Java daemons.
    pub addition: bool,
    /// Read and checked, but nothing uses it any more (the Java feature it configured is gone).
    pub unused: bool,
}

impl KeySpec {
    const fn new(
        yaml: &'static str,
        toml: &'static str,
        properties: &'static [&'static str],
        kind: ValueKind,
        default: &'static str,
        meaning: &'static str,
    ) -> Self {
        Self {
            yaml,
            yaml_aliases: &[],
            toml,
            properties,
            kind,
            secret: false,
            requirement: Requirement::Optional,
            min: None,
            max: None,
            default,
            meaning,
            addition: false,
            unused: false,
        }
    }

    const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    const fn required(mut self) -> Self {
        self.requirement = Requirement::Required;
        self
    }

    const fn existing_dir(mut self) -> Self {
        self.requirement = Requirement::ExistingDirectory;
        self
    }

    const fn min(mut self, min: u64) -> Self {
        self.min = Some(min);
        self
    }

    const fn max(mut self, max: u64) -> Self {
        self.max = Some(max);
        self
    }

    const fn addition(mut self) -> Self {
        self.addition = true;
        self
    }

    const fn unused(mut self) -> Self {
        self.unused = true;
        self
    }

    const fn yaml_aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.yaml_aliases = aliases;
        self
    }

    /// The first `.properties` spelling, the one the docs lead with.
    pub fn property(&self) -> &'static str {
        self.properties.first().copied().unwrap_or(self.yaml)
    }
}

/// Where a `.properties` line puts its value inside a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyTarget {
    /// The whole value of the key.
    Whole,
    /// One logger of `loggingLevel`.
    Logger(String),
    /// One field of one bucket of `s3BucketCredentials`.
    Bucket {
        /// Bucket name.
        bucket: String,
        /// `accessKey` or `secretKey`.
        field: &'static str,
    },
}

/// Fixed `.properties` names of single loggers.
pub const FIXED_LOGGERS: &[(&str, &str)] = &[
    ("root.log.level", "ROOT"),
    ("hubspot.log.level", "com.hubspot"),
];

fn match_spelling(spelling: &str, kind: ValueKind, name: &str) -> Option<PropertyTarget> {
    let Some((head, rest)) = spelling.split_once('<') else {
        if spelling != name {
            return None;
        }
        if kind == ValueKind::LogLevels {
            return FIXED_LOGGERS
                .iter()
                .find(|(fixed, _)| *fixed == name)
                .map(|(_, logger)| PropertyTarget::Logger((*logger).to_owned()));
        }
        return Some(PropertyTarget::Whole);
    };
    let tail = rest.split_once('>').map_or("", |(_, tail)| tail);
    let middle = name.strip_prefix(head)?.strip_suffix(tail)?;
    if middle.is_empty() {
        return None;
    }
    match kind {
        ValueKind::LogLevels => Some(PropertyTarget::Logger(middle.to_owned())),
        ValueKind::BucketCredentials => {
            let field = match tail {
                ".access.key" => "accessKey",
                ".secret.key" => "secretKey",
                _ => return None,
            };
            Some(PropertyTarget::Bucket {
                bucket: middle.to_owned(),
                field,
            })
        }
        _ => None,
    }
}

/// Keys the Java daemons once read and no longer do: still warned about, with a note.
pub static RETIRED_KEYS: &[RetiredKey] = &[
    RetiredKey {
        class: ConfigClass::Base,
        names: &["obfuscate.keys.comma.separated"],
        note: "no longer read: credentials are always redacted",
    },
    RetiredKey {
        class: ConfigClass::Executor,
        names: &[
            "serviceLog",
            "service_log",
            "executor.task.service.log.path",
        ],
        note: "no longer read: the scheduler names the service log",
    },
    RetiredKey {
        class: ConfigClass::Executor,
        names: &[
            "serviceFinishedTailLog",
            "service_finished_tail_log",
            "executor.service.log.tail.file.name",
        ],
        note: "no longer read: the scheduler names the tail log",
    },
    RetiredKey {
        class: ConfigClass::Executor,
        names: &[
            "s3UploaderAdditionalFiles",
            "s3_uploader_additional_files",
            "executor.s3.uploader.extras.files",
        ],
        note: "no longer read since Singularity 0.14: the scheduler's s3 settings list the files to upload",
    },
    RetiredKey {
        class: ConfigClass::S3Uploader,
        names: &["s3uploader.stop.checking.after.hours.without.new.file"],
        note: "no longer read: use s3uploader.stop.checking.after.millis.without.new.file",
    },
];

/// A key that is no longer read.
#[derive(Debug, Clone, Copy)]
pub struct RetiredKey {
    /// The class it belonged to.
    pub class: ConfigClass,
    /// Its spellings, in any format.
    pub names: &'static [&'static str],
    /// What to do instead.
    pub note: &'static str,
}

use ValueKind as K;

const BASE_COMMON: [KeySpec; 5] = [
    KeySpec::new(
        "loggingFilename",
        "logging_filename",
        &["logging.filename", "root.log.filename"],
        K::String,
        "",
        "log file name, when a class sets none of its own",
    ),
    KeySpec::new(
        "loggingDirectory",
        "logging_directory",
        &["root.log.directory", "logging.directory"],
        K::Path,
        "/var/log/singularity/",
        "directory of the daemons' log files",
    ),
    KeySpec::new(
        "loggingLevel",
        "logging_level",
        &[
            "logging.level.<logger>",
            "root.log.level",
            "hubspot.log.level",
        ],
        K::LogLevels,
        "{}",
        "logger name → level for every daemon (`root.log.level` is `ROOT`, `hubspot.log.level` is `com.hubspot`); unset loggers log at INFO",
    ),
    KeySpec::new(
        "loggingPattern",
        "logging_pattern",
        &["logging.pattern"],
        K::String,
        crate::config::types::DEFAULT_LOGGING_PATTERN,
        "logback pattern of the Java daemons, accepted for compatibility",
    ),
    KeySpec::new(
        "hostname",
        "hostname",
        &["hostname"],
        K::String,
        "",
        "hostname for the uploader's `%host` token and the cleanup's agent lookups; absent: the local hostname",
    ),
];

/// The common keys of a class other than base. In the class's own `.properties` file the
/// base spellings are accepted too.
macro_rules! common_keys {
    ($prefix:literal, $filename:literal, $filename_meaning:literal) => {
        [
            KeySpec::new(
                "loggingFilename",
                "logging_filename",
                &[concat!($prefix, "logging.filename"), "logging.filename"],
                K::String,
                $filename,
                $filename_meaning,
            ),
            KeySpec::new(
                "loggingDirectory",
                "logging_directory",
                &[
                    concat!($prefix, "logging.directory"),
                    "logging.directory",
                    "root.log.directory",
                ],
                K::Path,
                "",
                "log directory of this daemon; absent: base's",
            ),
            KeySpec::new(
                "loggingLevel",
                "logging_level",
                &[
                    concat!($prefix, "logging.level.<logger>"),
                    "logging.level.<logger>",
                    "root.log.level",
                    "hubspot.log.level",
                ],
                K::LogLevels,
                "{}",
                "logger name → level, applied over base's",
            ),
            KeySpec::new(
                "loggingPattern",
                "logging_pattern",
                &[concat!($prefix, "logging.pattern"), "logging.pattern"],
                K::String,
                crate::config::types::DEFAULT_LOGGING_PATTERN,
                "logback pattern; absent: base's",
            ),
            KeySpec::new(
                "hostname",
                "hostname",
                &[concat!($prefix, "hostname"), "hostname"],
                K::String,
                "",
                "hostname override; absent: base's, else the local hostname",
            ),
        ]
    };
}

const S3BASE_COMMON: [KeySpec; 5] = common_keys!(
    "s3.",
    "",
    "log file name; no daemon reads this class's value"
);
const EXECUTOR_COMMON: [KeySpec; 5] = common_keys!(
    "executor.",
    "singularity-executor.log",
    "log file name of this daemon"
);
const CLEANUP_COMMON: [KeySpec; 5] = common_keys!(
    "executor.cleanup.",
    "singularity-executor-cleanup.log",
    "log file name of this daemon"
);
const UPLOADER_COMMON: [KeySpec; 5] = common_keys!(
    "s3uploader.",
    "singularity-s3uploader.log",
    "log file name of this daemon"
);
const DOWNLOADER_COMMON: [KeySpec; 5] = common_keys!(
    "s3downloader.",
    "singularity-s3downloader.log",
    "log file name of this daemon"
);

static BASE_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "s3UploaderMetadataDirectory",
        "s3_uploader_metadata_directory",
        &["s3uploader.metadata.directory"],
        K::Path,
        "",
        "where the executor and cleanup write `*.s3.json` upload metadata and the uploader watches",
    )
    .existing_dir(),
    KeySpec::new(
        "s3UploaderMetadataSuffix",
        "s3_uploader_metadata_suffix",
        &["s3uploader.metadata.suffix"],
        K::String,
        ".s3.json",
        "suffix of upload metadata files",
    ),
    KeySpec::new(
        "logWatcherMetadataDirectory",
        "log_watcher_metadata_directory",
        &["logwatcher.metadata.directory"],
        K::Path,
        "",
        "where the executor writes `*.tail.json` files for a log watcher",
    )
    .existing_dir(),
    KeySpec::new(
        "logWatcherMetadataSuffix",
        "log_watcher_metadata_suffix",
        &["logwatcher.metadata.suffix"],
        K::String,
        ".tail.json",
        "suffix of log watcher metadata files",
    ),
    KeySpec::new(
        "sentryDsn",
        "sentry_dsn",
        &["base.sentry.dsn"],
        K::String,
        "",
        "Sentry DSN; errors are reported there when set",
    ),
    KeySpec::new(
        "sentryPrefix",
        "sentry_prefix",
        &["base.sentry.prefix"],
        K::String,
        "\"\"",
        "prefix of Sentry messages",
    ),
    KeySpec::new(
        "useCompressProgram",
        "use_compress_program",
        &["base.use.compress.program"],
        K::String,
        "",
        "program given to `tar --use-compress-program` when unpacking, instead of `-z`",
    ),
];

static S3BASE_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "artifactCacheDirectory",
        "artifact_cache_directory",
        &["artifact.cache.directory", "s3.artifact.cache.directory"],
        K::Path,
        "",
        "artifact cache shared by the executor and the downloader",
    )
    .existing_dir(),
    KeySpec::new(
        "s3AccessKey",
        "s3_access_key",
        &["s3.access.key"],
        K::String,
        "",
        "default S3 access key; absent: the AWS default credential chain",
    )
    .secret(),
    KeySpec::new(
        "s3SecretKey",
        "s3_secret_key",
        &["s3.secret.key"],
        K::String,
        "",
        "default S3 secret key",
    )
    .secret(),
    KeySpec::new(
        "s3ChunkSize",
        "s3_chunk_size",
        &["s3.chunk.size", "s3.downloader.chunk.size"],
        K::Integer,
        "104857600",
        "ranged-download chunk size in bytes; the downloader uses `downloadPartSizeBytes` instead",
    ),
    KeySpec::new(
        "s3DownloadTimeoutMillis",
        "s3_download_timeout_millis",
        &["s3.download.timeout.millis", "s3.downloader.timeout.millis"],
        K::Integer,
        "120000",
        "time budget for all chunks (downloader: all parts) of one object",
    ),
    KeySpec::new(
        "s3ChunkDownloadTimeoutMillis",
        "s3_chunk_download_timeout_millis",
        &["s3.chunk.download.timeout.millis"],
        K::Integer,
        "30000",
        "time limit of one chunk (downloader: part) attempt",
    ),
    KeySpec::new(
        "s3ChunkRetries",
        "s3_chunk_retries",
        &["s3.chunk.retries"],
        K::Integer,
        "3",
        "retries per chunk (downloader: per part, with backoff; a part is tried this many times + 1)",
    ),
    KeySpec::new(
        "localDownloadHttpPort",
        "local_download_http_port",
        &["s3.local.download.http.port", "s3.downloader.http.port"],
        K::Integer,
        "7070",
        "downloader HTTP port on localhost; 0 or absent: no TCP listener",
    ),
    KeySpec::new(
        "localDownloadPath",
        "local_download_path",
        &["s3.local.download.path", "s3.downloader.http.download.path"],
        K::String,
        "/download",
        "HTTP path of the download endpoint",
    ),
    KeySpec::new(
        "localDownloadSocket",
        "local_download_socket",
        &["s3.local.download.socket"],
        K::Path,
        "",
        "downloader unix socket; the executor prefers it when set",
    ),
    KeySpec::new(
        "s3BucketCredentials",
        "s3_bucket_credentials",
        &[
            "s3.bucket.credentials.<bucket>.access.key",
            "s3.bucket.credentials.<bucket>.secret.key",
        ],
        K::BucketCredentials,
        "{}",
        "bucket → `{accessKey, secretKey}` used for that bucket instead of the defaults",
    )
    .secret(),
    KeySpec::new(
        "s3Endpoint",
        "s3_endpoint",
        &["s3.endpoint"],
        K::String,
        "",
        "S3 endpoint URL for S3-compatible servers; honoured by the uploader and the downloader (Java: downloads only)",
    ),
    KeySpec::new(
        "s3UseV2Signing",
        "s3_use_v2_signing",
        &["s3.use.v2.signing"],
        K::Bool,
        "false",
        "force the SigV2 signer",
    ),
    KeySpec::new(
        "metricsFilePath",
        "metrics_file_path",
        &["s3.metrics.file.path"],
        K::Path,
        "",
        "file the uploader and downloader write their metrics to as JSON",
    ),
    KeySpec::new(
        "s3PathStyleAccess",
        "s3_path_style_access",
        &["s3.path.style.access"],
        K::Bool,
        "false",
        "path-style bucket addressing, for S3-compatible servers",
    )
    .addition(),
    KeySpec::new(
        "s3Region",
        "s3_region",
        &["s3.region"],
        K::String,
        "",
        "S3 region; absent: the AWS SDK default chain, then us-east-1",
    )
    .addition(),
];

static EXECUTOR_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "executorJavaLog",
        "executor_java_log",
        &["executor.java.log", "executor.task.java.log.path"],
        K::String,
        "executor.java.log",
        "per-task executor log, in the task directory",
    ),
    KeySpec::new(
        "executorBashLog",
        "executor_bash_log",
        &["executor.bash.log", "executor.task.bash.log.path"],
        K::String,
        "executor.bash.log",
        "stdout and stderr of runner.sh, in the task directory",
    ),
    KeySpec::new(
        "defaultRunAsUser",
        "default_run_as_user",
        &["executor.default.user", "executor.default.run.as.user"],
        K::String,
        "",
        "user a task runs as when its executor data names none",
    )
    .required(),
    KeySpec::new(
        "taskAppDirectory",
        "task_app_directory",
        &["executor.task.app.directory"],
        K::String,
        "app",
        "working directory of the task command, relative to the task directory",
    ),
    KeySpec::new(
        "shutdownTimeoutWaitMillis",
        "shutdown_timeout_wait_millis",
        &["executor.shutdown.timeout.wait.millis", "executor.shutdown.timeout.millis"],
        K::Integer,
        "300000",
        "longest wait for in-flight work at executor shutdown",
    ),
    KeySpec::new(
        "initialIdleExecutorShutdownWaitMillis",
        "initial_idle_executor_shutdown_wait_millis",
        &["executor.initial.idle.executor.shutdown.wait.millis"],
        K::Integer,
        "60000",
        "exit when no task arrives within this long after start",
    ),
    KeySpec::new(
        "idleExecutorShutdownWaitMillis",
        "idle_executor_shutdown_wait_millis",
        &["executor.idle.executor.shutdown.wait.millis", "executor.idle.shutdown.after.millis"],
        K::Integer,
        "10000",
        "exit this long after the last task finished",
    ),
    KeySpec::new(
        "stopDriverAfterMillis",
        "stop_driver_after_millis",
        &["executor.stop.driver.after.millis", "executor.shutdown.stop.driver.after.millis"],
        K::Integer,
        "1000",
        "pause before the executor disconnects from the agent",
    ),
    KeySpec::new(
        "globalTaskDefinitionDirectory",
        "global_task_definition_directory",
        &["executor.global.task.definition.directory"],
        K::Path,
        "",
        "where `<safeTaskId>.task.json` task definitions are written",
    )
    .existing_dir(),
    KeySpec::new(
        "globalTaskDefinitionSuffix",
        "global_task_definition_suffix",
        &["executor.global.task.definition.suffix"],
        K::String,
        ".task.json",
        "suffix of task definition files",
    ),
    KeySpec::new(
        "hardKillAfterMillis",
        "hard_kill_after_millis",
        &["executor.hard.kill.after.millis"],
        K::Integer,
        "180000",
        "default delay between SIGTERM and SIGKILL",
    ),
    KeySpec::new(
        "killThreads",
        "kill_threads",
        &["executor.kill.threads", "executor.num.core.kill.threads"],
        K::Integer,
        "1",
        "threads delivering kills",
    ),
    KeySpec::new(
        "threadCheckThreads",
        "thread_check_threads",
        &["executor.thread.check.threads", "executor.num.core.thread.check.threads"],
        K::Integer,
        "1",
        "thread checker pool size",
    ),
    KeySpec::new(
        "checkThreadsEveryMillis",
        "check_threads_every_millis",
        &["executor.check.threads.every.millis"],
        K::Integer,
        "5000",
        "thread check interval",
    ),
    KeySpec::new(
        "maxTaskMessageLength",
        "max_task_message_length",
        &["executor.max.task.message.length", "executor.status.update.max.task.message.length"],
        K::Integer,
        "80",
        "status update messages are cut to this many characters",
    ),
    KeySpec::new(
        "logrotateCommand",
        "logrotate_command",
        &["executor.logrotate.command"],
        K::String,
        "logrotate",
        "the logrotate binary Java ran; none is run, logs are rotated in-process" ,
    )
    .unused(),
    KeySpec::new(
        "logrotateStateFile",
        "logrotate_state_file",
        &["executor.logrotate.state.file"],
        K::String,
        "logrotate.status",
        "logrotate's state file in the task directory (Java); none is written",
    )
    .unused(),
    KeySpec::new(
        "logrotateConfDirectory",
        "logrotate_conf_directory",
        &["executor.logrotate.conf.directory", "executor.logrotate.config.folder"],
        K::Path,
        "/etc/logrotate.d",
        "where Java wrote each task's logrotate conf (it had to exist); nothing is written there and it need not exist",
    )
    .unused(),
    KeySpec::new(
        "logrotateHourlyConfDirectory",
        "logrotate_hourly_conf_directory",
        &["executor.logrotate.hourly.conf.directory"],
        K::Path,
        "/etc/logrotate.d/hourly",
        "where Java wrote the cron-forced and size-based logrotate confs; nothing is written there",
    )
    .unused(),
    KeySpec::new(
        "logrotateToDirectory",
        "logrotate_to_directory",
        &["executor.logrotate.to.directory"],
        K::Path,
        "logs",
        "`olddir` of service.log rotations, relative to the task directory",
    ),
    KeySpec::new(
        "logrotateMaxageDays",
        "logrotate_maxage_days",
        &["executor.logrotate.maxage.days"],
        K::Integer,
        "7",
        "logrotate `maxage`",
    ),
    KeySpec::new(
        "logrotateCount",
        "logrotate_count",
        &["executor.logrotate.count"],
        K::Integer,
        "20",
        "logrotate `rotate`",
    ),
    KeySpec::new(
        "logrotateDateformat",
        "logrotate_dateformat",
        &["executor.logrotate.dateformat"],
        K::String,
        "%Y%m%d%s",
        "date format of service.log rotations (a leading `-` is dropped)",
    ),
    KeySpec::new(
        "logrotateExtrasDateformat",
        "logrotate_extras_dateformat",
        &["executor.logrotate.extras.dateformat"],
        K::String,
        "%Y%m%d",
        "date format of `logrotateAdditionalFiles` rotations whose entry sets none (a leading `-` is dropped)",
    ),
    KeySpec::new(
        "ignoreLogrotateOutput",
        "ignore_logrotate_output",
        &["executor.ignore.logrotate.output"],
        K::Bool,
        "false",
        "Java sent the output of cron-run logrotate to /dev/null; there is no cron entry any more",
    )
    .unused(),
    KeySpec::new(
        "logrotateCompressionSettings",
        "logrotate_compression_settings",
        &["executor.logrotate.compression.settings"],
        K::Json,
        "{}",
        "`{compressCmd, uncompressCmd, compressOptions, compressExt}`, each a logrotate directive",
    ),
    KeySpec::new(
        "logrotateAdditionalFiles",
        "logrotate_additional_files",
        &[
            "executor.logrotate.extras.files",
            "executor.logrotate.additional.files",
        ],
        K::FileList,
        "[]",
        "files the task writes itself, rotated beside themselves as `<name>-<date>[.<ext>]` without losing what the task appends: names or globs relative to the task directory, or `{filename, extension, dateformat, logrotateFrequencyOverride, logrotateSizeOverride, deleteInExecutorCleanup}` (`logrotateSizeOverride` such as `10M`, `500k` wins over any schedule)",
    ),
    KeySpec::new(
        "tailLogLinesToSave",
        "tail_log_lines_to_save",
        &["executor.tail.log.lines.to.save", "executor.service.log.tail.lines.to.save"],
        K::Integer,
        "2500",
        "lines of service.log copied into the tail file at teardown; 0 or less disables",
    ),
    KeySpec::new(
        "useLocalDownloadService",
        "use_local_download_service",
        &["executor.use.local.download.service"],
        K::Bool,
        "false",
        "fetch S3 artifacts through the S3 downloader",
    ),
    KeySpec::new(
        "localDownloadServiceTimeoutMillis",
        "local_download_service_timeout_millis",
        &["executor.local.download.service.timeout.millis"],
        K::Integer,
        "180000",
        "time limit of one downloader request",
    ),
    KeySpec::new(
        "localDownloadServiceMaxConnections",
        "local_download_service_max_connections",
        &["executor.local.download.service.max.connections"],
        K::Integer,
        "25",
        "concurrent downloader requests",
    ),
    KeySpec::new(
        "maxTaskThreads",
        "max_task_threads",
        &["executor.max.task.threads"],
        K::Integer,
        "",
        "unused (Java reads the task's `maxTaskThreads` only); accepted for compatibility",
    ),
    KeySpec::new(
        "dockerPrefix",
        "docker_prefix",
        &["executor.docker.prefix"],
        K::String,
        "se-",
        "container name prefix",
    ),
    KeySpec::new(
        "dockerStopTimeout",
        "docker_stop_timeout",
        &["executor.docker.stop.timeout"],
        K::Integer,
        "15",
        "seconds `docker stop` waits before SIGKILL",
    )
    .min(5),
    KeySpec::new(
        "dockerInheritVariables",
        "docker_inherit_variables",
        &["executor.docker.inherit.variables"],
        K::List,
        "[]",
        "executor environment variables copied into containers",
    ),
    KeySpec::new(
        "cgroupsMesosCpuTasksFormat",
        "cgroups_mesos_cpu_tasks_format",
        &["executor.cgroups.mesos.cpu.tasks.format"],
        K::String,
        "/cgroup/cpu/%s/tasks",
        "CGROUP thread checker: tasks file of a container",
    ),
    KeySpec::new(
        "procCgroupFormat",
        "proc_cgroup_format",
        &["executor.proc.cgroup.format"],
        K::String,
        "/proc/%s/cgroup",
        "CGROUP thread checker: cgroup file of a process",
    ),
    KeySpec::new(
        "switchUserCommandFormat",
        "switch_user_command_format",
        &["executor.switch.user.command.format"],
        K::String,
        "sudo -E -u %s",
        "prefix used when the task user differs from the executor's",
    ),
    KeySpec::new(
        "artifactSignatureVerificationCommand",
        "artifact_signature_verification_command",
        &["executor.artifact.signature.verification.command"],
        K::List,
        "[\"/usr/bin/gpg\",\"--verify\",\"{artifactSignaturePath}\"]",
        "signature check argv; `{artifactPath}` and `{artifactSignaturePath}` are replaced",
    ),
    KeySpec::new(
        "failTaskOnInvalidArtifactSignature",
        "fail_task_on_invalid_artifact_signature",
        &["executor.fail.task.on.invalid.artifact.signature"],
        K::Bool,
        "true",
        "a failed signature check fails the task",
    ),
    KeySpec::new(
        "failOnArtifactWithNoMatchingSignature",
        "fail_on_artifact_with_no_matching_signature",
        &["executor.fail.on.artifact.with.no.matching.signature"],
        K::Bool,
        "false",
        "an artifact without a signature fails the task",
    ),
    KeySpec::new(
        "failOnSignatureWithNoMatchingArtifact",
        "fail_on_signature_with_no_matching_artifact",
        &["executor.fail.on.signature.with.no.matching.artifact"],
        K::Bool,
        "false",
        "a signature without an artifact fails the task",
    ),
    KeySpec::new(
        "signatureVerifyOut",
        "signature_verify_out",
        &["executor.signature.verify.out"],
        K::String,
        "executor.gpg.out",
        "output of the signature check, in the task directory",
    ),
    KeySpec::new(
        "shellCommands",
        "shell_commands",
        &["executor.shell.commands"],
        K::Json,
        "[]",
        "commands the UI may run: `[{name, command: [..], options: [{name, flag}], skipCommandPrefix, skipCommandPrefixDockerOnly}]`",
    ),
    KeySpec::new(
        "shellCommandOutFile",
        "shell_command_out_file",
        &["executor.shell.command.out.file"],
        K::String,
        "executor.commands.{NAME}.{TIMESTAMP}.log",
        "output file of a shell command, in the task directory",
    ),
    KeySpec::new(
        "shellCommandPidPlaceholder",
        "shell_command_pid_placeholder",
        &["executor.shell.command.pid.placeholder"],
        K::String,
        "{PID}",
        "argv element replaced by the task pid",
    ),
    KeySpec::new(
        "shellCommandUserPlaceholder",
        "shell_command_user_placeholder",
        &["executor.shell.command.user.placeholder"],
        K::String,
        "{USER}",
        "argv element replaced by the task user",
    ),
    KeySpec::new(
        "shellCommandPidFile",
        "shell_command_pid_file",
        &["executor.shell.command.pid.file"],
        K::String,
        ".task-pid",
        "file in the task directory that may hold the pid for `{PID}`",
    ),
    KeySpec::new(
        "shellCommandPrefix",
        "shell_command_prefix",
        &["executor.shell.command.prefix"],
        K::List,
        "[]",
        "argv prefix of shell commands",
    ),
    KeySpec::new(
        "runShellCommandBeforeKillDueToThreads",
        "run_shell_command_before_kill_due_to_threads",
        &["executor.run.shell.command.before.kill.due.to.threads"],
        K::Json,
        "",
        "`{name, user, options: [..], logfileName}`: shell command run before a kill for too many threads",
    ),
    KeySpec::new(
        "dockerClientTimeLimitSeconds",
        "docker_client_time_limit_seconds",
        &["executor.docker.client.time.limit.seconds"],
        K::Integer,
        "300",
        "time limit of one Docker API call",
    ),
    KeySpec::new(
        "dockerClientConnectionPoolSize",
        "docker_client_connection_pool_size",
        &["executor.docker.client.connection.pool.size"],
        K::Integer,
        "5",
        "Docker client connections",
    ),
    KeySpec::new(
        "maxDockerPullAttempts",
        "max_docker_pull_attempts",
        &["executor.max.docker.pull.attempts"],
        K::Integer,
        "2",
        "image pull attempts",
    ),
    KeySpec::new(
        "dockerAuthConfig",
        "docker_auth_config",
        &["executor.docker.auth.config"],
        K::Json,
        "",
        "`{fromDockerConfig: true}` to use `~/.docker/config.json`, or `{username, password, email, serverAddress}`",
    )
    .secret(),
    KeySpec::new(
        "threadCheckerType",
        "thread_checker_type",
        &["executor.thread.checker.type"],
        K::Choice(crate::config::types::ThreadCheckerType::NAMES),
        "PS",
        "how task threads are counted: `PS`, `CGROUP` or `PROC_STATUS`",
    ),
    KeySpec::new(
        "logrotateFrequency",
        "logrotate_frequency",
        &["executor.logrotate.frequency"],
        K::Choice(crate::config::types::LogrotateFrequency::NAMES),
        "DAILY",
        "rotation schedule when the task sets none: `EVERY_MINUTE`, `EVERY_FIVE_MINUTES`, `HOURLY`, `DAILY`, `WEEKLY`, `MONTHLY`",
    ),
    KeySpec::new(
        "cronDirectory",
        "cron_directory",
        &["executor.cron.directory"],
        K::Path,
        "/etc/cron.d",
        "where Java wrote each task's logrotate cron file; none is written",
    )
    .unused(),
    KeySpec::new(
        "useFileAttributes",
        "use_file_attributes",
        &["executor.use.file.attributes"],
        K::Bool,
        "false",
        "keep `user.logstart`/`user.logend` extended attributes on rotated logs",
    ),
    KeySpec::new(
        "defaultHealthcheckMaxRetries",
        "default_healthcheck_max_retries",
        &["executor.default.healthcheck.max.retries"],
        K::Integer,
        "6",
        "file health check retries",
    ),
    KeySpec::new(
        "defaultHealthcheckBaseTimeoutSeconds",
        "default_healthcheck_base_timeout_seconds",
        &["executor.default.healthcheck.base.timeout.seconds"],
        K::Integer,
        "30",
        "file health check base time limit",
    ),
    KeySpec::new(
        "defaultHealthcheckInternvalSeconds",
        "default_healthcheck_interval_seconds",
        &["executor.default.healthcheck.interval.seconds"],
        K::Integer,
        "5",
        "file health check interval (the Java YAML spelling keeps its typo)",
    )
    .yaml_aliases(&["defaultHealthcheckIntervalSeconds"]),
    KeySpec::new(
        "defaultCfsPeriod",
        "default_cfs_period",
        &["executor.default.cfs.period"],
        K::Integer,
        "100000",
        "CFS period in microseconds",
    ),
    KeySpec::new(
        "extraScriptContent",
        "extra_script_content",
        &["executor.extra.script.content"],
        K::String,
        "\"\"",
        "bash inserted into runner.sh before the task command",
    ),
    KeySpec::new(
        "extraDockerScriptContent",
        "extra_docker_script_content",
        &["executor.extra.docker.script.content"],
        K::String,
        "\"\"",
        "bash inserted into the docker runner.sh",
    ),
    KeySpec::new(
        "maxServiceLogSizeMb",
        "max_service_log_size_mb",
        &["executor.max.service.log.size.mb"],
        K::Integer,
        "",
        "rotate service.log once it grows past this many MiB (checked as bytes are written, at the next line end)",
    ),
    KeySpec::new(
        "maxRotatedLogsNotUploadedMb",
        "max_rotated_logs_not_uploaded_mb",
        &["executor.max.rotated.logs.not.uploaded.mb"],
        K::Integer,
        "1024",
        "per task, rotated service logs awaiting upload beyond this many MiB are deleted oldest first (each logged at warn and counted); 0 means no limit",
    )
    .addition(),
    KeySpec::new(
        "verifyAssignedPorts",
        "verify_assigned_ports",
        &["executor.verify.assigned.ports"],
        K::Bool,
        "false",
        "fail a task whose assigned ports are already in use",
    ),
    KeySpec::new(
        "s3UploaderBucket",
        "s3_uploader_bucket",
        &["executor.s3.uploader.bucket", "executor.s3.uplaoder.bucket"],
        K::String,
        "",
        "log upload bucket when the task data names none (Java ignored this key)",
    )
    .addition(),
    KeySpec::new(
        "s3UploaderKeyPattern",
        "s3_uploader_key_pattern",
        &["executor.s3.uploader.pattern", "executor.s3.uploader.key.pattern"],
        K::String,
        "",
        "log upload key pattern when the task data names none (Java ignored this key)",
    )
    .addition(),
    KeySpec::new(
        "sourceProfileScripts",
        "source_profile_scripts",
        &["executor.source.profile.scripts"],
        K::Bool,
        "false",
        "source /etc/profile.d/*.sh and app/.profile.d/* before the task command (runner.sh always did)",
    )
    .addition(),
    KeySpec::new(
        "dockerSocket",
        "docker_socket",
        &["executor.docker.socket"],
        K::Path,
        "/var/run/docker.sock",
        "unix socket of the Docker-compatible engine (podman's works too)",
    )
    .addition(),
    KeySpec::new(
        "dockerPullTimeoutSeconds",
        "docker_pull_timeout_seconds",
        &["executor.docker.pull.timeout.seconds"],
        K::Integer,
        "600",
        "deadline of an image pull, all attempts together",
    )
    .min(1)
    .addition(),
    KeySpec::new(
        "dockerLimitsFromResources",
        "docker_limits_from_resources",
        &["executor.docker.limits.from.resources"],
        K::Bool,
        "false",
        "give containers the task's `mem` and `cpus` resources and `maxTaskThreads` as memory, cpu and pids limits, when they are not created under the executor's cgroup (see `mesosCgroupIsolation`)",
    )
    .addition(),
    KeySpec::new(
        "mesosCgroupIsolation",
        "mesos_cgroup_isolation",
        &["executor.mesos.cgroup.isolation"],
        K::Bool,
        "true",
        "the agent runs each executor in a cgroup of its task: containers are created under the executor's cgroup and `cpuHardLimit` is written into it; false for agents without cgroup isolation (containers then get `dockerLimitsFromResources` and `cpuHardLimit` as limits of their own)",
    )
    .addition(),
    KeySpec::new(
        "dockerHostPathMappings",
        "docker_host_path_mappings",
        &["executor.docker.host.path.mappings"],
        K::Json,
        "{}",
        "`{\"<path the executor sees>\": \"<same directory on the engine's host>\"}`, longest prefix first, for bind mounts of an executor running in a container; empty: found from the executor's own container mounts, or paths are the host's when it runs on the host",
    )
    .addition(),
];

static CLEANUP_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "safeModeWontRunWithNoTasks",
        "safe_mode_wont_run_with_no_tasks",
        &["executor.cleanup.safe.mode.wont.run.with.no.tasks"],
        K::Bool,
        "true",
        "do nothing when Singularity reports no active task here (unless decommissioned)",
    ),
    KeySpec::new(
        "executorCleanupResultsDirectory",
        "executor_cleanup_results_directory",
        &["executor.cleanup.results.directory"],
        K::Path,
        "",
        "where `<epochMillis>.cleanup.json` statistics are written",
    )
    .existing_dir(),
    KeySpec::new(
        "executorCleanupResultsSuffix",
        "executor_cleanup_results_suffix",
        &["executor.cleanup.results.suffix"],
        K::String,
        ".cleanup.json",
        "suffix of statistics files",
    ),
    KeySpec::new(
        "cleanupAppDirectoryOfFailedTasksAfterMillis",
        "cleanup_app_directory_of_failed_tasks_after_millis",
        &[
            "executor.cleanup.app.directory.of.failed.tasks.after.millis",
            "executor.cleanup.cleanup.app.directory.of.failed.tasks.after.millis",
        ],
        K::Integer,
        "86400000",
        "keep the `app/` directory of failed tasks this long",
    ),
    KeySpec::new(
        "singularityHosts",
        "singularity_hosts",
        &["singularity.hosts", "executor.cleanup.singularity.hosts"],
        K::List,
        "[]",
        "`host:port` of the Singularity API servers",
    )
    .required(),
    KeySpec::new(
        "singularityUseSsl",
        "singularity_use_ssl",
        &[
            "singularity.use.ssl",
            "executor.cleanup.singularity.use.ssl",
        ],
        K::Bool,
        "false",
        "reach the Singularity API over https",
    ),
    KeySpec::new(
        "singularityContextPath",
        "singularity_context_path",
        &[
            "singularity.context.path",
            "executor.cleanup.singularity.context.path",
        ],
        K::String,
        "",
        "API context path, e.g. `singularity/api`",
    )
    .required(),
    KeySpec::new(
        "runDockerCleanup",
        "run_docker_cleanup",
        &[
            "executor.cleanup.run.docker.cleanup",
            "executor.cleanup.docker",
        ],
        K::Bool,
        "false",
        "stop and remove containers of tasks that are no longer running",
    ),
    KeySpec::new(
        "singularityClientCredentials",
        "singularity_client_credentials",
        &[
            "singularity.client.credentials",
            "executor.cleanup.singularity.client.credentials",
        ],
        K::Json,
        "",
        "`{headerName, token}`: an HTTP header sent to the API",
    )
    .secret(),
    KeySpec::new(
        "singularityClientCredentialsPath",
        "singularity_client_credentials_path",
        &[
            "singularity.client.credentials.path",
            "executor.cleanup.singularity.client.credentials.path",
        ],
        K::Path,
        "",
        "JSON file holding `{headerName, token}`; wins over the inline value",
    ),
    KeySpec::new(
        "cleanTasksWhenDecommissioned",
        "clean_tasks_when_decommissioned",
        &["executor.cleanup.clean.tasks.when.decommissioned"],
        K::Bool,
        "true",
        "with no active task on a decommissioned host: clean up (true) or stop (false)",
    ),
    KeySpec::new(
        "compressionType",
        "compression_type",
        &["executor.cleanup.compression.type"],
        K::Choice(crate::config::types::CompressionType::NAMES),
        "GZIP",
        "compressor for abandoned rotations: `GZIP`, `BZIP2` or `BGZIP`",
    ),
    KeySpec::new(
        "defaultServiceLog",
        "default_service_log",
        &["executor.cleanup.default.service.log"],
        K::String,
        "service.log",
        "service log name when a task definition has none",
    ),
    KeySpec::new(
        "defaultServiceFinishedTailLog",
        "default_service_finished_tail_log",
        &["executor.cleanup.default.service.finished.tail.log"],
        K::String,
        "tail_of_finished_service.log",
        "tail log name when a task definition has none",
    ),
    KeySpec::new(
        "s3UploaderAdditionalFiles",
        "s3_uploader_additional_files",
        &["executor.cleanup.s3.uploader.additional.files"],
        K::List,
        "[\"service.log\"]",
        "files to upload when a task definition has no list",
    ),
    KeySpec::new(
        "defaultS3Bucket",
        "default_s3_bucket",
        &["executor.cleanup.default.s3.bucket"],
        K::String,
        "\"\"",
        "upload bucket when a task definition has none",
    ),
    KeySpec::new(
        "s3KeyFormat",
        "s3_key_format",
        &["executor.cleanup.s3.key.format"],
        K::String,
        "%requestId/%Y/%m/%taskId_%index-%s-%filename",
        "upload key pattern when a task definition has none",
    ),
    KeySpec::new(
        "mesosAgentStateUrl",
        "mesos_agent_state_url",
        &["executor.cleanup.mesos.agent.state.url"],
        K::String,
        "",
        "URL of the agent state giving this agent's id; absent: `http://<hostname>:5051/slave(1)/state`",
    )
    .addition(),
    KeySpec::new(
        "singularityRequestTimeoutMillis",
        "singularity_request_timeout_millis",
        &["executor.cleanup.singularity.request.timeout.millis"],
        K::Integer,
        "10000",
        "deadline of each request to the Singularity API and the agent, connection included",
    )
    .min(1)
    .addition(),
    KeySpec::new(
        "executorCleanupResultsMaxAgeMillis",
        "executor_cleanup_results_max_age_millis",
        &["executor.cleanup.results.max.age.millis"],
        K::Integer,
        "604800000",
        "statistics files older than this are deleted at each run; 0 keeps them all",
    )
    .addition(),
    KeySpec::new(
        "prometheusTextfilePath",
        "prometheus_textfile_path",
        &["executor.cleanup.prometheus.textfile.path"],
        K::Path,
        "",
        "also write the run's counts here in Prometheus text format (node_exporter's textfile collector, a `.prom` file)",
    )
    .addition(),
    KeySpec::new(
        "maxStartDelaySeconds",
        "max_start_delay_seconds",
        &["executor.cleanup.max.start.delay.seconds"],
        K::Integer,
        "300",
        "wait a random time up to this before the run, so agents started by the same schedule do not hit the API at once; 0 starts at once",
    )
    .addition(),
    KeySpec::new(
        "cleanupThreads",
        "cleanup_threads",
        &["executor.cleanup.threads"],
        K::Integer,
        "8",
        "tasks cleaned at the same time",
    )
    .min(1)
    .addition(),
];

static UPLOADER_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "pollForShutDownMillis",
        "poll_for_shut_down_millis",
        &[
            "s3uploader.poll.for.shut.down.millis",
            "s3uploader.poll.for.shutdown.millis",
        ],
        K::Integer,
        "1000",
        "how often the metadata watcher checks for shutdown",
    ),
    KeySpec::new(
        "executorMaxUploadThreads",
        "executor_max_upload_threads",
        &[
            "s3uploader.executor.max.upload.threads",
            "s3uploader.max.upload.threads",
        ],
        K::Integer,
        "25",
        "concurrent uploads",
    ),
    KeySpec::new(
        "checkUploadsEverySeconds",
        "check_uploads_every_seconds",
        &["s3uploader.check.uploads.every.seconds"],
        K::Integer,
        "600",
        "period of the upload pass",
    ),
    KeySpec::new(
        "recheckFilesEverySeconds",
        "recheck_files_every_seconds",
        &["s3uploader.recheck.files.every.seconds"],
        K::Integer,
        "600",
        "period of the full rescan of the metadata directory",
    )
    .min(60),
    KeySpec::new(
        "stopCheckingAfterMillisWithoutNewFile",
        "stop_checking_after_millis_without_new_file",
        &["s3uploader.stop.checking.after.millis.without.new.file"],
        K::Integer,
        "604800000",
        "an uploader with no new file for this long expires",
    ),
    KeySpec::new(
        "s3AccessKey",
        "s3_access_key",
        &["s3uploader.s3.access.key", "s3.access.key"],
        K::String,
        "",
        "upload access key; absent: s3base's, else the AWS default credential chain",
    )
    .secret(),
    KeySpec::new(
        "s3SecretKey",
        "s3_secret_key",
        &["s3uploader.s3.secret.key", "s3.secret.key"],
        K::String,
        "",
        "upload secret key; absent: s3base's",
    )
    .secret(),
    KeySpec::new(
        "maxSingleUploadSizeBytes",
        "max_single_upload_size_bytes",
        &[
            "s3uploader.max.single.upload.size.bytes",
            "s3uploader.max.single.upload.size",
        ],
        K::Integer,
        "5368709120",
        "files larger than this are uploaded in parts",
    )
    .min(5_242_880)
    .max(5_368_709_120),
    KeySpec::new(
        "uploadPartSize",
        "upload_part_size",
        &["s3uploader.upload.part.size"],
        K::Integer,
        "20971520",
        "multipart part size in bytes",
    )
    .min(5_242_880),
    KeySpec::new(
        "retryWaitMs",
        "retry_wait_ms",
        &["s3uploader.retry.wait.ms"],
        K::Integer,
        "1000",
        "wait before the second attempt of an S3 request; it doubles, with jitter, for each further one and for each failed pass of a file",
    ),
    KeySpec::new(
        "retryCount",
        "retry_count",
        &["s3uploader.retry.count"],
        K::Integer,
        "2",
        "attempts of one S3 request (in total) before the file waits for its next pass",
    ),
    KeySpec::new(
        "checkForOpenFiles",
        "check_for_open_files",
        &["s3uploader.check.for.open.files"],
        K::Bool,
        "true",
        "skip files a process still has open",
    ),
    KeySpec::new(
        "checkOpenFilesViaFuser",
        "check_open_files_via_fuser",
        &["s3uploader.check.open.files.via.fuser"],
        K::Bool,
        "false",
        "accepted for compatibility: the check reads `/proc/*/fd` in-process, without `lsof` or `fuser`",
    ),
    KeySpec::new(
        "s3BucketCredentials",
        "s3_bucket_credentials",
        &[
            "s3uploader.s3.bucket.credentials.<bucket>.access.key",
            "s3uploader.s3.bucket.credentials.<bucket>.secret.key",
            "s3.bucket.credentials.<bucket>.access.key",
            "s3.bucket.credentials.<bucket>.secret.key",
        ],
        K::BucketCredentials,
        "{}",
        "bucket → `{accessKey, secretKey}` for uploads to that bucket",
    )
    .secret(),
    KeySpec::new(
        "s3ContentHeaders",
        "s3_content_headers",
        &["s3uploader.s3.content.headers"],
        K::Json,
        "[]",
        "`[{filenameEndsWith, contentType, contentEncoding}]`: headers for matching files; the first match wins",
    ),
    KeySpec::new(
        "metricsHttpPort",
        "metrics_http_port",
        &["s3uploader.metrics.http.port"],
        K::Integer,
        "",
        "port of the `/metrics` (Prometheus) and `/healthz` listener on 127.0.0.1; absent or 0: no listener",
    )
    .max(65_535)
    .addition(),
    KeySpec::new(
        "ledgerPath",
        "ledger_path",
        &["s3uploader.ledger.path"],
        K::Path,
        "/var/lib/singularity/s3uploader.db",
        "SQLite ledger of each file's upload state, so a restart resumes where the last run stopped",
    )
    .addition(),
    KeySpec::new(
        "shutdownGraceMillis",
        "shutdown_grace_millis",
        &["s3uploader.shutdown.grace.millis"],
        K::Integer,
        "20000",
        "after SIGTERM, time in-flight uploads get to finish; keep it below the unit's `TimeoutStopSec`",
    )
    .addition(),
    KeySpec::new(
        "s3RequestTimeoutMillis",
        "s3_request_timeout_millis",
        &["s3uploader.s3.request.timeout.millis"],
        K::Integer,
        "60000",
        "deadline of one S3 request; a request carrying data gets one more second per MiB",
    )
    .min(1)
    .addition(),
    KeySpec::new(
        "retryMaxWaitMillis",
        "retry_max_wait_millis",
        &["s3uploader.retry.max.wait.millis"],
        K::Integer,
        "300000",
        "longest wait before a failed file is tried again (the wait doubles from `retryWaitMs`)",
    )
    .addition(),
    KeySpec::new(
        "debounceMillis",
        "debounce_millis",
        &["s3uploader.debounce.millis"],
        K::Integer,
        "200",
        "quiet time after a file system event before the scan it wakes",
    )
    .addition(),
    KeySpec::new(
        "uploadPartConcurrency",
        "upload_part_concurrency",
        &["s3uploader.upload.part.concurrency"],
        K::Integer,
        "4",
        "parts of one multipart upload sent at once",
    )
    .min(1)
    .max(64)
    .addition(),
];

static DOWNLOADER_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "httpServerTimeout",
        "http_server_timeout",
        &["s3downloader.http.server.timeout"],
        K::Integer,
        "1800000",
        "idle time limit of an HTTP connection, in milliseconds",
    ),
    KeySpec::new(
        "numEnqueueThreads",
        "num_enqueue_threads",
        &["s3downloader.num.enqueue.threads"],
        K::Integer,
        "10",
        "threads accepting and de-duplicating requests",
    ),
    KeySpec::new(
        "millisToWaitForReEnqueue",
        "millis_to_wait_for_re_enqueue",
        &["s3downloader.millis.to.wait.for.re.enqueue"],
        K::Integer,
        "5000",
        "delay before retrying a request whose artifact is already downloading",
    ),
    KeySpec::new(
        "numDownloaderThreads",
        "num_downloader_threads",
        &["s3downloader.num.downloader.threads"],
        K::Integer,
        "5",
        "concurrent downloads",
    ),
    KeySpec::new(
        "unixAcceptQueueSize",
        "unix_accept_queue_size",
        &["s3downloader.unix.accept.queue.size"],
        K::Integer,
        "128",
        "unix socket accept backlog",
    ),
    KeySpec::new(
        "allowedTargetDirectories",
        "allowed_target_directories",
        &["s3downloader.allowed.target.directories"],
        K::List,
        "[\"/var/lib/mesos\",\"/tmp/mesos\"]",
        "a request's target directory must lie under one of these",
    )
    .addition(),
    KeySpec::new(
        "artifactCacheMaxBytes",
        "artifact_cache_max_bytes",
        &["s3downloader.artifact.cache.max.bytes"],
        K::Integer,
        "10737418240",
        "size limit of the artifact cache; least recently used artifacts are evicted",
    )
    .addition(),
    KeySpec::new(
        "downloadPartSizeBytes",
        "download_part_size_bytes",
        &["s3downloader.download.part.size.bytes"],
        K::Integer,
        "4194304",
        "size of one ranged GET; replaces `s3ChunkSize` for the downloader's transfers",
    )
    .min(65_536)
    .addition(),
    KeySpec::new(
        "downloadPartConcurrency",
        "download_part_concurrency",
        &["s3downloader.download.part.concurrency"],
        K::Integer,
        "6",
        "ranged GETs of one download in flight at once",
    )
    .min(1)
    .max(256)
    .addition(),
    KeySpec::new(
        "defaultRequestTimeoutMillis",
        "default_request_timeout_millis",
        &["s3downloader.default.request.timeout.millis"],
        K::Integer,
        "30000",
        "how long a request without `timeoutMillis` is held before `Hit client timeout` (Java: Jetty's 30 s)",
    )
    .min(1)
    .addition(),
    KeySpec::new(
        "maxExtractedBytes",
        "max_extracted_bytes",
        &["s3downloader.max.extracted.bytes"],
        K::Integer,
        "34359738368",
        "a tarball extracting to more bytes than this is refused and nothing of it is left",
    )
    .min(1)
    .addition(),
    KeySpec::new(
        "maxExtractedEntries",
        "max_extracted_entries",
        &["s3downloader.max.extracted.entries"],
        K::Integer,
        "1000000",
        "a tarball with more entries than this is refused and nothing of it is left",
    )
    .min(1)
    .addition(),
    KeySpec::new(
        "shutdownGraceMillis",
        "shutdown_grace_millis",
        &["s3downloader.shutdown.grace.millis"],
        K::Integer,
        "20000",
        "after SIGTERM, time in-flight requests get to finish; keep it below the unit's `TimeoutStopSec`",
    )
    .addition(),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::*;
    use std::collections::BTreeSet;

    fn serialized_default(class: ConfigClass) -> serde_json::Map<String, serde_json::Value> {
        let value = match class {
            ConfigClass::Base => serde_json::to_value(BaseConfig::default()),
            ConfigClass::S3Base => serde_json::to_value(S3BaseConfig::default()),
            ConfigClass::Executor => serde_json::to_value(ExecutorConfig::default()),
            ConfigClass::ExecutorCleanup => serde_json::to_value(ExecutorCleanupConfig::default()),
            ConfigClass::S3Uploader => serde_json::to_value(S3UploaderConfig::default()),
            ConfigClass::S3Downloader => serde_json::to_value(S3DownloaderConfig::default()),
        };
        match value.unwrap() {
            serde_json::Value::Object(map) => map,
            other => panic!("{class} serialized to {other}"),
        }
    }

    fn default_text(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(text) if text.is_empty() => "\"\"".to_owned(),
            serde_json::Value::String(text) => text.clone(),
            serde_json::Value::Object(map) => {
                let present: serde_json::Map<_, _> = map
                    .iter()
                    .filter(|(_, value)| !value.is_null())
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                serde_json::Value::Object(present).to_string()
            }
            other => other.to_string(),
        }
    }

    #[test]
    fn the_table_and_the_structs_name_the_same_keys() {
        for class in ConfigClass::ALL {
            let from_struct: BTreeSet<String> = serialized_default(class).keys().cloned().collect();
            let from_table: BTreeSet<String> = class.keys().map(|k| k.yaml.to_owned()).collect();
            assert_eq!(from_struct, from_table, "{class}");
            assert_eq!(
                class.keys().count(),
                from_table.len(),
                "{class}: duplicate key"
            );
        }
    }

    #[test]
    fn the_table_defaults_are_the_struct_defaults() {
        for class in ConfigClass::ALL {
            let defaults = serialized_default(class);
            for spec in class.keys() {
                let mut expected = default_text(&defaults[spec.yaml]);
                if spec.requirement != Requirement::Optional && expected == "\"\"" {
                    // A required key has no default; the struct holds an empty value.
                    expected.clear();
                }
                assert_eq!(expected, spec.default, "{class}: {}", spec.yaml);
            }
        }
    }

    fn snake_case(camel: &str) -> String {
        let mut out = String::new();
        for c in camel.chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn toml_names_are_the_snake_case_of_yaml_names() {
        for class in ConfigClass::ALL {
            for spec in class.keys() {
                let expected = snake_case(spec.yaml).replace("internval", "interval");
                assert_eq!(spec.toml, expected, "{class}");
            }
        }
    }

    #[test]
    fn properties_names_carry_the_class_prefix_except_published_ones() {
        let published = [
            "artifact.cache.directory",
            "singularity.hosts",
            "singularity.use.ssl",
            "singularity.context.path",
            "singularity.client.credentials",
            "singularity.client.credentials.path",
        ];
        for class in ConfigClass::ALL.into_iter().skip(1) {
            for spec in class.keys() {
                let first = spec.property();
                assert!(
                    first.starts_with(class.properties_prefix()) || published.contains(&first),
                    "{class}: {first}"
                );
            }
        }
    }

    #[test]
    fn every_properties_spelling_routes_to_one_place() {
        // A consolidated file routes by the first owner; the only spellings shared between
        // classes are the base logging names and the uploader's own-file credential names.
        let mut seen = std::collections::BTreeMap::new();
        for class in ConfigClass::ALL {
            for spec in class.keys() {
                for spelling in spec.properties {
                    if let Some(owner) = seen.insert(*spelling, class) {
                        let shared_common = owner == ConfigClass::Base
                            && [
                                "loggingFilename",
                                "loggingDirectory",
                                "loggingLevel",
                                "loggingPattern",
                                "hostname",
                            ]
                            .contains(&spec.yaml);
                        let uploader_credentials =
                            owner == ConfigClass::S3Base && class == ConfigClass::S3Uploader;
                        assert!(
                            shared_common || uploader_credentials,
                            "{spelling}: {owner} and {class}"
                        );
                        seen.insert(*spelling, owner);
                    }
                }
            }
        }
    }

    #[test]
    fn map_entries_are_recognised() {
        let class = ConfigClass::Base;
        let (spec, target) = class
            .find_property("logging.level.com.example.app")
            .unwrap();
        assert_eq!(spec.yaml, "loggingLevel");
        assert_eq!(target, PropertyTarget::Logger("com.example.app".to_owned()));
        let (_, target) = class.find_property("hubspot.log.level").unwrap();
        assert_eq!(target, PropertyTarget::Logger("com.hubspot".to_owned()));
        let (_, target) = class.find_property("root.log.level").unwrap();
        assert_eq!(target, PropertyTarget::Logger("ROOT".to_owned()));
        let (spec, target) = ConfigClass::S3Base
            .find_property("s3.bucket.credentials.my.logs.bucket.secret.key")
            .unwrap();
        assert_eq!(spec.yaml, "s3BucketCredentials");
        assert_eq!(
            target,
            PropertyTarget::Bucket {
                bucket: "my.logs.bucket".to_owned(),
                field: "secretKey"
            }
        );
        assert!(class.find_property("logging.level.").is_none());
        let routed = ConfigClass::route_property("s3.access.key").unwrap();
        assert_eq!(routed.0, ConfigClass::S3Base);
        let routed = ConfigClass::route_property("executor.logging.level.ROOT").unwrap();
        assert_eq!(routed.0, ConfigClass::Executor);
    }
}
