//! stout JSON mapping of calls, events and TaskInfo (docs/mesos-executor-api.md).
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use singularity_mesos::protocol::EventType;
use singularity_mesos::types::{ContainerType, Resource, Source, ValueType};
use singularity_mesos::{
    Call, CallType, Event, ExecutorId, FrameworkId, KillPolicy, TaskId, TaskInfo, TaskState,
    TaskStatus,
};
use std::time::Duration;

/// docs/mesos-executor-api.md, with the elided executor resources filled in.
const LAUNCH: &str = r#"{"type":"LAUNCH","launch":{"task":{
  "name":"web-1","task_id":{"value":"req-deploy-1700000000000-1-host-DEFAULT"},
  "agent_id":{"value":"e5f1...-S3"},
  "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.5},
                "allocation_info":{"role":"*"}},
               {"name":"mem","type":"SCALAR","scalar":{"value":256}},
               {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":31000}]}},
               {"name":"tags","type":"SET","set":{"item":["a","b"]}}],
  "executor":{"executor_id":{"value":"s-exec-1"},"framework_id":{"value":"f-0001"},
              "command":{"value":"/usr/local/bin/singularity-executor","shell":true},
              "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.1}}],
              "shutdown_grace_period":{"nanoseconds":5000000000}},
  "command":{"value":"./run.sh","shell":true,
             "uris":[{"value":"https://x/artifact.tgz","extract":true,"cache":false}],
             "environment":{"variables":[{"name":"PORT","type":"VALUE","value":"31000"}]},
             "user":"app"},
  "container":{"type":"DOCKER","docker":{"image":"busybox:1","network":"BRIDGE",
               "port_mappings":[{"host_port":31000,"container_port":8080,"protocol":"tcp"}],
               "parameters":[{"key":"env","value":"A=1"}],"privileged":false,
               "force_pull_image":true},
               "volumes":[{"container_path":"/data","host_path":"/srv/data","mode":"RW"}]},
  "health_check":{"type":"HTTP","http":{"port":31000,"path":"/health"},"delay_seconds":15},
  "kill_policy":{"grace_period":{"nanoseconds":30000000000}},
  "labels":{"labels":[{"key":"team","value":"x"}]},
  "limits":{"cpus":{"value":1.0}},
  "data":"eyJjbWQiOiIuL3J1bi5zaCIsIC4uLn0="
}}}"#;

/// Numbers compared as f64, since `256` and `256.0` are the same protobuf double.
fn normalize(v: Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, normalize(v))).collect()),
        other => other,
    }
}

