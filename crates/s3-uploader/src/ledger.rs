//! The ledger: each file's upload state in SQLite, so that a crash at any point resumes
//! without losing a file, without re-sending acknowledged parts and without deleting a file
//! S3 has not confirmed.
//!
//! States: `pending` (key chosen, nothing sent) → `uploading` (multipart upload id, parts
//! acknowledged so far in `parts`) → `uploaded` (S3's ETag) → `deleted` (local file removed).
//! `abandoned` ends a row whose file vanished or changed before it was uploaded. A path has
//! at most one live row.

use std::path::{Path, PathBuf};

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{ConnectOptions as _, Connection as _, Row as _, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::error::LedgerError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Where a file is in its upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Recorded with its key; nothing sent yet.
    Pending,
    /// A multipart upload is under way.
    Uploading,
    /// S3 holds the object; the local file is not deleted yet.
    Uploaded,
    /// The local file was deleted after S3 confirmed the object.
    Deleted,
    /// Given up: the file vanished or changed before it was uploaded.
    Abandoned,
}

impl FileState {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Uploading => "uploading",
            Self::Uploaded => "uploaded",
            Self::Deleted => "deleted",
            Self::Abandoned => "abandoned",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "uploading" => Self::Uploading,
            "uploaded" => Self::Uploaded,
            "deleted" => Self::Deleted,
            "abandoned" => Self::Abandoned,
            _ => return None,
        })
    }
}

/// One file's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Row id.
    pub id: i64,
    /// The local file.
    pub path: PathBuf,
    /// Its size when recorded.
    pub size: u64,
    /// Its modification time when recorded, epoch milliseconds.
    pub mtime_ms: i64,
    /// Target bucket.
    pub bucket: String,
    /// Object key, chosen once.
    pub key: String,
    /// State.
    pub state: FileState,
    /// Multipart upload id, while uploading.
    pub upload_id: Option<String>,
    /// Part size of that upload.
    pub part_size: Option<u64>,
    /// The object's ETag once uploaded.
    pub etag: Option<String>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
}

/// One acknowledged part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRecord {
    /// 1-based part number.
    pub number: i32,
    /// Bytes.
    pub size: u64,
    /// The ETag S3 answered.
    pub etag: String,
    /// MD5 of the bytes sent.
    pub md5: [u8; 16],
}

/// The ledger database.
///
/// Reads go straight to the pool. Writes go to one writer task with its own connection, which
/// applies whatever has queued up in a single transaction and answers each caller once it is
/// committed: a caller never goes on before its write is in the database, and a commit is paid
/// once per batch instead of once per write. One writer also keeps SQLite's busy handler,
/// which sleeps milliseconds at a time, out of the way. "Committed" is WAL mode with
/// `synchronous=NORMAL`: it survives the process being killed; a power loss may undo the last
/// commits, which sets rows back, never forward (every write records a step already taken).
#[derive(Debug, Clone)]
pub struct Ledger {
    pool: SqlitePool,
    writes: mpsc::UnboundedSender<Message>,
}

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 256;
/// Shortest time between two checkpoints of the WAL.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// One write, as the writer task applies it.
#[derive(Debug)]
enum Write {
    InsertPending {
        /// Whether a live row of the path makes this a no-op (answered as id 0) rather than
        /// an error.
        unless_live: bool,
        path: String,
        size: i64,
        mtime_ms: i64,
        bucket: String,
        key: String,
        now_ms: i64,
    },
    Restart {
        id: i64,
        size: i64,
        mtime_ms: i64,
        bucket: String,
        key: String,
        now_ms: i64,
    },
    StartMultipart {
        id: i64,
        upload_id: String,
        part_size: i64,
        now_ms: i64,
    },
    RecordPart {
        id: i64,
        number: i32,
        size: i64,
        etag: String,
        md5_hex: String,
    },
    ForgetPart {
        id: i64,
        number: i32,
    },
    MarkUploaded {
        id: i64,
        etag: String,
        now_ms: i64,
    },
    Finish {
        id: i64,
        state: FileState,
        note: Option<String>,
        now_ms: i64,
    },
    RecordFailure {
        id: i64,
        error: String,
        next_attempt_ms: i64,
        now_ms: i64,
    },
    Prune {
        before_ms: i64,
    },
}

