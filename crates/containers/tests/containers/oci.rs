//! Daemonless containers against the real OCI runtime (runc): the test image saved with
//! `docker save`, unpacked into an image store, and run with `config.json`s from
//! [`runtime_spec`]: output and exit codes, env, user, volumes, kill with a grace, OOM, the
//! pids limit, exec, list and delete.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use singularity_containers::oci::{
    BundleConfig, ImageStore, OciRuntime, RunningContainer, StoredImage, oom_killed, runtime_spec,
};
use singularity_containers::{Bind, NetworkMode, RegistryAuth, Signal};
use singularity_test_support::{
    self as services, AuthRegistry, REGISTRY_PASSWORD, REGISTRY_USER, unique_name,
};
use tokio::io::AsyncReadExt as _;

/// One test's store, runtime state and bundles.
struct Fixture {
    dir: tempfile::TempDir,
    runtime: OciRuntime,
    image: StoredImage,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("se-test-oci-")
            .tempdir()
            .expect("temp dir");
        let archive = dir.path().join("busybox.tar");
        services::save_test_image(&archive);
        let store = ImageStore::new(dir.path().join("store"));
        let image = store.import_archive(&archive).expect("import");
        let runtime = OciRuntime::new(services::oci_runtime(), Some(dir.path().join("state")));
        Self {
            dir,
            runtime,
            image,
        }
    }

    fn config(&self, id: &str, args: &[&str]) -> BundleConfig {
        BundleConfig {
            rootfs: self.image.rootfs.clone(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: vec!["PATH=/bin".to_owned()],
            cwd: "/".to_owned(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            hostname: None,
            binds: Vec::new(),
            network: NetworkMode::Host,
            memory: None,
            cpus: None,
            pids_limit: None,
            rlimits: Vec::new(),
            cgroups_path: format!("/se-test/{id}"),
        }
    }

    fn bundle(&self, id: &str, config: &BundleConfig) -> PathBuf {
        let bundle = self.dir.path().join(id);
        std::fs::create_dir_all(&bundle).expect("bundle");
        let spec = runtime_spec(config).expect("spec");
        spec.save(bundle.join("config.json")).expect("config.json");
        bundle
    }

    async fn start(&self, id: &str, config: &BundleConfig) -> (RunningContainer, Output) {
        let bundle = self.bundle(id, config);
        let mut running = self.runtime.run(id, &bundle).await.expect("run");
        let output = Output::default();
        for pipe in [
            running
                .child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            running
                .child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = output.clone();
            tokio::spawn(async move {
                let mut pipe = pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    sink.0.lock().expect("lock").extend_from_slice(&buf[..n]);
                }
            });
        }
        (running, output)
    }

    /// Runs to the end; the exit code and the output.
    async fn run(&self, id: &str, config: &BundleConfig) -> (i32, String) {
        let (mut running, output) = self.start(id, config).await;
        let status = running.child.wait().await.expect("wait");
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.runtime.delete(id).await.expect("delete");
        (status.code().unwrap_or(-1), output.text())
    }
}

