//! Bad configuration: every problem is reported, once, as `file: key = value: reason` with the
//! key spelled as in that file; unknown keys are warnings; credentials never appear.

use std::path::PathBuf;

use pretty_assertions::assert_eq;
use singularity_common::config::{
    self, ConfigClass, ConfigErrors, ConfigSources, Diagnostic, LoadedConfig,
};
use singularity_common::exit;

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
        let scratch = Self { dir };
        for dir in ["s3", "lw", "cache", "tasks", "logrotate.d", "cleanup"] {
            std::fs::create_dir_all(scratch.path(dir)).expect("test setup");
        }
        scratch
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn root(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// `etc/<name>` or any relative path; returns the path as text for messages.
    fn write(&self, relative: &str, text: &str) -> String {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().expect("test setup")).expect("test setup");
        std::fs::write(&path, text.replace("@ROOT@", &self.root())).expect("test setup");
        path.display().to_string()
    }

    fn sources(&self) -> ConfigSources {
        ConfigSources {
            config_dir: self.path("etc"),
            files: Vec::new(),
        }
    }

    fn base_and_s3(&self) {
        self.write(
            "etc/singularity.base.yaml",
            "s3UploaderMetadataDirectory: @ROOT@/s3\nlogWatcherMetadataDirectory: @ROOT@/lw\n",
        );
        self.write(
            "etc/singularity.s3base.yaml",
            "artifactCacheDirectory: @ROOT@/cache\n",
        );
    }

    fn executor(&self) {
        self.write(
            "etc/singularity.executor.yaml",
            "globalTaskDefinitionDirectory: @ROOT@/tasks\ndefaultRunAsUser: root\n\
             logrotateConfDirectory: @ROOT@/logrotate.d\n",
        );
    }
}

fn errors(sources: &ConfigSources, classes: &[ConfigClass]) -> ConfigErrors {
    match config::load(sources, classes) {
        Ok(loaded) => panic!("expected problems, got {loaded:?}"),
        Err(errors) => errors,
    }
}

fn loaded(sources: &ConfigSources, classes: &[ConfigClass]) -> LoadedConfig {
    match config::load(sources, classes) {
        Ok(loaded) => loaded,
        Err(errors) => panic!("unexpected problems:\n{errors}"),
    }
}

fn lines(diagnostics: &[Diagnostic]) -> Vec<String> {
    diagnostics.iter().map(ToString::to_string).collect()
}

#[test]
fn an_unreadable_file_is_reported() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    let directory = scratch.path("a-directory.yaml");
    std::fs::create_dir(&directory).unwrap();
    let missing = scratch.path("missing.toml");
    let mut sources = scratch.sources();
    sources.files = vec![directory.clone(), missing.clone()];
    let errors = errors(&sources, &[]);
    assert_eq!(
        lines(&errors.problems),
        [
            format!(
                "{}: cannot read: Is a directory (os error 21)",
                directory.display()
            ),
            format!(
                "{}: cannot read: No such file or directory (os error 2)",
                missing.display()
            ),
        ]
    );
}

#[test]
fn an_unreadable_file_in_the_config_dir_is_reported() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    std::fs::create_dir_all(scratch.path("etc/singularity.s3base.toml")).unwrap();
    let errors = errors(&scratch.sources(), ConfigClass::FOR_S3_UPLOADER);
    assert_eq!(
        lines(&errors.problems),
        [format!(
            "{}/etc/singularity.s3base.toml: cannot read: Is a directory (os error 21)",
            scratch.root()
        )]
    );
}

#[test]
fn a_config_file_of_unknown_format_is_an_error() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    let path = scratch.write("agent.json", "{}");
    let mut sources = scratch.sources();
    sources.files.push(PathBuf::from(&path));
    let errors = errors(&sources, &[]);
    assert_eq!(
        lines(&errors.problems),
        [format!(
            "{path}: unknown format: the name must end in .properties, .yaml, .yml or .toml"
        )]
    );
}

