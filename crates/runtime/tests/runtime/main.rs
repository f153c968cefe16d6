//! Behaviour tests of `singularity-runtime`: process-global pieces (sd_notify, signals,
//! tracing, the default credential chain) in child processes, S3 clients against a real
//! S3-protocol server, SQLite with the migrations in `tests/migrations/`. One module per topic.

mod process;
mod s3_client;
mod sqlite;
