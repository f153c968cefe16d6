//! Tests across daemons: the built binaries, run as subprocesses, against the real S3-protocol
//! server (and dockerd), checked with an independent client.

mod agent_container;
mod deb;
mod killed_executor;
mod logs_to_s3;
mod restarts;
mod support;