#[test]
fn syntax_errors_name_the_line_in_every_format() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    let properties = scratch.write(
        "bad.properties",
        "# fine\nlogging.pattern=%msg\nbad=\\u12zz\n",
    );
    let yaml = scratch.write("bad.yaml", "base:\n  sentryPrefix: x\n  list: [1, 2\n");
    let toml = scratch.write("bad.toml", "[base]\nsentry_prefix = \"x\"\nbroken = = 2\n");
    let mut sources = scratch.sources();
    sources.files = [&properties, &yaml, &toml].map(PathBuf::from).to_vec();
    let problems = lines(&errors(&sources, &[]).problems);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!(
        problems[0],
        format!("{properties}:3: syntax error: Malformed \\uxxxx encoding: not hex.")
    );
    assert!(
        problems[1].starts_with(&format!("{yaml}:4: syntax error: ")),
        "{}",
        problems[1]
    );
    assert!(
        problems[2].starts_with(&format!("{toml}:3: syntax error: ")),
        "{}",
        problems[2]
    );
}

#[test]
fn a_yaml_file_must_hold_a_mapping() {
    let scratch = Scratch::new();
    let path = scratch.write("etc/singularity.base.yaml", "- just\n- a list\n");
    let problems = lines(&errors(&scratch.sources(), &[]).problems);
    assert_eq!(
        problems[0],
        format!("{path}:1: syntax error: expected a mapping of keys to values")
    );
}

#[test]
fn wrong_types_name_the_key_as_written_and_every_one_is_reported() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    let yaml = scratch.write(
        "etc/singularity.executor.yaml",
        "globalTaskDefinitionDirectory: @ROOT@/tasks\ndefaultRunAsUser: root\n\
         logrotateConfDirectory: @ROOT@/logrotate.d\nhardKillAfterMillis: soon\n\
         threadCheckerType: THREADS\nlogrotateFrequency: HOURLY\ndockerInheritVariables: [A, [B]]\n\
         logrotateAdditionalFiles:\n  - filename: a.log\n    logrotateFrequencyOverride: SOMETIMES\n\
         maxTaskMessageLength: -1\nkillThreads: 1.5\nloggingLevel: {ROOT: LOUD}\n",
    );
    let properties = scratch.write(
        "etc/singularity.executor.properties",
        "# first line\n\nexecutor.use.local.download.service=maybe\nexecutor.docker.stop.timeout=ten\n",
    );
    let toml = scratch.write(
        "etc/singularity.s3base.toml",
        "s3_chunk_retries = \"many\"\nlocal_download_http_port = 70000\ns3_use_v2_signing = 1\n",
    );
    let problems = lines(&errors(&scratch.sources(), ConfigClass::FOR_EXECUTOR).problems);
    let expected = [
        format!(
            "{properties}:3: executor.use.local.download.service = maybe: expected true or false"
        ),
        format!("{properties}:4: executor.docker.stop.timeout = ten: expected an integer"),
        format!("{toml}: local_download_http_port = 70000: integer out of range"),
        format!("{toml}: s3_chunk_retries = many: expected an integer"),
        format!("{toml}: s3_use_v2_signing = 1: expected true or false"),
        format!(
            "{yaml}: loggingLevel = {{\"ROOT\":\"LOUD\"}}: at ROOT: expected one of OFF, ERROR, WARN, INFO, DEBUG, TRACE, ALL"
        ),
        format!("{yaml}: dockerInheritVariables = [\"A\",[\"B\"]]: expected a list of strings"),
        format!("{yaml}: hardKillAfterMillis = soon: expected an integer"),
        format!("{yaml}: killThreads = 1.5: expected an integer"),
        format!(
            "{yaml}: logrotateAdditionalFiles = [{{\"filename\":\"a.log\",\"logrotateFrequencyOverride\":\"SOMETIMES\"}}]: \
             at [0].logrotateFrequencyOverride: unknown variant `SOMETIMES`, expected one of \
             `EVERY_MINUTE`, `EVERY_FIVE_MINUTES`, `HOURLY`, `DAILY`, `WEEKLY`, `MONTHLY`"
        ),
        format!("{yaml}: maxTaskMessageLength = -1: expected a non-negative integer"),
        format!("{yaml}: threadCheckerType = THREADS: expected one of PS, CGROUP, PROC_STATUS"),
    ];
    let mut sorted = problems.clone();
    sorted.sort();
    let mut expected_sorted = expected.to_vec();
    expected_sorted.sort();
    assert_eq!(sorted, expected_sorted);
}

