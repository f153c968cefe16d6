//! Containers without a daemon: an OCI runtime (runc here, crun where the host allows it)
//! driven through its command line, each container a child of the process that runs it, so
//! a restart or absence of dockerd costs the container nothing.
//!
//! - [`store`]: images unpacked once ([`layers`]: whiteouts, hard links, ownership, every
//!   path kept inside the root) into a content-addressed store shared read-only by
//!   containers, evicted least recently used first beyond a size.
//! - [`registry`]: registry pulls over the OCI distribution API (`oci-client`), with the
//!   same credentials as Docker pulls.
//! - [`spec`]: a container's `config.json` (process, user, env, working directory, mounts,
//!   network host or none, memory, CPU and pids limits, rlimits), through `oci-spec`.
//! - [`runc`]: `run` in the foreground (exit code and output are the child's), `kill`,
//!   `exec`, `list`, `delete`, and the OOM kill count from the container's cgroup.
//!
//! A bundle is a directory holding `config.json`; the root filesystem stays in the store
//! (the config points to it, read-only), and the container gets a fresh `/tmp` and whatever
//! bind mounts it is given (the task sandbox).

pub mod layers;
pub mod registry;
pub mod runc;
pub mod spec;
pub mod store;

use std::io;
use std::path::{Path, PathBuf};

use singularity_artifacts::PathRefusal;

pub use runc::{ExecChild, OciRuntime, RunningContainer, oom_killed};
pub use spec::{BundleConfig, runtime_spec};
pub use store::{ImageConfig, ImageStore, StoredImage};

/// A daemonless-container operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The runtime binary could not be started.
    #[error("cannot run the OCI runtime {}: {source}", binary.display())]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The runtime refused or failed a command.
    #[error("the OCI runtime failed to {what}: {message}")]
    Runtime {
        /// The command.
        what: &'static str,
        /// Its stderr.
        message: String,
    },
    /// The container did not start.
    #[error("the OCI runtime could not start the container (exit {status}): {message}")]
    Start {
        /// The runtime's exit code.
        status: i32,
        /// Its stderr.
        message: String,
    },
    /// The runtime's container list is not JSON.
    #[error("cannot read the OCI runtime's container list: {0}")]
    List(#[source] serde_json::Error),
    /// A runtime configuration could not be built.
    #[error("invalid OCI runtime configuration: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    /// Bridge networking needs a daemon.
    #[error("network BRIDGE is not available without a container daemon: use HOST or NONE")]
    Bridge,
    /// An rlimit name not known.
    #[error("unknown rlimit `{name}`")]
    UnknownRlimit {
        /// The name.
        name: String,
    },
    /// A layer entry's name (or a hard link's target) is refused by the extraction rules.
    #[error("layer {layer}: entry {entry:?} {reason}")]
    UnsafeLayerEntry {
        /// The layer.
        layer: String,
        /// The entry's name.
        entry: String,
        /// Why.
        reason: PathRefusal,
    },
    /// The image's layers hold more than the extraction limits allow.
    #[error("layer {layer}: the image exceeds {limit}")]
    ImageTooLarge {
        /// The layer being applied.
        layer: String,
        /// The limit, in words.
        limit: String,
    },
    /// A layer could not be applied.
    #[error("layer {layer}: cannot {what}: {source}")]
    Layer {
        /// The layer.
        layer: String,
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// A `docker save` tarball is not usable.
    #[error("{}: not a docker-archive image: {reason}", path.display())]
    BadArchive {
        /// The tarball.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A registry image could not be pulled.
    #[error("cannot pull {image}: {reason}")]
    Pull {
        /// The reference.
        image: String,
        /// Why.
        reason: String,
        /// Whether another attempt may fare better (the network, a 5xx or 429 answer).
        transient: bool,
    },
    /// A stored image is damaged.
    #[error("image {image}: {reason}")]
    BadImage {
        /// The image id.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// The image store could not be read or written.
    #[error("image store: cannot {what} {}: {source}", path.display())]
    Store {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl OciError {
    fn layer(layer: &str, what: &'static str, source: io::Error) -> Self {
        Self::Layer {
            layer: layer.to_owned(),
            what,
            source,
        }
    }

    fn store(what: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Store {
            what,
            path: path.to_owned(),
            source,
        }
    }
}