impl Write {
    /// What the write does, for errors.
    fn what(&self) -> &'static str {
        match self {
            Self::InsertPending { .. } => "record a new file",
            Self::Restart { .. } => "start a file over",
            Self::StartMultipart { .. } => "record a multipart upload",
            Self::RecordPart { .. } => "record a part",
            Self::ForgetPart { .. } => "forget a part",
            Self::MarkUploaded { .. } => "mark a file uploaded",
            Self::Finish { .. } => "finish a row",
            Self::RecordFailure { .. } => "record a failure",
            Self::Prune { .. } => "prune finished rows",
        }
    }

    /// Applies the write inside the batch's transaction. Returns the new row id (insert), the
    /// attempts so far (failure) or the rows affected.
    async fn apply(&self, conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
        // Each statement answers with the rows it changed, or with one column of the row it
        // returns (0 when it returns none).
        let (query, column) = match self {
            Self::InsertPending {
                unless_live,
                path,
                size,
                mtime_ms,
                bucket,
                key,
                now_ms,
            } => {
                // The only uniqueness rule of `files` is one live row per path.
                let sql = if *unless_live {
                    "INSERT INTO files (path, size, mtime_ms, bucket, object_key, state, created_ms, updated_ms) \
                     VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT DO NOTHING RETURNING id"
                } else {
                    "INSERT INTO files (path, size, mtime_ms, bucket, object_key, state, created_ms, updated_ms) \
                     VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) RETURNING id"
                };
                let query = sqlx::query(sql)
                    .bind(path)
                    .bind(size)
                    .bind(mtime_ms)
                    .bind(bucket)
                    .bind(key)
                    .bind(now_ms)
                    .bind(now_ms);
                (query, Some("id"))
            }
            Self::Restart {
                id,
                size,
                mtime_ms,
                bucket,
                key,
                now_ms,
            } => return restart(conn, *id, *size, *mtime_ms, bucket, key, *now_ms).await,
            Self::StartMultipart {
                id,
                upload_id,
                part_size,
                now_ms,
            } => {
                let query = sqlx::query(
                    "UPDATE files SET state = 'uploading', upload_id = ?, part_size = ?, \
                     updated_ms = ? WHERE id = ?",
                )
                .bind(upload_id)
                .bind(part_size)
                .bind(now_ms)
                .bind(id);
                (query, None)
            }
            Self::RecordPart {
                id,
                number,
                size,
                etag,
                md5_hex,
            } => {
                let query = sqlx::query(
                    "INSERT OR REPLACE INTO parts (file_id, part_number, size, etag, md5_hex) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(id)
                .bind(number)
                .bind(size)
                .bind(etag)
                .bind(md5_hex);
                (query, None)
            }
            Self::ForgetPart { id, number } => {
                let query = sqlx::query("DELETE FROM parts WHERE file_id = ? AND part_number = ?")
                    .bind(id)
                    .bind(number);
                (query, None)
            }
            Self::MarkUploaded { id, etag, now_ms } => {
                let query = sqlx::query(
                    "UPDATE files SET state = 'uploaded', etag = ?, upload_id = NULL, \
                     last_error = NULL, updated_ms = ? WHERE id = ?",
                )
                .bind(etag)
                .bind(now_ms)
                .bind(id);
                (query, None)
            }
            Self::Finish {
                id,
                state,
                note,
                now_ms,
            } => {
                let query = sqlx::query(
                    "UPDATE files SET state = ?, last_error = COALESCE(?, last_error), \
                     upload_id = NULL, updated_ms = ? WHERE id = ?",
                )
                .bind(state.as_str())
                .bind(note)
                .bind(now_ms)
                .bind(id);
                (query, None)
            }
            Self::RecordFailure {
                id,
                error,
                next_attempt_ms,
                now_ms,
            } => {
                let query = sqlx::query(
                    "UPDATE files SET attempts = attempts + 1, last_error = ?, \
                     next_attempt_ms = ?, updated_ms = ? WHERE id = ? RETURNING attempts",
                )
                .bind(error)
                .bind(next_attempt_ms)
                .bind(now_ms)
                .bind(id);
                (query, Some("attempts"))
            }
            Self::Prune { before_ms } => {
                let query = sqlx::query(
                    "DELETE FROM files WHERE state IN ('deleted', 'abandoned') AND updated_ms < ?",
                )
                .bind(before_ms);
                (query, None)
            }
        };
        match column {
            Some(column) => Ok(query
                .fetch_optional(&mut *conn)
                .await?
                .map_or(0, |row| row.get(column))),
            None => Ok(rows(query.execute(&mut *conn).await?.rows_affected())),
        }
    }
}

/// Starts a file's row over as pending with new attributes, forgetting its parts: both
/// statements or neither, so that a failure never leaves a pending row with the parts of an
/// upload it no longer has.
async fn restart(
    conn: &mut SqliteConnection,
    id: i64,
    size: i64,
    mtime_ms: i64,
    bucket: &str,
    key: &str,
    now_ms: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query("SAVEPOINT restart").execute(&mut *conn).await?;
    let applied = async {
        sqlx::query("DELETE FROM parts WHERE file_id = ?")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "UPDATE files SET state = 'pending', size = ?, mtime_ms = ?, bucket = ?, \
             object_key = ?, upload_id = NULL, part_size = NULL, etag = NULL, \
             updated_ms = ? WHERE id = ?",
        )
        .bind(size)
        .bind(mtime_ms)
        .bind(bucket)
        .bind(key)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *conn)
        .await
    }
    .await;
    match applied {
        Ok(done) => {
            sqlx::query("RELEASE restart").execute(&mut *conn).await?;
            Ok(rows(done.rows_affected()))
        }
        Err(error) => {
            sqlx::query("ROLLBACK TO restart; RELEASE restart")
                .execute(&mut *conn)
                .await?;
            Err(error)
        }
    }
}