#[test]
fn a_bad_logger_line_points_at_its_own_line() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    let path = scratch.write(
        "etc/singularity.s3base.properties",
        "artifact.cache.directory=@ROOT@/cache\nroot.log.level=INFO\nhubspot.log.level=CHATTY\n",
    );
    std::fs::remove_file(scratch.path("etc/singularity.s3base.yaml")).unwrap();
    let problems = lines(&errors(&scratch.sources(), ConfigClass::FOR_S3_UPLOADER).problems);
    assert_eq!(
        problems,
        [format!(
            "{path}:3: hubspot.log.level = CHATTY: expected one of OFF, ERROR, WARN, INFO, DEBUG, TRACE, ALL"
        )]
    );
}

#[test]
fn required_keys_name_the_class_file_or_where_it_would_be() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    let properties = scratch.write(
        "etc/singularity.executor.properties",
        "executor.logrotate.conf.directory=@ROOT@/logrotate.d\n",
    );
    let problems = lines(&errors(&scratch.sources(), ConfigClass::FOR_EXECUTOR_CLEANUP).problems);
    let etc = scratch.path("etc").display().to_string();
    assert_eq!(
        problems,
        [
            format!("{properties}: executor.default.user = (unset): required"),
            format!("{properties}: executor.global.task.definition.directory = (unset): required"),
            format!(
                "{etc}/singularity.executor.cleanup.yaml: executorCleanupResultsDirectory = (unset): required"
            ),
            format!(
                "{etc}/singularity.executor.cleanup.yaml: singularityHosts = (unset): required"
            ),
            format!(
                "{etc}/singularity.executor.cleanup.yaml: singularityContextPath = (unset): required"
            ),
        ]
    );
}

#[test]
fn missing_directories_are_problems() {
    let scratch = Scratch::new();
    let file = scratch.write("etc/singularity.base.yaml", "placeholder: 1\n");
    let path = scratch.write(
        "etc/singularity.base.yaml",
        "s3UploaderMetadataDirectory: @ROOT@/nowhere\nlogWatcherMetadataDirectory: @ROOT@/file.txt\n",
    );
    assert_eq!(file, path);
    scratch.write("file.txt", "not a directory");
    let toml = scratch.write(
        "etc/singularity.s3base.toml",
        "artifact_cache_directory = \"\"\n",
    );
    scratch.write(
        "etc/singularity.executor.toml",
        "global_task_definition_directory = \"@ROOT@/tasks\"\ndefault_run_as_user = \"root\"\n\
         logrotate_conf_directory = \"@ROOT@/no-logrotate\"\n",
    );
    let problems = lines(&errors(&scratch.sources(), ConfigClass::FOR_EXECUTOR).problems);
    let root = scratch.root();
    assert_eq!(
        problems,
        [
            format!(
                "{path}: s3UploaderMetadataDirectory = {root}/nowhere: directory does not exist"
            ),
            format!("{path}: logWatcherMetadataDirectory = {root}/file.txt: is not a directory"),
            format!("{toml}: artifact_cache_directory = : must not be empty"),
            // logrotate_conf_directory is unused (no logrotate): a missing one is no problem.
        ]
    );
}

