//! `logrotateAdditionalFiles`: files the task appends to itself, rotated underneath it.
//!
//! The lossless cases run on small ext4 and XFS images loop-mounted by the test (root and
//! `mkfs.ext4`/`mkfs.xfs` are needed; `scripts/services.sh up` installs xfsprogs), the fallback
//! case on a tmpfs mounted by the test. Every mount is undone by a guard, also on failure.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, TimeZone};
use singularity_common::config::{ExecutorConfig, LogrotateAdditionalFile};
use singularity_common::naming;
use singularity_common::records::LogrotateFrequency;
use singularity_logs::additional::{AdditionalFile, AdditionalLogs, Method, Rotated, TickReport};
use singularity_logs::compress::read_decompressed;
use singularity_logs::{Compression, LOG_END_XATTR, LOG_START_XATTR, LogSettings};

// ------------------------------------------------------------------------------ file systems

/// A file system mounted on a fresh directory for one test; unmounted when dropped.
struct Mounted {
    mountpoint: PathBuf,
    // Dropped after the unmount: holds the image and the mount point.
    _scratch: tempfile::TempDir,
}

impl Mounted {
    /// A sparse image of `size_mib` formatted with `mkfs.<fs>` and loop-mounted.
    fn image(fs: &str, size_mib: u64) -> Mounted {
        let scratch = tempfile::Builder::new()
            .prefix("se-test-extras-")
            .tempdir()
            .expect("temp dir");
        let image = scratch.path().join(format!("{fs}.img"));
        fs::File::create(&image)
            .and_then(|file| file.set_len(size_mib << 20))
            .expect("image file");
        let mkfs = format!("mkfs.{fs}");
        let quiet_force: &[&str] = if fs == "xfs" {
            &["-q", "-f"]
        } else {
            &["-q", "-F"]
        };
        run(
            Command::new(&mkfs).args(quiet_force).arg(&image),
            &format!(
                "{mkfs} is needed (Debian xfsprogs / e2fsprogs; scripts/services.sh up installs them)"
            ),
        );
        let mountpoint = scratch.path().join("mnt");
        fs::create_dir(&mountpoint).expect("mount point");
        run(
            Command::new("mount")
                .arg("-o")
                .arg("loop")
                .arg(&image)
                .arg(&mountpoint),
            "loop-mounting needs root",
        );
        Mounted {
            mountpoint,
            _scratch: scratch,
        }
    }

    /// A small tmpfs.
    fn tmpfs(size_mib: u64) -> Mounted {
        Self::tmpfs_sized(&format!("{size_mib}m"))
    }

