//! `open_sqlite`: creation, pragmas, migrations, reopening, errors naming the path.

use singularity_runtime::{SqliteError, open_sqlite};
use sqlx::migrate::Migrator;

static MIGRATOR: Migrator = sqlx::migrate!("tests/migrations");

#[tokio::test]
async fn creates_migrates_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    // The directory does not exist yet either.
    let path = dir.path().join("state/cache.db");

    let pool = open_sqlite(&path, &MIGRATOR).await.unwrap();
    assert!(path.is_file());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(fk, 1);
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(busy, 10_000);

    sqlx::query("INSERT INTO downloads (id, url, size) VALUES (1, 's3://b/k', 42)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO users (download_id, task_id) VALUES (1, 't1')")
        .execute(&pool)
        .await
        .unwrap();
    // Foreign keys are enforced.
    let orphan = sqlx::query("INSERT INTO users (download_id, task_id) VALUES (99, 't2')")
        .execute(&pool)
        .await;
    assert!(orphan.is_err(), "foreign key not enforced");
    pool.close().await;

    // Reopening applies nothing new and keeps the data.
    let pool = open_sqlite(&path, &MIGRATOR).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied, 2);
    let size: i64 = sqlx::query_scalar("SELECT size FROM downloads WHERE url = 's3://b/k'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(size, 42);
    // ON DELETE CASCADE works because foreign keys are on in every pooled connection.
    sqlx::query("DELETE FROM downloads WHERE id = 1")
        .execute(&pool)
        .await
        .unwrap();
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(users, 0);
    pool.close().await;
}

#[tokio::test]
async fn errors_name_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let path = file.join("db.sqlite");
    let err = open_sqlite(&path, &MIGRATOR).await.unwrap_err();
    assert!(matches!(err, SqliteError::CreateDir { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    // A file that is not a database.
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let err = open_sqlite(&garbage, &MIGRATOR).await.unwrap_err();
    assert!(
        matches!(err, SqliteError::Open { .. } | SqliteError::Migrate { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("garbage.db"), "{err}");
}
