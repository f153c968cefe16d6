//! The HTTP service: `POST <localDownloadPath>`, `GET /healthz` and `GET /metrics` on
//! `127.0.0.1:<localDownloadHttpPort>` and / or the unix socket `localDownloadSocket`.
//!
//! A download request is answered 200 with an empty body once the artifact is in the cache and
//! placed into `targetDirectory`; every other answer is an [`ApiError`] with a plain-text
//! message. The request is held at most `timeoutMillis` (else the configured default); when
//! that runs out the answer is 500 `Hit client timeout`, while the download itself goes on for
//! the other requests sharing it and for the cache.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use singularity_artifacts::{
    ArtifactError, ExtractLimits, PendingFile, PlaceOutcome, Placement, place_artifact,
};
use singularity_common::config::{S3BaseConfig, S3DownloaderConfig};
use singularity_common::records::ArtifactDownloadRequest;
use singularity_runtime::Shutdown;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::error::{ApiError, BodyError, ServeError, TargetRefusal};
use crate::fetch::{CachedArtifact, Fetcher};
use crate::metrics::{Metrics, Snapshot};

/// Mode of the unix socket: the owner and group may connect.
pub const SOCKET_MODE: u32 = 0o660;

/// Address the TCP listener binds, as the Java service bound `localhost`.
pub const LISTEN_HOST: [u8; 4] = [127, 0, 0, 1];

/// What the HTTP service needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// TCP listener (`127.0.0.1:<localDownloadHttpPort>`); port 0 picks a free port (tests).
    pub tcp: Option<SocketAddr>,
    /// Unix socket path (`localDownloadSocket`).
    pub socket: Option<PathBuf>,
    /// Path of the download endpoint (`localDownloadPath`).
    pub download_path: String,
    /// A target directory must lie strictly below one of these (`allowedTargetDirectories`).
    pub allowed_target_directories: Vec<PathBuf>,
    /// Hold time of a request without `timeoutMillis` (`defaultRequestTimeoutMillis`).
    pub default_request_timeout: Duration,
    /// Tarball extraction limits (`maxExtractedBytes`, `maxExtractedEntries`).
    pub extract_limits: ExtractLimits,
    /// Time in-flight work gets after shutdown is requested (`shutdownGraceMillis`).
    pub shutdown_grace: Duration,
}

impl ServiceConfig {
    /// The service settings of a loaded configuration.
    pub fn from_config(
        s3: &S3BaseConfig,
        downloader: &S3DownloaderConfig,
    ) -> Result<Self, ServeError> {
        let download_path = normalise_download_path(&s3.local_download_path)?;
        Ok(Self {
            tcp: s3
                .local_download_http_port
                .filter(|port| *port != 0)
                .map(|port| SocketAddr::from((LISTEN_HOST, port))),
            socket: s3.local_download_socket.clone(),
            download_path,
            allowed_target_directories: downloader.allowed_target_directories.clone(),
            default_request_timeout: Duration::from_millis(
                downloader.default_request_timeout_millis,
            ),
            extract_limits: ExtractLimits {
                max_total_bytes: downloader.max_extracted_bytes,
                max_entries: downloader.max_extracted_entries,
            },
            shutdown_grace: Duration::from_millis(downloader.shutdown_grace_millis),
        })
    }
}

/// `/download` stays as is; `download` gains its `/`. Route syntax (`{`, `}`, `*`) and the
/// service's own paths are refused rather than given another meaning.
fn normalise_download_path(path: &str) -> Result<String, ServeError> {
    let normalised = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let reason = if normalised.contains(['{', '}', '*', '?', '#']) {
        Some("must be a plain path without `{`, `}`, `*`, `?` or `#`")
    } else if normalised == "/healthz" || normalised == "/metrics" {
        Some("is one of the service's own paths")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ServeError::Config {
            key: "localDownloadPath",
            value: path.to_owned(),
            reason,
        }),
        None => Ok(normalised),
    }
}