fn rows(affected: u64) -> i64 {
    i64::try_from(affected).unwrap_or(i64::MAX)
}

#[derive(Debug)]
struct WriteRequest {
    write: Write,
    reply: oneshot::Sender<Result<i64, LedgerError>>,
}

#[derive(Debug)]
enum Message {
    Write(WriteRequest),
    /// Close the writer's connection, then answer.
    Close(oneshot::Sender<()>),
}

/// Applies queued writes, a batch per transaction, on its own connection, until the ledger
/// is closed or every [`Ledger`] handle is gone. After each commit it nudges the checkpointer.
async fn writer(
    mut conn: SqliteConnection,
    mut messages: mpsc::UnboundedReceiver<Message>,
    committed: mpsc::Sender<()>,
) {
    let mut received = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while messages.recv_many(&mut received, MAX_BATCH).await > 0 {
        let mut close = None;
        for message in received.drain(..) {
            match message {
                Message::Write(request) if close.is_none() => batch.push(request),
                // Dropped: its caller learns that the ledger is closed.
                Message::Write(_) => {}
                Message::Close(done) => close = Some(done),
            }
        }
        if !batch.is_empty() {
            let results = apply_batch(&mut conn, &batch).await;
            // Full: a nudge is already waiting.
            let _ = committed.try_send(());
            for (request, result) in batch.drain(..).zip(results) {
                // The caller may have been cancelled; its write stands all the same.
                let _ = request.reply.send(result);
            }
        }
        if let Some(done) = close {
            let _ = conn.close().await;
            let _ = done.send(());
            return;
        }
    }
    let _ = conn.close().await;
}

/// Copies committed writes from the WAL into the database, at most once per
/// [`CHECKPOINT_EVERY`] and only after writes, until the writer is gone. A checkpoint syncs
/// both files to disk; run by the writer, as SQLite's automatic checkpoints are, it would hold
/// up every write queued behind it for as long as the disk takes.
async fn checkpointer(pool: SqlitePool, mut committed: mpsc::Receiver<()>) {
    while committed.recv().await.is_some() {
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::debug!(%error, "ledger checkpoint failed; the next one catches up");
        }
        tokio::time::sleep(CHECKPOINT_EVERY).await;
    }
}

/// One transaction for the whole batch. A write that fails (a constraint) fails alone: SQLite
/// undoes only that statement. If the transaction cannot begin or commit, every write of the
/// batch reports it, so no caller goes on believing in a write that may not have been made.
///
/// Every statement is a round trip to the connection's thread, and on a busy machine each
/// round trip waits for that thread to be scheduled, so the frequent writes (new files, files
/// uploaded, files deleted) share one statement per kind: a batch then costs about as much as
/// a single write, however many writers queued up behind it.
async fn apply_batch(
    conn: &mut SqliteConnection,
    batch: &[WriteRequest],
) -> Vec<Result<i64, LedgerError>> {
    let batch_failed = |step: &'static str, error: sqlx::Error| -> Vec<Result<i64, LedgerError>> {
        let source = std::sync::Arc::new(error);
        batch
            .iter()
            .map(|request| {
                Err(LedgerError::Batch {
                    what: request.write.what(),
                    step,
                    source: std::sync::Arc::clone(&source),
                })
            })
            .collect()
    };
    if let [request] = batch {
        // One write is one statement (a restart brings its own savepoint): SQLite's implicit
        // transaction saves the round trips of BEGIN and COMMIT.
        let what = request.write.what();
        return vec![request.write.apply(conn).await.map_err(query_error(what))];
    }
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(error) => return batch_failed("begin a transaction", error),
    };
    let mut results: Vec<Option<Result<i64, LedgerError>>> = batch.iter().map(|_| None).collect();
    for group in Group::of(batch) {
        if group.members.len() < 2 {
            continue;
        }
        // A shared statement that fails leaves its writes to the one-by-one pass below, which
        // tells which of them failed.
        if let Ok(values) = group.apply(&mut tx).await {
            for (index, value) in group.members.iter().zip(values) {
                results[*index] = Some(Ok(value));
            }
        }
    }
    for (request, result) in batch.iter().zip(&mut results) {
        if result.is_none() {
            let what = request.write.what();
            *result = Some(
                request
                    .write
                    .apply(&mut tx)
                    .await
                    .map_err(query_error(what)),
            );
        }
    }
    match tx.commit().await {
        Ok(()) => results.into_iter().flatten().collect(),
        Err(error) => batch_failed("commit", error),
    }
}