#[test]
fn java_bean_constraints_are_checked() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    let s3 = scratch.write(
        "etc/singularity.s3base.yaml",
        "artifactCacheDirectory: @ROOT@/cache\nlocalDownloadHttpPort: 0\n",
    );
    let executor = scratch.write(
        "etc/singularity.executor.yaml",
        "globalTaskDefinitionDirectory: @ROOT@/tasks\ndefaultRunAsUser: root\n\
         logrotateConfDirectory: @ROOT@/logrotate.d\ndockerStopTimeout: 4\n",
    );
    let uploader = scratch.write(
        "etc/singularity.s3uploader.properties",
        "s3uploader.recheck.files.every.seconds=59\n\
         s3uploader.max.single.upload.size.bytes=5368709121\ns3uploader.upload.part.size=5242879\n",
    );
    let cleanup = scratch.write(
        "etc/singularity.executor.cleanup.yaml",
        "executorCleanupResultsDirectory: @ROOT@/cleanup\nsingularityHosts: []\nsingularityContextPath: ''\n",
    );
    let problems = lines(&errors(&scratch.sources(), &ConfigClass::ALL).problems);
    assert_eq!(
        problems,
        [
            format!("{executor}: dockerStopTimeout = 4: must be at least 5"),
            format!("{cleanup}: singularityHosts = []: must not be empty"),
            format!("{cleanup}: singularityContextPath = : must not be empty"),
            format!(
                "{uploader}:1: s3uploader.recheck.files.every.seconds = 59: must be at least 60"
            ),
            format!(
                "{uploader}:2: s3uploader.max.single.upload.size.bytes = 5368709121: must be between 5242880 and 5368709120"
            ),
            format!(
                "{uploader}:3: s3uploader.upload.part.size = 5242879: must be at least 5242880"
            ),
            format!(
                "{s3}: localDownloadHttpPort = 0: the downloader needs localDownloadHttpPort or localDownloadSocket"
            ),
        ]
    );
}

#[test]
fn the_downloader_accepts_a_socket_without_a_port() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    scratch.write(
        "etc/singularity.s3base.properties",
        "s3.local.download.http.port=\ns3.local.download.socket=/run/dl.sock\n",
    );
    let config = loaded(&scratch.sources(), ConfigClass::FOR_S3_DOWNLOADER);
    let s3 = config.s3.unwrap();
    assert_eq!(s3.local_download_http_port, None);
    // The same check fails once the socket is gone too.
    scratch.write(
        "etc/singularity.s3base.properties",
        "s3.local.download.http.port=\n",
    );
    let problems = lines(&errors(&scratch.sources(), ConfigClass::FOR_S3_DOWNLOADER).problems);
    assert_eq!(
        problems,
        [format!(
            "{}/etc/singularity.s3base.properties:1: s3.local.download.http.port = : \
             the downloader needs localDownloadHttpPort or localDownloadSocket",
            scratch.root()
        )]
    );
}

#[test]
fn required_checks_apply_only_to_the_classes_loaded() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    // No executor or cleanup files at all: the uploader does not care.
    let config = loaded(&scratch.sources(), ConfigClass::FOR_S3_UPLOADER);
    assert!(config.executor.is_none());
    assert!(config.s3uploader.is_some());
    // Base is always loaded, and checked.
    std::fs::remove_file(scratch.path("etc/singularity.base.yaml")).unwrap();
    let problems = lines(&errors(&scratch.sources(), &[]).problems);
    assert_eq!(
        problems,
        [
            format!(
                "{}/etc/singularity.base.yaml: s3UploaderMetadataDirectory = (unset): required",
                scratch.root()
            ),
            format!(
                "{}/etc/singularity.base.yaml: logWatcherMetadataDirectory = (unset): required",
                scratch.root()
            ),
        ]
    );
}