    /// A tmpfs of `size` (`256k`, `64m`).
    fn tmpfs_sized(size: &str) -> Mounted {
        let scratch = tempfile::Builder::new()
            .prefix("se-test-extras-")
            .tempdir()
            .expect("temp dir");
        let mountpoint = scratch.path().join("mnt");
        fs::create_dir(&mountpoint).expect("mount point");
        run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size}"))
                .arg("tmpfs")
                .arg(&mountpoint),
            "mounting a tmpfs needs root",
        );
        Mounted {
            mountpoint,
            _scratch: scratch,
        }
    }

    fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        for attempt in 0..50 {
            let status = Command::new("umount").arg(&self.mountpoint).status();
            if status.is_ok_and(|status| status.success()) {
                return;
            }
            if attempt == 49 {
                // Still busy: detach it so the image can go.
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(&self.mountpoint)
                    .status();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn run(command: &mut Command, hint: &str) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error} ({hint})"));
    assert!(
        output.status.success(),
        "{command:?} failed ({hint}): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ------------------------------------------------------------------------------ the writer

/// Lines the writer appends: a number and a newline, 9 bytes, so segments (whole blocks) end
/// in the middle of lines.
fn line(n: u64) -> String {
    format!("{n:08}\n")
}

fn expected(lines: u64) -> Vec<u8> {
    (0..lines).flat_map(|n| line(n).into_bytes()).collect()
}

/// A separate process appending `lines` numbered lines to `path` as fast as it can, one
/// `write` per line on an `O_APPEND` descriptor. Killed if the test fails first.
struct Writer(Child);

impl Writer {
    fn start(path: &Path, lines: u64) -> Writer {
        let script = "import os, sys\n\
                      fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n\
                      write = os.write\n\
                      for n in range(int(sys.argv[2])):\n    write(fd, b'%08d\\n' % n)\n\
                      os.close(fd)\n";
        let child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(path)
            .arg(lines.to_string())
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 runs the writer");
        Writer(child)
    }

    fn running(&mut self) -> bool {
        match self.0.try_wait().expect("writer status") {
            None => true,
            Some(status) => {
                assert!(status.success(), "the writer failed: {status}");
                false
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

// ------------------------------------------------------------------------------ support

fn entry(filename: &str) -> LogrotateAdditionalFile {
    LogrotateAdditionalFile::named(filename)
}

fn normalise(task_dir: &Path, entries: &[LogrotateAdditionalFile]) -> Vec<AdditionalFile> {
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            AdditionalFile::from_config(index, entry, task_dir, "%Y%m%d", LogrotateFrequency::Daily)
                .expect("valid entry")
        })
        .collect()
}

fn no_sink(_: &Rotated) {}

/// Runs the writer against a size-triggered entry, ticking until it exits, then the final
/// rotation. Returns every rotation in order and the driver.
fn rotate_while_writing(task_dir: &Path, lines: u64) -> (Vec<Rotated>, AdditionalLogs, usize) {
    fs::create_dir_all(task_dir.join("logs")).expect("logs dir");
    let mut extras = entry("logs/access.log");
    extras.logrotate_size_override = Some("64k".to_owned());
    extras.dateformat = Some("%Y%m%d%H%M%S".to_owned());
    let mut driver = AdditionalLogs::new(normalise(task_dir, &[extras]), Local::now(), no_sink);

    let mut writer = Writer::start(&task_dir.join("logs/access.log"), lines);
    let mut rotations = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while writer.running() {
        assert!(
            Instant::now() < deadline,
            "the writer took over two minutes"
        );
        let report = driver.tick(Local::now());
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        rotations.extend(report.rotated);
        std::thread::sleep(Duration::from_millis(1));
    }
    let while_running = rotations.len();
    let last = driver.finish(Local::now());
    assert!(last.failed.is_empty(), "{:?}", last.failed);
    rotations.extend(last.rotated);
    (rotations, driver, while_running)
}

fn contents(rotations: &[Rotated], live: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for rotated in rotations {
        all.extend(fs::read(&rotated.segment).expect("segment"));
    }
    all.extend(fs::read(live).expect("live file"));
    all
}

/// Every line exactly once, in order; on a mismatch, says where.
fn assert_lossless(got: &[u8], lines: u64) {
    let want = expected(lines);
    if got == want.as_slice() {
        return;
    }
    let text = String::from_utf8_lossy(got);
    let mut next = 0u64;
    for (index, got_line) in text.lines().enumerate() {
        let wanted = line(next);
        assert_eq!(
            format!("{got_line}\n"),
            wanted,
            "line {index} of the rotated output (of {} bytes, {} expected)",
            got.len(),
            want.len()
        );
        next += 1;
    }
    panic!(
        "{} bytes instead of {}: lines {next}.. missing",
        got.len(),
        want.len()
    );
}

fn lossless_case(mounted: &Mounted) {
    let task_dir = mounted.path().join("task");
    let lines = 1_000_000;
    let (rotations, driver, while_running) = rotate_while_writing(&task_dir, lines);

    assert!(
        while_running >= 10,
        "only {while_running} rotations while the writer ran"
    );
    let (last, running) = rotations.split_last().expect("rotations");
    for rotated in running {
        assert_eq!(rotated.method, Method::CollapseRange, "{rotated:?}");
    }
    // The final rotation takes the last partial block whole: nobody writes any more.
    assert!(
        matches!(
            last.method,
            Method::CollapseRange | Method::CopyTruncateFinal
        ),
        "{last:?}"
    );
    assert_eq!(driver.fallbacks(), 0);
    let live = task_dir.join("logs/access.log");
    assert_lossless(&contents(&rotations, &live), lines);
    assert_eq!(
        fs::metadata(&live).expect("live").len(),
        0,
        "emptied at the end"
    );

    // Collisions within one second got distinct names, all matching the upload glob.
    let mut names: Vec<String> = rotations
        .iter()
        .map(|rotated| file_name(&rotated.segment))
        .collect();
    let upload_glob =
        glob::Pattern::new(&naming::s3_upload_file_glob("access.log", false)).expect("upload glob");
    for name in &names {
        assert!(
            name.starts_with("access.log-") && name.ends_with(".log"),
            "{name}"
        );
        assert!(upload_glob.matches(&format!("{name}.gz")), "{name}.gz");
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), rotations.len(), "segment names are unique");
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

fn local(text: &str) -> DateTime<Local> {
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").expect("time");
    Local
        .from_local_datetime(&naive)
        .earliest()
        .expect("local time")
}

fn gzip_sink(rotated: &Rotated) {
    let data = fs::read(&rotated.segment).expect("segment");
    let mut compressed = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    compressed.write_all(&data).expect("gzip");
    let target = PathBuf::from(format!("{}.gz", rotated.segment.display()));
    fs::write(&target, compressed.finish().expect("gzip")).expect("write .gz");
    fs::remove_file(&rotated.segment).expect("remove segment");
}

fn gunzip(path: &Path) -> Vec<u8> {
    use std::io::Read as _;
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(path).expect("open .gz"))
        .read_to_end(&mut data)
        .expect("gunzip");
    data
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

// ------------------------------------------------------------------------------ tests

#[test]
fn an_appending_writer_loses_no_line_on_ext4() {
    let mounted = Mounted::image("ext4", 128);
    lossless_case(&mounted);
}

#[test]
fn an_appending_writer_loses_no_line_on_xfs() {
    let mounted = Mounted::image("xfs", 320);
    lossless_case(&mounted);
}

#[test]
fn tmpfs_falls_back_to_copy_and_truncate_and_counts_it() {
    let mounted = Mounted::tmpfs(64);
    let task_dir = mounted.path().join("task");
    let lines = 300_000;
    let (rotations, driver, while_running) = rotate_while_writing(&task_dir, lines);

    assert!(while_running >= 3, "only {while_running} rotations");
    for rotated in &rotations {
        assert_eq!(rotated.method, Method::CopyTruncateFallback, "{rotated:?}");
    }
    assert_eq!(driver.fallbacks(), rotations.len() as u64);
    // Lines written between a copy and its truncation are lost here; nothing is ever taken
    // twice.
    let got = contents(&rotations, &task_dir.join("logs/access.log"));
    assert!(!got.is_empty());
    assert!(got.len() <= expected(lines).len());
}

#[test]
fn a_scheduled_file_rotates_at_the_clock_boundary_under_javas_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).expect("logs");
    let live = logs.join("access.log");
    let original: Vec<u8> = expected(3000); // 27,000 bytes
    fs::write(&live, &original).expect("write");

    let mut hourly = entry("logs/access.log");
    hourly.logrotate_frequency_override = Some(LogrotateFrequency::Hourly);
    let mut driver = AdditionalLogs::new(
        normalise(dir.path(), &[hourly]),
        local("2022-11-18 12:30:00"),
        gzip_sink,
    );

    let quiet = driver.tick(local("2022-11-18 12:59:59"));
    assert!(quiet.rotated.is_empty() && quiet.deferred.is_empty());

    let due = driver.tick(local("2022-11-18 13:00:02"));
    assert_eq!(due.rotated.len(), 1, "{due:?}");
    assert_eq!(
        names_in(&logs),
        ["access.log", "access.log-20221118.log.gz"],
        "rotated beside the live file, compressed by the sink"
    );
    let rotated = gunzip(&logs.join("access.log-20221118.log.gz"));
    let rest = fs::read(&live).expect("live");
    assert_eq!([rotated, rest.clone()].concat(), original);

    // Not due again before 14:00; then the same date gives the next free name.
    assert!(driver.tick(local("2022-11-18 13:59:00")).rotated.is_empty());
    fs::OpenOptions::new()
        .append(true)
        .open(&live)
        .and_then(|mut file| file.write_all(&original))
        .expect("append");
    let next = driver.tick(local("2022-11-18 14:00:00"));
    assert_eq!(next.rotated.len(), 1, "{next:?}");
    assert_eq!(
        names_in(&logs),
        [
            "access.log",
            "access.log-20221118-1.log.gz",
            "access.log-20221118.log.gz"
        ]
    );

    // At teardown everything left goes, and the live file stays, empty.
    let before_final = fs::read(&live).expect("live");
    let last = driver.finish(local("2022-11-18 14:10:00"));
    assert_eq!(last.rotated.len(), 1);
    assert_eq!(
        gunzip(&logs.join("access.log-20221118-2.log.gz")),
        before_final
    );
    assert_eq!(fs::metadata(&live).expect("live").len(), 0);
    assert!(
        driver
            .finish(local("2022-11-18 14:11:00"))
            .rotated
            .is_empty(),
        "empty: nothing to rotate"
    );
}

#[test]
fn a_glob_rotates_each_live_match_and_never_its_own_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).expect("logs");
    for name in ["app.log", "gc.log"] {
        fs::write(logs.join(name), expected(1000)).expect("write");
    }
    let mut all = entry("logs/*.log");
    all.logrotate_size_override = Some("4k".to_owned());
    all.delete_in_executor_cleanup = true;
    let mut driver = AdditionalLogs::new(normalise(dir.path(), &[all]), Local::now(), no_sink);

    // The task's user keeps reading its rotated logs: owner and mode follow the live file.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::os::unix::fs::chown(logs.join("app.log"), Some(4321), Some(4322)).expect("chown");
        fs::set_permissions(logs.join("app.log"), fs::Permissions::from_mode(0o640))
            .expect("chmod");
    }

    let report: TickReport = driver.tick(local("2022-11-18 13:00:00"));
    let sources: Vec<String> = report
        .rotated
        .iter()
        .map(|r| file_name(&r.source))
        .collect();
    assert_eq!(sources, ["app.log", "gc.log"]);
    {
        use std::os::unix::fs::MetadataExt as _;
        let segment = fs::metadata(&report.rotated[0].segment).expect("segment");
        assert_eq!(
            (segment.uid(), segment.gid(), segment.mode() & 0o777),
            (4321, 4322, 0o640)
        );
    }
    // The uncompressed segments match `*.log` too, but are not live files.
    let again = driver.tick(local("2022-11-18 13:00:01"));
    assert!(again.rotated.is_empty(), "{again:?}");
    let mut segments: Vec<PathBuf> = report.rotated.iter().map(|r| r.segment.clone()).collect();
    segments.sort();
    assert_eq!(driver.unfinished_segments(), segments);
    assert_eq!(
        driver.files_to_delete_in_cleanup(),
        [logs.join("app.log"), logs.join("gc.log")]
    );
}

