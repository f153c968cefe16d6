//! Tests across daemons: the built binaries, run as subprocesses, against the real S3-protocol
//! server, checked with an independent client.

mod logs_to_s3;
mod support;
