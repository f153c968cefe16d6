//! Incoming framework messages from the scheduler: JSON, polymorphic on `@class` ("Kills,
//! destroy, shutdown" in `docs/executor.md`). Outgoing status updates are
//! [`crate::supervise::status_updates`].
//!
//! - `.SingularityTaskDestroyFrameworkMessage` `{"taskId": {...}, "user": "opt"}`: kill the
//!   task with SIGKILL now.
//! - `.SingularityTaskShellCommandRequest`, or no `@class` at all: a shell-command request,
//!   run by [`crate::shell`] and answered with `SingularityTaskShellCommandUpdate`s
//!   ([`ShellCommandRequest::update`]).

use serde_json::{Value, json};
use singularity_common::task_id::TaskId;

/// `@class` of a destroy request.
pub const DESTROY_CLASS: &str = ".SingularityTaskDestroyFrameworkMessage";
/// `@class` of a shell-command request.
pub const SHELL_COMMAND_CLASS: &str = ".SingularityTaskShellCommandRequest";

/// A framework message that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameworkMessageError {
    /// Not JSON.
    #[error("not a JSON framework message: {0}")]
    NotJson(#[source] serde_json::Error),
    /// A shell-command request without its command.
    #[error("a shell-command request without shellCommand")]
    NoShellCommand,
    /// No `taskId`.
    #[error("no taskId")]
    NoTaskId,
    /// A `taskId` that is neither a string, nor has an `id`, nor has the parts of one.
    #[error("invalid taskId: {0}")]
    InvalidTaskId(#[source] serde_json::Error),
}

/// A message the executor understands.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameworkMessage {
    /// Kill the task now.
    Destroy {
        /// The task id string.
        task_id: String,
        /// Who asked.
        user: Option<String>,
    },
    /// Run a configured shell command.
    ShellCommand(ShellCommandRequest),
    /// A class this executor does not know.
    Unknown {
        /// The `@class` value.
        class: String,
    },
}

/// A shell-command request, with what a reply needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ShellCommandRequest {
    /// The task id string.
    pub task_id: String,
    /// The task id as the scheduler sent it, echoed in the reply.
    pub task_id_json: Value,
    /// Command name.
    pub name: String,
    /// Request timestamp (epoch ms), part of the request's identity.
    pub timestamp: i64,
    /// Names of the options to turn on.
    pub options: Vec<String>,
    /// Replaces `{NAME}` in the output file name.
    pub logfile_name: Option<String>,
}

/// The `updateType` of a `SingularityTaskShellCommandUpdate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellUpdate {
    /// Refused.
    Invalid,
    /// Accepted: the message is the command line.
    Acked,
    /// Running: the message is `pid - N`.
    Started,
    /// Ended: `Finished with code N`.
    Finished,
    /// Could not run to its end.
    Failed,
}

impl ShellUpdate {
    /// The JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "INVALID",
            Self::Acked => "ACKED",
            Self::Started => "STARTED",
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
        }
    }
}

impl ShellCommandRequest {
    /// The `SingularityTaskShellCommandUpdate` answering this request.
    pub fn update(
        &self,
        kind: ShellUpdate,
        message: &str,
        output_filename: Option<&str>,
        now_millis: i64,
    ) -> Vec<u8> {
        let mut update = json!({
            "shellRequestId": {
                "taskId": self.task_id_json,
                "name": self.name,
                "timestamp": self.timestamp,
            },
            "timestamp": now_millis,
            "message": message,
            "updateType": kind.as_str(),
        });
        if let Some(name) = output_filename {
            update["outputFilename"] = Value::from(name);
        }
        update.to_string().into_bytes()
    }
}

