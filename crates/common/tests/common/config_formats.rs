//! Reading configuration in all three formats: discovery, merge order, defaults, the shipped
//! examples and the published installation-guide files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Parser;
use pretty_assertions::assert_eq;
use singularity_common::config::{
    self, BucketCredentials, CompressionType, ConfigArgs, ConfigClass, ConfigSources, LoadedConfig,
    LogLevel, LogrotateAdditionalFile, LogrotateFrequency, Secret, ShellCommand,
    ShellCommandOption, ThreadCheckerType,
};

/// A temp dir for one test; `@ROOT@` in written files becomes its path.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("se-test-config-")
            .tempdir()
            .expect("test setup");
        Self { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn root(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn mkdir(&self, relative: &str) -> PathBuf {
        let path = self.path(relative);
        std::fs::create_dir_all(&path).expect("test setup");
        path
    }

    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().expect("test setup")).expect("test setup");
        std::fs::write(&path, text.replace("@ROOT@", &self.root())).expect("test setup");
        path
    }

    fn sources(&self) -> ConfigSources {
        ConfigSources {
            config_dir: self.path("etc"),
            files: Vec::new(),
        }
    }

    /// The directories the minimal configs below point at.
    fn make_dirs(&self) {
        for dir in ["s3", "lw", "cache", "tasks", "logrotate.d", "cleanup"] {
            self.mkdir(dir);
        }
    }
}

fn load(sources: &ConfigSources, classes: &[ConfigClass]) -> LoadedConfig {
    match config::load(sources, classes) {
        Ok(loaded) => loaded,
        Err(errors) => panic!("unexpected problems:\n{errors}"),
    }
}

fn all_classes() -> Vec<ConfigClass> {
    ConfigClass::ALL.to_vec()
}

