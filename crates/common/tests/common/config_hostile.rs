//! Hostile configuration files for every class, one test per case: garbage, wrong types,
//! huge files, FIFOs and devices, unknown keys. Each is refused (or warned about) with a
//! message naming the file and the key, promptly, whatever the input.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use singularity_common::config::{self, ConfigClass, ConfigSources, MAX_CONFIG_FILE_BYTES};
use test_case::test_case;

/// What `config::load` said: (problems, warnings), as lines.
struct Outcome {
    problems: Vec<String>,
    warnings: Vec<String>,
}

/// A config dir holding a valid file for every class, then `name` (under `etc/`) written as
/// `content` (or made by `make` when it is a special file); loaded for every class.
fn load_with(name: &str, make: impl FnOnce(&std::path::Path)) -> Outcome {
    let dir = tempfile::Builder::new()
        .prefix("se-test-config-")
        .tempdir()
        .unwrap();
    let root = dir.path();
    for sub in ["etc", "s3", "lw", "cache", "tasks", "logrotate.d"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let valid = [
        (
            "singularity.base.yaml",
            format!(
                "s3UploaderMetadataDirectory: {0}/s3\nlogWatcherMetadataDirectory: {0}/lw\n",
                root.display()
            ),
        ),
        (
            "singularity.s3base.yaml",
            format!("artifactCacheDirectory: {}/cache\n", root.display()),
        ),
        (
            "singularity.executor.yaml",
            format!(
                "globalTaskDefinitionDirectory: {0}/tasks\ndefaultRunAsUser: root\n\
                 logrotateConfDirectory: {0}/logrotate.d\n",
                root.display()
            ),
        ),
    ];
    for (file, text) in valid {
        std::fs::write(root.join("etc").join(file), text).unwrap();
    }
    let path = root.join("etc").join(name);
    if path.exists() {
        std::fs::remove_file(&path).unwrap();
    }
    make(&path);
    let sources = ConfigSources {
        config_dir: root.join("etc"),
        files: Vec::<PathBuf>::new(),
    };
    let started = Instant::now();
    let result = config::load(&sources, &ConfigClass::ALL);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "loading took {:?}",
        started.elapsed()
    );
    let show = |d: &[config::Diagnostic]| d.iter().map(ToString::to_string).collect();
    match result {
        Ok(loaded) => Outcome {
            problems: Vec::new(),
            warnings: show(&loaded.warnings),
        },
        Err(errors) => Outcome {
            problems: show(&errors.problems),
            warnings: show(&errors.warnings),
        },
    }
}

fn with_text(name: &str, text: &[u8]) -> Outcome {
    load_with(name, |path| std::fs::write(path, text).unwrap())
}

fn nested(open: &str, close: &str, depth: usize) -> Vec<u8> {
    format!("{}{}", open.repeat(depth), close.repeat(depth)).into_bytes()
}

/// A YAML "billion laughs": each alias doubles the one before.
fn yaml_bomb() -> Vec<u8> {
    let mut text = String::from("a0: &a0 [x, x]\n");
    for i in 1..40 {
        text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}]\n", p = i - 1));
    }
    text.into_bytes()
}

fn assert_problem(outcome: &Outcome, name: &str, fragments: &[&str]) {
    let found = outcome
        .problems
        .iter()
        .any(|p| p.contains(name) && fragments.iter().all(|f| p.contains(f)));
    assert!(
        found,
        "no problem naming {name} and {fragments:?} in {:#?}",
        outcome.problems
    );
}

