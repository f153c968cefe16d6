//! `singularity-containers`: the container engine as the Singularity daemons use it.
//!
//! - [`ContainerEngine`] is the interface: images (present, inspect, load, pull, remove),
//!   containers (create, attach to the output, start, signal, stop with a grace, wait for the
//!   exit code and OOM flag, main pid, run a command inside, remove) and a listing by name prefix. Its types are
//!   engine-neutral ([`ContainerConfig`], [`EngineError`] with an [`EngineErrorKind`] callers
//!   can act on).
//! - [`DockerEngine`] implements it over the Docker Engine API on a unix socket (bollard),
//!   which podman's compatible service answers too; [`docker`] lists the differences it hides.
//! - [`auth`] finds registry credentials (`dockerAuthConfig`, or a docker config file);
//!   [`image`] splits references, pulls with attempts inside one deadline, and reads the image
//!   id of a `docker save` tarball; [`cgroup`] reads the cgroup hierarchies
//!   (`/proc/self/mountinfo`) and a process's cgroups, spells a cgroup parent for the engine's
//!   driver ([`ContainerEngine::cgroup_driver`]), reads and writes CFS quotas, and counts a
//!   container's threads from the host; [`own_container`] tells whether the calling process
//!   runs in a container, and which.
//!
//! - [`oci`] runs containers without a daemon: an image store unpacking `docker save`
//!   tarballs into shared root filesystems, the OCI runtime configuration of a container,
//!   and the OCI runtime's command line (runc, crun) with each container a child process.
//!
//! The executor runs a task's container through this crate (it plans the container from the
//! `TaskInfo` itself); the cleanup lists, stops and removes the containers the executor left,
//! found by the name [`singularity_common::naming::container_name`] gives them:
//!
//! ```no_run
//! # async fn cleanup() -> Result<(), singularity_containers::EngineError> {
//! use std::time::Duration;
//! use singularity_common::naming;
//! use singularity_containers::{ContainerEngine, DockerEngine};
//!
//! let engine = DockerEngine::new("/var/run/docker.sock", Duration::from_secs(30));
//! for container in engine.list(naming::DEFAULT_DOCKER_PREFIX).await? {
//!     if container.running {
//!         engine.stop(&container.id, Duration::from_secs(15)).await?;
//!     }
//!     engine.remove(&container.id).await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Reads and writes nothing but the engine's socket (and `/dev/kmsg`, `/proc`, `/sys/fs/cgroup`
//! to read what the engine does not say). No configuration of its own: callers pass the
//! socket, call deadline and credentials.

pub mod auth;
pub mod cgroup;
pub mod docker;
mod engine;
pub mod image;
pub mod oci;
pub mod own_container;

pub use docker::{DEFAULT_SOCKET, DockerEngine};
pub use engine::{
    Bind, ContainerConfig, ContainerEngine, ContainerExit, ContainerSummary, EngineError,
    EngineErrorKind, ExecSession, MountPoint, NetworkMode, OutputStream, PortPublish, RegistryAuth,
    Signal, Ulimit,
};