#[test]
fn the_same_key_in_two_formats_names_both_files() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    scratch.executor();
    let properties = scratch.write(
        "etc/singularity.executor.properties",
        "executor.hard.kill.after.millis=1000\nexecutor.kill.threads=2\n",
    );
    let toml = scratch.write(
        "etc/singularity.executor.toml",
        "hard_kill_after_millis = 2000\n",
    );
    let yaml = scratch
        .path("etc/singularity.executor.yaml")
        .display()
        .to_string();
    let problems = lines(&errors(&scratch.sources(), ConfigClass::FOR_EXECUTOR).problems);
    assert_eq!(
        problems,
        [format!(
            "{toml}: hard_kill_after_millis = 2000: also set in {properties}:1 as executor.hard.kill.after.millis"
        )]
    );
    // Different keys in two formats are fine, and a --config file may repeat a key.
    std::fs::remove_file(&toml).unwrap();
    let override_file = scratch.write(
        "override/singularity.executor.toml",
        "hard_kill_after_millis = 3000\n",
    );
    let mut sources = scratch.sources();
    sources.files.push(PathBuf::from(override_file));
    let config = loaded(&sources, ConfigClass::FOR_EXECUTOR);
    let executor = config.executor.unwrap();
    assert_eq!(executor.hard_kill_after_millis, 3000);
    assert_eq!(executor.kill_threads, 2);
    assert!(config.files_read.contains(&PathBuf::from(yaml)));
}

#[test]
fn unknown_keys_are_warnings_with_the_closest_key() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    let yaml = scratch.write(
        "etc/singularity.executor.yaml",
        "globalTaskDefinitionDirectory: @ROOT@/tasks\ndefaultRunAsUser: root\n\
         logrotateConfDirectory: @ROOT@/logrotate.d\nhardKilAfterMillis: 1\n\
         s3UploaderMetadataDirectory: /x\nserviceLog: service.log\n\
         logrotateAdditionalFiles:\n  - {filename: a.log, extenson: log}\n\
         dockerAuthConfig: {username: me, pasword: hunter2}\n",
    );
    let properties = scratch.write(
        "etc/singularity.executor.properties",
        "\nexecutor.s3.uploader.buckt=logs\ncompletely.unrelated=1\n",
    );
    let toml = scratch.write("etc/singularity.s3base.toml", "s3_chunk_sise = 5\n");
    let consolidated = scratch.write("agent.yaml", "executr: {}\ns3uploader:\n  retryCont: 3\n");
    let consolidated_properties = scratch.write("agent.properties", "s3uploader.retry.cont=3\n");
    let mut sources = scratch.sources();
    sources.files = [&consolidated, &consolidated_properties]
        .map(PathBuf::from)
        .to_vec();
    let config = loaded(&sources, &ConfigClass::ALL[..3]);
    let mut warnings = lines(&config.warnings);
    warnings.sort();
    let mut expected = vec![
        format!("{consolidated}: executr: unknown key (did you mean executor?)"),
        format!(
            "{consolidated_properties}:1: s3uploader.retry.cont: unknown key (did you mean s3uploader.retry.count?)"
        ),
        format!("{toml}: s3_chunk_sise: unknown key (did you mean s3_chunk_size?)"),
        format!(
            "{properties}:2: executor.s3.uploader.buckt: unknown key (did you mean executor.s3.uploader.bucket?)"
        ),
        format!("{properties}:3: completely.unrelated: unknown key"),
        format!("{yaml}: hardKilAfterMillis: unknown key (did you mean hardKillAfterMillis?)"),
        format!(
            "{yaml}: s3UploaderMetadataDirectory: unknown key (it belongs in singularity.base.yaml)"
        ),
        format!(
            "{yaml}: serviceLog: unknown key (no longer read: the scheduler names the service log)"
        ),
        format!(
            "{yaml}: logrotateAdditionalFiles[0].extenson: unknown key (did you mean extension?)"
        ),
        format!("{yaml}: dockerAuthConfig.pasword: unknown key (did you mean password?)"),
    ];
    expected.sort();
    assert_eq!(warnings, expected);
    // The uploader section was not loaded, so its unknown key is not examined.
    assert!(!warnings.iter().any(|w| w.contains("retryCont")));
}