#[test_case("singularity.base.yaml", b"\xff\xfe\x00garbage\x80" , &["not valid UTF-8"] ; "binary garbage as yaml")]
#[test_case("singularity.s3base.toml", b"%%%% ???" , &["syntax error"] ; "garbage as toml")]
#[test_case("singularity.executor.properties", b"key=\\u12zz\n" , &["syntax error", "\\uxxxx"] ; "bad escape in properties")]
#[test_case("singularity.s3uploader.yaml", b": : :\n  - [" , &["syntax error"] ; "broken yaml")]
#[test_case("singularity.s3downloader.yaml", b"- a\n- list\n" , &["expected a mapping"] ; "a yaml list")]
#[test_case("singularity.executor.cleanup.yaml", b"just a scalar\n" , &["expected a mapping"] ; "a yaml scalar")]
#[test_case("singularity.s3uploader.toml", b"a = 1\x00\n" , &["syntax error"] ; "nul byte in toml")]
#[test_case("singularity.s3uploader.yaml", &nested("[", "]", 500_000) , &["syntax error", "nested more than 64 levels"] ; "deeply nested yaml")]
#[test_case("singularity.s3uploader.yaml", &nested("{a: ", "}", 100) , &["syntax error", "nested more than 64 levels"] ; "deeply nested yaml mappings")]
#[test_case("singularity.base.yaml", b"s3UploaderMetadataDirectory: /tmp\nbad\x07Key: 1\n" , &["control characters are not allowed"] ; "a control character in a yaml key")]
#[test_case("singularity.s3downloader.toml", b"a = [1, 2\n" , &["syntax error"] ; "unterminated toml array")]
#[test_case("singularity.s3downloader.toml", &nested("a = [", "]", 100_000) , &["syntax error"] ; "deeply nested toml")]
#[test_case("singularity.base.yaml", &yaml_bomb() , &["syntax error"] ; "yaml billion laughs")]
#[test_case("singularity.s3uploader.yaml", b"checkUploadsEverySeconds: soon\n" , &["checkUploadsEverySeconds = soon"] ; "a word for a number")]
#[test_case("singularity.s3downloader.yaml", b"downloadPartConcurrency: 0\n" , &["downloadPartConcurrency = 0"] ; "below the minimum")]
#[test_case("singularity.s3downloader.yaml", b"downloadPartConcurrency: 100000\n" , &["downloadPartConcurrency = 100000"] ; "above the maximum")]
#[test_case("singularity.s3downloader.yaml", b"downloadPartSizeBytes: -1\n" , &["downloadPartSizeBytes = -1"] ; "negative size")]
#[test_case("singularity.s3uploader.properties", b"s3uploader.retry.count=99999999999999999999999\n" , &["s3uploader.retry.count"] ; "integer overflow in properties")]
#[test_case("singularity.s3base.yaml", b"s3PathStyleAccess: maybe\n" , &["s3PathStyleAccess = maybe"] ; "not a boolean")]
#[test_case("singularity.base.yaml", b"s3UploaderMetadataDirectory: [a, b]\n" , &["s3UploaderMetadataDirectory"] ; "a list for a path")]
#[test_case("singularity.s3downloader.yaml", b"allowedTargetDirectories: 5\n" , &["allowedTargetDirectories = 5"] ; "a number for a list")]
#[test_case("singularity.executor.cleanup.toml", b"executor_cleanup_results_directory = 5\n" , &["executor_cleanup_results_directory = 5"] ; "wrong type in toml")]
#[test_case("singularity.s3uploader.toml", b"[check_uploads_every_seconds]\na = 1\n" , &["check_uploads_every_seconds"] ; "a table for a number")]
#[test_case("singularity.executor.yaml", b"hardKillAfterMillis: 1e400\n" , &["hardKillAfterMillis"] ; "a float overflowing")]
fn is_refused(name: &str, text: &[u8], fragments: &[&str]) {
    let outcome = with_text(name, text);
    assert_problem(&outcome, name, fragments);
}

#[test]
fn a_file_over_the_size_limit_is_refused_unread() {
    let big = vec![b'#'; usize::try_from(MAX_CONFIG_FILE_BYTES).unwrap() + 1];
    let outcome = with_text("singularity.s3uploader.properties", &big);
    assert_problem(
        &outcome,
        "singularity.s3uploader.properties",
        &["cannot read", "larger than 1048576 bytes"],
    );
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let outcome = load_with("singularity.s3base.yaml", |path| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    });
    assert_problem(&outcome, "singularity.s3base.yaml", &["not a regular file"]);
}

#[test]
fn a_symlink_to_an_endless_device_is_refused() {
    let outcome = load_with("singularity.executor.yaml", |path| {
        std::os::unix::fs::symlink("/dev/zero", path).unwrap();
    });
    assert_problem(
        &outcome,
        "singularity.executor.yaml",
        &["not a regular file"],
    );
}

#[test]
fn a_directory_in_place_of_a_file_is_refused() {
    let outcome = load_with("singularity.s3downloader.yaml", |path| {
        std::fs::create_dir(path).unwrap();
    });
    assert_problem(
        &outcome,
        "singularity.s3downloader.yaml",
        &["Is a directory"],
    );
}

#[test_case("singularity.s3uploader.yaml", b"checkUploadEverySeconds: 5\n", "checkUploadsEverySeconds" ; "a misspelt yaml key")]
#[test_case("singularity.s3downloader.properties", b"s3downloader.download.part.sise.bytes=65536\n", "s3downloader.download.part.size.bytes" ; "a misspelt properties key")]
#[test_case("singularity.executor.cleanup.toml", b"executor_cleanup_results_directori = \"/tmp\"\n", "executor_cleanup_results_directory" ; "a misspelt toml key")]
#[test_case("singularity.s3base.yaml", b"artifactCacheDirectory: /tmp\nunknown\xc3\xa9Key: 1\n", "unknown" ; "a key with non ascii letters")]
fn an_unknown_key_is_a_warning_naming_the_closest(name: &str, text: &[u8], closest: &str) {
    let outcome = with_text(name, text);
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.contains(name) && w.contains(closest)),
        "no warning naming {closest}: {:#?} / {:#?}",
        outcome.warnings,
        outcome.problems
    );
}
