//! Shared foundation of the singularity-agent daemons.
//!
//! This crate has no runtime: it reads and validates configuration (Java `.properties`,
//! Singularity YAML and native TOML), defines the records the daemons exchange through files
//! and HTTP (task definitions, S3 upload metadata, tail metadata, cleanup results, artifact
//! download requests), and makes every name that one daemon writes and another looks for
//! (task ids, container names, metadata file names, S3 keys). [`task_lock`] is the lock the
//! executor and the cleanup take on a task definition before working on its task.

pub mod config;
pub mod exit;
pub mod fsio;
pub mod keyfmt;
pub mod log_records;
pub mod naming;
pub mod records;
pub mod task_id;
pub mod task_lock;
pub mod task_logs;