struct AppState {
    fetcher: Arc<Fetcher>,
    placements: Arc<Placements>,
    metrics: Metrics,
    allowed_roots: Vec<PathBuf>,
    default_request_timeout: Duration,
    extract_limits: ExtractLimits,
    download_path: String,
    next_request_id: AtomicU64,
}

type SharedState = Arc<AppState>;

/// The service with its listeners bound, not yet serving.
#[derive(Debug)]
pub struct Server {
    tcp: Option<TcpListener>,
    tcp_addr: Option<SocketAddr>,
    unix: Option<UnixListener>,
    socket: Option<PathBuf>,
    router: Router,
    fetcher: Arc<Fetcher>,
    placements: Arc<Placements>,
    shutdown_grace: Duration,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("download_path", &self.download_path)
            .field("allowed_roots", &self.allowed_roots)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the configured listeners: the TCP port on 127.0.0.1 and / or the unix socket
    /// (mode 0660; a stale socket file from an earlier run is replaced, a live one or any
    /// other file is an error).
    pub async fn bind(config: ServiceConfig, fetcher: Arc<Fetcher>) -> Result<Self, ServeError> {
        if config.tcp.is_none() && config.socket.is_none() {
            return Err(ServeError::Config {
                key: "localDownloadHttpPort",
                value: "0".to_owned(),
                reason: "the downloader needs localDownloadHttpPort or localDownloadSocket",
            });
        }
        let (tcp, tcp_addr) = match config.tcp {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServeError::BindTcp { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| ServeError::BindTcp { addr, source })?;
                (Some(listener), Some(bound))
            }
            None => (None, None),
        };
        let unix = match &config.socket {
            Some(path) => Some(bind_unix(path)?),
            None => None,
        };
        let placements = Arc::new(Placements::default());
        let state = Arc::new(AppState {
            fetcher: Arc::clone(&fetcher),
            placements: Arc::clone(&placements),
            metrics: Metrics::new(),
            allowed_roots: config.allowed_target_directories.clone(),
            default_request_timeout: config.default_request_timeout,
            extract_limits: config.extract_limits,
            download_path: config.download_path.clone(),
            next_request_id: AtomicU64::new(1),
        });
        Ok(Self {
            tcp,
            tcp_addr,
            unix,
            socket: config.socket,
            router: router(state),
            fetcher,
            placements,
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// The bound TCP address, if there is a TCP listener.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The unix socket path, if there is one.
    pub fn socket_path(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// Tells systemd the service is ready, serves until `shutdown`, then stops accepting,
    /// lets in-flight requests and downloads finish within the grace period, and removes the
    /// unix socket.
    pub async fn serve(self, shutdown: Shutdown) {
        let mut servers = JoinSet::new();
        if let Some(listener) = self.tcp {
            let listener = listener.tap_io(|stream| {
                // Answers are small: do not let them wait for the client's delayed ACK.
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "set TCP_NODELAY");
                }
            });
            let stop = shutdown.clone();
            servers.spawn(
                axum::serve(listener, self.router.clone())
                    .with_graceful_shutdown(async move { stop.wait().await })
                    .into_future(),
            );
        }
        if let Some(listener) = self.unix {
            let stop = shutdown.clone();
            servers.spawn(
                axum::serve(listener, self.router.clone())
                    .with_graceful_shutdown(async move { stop.wait().await })
                    .into_future(),
            );
        }
        tracing::info!(
            tcp = ?self.tcp_addr,
            socket = ?self.socket,
            "listening"
        );
        if let Err(error) = singularity_runtime::notify_ready() {
            tracing::warn!(%error, "cannot tell systemd the service is ready");
        }

        shutdown.wait().await;
        if let Err(error) = singularity_runtime::notify_stopping() {
            tracing::warn!(%error, "cannot tell systemd the service is stopping");
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_grace;
        tracing::info!(
            grace_ms = self.shutdown_grace.as_millis(),
            active_downloads = self.fetcher.active_downloads(),
            "no longer accepting connections; finishing in-flight requests"
        );
        let drained = tokio::time::timeout_at(deadline, async {
            while let Some(result) = servers.join_next().await {
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "listener ended with an error"),
                    Err(error) => tracing::warn!(%error, "listener task failed"),
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                grace_ms = self.shutdown_grace.as_millis(),
                "requests still in flight after the grace period; abandoning them"
            );
            servers.abort_all();
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.fetcher.drain(remaining).await;
        self.placements.drain(deadline).await;
        if let Some(path) = &self.socket {
            remove_socket(path);
        }
        tracing::info!("stopped");
    }
}

fn bind_unix(path: &Path) -> Result<UnixListener, ServeError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| ServeError::unix(path, "create its directory", e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A socket someone still answers on belongs to a running service; one nobody
            // answers on is left over from a run that did not stop cleanly.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServeError::SocketInUse {
                    path: path.to_owned(),
                });
            }
            tracing::info!(socket = %path.display(), "replacing a stale socket file");
            std::fs::remove_file(path)
                .map_err(|e| ServeError::unix(path, "remove the stale socket", e))?;
        }
        Ok(_) => {
            return Err(ServeError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ServeError::unix(path, "inspect", e)),
    }
    let listener = UnixListener::bind(path).map_err(|e| ServeError::unix(path, "bind", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| ServeError::unix(path, "chmod", e))?;
    Ok(listener)
}

