//! What a task's container gets ("Docker tasks" in `docs/executor.md`), decided without
//! an engine: the `TaskInfo` → container plan.
//!
//! Differences from Singularity's generated `docker.sh`, on purpose:
//! - the environment goes through the API, so values with newlines, quotes or backticks
//!   arrive intact, and both `LOG_DIR` (documented) and `LOG_HOME` (what the code set) exist;
//! - port mappings keep their protocol;
//! - docker parameters map to API fields; an unknown one fails the task naming it, instead
//!   of being pasted unquoted into a shell line;
//! - the command is split into words as a shell would split it, without expanding anything
//!   on the host.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use singularity_common::naming;
use singularity_mesos::types::Parameter;
use singularity_mesos::{ContainerInfo, DockerInfo};

use singularity_containers::auth::AuthSource;
use singularity_containers::image::ImageReference;
use singularity_containers::{Bind, ContainerConfig, NetworkMode, PortPublish, Ulimit};

use crate::run::TaskSpec;
use crate::settings::Settings;

/// Where the task directory appears inside every container.
pub const SANDBOX_MOUNT: &str = "/mnt/mesos/sandbox";

/// Image references naming a `docker save` tarball staged as an artifact.
pub const ARCHIVE_SCHEME: &str = "docker-archive://";
/// Image references naming a registry image explicitly.
pub const REGISTRY_SCHEME: &str = "docker://";

/// Docker parameters understood, as `--key` (and short `-k`) names.
pub const SUPPORTED_PARAMETERS: &[&str] = &[
    "memory",
    "m",
    "cpus",
    "pids-limit",
    "user",
    "u",
    "label",
    "l",
    "env",
    "e",
    "ulimit",
    "cap-add",
    "cap-drop",
    "entrypoint",
    "init",
    "hostname",
    "h",
    "add-host",
    "shm-size",
    "w",
    "workdir",
];

/// The smallest memory limit given from the task's `mem` resource; engines refuse less.
const MIN_MEMORY: i64 = 16 * 1024 * 1024;

/// Executor settings a container depends on.
#[derive(Debug, Clone)]
pub struct ContainerOptions {
    /// Container name prefix (`dockerPrefix`).
    pub prefix: String,
    /// Grace of `docker stop` when the task sets none (`dockerStopTimeout`).
    pub stop_timeout: Duration,
    /// `dockerInheritVariables` that are set in the executor's environment, in that order.
    pub inherited: Vec<(String, String)>,
    /// The executor's environment, for `-e NAME` parameters without a value.
    pub executor_env: BTreeMap<String, String>,
    /// Memory, cpu and pids limits from the task (`dockerLimitsFromResources`), for
    /// containers not created under the executor's cgroup.
    pub limits_from_resources: bool,
    /// CFS period of `cpuHardLimit` in µs (`defaultCfsPeriod`).
    pub cfs_period_us: u64,
    /// Registry credentials (`dockerAuthConfig`).
    pub auth: Option<AuthSource>,
    /// Pull attempts (`maxDockerPullAttempts`, at least 1).
    pub pull_attempts: u32,
    /// Deadline of a pull, all attempts together.
    pub pull_timeout: Duration,
    /// `dockerHostPathMappings` ([`super::host_paths`]).
    pub host_path_mappings: BTreeMap<PathBuf, PathBuf>,
}

impl ContainerOptions {
    /// The options the executor settings give, with the executor's environment `env` and
    /// home directory `home` (for `dockerAuthConfig.fromDockerConfig`).
    pub fn from_settings(
        settings: &Settings,
        env: &[(String, String)],
        home: Option<&Path>,
    ) -> Self {
        let executor = &settings.executor;
        let executor_env: BTreeMap<String, String> = env.iter().cloned().collect();
        let inherited = executor
            .docker_inherit_variables
            .iter()
            .filter_map(|name| Some((name.clone(), executor_env.get(name)?.clone())))
            .collect();
        Self {
            prefix: executor.docker_prefix.clone(),
            stop_timeout: Duration::from_secs(u64::from(executor.docker_stop_timeout)),
            inherited,
            executor_env,
            limits_from_resources: executor.docker_limits_from_resources,
            cfs_period_us: executor.default_cfs_period,
            auth: executor
                .docker_auth_config
                .as_ref()
                .and_then(|c| AuthSource::from_config(c, home)),
            pull_attempts: executor.max_docker_pull_attempts.max(1),
            pull_timeout: Duration::from_secs(executor.docker_pull_timeout_seconds.max(1)),
            host_path_mappings: executor.docker_host_path_mappings.clone(),
        }
    }
}