#[test]
fn credentials_never_appear_in_output() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    scratch.write(
        "etc/singularity.s3base.properties",
        "s3.access.key=AKIAVERYSECRET0001\ns3.secret.key=wJalrXUtnFEMIK7MDENG0002\n\
         s3.bucket.credentials.logs.access.key=AKIABUCKETKEY0003\n\
         s3.bucket.credentials.logs.secret.key=bucketSecretValue0004\n",
    );
    scratch.write(
        "etc/singularity.s3uploader.yaml",
        "s3SecretKey: uploaderSecret0005\n",
    );
    let config = loaded(&scratch.sources(), ConfigClass::FOR_S3_UPLOADER);
    let rendered = config::render_effective(&config);
    for secret in [
        "AKIAVERYSECRET0001",
        "wJalrXUtnFEMIK7MDENG0002",
        "AKIABUCKETKEY0003",
        "bucketSecretValue0004",
        "uploaderSecret0005",
    ] {
        assert!(!rendered.contains(secret), "{secret} in\n{rendered}");
        assert!(!format!("{config:?}").contains(secret), "{secret} in Debug");
    }
    assert!(rendered.contains("  s3AccessKey: '****0001'"), "{rendered}");
    assert!(
        rendered.contains("      secretKey: '****0004'"),
        "{rendered}"
    );
    assert!(rendered.contains("  s3SecretKey: '****0005'"), "{rendered}");

    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = config::check_config(
        &scratch.sources(),
        ConfigClass::FOR_S3_UPLOADER,
        &mut out,
        &mut err,
    );
    assert_eq!(code, exit::OK);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out, rendered);
    assert!(!out.contains("AKIAVERYSECRET0001"));
}

#[test]
fn credentials_are_redacted_in_problems_too() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    let path = scratch.write(
        "etc/singularity.s3base.properties",
        "s3.bucket.credentials.logs.access.key=AKIAONLYHALF0001\n",
    );
    let executor = scratch.write(
        "etc/singularity.executor.yaml",
        "globalTaskDefinitionDirectory: @ROOT@/tasks\ndefaultRunAsUser: root\n\
         logrotateConfDirectory: @ROOT@/logrotate.d\n\
         dockerAuthConfig: {username: me, password: hunter2secret, fromDockerConfig: maybe}\n",
    );
    let problems = lines(&errors(&scratch.sources(), ConfigClass::FOR_EXECUTOR).problems);
    assert_eq!(
        problems,
        [
            format!(
                "{path}:1: s3.bucket.credentials.logs.access.key = ****0001: missing field `secretKey`"
            ),
            format!(
                "{executor}: dockerAuthConfig = {{\"fromDockerConfig\":\"maybe\",\"password\":\"****cret\",\"username\":\"me\"}}: \
                 at fromDockerConfig: invalid type: string \"maybe\", expected a boolean"
            ),
        ]
    );
}