/// Frequent writes of one kind, applied by one statement over a JSON array of their values.
#[derive(Debug)]
struct Group {
    kind: GroupKind,
    /// Indexes in the batch.
    members: Vec<usize>,
    /// One JSON array per member.
    values: Vec<serde_json::Value>,
    /// The key each member's answer comes back under: its path (insert) or row id.
    keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupKind {
    /// New pending rows, unless the path has a live one: answers the new id, or 0.
    Insert,
    /// Rows now `uploaded`: answers 1 per row updated.
    MarkUploaded,
    /// Rows now `deleted` or `abandoned`: answers 1 per row updated.
    Finish,
}

impl Group {
    /// The groups of a batch. No grouping at all when a row or path appears twice: the writes
    /// of one row are applied in order, one by one (the workers never do that, one file being
    /// in the hands of one worker, each waiting for its writes).
    fn of(batch: &[WriteRequest]) -> Vec<Self> {
        let mut groups: Vec<Self> = [
            GroupKind::Insert,
            GroupKind::MarkUploaded,
            GroupKind::Finish,
        ]
        .into_iter()
        .map(|kind| Self {
            kind,
            members: Vec::new(),
            values: Vec::new(),
            keys: Vec::new(),
        })
        .collect();
        let mut seen = std::collections::HashSet::new();
        for (index, request) in batch.iter().enumerate() {
            let row = match &request.write {
                Write::InsertPending { path, .. } => format!("p:{path}"),
                Write::Restart { id, .. }
                | Write::StartMultipart { id, .. }
                | Write::RecordPart { id, .. }
                | Write::ForgetPart { id, .. }
                | Write::MarkUploaded { id, .. }
                | Write::Finish { id, .. }
                | Write::RecordFailure { id, .. } => format!("i:{id}"),
                Write::Prune { .. } => continue,
            };
            if !seen.insert(row) {
                return Vec::new();
            }
            let (slot, key, value) = match &request.write {
                Write::InsertPending {
                    unless_live: true,
                    path,
                    size,
                    mtime_ms,
                    bucket,
                    key,
                    now_ms,
                } => (
                    0,
                    path.clone(),
                    serde_json::json!([path, size, mtime_ms, bucket, key, now_ms]),
                ),
                Write::MarkUploaded { id, etag, now_ms } => {
                    (1, id.to_string(), serde_json::json!([id, etag, now_ms]))
                }
                Write::Finish {
                    id,
                    state,
                    note,
                    now_ms,
                } => (
                    2,
                    id.to_string(),
                    serde_json::json!([id, state.as_str(), note, now_ms]),
                ),
                _ => continue,
            };
            groups[slot].members.push(index);
            groups[slot].keys.push(key);
            groups[slot].values.push(value);
        }
        groups
    }

    /// Applies the group's statement; answers each member's value, in member order.
    async fn apply(&self, conn: &mut SqliteConnection) -> Result<Vec<i64>, sqlx::Error> {
        let sql = match self.kind {
            GroupKind::Insert => {
                "INSERT INTO files (path, size, mtime_ms, bucket, object_key, state, created_ms, updated_ms) \
                 SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, \
                 'pending', j.value ->> 5, j.value ->> 5 FROM json_each(?) AS j WHERE true \
                 ON CONFLICT DO NOTHING RETURNING path AS answer_key, id"
            }
            GroupKind::MarkUploaded => {
                "UPDATE files SET state = 'uploaded', etag = j.value ->> 1, upload_id = NULL, \
                 last_error = NULL, updated_ms = j.value ->> 2 \
                 FROM json_each(?) AS j WHERE files.id = j.value ->> 0 \
                 RETURNING CAST(files.id AS TEXT) AS answer_key, 1 AS id"
            }
            GroupKind::Finish => {
                "UPDATE files SET state = j.value ->> 1, \
                 last_error = COALESCE(j.value ->> 2, files.last_error), upload_id = NULL, \
                 updated_ms = j.value ->> 3 \
                 FROM json_each(?) AS j WHERE files.id = j.value ->> 0 \
                 RETURNING CAST(files.id AS TEXT) AS answer_key, 1 AS id"
            }
        };
        let values = serde_json::Value::Array(self.values.clone()).to_string();
        let answered: std::collections::HashMap<String, i64> = sqlx::query(sql)
            .bind(values)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| (row.get("answer_key"), row.get("id")))
            .collect();
        Ok(self
            .keys
            .iter()
            .map(|key| answered.get(key).copied().unwrap_or(0))
            .collect())
    }
}

