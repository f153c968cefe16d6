//! Host paths for bind mounts when the executor itself runs in a container.
//!
//! The engine resolves a bind mount's source on its own host. An executor on the host sees
//! the same paths, but an executor in a container that shares the host's engine (its socket
//! mounted in) sees the sandbox at the path its own mounts put it, which the engine does not
//! know. Each bind source is therefore translated through the mounts that make it visible:
//! either `dockerHostPathMappings`, or the executor's own container's mounts as the engine
//! reports them. A path outside every mount has no host equivalent; mounting it would give the
//! task an empty directory the engine creates, so the task fails naming it instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use singularity_containers::{ContainerEngine, EngineError, MountPoint};

/// How the paths the executor sees become paths on the engine's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPaths {
    /// The executor runs on the engine's host: paths are the same.
    Same,
    /// The executor runs in a container: a path is found under one of these directories.
    Mapped {
        /// Where the mappings come from, for messages (`dockerHostPathMappings`, or the
        /// container id).
        origin: String,
        /// Executor-side directory → host directory, longest executor-side path first.
        mappings: Vec<(PathBuf, PathBuf)>,
    },
}

/// A path the engine's host cannot see.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} has no path on the container engine's host: it is under no mount of {origin}; mount its directory into the executor's container or map it in dockerHostPathMappings",
    path.display()
)]
pub struct NoHostPath {
    /// The path as the executor sees it.
    pub path: PathBuf,
    /// What was searched (`dockerHostPathMappings`, or the executor's container).
    pub origin: String,
}

impl HostPaths {
    /// Mappings from `dockerHostPathMappings`; `None` when it is empty.
    pub fn from_config(mappings: &BTreeMap<PathBuf, PathBuf>) -> Option<Self> {
        (!mappings.is_empty()).then(|| {
            Self::mapped(
                "dockerHostPathMappings".to_owned(),
                mappings.iter().map(|(i, h)| (i.clone(), h.clone())),
            )
        })
    }

    /// Mappings from the mounts of container `id`.
    pub fn from_mounts(id: &str, mounts: &[MountPoint]) -> Self {
        Self::mapped(
            format!("the executor's container {}", short_id(id)),
            mounts
                .iter()
                .map(|m| (PathBuf::from(&m.destination), PathBuf::from(&m.source))),
        )
    }

    fn mapped(origin: String, mappings: impl Iterator<Item = (PathBuf, PathBuf)>) -> Self {
        let mut mappings: Vec<_> = mappings.collect();
        // The deepest mount wins, as in the container's own view of nested mounts.
        mappings.sort_by_key(|(inside, _)| std::cmp::Reverse(inside.components().count()));
        Self::Mapped { origin, mappings }
    }

    /// How the executor finds them: the configured mappings, else the mounts of the container
    /// it runs in (asked of `engine`), else none.
    pub async fn resolve<E: ContainerEngine>(
        engine: &E,
        configured: &BTreeMap<PathBuf, PathBuf>,
        own_container: Option<String>,
    ) -> Result<Self, EngineError> {
        if let Some(paths) = Self::from_config(configured) {
            return Ok(paths);
        }
        match own_container {
            None => Ok(Self::Same),
            Some(id) => Ok(Self::from_mounts(&id, &engine.mounts(&id).await?)),
        }
    }

    /// `path` (absolute, as the executor sees it) on the engine's host.
    pub fn host_path(&self, path: &Path) -> Result<PathBuf, NoHostPath> {
        match self {
            Self::Same => Ok(path.to_owned()),
            Self::Mapped { origin, mappings } => mappings
                .iter()
                .find_map(|(inside, host)| Some(host.join(path.strip_prefix(inside).ok()?)))
                .map(|p| trim_trailing_join(&p))
                .ok_or_else(|| NoHostPath {
                    path: path.to_owned(),
                    origin: origin.clone(),
                }),
        }
    }
}

/// `host.join("")` leaves a trailing separator; the engine takes either, messages read better
/// without it.
fn trim_trailing_join(path: &Path) -> PathBuf {
    path.components().collect()
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(source: &str, destination: &str) -> MountPoint {
        MountPoint {
            source: source.into(),
            destination: destination.into(),
        }
    }

    #[test]
    fn on_the_host_paths_are_unchanged() {
        let path = Path::new("/var/lib/mesos/slaves/s1/sandbox");
        assert_eq!(HostPaths::Same.host_path(path).unwrap(), path);
    }

    #[test]
    fn the_deepest_mount_translates_a_path() {
        let paths = HostPaths::from_mounts(
            "0123456789abcdef",
            &[
                mount("/srv/agent", "/var/lib/mesos"),
                mount("/srv/fast-disk", "/var/lib/mesos/slaves"),
                mount("/var/lib/docker/containers/x/hostname", "/etc/hostname"),
            ],
        );
        assert_eq!(
            paths
                .host_path(Path::new("/var/lib/mesos/slaves/s1/t1"))
                .unwrap(),
            Path::new("/srv/fast-disk/s1/t1")
        );
        assert_eq!(
            paths.host_path(Path::new("/var/lib/mesos/meta")).unwrap(),
            Path::new("/srv/agent/meta")
        );
        assert_eq!(
            paths.host_path(Path::new("/var/lib/mesos")).unwrap(),
            Path::new("/srv/agent")
        );
    }

    #[test]
    fn a_path_under_no_mount_is_refused_naming_it() {
        let paths = HostPaths::from_mounts(
            "0123456789abcdef0123",
            &[mount("/srv/agent", "/var/lib/mesos")],
        );
        let error = paths
            .host_path(Path::new("/var/lib/mesoskeep/t1"))
            .unwrap_err();
        assert_eq!(error.path, Path::new("/var/lib/mesoskeep/t1"));
        let message = error.to_string();
        assert!(message.contains("/var/lib/mesoskeep/t1"), "{message}");
        assert!(message.contains("container 0123456789ab"), "{message}");
    }

    #[test]
    fn configured_mappings_win_and_empty_means_none() {
        assert_eq!(HostPaths::from_config(&BTreeMap::new()), None);
        let configured = BTreeMap::from([(PathBuf::from("/sandboxes"), PathBuf::from("/data/s"))]);
        let paths = HostPaths::from_config(&configured).unwrap();
        assert_eq!(
            paths.host_path(Path::new("/sandboxes/t1")).unwrap(),
            Path::new("/data/s/t1")
        );
        let error = paths.host_path(Path::new("/elsewhere")).unwrap_err();
        assert!(error.to_string().contains("dockerHostPathMappings"));
    }
}
