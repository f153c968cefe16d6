//! What lets a local file be deleted: the answer to a single PUT when its ETag is the MD5 of
//! the bytes read, else a HeadObject (SSE-KMS, multipart). An S3 client that records every
//! request, and can forge the ETag of PutObject answers, stands between the uploader and a
//! real S3-protocol server.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use md5::Digest as _;
use singularity_runtime::StaticCredentials;
use singularity_s3_uploader::{S3ClientFactory, configured_clients};

use crate::support::{self, Env, data, files_in, server_with_bucket, wait_until};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// `METHOD uri` of every request sent.
    requests: Mutex<Vec<String>>,
    /// While set, successful PutObject answers carry this ETag instead of S3's.
    forged_put_etag: Mutex<Option<String>>,
}

impl Seen {
    pub(crate) fn requests(&self, method: &str, uri_part: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with(&format!("{method} ")) && r.contains(uri_part))
            .count()
    }
}

#[derive(Debug, Clone)]
struct Watcher(Arc<Seen>);

impl Intercept for Watcher {
    fn name(&self) -> &'static str {
        "test-watcher"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        self.0
            .requests
            .lock()
            .unwrap()
            .push(format!("{} {}", request.method(), request.uri()));
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let put_object = cfg.load::<Metadata>().map(Metadata::name) == Some("PutObject");
        let forged = self.0.forged_put_etag.lock().unwrap().clone();
        if put_object
            && context.response().status().is_success()
            && let Some(etag) = forged
        {
            context.response_mut().headers_mut().insert("etag", etag);
        }
        Ok(())
    }
}

struct WatchedClients {
    inner: singularity_runtime::S3ClientMap,
    watcher: Watcher,
}

impl S3ClientFactory for WatchedClients {
    fn client<'a>(
        &'a self,
        credentials: Option<&'a StaticCredentials>,
    ) -> Pin<Box<dyn Future<Output = Client> + Send + 'a>> {
        Box::pin(async move {
            let client = self.inner.client(credentials).await;
            Client::from_conf(
                client
                    .config()
                    .to_builder()
                    .interceptor(self.watcher.clone())
                    .build(),
            )
        })
    }
}

pub(crate) fn watched(env: &Env) -> (Arc<dyn S3ClientFactory>, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let clients = WatchedClients {
        inner: configured_clients(&env.settings().s3, Duration::from_secs(5)),
        watcher: Watcher(Arc::clone(&seen)),
    };
    (Arc::new(clients), seen)
}

/// S3 (or something on the way) answers a PUT with the ETag of other bytes: the file is not
/// deleted, however often that happens; once the answers are right again, it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_answered_with_another_etag_deletes_nothing() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(server.s3(), "");
    let content = data(40_000, 7);
    let path = Env::write_file(&env.logs_dir, "forged.gz", &content, None);
    let (clients, seen) = watched(&env);
    let other = hex::encode(md5::Md5::digest(b"other bytes"));
    *seen.forged_put_etag.lock().unwrap() = Some(format!("\"{other}\""));
    let mut meta = Env::metadata(&env.logs_dir, "*.gz", &bucket, "f/%filename");
    meta["uploadImmediately"] = true.into();
    let meta_path = env.write_metadata("f.s3.json", &meta);

    let running = env.start_with_clients(clients);
    wait_until("three PUTs answered with a forged ETag", WAIT, || {
        seen.requests("PUT", "/f/forged.gz") >= 3
    })
    .await;
    assert!(path.exists(), "deleted on a PUT answer of another ETag");
    assert!(meta_path.exists());
    let live = support::ledger_live(&env.ledger, &path).await;
    assert_eq!(live.as_deref(), Some("pending"), "the row starts over");

    *seen.forged_put_etag.lock().unwrap() = None;
    wait_until("the upload confirmed by S3's own answer", WAIT, || {
        !path.exists() && !meta_path.exists()
    })
    .await;
    running.stop().await;
    assert_eq!(server.s5cmd_cat(&bucket, "f/forged.gz"), content);
    assert_eq!(
        support::ledger_history(&env.ledger, &path).await,
        ["deleted"]
    );
}

/// A plain single PUT is confirmed by its own answer: no HeadObject. With SSE-KMS (whose ETag
/// is no MD5) and for a multipart upload, HeadObject still confirms the object first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_object_is_left_only_where_the_put_answer_cannot_confirm() {
    let (server, bucket) = server_with_bucket();
    let env = Env::new(
        server.s3(),
        "  maxSingleUploadSizeBytes: 5242880\n  uploadPartSize: 5242880\n",
    );
    let dirs: Vec<_> = ["plain", "kms", "mp"]
        .iter()
        .map(|name| {
            let dir = env.root.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        })
        .collect();
    let small = data(3000, 8);
    for i in 0..3 {
        Env::write_file(&dirs[0], &format!("p{i}.gz"), &small, None);
    }
    // Above the in-memory size: streamed from disk, its MD5 computed alongside.
    let medium = data(2 * 1024 * 1024 + 5, 10);
    Env::write_file(&dirs[0], "p-streamed.gz", &medium, None);
    Env::write_file(&dirs[1], "k.gz", &small, None);
    let big = data(6 * 1024 * 1024, 9);
    Env::write_file(&dirs[2], "m.gz", &big, None);
    for (dir, name) in dirs.iter().zip(["plain", "kms", "mp"]) {
        let mut meta = Env::metadata(dir, "*.gz", &bucket, &format!("{name}/%filename"));
        meta["uploadImmediately"] = true.into();
        if name == "kms" {
            meta["encryptionKey"] = "alias/test-logs".into();
        }
        env.write_metadata(&format!("{name}.s3.json"), &meta);
    }
    let (clients, seen) = watched(&env);
    let running = env.start_with_clients(clients);
    wait_until("every file uploaded and deleted", WAIT, || {
        dirs.iter().all(|d| files_in(d).is_empty())
    })
    .await;
    running.stop().await;

    assert_eq!(seen.requests("PUT", "/plain/"), 4);
    assert_eq!(seen.requests("HEAD", "/plain/"), 0);
    assert_eq!(seen.requests("HEAD", "/kms/k.gz"), 1);
    assert_eq!(seen.requests("HEAD", "/mp/m.gz"), 1);
    for i in 0..3 {
        assert_eq!(server.s5cmd_cat(&bucket, &format!("plain/p{i}.gz")), small);
    }
    assert_eq!(server.s5cmd_cat(&bucket, "plain/p-streamed.gz"), medium);
    assert_eq!(server.s5cmd_cat(&bucket, "kms/k.gz"), small);
    assert_eq!(server.s5cmd_cat(&bucket, "mp/m.gz"), big);
}