fn remove_socket(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if let Err(error) = std::fs::remove_file(path) {
                tracing::warn!(socket = %path.display(), %error, "cannot remove the socket");
            }
        }
        _ => {}
    }
}

fn router(state: SharedState) -> Router {
    Router::new()
        .route(&state.download_path, post(download))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), observe))
        .with_state(state)
}

/// Gives every request a span (so a 500's log lines carry its id, method and path) and
/// counts its answer by status code.
async fn observe(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let id = state.next_request_id.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!(
        "request",
        id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    state.metrics.record_response(status);
    span.in_scope(|| {
        tracing::debug!(
            status,
            elapsed_ms = started.elapsed().as_millis(),
            "answered"
        );
    });
    response
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics_text(State(state): State<SharedState>) -> Response {
    let stats = state.fetcher.cache_stats();
    let text = state.metrics.encode(Snapshot {
        cache_bytes: stats.bytes,
        cache_entries: stats.entries,
        active_downloads: u64::try_from(state.fetcher.active_downloads()).unwrap_or(u64::MAX),
    });
    singularity_runtime::metrics_response(text)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound {
        path: request.uri().path().to_owned(),
    }
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    }
}

/// The body is read whatever its Content-Type says (or without one), as the Java service
/// did: its clients do not always send `application/json`.
async fn download(
    State(state): State<SharedState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let response = match handle_download(&state, body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => error.into_response(),
    };
    state.metrics.record_request_duration(started.elapsed());
    response
}

async fn handle_download(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<(), ApiError> {
    let body = body.map_err(|source| ApiError::InvalidBody {
        source: BodyError::Read(source),
    })?;
    let request = parse_request(&body)?;
    let target = check_target(&request.target_directory, &state.allowed_roots)?;
    let hold = hold_time(request.timeout_millis, state.default_request_timeout);

    let artifact = request.s3_artifact;
    let span = tracing::info_span!(
        "download",
        bucket = %artifact.s3_bucket,
        key = %artifact.s3_object_key,
        target = %target.display(),
    );
    let work = async {
        let started = Instant::now();
        let pending = pending_file(&target, &artifact.filename).await;
        let mirror = pending
            .as_ref()
            .and_then(|pending| pending.file().try_clone().ok())
            .map(Arc::new);
        let cached = state.fetcher.fetch_into(&artifact, mirror).await?;
        state.metrics.record_fetch(
            cached.cache_hit,
            cached.bytes_from_s3,
            cached.download_duration,
        );
        let (cache_hit, size) = (cached.cache_hit, cached.size);
        let written_ahead = pending.filter(|_| cached.mirrored);
        let placement = state
            .placements
            .place(
                cached,
                target,
                artifact.filename.clone(),
                state.extract_limits,
                written_ahead,
            )
            .await?;
        state.metrics.record_placement(method(&placement));
        tracing::info!(
            cache_hit,
            size,
            placed = %describe(&placement),
            elapsed_ms = started.elapsed().as_millis(),
            "artifact placed"
        );
        Ok(())
    };
    async {
        match hold {
            Some(hold) => tokio::time::timeout(hold, work)
                .await
                .map_err(|_| ApiError::HoldTimeout)?,
            None => work.await,
        }
    }
    .instrument(span)
    .await
}

/// A file to write the artifact into while it downloads, when placing it would be a plain
/// copy into an existing directory (see [`PendingFile`]). Any trouble here only means the
/// artifact is copied after the download, by the placement, which reports it.
async fn pending_file(target: &Path, filename: &str) -> Option<PendingFile> {
    let (target, name) = (target.to_path_buf(), filename.to_owned());
    let created = tokio::task::spawn_blocking(move || PendingFile::create(&target, &name))
        .await
        .map_err(|error| error.to_string())
        .and_then(|created| created.map_err(|error| error.to_string()));
    created.unwrap_or_else(|error| {
        tracing::debug!(%error, "no file written ahead; the artifact will be copied");
        None
    })
}

/// The `method` label of a placement in the metrics.
fn method(placement: &Placement) -> &'static str {
    match placement {
        Placement::Extracted(_) => "extracted",
        Placement::File(PlaceOutcome::Copied { .. }) => "copied",
        Placement::File(PlaceOutcome::WrittenAhead { .. }) => "written_ahead",
        Placement::File(PlaceOutcome::AlreadyPresent) => "already_present",
    }
}

fn describe(placement: &Placement) -> String {
    match placement {
        Placement::Extracted(summary) => format!(
            "extracted {} entries, {} bytes",
            summary.entries, summary.bytes
        ),
        Placement::File(outcome) => format!("{outcome:?}"),
    }
}

/// `timeoutMillis` when given, 0 meaning no limit (as a Jetty continuation timeout of 0 did);
/// otherwise the configured default.
fn hold_time(timeout_millis: Option<u64>, default: Duration) -> Option<Duration> {
    match timeout_millis {
        Some(0) => None,
        Some(millis) => Some(Duration::from_millis(millis)),
        None => Some(default),
    }
}

/// Placements in progress, by what they put where. Identical requests arriving together (the
/// same artifact for the same target) share one placement instead of copying or extracting the
/// same files over each other; the artifacts crate assumes nobody else writes into a target
/// while it extracts.
#[derive(Debug, Default)]
struct Placements {
    running: Mutex<HashMap<PlaceKey, watch::Receiver<Option<PlaceResult>>>>,
    tasks: TaskTracker,
}

/// Target directory, file name, cache file.
type PlaceKey = (PathBuf, String, PathBuf);
type PlaceResult = Result<Placement, PlaceFailure>;

/// A placement error every request sharing the placement can have.
#[derive(Debug, Clone)]
enum PlaceFailure {
    Artifact(Arc<ArtifactError>),
    Task(Arc<tokio::task::JoinError>),
}

impl From<PlaceFailure> for ApiError {
    fn from(failure: PlaceFailure) -> Self {
        match failure {
            PlaceFailure::Artifact(error) => ApiError::Place(error),
            PlaceFailure::Task(source) => ApiError::PlacementTask { source },
        }
    }
}

impl Placements {
    fn running(&self) -> MutexGuard<'_, HashMap<PlaceKey, watch::Receiver<Option<PlaceResult>>>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Places the cached artifact on a blocking thread, or joins the same placement already
    /// running. The cache entry stays leased until the placement is over. The placement runs
    /// in a task of its own: a request whose hold time runs out stops waiting, but the work
    /// completes (blocking work cannot be interrupted half-way without leaving debris).
    /// `written_ahead`, the artifact already written into the target during its download,
    /// makes the placement a rename; it is dropped (removed) when joining a placement, so
    /// that requests for the same target never race each other's copies.
    async fn place(
        self: &Arc<Self>,
        cached: CachedArtifact,
        target: PathBuf,
        filename: String,
        limits: ExtractLimits,
        written_ahead: Option<PendingFile>,
    ) -> Result<Placement, ApiError> {
        let key = (target.clone(), filename.clone(), cached.path.clone());
        let mut result = {
            let mut running = self.running();
            match running.get(&key) {
                Some(result) => {
                    drop(written_ahead);
                    result.clone()
                }
                None => {
                    let (publish, result) = watch::channel(None);
                    running.insert(key.clone(), result.clone());
                    let placements = Arc::clone(self);
                    self.tasks.spawn(async move {
                        let placed = tokio::task::spawn_blocking(move || {
                            let placed = match written_ahead {
                                Some(pending) => pending.publish(&cached.path).map(Placement::File),
                                None => place_artifact(&cached.path, &target, &filename, &limits),
                            };
                            drop(cached);
                            placed
                        })
                        .await;
                        let placed = match placed {
                            Ok(Ok(placement)) => Ok(placement),
                            Ok(Err(error)) => Err(PlaceFailure::Artifact(Arc::new(error))),
                            Err(error) => Err(PlaceFailure::Task(Arc::new(error))),
                        };
                        // Gone from the map before the result is out: a request arriving
                        // later places (or checks) afresh.
                        placements.running().remove(&key);
                        publish.send_replace(Some(placed));
                    });
                    result
                }
            }
        };
        let placed = match result.wait_for(Option::is_some).await {
            Ok(placed) => placed.clone(),
            Err(_) => None,
        };
        match placed {
            Some(placed) => placed.map_err(ApiError::from),
            None => Err(ApiError::PlacementLost),
        }
    }

    /// Waits up to `deadline` for placements whose requests all gave up.
    async fn drain(&self, deadline: tokio::time::Instant) {
        self.tasks.close();
        if tokio::time::timeout_at(deadline, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("placements still running at the end of the grace period");
        }
    }
}

/// Parses the body, naming the field at fault in the error: `missing field
/// `s3Artifact.s3Bucket``, `s3Artifact.filesize: invalid type: ...`, or the JSON syntax error
/// with its position.
fn parse_request(body: &[u8]) -> Result<ArtifactDownloadRequest, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let request: ArtifactDownloadRequest = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| ApiError::InvalidBody {
            source: BodyError::Json {
                path: error.path().to_string(),
                source: error.into_inner(),
            },
        })?;
    deserializer.end().map_err(|source| ApiError::InvalidBody {
        source: BodyError::Json {
            path: ".".to_owned(),
            source,
        },
    })?;
    Ok(request)
}