impl Default for ContainerOptions {
    fn default() -> Self {
        Self {
            prefix: naming::DEFAULT_DOCKER_PREFIX.to_owned(),
            stop_timeout: Duration::from_secs(15),
            inherited: Vec::new(),
            executor_env: BTreeMap::new(),
            limits_from_resources: false,
            cfs_period_us: 100_000,
            auth: None,
            pull_attempts: 2,
            pull_timeout: Duration::from_secs(600),
            host_path_mappings: BTreeMap::new(),
        }
    }
}

/// Where the image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A registry image.
    Registry(ImageReference),
    /// A `docker save` tarball in the task directory.
    Archive {
        /// The tarball.
        path: PathBuf,
    },
}

/// A task's container, ready to create.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPlan {
    /// The image.
    pub image: ImageSource,
    /// Pull even when the engine has the image (`force_pull_image`).
    pub force_pull: bool,
    /// The container; for an archive its `image` is filled in once the tarball is loaded.
    pub config: ContainerConfig,
}

/// Why a task's container cannot be planned; the message (the task's TASK_FAILED message)
/// names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `TaskInfo.container.docker` is not set.
    #[error("the task has no docker container")]
    NoDocker,
    /// A `docker-archive://` image names something else than a file in the task directory.
    #[error("docker-archive image must name a file in the task directory, not `{file}`")]
    ArchiveOutsideTask {
        /// The path after the scheme.
        file: String,
    },
    /// An image scheme other than `docker://` and `docker-archive://`.
    #[error("unsupported image scheme `{scheme}://`")]
    UnsupportedScheme {
        /// The scheme.
        scheme: String,
    },
    /// `docker.image` is empty.
    #[error("the docker image is empty")]
    EmptyImage,
    /// A network other than HOST, BRIDGE and NONE.
    #[error("unsupported docker network {network}")]
    UnsupportedNetwork {
        /// The network, upper-cased.
        network: String,
    },
    /// A volume without a container path.
    #[error("a docker volume has no container path")]
    VolumeWithoutPath,
    /// A volume mode other than RO and RW.
    #[error("docker volume {container_path} has mode {mode}, not RO or RW")]
    VolumeMode {
        /// The volume's container path.
        container_path: String,
        /// The mode, upper-cased.
        mode: String,
    },
    /// A docker parameter this executor does not map.
    #[error("unsupported docker parameter --{key}")]
    UnsupportedParameter {
        /// The parameter, without dashes.
        key: String,
    },
    /// A docker parameter whose value does not parse.
    #[error("docker parameter --{key} has an invalid value `{value}`")]
    InvalidParameter {
        /// The parameter, without dashes.
        key: String,
        /// The value.
        value: String,
    },
    /// The command does not split into words (an unterminated quote).
    #[error("the command cannot be split into words ({source}): {command}")]
    UnsplittableCommand {
        /// The command line.
        command: String,
        /// The cause.
        source: shell_words::ParseError,
    },
}

/// The image of `docker.image`, by scheme.
pub fn image_source(image: &str, task_dir: &Path) -> Result<ImageSource, PlanError> {
    if let Some(file) = image.strip_prefix(ARCHIVE_SCHEME) {
        let relative = Path::new(file);
        let plain = !file.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !plain {
            return Err(PlanError::ArchiveOutsideTask {
                file: file.to_owned(),
            });
        }
        return Ok(ImageSource::Archive {
            path: task_dir.join(relative),
        });
    }
    let reference = image.strip_prefix(REGISTRY_SCHEME).unwrap_or(image);
    if let Some((scheme, _)) = reference.split_once("://") {
        return Err(PlanError::UnsupportedScheme {
            scheme: scheme.to_owned(),
        });
    }
    if reference.is_empty() {
        return Err(PlanError::EmptyImage);
    }
    Ok(ImageSource::Registry(ImageReference::parse(reference)))
}

