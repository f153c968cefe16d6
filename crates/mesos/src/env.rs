//! The environment the agent gives an executor (docs/mesos-executor-api.md, "Environment") and Mesos duration strings.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::types::{AgentId, ExecutorId, FrameworkId};

/// `MESOS_FRAMEWORK_ID`.
pub const MESOS_FRAMEWORK_ID: &str = "MESOS_FRAMEWORK_ID";
/// `MESOS_EXECUTOR_ID`.
pub const MESOS_EXECUTOR_ID: &str = "MESOS_EXECUTOR_ID";
/// `MESOS_AGENT_ENDPOINT` (`ip:port`).
pub const MESOS_AGENT_ENDPOINT: &str = "MESOS_AGENT_ENDPOINT";
/// `MESOS_SLAVE_PID` (`slave(1)@ip:port`).
pub const MESOS_SLAVE_PID: &str = "MESOS_SLAVE_PID";
/// `MESOS_SLAVE_ID`.
pub const MESOS_SLAVE_ID: &str = "MESOS_SLAVE_ID";
/// `MESOS_DIRECTORY`: host path of the sandbox.
pub const MESOS_DIRECTORY: &str = "MESOS_DIRECTORY";
/// `MESOS_SANDBOX`: sandbox path as seen by the executor.
pub const MESOS_SANDBOX: &str = "MESOS_SANDBOX";
/// `MESOS_CHECKPOINT`: `1` or `0`.
pub const MESOS_CHECKPOINT: &str = "MESOS_CHECKPOINT";
/// `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD`.
pub const MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD: &str = "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD";
/// `MESOS_RECOVERY_TIMEOUT` (checkpoint only).
pub const MESOS_RECOVERY_TIMEOUT: &str = "MESOS_RECOVERY_TIMEOUT";
/// `MESOS_SUBSCRIPTION_BACKOFF_MAX` (checkpoint only).
pub const MESOS_SUBSCRIPTION_BACKOFF_MAX: &str = "MESOS_SUBSCRIPTION_BACKOFF_MAX";
/// `MESOS_EXECUTOR_AUTHENTICATION_TOKEN`.
pub const MESOS_EXECUTOR_AUTHENTICATION_TOKEN: &str = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN";
/// `MESOS_DOMAIN_SOCKET`.
pub const MESOS_DOMAIN_SOCKET: &str = "MESOS_DOMAIN_SOCKET";

/// Shutdown grace used when the agent did not set one (the agent's own default).
pub const DEFAULT_SHUTDOWN_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// A problem with the executor's environment, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A required variable is absent or empty.
    #[error("{var} is not set{}", why.map(|why| format!(" ({why})")).unwrap_or_default())]
    Missing {
        /// The variable.
        var: &'static str,
        /// Why it is required here, if not always.
        why: Option<Requirement>,
    },
    /// A duration variable is not a Mesos duration.
    #[error("{var} = {value:?}: {source}")]
    Duration {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// Why it does not parse.
        source: DurationError,
    },
    /// A variable has a value that cannot be used.
    #[error("{var} = {value:?}: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it (the form expected).
        reason: &'static str,
    },
}

/// Why a variable that is not always required is required here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Requirement {
    /// The agent's address comes from `MESOS_AGENT_ENDPOINT` or else `MESOS_SLAVE_PID`.
    #[error("and {MESOS_SLAVE_PID} is not set either")]
    NoSlavePid,
    /// Checkpointing needs the recovery settings.
    #[error("required when {MESOS_CHECKPOINT}=1")]
    Checkpointing,
}

/// A malformed Mesos duration string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {0:?}: expected a decimal number followed by ns, us, ms, secs, mins, hrs, days or weeks"
)]
pub struct DurationError(pub String);

