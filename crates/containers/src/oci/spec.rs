//! The OCI runtime configuration (`config.json`) of a bundle, from engine-neutral inputs.

use std::path::PathBuf;

use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
    get_default_mounts, get_default_namespaces,
};

use super::OciError;
use crate::{Bind, NetworkMode, Ulimit};

/// CFS period used for the CPU quota, in microseconds (the kernel's default).
pub const CPU_PERIOD: u64 = 100_000;

/// What one container is run with.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleConfig {
    /// The root filesystem (shared between the containers of an image: mounted read-only).
    pub rootfs: PathBuf,
    /// argv of the container's process.
    pub args: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// Hostname (a new UTS namespace is always made).
    pub hostname: Option<String>,
    /// Bind mounts (the sandbox, the task's volumes).
    pub binds: Vec<Bind>,
    /// `Host` shares the host's network; `None` gets an empty namespace.
    pub network: NetworkMode,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// CPU limit in CPUs.
    pub cpus: Option<f64>,
    /// Process (task) limit.
    pub pids_limit: Option<i64>,
    /// Resource limits.
    pub rlimits: Vec<Ulimit>,
    /// Cgroup path, relative to the hierarchy roots.
    pub cgroups_path: String,
}

/// The runtime configuration of `config`.
pub fn runtime_spec(config: &BundleConfig) -> Result<Spec, OciError> {
    let user = UserBuilder::default()
        .uid(config.uid)
        .gid(config.gid)
        .additional_gids(config.additional_gids.clone())
        .build()?;
    let mut rlimits = Vec::new();
    for limit in &config.rlimits {
        rlimits.push(
            PosixRlimitBuilder::default()
                .typ(rlimit_type(&limit.name)?)
                .soft(u64::try_from(limit.soft).unwrap_or(u64::MAX))
                .hard(u64::try_from(limit.hard).unwrap_or(u64::MAX))
                .build()?,
        );
    }
    if !config.rlimits.iter().any(|l| l.name == "nofile") {
        // What runc's own default spec gives.
        rlimits.push(
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(1024_u64)
                .hard(1024_u64)
                .build()?,
        );
    }
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(config.args.clone())
        .env(config.env.clone())
        .cwd(config.cwd.clone())
        .rlimits(rlimits)
        .no_new_privileges(true)
        .build()?;
    let root = RootBuilder::default()
        .path(config.rootfs.clone())
        .readonly(true)
        .build()?;

    let mut mounts = get_default_mounts();
    mounts.push(
        MountBuilder::default()
            .destination("/tmp")
            .typ("tmpfs")
            .source("tmpfs")
            .options(strings(&["nosuid", "nodev", "mode=1777"]))
            .build()?,
    );
    for bind in &config.binds {
        let mode = if bind.read_only { "ro" } else { "rw" };
        mounts.push(
            MountBuilder::default()
                .destination(bind.container.clone())
                .typ("bind")
                .source(bind.host.clone())
                .options(strings(&["rbind", "rprivate", mode]))
                .build()?,
        );
    }

    let namespaces = match config.network {
        NetworkMode::Host => get_default_namespaces()
            .into_iter()
            .filter(|n| n.typ() != LinuxNamespaceType::Network)
            .collect(),
        NetworkMode::None => get_default_namespaces(),
        NetworkMode::Bridge => return Err(OciError::Bridge),
    };
    let mut resources = LinuxResourcesBuilder::default().devices(vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()?,
    ]);
    if let Some(limit) = config.memory {
        resources = resources.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
    }
    if let Some(cpus) = config.cpus {
        let quota = ((cpus * CPU_PERIOD as f64) as i64).max(1000);
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD)
                .build()?,
        );
    }
    if let Some(limit) = config.pids_limit {
        resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
    }
    let defaults = oci_spec::runtime::Linux::default();
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build()?)
        .cgroups_path(PathBuf::from(&config.cgroups_path));
    if let Some(masked) = defaults.masked_paths() {
        linux = linux.masked_paths(masked.clone());
    }
    if let Some(readonly) = defaults.readonly_paths() {
        linux = linux.readonly_paths(readonly.clone());
    }
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .process(process)
        .root(root)
        .mounts(mounts)
        .linux(linux.build()?);
    if let Some(hostname) = &config.hostname {
        spec = spec.hostname(hostname.clone());
    }
    Ok(spec.build()?)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The rlimit of a `--ulimit` name.