/// The same settings for every class, in each format.
fn write_settings(scratch: &Scratch, extension: &str) {
    scratch.make_dirs();
    match extension {
        "yaml" => {
            scratch.write(
                "etc/singularity.base.yaml",
                "s3UploaderMetadataDirectory: @ROOT@/s3\nlogWatcherMetadataDirectory: @ROOT@/lw\n\
                 loggingDirectory: /var/log/agent\nloggingLevel:\n  ROOT: WARN\n  com.hubspot: debug\n\
                 sentryPrefix: agent\n",
            );
            scratch.write(
                "etc/singularity.s3base.yaml",
                "artifactCacheDirectory: @ROOT@/cache\ns3AccessKey: AKIAEXAMPLEKEY01\n\
                 s3SecretKey: secretExample0002\ns3ChunkSize: 1048576\n\
                 s3Endpoint: http://127.0.0.1:9000\ns3PathStyleAccess: true\ns3Region: eu-west-1\n\
                 localDownloadSocket: /run/dl.sock\ns3BucketCredentials:\n  logs.example:\n\
                 \x20   accessKey: AKIALOGSBUCKET03\n    secretKey: logsSecret0004\n",
            );
            scratch.write(
                "etc/singularity.executor.yaml",
                "globalTaskDefinitionDirectory: @ROOT@/tasks\ndefaultRunAsUser: app\n\
                 logrotateConfDirectory: @ROOT@/logrotate.d\nhardKillAfterMillis: 5000\n\
                 threadCheckerType: CGROUP\nlogrotateFrequency: HOURLY\ndockerStopTimeout: 30\n\
                 logrotateAdditionalFiles:\n  - logs/access.log\n  - filename: logs/gc.log\n\
                 \x20   logrotateFrequencyOverride: EVERY_FIVE_MINUTES\n    logrotateSizeOverride: 10M\n\
                 shellCommands:\n  - name: jstack\n    command: [jstack, '{PID}']\n\
                 \x20   options: [{name: force, flag: -F}]\n\
                 dockerInheritVariables: [MESOS_AGENT_ENDPOINT, HOST]\n\
                 s3UploaderBucket: task-logs\nhostname: agent-7\n",
            );
            scratch.write(
                "etc/singularity.executor.cleanup.yaml",
                "executorCleanupResultsDirectory: @ROOT@/cleanup\n\
                 singularityHosts: [a.example:7099, b.example:7099]\n\
                 singularityContextPath: singularity/api\ncompressionType: BZIP2\n\
                 singularityClientCredentials: {headerName: Authorization, token: Bearer-abcdef}\n",
            );
            scratch.write(
                "etc/singularity.s3uploader.yaml",
                "recheckFilesEverySeconds: 120\nuploadPartSize: 10485760\ncheckOpenFilesViaFuser: true\n\
                 s3ContentHeaders:\n  - filenameEndsWith: .json\n    contentType: application/json\n",
            );
            scratch.write(
                "etc/singularity.s3downloader.yaml",
                "numDownloaderThreads: 3\nallowedTargetDirectories: [/srv/mesos]\n\
                 artifactCacheMaxBytes: 1000000\n",
            );
        }
        "toml" => {
            scratch.write(
                "etc/singularity.base.toml",
                "s3_uploader_metadata_directory = \"@ROOT@/s3\"\n\
                 log_watcher_metadata_directory = \"@ROOT@/lw\"\n\
                 logging_directory = \"/var/log/agent\"\nsentry_prefix = \"agent\"\n\
                 [logging_level]\nROOT = \"WARN\"\n\"com.hubspot\" = \"DEBUG\"\n",
            );
            scratch.write(
                "etc/singularity.s3base.toml",
                "artifact_cache_directory = \"@ROOT@/cache\"\ns3_access_key = \"AKIAEXAMPLEKEY01\"\n\
                 s3_secret_key = \"secretExample0002\"\ns3_chunk_size = 1048576\n\
                 s3_endpoint = \"http://127.0.0.1:9000\"\ns3_path_style_access = true\n\
                 s3_region = \"eu-west-1\"\nlocal_download_socket = \"/run/dl.sock\"\n\
                 [s3_bucket_credentials.\"logs.example\"]\naccess_key = \"AKIALOGSBUCKET03\"\n\
                 secret_key = \"logsSecret0004\"\n",
            );
            scratch.write(
                "etc/singularity.executor.toml",
                "global_task_definition_directory = \"@ROOT@/tasks\"\ndefault_run_as_user = \"app\"\n\
                 logrotate_conf_directory = \"@ROOT@/logrotate.d\"\nhard_kill_after_millis = 5000\n\
                 thread_checker_type = \"CGROUP\"\nlogrotate_frequency = \"HOURLY\"\n\
                 docker_stop_timeout = 30\nlogrotate_additional_files = [\"logs/access.log\", \
                 { filename = \"logs/gc.log\", logrotate_frequency_override = \"EVERY_FIVE_MINUTES\", \
                 logrotate_size_override = \"10M\" }]\n\
                 docker_inherit_variables = [\"MESOS_AGENT_ENDPOINT\", \"HOST\"]\n\
                 s3_uploader_bucket = \"task-logs\"\nhostname = \"agent-7\"\n\
                 [[shell_commands]]\nname = \"jstack\"\ncommand = [\"jstack\", \"{PID}\"]\n\
                 options = [{ name = \"force\", flag = \"-F\" }]\n",
            );
            scratch.write(
                "etc/singularity.executor.cleanup.toml",
                "executor_cleanup_results_directory = \"@ROOT@/cleanup\"\n\
                 singularity_hosts = [\"a.example:7099\", \"b.example:7099\"]\n\
                 singularity_context_path = \"singularity/api\"\ncompression_type = \"BZIP2\"\n\
                 singularity_client_credentials = { header_name = \"Authorization\", token = \"Bearer-abcdef\" }\n",
            );
            scratch.write(
                "etc/singularity.s3uploader.toml",
                "recheck_files_every_seconds = 120\nupload_part_size = 10485760\n\
                 check_open_files_via_fuser = true\n\
                 [[s3_content_headers]]\nfilename_ends_with = \".json\"\ncontent_type = \"application/json\"\n",
            );
            scratch.write(
                "etc/singularity.s3downloader.toml",
                "num_downloader_threads = 3\nallowed_target_directories = [\"/srv/mesos\"]\n\
                 artifact_cache_max_bytes = 1000000\n",
            );
        }
        "properties" => {
            scratch.write(
                "etc/singularity.base.properties",
                "s3uploader.metadata.directory=@ROOT@/s3\nlogwatcher.metadata.directory=@ROOT@/lw\n\
                 root.log.directory=/var/log/agent\nroot.log.level=WARN\nhubspot.log.level=DEBUG\n\
                 base.sentry.prefix=agent\n",
            );
            scratch.write(
                "etc/singularity.s3base.properties",
                "artifact.cache.directory=@ROOT@/cache\ns3.access.key=AKIAEXAMPLEKEY01\n\
                 s3.secret.key=secretExample0002\ns3.chunk.size=1048576\n\
                 s3.endpoint=http://127.0.0.1:9000\ns3.path.style.access=true\ns3.region=eu-west-1\n\
                 s3.local.download.socket=/run/dl.sock\n\
                 s3.bucket.credentials.logs.example.access.key=AKIALOGSBUCKET03\n\
                 s3.bucket.credentials.logs.example.secret.key=logsSecret0004\n",
            );
            scratch.write(
                "etc/singularity.executor.properties",
                "executor.global.task.definition.directory=@ROOT@/tasks\nexecutor.default.user=app\n\
                 executor.logrotate.conf.directory=@ROOT@/logrotate.d\n\
                 executor.hard.kill.after.millis=5000\nexecutor.thread.checker.type=CGROUP\n\
                 executor.logrotate.frequency=HOURLY\nexecutor.docker.stop.timeout=30\n\
                 executor.logrotate.extras.files=[\"logs/access.log\", {\"filename\": \"logs/gc.log\", \
                 \"logrotateFrequencyOverride\": \"EVERY_FIVE_MINUTES\", \"logrotateSizeOverride\": \"10M\"}]\n\
                 executor.shell.commands=[{\"name\": \"jstack\", \"command\": [\"jstack\", \"{PID}\"], \
                 \"options\": [{\"name\": \"force\", \"flag\": \"-F\"}]}]\n\
                 executor.docker.inherit.variables=MESOS_AGENT_ENDPOINT, HOST\n\
                 executor.s3.uploader.bucket=task-logs\nexecutor.hostname=agent-7\n",
            );
            scratch.write(
                "etc/singularity.executor.cleanup.properties",
                "executor.cleanup.results.directory=@ROOT@/cleanup\n\
                 singularity.hosts=a.example:7099,b.example:7099\n\
                 singularity.context.path=singularity/api\nexecutor.cleanup.compression.type=BZIP2\n\
                 singularity.client.credentials={\"headerName\": \"Authorization\", \"token\": \"Bearer-abcdef\"}\n",
            );
            scratch.write(
                "etc/singularity.s3uploader.properties",
                "s3uploader.recheck.files.every.seconds=120\ns3uploader.upload.part.size=10485760\n\
                 s3uploader.check.open.files.via.fuser=true\n\
                 s3uploader.s3.content.headers=[{\"filenameEndsWith\": \".json\", \"contentType\": \"application/json\"}]\n",
            );
            scratch.write(
                "etc/singularity.s3downloader.properties",
                "s3downloader.num.downloader.threads=3\n\
                 s3downloader.allowed.target.directories=/srv/mesos\n\
                 s3downloader.artifact.cache.max.bytes=1000000\n",
            );
        }
        other => panic!("{other}"),
    }
}

