//! The configuration the executor runs with: base, s3base and executor classes.

use std::time::Duration;

use singularity_common::config::{BaseConfig, ExecutorConfig, LoadedConfig, S3BaseConfig};

/// The three config classes the executor loads.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `singularity.base.*`.
    pub base: BaseConfig,
    /// `singularity.s3base.*`.
    pub s3: S3BaseConfig,
    /// `singularity.executor.*`.
    pub executor: ExecutorConfig,
}

/// A loaded configuration without the executor's classes.
#[derive(Debug, thiserror::Error)]
#[error("the loaded configuration has no {0} section")]
pub struct MissingClass(&'static str);

impl MissingClass {
    /// The class `name` is missing.
    pub fn new(name: &'static str) -> Self {
        Self(name)
    }
}

impl Settings {
    /// From a configuration loaded with `ConfigClass::FOR_EXECUTOR`.
    pub fn from_loaded(loaded: LoadedConfig) -> Result<Self, MissingClass> {
        Ok(Self {
            base: loaded.base,
            s3: loaded.s3.ok_or(MissingClass("s3"))?,
            executor: loaded.executor.ok_or(MissingClass("executor"))?,
        })
    }

    /// Built from its parts (tests, embedding).
    pub fn new(base: BaseConfig, s3: S3BaseConfig, executor: ExecutorConfig) -> Self {
        Self { base, s3, executor }
    }

    /// `hardKillAfterMillis`.
    pub fn hard_kill_after(&self) -> Duration {
        Duration::from_millis(self.executor.hard_kill_after_millis)
    }

    /// `checkThreadsEveryMillis`, at least 1 ms.
    pub fn check_threads_every(&self) -> Duration {
        Duration::from_millis(self.executor.check_threads_every_millis.max(1))
    }

    /// `initialIdleExecutorShutdownWaitMillis`.
    pub fn initial_idle_wait(&self) -> Duration {
        Duration::from_millis(self.executor.initial_idle_executor_shutdown_wait_millis)
    }

    /// `idleExecutorShutdownWaitMillis`.
    pub fn idle_wait(&self) -> Duration {
        Duration::from_millis(self.executor.idle_executor_shutdown_wait_millis)
    }

    /// `maxTaskMessageLength`.
    pub fn max_message_length(&self) -> usize {
        usize::try_from(self.executor.max_task_message_length).unwrap_or(usize::MAX)
    }
}
