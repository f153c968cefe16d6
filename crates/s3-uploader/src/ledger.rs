//! The ledger: each file's upload state in SQLite, so that a crash at any point resumes
//! without losing a file, without re-sending acknowledged parts and without deleting a file
//! S3 has not confirmed.
//!
//! States: `pending` (key chosen, nothing sent) → `uploading` (multipart upload id, parts
//! acknowledged so far in `parts`) → `uploaded` (S3's ETag) → `deleted` (local file removed).
//! `abandoned` ends a row whose file vanished or changed before it was uploaded. A path has
//! at most one live row.

use std::path::{Path, PathBuf};

use sqlx::sqlite::SqliteRow;
use sqlx::{Row as _, SqlitePool};

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
/// Writes go one at a time through an in-process lock: concurrent writers would otherwise
/// meet SQLite's busy handler, which sleeps milliseconds at a time, and a deferred
/// transaction that cannot upgrade to a writer fails outright.
#[derive(Debug, Clone)]
pub struct Ledger {
    pool: SqlitePool,
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
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
        Ok(Self {
            pool,
            writer: std::sync::Arc::default(),
        })
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

    /// Records a new file as pending with its key.
    pub async fn insert_pending(
        &self,
        path: &Path,
        size: u64,
        mtime_ms: i64,
        bucket: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<FileRecord, LedgerError> {
        let _writer = self.writer.lock().await;
        let id: i64 = sqlx::query(
            "INSERT INTO files (path, size, mtime_ms, bucket, object_key, state, created_ms, updated_ms) \
             VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) RETURNING id",
        )
        .bind(path_text(path))
        .bind(to_i64(size))
        .bind(mtime_ms)
        .bind(bucket)
        .bind(key)
        .bind(now_ms)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("record a new file"))?
        .get("id");
        Ok(FileRecord {
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
        })
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
        let _writer = self.writer.lock().await;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_error("begin a restart"))?;
        sqlx::query("DELETE FROM parts WHERE file_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(query_error("forget parts"))?;
        sqlx::query(
            "UPDATE files SET state = 'pending', size = ?, mtime_ms = ?, bucket = ?, object_key = ?, \
             upload_id = NULL, part_size = NULL, etag = NULL, updated_ms = ? WHERE id = ?",
        )
        .bind(to_i64(size))
        .bind(mtime_ms)
        .bind(bucket)
        .bind(key)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(query_error("start a file over"))?;
        tx.commit().await.map_err(query_error("commit a restart"))
    }

    /// A multipart upload was started for the row.
    pub async fn start_multipart(
        &self,
        id: i64,
        upload_id: &str,
        part_size: u64,
        now_ms: i64,
    ) -> Result<(), LedgerError> {
        let _writer = self.writer.lock().await;
        sqlx::query(
            "UPDATE files SET state = 'uploading', upload_id = ?, part_size = ?, updated_ms = ? WHERE id = ?",
        )
        .bind(upload_id)
        .bind(to_i64(part_size))
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(query_error("record a multipart upload"))?;
        Ok(())
    }

    /// S3 acknowledged a part.
    pub async fn record_part(&self, id: i64, part: &PartRecord) -> Result<(), LedgerError> {
        let _writer = self.writer.lock().await;
        sqlx::query(
            "INSERT OR REPLACE INTO parts (file_id, part_number, size, etag, md5_hex) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(part.number)
        .bind(to_i64(part.size))
        .bind(&part.etag)
        .bind(hex::encode(part.md5))
        .execute(&self.pool)
        .await
        .map_err(query_error("record a part"))?;
        Ok(())
    }

    /// Forgets a part S3 no longer lists.
    pub async fn forget_part(&self, id: i64, number: i32) -> Result<(), LedgerError> {
        let _writer = self.writer.lock().await;
        sqlx::query("DELETE FROM parts WHERE file_id = ? AND part_number = ?")
            .bind(id)
            .bind(number)
            .execute(&self.pool)
            .await
            .map_err(query_error("forget a part"))?;
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
        let _writer = self.writer.lock().await;
        sqlx::query(
            "UPDATE files SET state = 'uploaded', etag = ?, upload_id = NULL, last_error = NULL, \
             updated_ms = ? WHERE id = ?",
        )
        .bind(etag)
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(query_error("mark a file uploaded"))?;
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
        let _writer = self.writer.lock().await;
        sqlx::query(
            "UPDATE files SET state = ?, last_error = COALESCE(?, last_error), upload_id = NULL, \
             updated_ms = ? WHERE id = ?",
        )
        .bind(state.as_str())
        .bind(note)
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(query_error("finish a row"))?;
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
        let _writer = self.writer.lock().await;
        let attempts: i64 = sqlx::query(
            "UPDATE files SET attempts = attempts + 1, last_error = ?, next_attempt_ms = ?, updated_ms = ? \
             WHERE id = ? RETURNING attempts",
        )
        .bind(error)
        .bind(next_attempt_ms)
        .bind(now_ms)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("record a failure"))?
        .map_or(0, |row| row.get("attempts"));
        Ok(u32::try_from(attempts).unwrap_or(u32::MAX))
    }

    /// Deletes finished rows last touched before `before_ms`.
    pub async fn prune(&self, before_ms: i64) -> Result<u64, LedgerError> {
        let _writer = self.writer.lock().await;
        let done = sqlx::query(
            "DELETE FROM files WHERE state IN ('deleted', 'abandoned') AND updated_ms < ?",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await
        .map_err(query_error("prune finished rows"))?;
        Ok(done.rows_affected())
    }

    /// Closes the pool, flushing the WAL.
    pub async fn close(&self) {
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