/// Parses a size as docker does: a number with an optional `b`, `k`, `m`, `g` or `t`
/// unit (binary multiples, an optional trailing `b` or `ib`).
pub fn parse_size(value: &str) -> Option<i64> {
    let value = value.trim().to_ascii_lowercase();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b').filter(|u| !u.is_empty()))
        .unwrap_or(unit);
    let multiplier: f64 = match unit {
        "" | "b" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * multiplier;
    (bytes.is_finite() && (0.0..9.2e18).contains(&bytes)).then_some(bytes as i64)
}

fn parse_ulimit(value: &str) -> Option<Ulimit> {
    let (name, limits) = value.split_once('=')?;
    let (soft, hard) = match limits.split_once(':') {
        Some((soft, hard)) => (soft.parse().ok()?, hard.parse().ok()?),
        None => {
            let both = limits.parse().ok()?;
            (both, both)
        }
    };
    (!name.is_empty()).then(|| Ulimit {
        name: name.to_owned(),
        soft,
        hard,
    })
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Sets `key` to `value`, keeping the position of an earlier entry for the same key.
fn set_env(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_owned(),
        None => env.push((key.to_owned(), value.to_owned())),
    }
}

fn network(docker: &DockerInfo) -> Result<NetworkMode, PlanError> {
    match docker
        .network
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("HOST") => Ok(NetworkMode::Host),
        Some("BRIDGE") => Ok(NetworkMode::Bridge),
        Some("NONE") => Ok(NetworkMode::None),
        Some(other) => Err(PlanError::UnsupportedNetwork {
            network: other.to_owned(),
        }),
    }
}

fn binds(spec: &TaskSpec, container: &ContainerInfo) -> Result<Vec<Bind>, PlanError> {
    let mut binds = vec![Bind {
        host: spec.task_dir.display().to_string(),
        container: SANDBOX_MOUNT.to_owned(),
        read_only: false,
    }];
    for volume in &container.volumes {
        if volume.container_path.is_empty() {
            return Err(PlanError::VolumeWithoutPath);
        }
        let host = volume
            .host_path
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or(&volume.container_path);
        let read_only = match volume
            .mode
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("RO") => true,
            None | Some("RW") => false,
            Some(other) => {
                return Err(PlanError::VolumeMode {
                    container_path: volume.container_path.clone(),
                    mode: other.to_owned(),
                });
            }
        };
        binds.push(Bind {
            host: host.to_owned(),
            container: volume.container_path.clone(),
            read_only,
        });
    }
    Ok(binds)
}

/// Applies one docker parameter; `env` collects `--env` values, applied last.
fn apply_parameter(
    config: &mut ContainerConfig,
    env: &mut Vec<(String, String)>,
    parameter: &Parameter,
    options: &ContainerOptions,
) -> Result<(), PlanError> {
    let key = parameter.key.trim_start_matches('-');
    let value = parameter.value.as_str();
    let invalid = || PlanError::InvalidParameter {
        key: key.to_owned(),
        value: value.to_owned(),
    };
    match key {
        "memory" | "m" => config.memory = Some(parse_size(value).ok_or_else(invalid)?),
        "shm-size" => config.shm_size = Some(parse_size(value).ok_or_else(invalid)?),
        "cpus" => {
            let cpus: f64 = value.trim().parse().map_err(|_| invalid())?;
            if !(cpus.is_finite() && cpus > 0.0) {
                return Err(invalid());
            }
            config.nano_cpus = Some((cpus * 1e9) as i64);
        }
        "pids-limit" => config.pids_limit = Some(value.trim().parse().map_err(|_| invalid())?),
        "user" | "u" => config.user = Some(value.to_owned()),
        "hostname" | "h" => config.hostname = Some(value.to_owned()),
        "w" | "workdir" => config.working_dir = Some(value.to_owned()),
        "label" | "l" => {
            let (k, v) = value.split_once('=').unwrap_or((value, ""));
            config.labels.insert(k.to_owned(), v.to_owned());
        }
        "env" | "e" => match value.split_once('=') {
            Some((k, v)) => env.push((k.to_owned(), v.to_owned())),
            // `-e NAME` passes the executor's own value, as the docker CLI does.
            None => {
                if let Some(v) = options.executor_env.get(value) {
                    env.push((value.to_owned(), v.clone()));
                }
            }
        },
        "ulimit" => config
            .ulimits
            .push(parse_ulimit(value).ok_or_else(invalid)?),
        "cap-add" => config.cap_add.push(value.to_owned()),
        "cap-drop" => config.cap_drop.push(value.to_owned()),
        "entrypoint" => config.entrypoint = Some(vec![value.to_owned()]),
        "init" => config.init = Some(parse_bool(value).ok_or_else(invalid)?),
        "add-host" => {
            if !value.contains(':') {
                return Err(invalid());
            }
            config.extra_hosts.push(value.to_owned());
        }
        _ => {
            return Err(PlanError::UnsupportedParameter {
                key: key.to_owned(),
            });
        }
    }
    Ok(())
}