#[test]
fn check_config_lists_every_problem_and_exits_78() {
    let scratch = Scratch::new();
    let base = scratch.write(
        "etc/singularity.base.properties",
        "s3uploader.metadata.directory=@ROOT@/s3\nlogwatcher.metadata.directory=@ROOT@/missing\n\
         s3.acess.key=oops\n",
    );
    let s3 = scratch.write(
        "etc/singularity.s3base.yaml",
        "artifactCacheDirectory: @ROOT@/cache\ns3ChunkSize: huge\ns3SecretKey: topSecretValue99\n",
    );
    let executor = scratch.write(
        "etc/singularity.executor.toml",
        "global_task_definition_directory = \"@ROOT@/tasks\"\n\
         logrotate_conf_directory = \"@ROOT@/logrotate.d\"\n",
    );
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = config::check_config(
        &scratch.sources(),
        ConfigClass::FOR_EXECUTOR,
        &mut out,
        &mut err,
    );
    assert_eq!(code, exit::CONFIG);
    assert_eq!(code, 78);
    assert!(out.is_empty());
    let err = String::from_utf8(err).unwrap();
    let root = scratch.root();
    assert_eq!(
        err,
        format!(
            "warning: {base}:3: s3.acess.key: unknown key (did you mean s3.access.key? it belongs in singularity.s3base.properties)\n\
             {base}:2: logwatcher.metadata.directory = {root}/missing: directory does not exist\n\
             {s3}: s3ChunkSize = huge: expected an integer\n\
             {executor}: default_run_as_user = (unset): required\n\
             the configuration is invalid: 3 problems\n"
        )
    );
    assert!(!err.contains("topSecretValue99"));
}

#[test]
fn check_config_prints_the_effective_configuration_and_warnings() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    let s3 = scratch.write(
        "etc/singularity.s3base.yaml",
        "artifactCacheDirectory: @ROOT@/cache\ns3Regio: eu-north-1\n",
    );
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = config::check_config(
        &scratch.sources(),
        &[ConfigClass::S3Base],
        &mut out,
        &mut err,
    );
    assert_eq!(code, exit::OK);
    let out = String::from_utf8(out).unwrap();
    let err = String::from_utf8(err).unwrap();
    assert_eq!(
        err,
        format!("warning: {s3}: s3Regio: unknown key (did you mean s3Region?)\n")
    );
    let root = scratch.root();
    assert!(
        out.starts_with(&format!(
            "# Effective configuration; credentials are redacted.\n# files read:\n\
             #   {root}/etc/singularity.base.yaml\n#   {s3}\nbase:\n"
        )),
        "{out}"
    );
    assert!(out.contains(&format!(
        "  artifactCacheDirectory: {root}/cache  # from {s3} (artifactCacheDirectory)\n"
    )));
    assert!(out.contains("\ns3:\n"));
    assert!(!out.contains("executor:"));
}

#[test]
fn the_errors_display_one_per_line() {
    let scratch = Scratch::new();
    let errors = errors(&scratch.sources(), &[]);
    assert_eq!(errors.problems.len(), 2);
    assert_eq!(errors.to_string().lines().count(), 2);
}

#[test]
fn the_published_files_as_printed_only_lack_their_directories() {
    let published =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/config/published");
    let sources = ConfigSources {
        config_dir: published.clone(),
        files: Vec::new(),
    };
    let errors = errors(&sources, &ConfigClass::ALL);
    assert!(errors.warnings.is_empty(), "{:?}", errors.warnings);
    let dir = published.display();
    assert_eq!(
        lines(&errors.problems),
        [
            format!(
                "{dir}/singularity.base.properties:2: s3uploader.metadata.directory = path/to/s3/metadata: directory does not exist"
            ),
            format!(
                "{dir}/singularity.base.properties:5: logwatcher.metadata.directory = path/to/logwatcher/metadata: directory does not exist"
            ),
            format!(
                "{dir}/singularity.s3base.properties:8: artifact.cache.directory = path/to/slugs: directory does not exist"
            ),
            format!(
                "{dir}/singularity.executor.properties:2: executor.global.task.definition.directory = path/to/tasks: directory does not exist"
            ),
            format!(
                "{dir}/singularity.executor.cleanup.properties:2: executor.cleanup.results.directory = path/to/cleanup: directory does not exist"
            ),
        ]
    );
}

