//! Applies image layers (tar streams, plain or gzip) onto a root filesystem, as image
//! layers mean them: ownership and set-id bits kept, later layers replacing earlier entries,
//! whiteouts (`.wh.NAME` removes NAME, `.wh..wh..opq` empties its directory of what lower
//! layers put there), hard links within the root.
//!
//! Entry names follow the artifact extraction's rule
//! ([`relative_entry_path`]: no absolute names, no `..`), and an image is bounded by its
//! limits ([`ExtractLimits`]: bytes actually written, entries), counted across all its layers.
//! Every path is resolved inside the root like a chroot would: symlinks met on the way
//! (absolute or relative) never lead out of it, and files are created without following a
//! final symlink. Device nodes are skipped (containers get their own `/dev`).

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::read::MultiGzDecoder;
use singularity_artifacts::{ExtractLimits, relative_entry_path};
use tar::EntryType;

use super::OciError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// Symlinks followed while resolving one path; the kernel gives up at 40 too.
const MAX_LINK_HOPS: u32 = 40;

/// What applying a layer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerSummary {
    /// Entries read.
    pub entries: u64,
    /// Whiteouts applied.
    pub whiteouts: u64,
    /// Device nodes and other entries skipped.
    pub skipped: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// What the layers of one image may still write.
#[derive(Debug, Clone)]
pub struct ImageBudget {
    limits: ExtractLimits,
    bytes: u64,
    entries: u64,
}

impl ImageBudget {
    /// A budget of `limits` for one image.
    pub fn new(limits: ExtractLimits) -> Self {
        Self {
            limits,
            bytes: 0,
            entries: 0,
        }
    }

    fn entry(&mut self, layer: &str) -> Result<(), OciError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(OciError::ImageTooLarge {
                layer: layer.to_owned(),
                limit: format!("{} entries", self.limits.max_entries),
            });
        }
        Ok(())
    }

    /// Copies `entry` into `file`, failing once the image has written more than its limit.
    fn copy(
        &mut self,
        layer: &str,
        entry: impl Read,
        file: &mut fs::File,
    ) -> Result<u64, OciError> {
        let left = self.limits.max_total_bytes.saturating_sub(self.bytes);
        // One byte past the limit shows the entry is too large, whatever its header says.
        let written = io::copy(&mut entry.take(left.saturating_add(1)), file)
            .map_err(|source| OciError::layer(layer, "write", source))?;
        self.bytes += written;
        if written > left {
            return Err(OciError::ImageTooLarge {
                layer: layer.to_owned(),
                limit: format!("{} bytes", self.limits.max_total_bytes),
            });
        }
        Ok(written)
    }
}

/// Applies the layer read from `reader` (gzip-compressed or not) onto `rootfs`, within
/// `budget`.
pub fn apply_layer(
    reader: impl Read,
    rootfs: &Path,
    layer: &str,
    budget: &mut ImageBudget,
) -> Result<LayerSummary, OciError> {
    let mut buffered = BufReader::new(reader);
    let gzip = buffered
        .fill_buf()
        .map_err(|source| OciError::layer(layer, "read", source))?
        .starts_with(&[0x1f, 0x8b]);
    if gzip {
        apply(MultiGzDecoder::new(buffered), rootfs, layer, budget)
    } else {
        apply(buffered, rootfs, layer, budget)
    }
}

