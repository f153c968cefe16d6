//! Singularity's deploy-level container description (`containerInfo`) and its translation
//! into the Mesos `ContainerInfo` the executor reads, as the scheduler does it. Used by
//! `run TASK.json` for deploy-like task files.

use std::collections::BTreeMap;

use serde::Deserialize;
use singularity_mesos::types::{ContainerType, Parameter, PortMapping, Volume};
use singularity_mesos::{ContainerInfo, DockerInfo};

/// `SingularityContainerInfo`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployContainer {
    /// `DOCKER` or `MESOS`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Volumes.
    #[serde(default)]
    pub volumes: Vec<DeployVolume>,
    /// Docker settings.
    pub docker: Option<DeployDocker>,
    /// `SingularityMesosInfo`: `{"image": {"type", "docker": {"name"}, "appc", "cached"}}`,
    /// which is the shape of Mesos' own `MesosInfo`, so it is passed on as it is.
    pub mesos: Option<serde_json::Value>,
}

/// `SingularityVolume`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployVolume {
    /// Path in the container.
    pub container_path: String,
    /// Path on the host.
    pub host_path: Option<String>,
    /// `RO` or `RW`; the scheduler makes an absent mode `RO`.
    pub mode: Option<String>,
}

/// `SingularityDockerInfo`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployDocker {
    /// Image.
    pub image: String,
    /// Privileged container.
    #[serde(default)]
    pub privileged: bool,
    /// `BRIDGE`, `HOST` or `NONE`.
    pub network: Option<String>,
    /// Port mappings.
    #[serde(default)]
    pub port_mappings: Vec<DeployPortMapping>,
    /// Always pull.
    #[serde(default)]
    pub force_pull_image: bool,
    /// Legacy parameters map.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Parameters as a list; when absent, built from `parameters`.
    pub docker_parameters: Option<Vec<Parameter>>,
}

/// `SingularityDockerPortMapping`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployPortMapping {
    /// `LITERAL` (default) or `FROM_OFFER`.
    pub container_port_type: Option<String>,
    /// Container port.
    pub container_port: u32,
    /// `LITERAL` (default) or `FROM_OFFER`.
    pub host_port_type: Option<String>,
    /// Host port.
    pub host_port: u32,
    /// `tcp` by default.
    pub protocol: Option<String>,
}

/// A deploy container this executor cannot run without Mesos.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployContainerError {
    /// A container type other than DOCKER and MESOS.
    #[error("containerInfo.type {kind} is not DOCKER or MESOS")]
    UnknownType {
        /// The type, upper-cased.
        kind: String,
    },
    /// A port taken from the Mesos offer, which there is none of here.
    #[error("{side} port type {kind} needs ports offered by Mesos; use LITERAL ports here")]
    OfferedPort {
        /// `container` or `host`.
        side: &'static str,
        /// The port type, upper-cased.
        kind: String,
    },
}

fn literal(kind: Option<&str>, side: &'static str) -> Result<(), DeployContainerError> {
    match kind.map(str::to_ascii_uppercase) {
        None => Ok(()),
        Some(kind) if kind == "LITERAL" => Ok(()),
        Some(kind) => Err(DeployContainerError::OfferedPort { side, kind }),
    }
}

impl DeployContainer {
    /// The Mesos `ContainerInfo` the scheduler would send for it.
    pub fn to_mesos(&self) -> Result<ContainerInfo, DeployContainerError> {
        let kind = match self.kind.to_ascii_uppercase().as_str() {
            "DOCKER" => ContainerType::Docker,
            "MESOS" => ContainerType::Mesos,
            other => {
                return Err(DeployContainerError::UnknownType {
                    kind: other.to_owned(),
                });
            }
        };
        let docker = match &self.docker {
            None => None,
            Some(d) => {
                let mut port_mappings = Vec::new();
                for m in &d.port_mappings {
                    literal(m.container_port_type.as_deref(), "container")?;
                    literal(m.host_port_type.as_deref(), "host")?;
                    port_mappings.push(PortMapping {
                        host_port: m.host_port,
                        container_port: m.container_port,
                        protocol: m.protocol.clone(),
                    });
                }
                let parameters = d.docker_parameters.clone().unwrap_or_else(|| {
                    d.parameters
                        .iter()
                        .map(|(key, value)| Parameter {
                            key: key.clone(),
                            value: value.clone(),
                        })
                        .collect()
                });
                Some(DockerInfo {
                    image: d.image.clone(),
                    network: Some(d.network.clone().unwrap_or_else(|| "HOST".to_owned())),
                    port_mappings,
                    privileged: Some(d.privileged),
                    parameters,
                    force_pull_image: Some(d.force_pull_image),
                    volume_driver: None,
                })
            }
        };
        Ok(ContainerInfo {
            kind: Some(kind),
            volumes: self
                .volumes
                .iter()
                .map(|v| Volume {
                    container_path: v.container_path.clone(),
                    host_path: v.host_path.clone(),
                    mode: Some(v.mode.clone().unwrap_or_else(|| "RO".to_owned())),
                    image: None,
                    source: None,
                })
                .collect(),
            hostname: None,
            docker,
            mesos: self.mesos.clone(),
            network_infos: Vec::new(),
            linux_info: None,
            rlimit_info: None,
            tty_info: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deploy_container_becomes_the_mesos_one() {
        let deploy: DeployContainer = serde_json::from_str(
            r#"{"type": "DOCKER",
                "volumes": [{"containerPath": "/etc/app", "hostPath": "/srv/app"}],
                "docker": {"image": "busybox:1", "network": "BRIDGE",
                           "portMappings": [{"containerPort": 8080, "hostPort": 31000}],
                           "parameters": {"memory": "64m"}}}"#,
        )
        .expect("json");
        let info = deploy.to_mesos().expect("mesos");
        assert_eq!(info.kind, Some(ContainerType::Docker));
        assert_eq!(info.volumes[0].mode.as_deref(), Some("RO"));
        let docker = info.docker.expect("docker");
        assert_eq!(docker.network.as_deref(), Some("BRIDGE"));
        assert_eq!(docker.port_mappings[0].host_port, 31000);
        assert_eq!(docker.parameters[0].key, "memory");
        assert_eq!(docker.force_pull_image, Some(false));
    }

    #[test]
    fn a_mesos_image_is_passed_on() {
        let deploy: DeployContainer = serde_json::from_str(
            r#"{"type": "MESOS",
                "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox:1"}}}}"#,
        )
        .expect("json");
        let info = deploy.to_mesos().expect("mesos");
        assert_eq!(info.kind, Some(ContainerType::Mesos));
        assert_eq!(info.docker, None);
        assert_eq!(
            info.mesos.expect("mesos")["image"]["docker"]["name"],
            "busybox:1"
        );
    }

    #[test]
    fn offered_ports_and_unknown_types_are_refused() {
        let deploy: DeployContainer = serde_json::from_str(
            r#"{"type": "DOCKER", "docker": {"image": "x",
                "portMappings": [{"containerPort": 1, "hostPort": 0, "hostPortType": "FROM_OFFER"}]}}"#,
        )
        .expect("json");
        assert_eq!(
            deploy.to_mesos().expect_err("offered port"),
            DeployContainerError::OfferedPort {
                side: "host",
                kind: "FROM_OFFER".into()
            }
        );
        let deploy: DeployContainer = serde_json::from_str(r#"{"type": "RKT"}"#).expect("json");
        assert_eq!(
            deploy.to_mesos().expect_err("unknown type").to_string(),
            "containerInfo.type RKT is not DOCKER or MESOS"
        );
    }
}