fn rlimit_type(name: &str) -> Result<PosixRlimitType, OciError> {
    Ok(match name {
        "core" => PosixRlimitType::RlimitCore,
        "cpu" => PosixRlimitType::RlimitCpu,
        "data" => PosixRlimitType::RlimitData,
        "fsize" => PosixRlimitType::RlimitFsize,
        "locks" => PosixRlimitType::RlimitLocks,
        "memlock" => PosixRlimitType::RlimitMemlock,
        "msgqueue" => PosixRlimitType::RlimitMsgqueue,
        "nice" => PosixRlimitType::RlimitNice,
        "nofile" => PosixRlimitType::RlimitNofile,
        "nproc" => PosixRlimitType::RlimitNproc,
        "rss" => PosixRlimitType::RlimitRss,
        "rtprio" => PosixRlimitType::RlimitRtprio,
        "rttime" => PosixRlimitType::RlimitRttime,
        "sigpending" => PosixRlimitType::RlimitSigpending,
        "stack" => PosixRlimitType::RlimitStack,
        "as" => PosixRlimitType::RlimitAs,
        other => {
            return Err(OciError::UnknownRlimit {
                name: other.to_owned(),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BundleConfig {
        BundleConfig {
            rootfs: PathBuf::from("/store/rootfs"),
            args: strings(&["sh", "-c", "true"]),
            env: strings(&["A=1"]),
            cwd: "/mnt/mesos/sandbox/app".to_owned(),
            uid: 10,
            gid: 20,
            additional_gids: vec![30],
            hostname: None,
            binds: vec![Bind {
                host: "/sb/task".to_owned(),
                container: "/mnt/mesos/sandbox".to_owned(),
                read_only: false,
            }],
            network: NetworkMode::Host,
            memory: Some(64 << 20),
            cpus: Some(0.5),
            pids_limit: Some(32),
            rlimits: vec![Ulimit {
                name: "nofile".to_owned(),
                soft: 100,
                hard: 200,
            }],
            cgroups_path: "/singularity/se-t".to_owned(),
        }
    }

    #[test]
    fn the_config_carries_process_mounts_limits_and_namespaces() {
        let spec = runtime_spec(&config()).expect("spec");
        let json = serde_json::to_value(&spec).expect("json");
        assert_eq!(
            json["process"]["args"],
            serde_json::json!(["sh", "-c", "true"])
        );
        assert_eq!(json["process"]["user"]["uid"], 10);
        assert_eq!(
            json["process"]["user"]["additionalGids"],
            serde_json::json!([30])
        );
        assert_eq!(json["process"]["cwd"], "/mnt/mesos/sandbox/app");
        assert_eq!(
            json["process"]["rlimits"],
            serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}])
        );
        assert_eq!(json["root"]["readonly"], true);
        let mounts = json["mounts"].as_array().expect("mounts");
        let sandbox = mounts
            .iter()
            .find(|m| m["destination"] == "/mnt/mesos/sandbox")
            .expect("the sandbox");
        assert_eq!(sandbox["source"], "/sb/task");
        assert!(
            sandbox["options"]
                .as_array()
                .expect("options")
                .contains(&"rw".into())
        );
        assert!(
            mounts
                .iter()
                .any(|m| m["destination"] == "/tmp" && m["type"] == "tmpfs")
        );
        assert!(mounts.iter().any(|m| m["destination"] == "/proc"));
        let resources = &json["linux"]["resources"];
        assert_eq!(resources["memory"]["limit"], 64 << 20);
        assert_eq!(resources["cpu"]["quota"], 50_000);
        assert_eq!(resources["cpu"]["period"], 100_000);
        assert_eq!(resources["pids"]["limit"], 32);
        let namespaces: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .filter_map(|n| n["type"].as_str())
            .collect();
        assert!(!namespaces.contains(&"network"), "{namespaces:?}");
        assert!(namespaces.contains(&"pid"));
        assert_eq!(json["linux"]["cgroupsPath"], "/singularity/se-t");
    }

    #[test]
    fn no_network_gets_its_own_namespace_and_bridge_is_refused() {
        let mut none = config();
        none.network = NetworkMode::None;
        let json = serde_json::to_value(runtime_spec(&none).expect("spec")).expect("json");
        assert!(
            json["linux"]["namespaces"]
                .as_array()
                .expect("namespaces")
                .iter()
                .any(|n| n["type"] == "network")
        );
        let mut bridge = config();
        bridge.network = NetworkMode::Bridge;
        assert!(matches!(runtime_spec(&bridge), Err(OciError::Bridge)));
        let mut odd = config();
        odd.rlimits[0].name = "bogus".to_owned();
        assert_eq!(
            runtime_spec(&odd).expect_err("refused").to_string(),
            "unknown rlimit `bogus`"
        );
    }
}
