//! Singularity task ids.
//!
//! A task id is the string
//! `<requestId>-<deployId>-<startedAtMillis>-<instanceNo>-<sanitizedHost>-<sanitizedRackId>`.
//! It is parsed from the right, as Singularity does: the last five `-` separate the fixed parts,
//! and whatever is left on the left is the request id (which may itself contain `-`). Host and
//! rack are "sanitized": every `-` in them is replaced by `_`, which keeps the split unambiguous.
//!
//! The scheduler's framework messages carry the same id as a JSON object (see [`TaskId`]'s serde
//! implementation); the executor's records carry the string form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parsed Singularity task id.
///
/// [`Display`](fmt::Display) writes the string form, so parsing a canonical id and printing it
/// gives the same string back. Serde uses the JSON object form of the framework messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskId {
    /// The request id; may contain `-`.
    pub request_id: String,
    /// The deploy id.
    pub deploy_id: String,
    /// When the task was started (scheduled), in epoch milliseconds.
    pub started_at: i64,
    /// The 1-based instance number.
    pub instance_no: u32,
    /// The agent host, with `-` replaced by `_`.
    pub sanitized_host: String,
    /// The rack id, with `-` replaced by `_`.
    pub sanitized_rack_id: String,
}

/// Why a task id string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskIdError {
    /// Fewer than six `-`-separated parts.
    #[error("invalid task id {input:?}: expected 6 parts separated by '-', found {found}")]
    TooFewParts {
        /// The string that was parsed.
        input: String,
        /// How many parts it has.
        found: usize,
    },
    /// One part is empty or not a valid value.
    #[error("invalid task id {input:?}: {part} {value:?} {reason}")]
    InvalidPart {
        /// The string that was parsed.
        input: String,
        /// Which part: `requestId`, `deployId`, `startedAt`, `instanceNo`, `host` or `rackId`.
        part: &'static str,
        /// The text of that part.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The task id with every `:` replaced by `_`, used for file and directory names.
pub fn safe_task_id(task_id: &str) -> String {
    task_id.replace(':', "_")
}

/// Replaces every `-` by `_`, as Singularity does for the host and rack parts of a task id.
pub fn sanitize_id_part(value: &str) -> String {
    value.replace('-', "_")
}

impl TaskId {
    /// The string form (same as `to_string()`).
    pub fn id(&self) -> String {
        self.to_string()
    }

    /// The safe task id: the string form with `:` replaced by `_`.
    pub fn safe_id(&self) -> String {
        safe_task_id(&self.to_string())
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-{}-{}-{}-{}",
            self.request_id,
            self.deploy_id,
            self.started_at,
            self.instance_no,
            self.sanitized_host,
            self.sanitized_rack_id
        )
    }
}

/// Canonical decimal digits only: no sign and no leading zero, so that printing the parsed
/// number reproduces the text (names derived from the id must match on both sides).
fn is_canonical_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

impl FromStr for TaskId {
    type Err = TaskIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let mut parts = input.rsplitn(6, '-');
        let rack = parts.next();
        let host = parts.next();
        let instance = parts.next();
        let started = parts.next();
        let deploy = parts.next();
        let request = parts.next();
        let (Some(request), Some(deploy), Some(started), Some(instance), Some(host), Some(rack)) =
            (request, deploy, started, instance, host, rack)
        else {
            return Err(TaskIdError::TooFewParts {
                input: input.to_owned(),
                found: input.split('-').count(),
            });
        };

        let invalid =
            |part: &'static str, value: &str, reason: &'static str| TaskIdError::InvalidPart {
                input: input.to_owned(),
                part,
                value: value.to_owned(),
                reason,
            };
        for (part, value) in [
            ("requestId", request),
            ("deployId", deploy),
            ("host", host),
            ("rackId", rack),
        ] {
            if value.is_empty() {
                return Err(invalid(part, value, "is empty"));
            }
        }
        if !is_canonical_decimal(started) {
            return Err(invalid(
                "startedAt",
                started,
                "is not a canonical decimal number",
            ));
        }
        let started_at = started
            .parse::<i64>()
            .map_err(|_| invalid("startedAt", started, "is out of range"))?;
        if !is_canonical_decimal(instance) {
            return Err(invalid(
                "instanceNo",
                instance,
                "is not a canonical decimal number",
            ));
        }
        let instance_no = instance
            .parse::<u32>()
            .map_err(|_| invalid("instanceNo", instance, "is out of range"))?;

