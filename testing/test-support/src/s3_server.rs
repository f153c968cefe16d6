//! The S3-protocol server: s3s-fs over a directory, SigV4 with one key pair, on loopback.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::clients::S3Endpoint;
use crate::coalesce::Coalesce;

/// Region the servers report and the helpers sign for. s3s accepts any region in the
/// signature scope; clients still need one.
pub const REGION: &str = "us-east-1";

/// Why an S3-protocol test server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum S3ServerError {
    /// s3s-fs refused the data directory (`cause` has no `Error` impl, only `Debug`).
    #[error("open S3 data dir {}: {cause:?}", root.display())]
    OpenDataDir {
        /// The data directory.
        root: PathBuf,
        /// What s3s-fs reported.
        cause: s3s_fs::Error,
    },
    /// No temp dir for the data.
    #[error("create S3 data dir: {0}")]
    CreateDataDir(std::io::Error),
    /// No socket on a free loopback port.
    #[error("bind 127.0.0.1:0: {0}")]
    Bind(std::io::Error),
    /// The server thread could not be spawned.
    #[error("spawn the S3 server thread: {0}")]
    SpawnThread(std::io::Error),
    /// The server thread ended before saying whether it started.
    #[error("S3 server thread ended before starting")]
    ThreadEnded,
    /// The server thread's tokio runtime, or its listener, could not be set up.
    #[error("start the S3 server runtime: {0}")]
    Runtime(std::io::Error),
}

/// Builds the S3 service over `root` (which must exist), accepting only `access_key` /
/// `secret_key` signatures.
pub fn build_service(
    root: &Path,
    access_key: &str,
    secret_key: &str,
) -> Result<S3Service, S3ServerError> {
    let fs = s3s_fs::FileSystem::new(root).map_err(|cause| S3ServerError::OpenDataDir {
        root: root.to_owned(),
        cause,
    })?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
    Ok(builder.build())
}

/// Accepts connections on `listener` and serves `service` until `shutdown` resolves, then
/// gives in-flight requests up to two seconds.
pub async fn serve(listener: TcpListener, service: S3Service, shutdown: impl Future<Output = ()>) {
    serve_counted(listener, service, Arc::default(), shutdown).await;
}

/// What a server has answered to GET requests, so tests can prove how often an object was
/// read (e.g. once for many identical concurrent downloads).
#[derive(Debug, Default)]
pub struct ServedCounters {
    get_requests: AtomicU64,
    bytes_served: AtomicU64,
}

impl ServedCounters {
    /// GET requests received (objects, ranges and listings alike).
    pub fn get_requests(&self) -> u64 {
        self.get_requests.load(Ordering::SeqCst)
    }

    /// Response body bytes sent for GET requests.
    pub fn bytes_served(&self) -> u64 {
        self.bytes_served.load(Ordering::SeqCst)
    }
}

/// A body that adds the length of each data frame it yields to a counter.
struct Counted<B> {
    inner: Pin<Box<B>>,
    counters: Option<Arc<ServedCounters>>,
}

impl<B> http_body::Body for Counted<B>
where
    B: http_body::Body<Data = bytes::Bytes>,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(counters)) = (&polled, &this.counters)
            && let Some(data) = frame.data_ref()
        {
            counters
                .bytes_served
                .fetch_add(data.len() as u64, Ordering::SeqCst);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// [`serve`], counting GET requests and the body bytes sent for them into `counters`.
pub async fn serve_counted(
    listener: TcpListener,
    service: S3Service,
    counters: Arc<ServedCounters>,
    shutdown: impl Future<Output = ()>,
) {
    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(err) => {
                    // Usually EMFILE under load: back off instead of spinning.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = shutdown.as_mut() => break,
        };
        // Without it every response waits on the client's delayed ACK (tens of ms on loopback).
        if let Err(err) = socket.set_nodelay(true) {
            tracing::warn!(%err, "set TCP_NODELAY");
        }
        let service = service.clone();
        let counters = Arc::clone(&counters);
        let handler = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let counted = (req.method() == hyper::Method::GET).then(|| {
                counters.get_requests.fetch_add(1, Ordering::SeqCst);
                Arc::clone(&counters)
            });
            let call = hyper::service::Service::call(&service, req);
            async move {
                call.await.map(|resp| {
                    resp.map(|body| {
                        Coalesce::new(Counted {
                            inner: Box::pin(body),
                            counters: counted,
                        })
                    })
                })
            }
        });
        let conn = http
            .serve_connection(TokioIo::new(socket), handler)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%err, "connection ended with an error");
            }
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(2)) => {
            tracing::debug!("connections still open after 2 s; dropping them");
        }
    }
}