fn apply(
    reader: impl Read,
    rootfs: &Path,
    layer: &str,
    budget: &mut ImageBudget,
) -> Result<LayerSummary, OciError> {
    let mut archive = tar::Archive::new(reader);
    let mut summary = LayerSummary::default();
    // Entries of this layer: an opaque whiteout only hides what lower layers made.
    let mut made: HashSet<PathBuf> = HashSet::new();
    let entries = archive
        .entries()
        .map_err(|source| OciError::layer(layer, "read", source))?;
    for entry in entries {
        let mut entry = entry.map_err(|source| OciError::layer(layer, "read", source))?;
        summary.entries += 1;
        budget.entry(layer)?;
        let raw = entry.path_bytes().into_owned();
        let rel = relative_entry_path(&raw).map_err(|reason| OciError::UnsafeLayerEntry {
            layer: layer.to_owned(),
            entry: String::from_utf8_lossy(&raw).into_owned(),
            reason,
        })?;
        let Some(name) = rel.file_name().map(OsStr::to_owned) else {
            continue; // the root itself
        };
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        let parent = resolve_dir(rootfs, parent_rel, true)
            .map_err(|source| OciError::layer(layer, "create parent of", source))?;
        let name_bytes = name.as_bytes();
        if name_bytes == OPAQUE_WHITEOUT.as_bytes() {
            summary.whiteouts += 1;
            for child in fs::read_dir(&parent).map_err(|s| OciError::layer(layer, "list", s))? {
                let child = child.map_err(|s| OciError::layer(layer, "list", s))?;
                if !made.contains(&parent_rel.join(child.file_name())) {
                    remove(&child.path()).map_err(|s| OciError::layer(layer, "whiteout", s))?;
                }
            }
            continue;
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            summary.whiteouts += 1;
            let hidden = parent.join(OsStr::from_bytes(hidden));
            remove(&hidden).map_err(|s| OciError::layer(layer, "whiteout", s))?;
            continue;
        }
        let target = parent.join(&name);
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let uid = header
            .uid()
            .ok()
            .and_then(|u| u32::try_from(u).ok())
            .unwrap_or(0);
        let gid = header
            .gid()
            .ok()
            .and_then(|g| u32::try_from(g).ok())
            .unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0);
        let kind = header.entry_type();
        let fail = |what: &'static str| move |source| OciError::layer(layer, what, source);
        match kind {
            EntryType::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        remove(&target).map_err(fail("replace"))?;
                        fs::create_dir(&target).map_err(fail("create directory"))?;
                    }
                    Err(_) => fs::create_dir(&target).map_err(fail("create directory"))?,
                }
                own(&target, uid, gid, mode).map_err(fail("set owner of"))?;
            }
            EntryType::Regular | EntryType::Continuous => {
                clear(&target).map_err(fail("replace"))?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&target)
                    .map_err(fail("create"))?;
                summary.bytes += budget.copy(layer, &mut entry, &mut file)?;
                let _ = file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
                drop(file);
                own(&target, uid, gid, mode).map_err(fail("set owner of"))?;
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .map(|b| PathBuf::from(OsStr::from_bytes(&b)))
                    .unwrap_or_default();
                clear(&target).map_err(fail("replace"))?;
                std::os::unix::fs::symlink(&link, &target).map_err(fail("create symlink"))?;
                std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                    .map_err(fail("set owner of"))?;
            }
            EntryType::Link => {
                let raw_link = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                let link_rel = relative_entry_path(&raw_link).map_err(|reason| {
                    OciError::UnsafeLayerEntry {
                        layer: layer.to_owned(),
                        entry: String::from_utf8_lossy(&raw_link).into_owned(),
                        reason,
                    }
                })?;
                let link_parent =
                    resolve_dir(rootfs, link_rel.parent().unwrap_or(Path::new("")), false)
                        .map_err(fail("resolve hard link"))?;
                let source = link_parent.join(link_rel.file_name().unwrap_or_default());
                clear(&target).map_err(fail("replace"))?;
                // linkat without AT_SYMLINK_FOLLOW: a symlink is linked, never followed.
                fs::hard_link(&source, &target).map_err(fail("create hard link"))?;
            }
            _ => {
                summary.skipped += 1;
                continue;
            }
        }
        made.insert(rel);
    }
    Ok(summary)
}