/// The message of a JSON error at `path`, naming the field at fault.
pub(crate) fn describe_json_error(path: &str, error: &serde_json::Error) -> String {
    let text = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    let bare = text.strip_suffix(&position).unwrap_or(&text);
    let at_root = path == "." || path.is_empty();
    if let Some(field) = bare
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return if at_root {
            format!("missing field `{field}`")
        } else {
            format!("missing field `{path}.{field}`")
        };
    }
    if error.is_syntax() || error.is_eof() || at_root {
        text
    } else {
        format!("{path}: {bare}")
    }
}

/// Checks `requested` against the allowed roots and returns the directory to place into:
/// `requested` with `.` and `..` resolved lexically and its longest existing prefix
/// canonicalised, so a symlink inside an allowed root cannot lead outside it. The target must
/// lie strictly below a root (itself canonicalised the same way).
pub fn check_target(requested: &Path, allowed_roots: &[PathBuf]) -> Result<PathBuf, ApiError> {
    let refuse = |reason: TargetRefusal| ApiError::TargetNotAllowed {
        path: requested.to_owned(),
        reason,
    };
    if !requested.is_absolute() {
        return Err(refuse(TargetRefusal::Relative));
    }
    let resolved = resolve(&normalise(requested))
        .map_err(|source| refuse(TargetRefusal::Unresolvable { source }))?;
    for root in allowed_roots.iter().filter(|root| root.is_absolute()) {
        let root = normalise(root);
        let root = resolve(&root).unwrap_or(root);
        if resolved != root && resolved.starts_with(&root) {
            return Ok(resolved);
        }
    }
    let resolves_to = (resolved != normalise(requested)).then_some(resolved);
    Err(refuse(TargetRefusal::NotBelowRoot {
        roots: allowed_roots.to_vec(),
        resolves_to,
    }))
}