/// An S3-protocol server for one test: s3s-fs over a fresh temp dir, SigV4 with a generated
/// key pair, on `127.0.0.1:<free port>`, running on its own thread and tokio runtime so that
/// both `#[test]` and `#[tokio::test]` can use it. Stops, and deletes its data, on drop.
///
/// ```no_run
/// let s3 = singularity_test_support::S3Server::start();
/// s3.create_bucket("logs");
/// s3.s5cmd_put("logs", "a/b.txt", b"hello");
/// assert_eq!(s3.s5cmd_cat("logs", "a/b.txt"), b"hello");
/// ```
#[derive(Debug)]
pub struct S3Server {
    s3: S3Endpoint,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    served: Arc<ServedCounters>,
    // Dropped after the thread has been joined (fields drop after `Drop::drop`).
    data_dir: TempDir,
}

impl S3Server {
    /// Starts a server; panics if it cannot (no free port, no temp dir).
    pub fn start() -> Self {
        match Self::try_start() {
            Ok(server) => server,
            Err(err) => panic!("start the in-process S3 server: {err}"),
        }
    }

    /// Starts a server. The socket is bound before this returns, so requests made right
    /// after it are queued, not refused.
    pub fn try_start() -> Result<Self, S3ServerError> {
        let data_dir = tempfile::Builder::new()
            .prefix("se-test-s3-")
            .tempdir()
            .map_err(S3ServerError::CreateDataDir)?;
        let id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let access_key = format!("AKIATEST{}", &id[..12]);
        let secret_key = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let service = build_service(data_dir.path(), &access_key, &secret_key)?;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(S3ServerError::Bind)?;
        listener
            .set_nonblocking(true)
            .map_err(S3ServerError::Bind)?;
        let addr = listener.local_addr().map_err(S3ServerError::Bind)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = Arc::new(ServedCounters::default());
        let served_by_thread = Arc::clone(&served);
        let (started, start_result) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread = std::thread::Builder::new()
            .name(format!("test-s3-{}", addr.port()))
            .spawn(move || {
                // Built and dropped on this thread: dropping a runtime inside a test's own
                // tokio runtime would panic.
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("test-s3")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = started.send(Err(err));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(err) => {
                            let _ = started.send(Err(err));
                            return;
                        }
                    };
                    let _ = started.send(Ok(()));
                    serve_counted(listener, service, served_by_thread, async {
                        let _ = stopped.await;
                    })
                    .await;
                });
                // Blocking file reads still in flight must not hold up the test.
                runtime.shutdown_timeout(Duration::from_millis(500));
            })
            .map_err(S3ServerError::SpawnThread)?;
        start_result
            .recv()
            .map_err(|_| S3ServerError::ThreadEnded)?
            .map_err(S3ServerError::Runtime)?;

        Ok(Self {
            s3: S3Endpoint {
                endpoint: format!("http://{addr}"),
                access_key,
                secret_key,
                region: REGION.to_owned(),
            },
            addr,
            stop: Some(stop),
            thread: Some(thread),
            served,
            data_dir,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.s3.endpoint
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The only access key the server accepts.
    pub fn access_key(&self) -> &str {
        &self.s3.access_key
    }

    /// The secret key belonging to [`Self::access_key`].
    pub fn secret_key(&self) -> &str {
        &self.s3.secret_key
    }

    /// Region to sign with.
    pub fn region(&self) -> &str {
        &self.s3.region
    }

    /// GET requests this server has received so far.
    pub fn get_requests(&self) -> u64 {
        self.served.get_requests()
    }

    /// Body bytes this server has sent in answer to GET requests so far.
    pub fn bytes_served(&self) -> u64 {
        self.served.bytes_served()
    }

    /// Where objects are stored: `<data_dir>/<bucket>/<key>`.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Endpoint and credentials, for the independent-client helpers.
    pub fn s3(&self) -> &S3Endpoint {
        &self.s3
    }

    /// Creates a bucket (a directory under the data dir: no S3 client involved). Panics if it
    /// exists already.
    pub fn create_bucket(&self, name: &str) {
        let path = self.data_dir.path().join(name);
        if let Err(err) = std::fs::create_dir(&path) {
            panic!("create bucket {name} at {}: {err}", path.display());
        }
    }

    /// [`S3Endpoint::s5cmd_cat`] on this server.
    pub fn s5cmd_cat(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.s3.s5cmd_cat(bucket, key)
    }

    /// [`S3Endpoint::s5cmd_ls`] on this server.
    pub fn s5cmd_ls(&self, bucket: &str, prefix: &str) -> Vec<crate::clients::ListedObject> {
        self.s3.s5cmd_ls(bucket, prefix)
    }

    /// [`S3Endpoint::s5cmd_put`] on this server.
    pub fn s5cmd_put(&self, bucket: &str, key: &str, data: &[u8]) {
        self.s3.s5cmd_put(bucket, key, data)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