/// Parses a stout duration string: a non-negative decimal (fractions allowed) immediately
/// followed by one of `ns`, `us`, `ms`, `secs`, `mins`, `hrs`, `days`, `weeks`.
///
/// ```
/// use singularity_mesos::parse_mesos_duration;
/// use std::time::Duration;
/// assert_eq!(parse_mesos_duration("5secs").unwrap(), Duration::from_secs(5));
/// assert_eq!(parse_mesos_duration("2.5mins").unwrap(), Duration::from_secs(150));
/// assert!(parse_mesos_duration("5s").is_err());
/// ```
pub fn parse_mesos_duration(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(text.to_owned());
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(err)?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number == "." {
        return Err(err());
    }
    let value: f64 = number.parse().map_err(|_| err())?;
    let unit_secs = match unit {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "secs" => 1.0,
        "mins" => 60.0,
        "hrs" => 3600.0,
        "days" => 86_400.0,
        "weeks" => 604_800.0,
        _ => return Err(err()),
    };
    // Whole nanoseconds need no float rounding.
    if unit == "ns" && !number.contains('.') {
        return number
            .parse::<u64>()
            .map(Duration::from_nanos)
            .map_err(|_| err());
    }
    Duration::try_from_secs_f64(value * unit_secs).map_err(|_| err())
}

/// Formats a duration the way the agent writes it: the largest unit that expresses it exactly
/// (`5secs`, `250ms`, `15mins`), else nanoseconds.
pub fn format_mesos_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    const UNITS: [(u128, &str); 8] = [
        (604_800_000_000_000, "weeks"),
        (86_400_000_000_000, "days"),
        (3_600_000_000_000, "hrs"),
        (60_000_000_000, "mins"),
        (1_000_000_000, "secs"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    for (size, unit) in UNITS {
        if nanos >= size && nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    "0ns".to_owned()
}

/// Where the agent's executor endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAddress {
    /// TCP `host:port`; requests go to `/api/v1/executor`.
    Tcp(String),
    /// Unix socket (agent flag `--http_executor_domain_sockets`); requests go to
    /// `/<slave pid id>/api/v1/executor`, the only path the agent serves there.
    Unix(PathBuf),
}

/// Everything the executor reads from the agent's environment.
///
/// Secrets: the authentication token is kept here; the executor must not pass
/// `MESOS_EXECUTOR_AUTHENTICATION_TOKEN` on to the processes it starts.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentEnv {
    /// `MESOS_FRAMEWORK_ID`.
    pub framework_id: FrameworkId,
    /// `MESOS_EXECUTOR_ID`.
    pub executor_id: ExecutorId,
    /// `MESOS_AGENT_ENDPOINT`, else the address part of `MESOS_SLAVE_PID`.
    pub agent_endpoint: String,
    /// `MESOS_SLAVE_PID`, when set.
    pub slave_pid: Option<String>,
    /// `MESOS_SLAVE_ID`, when set.
    pub agent_id: Option<AgentId>,
    /// `MESOS_DIRECTORY`.
    pub directory: PathBuf,
    /// `MESOS_SANDBOX`, else `MESOS_DIRECTORY`.
    pub sandbox: PathBuf,
    /// `MESOS_CHECKPOINT` is `1`.
    pub checkpoint: bool,
    /// `MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD`, else [`DEFAULT_SHUTDOWN_GRACE_PERIOD`].
    pub shutdown_grace_period: Duration,
    /// `MESOS_RECOVERY_TIMEOUT` (required when checkpointing).
    pub recovery_timeout: Option<Duration>,
    /// `MESOS_SUBSCRIPTION_BACKOFF_MAX` (required when checkpointing).
    pub subscription_backoff_max: Option<Duration>,
    /// `MESOS_EXECUTOR_AUTHENTICATION_TOKEN`, sent as `Authorization: Bearer`.
    pub authentication_token: Option<String>,
    /// `MESOS_DOMAIN_SOCKET`: when set, the agent is reached over this socket.
    pub domain_socket: Option<PathBuf>,
}

impl std::fmt::Debug for AgentEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentEnv")
            .field("framework_id", &self.framework_id.value)
            .field("executor_id", &self.executor_id.value)
            .field("agent_endpoint", &self.agent_endpoint)
            .field("slave_pid", &self.slave_pid)
            .field("agent_id", &self.agent_id)
            .field("directory", &self.directory)
            .field("sandbox", &self.sandbox)
            .field("checkpoint", &self.checkpoint)
            .field("shutdown_grace_period", &self.shutdown_grace_period)
            .field("recovery_timeout", &self.recovery_timeout)
            .field("subscription_backoff_max", &self.subscription_backoff_max)
            .field(
                "authentication_token",
                &self.authentication_token.as_ref().map(|_| "<redacted>"),
            )
            .field("domain_socket", &self.domain_socket)
            .finish()
    }
}

