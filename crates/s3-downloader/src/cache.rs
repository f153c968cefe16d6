//! The artifact cache: a directory of `<md5>-<filename>` files (the names the Java artifact
//! manager used, see [`artifact_cache_name`](singularity_common::naming::artifact_cache_name))
//! plus a SQLite index of them, bounded in size by least-recently-used eviction.
//!
//! # What is trusted
//!
//! The index records, for each file, its size and mtime (ns) at the time it was indexed, and
//! its md5 once something has verified it (the download that wrote it, or the first hit that
//! asked for an md5). A later hit that asks for an md5 trusts the recorded one, without
//! reading the file, as long as the file's size and mtime still equal the recorded ones. Any
//! other change (a different size or mtime) forgets the recorded md5, and the next hit that
//! needs one hashes the file again. A file rewritten in place with the same size and the same
//! mtime is not noticed; only root can do that here, and the cache directory belongs to root.
//!
//! # Durability
//!
//! A download named by its md5 may enter the cache before its bytes are on disk
//! ([`ArtifactCache::insert_unsynced`]): while the process runs, readers see the page cache,
//! which holds exactly the verified bytes. Its md5 reaches the index only once the file has
//! been fsynced ([`ArtifactCache::mark_synced`]). After a power loss such a file may have
//! the right size and the wrong bytes, but its row (if it survived) has no md5, so the first
//! hit hashes it again and a damaged file is a miss, downloaded anew. Files the index does
//! not know are adopted without an md5 and checked the same way.
//!
//! # Leases and eviction
//!
//! Every entry handed out comes with a [`Lease`]; while any lease on an entry is alive the
//! entry is never evicted, so a file being extracted or copied cannot disappear underneath.
//! After each new entry, and whenever the last lease on an entry ends while the cache is over
//! its bound, unleased entries are removed, least recently used first, until the total size
//! is within `max_bytes`. An entry larger than the whole bound is still served: it stays while
//! it is leased and is evicted as soon as its last lease ends. Files in the directory being
//! read by another process (the executor's own fallback) keep their content when evicted: the
//! reader's open descriptor outlives the unlink.
//!
//! # Opening and reconciling
//!
//! [`ArtifactCache::open`] reconciles the index with the directory: index rows whose file is
//! gone are dropped; files the index does not know (written by the executor's in-process
//! fallback, or by a Java version) are adopted, with their mtime as last use; files whose size
//! or mtime changed lose their recorded md5; temp files this crate left behind (named
//! [`TEMP_PREFIX`]`*`) are removed. Other hidden files and `*.tmp` files (temp files of other
//! writers, possibly still being written) are neither adopted nor removed.
//!
//! The index lives in the cache directory itself ([`INDEX_FILE_NAME`]). One process at a
//! time may own a cache directory. Index writes after opening are applied in order by a
//! background task; they are a record for the next start, never in the way of a fetch (a
//! failed write is logged and corrected by the next reconcile).

use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use singularity_artifacts::cache_dir::{self, CacheFileError, CacheWriter};
use singularity_runtime::SqliteError;
use sqlx::SqlitePool;
use sqlx::migrate::Migrator;
use tokio::sync::{mpsc, oneshot};

/// The SQLite index, inside the cache directory. Its `-wal` and `-shm` companions sit next
/// to it.
pub const INDEX_FILE_NAME: &str = ".singularity-s3-downloader-index.db";

/// Prefix of this crate's temp files in the cache directory (downloads in progress). Left
/// over after a crash, they are removed by the next [`ArtifactCache::open`].
pub const TEMP_PREFIX: &str = CacheWriter::Downloader.temp_prefix();

static MIGRATOR: Migrator = sqlx::migrate!();

/// Why the cache could not be opened or used. Cloneable, so that every waiter on a shared
/// download can be given the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The cache directory does not exist or is not a directory.
    #[error("artifact cache directory {}: not a directory", path.display())]
    NotADirectory {
        /// The directory.
        path: PathBuf,
    },
    /// The SQLite index could not be opened or migrated.
    #[error("artifact cache index: {source}")]
    OpenIndex {
        /// Why (names the database file).
        source: Arc<SqliteError>,
    },
    /// A query on the index failed while opening.
    #[error("artifact cache index {}: {what}: {source}", path.display())]
    Index {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// Why.
        source: Arc<sqlx::Error>,
    },
    /// A file operation in the cache directory failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done (`stat`, `read`, `remove`...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: Arc<std::io::Error>,
    },
}

