//! The executor's integration tests, one binary: the real `singularity-executor` binary
//! against the strict fake agent (launch to terminal update, kills, limits, standalone mode,
//! Docker tasks on the real engines), artifact staging against a real S3-protocol server, a
//! local HTTP server and the real downloader binary, and the metadata files as written.
//!
//! One module per topic; [`support`] and [`staging_support`] hold what they share.

mod additional_logs;
mod artifacts;
mod cgroups;
mod docker;
mod hostile_launch;
mod kills;
mod lifecycle;
mod limits;
mod logs;
mod metadata_files;
mod oci;
mod shell_commands;
mod staging_downloader;
mod staging_external;
mod staging_inprocess;
mod staging_support;
mod standalone;
mod support;