#[test]
fn a_file_under_one_block_waits_for_a_later_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("small.log"), "one line\n").expect("write");
    let mut minutely = entry("small.log");
    minutely.logrotate_frequency_override = Some(LogrotateFrequency::EveryMinute);
    let mut driver = AdditionalLogs::new(
        normalise(dir.path(), &[minutely]),
        local("2022-11-18 12:30:10"),
        no_sink,
    );
    let report = driver.tick(local("2022-11-18 12:31:00"));
    assert!(report.rotated.is_empty());
    assert_eq!(report.deferred, [dir.path().join("small.log")]);
    let last = driver.finish(local("2022-11-18 12:31:30"));
    assert_eq!(last.rotated.len(), 1);
    assert_eq!(last.rotated[0].method, Method::CopyTruncateFinal);
    assert_eq!(
        fs::read(&last.rotated[0].segment).expect("segment"),
        b"one line\n"
    );
}

fn task_data() -> singularity_common::records::SingularityTaskExecutorData {
    serde_json::from_str(r#"{"cmd":"./serve","logrotateFrequency":"HOURLY"}"#).expect("data")
}

#[test]
fn for_a_task_segments_are_compressed_like_the_service_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app_logs = dir.path().join("app/log");
    fs::create_dir_all(&app_logs).expect("dirs");
    let mut gc = entry("app/log/gc.out");
    gc.extension = Some("txt".to_owned());
    gc.dateformat = Some("-%Y-%m-%d-%H".to_owned());
    let config = ExecutorConfig {
        logrotate_additional_files: vec![entry("app/log/access.log"), gc],
        ..ExecutorConfig::default()
    };
    let data = task_data();
    let settings = LogSettings::new(&config, &data, dir.path()).expect("settings");
    let mut extras =
        AdditionalLogs::for_task(&settings, &config, &data, local("2022-11-18 12:10:00"))
            .expect("entries");
    let access = expected(2000);
    let gc_lines = expected(900);
    fs::write(app_logs.join("access.log"), &access).expect("write");
    fs::write(app_logs.join("gc.out"), &gc_lines).expect("write");

    // The task's frequency (HOURLY, from its executor data) applies to both.
    let report = extras.tick(local("2022-11-18 13:00:00"));
    assert_eq!(report.rotated.len(), 2, "{report:?}");
    assert_eq!(
        names_in(&app_logs),
        [
            "access.log",
            "access.log-20221118.log.gz",
            "gc.out",
            "gc.out-2022-11-18-13.txt.gz",
        ]
    );
    let last = extras.finish(local("2022-11-18 13:05:00"));
    assert_eq!(last.rotated.len(), 2);
    let mut access_out =
        read_decompressed(&app_logs.join("access.log-20221118.log.gz")).expect("gz");
    access_out
        .extend(read_decompressed(&app_logs.join("access.log-20221118-1.log.gz")).expect("gz"));
    assert_eq!(access_out, access);
    let mut gc_out = read_decompressed(&app_logs.join("gc.out-2022-11-18-13.txt.gz")).expect("gz");
    gc_out.extend(read_decompressed(&app_logs.join("gc.out-2022-11-18-13-1.txt.gz")).expect("gz"));
    assert_eq!(gc_out, gc_lines);
}

