//! The Debian package: built by `deploy/deb/build.sh` from the debug daemons, installed with
//! `dpkg --root` into a throwaway root, each binary's `--help` and `--check-config` against
//! the installed example configurations, `systemd-analyze verify` on the installed units, and
//! an upgrade that keeps an operator's edit of a conffile.
//!
//! The example configurations name absolute directories (`/var/lib/singularity/...`) that the
//! package creates; `--check-config` resolves them on this machine, so it reads copies with
//! those prefixes moved under the throwaway root. The units are verified the same way: copies
//! whose `/usr/bin` commands point into the root, against this machine's systemd units (a
//! root without systemd's own targets cannot be verified with `--root`).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::{DAEMONS, binary, workspace, write};

fn run(command: &mut Command) -> Output {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn dpkg_install(root: &Path, deb: &Path) {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        // No libc6 in the dpkg database of an empty root; scripts run here, with DPKG_ROOT;
        // without a terminal, --force-confold gives dpkg's interactive default (keep the
        // operator's conffile).
        .args([
            "--force-depends",
            "--force-not-root",
            "--force-script-chrootless",
            "--force-confold",
            "-i",
        ])
        .arg(deb));
}

#[test]
fn the_deb_installs_into_a_throwaway_root_and_its_binaries_configs_and_units_check_out() {
    for daemon in DAEMONS {
        binary(daemon);
    }
    let work = tempfile::Builder::new()
        .prefix("se-test-deb-")
        .tempdir()
        .expect("temp dir");
    let out = run(Command::new(workspace().join("deploy/deb/build.sh"))
        .args(["--profile", "debug", "--no-build", "--out"])
        .arg(work.path().join("out")));
    let deb = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("the .deb path")
        .to_owned();
    let deb = workspace().join(deb);

    let root = work.path().join("root");
    for dir in ["var/lib/dpkg/updates", "var/lib/dpkg/info"] {
        std::fs::create_dir_all(root.join(dir)).expect("dpkg database");
    }
    write(&root.join("var/lib/dpkg/status"), "");
    dpkg_install(&root, &deb);
    let status = run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["-s", "singularity-agent"]));
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("Status: install ok installed"), "{status}");
    for class in [
        "base",
        "executor",
        "executor.cleanup",
        "s3base",
        "s3uploader",
        "s3downloader",
    ] {
        assert!(
            status.contains(&format!(" /etc/singularity.{class}.yaml ")),
            "{class} is a conffile: {status}"
        );
        assert!(root.join(format!("etc/singularity.{class}.yaml")).is_file());
    }
    assert!(
        status.contains(" /etc/cron.d/singularity-executor-cleanup "),
        "{status}"
    );

    // The examples, with the package's directories found under the root.
    let etc = work.path().join("etc");
    std::fs::create_dir_all(&etc).expect("etc copy");
    for entry in std::fs::read_dir(root.join("etc")).expect("installed etc") {
        let path = entry.expect("entry").path();
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("example config");
        let moved = text
            .replace(
                "/var/lib/singularity",
                &format!("{}/var/lib/singularity", root.display()),
            )
            .replace(
                "/var/log/singularity",
                &format!("{}/var/log/singularity", root.display()),
            );
        write(&etc.join(path.file_name().expect("name")), &moved);
    }
    for daemon in DAEMONS {
        let installed = root.join("usr/bin").join(daemon);
        let help = run(Command::new(&installed).arg("--help"));
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("--check-config"),
            "{daemon} --help"
        );
        run(Command::new(&installed)
            .arg("--config-dir")
            .arg(&etc)
            .arg("--check-config")
            .env_remove("SINGULARITY_CONFIG_DIR"));
    }

    let units_dir = root.join("lib/systemd/system");
    let units = work.path().join("units");
    std::fs::create_dir_all(&units).expect("units copy");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&units_dir).expect("installed units") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_owned();
        let text = std::fs::read_to_string(&path).expect("unit");
        if path.extension().is_some_and(|e| e == "service") {
            assert!(text.contains("/usr/bin/singularity-"), "{}", path.display());
        }
        let text = text.replace(
            "/usr/bin/singularity-",
            &format!("{}/usr/bin/singularity-", root.display()),
        );
        write(&units.join(&name), &text);
        names.push(units.join(name));
    }
    names.sort();
    let expected = [
        "singularity-executor-cleanup.service",
        "singularity-executor-cleanup.timer",
        "singularity-s3-downloader.service",
        "singularity-s3-uploader.service",
    ];
    assert_eq!(
        names
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        expected
    );
    let verify = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&names));
    assert!(
        verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // An upgrade whose example changed keeps the operator's edit and sets the new one beside.
    let edited = root.join("etc/singularity.s3uploader.yaml");
    let mut text = std::fs::read_to_string(&edited).expect("conffile");
    text.push_str("# edited by the operator\n");
    write(&edited, &text);
    let unpacked = work.path().join("unpacked");
    run(Command::new("dpkg-deb").arg("-R").arg(&deb).arg(&unpacked));
    let control = unpacked.join("DEBIAN/control");
    let fields = std::fs::read_to_string(&control).expect("control");
    let version = fields
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .expect("a version")
        .to_owned();
    write(
        &control,
        &fields.replace(
            &format!("Version: {version}"),
            &format!("Version: {version}+1"),
        ),
    );
    let example = unpacked.join("etc/singularity.s3uploader.yaml");
    let mut new_example = std::fs::read_to_string(&example).expect("example");
    new_example.push_str("# changed in the next version\n");
    write(&example, &new_example);
    let upgrade = work.path().join("upgrade.deb");
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-z1", "--build"])
        .arg(&unpacked)
        .arg(&upgrade));
    std::fs::remove_dir_all(&unpacked).expect("remove the unpacked package");
    dpkg_install(&root, &upgrade);
    let status = run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["-s", "singularity-agent"]));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains(&format!("Version: {version}+1")),
        "upgraded"
    );
    assert_eq!(std::fs::read_to_string(&edited).expect("conffile"), text);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/singularity.s3uploader.yaml.dpkg-dist"))
            .expect("the new example beside it"),
        new_example
    );
}
