//! What the topics share: the engine under test, one case per engine, running a container
//! with its output collected.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use singularity_containers::{ContainerConfig, ContainerEngine, DockerEngine};
use singularity_test_support as services;

/// The engine under test.
pub struct Target {
    /// `docker` or `podman`, as [`DockerEngine::version`] names it.
    pub name: &'static str,
    pub engine: DockerEngine,
    /// The test image, as this engine knows it.
    pub image: String,
}

impl Target {
    pub fn docker() -> Self {
        Self::at("docker", services::docker_socket())
    }

    pub fn podman() -> Self {
        Self::at("podman", services::podman_socket())
    }

    pub fn at(name: &'static str, socket: PathBuf) -> Self {
        let image = services::test_image_in(&socket);
        Self {
            name,
            engine: DockerEngine::new(socket, Duration::from_secs(30)),
            image,
        }
    }

    pub fn busybox(&self, name: &str, cmd: &[&str]) -> ContainerConfig {
        let mut config = ContainerConfig::new(name, &self.image);
        config.cmd = Some(cmd.iter().map(|s| (*s).to_owned()).collect());
        config
    }
}

/// Each case as a `#[tokio::test]` per engine.
macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {
        mod docker {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case($crate::support::Target::docker()).await;
                }
            )*
        }
        mod podman {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case($crate::support::Target::podman()).await;
                }
            )*
        }
    };
}

/// Output collected from a container's attach stream.
#[derive(Clone, Default)]
pub struct Output(pub Arc<Mutex<Vec<u8>>>);

impl Output {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }

    pub async fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "never printed {needle:?}: {:?}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Creates, attaches and starts; returns the id and the output so far.
pub async fn run(engine: &DockerEngine, config: &ContainerConfig) -> (String, Output) {
    let id = engine.create(config).await.expect("create");
    let mut stream = engine.attach(&id).await.expect("attach");
    let output = Output::default();
    let sink = output.clone();
    tokio::spawn(async move {
        while let Some(Ok(chunk)) = stream.next().await {
            sink.0.lock().expect("lock").extend_from_slice(&chunk);
        }
    });
    engine.start(&id).await.expect("start");
    (id, output)
}