#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Output {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }

    async fn wait_for(&self, needle: &str) {
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

#[tokio::test]
async fn output_env_and_exit_codes() {
    let fixture = Fixture::new();
    let id = unique_name("se-test-oci");
    let mut config = fixture.config(
        &id,
        &["sh", "-c", "echo out $GREETING; echo err >&2; exit 3"],
    );
    config.env.push("GREETING=hello world".to_owned());
    let (code, output) = fixture.run(&id, &config).await;
    assert_eq!(code, 3);
    assert!(output.contains("out hello world\n"), "{output:?}");
    assert!(output.contains("err\n"), "{output:?}");
    assert!(
        fixture
            .runtime
            .list("se-test-oci")
            .await
            .expect("list")
            .is_empty()
    );

    let missing = unique_name("se-test-oci");
    let config = fixture.config(&missing, &["/no/such/program"]);
    let bundle = fixture.bundle(&missing, &config);
    let started = fixture.runtime.run(&missing, &bundle).await;
    let error = started.expect_err("no such program").to_string();
    assert!(error.contains("/no/such/program"), "{error}");
    fixture.runtime.delete(&missing).await.expect("delete");
}

#[tokio::test]
async fn user_volumes_and_a_read_only_root() {
    let fixture = Fixture::new();
    let rw = tempfile::tempdir().expect("rw");
    let ro = tempfile::tempdir().expect("ro");
    std::fs::write(ro.path().join("given"), "given\n").expect("write");
    // The unprivileged user must be able to write the RW volume.
    std::fs::set_permissions(
        rw.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let id = unique_name("se-test-oci");
    let mut config = fixture.config(
        &id,
        &[
            "sh",
            "-c",
            "id -u; id -g; echo written > /rw/out; cat /ro/given; \
             (echo x > /ro/nope) 2>/dev/null || echo ro-refused; \
             (echo x > /etc/nope) 2>/dev/null || echo root-refused; \
             echo x > /tmp/fine && echo tmp-ok; pwd",
        ],
    );
    config.uid = 65534;
    config.gid = 65534;
    config.cwd = "/rw".to_owned();
    config.binds = vec![
        Bind {
            host: rw.path().display().to_string(),
            container: "/rw".to_owned(),
            read_only: false,
        },
        Bind {
            host: ro.path().display().to_string(),
            container: "/ro".to_owned(),
            read_only: true,
        },
    ];
    let (code, output) = fixture.run(&id, &config).await;
    assert_eq!(code, 0, "{output}");
    let lines: Vec<&str> = output
        .lines()
        .filter(|l| !l.contains("can't create"))
        .collect();
    assert_eq!(
        lines,
        [
            "65534",
            "65534",
            "given",
            "ro-refused",
            "root-refused",
            "tmp-ok",
            "/rw"
        ],
        "{output}"
    );
    assert_eq!(
        std::fs::read_to_string(rw.path().join("out")).expect("out"),
        "written\n"
    );
    assert!(!ro.path().join("nope").exists());
}

#[tokio::test]
async fn kill_with_a_grace_then_sigkill() {
    let fixture = Fixture::new();
    let graceful = unique_name("se-test-oci");
    let config = fixture.config(
        &graceful,
        &[
            "sh",
            "-c",
            "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.1; done",
        ],
    );
    let (mut running, output) = fixture.start(&graceful, &config).await;
    assert!(running.pid > 1);
    output.wait_for("ready").await;
    fixture
        .runtime
        .kill(&graceful, Signal::Terminate)
        .await
        .expect("TERM");
    let status = running.child.wait().await.expect("wait");
    assert_eq!(status.code(), Some(7));
    output.wait_for("got TERM").await;
    fixture.runtime.delete(&graceful).await.expect("delete");

    let stubborn = unique_name("se-test-oci");
    let config = fixture.config(
        &stubborn,
        &[
            "sh",
            "-c",
            "trap '' TERM; echo ready; while true; do sleep 0.1; done",
        ],
    );
    let (mut running, output) = fixture.start(&stubborn, &config).await;
    output.wait_for("ready").await;
    fixture
        .runtime
        .kill(&stubborn, Signal::Terminate)
        .await
        .expect("TERM");
    let ignored = tokio::time::timeout(Duration::from_millis(500), running.child.wait()).await;
    assert!(ignored.is_err(), "SIGTERM was not ignored");
    fixture
        .runtime
        .kill(&stubborn, Signal::Kill)
        .await
        .expect("KILL");
    let status = running.child.wait().await.expect("wait");
    assert_eq!(status.code(), Some(137));
    fixture.runtime.delete(&stubborn).await.expect("delete");
    fixture
        .runtime
        .delete(&stubborn)
        .await
        .expect("a second delete is not an error");
}

#[tokio::test]
async fn the_memory_limit_oom_kills_and_the_cgroup_says_so() {
    let fixture = Fixture::new();
    let id = unique_name("se-test-oci");
    let mut config = fixture.config(&id, &["sh", "-c", "tail /dev/zero"]);
    config.memory = Some(16 << 20);
    let (mut running, _output) = fixture.start(&id, &config).await;
    let status = running.child.wait().await.expect("wait");
    assert_eq!(status.code(), Some(137));
    assert!(oom_killed(&config.cgroups_path).expect("read the cgroup"));
    fixture.runtime.delete(&id).await.expect("delete");

    let calm = unique_name("se-test-oci");
    let mut config = fixture.config(&calm, &["true"]);
    config.memory = Some(16 << 20);
    let (mut running, _output) = fixture.start(&calm, &config).await;
    assert_eq!(running.child.wait().await.expect("wait").code(), Some(0));
    assert!(!oom_killed(&config.cgroups_path).expect("read the cgroup"));
    fixture.runtime.delete(&calm).await.expect("delete");
}

#[tokio::test]
async fn the_pids_limit_stops_forks() {
    let fixture = Fixture::new();
    let id = unique_name("se-test-oci");
    let mut config = fixture.config(
        &id,
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 2 & done; wait; echo done",
        ],
    );
    config.pids_limit = Some(4);
    let (code, output) = fixture.run(&id, &config).await;
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("can't fork: Resource temporarily unavailable"),
        "{output:?}"
    );
}