/// The host path of the directory `rel` inside `root`, following symlinks as if `root` were
/// `/`; missing directories are created when `create` is set.
fn resolve_dir(root: &Path, rel: &Path, create: bool) -> io::Result<PathBuf> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: Vec<OsString> = rel
        .components()
        .rev()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut hops = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        if name == "." || name.is_empty() {
            continue;
        }
        let host = resolved
            .iter()
            .fold(root.to_path_buf(), |p, n| p.join(n))
            .join(&name);
        match fs::symlink_metadata(&host) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(io::Error::other(format!(
                        "too many symlinks resolving {}",
                        rel.display()
                    )));
                }
                let target = fs::read_link(&host)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for component in target.components().rev() {
                    match component {
                        Component::Normal(n) => pending.push(n.to_owned()),
                        Component::ParentDir => pending.push(OsString::from("..")),
                        _ => {}
                    }
                }
            }
            Ok(meta) if meta.is_dir() => resolved.push(name),
            Ok(_) => {
                if !create {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        host.display().to_string(),
                    ));
                }
                fs::remove_file(&host)?;
                fs::create_dir(&host)?;
                resolved.push(name);
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&host)?;
                fs::set_permissions(&host, fs::Permissions::from_mode(0o755))?;
                resolved.push(name);
            }
            Err(error) => return Err(error),
        }
    }
    Ok(resolved.iter().fold(root.to_path_buf(), |p, n| p.join(n)))
}