#[test]
fn bad_entries_refuse_the_task_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bad = entry("logs/a.log");
    bad.logrotate_size_override = Some("lots".to_owned());
    let config = ExecutorConfig {
        logrotate_additional_files: vec![entry("logs/ok.log"), bad],
        ..ExecutorConfig::default()
    };
    let data = task_data();
    let settings = LogSettings::new(&config, &data, dir.path()).expect("settings");
    let error =
        AdditionalLogs::for_task(&settings, &config, &data, Local::now()).expect_err("bad size");
    assert_eq!(
        error.to_string(),
        "logrotateAdditionalFiles[1].logrotateSizeOverride = \"lots\": expected a size such as \
         10M, 500k, 1G or a byte count"
    );
}

fn xattr(path: &Path, name: &str) -> Option<String> {
    let file = fs::File::open(path).expect("open");
    singularity_logs::compress::get_xattr(&file, name)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

#[test]
fn file_attributes_carry_the_start_and_mark_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("access.log");
    fs::write(&live, expected(1000)).expect("write");
    let file = fs::File::open(&live).expect("open");
    singularity_logs::compress::set_xattr(&file, LOG_START_XATTR, "1668772800000");
    assert_eq!(
        xattr(&live, LOG_START_XATTR).as_deref(),
        Some("1668772800000"),
        "the test directory's file system must keep user xattrs"
    );
    let mut extras = AdditionalLogs::new(
        normalise(dir.path(), &[entry("access.log")]),
        Local::now(),
        no_sink,
    )
    .with_file_attributes(true);
    let at = local("2022-11-18 13:00:00");
    let report = extras.finish(at);
    let segment = &report.rotated[0].segment;
    let at_ms = at.timestamp_millis().to_string();
    assert_eq!(
        xattr(segment, LOG_START_XATTR).as_deref(),
        Some("1668772800000")
    );
    assert_eq!(
        xattr(segment, LOG_END_XATTR).as_deref(),
        Some(at_ms.as_str())
    );
    assert_eq!(
        xattr(&live, LOG_START_XATTR).as_deref(),
        Some(at_ms.as_str())
    );
}