impl From<CacheFileError> for CacheError {
    fn from(error: CacheFileError) -> Self {
        Self::io(error.op, &error.path, error.source)
    }
}

impl CacheError {
    fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.to_owned(),
            source: Arc::new(source),
        }
    }
}

/// Size of the cache at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Number of entries.
    pub entries: u64,
    /// Total size of the entries, in bytes.
    pub bytes: u64,
    /// Entries currently leased (being read or placed).
    pub leased: u64,
    /// The configured bound.
    pub max_bytes: u64,
}

/// The artifact cache: a directory and its index. Cheap to clone (clones share the cache).
#[derive(Clone)]
pub struct ArtifactCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCache")
            .field("dir", &self.inner.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    writes: mpsc::UnboundedSender<IndexWrite>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    bytes: u64,
    /// Breaks ties between uses within the same millisecond.
    next_seq: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    size: u64,
    mtime_ns: i64,
    md5: Option<String>,
    created_ms: i64,
    last_used_ms: i64,
    seq: u64,
    hits: i64,
    leases: usize,
    /// The file's bytes are known to be on disk, so its md5 may be written to the index.
    synced: bool,
    /// Tells this file apart from a later one of the same name.
    generation: u64,
}

/// An index write, applied in order by the writer task.
#[derive(Debug)]
enum IndexWrite {
    Upsert(Row),
    /// Forget the entry of this file name.
    Delete {
        name: String,
    },
    Flush(oneshot::Sender<()>),
}

#[derive(Debug, Clone)]
struct Row {
    name: String,
    size: u64,
    mtime_ns: i64,
    md5: Option<String>,
    created_ms: i64,
    last_used_ms: i64,
    hits: i64,
}

impl Row {
    fn of(name: &str, entry: &Entry) -> Self {
        Self {
            name: name.to_owned(),
            size: entry.size,
            mtime_ns: entry.mtime_ns,
            // Trusted after a restart, so only once the bytes it describes are on disk.
            md5: if entry.synced {
                entry.md5.clone()
            } else {
                None
            },
            created_ms: entry.created_ms,
            last_used_ms: entry.last_used_ms,
            hits: entry.hits,
        }
    }
}

/// Pins one cache entry against eviction until dropped. Clones pin it too.
pub struct Lease {
    cache: Arc<Inner>,
    name: Arc<str>,
    size: u64,
}

impl Lease {
    /// The entry's file name in the cache directory.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The entry's path.
    pub fn path(&self) -> PathBuf {
        self.cache.dir.join(&*self.name)
    }

    /// The file's size when it was leased.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The content's md5 (lowercase hex), when it has been verified.
    pub fn md5(&self) -> Option<String> {
        let state = self.cache.lock();
        state.entries.get(&*self.name).and_then(|e| e.md5.clone())
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("name", &self.name)
            .field("size", &self.size)
            .finish()
    }
}

impl Clone for Lease {
    fn clone(&self) -> Self {
        let mut state = self.cache.lock();
        if let Some(entry) = state.entries.get_mut(&*self.name) {
            entry.leases += 1;
        }
        drop(state);
        Self {
            cache: Arc::clone(&self.cache),
            name: Arc::clone(&self.name),
            size: self.size,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.cache.lock();
        let last = match state.entries.get_mut(&*self.name) {
            Some(entry) => {
                entry.leases = entry.leases.saturating_sub(1);
                entry.leases == 0
            }
            None => false,
        };
        if last && state.bytes > self.cache.max_bytes {
            self.cache.evict(&mut state);
        }
    }
}

/// A cache entry whose bytes may not be on disk yet, from [`ArtifactCache::insert_unsynced`].
#[derive(Debug)]
#[must_use = "pass it to ArtifactCache::mark_synced once the file is fsynced"]
pub struct Unsynced {
    name: String,
    generation: u64,
}

/// What a lookup found on disk for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    size: u64,
    mtime_ns: i64,
}