/// Parses a framework message.
pub fn parse(bytes: &[u8]) -> Result<FrameworkMessage, FrameworkMessageError> {
    let value: Value = serde_json::from_slice(bytes).map_err(FrameworkMessageError::NotJson)?;
    let class = value.get("@class").and_then(Value::as_str);
    match class {
        Some(DESTROY_CLASS) => Ok(FrameworkMessage::Destroy {
            task_id: task_id(&value)?,
            user: value.get("user").and_then(Value::as_str).map(str::to_owned),
        }),
        Some(SHELL_COMMAND_CLASS) | None => {
            let command = value
                .get("shellCommand")
                .ok_or(FrameworkMessageError::NoShellCommand)?;
            Ok(FrameworkMessage::ShellCommand(ShellCommandRequest {
                task_id: task_id(&value)?,
                task_id_json: value.get("taskId").cloned().unwrap_or(Value::Null),
                name: command
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                timestamp: value.get("timestamp").and_then(Value::as_i64).unwrap_or(0),
                options: command
                    .get("options")
                    .and_then(Value::as_array)
                    .map(|options| {
                        options
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                logfile_name: command
                    .get("logfileName")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            }))
        }
        Some(other) => Ok(FrameworkMessage::Unknown {
            class: other.to_owned(),
        }),
    }
}

/// The task id string of a message: its `taskId.id`, else built from the parts.
fn task_id(message: &Value) -> Result<String, FrameworkMessageError> {
    let id = message
        .get("taskId")
        .ok_or(FrameworkMessageError::NoTaskId)?;
    if let Some(text) = id.get("id").and_then(Value::as_str) {
        return Ok(text.to_owned());
    }
    if let Some(text) = id.as_str() {
        return Ok(text.to_owned());
    }
    serde_json::from_value::<TaskId>(id.clone())
        .map(|t| t.to_string())
        .map_err(FrameworkMessageError::InvalidTaskId)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "req-dep-1668780000000-1-host-rack";

    fn task_id_json() -> Value {
        json!({"requestId": "req", "deployId": "dep", "startedAt": 1668780000000_i64,
               "instanceNo": 1, "host": "host", "sanitizedHost": "host",
               "sanitizedRackId": "rack", "rackId": "rack", "id": ID})
    }

    #[test]
    fn destroy_messages_name_the_task_and_user() {
        let bytes = json!({"@class": DESTROY_CLASS, "taskId": task_id_json(), "user": "ops"});
        assert_eq!(
            parse(bytes.to_string().as_bytes()).expect("parses"),
            FrameworkMessage::Destroy {
                task_id: ID.into(),
                user: Some("ops".into())
            }
        );
    }

    #[test]
    fn a_task_id_without_id_is_built_from_its_parts() {
        let mut id = task_id_json();
        id.as_object_mut().map(|o| o.remove("id"));
        let bytes = json!({"@class": DESTROY_CLASS, "taskId": id});
        assert_eq!(
            parse(bytes.to_string().as_bytes()).expect("parses"),
            FrameworkMessage::Destroy {
                task_id: ID.into(),
                user: None
            }
        );
    }

    #[test]
    fn shell_commands_without_a_class_are_recognised_and_answered() {
        let bytes = json!({"taskId": task_id_json(), "timestamp": 5,
                           "shellCommand": {"name": "lsof", "options": ["a", "b"],
                                            "logfileName": "out"}});
        let Ok(FrameworkMessage::ShellCommand(request)) = parse(bytes.to_string().as_bytes())
        else {
            panic!("a shell command");
        };
        assert_eq!(request.name, "lsof");
        assert_eq!(request.options, ["a", "b"]);
        assert_eq!(request.logfile_name.as_deref(), Some("out"));
        let reply: Value =
            serde_json::from_slice(&request.update(ShellUpdate::Invalid, "no", None, 9))
                .expect("json");
        assert_eq!(reply["updateType"], "INVALID");
        assert_eq!(reply["message"], "no");
        assert_eq!(reply["timestamp"], 9);
        assert!(reply.get("outputFilename").is_none());
        let acked: Value = serde_json::from_slice(&request.update(
            ShellUpdate::Acked,
            "lsof -p 1",
            Some("f.log"),
            9,
        ))
        .expect("json");
        assert_eq!(acked["updateType"], "ACKED");
        assert_eq!(acked["outputFilename"], "f.log");
        assert_eq!(reply["shellRequestId"]["taskId"]["id"], ID);
        assert_eq!(reply["shellRequestId"]["timestamp"], 5);
    }

    #[test]
    fn garbage_is_an_error_and_unknown_classes_are_reported() {
        assert!(matches!(
            parse(b"nope"),
            Err(FrameworkMessageError::NotJson(_))
        ));
        assert_eq!(
            parse(br#"{"@class": ".Other"}"#).expect("parses"),
            FrameworkMessage::Unknown {
                class: ".Other".into()
            }
        );
    }
}
