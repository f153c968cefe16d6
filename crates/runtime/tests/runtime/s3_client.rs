//! `build_s3_client` against a real S3-protocol server, results checked with s5cmd.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata as _;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use singularity_runtime::{S3ClientOptions, StaticCredentials, build_s3_client};
use singularity_test_support::S3Server;

fn options(s3: &S3Server) -> S3ClientOptions {
    S3ClientOptions {
        endpoint: Some(s3.endpoint().to_owned()),
        region: Some(s3.region().to_owned()),
        path_style: true,
        credentials: Some(StaticCredentials {
            access_key: s3.access_key().to_owned(),
            secret_key: s3.secret_key().to_owned(),
        }),
        ..Default::default()
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 5) as u8)
        .collect()
}

/// s5cmd blocks: keep it off the test's runtime threads.
async fn s5cmd_cat(s3: &S3Server, bucket: &str, key: &str) -> Vec<u8> {
    let endpoint = s3.s3().clone();
    let (bucket, key) = (bucket.to_owned(), key.to_owned());
    tokio::task::spawn_blocking(move || endpoint.s5cmd_cat(&bucket, &key))
        .await
        .expect("s5cmd cat")
}

#[tokio::test]
async fn put_get_and_ranged_get() {
    let s3 = S3Server::start();
    s3.create_bucket("task-logs");
    let client = build_s3_client(&options(&s3)).await;

    let data = pattern(3 * 1024 * 1024 + 17);
    client
        .put_object()
        .bucket("task-logs")
        .key("req/task-1/stdout")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    // Another client sees exactly these bytes, and they sit where the server stores them.
    assert!(s5cmd_cat(&s3, "task-logs", "req/task-1/stdout").await == data);
    assert!(s3.data_dir().join("task-logs/req/task-1/stdout").is_file());

    let got = client
        .get_object()
        .bucket("task-logs")
        .key("req/task-1/stdout")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_length(), Some(data.len() as i64));
    let body = got.body.collect().await.unwrap().into_bytes();
    assert!(body[..] == data[..]);

    let ranged = client
        .get_object()
        .bucket("task-logs")
        .key("req/task-1/stdout")
        .range("bytes=1048576-1049599")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ranged.content_range(),
        Some(format!("bytes 1048576-1049599/{}", data.len()).as_str())
    );
    let body = ranged.body.collect().await.unwrap().into_bytes();
    assert!(body[..] == data[1_048_576..1_049_600]);
}

#[tokio::test]
async fn multipart_upload() {
    let s3 = S3Server::start();
    s3.create_bucket("multi");
    let client = build_s3_client(&options(&s3)).await;
    let data = pattern(11 * 1024 * 1024 + 5);
    let part_size = 5 * 1024 * 1024;

    let upload = client
        .create_multipart_upload()
        .bucket("multi")
        .key("big/object")
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let mut parts = Vec::new();
    for (i, chunk) in data.chunks(part_size).enumerate() {
        let number = i as i32 + 1;
        let part = client
            .upload_part()
            .bucket("multi")
            .key("big/object")
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(part.e_tag().unwrap())
                .build(),
        );
    }
    assert_eq!(parts.len(), 3);
    client
        .complete_multipart_upload()
        .bucket("multi")
        .key("big/object")
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();

    assert!(s5cmd_cat(&s3, "multi", "big/object").await == data);
    let endpoint = s3.s3().clone();
    let listed = tokio::task::spawn_blocking(move || endpoint.s5cmd_ls("multi", ""))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, "big/object");
    assert_eq!(listed[0].size, data.len() as u64);
}

#[tokio::test]
async fn wrong_secret_is_access_denied() {
    let s3 = S3Server::start();
    s3.create_bucket("guarded");
    let mut opts = options(&s3);
    opts.credentials = Some(StaticCredentials {
        access_key: s3.access_key().to_owned(),
        secret_key: "wrong-secret".to_owned(),
    });
    let client = build_s3_client(&opts).await;
    let err = client
        .put_object()
        .bucket("guarded")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(403), "{err:?}");
    let service = err.into_service_error();
    assert!(
        matches!(
            service.code(),
            Some("AccessDenied" | "SignatureDoesNotMatch")
        ),
        "{service:?}"
    );
    assert!(!s3.data_dir().join("guarded/k").exists());
}

/// Records the URI of every request and stops it before it is sent.
#[derive(Debug, Default, Clone)]
struct CaptureUri(Arc<Mutex<Vec<String>>>);

impl Intercept for CaptureUri {
    fn name(&self) -> &'static str {
        "CaptureUri"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0
            .lock()
            .expect("capture lock")
            .push(context.request().uri().to_owned());
        Err("captured".into())
    }
}

async fn request_uri(opts: &S3ClientOptions) -> String {
    let client = build_s3_client(opts).await;
    let capture = CaptureUri::default();
    let _ = client
        .get_object()
        .bucket("some-bucket")
        .key("a/b")
        .customize()
        .interceptor(capture.clone())
        .send()
        .await;
    let uris = capture.0.lock().expect("capture lock");
    assert_eq!(uris.len(), 1, "{uris:?}");
    uris[0].clone()
}

#[tokio::test]
async fn endpoint_and_addressing_style_are_used() {
    let mut opts = S3ClientOptions {
        endpoint: Some("http://localhost:9999".to_owned()),
        credentials: Some(StaticCredentials {
            access_key: "a".to_owned(),
            secret_key: "b".to_owned(),
        }),
        path_style: true,
        ..Default::default()
    };
    assert_eq!(
        request_uri(&opts).await,
        "http://localhost:9999/some-bucket/a/b?x-id=GetObject"
    );
    opts.path_style = false;
    assert_eq!(
        request_uri(&opts).await,
        "http://some-bucket.localhost:9999/a/b?x-id=GetObject"
    );
}

#[tokio::test]
async fn attempt_timeout_bounds_a_silent_server() {
    // Accepts connections (the kernel completes the handshake) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = build_s3_client(&S3ClientOptions {
        endpoint: Some(format!("http://{}", silent.local_addr().unwrap())),
        path_style: true,
        credentials: Some(StaticCredentials {
            access_key: "a".to_owned(),
            secret_key: "b".to_owned(),
        }),
        operation_attempt_timeout: Some(Duration::from_millis(300)),
        operation_timeout: Some(Duration::from_secs(2)),
        connect_timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let err = client
        .get_object()
        .bucket("bucket")
        .key("key")
        .send()
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, aws_sdk_s3::error::SdkError::TimeoutError(_)),
        "{err:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}