impl FileStamp {
    fn of(meta: &Metadata) -> Self {
        Self {
            size: meta.len(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl ArtifactCache {
    /// Opens the cache in `dir` (which must exist), creating or migrating its index, and
    /// reconciles the index with the directory (see the module docs). Entries beyond
    /// `max_bytes` are evicted at once, least recently used first.
    ///
    /// Must be called inside a tokio runtime: index writes are applied by a task spawned here.
    pub async fn open(dir: &Path, max_bytes: u64) -> Result<Self, CacheError> {
        match tokio::fs::metadata(dir).await {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(CacheError::NotADirectory {
                    path: dir.to_owned(),
                });
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(CacheError::NotADirectory {
                    path: dir.to_owned(),
                });
            }
            Err(err) => return Err(CacheError::io("stat", dir, err)),
        }
        let db_path = dir.join(INDEX_FILE_NAME);
        let pool = singularity_runtime::open_sqlite(&db_path, &MIGRATOR)
            .await
            .map_err(|source| CacheError::OpenIndex {
                source: Arc::new(source),
            })?;
        let state = reconcile(dir, &db_path, &pool).await?;
        let (writes, queue) = mpsc::unbounded_channel();
        tokio::spawn(apply_writes(pool, db_path, queue));
        let cache = Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                max_bytes,
                state: Mutex::new(state),
                writes,
            }),
        };
        {
            let mut state = cache.inner.lock();
            if state.bytes > max_bytes {
                cache.inner.evict(&mut state);
            }
        }
        Ok(cache)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configured bound, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    /// Entries, bytes and leases right now.
    pub fn stats(&self) -> CacheStats {
        let state = self.inner.lock();
        CacheStats {
            entries: state.entries.len() as u64,
            bytes: state.bytes,
            leased: state.entries.values().filter(|e| e.leases > 0).count() as u64,
            max_bytes: self.inner.max_bytes,
        }
    }

    /// Names of the entries, least recently used first (the order eviction follows).
    pub fn entries_by_last_use(&self) -> Vec<String> {
        let state = self.inner.lock();
        let mut entries: Vec<(&String, &Entry)> = state.entries.iter().collect();
        entries.sort_by_key(|(_, e)| (e.last_used_ms, e.seq));
        entries.into_iter().map(|(name, _)| name.clone()).collect()
    }

    /// Waits until every index write issued so far has been applied.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.inner.writes.send(IndexWrite::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }

    /// Looks `name` up and leases it if it is a hit: the file exists, its size equals
    /// `expected_size` (when given) and its md5 equals `expected_md5` (when given, compared
    /// ignoring case). The md5 is taken from the index when the file's size and mtime are the
    /// indexed ones; otherwise the file is hashed once and the result recorded. A file the
    /// index does not know is adopted. A hit counts as a use (LRU order, hit count).
    pub async fn get(
        &self,
        name: &str,
        expected_size: Option<u64>,
        expected_md5: Option<&str>,
    ) -> Result<Option<Lease>, CacheError> {
        let path = self.inner.dir.join(name);
        // Leased before looking, so the file cannot be evicted while it is checked.
        let mut lease = self.inner.lease_existing(name);
        let meta = match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => return Ok(None),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                drop(lease);
                self.inner.forget(name);
                return Ok(None);
            }
            Err(err) => return Err(CacheError::io("stat", &path, err)),
        };
        let stamp = FileStamp::of(&meta);
        let mut known_md5 = match &lease {
            Some(_) => self.inner.refresh(name, stamp),
            None => None,
        };
        if expected_size.is_some_and(|size| size != stamp.size) {
            return Ok(None);
        }
        if let Some(expected) = expected_md5 {
            let md5 = match known_md5.take() {
                Some(md5) => md5,
                None => {
                    let hashed = hash_file(&path).await?;
                    // Recorded only if the file did not change while it was read.
                    let after = tokio::fs::metadata(&path)
                        .await
                        .map_err(|err| CacheError::io("stat", &path, err))?;
                    if FileStamp::of(&after) != stamp {
                        return Ok(None);
                    }
                    if lease.is_some() {
                        self.inner.record_md5(name, stamp, &hashed);
                    }
                    known_md5 = Some(hashed.clone());
                    hashed
                }
            };
            if !singularity_artifacts::md5_matches(expected, &md5) {
                return Ok(None);
            }
        }
        let mut lease = match lease.take() {
            Some(lease) => lease,
            None => self.inner.adopt(name, stamp, known_md5),
        };
        lease.size = stamp.size;
        self.inner.touch(name, true);
        Ok(Some(lease))
    }

    /// Indexes the file just renamed to `dir/name` (replacing any entry of that name), whose
    /// content is on disk and has md5 `md5` when known, leases it, then evicts other entries
    /// until the cache is within its bound.
    pub async fn insert(&self, name: &str, md5: Option<String>) -> Result<Lease, CacheError> {
        self.insert_entry(name, md5, true)
            .await
            .map(|(lease, _)| lease)
    }

    /// Like [`Self::insert`] for a file whose bytes may still be only in the page cache: the
    /// md5 is trusted in memory at once, but written to the index only when
    /// [`Self::mark_synced`] is given the returned token after an fsync (see the module docs).
    pub async fn insert_unsynced(
        &self,
        name: &str,
        md5: String,
    ) -> Result<(Lease, Unsynced), CacheError> {
        let (lease, generation) = self.insert_entry(name, Some(md5), false).await?;
        let unsynced = Unsynced {
            name: name.to_owned(),
            generation,
        };
        Ok((lease, unsynced))
    }

    /// Records that the file of an [`Self::insert_unsynced`] entry is on disk, so that its md5
    /// is kept across restarts. Nothing happens if the entry has been replaced or evicted
    /// since.
    pub fn mark_synced(&self, unsynced: Unsynced) {
        let mut state = self.inner.lock();
        if let Some(entry) = state.entries.get_mut(&unsynced.name)
            && entry.generation == unsynced.generation
            && !entry.synced
        {
            entry.synced = true;
            self.inner
                .write(IndexWrite::Upsert(Row::of(&unsynced.name, entry)));
        }
    }

    async fn insert_entry(
        &self,
        name: &str,
        md5: Option<String>,
        synced: bool,
    ) -> Result<(Lease, u64), CacheError> {
        let path = self.inner.dir.join(name);
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|err| CacheError::io("stat", &path, err))?;
        let stamp = FileStamp::of(&meta);
        let now = now_ms();
        let mut state = self.inner.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        let (leases, hits, created_ms) = match state.entries.get(name) {
            Some(old) => (old.leases, old.hits, old.created_ms),
            None => (0, 0, now),
        };
        let entry = Entry {
            size: stamp.size,
            mtime_ns: stamp.mtime_ns,
            md5: md5.map(|m| m.to_ascii_lowercase()),
            created_ms,
            last_used_ms: now,
            seq,
            hits,
            leases: leases + 1,
            synced,
            generation: seq,
        };
        self.inner.write(IndexWrite::Upsert(Row::of(name, &entry)));
        if let Some(old) = state.entries.insert(name.to_owned(), entry) {
            state.bytes -= old.size;
        }
        state.bytes += stamp.size;
        if state.bytes > self.inner.max_bytes {
            self.inner.evict(&mut state);
        }
        let lease = Lease {
            cache: Arc::clone(&self.inner),
            name: Arc::from(name),
            size: stamp.size,
        };
        Ok((lease, seq))
    }

    /// A new, empty temp file in the cache directory for the artifact to be named
    /// `cache_name` (mode `rw-r--r--`), removed when the returned path is dropped unless it is
    /// adopted ([`cache_dir::adopt`]) first.
    pub(crate) fn temp_file(
        &self,
        cache_name: &str,
    ) -> Result<(std::fs::File, tempfile::TempPath), CacheError> {
        let temp = cache_dir::create_temp(&self.inner.dir, CacheWriter::Downloader, cache_name)?;
        Ok(temp.into_parts())
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent enough to go on with:
        // every mutation is a few field updates.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self, write: IndexWrite) {
        // The writer only stops when the cache is dropped, after which nobody writes.
        let _ = self.writes.send(write);
    }

    fn lease_existing(self: &Arc<Self>, name: &str) -> Option<Lease> {
        let mut state = self.lock();
        let entry = state.entries.get_mut(name)?;
        entry.leases += 1;
        Some(Lease {
            cache: Arc::clone(self),
            name: Arc::from(name),
            size: entry.size,
        })
    }

    /// Drops the entry for a file that is gone, unless someone holds a lease on it.
    fn forget(&self, name: &str) {
        let mut state = self.lock();
        if state.entries.get(name).is_some_and(|e| e.leases == 0)
            && let Some(old) = state.entries.remove(name)
        {
            state.bytes -= old.size;
            self.write(IndexWrite::Delete {
                name: name.to_owned(),
            });
        }
    }

    /// Brings the entry up to date with the file's stamp; returns the md5 still valid for it.
    fn refresh(&self, name: &str, stamp: FileStamp) -> Option<String> {
        let mut state = self.lock();
        let state = &mut *state;
        let entry = state.entries.get_mut(name)?;
        if entry.size == stamp.size && entry.mtime_ns == stamp.mtime_ns {
            return entry.md5.clone();
        }
        state.bytes = state.bytes - entry.size + stamp.size;
        entry.size = stamp.size;
        entry.mtime_ns = stamp.mtime_ns;
        entry.md5 = None;
        // Another writer's file now, no longer a download of ours waiting for its fsync.
        entry.synced = true;
        self.write(IndexWrite::Upsert(Row::of(name, entry)));
        None
    }

    fn record_md5(&self, name: &str, stamp: FileStamp, md5: &str) {
        let mut state = self.lock();
        if let Some(entry) = state.entries.get_mut(name)
            && entry.size == stamp.size
            && entry.mtime_ns == stamp.mtime_ns
        {
            entry.md5 = Some(md5.to_owned());
            self.write(IndexWrite::Upsert(Row::of(name, entry)));
        }
    }

    /// Indexes a file found in the directory, leased.
    fn adopt(self: &Arc<Self>, name: &str, stamp: FileStamp, md5: Option<String>) -> Lease {
        let now = now_ms();
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        let entry = state
            .entries
            .entry(name.to_owned())
            .or_insert_with(|| Entry {
                size: 0,
                mtime_ns: stamp.mtime_ns,
                md5: None,
                created_ms: now,
                last_used_ms: now,
                seq,
                hits: 0,
                leases: 0,
                synced: true,
                generation: seq,
            });
        let old_size = entry.size;
        entry.size = stamp.size;
        entry.mtime_ns = stamp.mtime_ns;
        entry.md5 = md5;
        entry.leases += 1;
        let row = Row::of(name, entry);
        state.bytes = state.bytes - old_size + stamp.size;
        self.write(IndexWrite::Upsert(row));
        if state.bytes > self.max_bytes {
            self.evict(&mut state);
        }
        Lease {
            cache: Arc::clone(self),
            name: Arc::from(name),
            size: stamp.size,
        }
    }

    /// Records a use: now is its last use, and a hit counts.
    fn touch(&self, name: &str, hit: bool) {
        let now = now_ms();
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        if let Some(entry) = state.entries.get_mut(name) {
            entry.last_used_ms = now.max(entry.last_used_ms);
            entry.seq = seq;
            if hit {
                entry.hits += 1;
            }
            self.write(IndexWrite::Upsert(Row::of(name, entry)));
        }
    }

    /// Removes unleased entries, least recently used first, until the cache is within its
    /// bound or only leased entries remain.
    fn evict(&self, state: &mut State) {
        while state.bytes > self.max_bytes {
            let victim = state
                .entries
                .iter()
                .filter(|(_, e)| e.leases == 0)
                .min_by_key(|(_, e)| (e.last_used_ms, e.seq))
                .map(|(name, _)| name.clone());
            let Some(name) = victim else { break };
            let path = self.dir.join(&name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    // Still dropped from the index: it cannot be served reliably, and the
                    // next reconcile re-adopts it if it is still there.
                    tracing::warn!(path = %path.display(), %err, "could not remove evicted cache entry");
                }
            }
            if let Some(old) = state.entries.remove(&name) {
                state.bytes -= old.size;
                tracing::info!(name, size = old.size, "evicted from the artifact cache");
            }
            self.write(IndexWrite::Delete { name });
        }
    }
}