impl AgentEnv {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_vars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// Reads the given variables (other names are ignored). Empty values count as unset.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, EnvError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, v)| k.starts_with("MESOS_") && !v.is_empty())
            .collect();
        let get = |var: &'static str| vars.get(var).cloned();
        let require = |var: &'static str| get(var).ok_or(EnvError::Missing { var, why: None });
        let duration = |var: &'static str| -> Result<Option<Duration>, EnvError> {
            get(var)
                .map(|value| {
                    parse_mesos_duration(&value).map_err(|source| EnvError::Duration {
                        var,
                        value,
                        source,
                    })
                })
                .transpose()
        };

        let framework_id = FrameworkId::new(require(MESOS_FRAMEWORK_ID)?);
        let executor_id = ExecutorId::new(require(MESOS_EXECUTOR_ID)?);

        let slave_pid = get(MESOS_SLAVE_PID);
        let pid_parts = match &slave_pid {
            Some(pid) => Some(split_pid(pid).ok_or_else(|| EnvError::Invalid {
                var: MESOS_SLAVE_PID,
                value: pid.clone(),
                reason: "expected <id>@<host>:<port>, e.g. slave(1)@10.0.0.1:5051",
            })?),
            None => None,
        };
        let agent_endpoint = match get(MESOS_AGENT_ENDPOINT) {
            Some(endpoint) => {
                if !looks_like_host_port(&endpoint) {
                    return Err(EnvError::Invalid {
                        var: MESOS_AGENT_ENDPOINT,
                        value: endpoint,
                        reason: "expected <host>:<port>",
                    });
                }
                endpoint
            }
            None => match &pid_parts {
                Some((_, address)) => address.clone(),
                None => {
                    return Err(EnvError::Missing {
                        var: MESOS_AGENT_ENDPOINT,
                        why: Some(Requirement::NoSlavePid),
                    });
                }
            },
        };

        let directory = PathBuf::from(require(MESOS_DIRECTORY)?);
        let sandbox = get(MESOS_SANDBOX)
            .map(PathBuf::from)
            .unwrap_or_else(|| directory.clone());

        let checkpoint = match get(MESOS_CHECKPOINT).as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => {
                return Err(EnvError::Invalid {
                    var: MESOS_CHECKPOINT,
                    value: other.to_owned(),
                    reason: "expected 1 or 0",
                });
            }
        };

        let shutdown_grace_period = duration(MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD)?
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE_PERIOD);
        let recovery_timeout = duration(MESOS_RECOVERY_TIMEOUT)?;
        let subscription_backoff_max = duration(MESOS_SUBSCRIPTION_BACKOFF_MAX)?;
        if checkpoint {
            for (var, value) in [
                (MESOS_RECOVERY_TIMEOUT, recovery_timeout),
                (MESOS_SUBSCRIPTION_BACKOFF_MAX, subscription_backoff_max),
            ] {
                if value.is_none() {
                    return Err(EnvError::Missing {
                        var,
                        why: Some(Requirement::Checkpointing),
                    });
                }
            }
        }

        Ok(Self {
            framework_id,
            executor_id,
            agent_endpoint,
            slave_pid,
            agent_id: get(MESOS_SLAVE_ID).map(AgentId::new),
            directory,
            sandbox,
            checkpoint,
            shutdown_grace_period,
            recovery_timeout,
            subscription_backoff_max,
            authentication_token: get(MESOS_EXECUTOR_AUTHENTICATION_TOKEN),
            domain_socket: get(MESOS_DOMAIN_SOCKET).map(PathBuf::from),
        })
    }

    /// The address to connect to: the domain socket when set, else TCP.
    pub fn address(&self) -> AgentAddress {
        match &self.domain_socket {
            Some(path) => AgentAddress::Unix(path.clone()),
            None => AgentAddress::Tcp(self.agent_endpoint.clone()),
        }
    }

    /// Request path for the executor API on [`AgentEnv::address`].
    pub fn api_path(&self) -> String {
        match &self.domain_socket {
            Some(_) => {
                let id = self
                    .slave_pid
                    .as_deref()
                    .and_then(split_pid)
                    .map(|(id, _)| id)
                    .unwrap_or_else(|| "slave(1)".to_owned());
                format!("/{id}/api/v1/executor")
            }
            None => "/api/v1/executor".to_owned(),
        }
    }
}