#[tokio::test]
async fn commands_run_inside_with_exec() {
    let fixture = Fixture::new();
    let id = unique_name("se-test-oci");
    let config = fixture.config(
        &id,
        &["sh", "-c", "echo ready; while true; do sleep 0.1; done"],
    );
    let (mut running, output) = fixture.start(&id, &config).await;
    output.wait_for("ready").await;
    let out_path = fixture.dir.path().join("exec.out");
    let out = std::fs::File::create(&out_path).expect("out");
    let argv = ["sh", "-c", "echo pid1=$(cat /proc/1/comm) v=$V; exit 4"].map(str::to_owned);
    let mut exec = fixture
        .runtime
        .exec(
            &id,
            &argv,
            &["V=x".to_owned()],
            out,
            &fixture.dir.path().join("exec.pid"),
        )
        .await
        .expect("exec");
    assert!(exec.pid.is_some_and(|p| p > 1));
    assert_eq!(exec.child.wait().await.expect("wait").code(), Some(4));
    assert_eq!(
        std::fs::read_to_string(&out_path).expect("out"),
        "pid1=sh v=x\n"
    );
    assert_eq!(
        fixture.runtime.list(&id).await.expect("list"),
        std::slice::from_ref(&id)
    );
    fixture
        .runtime
        .delete(&id)
        .await
        .expect("delete kills and removes");
    let status = running.child.wait().await.expect("wait");
    assert_ne!(status.code(), Some(0));
    assert!(fixture.runtime.list(&id).await.expect("list").is_empty());
}

#[tokio::test]
async fn the_store_imports_an_image_once_and_evicts_it_when_unused() {
    let fixture = Fixture::new();
    let store_dir = fixture.dir.path().join("store");
    let archive = fixture.dir.path().join("busybox.tar");
    // Just used: kept whatever the size, as another executor may be about to run it.
    let store = ImageStore::new(&store_dir);
    let again = store.import_archive(&archive).expect("import again");
    assert!(store.evict(0, &[]).expect("evict").is_empty());

    let store = ImageStore::new(&store_dir).with_recent_use(Duration::ZERO);
    assert_eq!(again, fixture.image);
    assert!(again.id.starts_with("sha256:"));
    assert!(again.rootfs.join("bin/busybox").is_file());
    assert_eq!(again.config.env, ["PATH=/bin"]);
    assert_eq!(again.config.cmd, ["/bin/sh"]);
    assert!(
        store
            .evict(0, std::slice::from_ref(&again.id))
            .expect("evict")
            .is_empty()
    );
    // A container of another executor runs from it: its bundle names the root.
    let bundle = store_dir.join("bundles/se-other-task");
    std::fs::create_dir_all(&bundle).expect("bundle");
    let config = BundleConfig {
        rootfs: again.rootfs.clone(),
        args: vec!["true".into()],
        env: Vec::new(),
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        hostname: None,
        binds: Vec::new(),
        network: NetworkMode::None,
        memory: None,
        cpus: None,
        pids_limit: None,
        rlimits: Vec::new(),
        cgroups_path: "/se-test/se-other-task".into(),
    };
    runtime_spec(&config)
        .expect("spec")
        .save(bundle.join("config.json"))
        .expect("config.json");
    assert!(store.evict(0, &[]).expect("evict").is_empty());
    std::fs::remove_dir_all(&bundle).expect("its container ended");
    assert_eq!(
        store.evict(0, &[]).expect("evict"),
        std::slice::from_ref(&again.id)
    );
    assert_eq!(store.get(&again.id).expect("get"), None);

    let broken = fixture.dir.path().join("broken.tar");
    std::fs::write(&broken, b"not a tarball at all").expect("write");
    let error = store
        .import_archive(&broken)
        .expect_err("refused")
        .to_string();
    assert!(error.contains("broken.tar"), "{error}");
}

