//! The task's command line and environment.

use std::collections::BTreeMap;

use singularity_common::records::SingularityTaskExecutorData;
use singularity_mesos::TaskInfo;

/// Removed from the environment tasks inherit: the agent's credential is the executor's only.
pub const HIDDEN_VARIABLES: &[&str] = &["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"];

/// The command line: `cmd`, then each extra argument after a single space, unquoted.
pub fn command_line(data: &SingularityTaskExecutorData) -> String {
    let mut line = data.executor_data.cmd.clone();
    for arg in &data.executor_data.extra_cmd_line_args {
        line.push(' ');
        line.push_str(arg);
    }
    line
}

/// The task environment ("The task process" in `docs/executor.md`): the executor's own
/// environment (less [`HIDDEN_VARIABLES`]), then `ExecutorInfo.command.environment`, then
/// `MESOS_TASK_ID` (= `TASK_ID`) and `RODAN_HOSTNAME` as Singularity's runner exported them,
/// then `extra`. Later entries replace earlier ones.
pub fn task_env(
    inherited: impl IntoIterator<Item = (String, String)>,
    task: &TaskInfo,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = inherited
        .into_iter()
        .filter(|(k, _)| !HIDDEN_VARIABLES.contains(&k.as_str()))
        .collect();
    let variables = task
        .executor
        .as_ref()
        .and_then(|e| e.command.as_ref())
        .and_then(|c| c.environment.as_ref())
        .map(|e| e.variables.as_slice())
        .unwrap_or_default();
    for var in variables {
        env.insert(var.name.clone(), var.value.clone().unwrap_or_default());
    }
    let task_id = env
        .get("TASK_ID")
        .cloned()
        .unwrap_or_else(|| task.task_id.value.clone());
    env.insert("MESOS_TASK_ID".to_owned(), task_id);
    if let (Some(request), Some(instance)) = (env.get("TASK_REQUEST_ID"), env.get("INSTANCE_NO")) {
        let rodan = format!("{request}-{instance}");
        env.insert("RODAN_HOSTNAME".to_owned(), rodan);
    }
    for (k, v) in extra {
        env.insert(k.clone(), v.clone());
    }
    env.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::tests::task;

    #[test]
    fn the_environment_layers_in_order() {
        let inherited = vec![
            ("PATH".to_owned(), "/bin".to_owned()),
            ("TASK_ID".to_owned(), "overridden".to_owned()),
            (
                "MESOS_EXECUTOR_AUTHENTICATION_TOKEN".to_owned(),
                "secret".to_owned(),
            ),
        ];
        let env: BTreeMap<_, _> = task_env(
            inherited,
            &task(None),
            &[("MESOS_SANDBOX".to_owned(), "/s".to_owned())],
        )
        .into_iter()
        .collect();
        assert_eq!(env["PATH"], "/bin");
        assert_eq!(env["TASK_ID"], "req-dep-1-1-h-r");
        assert_eq!(env["MESOS_TASK_ID"], "req-dep-1-1-h-r");
        assert_eq!(env["RODAN_HOSTNAME"], "req-1");
        assert_eq!(env["EMPTY"], "");
        assert_eq!(env["MESOS_SANDBOX"], "/s");
        assert!(!env.contains_key("MESOS_EXECUTOR_AUTHENTICATION_TOKEN"));
    }
}