async fn hash_file(path: &Path) -> Result<String, CacheError> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || singularity_artifacts::md5_file(&owned))
        .await
        .map_err(|err| CacheError::io("hash", path, std::io::Error::other(err.to_string())))?
        .map_err(|err| CacheError::io("hash", path, std::io::Error::other(err.to_string())))
}

/// `name, size, mtime_ns, md5, created_ms, last_used_ms, hits` as stored.
type IndexRow = (String, i64, i64, Option<String>, i64, i64, i64);

/// Loads the index, matches it against the directory and writes the differences back.
async fn reconcile(dir: &Path, db_path: &Path, pool: &SqlitePool) -> Result<State, CacheError> {
    let db_err = |what: &'static str| {
        move |source: sqlx::Error| CacheError::Index {
            path: db_path.to_owned(),
            what,
            source: Arc::new(source),
        }
    };
    let rows: Vec<IndexRow> = sqlx::query_as(
        "SELECT name, size, mtime_ns, md5, created_ms, last_used_ms, hits FROM cache_entries",
    )
    .fetch_all(pool)
    .await
    .map_err(db_err("read entries"))?;

    let dir_owned = dir.to_owned();
    let on_disk = tokio::task::spawn_blocking(move || scan_dir(&dir_owned))
        .await
        .map_err(|err| CacheError::io("scan", dir, std::io::Error::other(err.to_string())))??;

    let mut state = State::default();
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    let mut indexed = HashSet::new();
    for (name, size, mtime_ns, md5, created_ms, last_used_ms, hits) in rows {
        indexed.insert(name.clone());
        let Some(stamp) = on_disk.get(&name) else {
            deletes.push(name);
            continue;
        };
        let mut entry = Entry {
            size: u64::try_from(size).unwrap_or(0),
            mtime_ns,
            md5,
            created_ms,
            last_used_ms,
            seq: 0,
            hits,
            leases: 0,
            synced: true,
            generation: 0,
        };
        if entry.size != stamp.size || entry.mtime_ns != stamp.mtime_ns {
            entry.size = stamp.size;
            entry.mtime_ns = stamp.mtime_ns;
            entry.md5 = None;
            upserts.push(Row::of(&name, &entry));
        }
        state.entries.insert(name, entry);
    }
    let now = now_ms();
    for (name, stamp) in &on_disk {
        if indexed.contains(name) || !cache_dir::is_adoptable(name) {
            continue;
        }
        let entry = Entry {
            size: stamp.size,
            mtime_ns: stamp.mtime_ns,
            md5: None,
            created_ms: now,
            last_used_ms: stamp.mtime_ns / 1_000_000,
            seq: 0,
            hits: 0,
            leases: 0,
            synced: true,
            generation: 0,
        };
        tracing::info!(
            name,
            size = stamp.size,
            "adopted a file found in the artifact cache"
        );
        upserts.push(Row::of(name, &entry));
        state.entries.insert(name.clone(), entry);
    }
    // Sequence numbers in last-use order, so ties in milliseconds still order consistently.
    let mut order: Vec<(i64, String)> = state
        .entries
        .iter()
        .map(|(name, e)| (e.last_used_ms, name.clone()))
        .collect();
    order.sort();
    for (seq, (_, name)) in order.iter().enumerate() {
        if let Some(entry) = state.entries.get_mut(name) {
            entry.seq = seq as u64;
        }
    }
    state.next_seq = order.len() as u64;
    state.bytes = state.entries.values().map(|e| e.size).sum();

    if !upserts.is_empty() || !deletes.is_empty() {
        let mut tx = pool.begin().await.map_err(db_err("begin"))?;
        for name in &deletes {
            sqlx::query("DELETE FROM cache_entries WHERE name = ?")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_err("drop entries without a file"))?;
        }
        for row in &upserts {
            upsert(&mut *tx, row)
                .await
                .map_err(db_err("record files found"))?;
        }
        tx.commit().await.map_err(db_err("commit"))?;
    }
    if !deletes.is_empty() {
        tracing::info!(
            count = deletes.len(),
            "dropped cache index entries whose file is gone"
        );
    }
    Ok(state)
}