fn query_error(what: &'static str) -> impl FnOnce(sqlx::Error) -> LedgerError {
    move |source| LedgerError::Query { what, source }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

const FILE_COLUMNS: &str = "id, path, size, mtime_ms, bucket, object_key, state, upload_id, \
     part_size, etag, attempts, last_error";

fn file_from_row(row: &SqliteRow) -> Result<FileRecord, LedgerError> {
    let id: i64 = row.get("id");
    let state_text: String = row.get("state");
    let state = FileState::parse(&state_text).ok_or(LedgerError::BadState {
        id,
        state: state_text,
    })?;
    Ok(FileRecord {
        id,
        path: PathBuf::from(row.get::<String, _>("path")),
        size: to_u64(row.get("size")),
        mtime_ms: row.get("mtime_ms"),
        bucket: row.get("bucket"),
        key: row.get("object_key"),
        state,
        upload_id: row.get("upload_id"),
        part_size: row.get::<Option<i64>, _>("part_size").map(to_u64),
        etag: row.get("etag"),
        attempts: u32::try_from(row.get::<i64, _>("attempts")).unwrap_or(u32::MAX),
        last_error: row.get("last_error"),
    })
}

impl Ledger {
    /// Opens (creating) the ledger at `path` and applies its migrations.
    pub async fn open(path: &Path) -> Result<Self, LedgerError> {
        let pool = singularity_runtime::open_sqlite(path, &MIGRATOR).await?;
        // The writer's own connection, with the pool's settings: taking one from the pool for
        // every batch would cost a check-out and a ping each time.
        let mut conn = pool
            .connect_options()
            .connect()
            .await
            .map_err(query_error("open the ledger's writer connection"))?;
        // Checkpoints run beside the writer, not inside its commits.
        sqlx::query("PRAGMA wal_autocheckpoint = 0")
            .execute(&mut conn)
            .await
            .map_err(query_error("configure the ledger's writer connection"))?;
        let (writes, messages) = mpsc::unbounded_channel();
        let (committed, commits) = mpsc::channel(1);
        tokio::spawn(writer(conn, messages, committed));
        tokio::spawn(checkpointer(pool.clone(), commits));
        Ok(Self { pool, writes })
    }

    /// Queues a write and waits until it is committed.
    async fn write(&self, write: Write) -> Result<i64, LedgerError> {
        let what = write.what();
        let closed = || LedgerError::Closed { what };
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(Message::Write(WriteRequest { write, reply }))
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// The live row of `path`, if any.
    pub async fn live(&self, path: &Path) -> Result<Option<FileRecord>, LedgerError> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE path = ? AND state NOT IN ('deleted', 'abandoned')"
        );
        let row = sqlx::query(&sql)
            .bind(path_text(path))
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("read a file's row"))?;
        row.as_ref().map(file_from_row).transpose()
    }

    /// Every row of `path`, oldest first (history included).
    pub async fn history(&self, path: &Path) -> Result<Vec<FileRecord>, LedgerError> {
        let sql = format!("SELECT {FILE_COLUMNS} FROM files WHERE path = ? ORDER BY id");
        let rows = sqlx::query(&sql)
            .bind(path_text(path))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("read a file's history"))?;
        rows.iter().map(file_from_row).collect()
    }

    /// Live rows with an id above `after`, in id order, at most `limit`: for paging through
    /// unfinished work without loading all of it.
    pub async fn live_page(&self, after: i64, limit: u32) -> Result<Vec<FileRecord>, LedgerError> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE id > ? AND state NOT IN ('deleted', 'abandoned') \
             ORDER BY id LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("page through live rows"))?;
        rows.iter().map(file_from_row).collect()
    }

    /// Records a new file as pending with its key; fails if the path has a live row.
    pub async fn insert_pending(
        &self,
        path: &Path,
        size: u64,
        mtime_ms: i64,
        bucket: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<FileRecord, LedgerError> {
        self.insert(false, path, size, mtime_ms, bucket, key, now_ms)
            .await?
            .ok_or(LedgerError::NoRowId {
                what: "record a new file",
            })
    }

    /// The live row of `path` if it has one (`false`), else a new pending row with this key
    /// (`true`). One write for a new file, where reading first would cost a read and a write.
    pub async fn live_or_insert_pending(
        &self,
        path: &Path,
        size: u64,
        mtime_ms: i64,
        bucket: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<(FileRecord, bool), LedgerError> {
        if let Some(row) = self
            .insert(true, path, size, mtime_ms, bucket, key, now_ms)
            .await?
        {
            return Ok((row, true));
        }
        match self.live(path).await? {
            Some(row) => Ok((row, false)),
            // The live row ended in between (not while one worker owns the path): try again.
            None => self
                .insert_pending(path, size, mtime_ms, bucket, key, now_ms)
                .await
                .map(|row| (row, true)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert(
        &self,
        unless_live: bool,
        path: &Path,
        size: u64,
        mtime_ms: i64,
        bucket: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<FileRecord>, LedgerError> {
        let id = self
            .write(Write::InsertPending {
                unless_live,
                path: path_text(path),
                size: to_i64(size),
                mtime_ms,
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                now_ms,
            })
            .await?;
        if id == 0 {
            return Ok(None);
        }
        Ok(Some(FileRecord {
            id,
            path: path.to_owned(),
            size,
            mtime_ms,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            state: FileState::Pending,
            upload_id: None,
            part_size: None,
            etag: None,
            attempts: 0,
            last_error: None,
        }))
    }

    /// Starts a row over as pending (the file changed, or S3 lost the upload): new size,
    /// mtime and key, no upload id, no parts.
    pub async fn restart(
        &self,
        id: i64,
        size: u64,
        mtime_ms: i64,
        bucket: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<(), LedgerError> {
        self.write(Write::Restart {
            id,
            size: to_i64(size),
            mtime_ms,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            now_ms,
        })
        .await?;
        Ok(())
    }

    /// A multipart upload was started for the row.
    pub async fn start_multipart(
        &self,
        id: i64,
        upload_id: &str,
        part_size: u64,
        now_ms: i64,
    ) -> Result<(), LedgerError> {
        self.write(Write::StartMultipart {
            id,
            upload_id: upload_id.to_owned(),
            part_size: to_i64(part_size),
            now_ms,
        })
        .await?;
        Ok(())
    }

    /// S3 acknowledged a part.
    pub async fn record_part(&self, id: i64, part: &PartRecord) -> Result<(), LedgerError> {
        self.write(Write::RecordPart {
            id,
            number: part.number,
            size: to_i64(part.size),
            etag: part.etag.clone(),
            md5_hex: hex::encode(part.md5),
        })
        .await?;
        Ok(())
    }

    /// Forgets a part S3 no longer lists.
    pub async fn forget_part(&self, id: i64, number: i32) -> Result<(), LedgerError> {
        self.write(Write::ForgetPart { id, number }).await?;
        Ok(())
    }

    /// The acknowledged parts of a row, by part number.
    pub async fn parts(&self, id: i64) -> Result<Vec<PartRecord>, LedgerError> {
        let rows = sqlx::query(
            "SELECT part_number, size, etag, md5_hex FROM parts WHERE file_id = ? ORDER BY part_number",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read parts"))?;
        Ok(rows
            .iter()
            .map(|row| {
                let mut md5 = [0u8; 16];
                // A malformed stored MD5 reads as zeros: the part is then re-sent.
                let _ = hex::decode_to_slice(row.get::<String, _>("md5_hex"), &mut md5);
                PartRecord {
                    number: row.get("part_number"),
                    size: to_u64(row.get("size")),
                    etag: row.get("etag"),
                    md5,
                }
            })
            .collect())
    }

    /// S3 holds the object with this ETag. Its parts stay until the row is pruned: they
    /// are no longer read, and leaving them saves a write on every upload.
    pub async fn mark_uploaded(&self, id: i64, etag: &str, now_ms: i64) -> Result<(), LedgerError> {
        self.write(Write::MarkUploaded {
            id,
            etag: etag.to_owned(),
            now_ms,
        })
        .await?;
        Ok(())
    }

    /// Ends a row as `deleted` or `abandoned`, with a note for the latter.
    pub async fn finish(
        &self,
        id: i64,
        state: FileState,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<(), LedgerError> {
        self.write(Write::Finish {
            id,
            state,
            note: note.map(str::to_owned),
            now_ms,
        })
        .await?;
        Ok(())
    }

    /// Records a failed attempt and when the file is due again.
    pub async fn record_failure(
        &self,
        id: i64,
        error: &str,
        next_attempt_ms: i64,
        now_ms: i64,
    ) -> Result<u32, LedgerError> {
        let attempts = self
            .write(Write::RecordFailure {
                id,
                error: error.to_owned(),
                next_attempt_ms,
                now_ms,
            })
            .await?;
        Ok(u32::try_from(attempts).unwrap_or(u32::MAX))
    }

    /// Deletes finished rows last touched before `before_ms`.
    pub async fn prune(&self, before_ms: i64) -> Result<u64, LedgerError> {
        let pruned = self.write(Write::Prune { before_ms }).await?;
        Ok(u64::try_from(pruned).unwrap_or(0))
    }

    /// Waits for the writes already queued, then closes the writer and the pool, flushing
    /// the WAL. Later writes fail.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.writes.send(Message::Close(done)).is_ok() {
            let _ = closed.await;
        }
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("l.db")).await.unwrap();
        (dir, ledger)
    }

    #[tokio::test]
    async fn a_file_goes_through_its_states_once() {
        let (_dir, ledger) = ledger().await;
        let path = Path::new("/logs/a.gz");
        assert_eq!(ledger.live(path).await.unwrap(), None);
        let row = ledger
            .insert_pending(path, 10, 5, "b", "k", 1)
            .await
            .unwrap();
        assert_eq!(ledger.live(path).await.unwrap(), Some(row.clone()));
        // A second live row for the same path is refused.
        assert!(
            ledger
                .insert_pending(path, 10, 5, "b", "k", 1)
                .await
                .is_err()
        );

        ledger.start_multipart(row.id, "u1", 5, 2).await.unwrap();
        let part = PartRecord {
            number: 1,
            size: 5,
            etag: "e1".into(),
            md5: [7; 16],
        };
        ledger.record_part(row.id, &part).await.unwrap();
        assert_eq!(ledger.parts(row.id).await.unwrap(), [part]);
        let live = ledger.live(path).await.unwrap().unwrap();
        assert_eq!(live.state, FileState::Uploading);
        assert_eq!(live.upload_id.as_deref(), Some("u1"));

        assert_eq!(
            ledger.record_failure(row.id, "boom", 9, 3).await.unwrap(),
            1
        );
        ledger.mark_uploaded(row.id, "etag-2", 4).await.unwrap();
        let live = ledger.live(path).await.unwrap().unwrap();
        assert_eq!(live.state, FileState::Uploaded);
        assert_eq!(live.etag.as_deref(), Some("etag-2"));

        ledger
            .finish(row.id, FileState::Deleted, None, 5)
            .await
            .unwrap();
        assert_eq!(ledger.live(path).await.unwrap(), None);
        // The path can be taken on again; the history keeps both rows.
        ledger
            .insert_pending(path, 3, 6, "b", "k2", 7)
            .await
            .unwrap();
        let history = ledger.history(path).await.unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].state, FileState::Deleted);
        assert_eq!(ledger.prune(6).await.unwrap(), 1);
        assert_eq!(ledger.history(path).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_new_file_takes_one_write_and_a_known_one_keeps_its_row() {
        let (_dir, ledger) = ledger().await;
        let path = Path::new("/logs/c.gz");
        let (row, inserted) = ledger
            .live_or_insert_pending(path, 10, 5, "b", "k1", 1)
            .await
            .unwrap();
        assert!(inserted);
        assert_eq!((row.key.as_str(), row.state), ("k1", FileState::Pending));
        ledger.mark_uploaded(row.id, "e", 2).await.unwrap();
        // Known: the live row with its first key, whatever key is offered now.
        let (again, inserted) = ledger
            .live_or_insert_pending(path, 10, 5, "b", "k2", 3)
            .await
            .unwrap();
        assert!(!inserted);
        assert_eq!(again.id, row.id);
        assert_eq!(again.key, "k1");
        assert_eq!(again.state, FileState::Uploaded);
        // Finished rows are history: the path is taken on again.
        ledger
            .finish(row.id, FileState::Deleted, None, 4)
            .await
            .unwrap();
        let (next, inserted) = ledger
            .live_or_insert_pending(path, 11, 6, "b", "k3", 5)
            .await
            .unwrap();
        assert!(inserted);
        assert_ne!(next.id, row.id);
        assert_eq!(ledger.history(path).await.unwrap().len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_transactions_and_a_failing_one_fails_alone() {
        let (_dir, ledger) = ledger().await;
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..200 {
            let ledger = ledger.clone();
            writes.spawn(async move {
                // Every tenth write takes a path another one takes too.
                let path = PathBuf::from(format!("/logs/{}.gz", if i % 10 == 0 { 0 } else { i }));
                ledger
                    .insert_pending(&path, 1, 1, "b", "k", 1)
                    .await
                    .map(|row| row.id)
            });
        }
        let mut ok = 0;
        let mut refused = 0;
        while let Some(result) = writes.join_next().await {
            match result.unwrap() {
                Ok(_) => ok += 1,
                Err(LedgerError::Query { what, .. }) => {
                    assert_eq!(what, "record a new file");
                    refused += 1;
                }
                Err(other) => panic!("{other}"),
            }
        }
        // 180 distinct paths and one of the 20 writers of /logs/0.gz.
        assert_eq!((ok, refused), (181, 19));
        assert_eq!(ledger.live_page(0, 1000).await.unwrap().len(), 181);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_taken_on_together_go_through_their_states_together() {
        let (_dir, ledger) = ledger().await;
        // One path is known already: it keeps its row.
        let known = ledger
            .insert_pending(Path::new("/logs/7.gz"), 1, 1, "b", "old", 1)
            .await
            .unwrap();
        let mut files = tokio::task::JoinSet::new();
        for i in 0..100 {
            let ledger = ledger.clone();
            files.spawn(async move {
                let path = PathBuf::from(format!("/logs/{i}.gz"));
                let (row, inserted) = ledger
                    .live_or_insert_pending(&path, 1, 1, "b", &format!("k{i}"), 2)
                    .await
                    .unwrap();
                ledger
                    .mark_uploaded(row.id, &format!("e{i}"), 3)
                    .await
                    .unwrap();
                let state = if i % 2 == 0 {
                    FileState::Deleted
                } else {
                    FileState::Abandoned
                };
                let note = (i % 2 == 1).then_some("gone");
                ledger.finish(row.id, state, note, 4).await.unwrap();
                (i, row, inserted)
            });
        }
        while let Some(joined) = files.join_next().await {
            let (i, row, inserted) = joined.unwrap();
            let path = PathBuf::from(format!("/logs/{i}.gz"));
            assert_eq!(inserted, i != 7, "{i}");
            if i == 7 {
                assert_eq!((row.id, row.key.as_str()), (known.id, "old"));
            }
            let history = ledger.history(&path).await.unwrap();
            assert_eq!(history.len(), 1, "{i}");
            let done = &history[0];
            assert_eq!(done.etag.as_deref(), Some(format!("e{i}").as_str()));
            assert_eq!(done.path, path);
            if i % 2 == 0 {
                assert_eq!(
                    (done.state, done.last_error.as_deref()),
                    (FileState::Deleted, None)
                );
            } else {
                assert_eq!(
                    (done.state, done.last_error.as_deref()),
                    (FileState::Abandoned, Some("gone"))
                );
            }
        }
        assert!(ledger.live_page(0, 1000).await.unwrap().is_empty());
    }

    fn request(write: Write) -> WriteRequest {
        let (reply, _) = oneshot::channel();
        WriteRequest { write, reply }
    }

    #[tokio::test]
    async fn one_statement_serves_each_kind_of_frequent_write() {
        let (_dir, ledger) = ledger().await;
        let known = ledger
            .insert_pending(Path::new("/logs/known.gz"), 1, 1, "b", "k", 1)
            .await
            .unwrap();
        let mut conn = ledger.pool.acquire().await.unwrap();
        let insert = |name: &str| {
            request(Write::InsertPending {
                unless_live: true,
                path: format!("/logs/{name}.gz"),
                size: 5,
                mtime_ms: 6,
                bucket: "b".into(),
                key: format!("k-{name}"),
                now_ms: 7,
            })
        };
        let inserts = [insert("a"), insert("known"), insert("c")];
        let groups = Group::of(&inserts);
        assert_eq!(groups[0].members, [0, 1, 2]);
        let ids = groups[0].apply(&mut conn).await.unwrap();
        assert!(ids[0] > known.id && ids[2] > known.id, "{ids:?}");
        assert_eq!(ids[1], 0, "a live row is left alone");
        let row = ledger.live(Path::new("/logs/c.gz")).await.unwrap().unwrap();
        assert_eq!((row.id, row.size, row.mtime_ms), (ids[2], 5, 6));
        assert_eq!((row.bucket.as_str(), row.key.as_str()), ("b", "k-c"));

        let marks = [
            request(Write::MarkUploaded {
                id: ids[0],
                etag: "e0".into(),
                now_ms: 8,
            }),
            request(Write::MarkUploaded {
                id: 999_999,
                etag: "e1".into(),
                now_ms: 8,
            }),
        ];
        let groups = Group::of(&marks);
        assert_eq!(groups[1].apply(&mut conn).await.unwrap(), [1, 0]);
        let finishes = [
            request(Write::Finish {
                id: ids[0],
                state: FileState::Deleted,
                note: None,
                now_ms: 9,
            }),
            request(Write::Finish {
                id: ids[2],
                state: FileState::Abandoned,
                note: Some("gone".into()),
                now_ms: 9,
            }),
        ];
        let groups = Group::of(&finishes);
        assert_eq!(groups[2].apply(&mut conn).await.unwrap(), [1, 1]);
        drop(conn);
        let a = ledger.history(Path::new("/logs/a.gz")).await.unwrap();
        assert_eq!(a[0].state, FileState::Deleted);
        assert_eq!(a[0].etag.as_deref(), Some("e0"));
        let c = ledger.history(Path::new("/logs/c.gz")).await.unwrap();
        assert_eq!(
            (c[0].state, c[0].last_error.as_deref()),
            (FileState::Abandoned, Some("gone"))
        );
        // The same row twice in a batch: no sharing, the writes go one by one, in order.
        let twice = [
            request(Write::MarkUploaded {
                id: known.id,
                etag: "e".into(),
                now_ms: 10,
            }),
            request(Write::Finish {
                id: known.id,
                state: FileState::Deleted,
                note: None,
                now_ms: 11,
            }),
        ];
        assert!(Group::of(&twice).is_empty());
    }

    #[tokio::test]
    async fn restart_forgets_the_upload() {
        let (_dir, ledger) = ledger().await;
        let path = Path::new("/logs/b.gz");
        let row = ledger
            .insert_pending(path, 10, 5, "b", "k", 1)
            .await
            .unwrap();
        ledger.start_multipart(row.id, "u1", 5, 2).await.unwrap();
        ledger
            .record_part(
                row.id,
                &PartRecord {
                    number: 2,
                    size: 5,
                    etag: "e".into(),
                    md5: [1; 16],
                },
            )
            .await
            .unwrap();
        ledger.restart(row.id, 20, 6, "b", "k2", 3).await.unwrap();
        let live = ledger.live(path).await.unwrap().unwrap();
        assert_eq!(live.state, FileState::Pending);
        assert_eq!((live.size, live.mtime_ms, live.key.as_str()), (20, 6, "k2"));
        assert_eq!(live.upload_id, None);
        assert!(ledger.parts(row.id).await.unwrap().is_empty());
        let page = ledger.live_page(0, 10).await.unwrap();
        assert_eq!(page.len(), 1);
        assert!(ledger.live_page(row.id, 10).await.unwrap().is_empty());
    }
}
