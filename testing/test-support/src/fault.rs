//! An S3 endpoint that misbehaves: a TCP server on loopback that accepts connections and then
//! never answers ([`Fault::Hang`]) or trickles an endless answer ([`Fault::Trickle`]), for the
//! requests of one bucket or of all. Requests for other buckets (path-style) are forwarded to
//! a real S3 server, so a test can show that one stuck bucket holds up nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// How the faulty requests are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Read the request, never answer, keep the connection open until the client gives up.
    Hang,
    /// Answer so slowly the answer never ends: a status line, then an endless header at
    /// `bytes_per_sec`.
    Trickle {
        /// Bytes sent per second.
        bytes_per_sec: u64,
    },
}

/// Counters of what the endpoint saw.
#[derive(Debug, Default)]
pub struct FaultStats {
    /// Connections that got the fault, in all.
    pub faulted: AtomicU64,
    /// Faulted connections the client has not closed yet.
    pub open: AtomicU64,
    /// The longest time, in ms, a client kept a faulted connection before closing it.
    pub longest_wait_ms: AtomicU64,
    /// Connections forwarded to the real server.
    pub forwarded: AtomicU64,
}

/// The faulty endpoint, on its own thread and runtime; stopped on drop.
#[derive(Debug)]
pub struct FaultyS3 {
    addr: SocketAddr,
    stats: Arc<FaultStats>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultyS3 {
    /// Faults every request of `bucket` (every request when `None`); forwards the others to
    /// `upstream` (closes them when there is none).
    pub fn start(fault: Fault, bucket: Option<&str>, upstream: Option<SocketAddr>) -> Self {
        let listener = match std::net::TcpListener::bind("127.0.0.1:0") {
            Ok(listener) => listener,
            Err(error) => panic!("bind a faulty endpoint on loopback: {error}"),
        };
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{e}"));
        let stats = Arc::new(FaultStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let marker = bucket.map(|b| format!(" /{b}"));
        let (thread_stats, thread_stop) = (Arc::clone(&stats), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => panic!("runtime of the faulty endpoint: {error}"),
            };
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                while !thread_stop.load(Ordering::Relaxed) {
                    let accepted =
                        tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
                    let Ok(Ok((client, _))) = accepted else {
                        continue;
                    };
                    let (stats, marker) = (Arc::clone(&thread_stats), marker.clone());
                    tokio::spawn(connection(client, fault, marker, upstream, stats));
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(100));
        });
        Self {
            addr,
            stats,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it saw so far.
    pub fn stats(&self) -> &FaultStats {
        &self.stats
    }
}

impl Drop for FaultyS3 {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether a chunk from the client holds a request line for the faulty bucket (request lines
/// arrive whole at the start of a write). `None` faults everything.
fn is_faulty(chunk: &[u8], marker: Option<&str>) -> bool {
    let Some(marker) = marker else { return true };
    chunk
        .split(|b| *b == b'\n')
        .filter(|line| line.ends_with(b"\r") && line.windows(5).any(|w| w == b"HTTP/"))
        .any(|line| line_targets(line, marker))
}

/// `METHOD /bucket[/ ?]...`: the marker is followed by the end of the bucket name.
fn line_targets(line: &[u8], marker: &str) -> bool {
    line.windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .and_then(|at| line.get(at + marker.len()))
        .is_some_and(|next| matches!(next, b'/' | b'?' | b' '))
}

async fn connection(
    mut client: TcpStream,
    fault: Fault,
    marker: Option<String>,
    upstream: Option<SocketAddr>,
    stats: Arc<FaultStats>,
) {
    let _ = client.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let n = match client.read(&mut buf).await {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    if is_faulty(&buf[..n], marker.as_deref()) {
        return apply(client, fault, &stats).await;
    }
    let Some(upstream) = upstream else { return };
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    stats.forwarded.fetch_add(1, Ordering::Relaxed);
    let _ = server.set_nodelay(true);
    if server.write_all(&buf[..n]).await.is_err() {
        return;
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        client_write
    });
    // Later requests on a kept-alive connection may be for the faulty bucket too.
    let turned = loop {
        let n = match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => break false,
            Ok(n) => n,
        };
        if is_faulty(&buf[..n], marker.as_deref()) {
            break true;
        }
        if server_write.write_all(&buf[..n]).await.is_err() {
            break false;
        }
    };
    let _ = server_write.shutdown().await;
    if turned {
        down.abort();
        if let Ok(client_write) = down.await
            && let Ok(client) = client_read.reunite(client_write)
        {
            apply(client, fault, &stats).await;
        }
    } else {
        let _ = down.await;
    }
}

/// Holds or trickles until the client closes, then records how long it waited.
async fn apply(mut client: TcpStream, fault: Fault, stats: &FaultStats) {
    stats.faulted.fetch_add(1, Ordering::Relaxed);
    stats.open.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let (mut read, mut write) = client.split();
    let drain = async {
        let mut sink = vec![0u8; 64 * 1024];
        while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let answer = async {
        match fault {
            Fault::Hang => std::future::pending::<()>().await,
            Fault::Trickle { bytes_per_sec } => {
                let tick = Duration::from_millis(100);
                let per_tick = usize::try_from((bytes_per_sec / 10).max(1)).unwrap_or(1);
                if write
                    .write_all(b"HTTP/1.1 200 OK\r\nx-amz-request-id: trickle\r\nx-pad: ")
                    .await
                    .is_err()
                {
                    return;
                }
                loop {
                    tokio::time::sleep(tick).await;
                    if write.write_all(&vec![b'a'; per_tick]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        () = drain => {}
        () = answer => {}
    }
    let waited = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    stats.longest_wait_ms.fetch_max(waited, Ordering::Relaxed);
    stats.open.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_for_the_faulty_bucket_are_told_apart() {
        let line = |s: &str| format!("{s} HTTP/1.1\r\nhost: x\r\n\r\n").into_bytes();
        let marker = Some(" /stuck");
        assert!(is_faulty(&line("PUT /stuck/k"), marker));
        assert!(is_faulty(&line("GET /stuck?list-type=2"), marker));
        assert!(is_faulty(&line("HEAD /stuck"), marker));
        assert!(!is_faulty(&line("PUT /stuck-not/k"), marker));
        assert!(!is_faulty(&line("PUT /ok/stuck/k"), marker));
        assert!(!is_faulty(
            b"body bytes /stuck/ without a request line",
            marker
        ));
        assert!(is_faulty(&line("PUT /ok/k"), None));
    }
}
