//! Picks the runtime per task: a container when `TaskInfo.container.docker` is set (spec
//! §3.4: Docker mode is on exactly then), else a process group.

use std::sync::Arc;

use super::{BoxFuture, Preparation, RuntimeError, StartedTask, TaskRuntime, TaskSpec};

/// Dispatches each task to the process or the container runtime.
#[derive(Debug, Clone)]
pub struct SelectRuntime {
    process: Arc<dyn TaskRuntime>,
    container: Arc<dyn TaskRuntime>,
}

impl SelectRuntime {
    /// Plain tasks go to `process`, Docker tasks to `container`.
    pub fn new(process: Arc<dyn TaskRuntime>, container: Arc<dyn TaskRuntime>) -> Self {
        Self { process, container }
    }

    fn pick(&self, spec: &TaskSpec) -> &dyn TaskRuntime {
        if spec.is_docker() {
            self.container.as_ref()
        } else {
            self.process.as_ref()
        }
    }
}

impl TaskRuntime for SelectRuntime {
    fn name(&self) -> &'static str {
        "process or container"
    }

    fn before_staging<'a>(&'a self, spec: &'a TaskSpec) -> Option<Preparation<'a>> {
        self.pick(spec).before_staging(spec)
    }

    fn start<'a>(&'a self, spec: &'a TaskSpec) -> BoxFuture<'a, Result<StartedTask, RuntimeError>> {
        self.pick(spec).start(spec)
    }
}
