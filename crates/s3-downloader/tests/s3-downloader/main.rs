//! Behaviour tests of `singularity-s3-downloader` against a real S3-protocol server: the
//! fetcher and the cache (`cache_*`, `fetch_*`), the daemon through its HTTP API (`http_*`),
//! and the built binary. One module per topic; `support` holds what they share.

mod support;

mod cache_eviction;
mod cache_reconcile;
mod crash_sweep;
mod fetch_s3;
mod full_disk;
mod hostile_http;
mod http_binary;
mod http_download;
mod http_placement;
mod http_requests;
mod http_shutdown;
mod http_unix_socket;
mod hung_s3;
