//! Property test of tar extraction: random archives mixing files, directories, symlinks and
//! hard links with names that climb out (`..`), start at `/`, or point outside, never write
//! outside the target, and a refused archive leaves the target as it was. Bounded case
//! counts; `PROPTEST_CASES=N` runs more.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::Path;

use proptest::prelude::*;
use singularity_artifacts::{ExtractLimits, extract_tar_gz};
use tar::{EntryType, Header};

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    config.failure_persistence = None;
    config
}

#[derive(Debug, Clone)]
enum Entry {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, String),
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => "[a-c]{1,2}",
            1 => Just("..".to_owned()),
            1 => Just(".".to_owned()),
            1 => Just("".to_owned()),
        ],
        1..4,
    )
    .prop_flat_map(|parts| {
        let joined = parts.join("/");
        prop_oneof![
            4 => Just(joined.clone()),
            1 => Just(format!("/{joined}")),
            1 => Just(format!("{joined}/")),
        ]
    })
}

fn link_target() -> impl Strategy<Value = String> {
    prop_oneof![
        name(),
        Just("../outside/secret".to_owned()),
        Just("/etc/passwd".to_owned()),
        Just("../../..".to_owned()),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        3 => (name(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(n, d)| Entry::File(n, d)),
        1 => name().prop_map(Entry::Dir),
        2 => (name(), link_target()).prop_map(|(n, t)| Entry::Symlink(n, t)),
        1 => (name(), link_target()).prop_map(|(n, t)| Entry::Hardlink(n, t)),
    ]
}

/// A `.tar.gz` of `entries`, names written as raw bytes (a careful writer would refuse them).
fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let (kind, path, link, data): (EntryType, &str, Option<&str>, &[u8]) = match entry {
            Entry::File(p, d) => (EntryType::Regular, p, None, d),
            Entry::Dir(p) => (EntryType::Directory, p, None, &[]),
            Entry::Symlink(p, t) => (EntryType::Symlink, p, Some(t), &[]),
            Entry::Hardlink(p, t) => (EntryType::Link, p, Some(t), &[]),
        };
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        let slot = &mut header.as_old_mut().name;
        let n = path.len().min(slot.len() - 1);
        slot[..n].copy_from_slice(&path.as_bytes()[..n]);
        if let Some(link) = link {
            let slot = &mut header.as_old_mut().linkname;
            let n = link.len().min(slot.len() - 1);
            slot[..n].copy_from_slice(&link.as_bytes()[..n]);
        }
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// Every path below `root` with its kind and content, sorted.
fn snapshot(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else if meta.file_type().is_symlink() {
                format!("link {:?}", std::fs::read_link(&path).unwrap())
            } else {
                format!("file {:?}", std::fs::read(&path).unwrap())
            };
            out.push((path.strip_prefix(root).unwrap().display().to_string(), what));
        }
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_archives_never_write_outside_the_target(
        entries in prop::collection::vec(entry(), 1..10),
    ) {
        let sandbox = tempfile::tempdir().unwrap();
        let target = sandbox.path().join("target");
        let outside = sandbox.path().join("outside");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"secret").unwrap();
        std::fs::write(target.join("existing"), b"kept").unwrap();
        let path = sandbox.path().join("a.tar.gz");
        std::fs::write(&path, archive(&entries)).unwrap();
        let before_target = snapshot(&target);
        let before_outside = snapshot(&outside);

        let result = extract_tar_gz(&path, &target, &ExtractLimits::default());

        prop_assert_eq!(snapshot(&outside), before_outside);
        let mut names: Vec<String> = std::fs::read_dir(sandbox.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        prop_assert_eq!(names, ["a.tar.gz", "outside", "target"]);
        if result.is_err() {
            prop_assert_eq!(snapshot(&target), before_target, "a refused archive left changes");
        }
        // Whatever was extracted resolves inside the target.
        let root = target.canonicalize().unwrap();
        for (relative, _) in snapshot(&target) {
            if let Ok(resolved) = target.join(&relative).canonicalize() {
                prop_assert!(resolved.starts_with(&root), "{} resolves to {}", relative, resolved.display());
            }
        }
    }
}