/// The container of a task whose `TaskInfo.container.docker` is set, created under
/// `cgroup_parent` (the executor's cgroup, as the engine spells it) when given. Under it, the
/// agent's limits of the executor's cgroup hold the container and `cpuHardLimit` is the
/// executor cgroup's quota ([`crate::run::cgroup`]); without it, the container gets limits of
/// its own: `dockerLimitsFromResources`, and `cpuHardLimit` as its CFS quota.
pub fn plan(
    spec: &TaskSpec,
    options: &ContainerOptions,
    cgroup_parent: Option<&str>,
) -> Result<ContainerPlan, PlanError> {
    let container = spec
        .container
        .as_ref()
        .filter(|c| c.docker.is_some())
        .ok_or(PlanError::NoDocker)?;
    let Some(docker) = container.docker.as_ref() else {
        return Err(PlanError::NoDocker);
    };
    let image = image_source(&docker.image, &spec.task_dir)?;
    let name = naming::container_name(&options.prefix, &spec.task_id);
    let reference = match &image {
        ImageSource::Registry(image) => image.reference.clone(),
        // Filled in with the image id once the tarball is loaded.
        ImageSource::Archive { .. } => String::new(),
    };
    let mut config = ContainerConfig::new(name, reference);
    config.network = network(docker)?;
    config.privileged = docker.privileged.unwrap_or(false);
    config.binds = binds(spec, container)?;
    config.ports = docker
        .port_mappings
        .iter()
        .map(|m| PortPublish {
            host_port: m.host_port,
            container_port: m.container_port,
            protocol: m
                .protocol
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or("tcp")
                .to_ascii_lowercase(),
        })
        .collect();
    let app = spec
        .app_dir
        .strip_prefix(&spec.task_dir)
        .unwrap_or(Path::new(naming::APP_DIRECTORY));
    config.working_dir = Some(format!("{SANDBOX_MOUNT}/{}", app.display()));
    let words =
        shell_words::split(&spec.command).map_err(|source| PlanError::UnsplittableCommand {
            command: spec.command.clone(),
            source,
        })?;
    config.cmd = (!words.is_empty()).then_some(words);

    config.cgroup_parent = cgroup_parent.map(str::to_owned);
    if cgroup_parent.is_none()
        && let Some(cores) = spec.cpu_hard_limit
    {
        let period = options.cfs_period_us.max(1);
        config.cpu_period = i64::try_from(period).ok();
        config.cpu_quota = i64::try_from(cores.saturating_mul(period)).ok();
    }
    if options.limits_from_resources && cgroup_parent.is_none() {
        config.memory = spec
            .mem_mib
            .filter(|m| *m > 0.0)
            .map(|m| ((m * 1024.0 * 1024.0) as i64).max(MIN_MEMORY));
        config.nano_cpus = spec.cpus.filter(|c| *c > 0.0).map(|c| (c * 1e9) as i64);
        config.pids_limit = spec.max_threads.and_then(|n| i64::try_from(n).ok());
    }

    let mut env: Vec<(String, String)> = Vec::new();
    for (k, v) in options.inherited.iter().chain(&spec.container_env) {
        set_env(&mut env, k, v);
    }
    let logs = format!("{SANDBOX_MOUNT}/{}", naming::LOGS_DIRECTORY);
    let task_dir = spec.task_dir.display().to_string();
    for (k, v) in [
        ("MESOS_SANDBOX", SANDBOX_MOUNT),
        ("LOG_DIR", &logs),
        ("LOG_HOME", &logs),
        ("MESOS_TASK_ID", &spec.task_id),
        ("HOST_SANDBOX_DIR", &task_dir),
    ] {
        set_env(&mut env, k, v);
    }
    let mut parameter_env = Vec::new();
    for parameter in &docker.parameters {
        apply_parameter(&mut config, &mut parameter_env, parameter, options)?;
    }
    for (k, v) in &parameter_env {
        set_env(&mut env, k, v);
    }
    config.env = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();

    Ok(ContainerPlan {
        image,
        force_pull: docker.force_pull_image.unwrap_or(false),
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use singularity_mesos::types::{PortMapping, Volume};

    fn docker(image: &str) -> DockerInfo {
        DockerInfo {
            image: image.to_owned(),
            network: None,
            port_mappings: Vec::new(),
            privileged: None,
            parameters: Vec::new(),
            force_pull_image: None,
            volume_driver: None,
        }
    }

    fn spec(docker: DockerInfo) -> TaskSpec {
        TaskSpec {
            task_id: "req-dep-1-1-host-rack".into(),
            task_dir: PathBuf::from("/sandbox/req-dep-1-1-host-rack"),
            app_dir: PathBuf::from("/sandbox/req-dep-1-1-host-rack/app"),
            command: "echo 'hello world' \"$HOME\"".into(),
            env: vec![("PATH".into(), "/executor/bin".into())],
            run_as: None,
            max_open_files: None,
            source_profile_scripts: false,
            service_log: PathBuf::from("/sandbox/req-dep-1-1-host-rack/service.log"),
            container: Some(ContainerInfo {
                kind: None,
                volumes: Vec::new(),
                hostname: None,
                docker: Some(docker),
                mesos: None,
                network_infos: Vec::new(),
                linux_info: None,
                rlimit_info: None,
                tty_info: None,
            }),
            container_env: vec![
                ("TASK_ID".into(), "req-dep-1-1-host-rack".into()),
                ("MULTI".into(), "line one\nline 'two' `three`".into()),
            ],
            cpus: Some(0.5),
            mem_mib: Some(64.0),
            max_threads: Some(100),
            cpu_hard_limit: None,
        }
    }

    fn parameter(key: &str, value: &str) -> Parameter {
        Parameter {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    fn env_of(plan: &ContainerPlan) -> Vec<&str> {
        plan.config.env.iter().map(String::as_str).collect()
    }

    #[test]
    fn image_schemes_are_registry_archive_or_refused() {
        let dir = Path::new("/t");
        assert_eq!(
            image_source("docker://busybox", dir),
            Ok(ImageSource::Registry(ImageReference {
                reference: "busybox:latest".into(),
                repository: "busybox".into(),
                tag: "latest".into()
            }))
        );
        assert_eq!(
            image_source("docker-archive://images/busybox.tar", dir),
            Ok(ImageSource::Archive {
                path: PathBuf::from("/t/images/busybox.tar")
            })
        );
        assert!(image_source("docker-archive://../x.tar", dir).is_err());
        assert!(image_source("docker-archive:///etc/x.tar", dir).is_err());
        let oci = image_source("oci://thing", dir);
        assert_eq!(
            oci,
            Err(PlanError::UnsupportedScheme {
                scheme: "oci".into()
            })
        );
        assert_eq!(
            oci.expect_err("refused").to_string(),
            "unsupported image scheme `oci://`"
        );
    }

    #[test]
    fn a_plain_container_gets_the_sandbox_env_workdir_and_command() {
        let plan = plan(
            &spec(docker("busybox:1")),
            &ContainerOptions::default(),
            None,
        )
        .expect("plan");
        assert_eq!(plan.config.name, "se-req-dep-1-1-host-rack");
        assert_eq!(plan.config.image, "busybox:1");
        assert_eq!(plan.config.network, NetworkMode::Host);
        assert_eq!(
            plan.config.working_dir.as_deref(),
            Some("/mnt/mesos/sandbox/app")
        );
        assert_eq!(
            plan.config.cmd,
            Some(vec![
                "echo".to_owned(),
                "hello world".to_owned(),
                "$HOME".to_owned()
            ])
        );
        assert_eq!(
            plan.config.binds,
            vec![Bind {
                host: "/sandbox/req-dep-1-1-host-rack".into(),
                container: "/mnt/mesos/sandbox".into(),
                read_only: false
            }]
        );
        assert_eq!(
            env_of(&plan),
            vec![
                "TASK_ID=req-dep-1-1-host-rack",
                "MULTI=line one\nline 'two' `three`",
                "MESOS_SANDBOX=/mnt/mesos/sandbox",
                "LOG_DIR=/mnt/mesos/sandbox/logs",
                "LOG_HOME=/mnt/mesos/sandbox/logs",
                "MESOS_TASK_ID=req-dep-1-1-host-rack",
                "HOST_SANDBOX_DIR=/sandbox/req-dep-1-1-host-rack",
            ]
        );
        // The executor's own environment stays out of the container.
        assert!(!plan.config.env.iter().any(|e| e.starts_with("PATH=")));
        assert_eq!(plan.config.memory, None);
    }

    #[test]
    fn inherited_variables_come_first_and_the_task_env_wins() {
        let options = ContainerOptions {
            inherited: vec![
                ("TASK_ID".into(), "from-executor".into()),
                ("DC".into(), "east".into()),
            ],
            ..ContainerOptions::default()
        };
        let plan = plan(&spec(docker("busybox")), &options, None).expect("plan");
        assert_eq!(
            env_of(&plan)[..2],
            ["TASK_ID=req-dep-1-1-host-rack", "DC=east"]
        );
    }

    #[test]
    fn volumes_ports_network_and_privileged_map_to_the_config() {
        let mut d = docker("busybox");
        d.network = Some("BRIDGE".into());
        d.privileged = Some(true);
        d.port_mappings = vec![
            PortMapping {
                host_port: 31000,
                container_port: 8080,
                protocol: None,
            },
            PortMapping {
                host_port: 31001,
                container_port: 53,
                protocol: Some("UDP".into()),
            },
        ];
        let mut s = spec(d);
        let container = s.container.as_mut().expect("container");
        container.volumes = vec![
            Volume {
                container_path: "/etc/conf".into(),
                host_path: Some("/srv/conf".into()),
                mode: Some("RO".into()),
                image: None,
                source: None,
            },
            Volume {
                container_path: "/data".into(),
                host_path: None,
                mode: Some("RW".into()),
                image: None,
                source: None,
            },
        ];
        let plan = plan(&s, &ContainerOptions::default(), None).expect("plan");
        assert_eq!(plan.config.network, NetworkMode::Bridge);
        assert!(plan.config.privileged);
        assert_eq!(
            plan.config.ports,
            vec![
                PortPublish {
                    host_port: 31000,
                    container_port: 8080,
                    protocol: "tcp".into()
                },
                PortPublish {
                    host_port: 31001,
                    container_port: 53,
                    protocol: "udp".into()
                },
            ]
        );
        assert_eq!(
            plan.config.binds[1..],
            [
                Bind {
                    host: "/srv/conf".into(),
                    container: "/etc/conf".into(),
                    read_only: true
                },
                Bind {
                    host: "/data".into(),
                    container: "/data".into(),
                    read_only: false
                },
            ]
        );
    }

    #[test]
    fn parameters_map_to_api_fields() {
        let mut d = docker("busybox");
        d.parameters = vec![
            parameter("memory", "512m"),
            parameter("cpus", "1.5"),
            parameter("pids-limit", "64"),
            parameter("user", "1000:1000"),
            parameter("label", "team=infra"),
            parameter("e", "EXTRA=1"),
            parameter("env", "MESOS_SANDBOX=/elsewhere"),
            parameter("ulimit", "nofile=1024:2048"),
            parameter("ulimit", "nproc=512"),
            parameter("cap-add", "NET_ADMIN"),
            parameter("cap-drop", "MKNOD"),
            parameter("entrypoint", "/bin/sh"),
            parameter("init", ""),
            parameter("hostname", "box"),
            parameter("add-host", "db:10.0.0.1"),
            parameter("shm-size", "1g"),
            parameter("workdir", "/work"),
        ];
        let plan = plan(&spec(d), &ContainerOptions::default(), None).expect("plan");
        let c = &plan.config;
        assert_eq!(c.memory, Some(512 * 1024 * 1024));
        assert_eq!(c.nano_cpus, Some(1_500_000_000));
        assert_eq!(c.pids_limit, Some(64));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.labels.get("team").map(String::as_str), Some("infra"));
        assert!(c.env.contains(&"EXTRA=1".to_owned()));
        assert!(c.env.contains(&"MESOS_SANDBOX=/elsewhere".to_owned()));
        assert_eq!(
            c.ulimits,
            vec![
                Ulimit {
                    name: "nofile".into(),
                    soft: 1024,
                    hard: 2048
                },
                Ulimit {
                    name: "nproc".into(),
                    soft: 512,
                    hard: 512
                }
            ]
        );
        assert_eq!(c.cap_add, vec!["NET_ADMIN".to_owned()]);
        assert_eq!(c.cap_drop, vec!["MKNOD".to_owned()]);
        assert_eq!(c.entrypoint, Some(vec!["/bin/sh".to_owned()]));
        assert_eq!(c.init, Some(true));
        assert_eq!(c.hostname.as_deref(), Some("box"));
        assert_eq!(c.extra_hosts, vec!["db:10.0.0.1".to_owned()]);
        assert_eq!(c.shm_size, Some(1024 * 1024 * 1024));
        assert_eq!(c.working_dir.as_deref(), Some("/work"));
    }

    #[test]
    fn unknown_and_invalid_parameters_fail_naming_them() {
        let mut d = docker("busybox");
        d.parameters = vec![parameter("volumes-from", "other")];
        assert_eq!(
            plan(&spec(d.clone()), &ContainerOptions::default(), None)
                .expect_err("unsupported")
                .to_string(),
            "unsupported docker parameter --volumes-from"
        );
        d.parameters = vec![parameter("memory", "lots")];
        assert_eq!(
            plan(&spec(d), &ContainerOptions::default(), None)
                .expect_err("invalid")
                .to_string(),
            "docker parameter --memory has an invalid value `lots`"
        );
    }

    #[test]
    fn limits_come_from_the_task_when_configured_and_parameters_win() {
        let options = ContainerOptions {
            limits_from_resources: true,
            ..ContainerOptions::default()
        };
        let plan_a = plan(&spec(docker("busybox")), &options, None).expect("plan");
        assert_eq!(plan_a.config.memory, Some(64 * 1024 * 1024));
        assert_eq!(plan_a.config.nano_cpus, Some(500_000_000));
        assert_eq!(plan_a.config.pids_limit, Some(100));
        let mut d = docker("busybox");
        d.parameters = vec![parameter("memory", "32m")];
        let plan_b = plan(&spec(d), &options, None).expect("plan");
        assert_eq!(plan_b.config.memory, Some(32 * 1024 * 1024));
    }

    #[test]
    fn under_the_executors_cgroup_the_agents_limits_hold_instead_of_the_containers_own() {
        let options = ContainerOptions {
            limits_from_resources: true,
            cfs_period_us: 50_000,
            ..ContainerOptions::default()
        };
        let mut s = spec(docker("busybox"));
        s.cpu_hard_limit = Some(2);
        let under = plan(&s, &options, Some("/mesos/0f1e")).expect("plan");
        assert_eq!(under.config.cgroup_parent.as_deref(), Some("/mesos/0f1e"));
        assert_eq!(
            (
                under.config.memory,
                under.config.nano_cpus,
                under.config.pids_limit
            ),
            (None, None, None)
        );
        assert_eq!(
            (under.config.cpu_quota, under.config.cpu_period),
            (None, None)
        );

        let own = plan(&s, &options, None).expect("plan");
        assert_eq!(own.config.cgroup_parent, None);
        assert_eq!(own.config.memory, Some(64 * 1024 * 1024));
        assert_eq!(
            (own.config.cpu_quota, own.config.cpu_period),
            (Some(100_000), Some(50_000))
        );
    }

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("64MB"), Some(64 << 20));
        assert_eq!(parse_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("5q"), None);
    }

    #[test]
    fn an_empty_command_keeps_the_image_default_and_bad_quoting_fails() {
        let mut s = spec(docker("busybox"));
        s.command = String::new();
        assert_eq!(
            plan(&s, &ContainerOptions::default(), None)
                .expect("plan")
                .config
                .cmd,
            None
        );
        s.command = "echo 'unterminated".into();
        assert!(plan(&s, &ContainerOptions::default(), None).is_err());
    }
}