#[test]
fn recovery_compresses_what_a_dead_executor_left_and_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).expect("logs");
    fs::write(logs.join("access.log"), "live\n").expect("write");
    fs::write(logs.join("access.log-20221117.log"), expected(100)).expect("write");
    fs::write(logs.join(".access.log-20221117.log.compressing"), "partial").expect("write");
    fs::write(logs.join("access.log-20221116.log"), expected(50)).expect("write");
    fs::write(logs.join("access.log-20221116.log.gz"), "").expect("empty twin");
    fs::write(logs.join("access.log-20221115.log.gz"), "kept as is").expect("write");
    // Another log's temporary is not ours to remove.
    fs::write(logs.join(".service.log-20221117.log.compressing"), "x").expect("write");
    let extras = AdditionalLogs::new(
        normalise(dir.path(), &[entry("logs/access.log")]),
        Local::now(),
        no_sink,
    );

    let report = extras.recover(&Compression::default());
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(
        report.temporaries_removed,
        [logs.join(".access.log-20221117.log.compressing")]
    );
    assert_eq!(
        report.compressed,
        [
            logs.join("access.log-20221116.log.gz"),
            logs.join("access.log-20221117.log.gz")
        ]
    );
    assert_eq!(
        names_in(&logs),
        [
            ".service.log-20221117.log.compressing",
            "access.log",
            "access.log-20221115.log.gz",
            "access.log-20221116.log.gz",
            "access.log-20221117.log.gz",
        ]
    );
    assert_eq!(
        read_decompressed(&logs.join("access.log-20221116.log.gz")).expect("gz"),
        expected(50)
    );
    assert_eq!(
        read_decompressed(&logs.join("access.log-20221117.log.gz")).expect("gz"),
        expected(100)
    );

    let again = extras.recover(&Compression::default());
    assert!(
        again.temporaries_removed.is_empty()
            && again.compressed.is_empty()
            && again.failures.is_empty(),
        "{again:?}"
    );

    // The live file deleted already: its segments are still found.
    fs::remove_file(logs.join("access.log")).expect("remove");
    fs::write(logs.join("access.log-20221118.log"), expected(10)).expect("write");
    let without_live = extras.recover(&Compression::default());
    assert_eq!(
        without_live.compressed,
        [logs.join("access.log-20221118.log.gz")]
    );
}

