//! Behaviour tests of `singularity-s3-uploader` against a real S3-protocol server: uploads,
//! what confirms an upload before a file is deleted, recovery from crashes and outages, and
//! the built binary. One module per topic; `support` holds what they share.

mod support;

mod binary;
mod confirmation;
mod crash_sweep;
mod dead_uploads;
mod full_disk;
mod hostile_metadata;
mod hung_s3;
mod recovery;
mod uploads;