/// `.` dropped and `..` applied to the components before it, without touching the disk.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The longest existing prefix of `path` canonicalised, the rest appended. A component that
/// exists but does not resolve (a dangling symlink) is an error: creating the directory
/// would follow it.
fn resolve(path: &Path) -> io::Result<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut missing: Vec<OsString> = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(mut resolved) => {
                for name in missing.iter().rev() {
                    resolved.push(name);
                }
                return Ok(resolved);
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if std::fs::symlink_metadata(&existing).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{} is a dangling symlink", existing.display()),
                    ));
                }
                match (existing.file_name(), existing.parent()) {
                    (Some(name), Some(parent)) => {
                        missing.push(name.to_owned());
                        existing = parent.to_path_buf();
                    }
                    _ => return Err(error),
                }
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_paths() {
        assert_eq!(normalise_download_path("/download").unwrap(), "/download");
        assert_eq!(normalise_download_path("fetch").unwrap(), "/fetch");
        assert!(normalise_download_path("/{x}").is_err());
        assert!(normalise_download_path("/metrics").is_err());
    }

    #[test]
    fn hold_times() {
        let default = Duration::from_secs(30);
        assert_eq!(hold_time(None, default), Some(default));
        assert_eq!(hold_time(Some(0), default), None);
        assert_eq!(
            hold_time(Some(1500), default),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn lexical_normalisation() {
        assert_eq!(normalise(Path::new("/a/./b/../c/")), PathBuf::from("/a/c"));
        assert_eq!(normalise(Path::new("/../..")), PathBuf::from("/"));
    }

    #[test]
    fn json_errors_name_the_field() {
        let error = |body: &str| match parse_request(body.as_bytes()) {
            Err(error) => error.to_string(),
            Ok(request) => panic!("parsed {request:?}"),
        };
        assert_eq!(
            error(r#"{"s3Artifact":{}}"#),
            "invalid request body: missing field `s3Artifact.filename`"
        );
        assert_eq!(
            error(r#"{"targetDirectory":"/t"}"#),
            "invalid request body: missing field `s3Artifact`"
        );
        assert_eq!(
            error(
                r#"{"targetDirectory":"/t","s3Artifact":{"filename":"f","s3Bucket":"b","s3ObjectKey":"k","filesize":"x"}}"#
            ),
            "invalid request body: s3Artifact.filesize: invalid type: string \"x\", expected i64"
        );
        assert!(error("{").starts_with("invalid request body: EOF while parsing"));
        let trailing = error(
            r#"{"targetDirectory":"/t","s3Artifact":{"filename":"f","s3Bucket":"b","s3ObjectKey":"k"}} x"#,
        );
        assert!(trailing.contains("trailing characters"), "{trailing}");
    }
}