#[tokio::test]
async fn registry_images_are_pulled_without_a_daemon() {
    let registry_image = format!("{}/test/busybox:1", services::registry());
    let dir = tempfile::tempdir().expect("dir");
    let store = ImageStore::new(dir.path().join("store"));
    let image = singularity_containers::oci::registry::pull(&store, &registry_image, None)
        .await
        .expect("pull");
    assert!(image.id.starts_with("sha256:"));
    assert!(image.rootfs.join("bin/busybox").is_file());
    assert_eq!(image.config.cmd, ["/bin/sh"]);
    let again = singularity_containers::oci::registry::pull(&store, &registry_image, None)
        .await
        .expect("pull again");
    assert_eq!(again, image);

    let missing = format!("{}/test/busybox:missing", services::registry());
    let error = singularity_containers::oci::registry::pull(&store, &missing, None)
        .await
        .expect_err("no such tag")
        .to_string();
    assert!(
        error.starts_with(&format!("cannot pull {missing}: ")),
        "{error}"
    );
}

#[tokio::test]
async fn a_registry_behind_basic_auth_takes_the_docker_credentials_and_refuses_others() {
    let registry = AuthRegistry::start();
    let docker_config = tempfile::tempdir().expect("docker config");
    let reference = registry.push_test_image(docker_config.path());
    let dir = tempfile::tempdir().expect("dir");
    let store = ImageStore::new(dir.path().join("store"));
    let credentials = |username: &str, password: &str| RegistryAuth {
        username: Some(username.to_owned()),
        password: Some(password.to_owned()),
        auth: None,
        email: None,
        server_address: Some(registry.addr().to_owned()),
    };

    for (auth, case) in [
        (None, "anonymous"),
        (Some(credentials(REGISTRY_USER, "wrong")), "wrong password"),
    ] {
        let error = singularity_containers::oci::registry::pull(&store, &reference, auth.as_ref())
            .await
            .expect_err(case)
            .to_string();
        assert!(
            error.starts_with(&format!("cannot pull {reference}: Not authorized")),
            "{case}: {error}"
        );
    }
    assert_eq!(
        std::fs::read_dir(store.dir().join("images")).map_or(0, Iterator::count),
        0
    );

    // The docker config file form: base64 of `user:password`.
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}"));
    let config_file_form = RegistryAuth {
        username: None,
        password: None,
        auth: Some(encoded),
        email: None,
        server_address: Some(registry.addr().to_owned()),
    };
    for (index, auth) in [
        credentials(REGISTRY_USER, REGISTRY_PASSWORD),
        config_file_form,
    ]
    .iter()
    .enumerate()
    {
        // A store of its own each: a pull must not be answered from an earlier one.
        let store = ImageStore::new(dir.path().join(format!("store-{index}")));
        let image = singularity_containers::oci::registry::pull(&store, &reference, Some(auth))
            .await
            .expect("pull with the credentials");
        assert!(image.rootfs.join("bin/busybox").is_file());
    }
}

/// A registry address that accepts connections and closes them at once; the count of
/// connections taken.
fn closing_registry() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, count)
}

#[tokio::test]
async fn transient_pull_failures_are_tried_again_and_refusals_are_not() {
    use singularity_containers::image::PullPolicy;
    use singularity_containers::oci::registry::pull_with_policy;
    let dir = tempfile::tempdir().expect("dir");
    let store = ImageStore::new(dir.path().join("store"));
    let policy = |attempts| PullPolicy {
        attempts,
        timeout: Duration::from_secs(60),
    };

    // A dropped connection: every attempt is made.
    let mut per_attempts = Vec::new();
    for attempts in [1, 3] {
        let (addr, connections) = closing_registry();
        let reference = format!("{addr}/test/busybox:1");
        let error = pull_with_policy(&store, &reference, None, policy(attempts))
            .await
            .expect_err("nothing answers")
            .to_string();
        assert!(
            error.starts_with(&format!("cannot pull {reference}: ")),
            "{error}"
        );
        per_attempts.push(connections.load(std::sync::atomic::Ordering::SeqCst));
    }
    assert!(per_attempts[0] >= 1, "{per_attempts:?}");
    assert_eq!(per_attempts[1], 3 * per_attempts[0], "{per_attempts:?}");

    // A missing tag is the registry's answer: one attempt (five would pause 1 + 2 + 3 + 4 s
    // between them).
    let missing = format!("{}/test/busybox:missing", services::registry());
    let started = Instant::now();
    pull_with_policy(&store, &missing, None, policy(5))
        .await
        .expect_err("no such tag");
    assert!(started.elapsed() < Duration::from_secs(5), "retried");
}