#[test]
fn launch_example_parses_field_by_field() {
    let event: Event = serde_json::from_str(LAUNCH).unwrap();
    assert_eq!(event.kind, EventType::Launch);
    let task = event.launch.unwrap().task;
    assert_eq!(task.name, "web-1");
    assert_eq!(
        task.task_id.value,
        "req-deploy-1700000000000-1-host-DEFAULT"
    );
    assert_eq!(task.agent_id.value, "e5f1...-S3");
    assert_eq!(task.resources.len(), 4);
    assert_eq!(task.resources[0].kind, Some(ValueType::Scalar));
    assert_eq!(task.resources[0].scalar.unwrap().value, 0.5);
    assert_eq!(
        task.resources[0]
            .allocation_info
            .as_ref()
            .unwrap()
            .role
            .as_deref(),
        Some("*")
    );
    let ports = task.resources[2].ranges.as_ref().unwrap();
    assert_eq!((ports.range[0].begin, ports.range[0].end), (31000, 31000));
    assert_eq!(task.resources[3].set.as_ref().unwrap().item, vec!["a", "b"]);

    let executor = task.executor.as_ref().unwrap();
    assert_eq!(executor.executor_id.value, "s-exec-1");
    assert_eq!(executor.framework_id.as_ref().unwrap().value, "f-0001");
    assert_eq!(
        executor.shutdown_grace_period.unwrap().to_duration(),
        Duration::from_secs(5)
    );

    let command = task.command.as_ref().unwrap();
    assert_eq!(command.value.as_deref(), Some("./run.sh"));
    assert!(command.is_shell());
    assert_eq!(command.user.as_deref(), Some("app"));
    assert_eq!(command.uris[0].value, "https://x/artifact.tgz");
    assert_eq!(command.uris[0].extract, Some(true));
    assert_eq!(command.uris[0].cache, Some(false));
    let var = &command.environment.as_ref().unwrap().variables[0];
    assert_eq!(
        (var.name.as_str(), var.kind.as_deref(), var.value.as_deref()),
        ("PORT", Some("VALUE"), Some("31000"))
    );

    let container = task.container.as_ref().unwrap();
    assert_eq!(container.kind, Some(ContainerType::Docker));
    let docker = container.docker.as_ref().unwrap();
    assert_eq!(docker.image, "busybox:1");
    assert_eq!(docker.network.as_deref(), Some("BRIDGE"));
    assert_eq!(docker.port_mappings[0].host_port, 31000);
    assert_eq!(docker.port_mappings[0].container_port, 8080);
    assert_eq!(docker.port_mappings[0].protocol.as_deref(), Some("tcp"));
    assert_eq!(docker.parameters[0].key, "env");
    assert_eq!(docker.privileged, Some(false));
    assert_eq!(docker.force_pull_image, Some(true));
    assert_eq!(container.volumes[0].container_path, "/data");
    assert_eq!(container.volumes[0].host_path.as_deref(), Some("/srv/data"));
    assert_eq!(container.volumes[0].mode.as_deref(), Some("RW"));

    assert_eq!(
        task.health_check.as_ref().unwrap()["http"]["path"],
        "/health"
    );
    assert_eq!(
        task.kill_policy.as_ref().unwrap().grace(),
        Some(Duration::from_secs(30))
    );
    assert_eq!(task.labels.as_ref().unwrap().labels[0].key, "team");
    assert_eq!(task.limits["cpus"].value, 1.0);
    assert_eq!(
        task.data.as_deref(),
        Some(&br#"{"cmd":"./run.sh", ...}"#[..])
    );
}

#[test]
fn launch_example_round_trips_exactly() {
    let original: Value = serde_json::from_str(LAUNCH).unwrap();
    let event: Event = serde_json::from_value(original.clone()).unwrap();
    let written = serde_json::to_value(&event).unwrap();
    assert_eq!(normalize(written.clone()), normalize(original));
    let again: Event = serde_json::from_value(written).unwrap();
    assert_eq!(again, event);
}

#[test]
fn numeric_strings_and_unknown_fields_are_accepted() {
    let task: TaskInfo = serde_json::from_value(json!({
        "name": "t", "task_id": {"value": "t"}, "agent_id": {"value": "a"},
        "kill_policy": {"grace_period": {"nanoseconds": "2500000000"}},
        "resources": [{"name": "ports", "type": "RANGES",
                       "ranges": {"range": [{"begin": "31000", "end": "31001"}]}},
                      {"name": "cpus", "type": "SCALAR", "scalar": {"value": "1.5"}}],
        "someFutureField": {"x": 1},
        "taskId": {"value": "camelCase is not a proto name and is ignored"}
    }))
    .unwrap();
    assert_eq!(task.task_id.value, "t");
    assert_eq!(
        task.kill_policy.unwrap().grace(),
        Some(Duration::from_millis(2500))
    );
    assert_eq!(
        task.resources[0].ranges.as_ref().unwrap().range[0].end,
        31001
    );
    assert_eq!(task.resources[1].scalar.unwrap().value, 1.5);
}

#[test]
fn unknown_enum_in_an_optional_field_is_dropped() {
    let r: Resource = serde_json::from_value(json!({"name": "x", "type": "NEW_KIND"})).unwrap();
    assert_eq!(r.kind, None);
    let status: TaskStatus = serde_json::from_value(json!({
        "task_id": {"value": "t"}, "state": "TASK_RUNNING", "source": "SOURCE_SPACE"
    }))
    .unwrap();
    assert_eq!(status.source, None);
    // A required enum must be known.
    assert!(
        serde_json::from_value::<TaskStatus>(json!({
            "task_id": {"value": "t"}, "state": "TASK_DANCING"
        }))
        .is_err()
    );
}

#[test]
fn every_task_state_name() {
    let names = [
        "TASK_STAGING",
        "TASK_STARTING",
        "TASK_RUNNING",
        "TASK_KILLING",
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_LOST",
        "TASK_DROPPED",
        "TASK_UNREACHABLE",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
        "TASK_UNKNOWN",
    ];
    for name in names {
        let state: TaskState = serde_json::from_value(json!(name)).unwrap();
        assert_eq!(state.as_str(), name);
        assert_eq!(serde_json::to_value(state).unwrap(), json!(name));
    }
    assert!(TaskState::TaskFinished.is_terminal());
    assert!(!TaskState::TaskRunning.is_terminal());
}

#[test]
fn update_call_wire_format() {
    let uuid = uuid::Uuid::new_v4();
    let mut status = TaskStatus::new(TaskId::new("t-1"), TaskState::TaskRunning);
    status.source = Some(Source::SourceExecutor);
    status.uuid = Some(uuid.as_bytes().to_vec());
    status.data = Some(b"\x00\xffdata".to_vec());
    status.reason = Some("REASON_TASK_HEALTH_CHECK_STATUS_UPDATED".into());
    status.executor_id = Some(ExecutorId::new("e"));
    let call = Call::update(&FrameworkId::new("f"), &ExecutorId::new("e"), status);
    let v = serde_json::to_value(&call).unwrap();
    assert_eq!(v["type"], "UPDATE");
    assert_eq!(v["framework_id"]["value"], "f");
    assert_eq!(v["executor_id"]["value"], "e");
    let s = &v["update"]["status"];
    assert_eq!(s["state"], "TASK_RUNNING");
    assert_eq!(s["source"], "SOURCE_EXECUTOR");
    assert_eq!(s["reason"], "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED");
    assert_eq!(s["data"], "AP9kYXRh");
    let uuid_b64 = s["uuid"].as_str().unwrap();
    assert_eq!(uuid_b64.len(), 24, "16 bytes in standard base64");
    let back: Call = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(back.update.unwrap().status.uuid(), Some(uuid));
    // Unset fields are omitted, not null.
    assert!(s.get("message").is_none());
    assert!(v.get("subscribe").is_none());
}

#[test]
fn subscribe_and_message_calls() {
    let task = TaskInfo::new("n", TaskId::new("t"), singularity_mesos::AgentId::new("a"));
    let call = Call::subscribe(
        &FrameworkId::new("f"),
        &ExecutorId::new("e"),
        singularity_mesos::protocol::Subscribe {
            unacknowledged_tasks: vec![task],
            unacknowledged_updates: Vec::new(),
        },
    );
    let v = serde_json::to_value(&call).unwrap();
    assert_eq!(v["type"], "SUBSCRIBE");
    assert_eq!(v["subscribe"]["unacknowledged_tasks"][0]["name"], "n");
    assert!(v["subscribe"].get("unacknowledged_updates").is_none());

    let empty = Call::subscribe(
        &FrameworkId::new("f"),
        &ExecutorId::new("e"),
        Default::default(),
    );
    assert_eq!(
        serde_json::to_value(&empty).unwrap()["subscribe"],
        json!({})
    );

    let message = Call::message(
        &FrameworkId::new("f"),
        &ExecutorId::new("e"),
        b"hi".to_vec(),
    );
    let v = serde_json::to_value(&message).unwrap();
    assert_eq!(v["message"]["data"], "aGk=");
    assert_eq!(message.kind, CallType::Message);
}

#[test]
fn events_of_every_type() {
    let kill: Event = serde_json::from_value(json!({
        "type": "KILL",
        "kill": {"task_id": {"value": "t"}, "kill_policy": {"grace_period": {"nanoseconds": 1000000}}}
    }))
    .unwrap();
    assert_eq!(kill.kind, EventType::Kill);
    assert_eq!(
        kill.kill.unwrap().kill_policy,
        Some(KillPolicy::with_grace(Duration::from_millis(1)))
    );

    let ack: Event = serde_json::from_value(json!({
        "type": "ACKNOWLEDGED",
        "acknowledged": {"task_id": {"value": "t"}, "uuid": "AAECAwQFBgcICQoLDA0ODw=="}
    }))
    .unwrap();
    assert_eq!(
        ack.acknowledged.unwrap().uuid,
        (0u8..16).collect::<Vec<_>>()
    );

    for (name, kind) in [
        ("SHUTDOWN", EventType::Shutdown),
        ("HEARTBEAT", EventType::Heartbeat),
        ("UNKNOWN", EventType::Unknown),
        ("SOMETHING_NEW", EventType::Unknown),
    ] {
        let e: Event = serde_json::from_value(json!({"type": name})).unwrap();
        assert_eq!(e.kind, kind, "{name}");
    }
    let untyped: Event = serde_json::from_value(json!({})).unwrap();
    assert_eq!(untyped.kind, EventType::Unknown);

    let error: Event =
        serde_json::from_value(json!({"type": "ERROR", "error": {"message": "boom"}})).unwrap();
    assert_eq!(error.error.unwrap().message, "boom");

    let message: Event =
        serde_json::from_value(json!({"type": "MESSAGE", "message": {"data": "aGk="}})).unwrap();
    assert_eq!(message.message.unwrap().data, b"hi");

    let group: Event = serde_json::from_value(json!({
        "type": "LAUNCH_GROUP",
        "launch_group": {"task_group": {"tasks": [
            {"name": "a", "task_id": {"value": "a"}, "agent_id": {"value": "x"}},
            {"name": "b", "task_id": {"value": "b"}, "agent_id": {"value": "x"}}
        ]}}
    }))
    .unwrap();
    assert_eq!(group.launch_group.unwrap().task_group.tasks.len(), 2);

    let subscribed: Event = serde_json::from_value(json!({
        "type": "SUBSCRIBED",
        "subscribed": {
            "executor_info": {"executor_id": {"value": "e"}, "type": "CUSTOM"},
            "framework_info": {"user": "root", "name": "Singularity", "id": {"value": "f"},
                               "checkpoint": true, "failover_timeout": 604800,
                               "capabilities": [{"type": "TASK_KILLING_STATE"}]},
            "agent_info": {"hostname": "h", "port": 5051, "id": {"value": "a"}},
            "container_id": {"value": "c"}
        }
    }))
    .unwrap();
    let s = subscribed.subscribed.unwrap();
    assert_eq!(s.framework_info.id.unwrap().value, "f");
    assert!(
        s.framework_info
            .capabilities
            .iter()
            .any(|c| c["type"] == "TASK_KILLING_STATE")
    );
    assert_eq!(s.agent_info.port, Some(5051));
    assert_eq!(s.container_id.unwrap().value, "c");
}

#[test]
fn framework_capabilities() {
    let info: singularity_mesos::FrameworkInfo = serde_json::from_value(json!({
        "user": "u", "name": "n", "capabilities": [{"type": "TASK_KILLING_STATE"}]
    }))
    .unwrap();
    assert!(info.has_capability("TASK_KILLING_STATE"));
    assert!(!info.has_capability("PARTITION_AWARE"));
}

#[test]
fn bad_base64_is_an_error() {
    assert!(
        serde_json::from_value::<Event>(json!({
            "type": "MESSAGE", "message": {"data": "not base64!"}
        }))
        .is_err()
    );
}