/// Java writes no upload metadata of its own for these files: a task lists them in
/// `s3UploaderAdditionalFiles`, and that record's directory and glob find the segments.
#[test]
fn the_upload_record_of_an_additional_file_finds_its_segments() {
    use singularity_common::task_logs::{LogPhase, UploadDefaults, upload_plan};

    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).expect("logs");
    let config = ExecutorConfig {
        logrotate_additional_files: vec![entry("logs/access.log")],
        ..ExecutorConfig::default()
    };
    let data: singularity_common::records::SingularityTaskExecutorData = serde_json::from_str(
        r#"{"cmd":"./serve","defaultS3Bucket":"task-logs",
            "s3UploaderAdditionalFiles":[{"filename":"access.log","directory":"logs"}]}"#,
    )
    .expect("data");
    let settings = LogSettings::new(&config, &data, dir.path()).expect("settings");
    let mut extras =
        AdditionalLogs::for_task(&settings, &config, &data, local("2022-11-18 12:00:00"))
            .expect("entries");
    for round in 0..3 {
        fs::write(logs.join("access.log"), expected(1000 + round)).expect("write");
        assert_eq!(extras.finish(local("2022-11-18 12:30:00")).rotated.len(), 1);
    }

    let task_id = "myreq-dep1-1668780000000-1-host_a-rack1"
        .parse()
        .expect("task id");
    let plan = upload_plan(
        &task_id,
        dir.path(),
        &data,
        &UploadDefaults::default(),
        LogPhase::Start,
    );
    let record = &plan
        .uploads
        .iter()
        .find(|upload| upload.hint == "file1")
        .expect("the additional file's record")
        .metadata;
    assert_eq!(Path::new(&record.directory), logs);
    let glob = glob::Pattern::new(&record.file_glob).expect("glob");
    let compressed: Vec<String> = names_in(&logs)
        .into_iter()
        .filter(|name| name.ends_with(".gz"))
        .collect();
    assert_eq!(compressed.len(), 3, "{compressed:?}");
    for name in &compressed {
        assert!(
            glob.matches(name),
            "{} does not match {name}",
            record.file_glob
        );
    }
    assert!(!glob.matches("access.log"), "the live file is not uploaded");
}