/// `slave(1)@10.0.0.1:5051` → (`slave(1)`, `10.0.0.1:5051`).
fn split_pid(pid: &str) -> Option<(String, String)> {
    let (id, address) = pid.split_once('@')?;
    (!id.is_empty() && looks_like_host_port(address)).then(|| (id.to_owned(), address.to_owned()))
}

fn looks_like_host_port(text: &str) -> bool {
    text.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            (MESOS_FRAMEWORK_ID, "f-1"),
            (MESOS_EXECUTOR_ID, "e-1"),
            (MESOS_AGENT_ENDPOINT, "127.0.0.1:5051"),
            (MESOS_SLAVE_PID, "slave(1)@127.0.0.1:5051"),
            (MESOS_SLAVE_ID, "a-S0"),
            (MESOS_DIRECTORY, "/var/lib/mesos/sandbox"),
            (MESOS_CHECKPOINT, "0"),
            (MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD, "5secs"),
            ("PATH", "/usr/bin"),
        ]
    }

    fn with(changes: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut vars = base();
        for (k, v) in changes {
            vars.retain(|(key, _)| key != k);
            vars.push((k, v));
        }
        vars
    }

    #[test]
    fn all_units_and_fractions() {
        let cases = [
            ("15ns", Duration::from_nanos(15)),
            ("3us", Duration::from_micros(3)),
            ("250ms", Duration::from_millis(250)),
            ("5secs", Duration::from_secs(5)),
            ("2.5secs", Duration::from_millis(2500)),
            ("15mins", Duration::from_secs(900)),
            ("1hrs", Duration::from_secs(3600)),
            ("0.5hrs", Duration::from_secs(1800)),
            ("2days", Duration::from_secs(172_800)),
            ("1weeks", Duration::from_secs(604_800)),
            ("0secs", Duration::ZERO),
            (".5secs", Duration::from_millis(500)),
        ];
        for (text, expected) in cases {
            let got = parse_mesos_duration(text).unwrap();
            let diff = got.abs_diff(expected);
            assert!(diff < Duration::from_nanos(2), "{text}: {got:?}");
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for text in [
            "",
            "5",
            "secs",
            "5s",
            "5 secs",
            " 5secs",
            "-5secs",
            "5SECS",
            "1.2.3secs",
            ".secs",
            "5secs ",
            "5min",
            "1e3ms",
        ] {
            assert!(parse_mesos_duration(text).is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn formats_durations_parseably() {
        for (d, text) in [
            (Duration::from_secs(5), "5secs"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(900), "15mins"),
            (Duration::from_nanos(1_500), "1500ns"),
            (Duration::ZERO, "0ns"),
        ] {
            assert_eq!(format_mesos_duration(d), text);
            assert_eq!(parse_mesos_duration(text).unwrap(), d);
        }
    }

    #[test]
    fn reads_every_variable() {
        let env = AgentEnv::from_vars(with(&[
            (MESOS_SANDBOX, "/mnt/mesos/sandbox"),
            (MESOS_CHECKPOINT, "1"),
            (MESOS_RECOVERY_TIMEOUT, "15mins"),
            (MESOS_SUBSCRIPTION_BACKOFF_MAX, "2secs"),
            (MESOS_EXECUTOR_AUTHENTICATION_TOKEN, "jwt"),
            (MESOS_DOMAIN_SOCKET, "/run/agent.sock"),
        ]))
        .unwrap();
        assert_eq!(env.framework_id.value, "f-1");
        assert_eq!(env.executor_id.value, "e-1");
        assert_eq!(env.agent_endpoint, "127.0.0.1:5051");
        assert_eq!(env.slave_pid.as_deref(), Some("slave(1)@127.0.0.1:5051"));
        assert_eq!(env.agent_id, Some(AgentId::new("a-S0")));
        assert_eq!(env.directory, PathBuf::from("/var/lib/mesos/sandbox"));
        assert_eq!(env.sandbox, PathBuf::from("/mnt/mesos/sandbox"));
        assert!(env.checkpoint);
        assert_eq!(env.shutdown_grace_period, Duration::from_secs(5));
        assert_eq!(env.recovery_timeout, Some(Duration::from_secs(900)));
        assert_eq!(env.subscription_backoff_max, Some(Duration::from_secs(2)));
        assert_eq!(env.authentication_token.as_deref(), Some("jwt"));
        assert_eq!(env.address(), AgentAddress::Unix("/run/agent.sock".into()));
        assert_eq!(env.api_path(), "/slave(1)/api/v1/executor");
        assert!(!format!("{env:?}").contains("jwt"));
    }

    #[test]
    fn defaults_and_fallbacks() {
        let vars: Vec<_> = base()
            .into_iter()
            .filter(|(k, _)| {
                ![
                    MESOS_AGENT_ENDPOINT,
                    MESOS_CHECKPOINT,
                    MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD,
                ]
                .contains(k)
            })
            .collect();
        let env = AgentEnv::from_vars(vars).unwrap();
        assert_eq!(env.agent_endpoint, "127.0.0.1:5051");
        assert_eq!(env.sandbox, env.directory);
        assert!(!env.checkpoint);
        assert_eq!(env.shutdown_grace_period, DEFAULT_SHUTDOWN_GRACE_PERIOD);
        assert_eq!(env.address(), AgentAddress::Tcp("127.0.0.1:5051".into()));
        assert_eq!(env.api_path(), "/api/v1/executor");
    }

    #[test]
    fn errors_name_the_variable_and_value() {
        let missing = AgentEnv::from_vars(with(&[(MESOS_FRAMEWORK_ID, "")])).unwrap_err();
        assert_eq!(missing.to_string(), "MESOS_FRAMEWORK_ID is not set");

        let bad = AgentEnv::from_vars(with(&[(MESOS_CHECKPOINT, "true")])).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "MESOS_CHECKPOINT = \"true\": expected 1 or 0"
        );

        let bad =
            AgentEnv::from_vars(with(&[(MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD, "5s")])).unwrap_err();
        assert!(
            bad.to_string()
                .starts_with("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD = \"5s\": invalid duration"),
            "{bad}"
        );

        let bad = AgentEnv::from_vars(with(&[(MESOS_AGENT_ENDPOINT, "localhost")])).unwrap_err();
        assert!(
            bad.to_string()
                .contains("MESOS_AGENT_ENDPOINT = \"localhost\"")
        );

        let bad = AgentEnv::from_vars(with(&[(MESOS_SLAVE_PID, "nonsense")])).unwrap_err();
        assert!(bad.to_string().contains("MESOS_SLAVE_PID = \"nonsense\""));
    }

    #[test]
    fn checkpointing_requires_recovery_settings() {
        let err = AgentEnv::from_vars(with(&[
            (MESOS_CHECKPOINT, "1"),
            (MESOS_SUBSCRIPTION_BACKOFF_MAX, "2secs"),
        ]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "MESOS_RECOVERY_TIMEOUT is not set (required when MESOS_CHECKPOINT=1)"
        );
        let err = AgentEnv::from_vars(with(&[
            (MESOS_CHECKPOINT, "1"),
            (MESOS_RECOVERY_TIMEOUT, "15mins"),
        ]))
        .unwrap_err();
        assert!(matches!(
            err,
            EnvError::Missing {
                var: MESOS_SUBSCRIPTION_BACKOFF_MAX,
                ..
            }
        ));
    }

    #[test]
    fn endpoint_needs_one_of_two_variables() {
        let vars: Vec<_> = base()
            .into_iter()
            .filter(|(k, _)| ![MESOS_AGENT_ENDPOINT, MESOS_SLAVE_PID].contains(k))
            .collect();
        let err = AgentEnv::from_vars(vars).unwrap_err();
        assert!(matches!(
            err,
            EnvError::Missing {
                var: MESOS_AGENT_ENDPOINT,
                ..
            }
        ));
    }
}
