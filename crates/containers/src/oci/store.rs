//! The image store: images unpacked once into a root filesystem under a configured
//! directory, by image id (the digest of the image configuration), shared read-only by
//! every container of the image, and evicted least recently used first beyond a size.
//!
//! Layout: `<dir>/images/<hex id>/{rootfs/, image.json, complete}`; an image is unpacked into
//! `<dir>/tmp/` and renamed into place whole, so a reader never sees half an image and two
//! executors importing the same image at once both end up using one copy. `complete`'s
//! modification time records the last use.
//!
//! Every task has an executor of its own, so eviction cannot rely on one process knowing
//! every image in use: it spares the images named by the caller, those a container's bundle
//! (`<dir>/bundles/*/config.json`, removed when the container ends) has as its root, and those
//! used within [`RECENT_USE`] (an executor between taking an image and writing its bundle).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::OciError;
use singularity_artifacts::ExtractLimits;

use super::layers::{ImageBudget, apply_layer};

/// The parts of an image configuration a container is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env` (`NAME=value`).
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User` (`name`, `uid`, `uid:gid`, `name:group`).
    pub user: Option<String>,
}

impl ImageConfig {
    /// The `config` object of an image configuration document.
    pub fn from_document(document: &Value) -> Self {
        let config = &document["config"];
        let strings = |key: &str| -> Vec<String> {
            config[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let text = |key: &str| {
            config[key]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Self {
            entrypoint: strings("Entrypoint"),
            cmd: strings("Cmd"),
            env: strings("Env"),
            working_dir: text("WorkingDir"),
            user: text("User"),
        }
    }
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    /// `sha256:<hex>`.
    pub id: String,
    /// Its root filesystem.
    pub rootfs: PathBuf,
    /// Its configuration.
    pub config: ImageConfig,
}

/// Images unpacked under one directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    limits: ExtractLimits,
    recent_use: Duration,
}

/// How long after its last use an image is kept whatever the store's size.
pub const RECENT_USE: Duration = Duration::from_secs(600);

const IMAGES: &str = "images";
const TMP: &str = "tmp";
const COMPLETE: &str = "complete";
const IMAGE_JSON: &str = "image.json";
const ROOTFS: &str = "rootfs";
const BUNDLES: &str = "bundles";

impl ImageStore {
    /// A store at `dir` (created on first import), each image bounded by the artifact
    /// extraction's default limits.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            limits: ExtractLimits::default(),
            recent_use: RECENT_USE,
        }
    }

    /// The same store keeping images used within `recent_use` (default [`RECENT_USE`]).
    pub fn with_recent_use(self, recent_use: Duration) -> Self {
        Self { recent_use, ..self }
    }

    /// The same store with `limits` on what one image's layers may write.
    pub fn with_limits(self, limits: ExtractLimits) -> Self {
        Self { limits, ..self }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn image_dir(&self, id: &str) -> PathBuf {
        self.dir
            .join(IMAGES)
            .join(id.strip_prefix("sha256:").unwrap_or(id))
    }

    /// The image `id` if the store has it (its last use is recorded).
    pub fn get(&self, id: &str) -> Result<Option<StoredImage>, OciError> {
        let dir = self.image_dir(id);
        let marker = dir.join(COMPLETE);
        match File::options().append(true).open(&marker) {
            Ok(file) => {
                let _ = file.set_modified(SystemTime::now());
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(OciError::store("open", &marker, source)),
        }
        let path = dir.join(IMAGE_JSON);
        let bytes = fs::read(&path).map_err(|source| OciError::store("read", &path, source))?;
        let document: Value =
            serde_json::from_slice(&bytes).map_err(|source| OciError::BadImage {
                image: id.to_owned(),
                reason: format!("{}: {source}", path.display()),
            })?;
        Ok(Some(StoredImage {
            id: id.to_owned(),
            rootfs: dir.join(ROOTFS),
            config: ImageConfig::from_document(&document),
        }))
    }

    /// Unpacks the `docker save` tarball at `tarball` unless the store has its image.
    pub fn import_archive(&self, tarball: &Path) -> Result<StoredImage, OciError> {
        let manifest =
            read_member(tarball, "manifest.json")?.ok_or_else(|| OciError::BadArchive {
                path: tarball.to_owned(),
                reason: "no manifest.json".to_owned(),
            })?;
        let manifest: Value =
            serde_json::from_slice(&manifest).map_err(|source| OciError::BadArchive {
                path: tarball.to_owned(),
                reason: format!("manifest.json: {source}"),
            })?;
        let first = &manifest[0];
        let config_name = first["Config"]
            .as_str()
            .ok_or_else(|| OciError::BadArchive {
                path: tarball.to_owned(),
                reason: "manifest.json names no Config".to_owned(),
            })?;
        let config = read_member(tarball, config_name)?.ok_or_else(|| OciError::BadArchive {
            path: tarball.to_owned(),
            reason: format!("{config_name} is missing"),
        })?;
        let id = format!("sha256:{}", sha256_hex(&config));
        if let Some(image) = self.get(&id)? {
            return Ok(image);
        }
        let layers: Vec<String> = first["Layers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        self.unpack(&id, &config, |rootfs, budget| {
            for layer in &layers {
                let found = with_member(tarball, layer, |reader| {
                    apply_layer(reader, rootfs, layer, budget).map(drop)
                })?;
                if found.is_none() {
                    return Err(OciError::BadArchive {
                        path: tarball.to_owned(),
                        reason: format!("layer {layer} is missing"),
                    });
                }
            }
            Ok(())
        })
    }

    /// Unpacks an image whose configuration document is `config` by `apply` (which writes
    /// the layers into the root it is given, within the image's budget), then moves it into
    /// place.
    pub fn unpack(
        &self,
        id: &str,
        config: &[u8],
        apply: impl FnOnce(&Path, &mut ImageBudget) -> Result<(), OciError>,
    ) -> Result<StoredImage, OciError> {
        let tmp_root = self.dir.join(TMP);
        let images = self.dir.join(IMAGES);
        for dir in [&tmp_root, &images] {
            fs::create_dir_all(dir).map_err(|source| OciError::store("create", dir, source))?;
        }
        let staging = tempfile::Builder::new()
            .prefix("unpack-")
            .tempdir_in(&tmp_root)
            .map_err(|source| OciError::store("create a directory in", &tmp_root, source))?;
        let rootfs = staging.path().join(ROOTFS);
        fs::create_dir(&rootfs).map_err(|source| OciError::store("create", &rootfs, source))?;
        fs::set_permissions(&rootfs, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|source| OciError::store("set the mode of", &rootfs, source))?;
        apply(&rootfs, &mut ImageBudget::new(self.limits))?;
        let json = staging.path().join(IMAGE_JSON);
        fs::write(&json, config).map_err(|source| OciError::store("write", &json, source))?;
        let marker = staging.path().join(COMPLETE);
        fs::write(&marker, b"").map_err(|source| OciError::store("write", &marker, source))?;
        let target = self.image_dir(id);
        let staged = staging.keep();
        if let Err(error) = fs::rename(&staged, &target) {
            // Another executor placed the same image first: use it.
            let _ = fs::remove_dir_all(&staged);
            if !target.join(COMPLETE).exists() {
                return Err(OciError::store("move into place", &target, error));
            }
        }
        self.get(id)?.ok_or_else(|| OciError::BadImage {
            image: id.to_owned(),
            reason: "vanished after unpacking".to_owned(),
        })
    }

    /// Removes least recently used images, never one in `in_use`, one a bundle runs from, or
    /// one used within the recent-use time, until the store holds at most `max_bytes`;
    /// returns the ids removed.
    pub fn evict(&self, max_bytes: u64, in_use: &[String]) -> Result<Vec<String>, OciError> {
        let mut spared: HashSet<String> = in_use.iter().cloned().collect();
        spared.extend(self.bundle_images());
        let recent = SystemTime::now()
            .checked_sub(self.recent_use)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let images = self.dir.join(IMAGES);
        let listing = match fs::read_dir(&images) {
            Ok(listing) => listing,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(OciError::store("list", &images, source)),
        };
        let mut entries = Vec::new();
        let mut total = 0;
        for entry in listing {
            let entry = entry.map_err(|source| OciError::store("list", &images, source))?;
            let path = entry.path();
            let used = fs::metadata(path.join(COMPLETE))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let size = disk_usage(&path);
            total += size;
            let id = format!("sha256:{}", entry.file_name().to_string_lossy());
            entries.push((used, size, id, path));
        }
        entries.sort();
        let mut removed = Vec::new();
        for (used, size, id, path) in entries {
            if total <= max_bytes {
                break;
            }
            if spared.contains(&id) || used > recent {
                continue;
            }
            // The marker goes first, so the image is no longer found while it is removed.
            let _ = fs::remove_file(path.join(COMPLETE));
            fs::remove_dir_all(&path).map_err(|source| OciError::store("remove", &path, source))?;
            total = total.saturating_sub(size);
            removed.push(id);
        }
        Ok(removed)
    }
}

impl ImageStore {
    /// The ids of the images the bundles under the store have as their root.
    fn bundle_images(&self) -> Vec<String> {
        let Ok(listing) = fs::read_dir(self.dir.join(BUNDLES)) else {
            return Vec::new();
        };
        let mut ids = Vec::new();
        for entry in listing.flatten() {
            let Ok(text) = fs::read(entry.path().join("config.json")) else {
                continue;
            };
            let Ok(config) = serde_json::from_slice::<Value>(&text) else {
                continue;
            };
            // `<dir>/images/<hex>/rootfs`
            let root = Path::new(config["root"]["path"].as_str().unwrap_or_default());
            let image_dir = root.parent();
            let in_images = image_dir
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .is_some_and(|name| name == IMAGES);
            if let (true, Some(hex)) = (in_images, image_dir.and_then(Path::file_name)) {
                ids.push(format!("sha256:{}", hex.to_string_lossy()));
            }
        }
        ids
    }
}

/// Bytes used by the files under `path` (symlinks not followed; hard links counted once
/// per name, an over-estimate on purpose).
fn disk_usage(path: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(listing) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in listing.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Runs `read` on the member `name` of the tar at `tarball`; `None` when it has no such member.
fn with_member<T>(
    tarball: &Path,
    name: &str,
    read: impl FnOnce(&mut dyn Read) -> Result<T, OciError>,
) -> Result<Option<T>, OciError> {
    let file = File::open(tarball).map_err(|source| OciError::store("open", tarball, source))?;
    let mut archive = tar::Archive::new(file);
    let entries = archive
        .entries()
        .map_err(|source| OciError::store("read", tarball, source))?;
    let wanted = name.trim_start_matches("./");
    for entry in entries {
        let mut entry = entry.map_err(|source| OciError::store("read", tarball, source))?;
        let path = entry.path_bytes();
        let path = String::from_utf8_lossy(&path);
        if path.trim_start_matches("./") == wanted {
            return read(&mut entry).map(Some);
        }
    }
    Ok(None)
}

fn read_member(tarball: &Path, name: &str) -> Result<Option<Vec<u8>>, OciError> {
    with_member(tarball, name, |reader| {
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|source| OciError::store("read", tarball, source))?;
        Ok(bytes)
    })
}