#[test]
fn a_spawned_driver_ticks_until_finished_then_rotates_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("app.log");
    let mut sized = entry("app.log");
    sized.logrotate_size_override = Some("8k".to_owned());
    let running = AdditionalLogs::new(normalise(dir.path(), &[sized]), Local::now(), no_sink)
        .spawn(Duration::from_millis(10))
        .expect("thread");
    let written = expected(5000); // 45,000 bytes
    fs::write(&live, &written).expect("write");

    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::metadata(&live).expect("live").len() >= 8192 {
        assert!(Instant::now() < deadline, "no rotation within 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (last, extras) = running.finish().expect("finished");
    assert_eq!(last.rotated.len(), 1, "{last:?}");
    assert_eq!(extras.fallbacks(), 0);
    assert_eq!(fs::metadata(&live).expect("live").len(), 0);
    let final_segment = &last.rotated[0].segment;
    let earlier: Vec<PathBuf> = fs::read_dir(dir.path())
        .expect("dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path != &live && path != final_segment)
        .collect();
    assert_eq!(earlier.len(), 1, "one rotation while running: {earlier:?}");
    let mut all = fs::read(&earlier[0]).expect("segment");
    all.extend(fs::read(final_segment).expect("segment"));
    assert_eq!(all, written);
}

#[test]
fn a_rotation_that_finds_the_disk_full_leaves_the_file_whole() {
    let mounted = Mounted::tmpfs_sized("1m");
    let live = mounted.path().join("big.log");
    let written = expected(80_000); // 720,000 bytes: no room for a copy
    fs::write(&live, &written).expect("write");
    let mut sized = entry("big.log");
    sized.logrotate_size_override = Some("64k".to_owned());
    let mut extras =
        AdditionalLogs::new(normalise(mounted.path(), &[sized]), Local::now(), no_sink);

    let report = extras.tick(Local::now());
    assert!(report.rotated.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let message = report.failed[0].to_string();
    assert!(
        message.starts_with(&format!("rotating {}: copy to segment: ", live.display())),
        "{message}"
    );
    assert_eq!(
        fs::read(&live).expect("live"),
        written,
        "the live file keeps every byte"
    );
    assert_eq!(
        names_in(mounted.path()),
        ["big.log"],
        "no partial segment left"
    );
}

#[test]
fn a_symlink_out_of_the_task_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let task = dir.path().join("task");
    let host = dir.path().join("host");
    fs::create_dir_all(&task).expect("task");
    fs::create_dir_all(&host).expect("host");
    let precious = expected(2000);
    fs::write(host.join("system.log"), &precious).expect("write");
    fs::write(host.join("secret"), &precious).expect("write");
    // The task links a directory, and a file, of the host into its sandbox.
    std::os::unix::fs::symlink(&host, task.join("logs")).expect("dir link");
    std::os::unix::fs::symlink(host.join("secret"), task.join("secret.log")).expect("file link");
    fs::write(host.join("system.log-20221118.log"), "a host segment\n").expect("write");
    let mut doomed = entry("logs/*.log");
    doomed.delete_in_executor_cleanup = true;
    let mut extras = AdditionalLogs::new(
        normalise(&task, &[doomed, entry("secret.log")]),
        Local::now(),
        no_sink,
    );
    assert!(extras.files_to_delete_in_cleanup().is_empty());
    let recovered = extras.recover(&Compression::default());
    assert!(recovered.compressed.is_empty(), "{recovered:?}");

    let report = extras.finish(Local::now());
    assert!(report.rotated.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let message = report.failed[0].to_string();
    assert!(
        message.contains("check it is inside the task directory")
            && message.contains(&host.join("system.log").display().to_string()),
        "{message}"
    );
    assert_eq!(
        fs::read(host.join("system.log")).expect("host file"),
        precious
    );
    assert_eq!(fs::read(host.join("secret")).expect("host file"), precious);
    assert_eq!(
        names_in(&host),
        ["secret", "system.log", "system.log-20221118.log"]
    );
}
