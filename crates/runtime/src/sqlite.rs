//! SQLite databases of the daemons: one file, WAL, migrations applied on open.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// How long a connection waits for another writer's lock before failing with "busy".
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why [`open_sqlite`] failed. Every variant names the database file.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// The database's directory could not be created.
    #[error("create directory {} for database {}: {source}", dir.display(), path.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The database file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file could not be opened or created as a SQLite database.
    #[error("open SQLite database {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: sqlx::Error,
    },
    /// A migration failed, or the database has migrations this build does not know.
    #[error("migrate SQLite database {}: {source}", path.display())]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: sqlx::migrate::MigrateError,
    },
}

/// Opens (creating it and its directory if missing) the SQLite database at `path` with WAL
/// journaling, `synchronous=NORMAL`, a [`BUSY_TIMEOUT`] and foreign keys enforced, then applies
/// `migrator`'s pending migrations. Reopening an up-to-date database applies nothing.
///
/// ```no_run
/// // A directory of `<version>_<name>.sql` files, embedded at compile time.
/// static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("tests/migrations");
/// # async fn f() -> Result<(), singularity_runtime::SqliteError> {
/// let pool = singularity_runtime::open_sqlite("/var/lib/singularity/cache.db".as_ref(), &MIGRATOR).await?;
/// # Ok(()) }
/// ```
pub async fn open_sqlite(
    path: &Path,
    migrator: &'static Migrator,
) -> Result<SqlitePool, SqliteError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| SqliteError::CreateDir {
                dir: dir.to_owned(),
                path: path.to_owned(),
                source,
            })?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .map_err(|source| SqliteError::Open {
            path: path.to_owned(),
            source,
        })?;
    migrator
        .run(&pool)
        .await
        .map_err(|source| SqliteError::Migrate {
            path: path.to_owned(),
            source,
        })?;
    Ok(pool)
}