/// Regular files of the cache directory, the index aside, by name; removes this crate's
/// leftover temp files on the way.
fn scan_dir(dir: &Path) -> Result<HashMap<String, FileStamp>, CacheError> {
    let mut found = HashMap::new();
    let entries = std::fs::read_dir(dir).map_err(|err| CacheError::io("list", dir, err))?;
    for entry in entries {
        let entry = entry.map_err(|err| CacheError::io("list", dir, err))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = entry.path();
        if CacheWriter::Downloader.owns_temp(&name) {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed a leftover download"),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(CacheError::io("remove", &path, err)),
            }
            continue;
        }
        if name.starts_with(INDEX_FILE_NAME) {
            continue;
        }
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(CacheError::io("stat", &path, err)),
        };
        if meta.is_file() {
            found.insert(name, FileStamp::of(&meta));
        }
    }
    Ok(found)
}

async fn upsert<'e, E>(executor: E, row: &Row) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO cache_entries (name, size, mtime_ns, md5, created_ms, last_used_ms, hits) \
         VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, \
         md5 = excluded.md5, created_ms = excluded.created_ms, \
         last_used_ms = excluded.last_used_ms, hits = excluded.hits",
    )
    .bind(&row.name)
    .bind(to_i64(row.size))
    .bind(row.mtime_ns)
    .bind(&row.md5)
    .bind(row.created_ms)
    .bind(row.last_used_ms)
    .bind(row.hits)
    .execute(executor)
    .await
    .map(|_| ())
}