/// Removes whatever is at `path` (a directory with its content), never following a symlink.
fn remove(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// Makes room for a non-directory entry at `path`.
fn clear(path: &Path) -> io::Result<()> {
    remove(path)
}

fn own(path: &Path, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    // After chown, which clears set-id bits.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    fn budget() -> ImageBudget {
        ImageBudget::new(ExtractLimits::default())
    }

    fn layer(entries: &[(&str, EntryType, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(if *kind == EntryType::Directory {
                0o755
            } else {
                0o4755
            });
            header.set_uid(1234);
            header.set_gid(5678);
            match kind {
                EntryType::Symlink | EntryType::Link => {
                    header.set_size(0);
                    header.set_link_name(data).expect("link");
                    builder
                        .append_data(&mut header, path, io::empty())
                        .expect("append");
                }
                _ => {
                    header.set_size(data.len() as u64);
                    builder
                        .append_data(&mut header, path, data.as_bytes())
                        .expect("append");
                }
            }
        }
        builder.into_inner().expect("tar")
    }

    #[test]
    fn layers_stack_with_whiteouts_links_and_ownership() {
        let root = tempfile::tempdir().expect("dir");
        let rootfs = root.path();
        let lower = layer(&[
            ("bin/", EntryType::Directory, ""),
            ("bin/busybox", EntryType::Regular, "bb"),
            ("bin/sh", EntryType::Symlink, "/bin/busybox"),
            ("bin/ash", EntryType::Link, "bin/busybox"),
            ("etc/", EntryType::Directory, ""),
            ("etc/old", EntryType::Regular, "old"),
            ("opt/", EntryType::Directory, ""),
            ("opt/a", EntryType::Regular, "a"),
            ("lib", EntryType::Symlink, "usr/lib"),
            ("usr/lib/", EntryType::Directory, ""),
        ]);
        apply_layer(&lower[..], rootfs, "lower", &mut budget()).expect("lower");
        let upper = layer(&[
            ("etc/.wh.old", EntryType::Regular, ""),
            ("opt/.wh..wh..opq", EntryType::Regular, ""),
            ("opt/b", EntryType::Regular, "b"),
            ("lib/libc.so", EntryType::Regular, "libc"),
            ("bin/busybox", EntryType::Regular, "bb2"),
        ]);
        let summary = apply_layer(&upper[..], rootfs, "upper", &mut budget()).expect("upper");
        assert_eq!(summary.whiteouts, 2);
        assert!(!rootfs.join("etc/old").exists());
        assert!(rootfs.join("etc").is_dir());
        assert!(!rootfs.join("opt/a").exists());
        assert_eq!(fs::read_to_string(rootfs.join("opt/b")).expect("b"), "b");
        // Through the layer's own symlink, inside the root.
        assert_eq!(
            fs::read_to_string(rootfs.join("usr/lib/libc.so")).expect("libc"),
            "libc"
        );
        assert_eq!(
            fs::read_link(rootfs.join("bin/sh")).expect("link"),
            Path::new("/bin/busybox")
        );
        // The replaced file is a new inode; the hard link keeps the old content.
        assert_eq!(
            fs::read_to_string(rootfs.join("bin/busybox")).expect("bb"),
            "bb2"
        );
        assert_eq!(
            fs::read_to_string(rootfs.join("bin/ash")).expect("ash"),
            "bb"
        );
        let meta = fs::metadata(rootfs.join("bin/busybox")).expect("meta");
        assert_eq!(meta.mode() & 0o7777, 0o4755);
        if fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) == 0 {
            assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
        }
    }

    #[test]
    fn symlinks_never_lead_out_of_the_root() {
        let outside = tempfile::tempdir().expect("dir");
        let root = tempfile::tempdir().expect("dir");
        let escape = outside.path().display().to_string();
        let evil = layer(&[
            ("up", EntryType::Symlink, "../../../../../../.."),
            ("abs", EntryType::Symlink, &escape),
            ("up/tmp/x", EntryType::Regular, "x"),
            ("abs/y", EntryType::Regular, "y"),
        ]);
        apply_layer(&evil[..], root.path(), "evil", &mut budget())
            .expect("applied inside the root");
        assert_eq!(fs::read_dir(outside.path()).expect("list").count(), 0);
        assert_eq!(
            fs::read_to_string(root.path().join("tmp/x")).expect("x"),
            "x"
        );
        let inside = root.path().join(escape.trim_start_matches('/')).join("y");
        assert_eq!(fs::read_to_string(inside).expect("y"), "y");
        // tar's builder refuses `..`: write the name into the header directly.
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..4].copy_from_slice(b"../x");
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(1);
        header.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header, &b"x"[..]).expect("append");
        let dotdot = builder.into_inner().expect("tar");
        assert!(matches!(
            apply_layer(&dotdot[..], root.path(), "dotdot", &mut budget()),
            Err(OciError::UnsafeLayerEntry { .. })
        ));
    }

    #[test]
    fn gzip_layers_are_recognised() {
        let root = tempfile::tempdir().expect("dir");
        let plain = layer(&[("f", EntryType::Regular, "gz")]);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut encoder, &plain).expect("gzip");
        let gz = encoder.finish().expect("gzip");
        apply_layer(&gz[..], root.path(), "gz", &mut budget()).expect("applied");
        assert_eq!(fs::read_to_string(root.path().join("f")).expect("f"), "gz");
    }

    #[test]
    fn the_limits_hold_across_the_layers_of_an_image() {
        let root = tempfile::tempdir().expect("dir");
        let mut budget = ImageBudget::new(ExtractLimits {
            max_total_bytes: 10,
            max_entries: 3,
        });
        let first = layer(&[("a", EntryType::Regular, "123456")]);
        apply_layer(&first[..], root.path(), "first", &mut budget).expect("within");
        let second = layer(&[("b", EntryType::Regular, "123456")]);
        let error = apply_layer(&second[..], root.path(), "second", &mut budget)
            .expect_err("over the bytes")
            .to_string();
        assert_eq!(error, "layer second: the image exceeds 10 bytes");

        let mut budget = ImageBudget::new(ExtractLimits {
            max_total_bytes: 1 << 20,
            max_entries: 3,
        });
        let many = layer(&[
            ("d/", EntryType::Directory, ""),
            ("d/1", EntryType::Regular, ""),
            ("d/2", EntryType::Regular, ""),
            ("d/3", EntryType::Regular, ""),
        ]);
        let error = apply_layer(&many[..], root.path(), "many", &mut budget)
            .expect_err("over the entries")
            .to_string();
        assert_eq!(error, "layer many: the image exceeds 3 entries");
    }
}