        Ok(TaskId {
            request_id: request.to_owned(),
            deploy_id: deploy.to_owned(),
            started_at,
            instance_no,
            sanitized_host: host.to_owned(),
            sanitized_rack_id: rack.to_owned(),
        })
    }
}

/// The JSON object form as the Java mapper writes it. `host` and `rackId` are deprecated
/// duplicates of the sanitized values; `id` is the string form.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskIdJsonOut<'a> {
    request_id: &'a str,
    deploy_id: &'a str,
    started_at: i64,
    instance_no: u32,
    host: &'a str,
    sanitized_host: &'a str,
    sanitized_rack_id: &'a str,
    rack_id: &'a str,
    id: String,
}

/// The JSON object form as read: either spelling of host, rack and start time is accepted.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskIdJsonIn {
    request_id: String,
    deploy_id: String,
    #[serde(default)]
    started_at: Option<i64>,
    #[serde(default)]
    next_run_at: Option<i64>,
    instance_no: u32,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    sanitized_host: Option<String>,
    #[serde(default)]
    sanitized_rack_id: Option<String>,
    #[serde(default)]
    rack_id: Option<String>,
}

impl Serialize for TaskId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TaskIdJsonOut {
            request_id: &self.request_id,
            deploy_id: &self.deploy_id,
            started_at: self.started_at,
            instance_no: self.instance_no,
            host: &self.sanitized_host,
            sanitized_host: &self.sanitized_host,
            sanitized_rack_id: &self.sanitized_rack_id,
            rack_id: &self.sanitized_rack_id,
            id: self.to_string(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;

        let raw = TaskIdJsonIn::deserialize(deserializer)?;
        let started_at = raw
            .started_at
            .or(raw.next_run_at)
            .ok_or_else(|| D::Error::missing_field("startedAt"))?;
        let sanitized_host = match (raw.sanitized_host, raw.host) {
            (Some(sanitized), _) => sanitized,
            (None, Some(host)) => sanitize_id_part(&host),
            (None, None) => return Err(D::Error::missing_field("sanitizedHost")),
        };
        let sanitized_rack_id = match (raw.sanitized_rack_id, raw.rack_id) {
            (Some(sanitized), _) => sanitized,
            (None, Some(rack)) => sanitize_id_part(&rack),
            (None, None) => return Err(D::Error::missing_field("sanitizedRackId")),
        };
        Ok(TaskId {
            request_id: raw.request_id,
            deploy_id: raw.deploy_id,
            started_at,
            instance_no: raw.instance_no,
            sanitized_host,
            sanitized_rack_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "myreq-dep1-1668780000000-1-host_a-rack1";

    fn parsed() -> TaskId {
        TaskId {
            request_id: "myreq".into(),
            deploy_id: "dep1".into(),
            started_at: 1_668_780_000_000,
            instance_no: 1,
            sanitized_host: "host_a".into(),
            sanitized_rack_id: "rack1".into(),
        }
    }

    #[test]
    fn parses_six_parts() {
        assert_eq!(ID.parse::<TaskId>().unwrap(), parsed());
    }

    #[test]
    fn display_gives_the_string_back() {
        assert_eq!(parsed().to_string(), ID);
        assert_eq!(parsed().id(), ID);
        for id in [
            ID,
            "my-long-request-dep1-1-2-h-r",
            "a-b-0-0-h_1-r_2",
            "a:b-c-1-1-ip_10_0_0_1-us_east_1a",
        ] {
            assert_eq!(id.parse::<TaskId>().unwrap().to_string(), id);
        }
    }

    #[test]
    fn request_id_keeps_its_dashes() {
        let id: TaskId = "my-long-request-dep1-1668780000000-12-host_a-rack1"
            .parse()
            .unwrap();
        assert_eq!(id.request_id, "my-long-request");
        assert_eq!(id.deploy_id, "dep1");
        assert_eq!(id.instance_no, 12);
    }

    #[test]
    fn too_few_parts_names_the_input() {
        let err = "a-b-1-2-h".parse::<TaskId>().unwrap_err();
        assert_eq!(
            err,
            TaskIdError::TooFewParts {
                input: "a-b-1-2-h".into(),
                found: 5
            }
        );
        assert!(err.to_string().contains("\"a-b-1-2-h\""));
        assert!("".parse::<TaskId>().is_err());
    }

    #[test]
    fn bad_parts_are_named() {
        let cases = [
            ("r-d-x-1-h-k", "startedAt"),
            ("r-d-1-x-h-k", "instanceNo"),
            ("r-d-01-1-h-k", "startedAt"),
            ("r-d-+1-1-h-k", "startedAt"),
            ("r-d-1-01-h-k", "instanceNo"),
            ("r-d-1-99999999999-h-k", "instanceNo"),
            ("r-d-99999999999999999999-1-h-k", "startedAt"),
            ("-d-1-1-h-k", "requestId"),
            ("r--1-1-h-k", "deployId"),
            ("r-d-1-1--k", "host"),
            ("r-d-1-1-h-", "rackId"),
        ];
        for (input, want) in cases {
            match input.parse::<TaskId>() {
                Err(TaskIdError::InvalidPart {
                    input: got_input,
                    part,
                    ..
                }) => {
                    assert_eq!(part, want, "{input}");
                    assert_eq!(got_input, input);
                }
                other => panic!("{input}: {other:?}"),
            }
        }
        let msg = "r-d-x-1-h-k".parse::<TaskId>().unwrap_err().to_string();
        assert!(
            msg.contains("r-d-x-1-h-k") && msg.contains("startedAt"),
            "{msg}"
        );
    }

    #[test]
    fn safe_task_id_replaces_colons() {
        assert_eq!(safe_task_id("a:b-c:d"), "a_b-c_d");
        assert_eq!(safe_task_id(ID), ID);
        let id: TaskId = "r:x-d-1-1-h-k".parse().unwrap();
        assert_eq!(id.safe_id(), "r_x-d-1-1-h-k");
    }

    #[test]
    fn json_object_form_round_trips() {
        let value = json!({
            "requestId": "myreq",
            "deployId": "dep1",
            "startedAt": 1_668_780_000_000_i64,
            "instanceNo": 1,
            "host": "host_a",
            "sanitizedHost": "host_a",
            "sanitizedRackId": "rack1",
            "rackId": "rack1",
            "id": ID
        });
        let id: TaskId = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(id, parsed());
        assert_eq!(serde_json::to_value(&id).unwrap(), value);
    }

    #[test]
    fn json_accepts_the_alternative_spellings() {
        let id: TaskId = serde_json::from_value(json!({
            "requestId": "myreq",
            "deployId": "dep1",
            "nextRunAt": 1_668_780_000_000_i64,
            "instanceNo": 1,
            "host": "host-a",
            "rackId": "rack1",
            "somethingNew": true
        }))
        .unwrap();
        assert_eq!(id, parsed());

        let both: TaskId = serde_json::from_value(json!({
            "requestId": "myreq",
            "deployId": "dep1",
            "startedAt": 1_668_780_000_000_i64,
            "nextRunAt": 5,
            "instanceNo": 1,
            "host": "ignored",
            "sanitizedHost": "host_a",
            "sanitizedRackId": "rack1",
            "rackId": "ignored"
        }))
        .unwrap();
        assert_eq!(both, parsed());
    }

    #[test]
    fn json_missing_fields_are_named() {
        let err = serde_json::from_value::<TaskId>(json!({
            "requestId": "r", "deployId": "d", "instanceNo": 1, "host": "h", "rackId": "k"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("startedAt"), "{err}");
        let err = serde_json::from_value::<TaskId>(json!({
            "requestId": "r", "deployId": "d", "startedAt": 1, "instanceNo": 1, "rackId": "k"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("sanitizedHost"), "{err}");
        let err = serde_json::from_value::<TaskId>(json!({
            "deployId": "d", "startedAt": 1, "instanceNo": 1, "host": "h", "rackId": "k"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("requestId"), "{err}");
    }
}