/// Applies index writes in the order they were issued, until the cache is dropped.
async fn apply_writes(
    pool: SqlitePool,
    db_path: PathBuf,
    mut queue: mpsc::UnboundedReceiver<IndexWrite>,
) {
    while let Some(write) = queue.recv().await {
        let result = match write {
            IndexWrite::Upsert(row) => upsert(&pool, &row).await,
            IndexWrite::Delete { name } => sqlx::query("DELETE FROM cache_entries WHERE name = ?")
                .bind(&name)
                .execute(&pool)
                .await
                .map(|_| ()),
            IndexWrite::Flush(done) => {
                let _ = done.send(());
                Ok(())
            }
        };
        if let Err(err) = result {
            tracing::warn!(path = %db_path.display(), %err, "could not update the artifact cache index");
        }
    }
    pool.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, len: usize) {
        std::fs::write(dir.join(name), vec![7u8; len]).unwrap();
    }

    #[tokio::test]
    async fn adopts_skips_and_removes_on_open() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.tar.gz", 10);
        write(dir.path(), &format!("{TEMP_PREFIX}xyz"), 5);
        write(dir.path(), ".hidden", 5);
        write(dir.path(), "other-writer.tmp", 5);
        std::fs::create_dir(dir.path().join("subdir")).unwrap();

        let cache = ArtifactCache::open(dir.path(), 1000).await.unwrap();
        assert_eq!(cache.entries_by_last_use(), ["a.tar.gz"]);
        assert_eq!(cache.stats().bytes, 10);
        assert!(!dir.path().join(format!("{TEMP_PREFIX}xyz")).exists());
        assert!(dir.path().join(".hidden").exists());
        assert!(dir.path().join("other-writer.tmp").exists());
    }

    #[tokio::test]
    async fn eviction_follows_last_use_and_spares_leases() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path(), 25).await.unwrap();
        for name in ["a", "b", "c"] {
            write(dir.path(), name, 10);
        }
        let a = cache.insert("a", None).await.unwrap();
        drop(cache.insert("b", None).await.unwrap());
        // 30 > 25: b is the least recently used entry without a lease.
        drop(cache.insert("c", None).await.unwrap());
        assert_eq!(cache.entries_by_last_use(), ["a", "c"]);
        assert!(!dir.path().join("b").exists());
        drop(a);
        assert_eq!(cache.stats().bytes, 20);

        // An entry larger than the bound is kept while leased, then evicted.
        write(dir.path(), "big", 40);
        let big = cache.insert("big", None).await.unwrap();
        assert_eq!(cache.entries_by_last_use(), ["big"]);
        assert_eq!(cache.stats().leased, 1);
        let again = big.clone();
        drop(big);
        assert!(dir.path().join("big").exists());
        drop(again);
        assert!(!dir.path().join("big").exists());
        assert_eq!(
            cache.stats(),
            CacheStats {
                entries: 0,
                bytes: 0,
                leased: 0,
                max_bytes: 25
            }
        );
    }

    #[tokio::test]
    async fn an_md5_reaches_the_index_only_once_the_file_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "n", 3);
        let md5 = singularity_artifacts::md5_bytes(&[7, 7, 7]);
        let path = dir.path().to_owned();
        let reopened_md5 = |cache: ArtifactCache| {
            let path = path.clone();
            async move {
                cache.flush().await;
                drop(cache);
                let cache = ArtifactCache::open(&path, 1000).await.unwrap();
                cache.inner.lock().entries["n"].md5.clone()
            }
        };

        // Trusted in memory at once, forgotten by a restart before the sync.
        let cache = ArtifactCache::open(dir.path(), 1000).await.unwrap();
        let (lease, _unsynced) = cache.insert_unsynced("n", md5.clone()).await.unwrap();
        assert_eq!(lease.md5().as_deref(), Some(md5.as_str()));
        assert!(cache.get("n", Some(3), Some(&md5)).await.unwrap().is_some());
        drop(lease);
        assert_eq!(reopened_md5(cache).await, None);

        // Kept once synced.
        let cache = ArtifactCache::open(dir.path(), 1000).await.unwrap();
        let (lease, unsynced) = cache.insert_unsynced("n", md5.clone()).await.unwrap();
        cache.mark_synced(unsynced);
        drop(lease);
        assert_eq!(reopened_md5(cache).await.as_deref(), Some(md5.as_str()));

        // The sync of a file since replaced under the same name vouches for nothing.
        let cache = ArtifactCache::open(dir.path(), 1000).await.unwrap();
        let (first, stale) = cache.insert_unsynced("n", md5.clone()).await.unwrap();
        let (second, _pending) = cache.insert_unsynced("n", md5.clone()).await.unwrap();
        cache.mark_synced(stale);
        assert!(!cache.inner.lock().entries["n"].synced);
        drop((first, second));
        assert_eq!(reopened_md5(cache).await, None);
    }

    #[tokio::test]
    async fn md5_is_hashed_once_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "x", 3);
        let md5 = singularity_artifacts::md5_bytes(&[7, 7, 7]);
        let cache = ArtifactCache::open(dir.path(), 1000).await.unwrap();
        let hit = cache.get("x", Some(3), Some(&md5.to_uppercase())).await;
        assert!(hit.unwrap().is_some());
        assert_eq!(
            cache.inner.lock().entries["x"].md5.as_deref(),
            Some(md5.as_str())
        );
        assert!(cache.get("x", Some(4), None).await.unwrap().is_none());
        assert!(
            cache
                .get("x", None, Some("00000000000000000000000000000000"))
                .await
                .unwrap()
                .is_none()
        );
        // The recorded md5 is trusted while size and mtime stay: content rewritten in place
        // with the mtime put back is not read again (the documented limit of that trust).
        let path = dir.path().join("x");
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, [8u8, 8, 8]).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(cache.get("x", Some(3), Some(&md5)).await.unwrap().is_some());

        // A changed file loses its recorded md5; the next lookup asking for one hashes the
        // new content.
        std::fs::write(dir.path().join("x"), b"abcd").unwrap();
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join("x"))
            .unwrap();
        file.set_modified(SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        assert!(cache.get("x", None, Some(&md5)).await.unwrap().is_none());
        assert_eq!(
            cache.inner.lock().entries["x"].md5,
            Some(singularity_artifacts::md5_bytes(b"abcd"))
        );
        assert_eq!(cache.stats().bytes, 4);
        cache.flush().await;
    }
}