#[test]
fn json_values_in_properties_must_parse() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    scratch.executor();
    let path = scratch.write(
        "etc/singularity.executor.properties",
        "executor.shell.commands=[{\"name\": \\\n   \"jstack\"\nexecutor.logrotate.extras.files=[\"a.log\", {\"filename\": 3}]\n",
    );
    let problems = lines(&errors(&scratch.sources(), ConfigClass::FOR_EXECUTOR).problems);
    assert_eq!(
        problems,
        [
            format!(
                "{path}:1: executor.shell.commands = [{{\"name\": \"jstack\": \
                 expected JSON: EOF while parsing an object at line 1 column 18"
            ),
            format!(
                "{path}:3: executor.logrotate.extras.files = [\"a.log\", {{\"filename\": 3}}]: \
                 at [1].filename: invalid type: integer `3`, expected a string"
            ),
        ]
    );
}

#[test]
fn a_consolidated_section_must_be_a_mapping() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    let yaml = scratch.write("agent.yaml", "s3: [artifactCacheDirectory]\n");
    let toml = scratch.write("agent.toml", "base = \"oops\"\n[s3downloder]\nx = 1\n");
    let mut sources = scratch.sources();
    sources.files = [&yaml, &toml].map(PathBuf::from).to_vec();
    let errors = errors(&sources, ConfigClass::FOR_S3_UPLOADER);
    assert_eq!(
        lines(&errors.problems),
        [
            format!("{toml}: base = \"oops\": expected a mapping of keys to values"),
            format!(
                "{yaml}: s3 = [\"artifactCacheDirectory\"]: expected a mapping of keys to values"
            ),
        ]
    );
    assert_eq!(
        lines(&errors.warnings),
        [format!(
            "{toml}: s3downloder: unknown key (did you mean s3downloader?)"
        )]
    );
}

#[test]
fn defaults_alone_render_with_a_note() {
    let scratch = Scratch::new();
    scratch.write(
        "elsewhere/singularity.base.yaml",
        "s3UploaderMetadataDirectory: @ROOT@/s3\nlogWatcherMetadataDirectory: @ROOT@/lw\n",
    );
    let config = loaded(
        &ConfigSources {
            config_dir: scratch.path("elsewhere"),
            files: Vec::new(),
        },
        &[],
    );
    let mut config = config;
    config.files_read.clear();
    let rendered = config::render_effective(&config);
    assert!(
        rendered.starts_with(
            "# Effective configuration; credentials are redacted.\n# files read:\n\
             #   (none: defaults only)\nbase:\n"
        ),
        "{rendered}"
    );
}

#[test]
fn bad_additional_files_name_the_entry_field_and_value() {
    let scratch = Scratch::new();
    scratch.base_and_s3();
    let path = scratch.write(
        "etc/singularity.executor.yaml",
        "globalTaskDefinitionDirectory: @ROOT@/tasks\ndefaultRunAsUser: root\n\
         logrotateExtrasDateformat: \"%Y/%m\"\n\
         logrotateAdditionalFiles:\n\
         \x20 - logs/ok.log\n\
         \x20 - filename: logs/a.log\n\
         \x20   logrotateSizeOverride: 10MB\n\
         \x20   dateformat: \"-%Q\"\n\
         \x20 - /var/log/outside.log\n",
    );
    let problems = lines(&errors(&scratch.sources(), ConfigClass::FOR_EXECUTOR).problems);
    assert_eq!(
        problems,
        [
            format!("{path}: logrotateExtrasDateformat = %Y/%m: must not contain `/`"),
            format!(
                "{path}: logrotateAdditionalFiles[1].dateformat = -%Q: not a valid date format \
                 (logrotate's are %Y %m %d %H %M %S %V %s)"
            ),
            format!(
                "{path}: logrotateAdditionalFiles[1].logrotateSizeOverride = 10MB: expected a size \
                 such as 10M, 500k, 1G or a byte count"
            ),
            format!(
                "{path}: logrotateAdditionalFiles[2].filename = /var/log/outside.log: must be \
                 relative to the task directory, without `..`"
            ),
        ]
    );
}
