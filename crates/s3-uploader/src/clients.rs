//! S3 clients, one per key pair, and the deadline and retries around every S3 request.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use singularity_common::config::S3BaseConfig;
use singularity_runtime::{Backoff, S3ClientMap, S3ClientTuning, StaticCredentials};

use crate::error::{ErrorKind, S3Failure, UploadError, s3_code};

/// Gives the S3 client for a key pair (`None`: the AWS default credential chain).
pub trait S3ClientFactory: Send + Sync {
    /// The client signing with `credentials`.
    fn client<'a>(
        &'a self,
        credentials: Option<&'a StaticCredentials>,
    ) -> Pin<Box<dyn Future<Output = Client> + Send + 'a>>;
}

/// Clients as the s3base configuration asks (endpoint, path-style addressing, region), one
/// per key pair ([`S3ClientMap`]).
impl S3ClientFactory for S3ClientMap {
    fn client<'a>(
        &'a self,
        credentials: Option<&'a StaticCredentials>,
    ) -> Pin<Box<dyn Future<Output = Client> + Send + 'a>> {
        Box::pin(S3ClientMap::client(self, credentials))
    }
}

/// The uploader's clients for the s3base configuration, connecting within
/// `connect_timeout`. They make one attempt per request (the uploader retries with its own
/// deadline and backoff), and compute no checksum S3 does not require: bodies carry a
/// Content-MD5 where S3 must check them, and every upload is checked against its ETag before
/// anything is deleted, so the SDK's own CRC32 of each body would be a second checksum of the
/// same bytes on both ends.
pub fn configured_clients(s3: &S3BaseConfig, connect_timeout: Duration) -> S3ClientMap {
    S3ClientMap::new(
        s3,
        S3ClientTuning {
            connect_timeout: Some(connect_timeout),
            checksums_only_when_required: true,
        },
    )
}

/// Where a request goes, for errors and logs.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Operation name, e.g. `PutObject`.
    pub op: &'static str,
    /// Bucket.
    pub bucket: &'a str,
    /// Key.
    pub key: &'a str,
}

/// Turns an SDK error into an [`UploadError`] with its kind and S3 error code.
pub fn classify<E>(
    target: Target<'_>,
    error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> UploadError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    let code = s3_code(status, error.meta()).map(str::to_owned);
    let kind = match &error {
        SdkError::TimeoutError(_) => ErrorKind::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => ErrorKind::Timeout,
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => ErrorKind::Network,
        SdkError::ServiceError(_) => match (status, code.as_deref()) {
            (Some(s), _) if s >= 500 || s == 429 => ErrorKind::S3Server,
            (_, Some("SlowDown" | "Throttling" | "RequestTimeout" | "InternalError")) => {
                ErrorKind::S3Server
            }
            _ => ErrorKind::S3Client,
        },
        _ => ErrorKind::S3Client,
    };
    let source = match (&error, status) {
        (SdkError::ServiceError(_), Some(status)) => S3Failure::Answered {
            status,
            meta: error.meta().clone(),
            source: Box::new(error),
        },
        _ => S3Failure::Sdk {
            source: Box::new(error),
        },
    };
    UploadError::S3 {
        op: target.op,
        bucket: target.bucket.to_owned(),
        key: target.key.to_owned(),
        kind,
        code,
        source,
    }
}

/// Runs `request` under `deadline`, retrying transient failures (timeouts, network errors,
/// 5xx, throttling) up to `retry.attempts` attempts in all. S3 refusals (4xx) are returned at
/// once.
pub async fn call<T, E, F, Fut>(
    target: Target<'_>,
    deadline: Duration,
    retry: Backoff,
    mut request: F,
) -> Result<T, UploadError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RequestError<E>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut failure = 0;
    loop {
        let error = match tokio::time::timeout(deadline, request()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(RequestError::Sdk(error))) => classify(target, error),
            Ok(Err(RequestError::Local(error))) => return Err(error),
            Err(_) => UploadError::S3 {
                op: target.op,
                bucket: target.bucket.to_owned(),
                key: target.key.to_owned(),
                kind: ErrorKind::Timeout,
                code: None,
                source: S3Failure::NoAnswer { after: deadline },
            },
        };
        failure += 1;
        if !error.kind().is_transient() || retry.gives_up_after(failure) {
            return Err(error);
        }
        tracing::debug!(%error, attempt = failure, "S3 request failed; trying again");
        tokio::time::sleep(retry.delay(failure - 1)).await;
    }
}

/// What one attempt of a request can fail with: the SDK, or preparing the request locally
/// (opening the file to send).
#[derive(Debug)]
pub enum RequestError<E> {
    /// The SDK's error.
    Sdk(SdkError<E, aws_sdk_s3::config::http::HttpResponse>),
    /// A local failure, not retried.
    Local(UploadError),
}

impl<E> From<SdkError<E, aws_sdk_s3::config::http::HttpResponse>> for RequestError<E> {
    fn from(error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Self {
        Self::Sdk(error)
    }
}

/// The deadline of a request carrying `bytes`: `base` plus one second per MiB.
pub fn deadline_for(base: Duration, bytes: u64) -> Duration {
    base + Duration::from_secs(bytes.div_ceil(1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_grow_with_the_body() {
        let base = Duration::from_secs(60);
        assert_eq!(deadline_for(base, 0), base);
        assert_eq!(deadline_for(base, 1), base + Duration::from_secs(1));
        assert_eq!(
            deadline_for(base, 20 * 1024 * 1024),
            base + Duration::from_secs(20)
        );
    }

    #[tokio::test]
    async fn refused_connections_are_retried_then_reported_as_network_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut base = S3BaseConfig {
            s3_endpoint: Some(format!("http://127.0.0.1:{port}")),
            s3_path_style_access: true,
            s3_region: Some("us-east-1".into()),
            ..S3BaseConfig::default()
        };
        base.s3_access_key = None;
        let clients = configured_clients(&base, Duration::from_secs(1));
        let creds = StaticCredentials {
            access_key: "a".into(),
            secret_key: "b".into(),
        };
        let client = S3ClientFactory::client(&clients, Some(&creds)).await;
        let again = S3ClientFactory::client(&clients, Some(&creds)).await;
        assert_eq!(
            format!("{:?}", client.config().region()),
            format!("{:?}", again.config().region())
        );
        let mut tries = 0;
        let retry = Backoff {
            attempts: 3,
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
        };
        let target = Target {
            op: "HeadObject",
            bucket: "b",
            key: "k",
        };
        let error = call(target, Duration::from_secs(5), retry, || {
            tries += 1;
            let request = client.head_object().bucket("b").key("k");
            async move { request.send().await.map_err(RequestError::from) }
        })
        .await
        .unwrap_err();
        assert_eq!(tries, 3);
        assert_eq!(error.kind(), ErrorKind::Network, "{error}");
        assert!(error.to_string().contains("HeadObject s3://b/k"), "{error}");
    }
}
