//! Real services for the singularity-agent tests.
//!
//! - [`S3Server`]: an S3-protocol server (s3s-fs over a temp dir, SigV4 with a generated key
//!   pair) on `127.0.0.1:<free port>`, one per test, on its own thread and runtime.
//! - The `singularity-test-s3` binary serves the same for `scripts/services.sh` and benches.
//! - Independent clients ([`S3Endpoint::s5cmd_cat`], [`S3Endpoint::s5cmd_ls`],
//!   [`S3Endpoint::s5cmd_put`], [`S3Endpoint::boto3_get_range`]) so a test checks what landed
//!   in S3 with something other than the code under test.
//! - [`FaultyS3`]: an endpoint that hangs or trickles for one bucket and forwards the rest.
//! - [`SmallFs`]: a tmpfs of a given size, for full-disk tests.
//! - Helpers that return a machine-wide service or panic with how to start it:
//!   [`docker_socket`], [`podman_socket`], [`test_image`], [`test_image_in`], [`registry`],
//!   [`s5cmd_path`], [`python`], [`services_s3`]. They read the process environment, then `.services/env`.
//!
//! - [`TestCgroup`]: a real cgroup standing for the one a Mesos agent makes for an executor.
//! - [`AuthRegistry`]: a docker-registry of a test's own behind basic auth.
//!
//! Start the machine-wide services with `scripts/services.sh up` (see `docs/testing.md`).

mod auth_registry;
mod cgroups;
mod clients;
mod coalesce;
mod fault;
mod s3_server;
mod services;
mod small_fs;

pub use auth_registry::{AuthRegistry, REGISTRY_PASSWORD, REGISTRY_USER};
pub use cgroups::TestCgroup;
pub use clients::{ListedObject, S3Endpoint, s5cmd};
pub use coalesce::{Coalesce, FRAME_SIZE};
pub use fault::{Fault, FaultStats, FaultyS3};
pub use s3_server::{
    REGION, S3Server, S3ServerError, ServedCounters, build_service, serve, serve_counted,
};
pub use services::{
    docker_cli, docker_host, docker_socket, env_file_path, oci_runtime, podman_host, podman_socket,
    python, registry, s5cmd_path, save_test_image, services_s3, setting, test_image, test_image_in,
    unique_name,
};
pub use small_fs::SmallFs;