fn assert_settings(loaded: &LoadedConfig, root: &str) {
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let base = &loaded.base;
    assert_eq!(
        base.s3_uploader_metadata_directory,
        PathBuf::from(format!("{root}/s3"))
    );
    assert_eq!(base.sentry_prefix, "agent");
    assert_eq!(
        base.common.logging_level,
        BTreeMap::from([
            ("ROOT".to_owned(), LogLevel::Warn),
            ("com.hubspot".to_owned(), LogLevel::Debug)
        ])
    );

    let s3 = loaded.s3.as_ref().expect("class loaded");
    assert_eq!(s3.s3_access_key, Some(Secret::new("AKIAEXAMPLEKEY01")));
    assert_eq!(s3.s3_chunk_size, 1_048_576);
    assert_eq!(s3.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert!(s3.s3_path_style_access);
    assert_eq!(s3.s3_region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        s3.local_download_socket,
        Some(PathBuf::from("/run/dl.sock"))
    );
    assert_eq!(
        s3.s3_bucket_credentials["logs.example"],
        BucketCredentials {
            access_key: Secret::new("AKIALOGSBUCKET03"),
            secret_key: Secret::new("logsSecret0004"),
        }
    );

    let executor = loaded.executor.as_ref().expect("class loaded");
    assert_eq!(executor.default_run_as_user, "app");
    assert_eq!(executor.hard_kill_after_millis, 5000);
    assert_eq!(executor.thread_checker_type, ThreadCheckerType::Cgroup);
    assert_eq!(executor.logrotate_frequency, LogrotateFrequency::Hourly);
    assert_eq!(executor.docker_stop_timeout, 30);
    assert_eq!(
        executor.logrotate_additional_files,
        vec![
            LogrotateAdditionalFile::named("logs/access.log"),
            LogrotateAdditionalFile {
                logrotate_frequency_override: Some(LogrotateFrequency::EveryFiveMinutes),
                logrotate_size_override: Some("10M".to_owned()),
                ..LogrotateAdditionalFile::named("logs/gc.log")
            },
        ]
    );
    assert_eq!(
        executor.shell_commands,
        vec![ShellCommand {
            name: "jstack".to_owned(),
            command: vec!["jstack".to_owned(), "{PID}".to_owned()],
            options: vec![ShellCommandOption {
                name: "force".to_owned(),
                flag: "-F".to_owned()
            }],
            skip_command_prefix: false,
            skip_command_prefix_docker_only: false,
        }]
    );
    assert_eq!(
        executor.docker_inherit_variables,
        ["MESOS_AGENT_ENDPOINT", "HOST"]
    );
    assert_eq!(executor.s3_uploader_bucket.as_deref(), Some("task-logs"));
    assert_eq!(executor.common.hostname.as_deref(), Some("agent-7"));

    let cleanup = loaded.executor_cleanup.as_ref().expect("class loaded");
    assert_eq!(
        cleanup.singularity_hosts,
        ["a.example:7099", "b.example:7099"]
    );
    assert_eq!(cleanup.singularity_context_path, "singularity/api");
    assert_eq!(cleanup.compression_type, CompressionType::Bzip2);
    let credentials = cleanup
        .singularity_client_credentials
        .as_ref()
        .expect("credentials set");
    assert_eq!(credentials.header_name, "Authorization");
    assert_eq!(credentials.token.expose(), "Bearer-abcdef");

    let uploader = loaded.s3uploader.as_ref().expect("class loaded");
    assert_eq!(uploader.recheck_files_every_seconds, 120);
    assert_eq!(uploader.upload_part_size, 10_485_760);
    assert!(uploader.check_open_files_via_fuser);
    assert_eq!(uploader.s3_content_headers[0].filename_ends_with, ".json");
    assert_eq!(uploader.s3_access_key, None);

    let downloader = loaded.s3downloader.as_ref().expect("class loaded");
    assert_eq!(downloader.num_downloader_threads, 3);
    assert_eq!(
        downloader.allowed_target_directories,
        [PathBuf::from("/srv/mesos")]
    );
    assert_eq!(downloader.artifact_cache_max_bytes, 1_000_000);
}

/// Everything but the bookkeeping (files read, origins), to compare formats.
fn settings_of(loaded: &LoadedConfig) -> impl PartialEq + std::fmt::Debug {
    (
        loaded.base.clone(),
        loaded.s3.clone(),
        loaded.executor.clone(),
        loaded.executor_cleanup.clone(),
        loaded.s3uploader.clone(),
        loaded.s3downloader.clone(),
    )
}

#[test]
fn yaml_files_set_every_class() {
    let scratch = Scratch::new();
    write_settings(&scratch, "yaml");
    let loaded = load(&scratch.sources(), &all_classes());
    assert_settings(&loaded, &scratch.root());
    assert_eq!(loaded.files_read.len(), 6);
}

#[test]
fn toml_files_set_every_class_like_yaml() {
    let scratch = Scratch::new();
    write_settings(&scratch, "toml");
    let toml = load(&scratch.sources(), &all_classes());
    assert_settings(&toml, &scratch.root());

    let other = Scratch::new();
    write_settings(&other, "yaml");
    let yaml = load(&other.sources(), &all_classes());
    let rebase = |text: String| text.replace(&other.root(), &scratch.root());
    assert_eq!(
        format!("{:?}", settings_of(&toml)),
        rebase(format!("{:?}", settings_of(&yaml)))
    );
}

#[test]
fn properties_files_set_every_class_like_yaml() {
    let scratch = Scratch::new();
    write_settings(&scratch, "properties");
    let properties = load(&scratch.sources(), &all_classes());
    assert_settings(&properties, &scratch.root());

    let other = Scratch::new();
    write_settings(&other, "yaml");
    let yaml = load(&other.sources(), &all_classes());
    let rebase = |text: String| text.replace(&other.root(), &scratch.root());
    assert_eq!(
        format!("{:?}", settings_of(&properties)),
        rebase(format!("{:?}", settings_of(&yaml)))
    );
}

/// Copies one example directory, pointing its directories into the scratch root.
fn example(scratch: &Scratch, format: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(format);
    let target = scratch.mkdir(format);
    for entry in std::fs::read_dir(&source).expect("test setup") {
        let path = entry.expect("test setup").path();
        let text = std::fs::read_to_string(&path).expect("test setup");
        let text = text
            .replace(
                "/var/lib/singularity",
                &format!("{}/var/lib/singularity", scratch.root()),
            )
            .replace(
                "/etc/logrotate.d",
                &format!("{}/etc/logrotate.d", scratch.root()),
            );
        std::fs::write(target.join(path.file_name().expect("test setup")), text)
            .expect("test setup");
    }
    for dir in [
        "var/lib/singularity/s3uploader",
        "var/lib/singularity/logwatcher",
        "var/lib/singularity/artifacts",
        "var/lib/singularity/tasks",
        "var/lib/singularity/cleanup",
        "etc/logrotate.d",
    ] {
        scratch.mkdir(dir);
    }
    target
}

#[test]
fn the_shipped_examples_say_the_same_in_every_format() {
    let scratch = Scratch::new();
    let mut loaded = Vec::new();
    for format in ["yaml", "toml", "properties"] {
        let sources = ConfigSources {
            config_dir: example(&scratch, format),
            files: Vec::new(),
        };
        let config = load(&sources, &all_classes());
        assert!(
            config.warnings.is_empty(),
            "{format}: {:?}",
            config.warnings
        );
        assert_eq!(config.files_read.len(), 6, "{format}");
        loaded.push(config);
    }
    let executor = loaded[0].executor.as_ref().unwrap();
    assert_eq!(executor.default_run_as_user, "root");
    assert_eq!(executor.logrotate_additional_files.len(), 2);
    assert_eq!(executor.shell_commands.len(), 1);
    assert_eq!(
        loaded[0]
            .executor_cleanup
            .as_ref()
            .unwrap()
            .singularity_hosts
            .len(),
        2
    );
    assert_eq!(settings_of(&loaded[0]), settings_of(&loaded[1]));
    assert_eq!(settings_of(&loaded[0]), settings_of(&loaded[2]));
}

#[test]
fn the_consolidated_yaml_example_equals_the_per_class_files() {
    let scratch = Scratch::new();
    let dir = example(&scratch, "yaml");
    let per_class = load(
        &ConfigSources {
            config_dir: dir.clone(),
            files: Vec::new(),
        },
        &all_classes(),
    );
    let consolidated = load(
        &ConfigSources {
            config_dir: scratch.path("empty"),
            files: vec![dir.join("singularity.yaml")],
        },
        &all_classes(),
    );
    assert!(
        consolidated.warnings.is_empty(),
        "{:?}",
        consolidated.warnings
    );
    assert_eq!(consolidated.files_read, [dir.join("singularity.yaml")]);
    assert_eq!(settings_of(&per_class), settings_of(&consolidated));
}

/// The installation guide's `.properties` files, with `path/to/` made absolute.
fn published(scratch: &Scratch) -> ConfigSources {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/config/published");
    for entry in std::fs::read_dir(&source).expect("test setup") {
        let path = entry.expect("test setup").path();
        let text = std::fs::read_to_string(&path).expect("test setup");
        scratch.write(
            &format!(
                "etc/{}",
                path.file_name().expect("test setup").to_string_lossy()
            ),
            &text.replace("=path/to/", "=@ROOT@/path/to/"),
        );
    }
    for dir in [
        "s3/metadata",
        "logwatcher/metadata",
        "slugs",
        "tasks",
        "cleanup",
    ] {
        scratch.mkdir(&format!("path/to/{dir}"));
    }
    scratch.sources()
}

#[test]
fn the_published_properties_files_mean_what_the_guide_says() {
    let scratch = Scratch::new();
    let loaded = load(&published(&scratch), &all_classes());
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let root = scratch.root();

    assert_eq!(
        loaded.base.s3_uploader_metadata_directory,
        PathBuf::from(format!("{root}/path/to/s3/metadata"))
    );
    assert_eq!(
        loaded.base.log_watcher_metadata_directory,
        PathBuf::from(format!("{root}/path/to/logwatcher/metadata"))
    );
    assert_eq!(
        loaded.base.common.logging_directory,
        Some(PathBuf::from(format!("{root}/path/to/logs")))
    );
    assert_eq!(
        loaded.base.common.logging_level,
        BTreeMap::from([("com.hubspot".to_owned(), LogLevel::Debug)])
    );

    let s3 = loaded.s3.as_ref().unwrap();
    assert_eq!(s3.s3_access_key.as_ref().unwrap().expose(), "blah");
    assert_eq!(s3.s3_secret_key.as_ref().unwrap().expose(), "secret");
    assert_eq!(
        s3.artifact_cache_directory,
        PathBuf::from(format!("{root}/path/to/slugs"))
    );

    let executor = loaded.executor.as_ref().unwrap();
    assert_eq!(
        executor.global_task_definition_directory,
        PathBuf::from(format!("{root}/path/to/tasks"))
    );
    assert_eq!(executor.default_run_as_user, "root");
    assert_eq!(executor.logrotate_to_directory, PathBuf::from("logs"));
    assert_eq!(executor.s3_uploader_bucket.as_deref(), Some("bucket-name"));
    assert_eq!(
        executor.s3_uploader_key_pattern.as_deref(),
        Some("%requestId/%Y/%m/%taskId_%index-%s%fileext")
    );
    assert_eq!(
        executor.logrotate_additional_files,
        [
            LogrotateAdditionalFile::named("logs/access.log"),
            LogrotateAdditionalFile::named("logs/gc.log")
        ]
    );
    assert_eq!(executor.logrotate_command, "/usr/sbin/logrotate");
    assert!(executor.use_local_download_service);
    // The base log directory and levels reach the executor.
    assert_eq!(
        executor.common.logging_directory,
        Some(PathBuf::from(format!("{root}/path/to/logs")))
    );
    assert_eq!(
        executor.common.logging_level[&"com.hubspot".to_owned()],
        LogLevel::Debug
    );

    let cleanup = loaded.executor_cleanup.as_ref().unwrap();
    assert_eq!(
        cleanup.executor_cleanup_results_directory,
        PathBuf::from(format!("{root}/path/to/cleanup"))
    );
    assert_eq!(cleanup.singularity_hosts, ["host:port", "host:port"]);
    assert_eq!(cleanup.singularity_context_path, "singularity/api");

    // In the uploader's own file, s3.access.key is the uploader's key.
    let uploader = loaded.s3uploader.as_ref().unwrap();
    assert_eq!(uploader.s3_access_key.as_ref().unwrap().expose(), "blah");
    assert_eq!(uploader.s3_secret_key.as_ref().unwrap().expose(), "secret");
    let origin = loaded
        .origin(ConfigClass::S3Uploader, "s3AccessKey")
        .unwrap();
    assert_eq!(origin.key, "s3.access.key");
    assert_eq!(origin.line, Some(2));
}

#[test]
fn properties_syntax_follows_java() {
    let scratch = Scratch::new();
    scratch.make_dirs();
    scratch.write(
        "etc/singularity.base.properties",
        "# a hash comment\n\
         ! a bang comment\n\
         s3uploader.metadata.directory = @ROOT@/s3\n\
         logwatcher.metadata.directory:@ROOT@/lw\n\
         root.log.directory /var/log/with\\ space\n\
         \x20  base.sentry.prefix   =   tab\\there\\u0021  \n\
         logging.pattern=first \\\n\
         \x20      second\n\
         logging.level.com.example\\=odd=error\n\
         root.log.level=warn\n",
    );
    let loaded = load(&scratch.sources(), &[]);
    let base = &loaded.base;
    assert_eq!(base.s3_uploader_metadata_directory, scratch.path("s3"));
    assert_eq!(base.log_watcher_metadata_directory, scratch.path("lw"));
    assert_eq!(
        base.common.logging_directory,
        Some(PathBuf::from("/var/log/with space"))
    );
    assert_eq!(base.sentry_prefix, "tab\there!");
    assert_eq!(base.common.logging_pattern, "first second");
    assert_eq!(
        base.common.logging_level,
        BTreeMap::from([
            ("ROOT".to_owned(), LogLevel::Warn),
            ("com.example=odd".to_owned(), LogLevel::Error)
        ])
    );
    let origin = loaded.origin(ConfigClass::Base, "loggingPattern").unwrap();
    assert_eq!(origin.line, Some(7));
}

#[test]
fn unset_keys_take_the_java_defaults() {
    let scratch = Scratch::new();
    scratch.make_dirs();
    scratch.write(
        "etc/singularity.base.yaml",
        "s3UploaderMetadataDirectory: @ROOT@/s3\nlogWatcherMetadataDirectory: @ROOT@/lw\n",
    );
    scratch.write(
        "etc/singularity.s3base.yaml",
        "artifactCacheDirectory: @ROOT@/cache\n",
    );
    scratch.write(
        "etc/singularity.executor.yaml",
        "globalTaskDefinitionDirectory: @ROOT@/tasks\ndefaultRunAsUser: root\n\
         logrotateConfDirectory: @ROOT@/logrotate.d\n",
    );
    scratch.write(
        "etc/singularity.executor.cleanup.yaml",
        "executorCleanupResultsDirectory: @ROOT@/cleanup\nsingularityHosts: [h:1]\n\
         singularityContextPath: api\n",
    );
    let loaded = load(&scratch.sources(), &all_classes());

    let base = &loaded.base;
    assert_eq!(base.s3_uploader_metadata_suffix, ".s3.json");
    assert_eq!(base.log_watcher_metadata_suffix, ".tail.json");
    assert_eq!(
        base.common.logging_directory,
        Some(PathBuf::from("/var/log/singularity/"))
    );
    assert_eq!(base.common.logging_filename, None);
    assert_eq!(
        base.common.logging_pattern,
        "%-5level [%d] [%.15thread] %logger{50} %contextName - %msg%n"
    );
    assert!(base.common.logging_level.is_empty());
    assert_eq!(base.sentry_dsn, None);

    let s3 = loaded.s3.as_ref().unwrap();
    assert_eq!(s3.s3_access_key, None);
    assert_eq!(s3.s3_chunk_size, 104_857_600);
    assert_eq!(s3.s3_download_timeout_millis, 120_000);
    assert_eq!(s3.s3_chunk_download_timeout_millis, 30_000);
    assert_eq!(s3.s3_chunk_retries, 3);
    assert_eq!(s3.local_download_http_port, Some(7070));
    assert_eq!(s3.local_download_path, "/download");
    assert_eq!(s3.s3_endpoint, None);
    assert!(!s3.s3_path_style_access);
    assert_eq!(s3.s3_region, None);

    let executor = loaded.executor.as_ref().unwrap();
    assert_eq!(
        executor.common.logging_filename.as_deref(),
        Some("singularity-executor.log")
    );
    assert_eq!(
        executor.common.logging_directory,
        Some(PathBuf::from("/var/log/singularity/"))
    );
    assert_eq!(executor.executor_java_log, "executor.java.log");
    assert_eq!(executor.task_app_directory, "app");
    assert_eq!(executor.shutdown_timeout_wait_millis, 300_000);
    assert_eq!(executor.initial_idle_executor_shutdown_wait_millis, 60_000);
    assert_eq!(executor.idle_executor_shutdown_wait_millis, 10_000);
    assert_eq!(executor.hard_kill_after_millis, 180_000);
    assert_eq!(executor.max_task_message_length, 80);
    assert_eq!(
        executor.logrotate_hourly_conf_directory,
        PathBuf::from("/etc/logrotate.d/hourly")
    );
    assert_eq!(executor.logrotate_dateformat, "%Y%m%d%s");
    assert_eq!(executor.logrotate_count, 20);
    assert_eq!(executor.tail_log_lines_to_save, 2500);
    assert_eq!(executor.local_download_service_max_connections, 25);
    assert_eq!(executor.docker_prefix, "se-");
    assert_eq!(executor.docker_stop_timeout, 15);
    assert_eq!(
        executor.artifact_signature_verification_command,
        ["/usr/bin/gpg", "--verify", "{artifactSignaturePath}"]
    );
    assert!(executor.fail_task_on_invalid_artifact_signature);
    assert_eq!(
        executor.shell_command_out_file,
        "executor.commands.{NAME}.{TIMESTAMP}.log"
    );
    assert_eq!(executor.max_docker_pull_attempts, 2);
    assert_eq!(executor.thread_checker_type, ThreadCheckerType::Ps);
    assert_eq!(executor.logrotate_frequency, LogrotateFrequency::Daily);
    assert_eq!(executor.default_healthcheck_interval_seconds, 5);
    assert_eq!(executor.default_cfs_period, 100_000);
    assert_eq!(executor.s3_uploader_bucket, None);

    let cleanup = loaded.executor_cleanup.as_ref().unwrap();
    assert!(cleanup.safe_mode_wont_run_with_no_tasks);
    assert_eq!(cleanup.executor_cleanup_results_suffix, ".cleanup.json");
    assert_eq!(
        cleanup.cleanup_app_directory_of_failed_tasks_after_millis,
        86_400_000
    );
    assert_eq!(cleanup.compression_type, CompressionType::Gzip);
    assert_eq!(cleanup.s3_uploader_additional_files, ["service.log"]);
    assert_eq!(
        cleanup.s3_key_format,
        "%requestId/%Y/%m/%taskId_%index-%s-%filename"
    );
    assert_eq!(
        cleanup.common.logging_filename.as_deref(),
        Some("singularity-executor-cleanup.log")
    );

    let uploader = loaded.s3uploader.as_ref().unwrap();
    assert_eq!(uploader.poll_for_shut_down_millis, 1000);
    assert_eq!(uploader.recheck_files_every_seconds, 600);
    assert_eq!(
        uploader.stop_checking_after_millis_without_new_file,
        604_800_000
    );
    assert_eq!(uploader.max_single_upload_size_bytes, 5_368_709_120);
    assert_eq!(uploader.upload_part_size, 20_971_520);
    assert_eq!(uploader.retry_count, 2);
    assert!(uploader.check_for_open_files);

    let downloader = loaded.s3downloader.as_ref().unwrap();
    assert_eq!(downloader.http_server_timeout, 1_800_000);
    assert_eq!(downloader.num_enqueue_threads, 10);
    assert_eq!(downloader.num_downloader_threads, 5);
    assert_eq!(downloader.unix_accept_queue_size, 128);
    assert_eq!(
        downloader.allowed_target_directories,
        [PathBuf::from("/var/lib/mesos"), PathBuf::from("/tmp/mesos")]
    );
    assert_eq!(downloader.artifact_cache_max_bytes, 10_737_418_240);
    assert_eq!(
        downloader.common.logging_filename.as_deref(),
        Some("singularity-s3downloader.log")
    );
}

fn minimal_base(scratch: &Scratch) {
    scratch.make_dirs();
    scratch.write(
        "etc/singularity.base.yaml",
        "s3UploaderMetadataDirectory: @ROOT@/s3\nlogWatcherMetadataDirectory: @ROOT@/lw\n",
    );
    scratch.write(
        "etc/singularity.s3base.yaml",
        "artifactCacheDirectory: @ROOT@/cache\n",
    );
}

#[test]
fn a_consolidated_section_replaces_per_class_values_key_by_key() {
    let scratch = Scratch::new();
    minimal_base(&scratch);
    scratch.write(
        "etc/singularity.s3uploader.yaml",
        "retryCount: 5\nretryWaitMs: 10\ns3BucketCredentials:\n  a: {accessKey: k1, secretKey: s1}\n",
    );
    let consolidated = scratch.write(
        "agent.yaml",
        "s3uploader:\n  retryCount: 7\n  s3BucketCredentials:\n    b: {accessKey: k2, secretKey: s2}\n\
         s3:\n  s3Region: ap-south-1\n",
    );
    let mut sources = scratch.sources();
    sources.files.push(consolidated.clone());
    let loaded = load(&sources, ConfigClass::FOR_S3_UPLOADER);
    let uploader = loaded.s3uploader.as_ref().unwrap();
    assert_eq!(uploader.retry_count, 7);
    assert_eq!(uploader.retry_wait_ms, 10);
    assert_eq!(
        uploader.s3_bucket_credentials.keys().collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(
        loaded.s3.as_ref().unwrap().s3_region.as_deref(),
        Some("ap-south-1")
    );
    assert_eq!(
        loaded
            .origin(ConfigClass::S3Uploader, "retryCount")
            .unwrap()
            .file,
        consolidated
    );
    assert_eq!(
        loaded.files_read,
        [
            scratch.path("etc/singularity.base.yaml"),
            scratch.path("etc/singularity.s3base.yaml"),
            scratch.path("etc/singularity.s3uploader.yaml"),
            consolidated,
        ]
    );
}

#[test]
fn consolidated_toml_and_properties_files_route_keys_to_their_class() {
    let scratch = Scratch::new();
    scratch.make_dirs();
    let toml = scratch.write(
        "agent.toml",
        "[base]\ns3_uploader_metadata_directory = \"@ROOT@/s3\"\n\
         log_watcher_metadata_directory = \"@ROOT@/lw\"\n\
         [s3]\nartifact_cache_directory = \"@ROOT@/cache\"\n\
         [executor_cleanup]\nexecutor_cleanup_results_directory = \"@ROOT@/cleanup\"\n\
         singularity_hosts = [\"h:1\"]\nsingularity_context_path = \"api\"\n\
         [executor]\nglobal_task_definition_directory = \"@ROOT@/tasks\"\n\
         default_run_as_user = \"nobody\"\nlogrotate_conf_directory = \"@ROOT@/logrotate.d\"\n",
    );
    let properties = scratch.write(
        "agent.properties",
        "logging.filename=all.log\nhubspot.log.level=TRACE\ns3.access.key=AKIABASEKEY0001\n\
         executor.default.user=app\nexecutor.logging.level.ROOT=ERROR\n\
         singularity.use.ssl=true\n",
    );
    let mut sources = scratch.sources();
    sources.files = vec![toml, properties];
    let loaded = load(&sources, ConfigClass::FOR_EXECUTOR_CLEANUP);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(
        loaded.base.common.logging_filename.as_deref(),
        Some("all.log")
    );
    assert_eq!(
        loaded.s3.as_ref().unwrap().s3_access_key,
        Some(Secret::new("AKIABASEKEY0001"))
    );
    let executor = loaded.executor.as_ref().unwrap();
    assert_eq!(executor.default_run_as_user, "app");
    // The executor keeps its own file name; levels merge base's and its own.
    assert_eq!(
        executor.common.logging_filename.as_deref(),
        Some("singularity-executor.log")
    );
    assert_eq!(
        executor.common.logging_level,
        BTreeMap::from([
            ("ROOT".to_owned(), LogLevel::Error),
            ("com.hubspot".to_owned(), LogLevel::Trace)
        ])
    );
    // s3base has no file name of its own, so it takes base's.
    assert_eq!(
        loaded
            .s3
            .as_ref()
            .unwrap()
            .common
            .logging_filename
            .as_deref(),
        Some("all.log")
    );
    assert!(
        loaded
            .executor_cleanup
            .as_ref()
            .unwrap()
            .singularity_use_ssl
    );
}

#[test]
fn later_config_files_win() {
    let scratch = Scratch::new();
    minimal_base(&scratch);
    let first = scratch.write(
        "one.yaml",
        "s3downloader:\n  numEnqueueThreads: 2\n  numDownloaderThreads: 2\n",
    );
    let second = scratch.write(
        "two/singularity.s3downloader.properties",
        "s3downloader.num.downloader.threads=9\n",
    );
    let third = scratch.write("three.toml", "[s3downloader]\nunix_accept_queue_size = 4\n");
    let mut sources = scratch.sources();
    sources.files = vec![first, second.clone(), third];
    let loaded = load(&sources, ConfigClass::FOR_S3_DOWNLOADER);
    let downloader = loaded.s3downloader.as_ref().unwrap();
    assert_eq!(downloader.num_enqueue_threads, 2);
    assert_eq!(downloader.num_downloader_threads, 9);
    assert_eq!(downloader.unix_accept_queue_size, 4);
    let origin = loaded
        .origin(ConfigClass::S3Downloader, "numDownloaderThreads")
        .unwrap();
    assert_eq!(
        (origin.file.clone(), origin.line, origin.key.as_str()),
        (second, Some(1), "s3downloader.num.downloader.threads")
    );
}

#[test]
fn the_config_dir_files_come_before_config_files() {
    let scratch = Scratch::new();
    minimal_base(&scratch);
    scratch.write(
        "etc/singularity.s3downloader.toml",
        "num_downloader_threads = 1\n",
    );
    let override_file = scratch.write("singularity.s3downloader.yaml", "numDownloaderThreads: 8\n");
    let mut sources = scratch.sources();
    sources.files.push(override_file);
    let loaded = load(&sources, ConfigClass::FOR_S3_DOWNLOADER);
    assert_eq!(
        loaded.s3downloader.as_ref().unwrap().num_downloader_threads,
        8
    );
}

#[test]
fn common_keys_fall_back_to_base() {
    let scratch = Scratch::new();
    minimal_base(&scratch);
    scratch.write(
        "etc/singularity.base.yaml",
        "s3UploaderMetadataDirectory: @ROOT@/s3\nlogWatcherMetadataDirectory: @ROOT@/lw\n\
         loggingDirectory: /logs\nhostname: agent-1\nloggingPattern: '%msg'\nloggingFilename: base.log\n\
         loggingLevel: {ROOT: WARN}\n",
    );
    scratch.write(
        "etc/singularity.s3uploader.yaml",
        "hostname: agent-2\nloggingLevel: {com.hubspot: DEBUG}\n",
    );
    let loaded = load(&scratch.sources(), ConfigClass::FOR_S3_UPLOADER);
    let uploader = &loaded.s3uploader.as_ref().unwrap().common;
    assert_eq!(uploader.logging_directory, Some(PathBuf::from("/logs")));
    assert_eq!(uploader.hostname.as_deref(), Some("agent-2"));
    assert_eq!(uploader.logging_pattern, "%msg");
    assert_eq!(
        uploader.logging_filename.as_deref(),
        Some("singularity-s3uploader.log")
    );
    assert_eq!(
        uploader.logging_level,
        BTreeMap::from([
            ("ROOT".to_owned(), LogLevel::Warn),
            ("com.hubspot".to_owned(), LogLevel::Debug)
        ])
    );
    let s3 = &loaded.s3.as_ref().unwrap().common;
    assert_eq!(s3.hostname.as_deref(), Some("agent-1"));
    assert_eq!(s3.logging_filename.as_deref(), Some("base.log"));
    assert_eq!(
        loaded
            .origin(ConfigClass::S3Uploader, "loggingDirectory")
            .unwrap()
            .file,
        scratch.path("etc/singularity.base.yaml")
    );
}

#[test]
fn the_uploader_reads_its_own_credentials_only_from_its_own_file() {
    let scratch = Scratch::new();
    minimal_base(&scratch);
    scratch.write(
        "etc/singularity.s3uploader.properties",
        "s3.access.key=AKIAUPLOADER0001\ns3.bucket.credentials.logs.secret.key=uploaderSecret\n\
         s3uploader.s3.bucket.credentials.logs.access.key=uploaderAccess\n",
    );
    let consolidated = scratch.write("agent.properties", "s3.secret.key=baseSecret99\n");
    let mut sources = scratch.sources();
    sources.files.push(consolidated);
    let loaded = load(&sources, ConfigClass::FOR_S3_UPLOADER);
    let uploader = loaded.s3uploader.as_ref().unwrap();
    assert_eq!(
        uploader.s3_access_key,
        Some(Secret::new("AKIAUPLOADER0001"))
    );
    assert_eq!(uploader.s3_secret_key, None);
    assert_eq!(
        uploader.s3_bucket_credentials["logs"],
        BucketCredentials {
            access_key: Secret::new("uploaderAccess"),
            secret_key: Secret::new("uploaderSecret"),
        }
    );
    let s3 = loaded.s3.as_ref().unwrap();
    assert_eq!(s3.s3_access_key, None);
    assert_eq!(s3.s3_secret_key, Some(Secret::new("baseSecret99")));
}

#[test]
fn historical_java_properties_names_are_recognised() {
    let scratch = Scratch::new();
    minimal_base(&scratch);
    scratch.write(
        "etc/singularity.executor.properties",
        "executor.global.task.definition.directory=@ROOT@/tasks\nexecutor.default.user=root\n\
         executor.logrotate.config.folder=@ROOT@/logrotate.d\nexecutor.num.core.kill.threads=3\n\
         executor.shutdown.stop.driver.after.millis=250\nexecutor.service.log.tail.lines.to.save=10\n",
    );
    std::fs::remove_file(scratch.path("etc/singularity.s3base.yaml")).unwrap();
    scratch.write(
        "etc/singularity.s3base.properties",
        "artifact.cache.directory=@ROOT@/cache\ns3.downloader.http.port=7171\n",
    );
    let loaded = load(&scratch.sources(), ConfigClass::FOR_EXECUTOR);
    let executor = loaded.executor.as_ref().unwrap();
    assert_eq!(
        executor.logrotate_conf_directory,
        scratch.path("logrotate.d")
    );
    assert_eq!(executor.kill_threads, 3);
    assert_eq!(executor.stop_driver_after_millis, 250);
    assert_eq!(executor.tail_log_lines_to_save, 10);
    assert_eq!(
        loaded.s3.as_ref().unwrap().local_download_http_port,
        Some(7171)
    );
}

#[test]
fn yaml_scalars_are_coerced_like_jackson_and_the_corrected_spelling_is_accepted() {
    let scratch = Scratch::new();
    minimal_base(&scratch);
    scratch.write(
        "etc/singularity.executor.yaml",
        "globalTaskDefinitionDirectory: @ROOT@/tasks\ndefaultRunAsUser: 0\n\
         logrotateConfDirectory: @ROOT@/logrotate.d\nhardKillAfterMillis: '2500'\n\
         verifyAssignedPorts: 'true'\ndefaultHealthcheckIntervalSeconds: 9\n",
    );
    let loaded = load(&scratch.sources(), ConfigClass::FOR_EXECUTOR);
    let executor = loaded.executor.as_ref().unwrap();
    assert_eq!(executor.default_run_as_user, "0");
    assert_eq!(executor.hard_kill_after_millis, 2500);
    assert!(executor.verify_assigned_ports);
    assert_eq!(executor.default_healthcheck_interval_seconds, 9);
}

#[test]
fn files_of_classes_not_loaded_are_not_read() {
    let scratch = Scratch::new();
    minimal_base(&scratch);
    scratch.write(
        "etc/singularity.executor.yaml",
        "hardKillAfterMillis: [not, a, number\n",
    );
    let loaded = load(&scratch.sources(), ConfigClass::FOR_S3_DOWNLOADER);
    assert!(loaded.executor.is_none());
    assert!(
        !loaded
            .files_read
            .contains(&scratch.path("etc/singularity.executor.yaml"))
    );
}

#[test]
fn the_effective_configuration_loads_back_to_itself() {
    let scratch = Scratch::new();
    write_settings(&scratch, "properties");
    // Credentials are redacted in the rendering, so leave them out here.
    for class in ["s3base", "executor.cleanup"] {
        let path = scratch.path(&format!("etc/singularity.{class}.properties"));
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .filter(|line| !line.contains(".key=") && !line.contains("credentials"))
            .collect();
        std::fs::write(&path, kept.join("\n")).unwrap();
    }
    let loaded = load(&scratch.sources(), &all_classes());
    let rendered = config::render_effective(&loaded);
    assert!(
        rendered.starts_with("# Effective configuration"),
        "{rendered}"
    );
    assert!(rendered.contains("# files read:\n"));
    assert!(
        rendered.contains("  hardKillAfterMillis: 5000  # from "),
        "{rendered}"
    );
    let file = scratch.write("effective.yaml", &rendered);
    let reloaded = load(
        &ConfigSources {
            config_dir: scratch.path("nothing-here"),
            files: vec![file],
        },
        &all_classes(),
    );
    assert!(reloaded.warnings.is_empty(), "{:?}", reloaded.warnings);
    assert_eq!(settings_of(&loaded), settings_of(&reloaded));
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

#[test]
fn command_line_options() {
    let cli = Cli::try_parse_from(["daemon"]).unwrap();
    if std::env::var_os("SINGULARITY_CONFIG_DIR").is_none() {
        assert_eq!(cli.config.config_dir, PathBuf::from("/etc"));
    }
    assert!(!cli.config.check_config);
    assert!(cli.config.config.is_empty());

    let cli = Cli::try_parse_from([
        "daemon",
        "--config-dir",
        "/srv/conf",
        "--config",
        "/a.yaml",
        "--config=/b.toml",
        "--check-config",
    ])
    .unwrap();
    assert!(cli.config.check_config);
    assert_eq!(
        cli.config.sources(),
        ConfigSources {
            config_dir: PathBuf::from("/srv/conf"),
            files: vec![PathBuf::from("/a.yaml"), PathBuf::from("/b.toml")],
        }
    );
    assert_eq!(ConfigSources::default().config_dir, PathBuf::from("/etc"));
}

#[test]
fn null_means_absent_or_the_default() {
    let scratch = Scratch::new();
    minimal_base(&scratch);
    scratch.write(
        "etc/singularity.s3base.yaml",
        "artifactCacheDirectory: @ROOT@/cache\nlocalDownloadHttpPort: null\ns3ChunkSize: null\n\
         localDownloadSocket: /run/dl.sock\n",
    );
    let loaded = load(&scratch.sources(), ConfigClass::FOR_S3_DOWNLOADER);
    let s3 = loaded.s3.as_ref().expect("class loaded");
    assert_eq!(s3.local_download_http_port, None);
    assert_eq!(s3.s3_chunk_size, 104_857_600);
}
