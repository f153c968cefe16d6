//! A task's logs, from the bytes its processes write to compressed files the S3 uploader takes.
//!
//! The executor is the only writer of a task's `service.log`; this crate rotates it in-process
//! (rename-based, at a line boundary, never copy-and-truncate), compresses the finished segments
//! under names Singularity's upload glob (`service.log*.[gb]z*`) matches, keeps disk use bounded,
//! and finishes a task's logs at teardown. The cleanup job uses the same code to recover the logs
//! of a task whose executor died.
//!
//! - [`additional`]: files the task writes itself (`logrotateAdditionalFiles`), rotated without
//!   losing what the task appends meanwhile.

pub mod additional;
