//! The transfer against a scripted source: retries, resumption, the window, response checks.

use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;

use tokio::sync::Semaphore;

use super::*;

/// An error of the fake source, saying `text`.
fn fake_error(kind: SourceErrorKind, text: String) -> SourceError {
    SourceError::new(
        kind,
        S3Failure::Sdk {
            source: Arc::new(std::io::Error::other(text)),
        },
    )
}

/// What the fake does with one request.
#[derive(Debug, Clone)]
enum Fault {
    /// Answers with an error.
    Fail(SourceErrorKind),
    /// Never answers.
    Hang,
    /// Sends this many bytes, then ends the body early.
    Cut(usize),
    /// Sends this many bytes, then fails the body.
    BreakBody(usize),
    /// Sends this many bytes, then stops sending.
    Stall(usize),
    /// Answers one byte short of the range asked for.
    ShortRange,
    /// Answers with another ETag.
    OtherEtag,
    /// Waits for the gate before sending anything.
    Gated,
}

/// An object in memory, served in `chunk`-byte frames, with faults scripted per part.
struct Fake {
    data: Bytes,
    part_size: u64,
    chunk: usize,
    ignore_range: bool,
    faults: Mutex<HashMap<u64, VecDeque<Fault>>>,
    gets: Mutex<Vec<(u64, u64)>>,
    heads: AtomicUsize,
    gate: Arc<Semaphore>,
}

impl Fake {
    fn new(data: Vec<u8>, part_size: u64) -> Self {
        Self {
            data: Bytes::from(data),
            part_size,
            chunk: 1000,
            ignore_range: false,
            faults: Mutex::new(HashMap::new()),
            gets: Mutex::new(Vec::new()),
            heads: AtomicUsize::new(0),
            gate: Arc::new(Semaphore::new(0)),
        }
    }

    /// Scripts the next requests that start inside part `part`.
    fn fault(self, part: u64, faults: impl IntoIterator<Item = Fault>) -> Self {
        self.faults
            .lock()
            .unwrap()
            .entry(part)
            .or_default()
            .extend(faults);
        self
    }

    fn gets(&self) -> Vec<(u64, u64)> {
        self.gets.lock().unwrap().clone()
    }

    fn next_fault(&self, start: u64) -> Option<Fault> {
        let part = start / self.part_size;
        self.faults
            .lock()
            .unwrap()
            .get_mut(&part)
            .and_then(VecDeque::pop_front)
    }
}

struct FakeBody {
    data: Bytes,
    chunk: usize,
    sent: usize,
    fault: Option<Fault>,
    gate: Option<Arc<Semaphore>>,
}

impl PartBody for FakeBody {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
        if let Some(gate) = self.gate.take() {
            gate.acquire().await.unwrap().forget();
        }
        let limit = match self.fault {
            Some(Fault::Cut(n) | Fault::BreakBody(n) | Fault::Stall(n)) => n.min(self.data.len()),
            _ => self.data.len(),
        };
        if self.sent >= limit {
            return match self.fault {
                Some(Fault::BreakBody(_)) => Err(fake_error(
                    SourceErrorKind::Transient,
                    "connection reset".to_owned(),
                )),
                Some(Fault::Stall(_)) => std::future::pending().await,
                _ => Ok(None),
            };
        }
        let end = (self.sent + self.chunk).min(limit);
        let chunk = self.data.slice(self.sent..end);
        self.sent = end;
        tokio::task::yield_now().await;
        Ok(Some(chunk))
    }
}

impl PartSource for Fake {
    type Body = FakeBody;

    async fn get(&self, start: u64, end: u64) -> Result<RangeResponse<FakeBody>, SourceError> {
        self.gets.lock().unwrap().push((start, end));
        let fault = self.next_fault(start);
        match fault {
            Some(Fault::Fail(kind)) => return Err(fake_error(kind, format!("{kind:?}"))),
            Some(Fault::Hang) => std::future::pending().await,
            _ => {}
        }
        let total = self.data.len() as u64;
        if start >= total {
            return Err(fake_error(SourceErrorKind::InvalidRange, "416".to_owned()));
        }
        let (start, end, partial) = if self.ignore_range {
            (0, total, false)
        } else {
            (start, end.min(total), true)
        };
        let end = match fault {
            Some(Fault::ShortRange) => end - 1,
            _ => end,
        };
        let etag = match fault {
            Some(Fault::OtherEtag) => "\"other\"",
            _ => "\"etag\"",
        };
        Ok(RangeResponse {
            start,
            len: end - start,
            total,
            partial,
            etag: Some(etag.to_owned()),
            body: FakeBody {
                data: self.data.slice(start as usize..end as usize),
                chunk: self.chunk,
                sent: 0,
                gate: matches!(fault, Some(Fault::Gated)).then(|| Arc::clone(&self.gate)),
                fault,
            },
        })
    }

    async fn head(&self) -> Result<ObjectInfo, SourceError> {
        self.heads.fetch_add(1, Ordering::SeqCst);
        if let Some(Fault::Fail(kind)) = self.next_fault(0) {
            return Err(fake_error(kind, format!("{kind:?}")));
        }
        Ok(ObjectInfo {
            size: self.data.len() as u64,
            etag: Some("\"etag\"".to_owned()),
        })
    }
}

fn data(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn config(part_size: u64, window: usize) -> EngineConfig {
    EngineConfig {
        part_size,
        part_concurrency: window,
        part_timeout: Duration::from_millis(300),
        retry: Backoff {
            attempts: 3,
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
        },
        write_behind: true,
    }
}

struct Run {
    result: Result<Transfer, EngineError>,
    file: Vec<u8>,
    bytes_read: u64,
}

async fn run(fake: Arc<Fake>, expected: Option<u64>, config: EngineConfig) -> Run {
    let budget = Arc::new(PartBudget::new(config.part_concurrency));
    run_with(fake, expected, config, budget).await
}

async fn run_with(
    fake: Arc<Fake>,
    expected: Option<u64>,
    config: EngineConfig,
    budget: Arc<PartBudget>,
) -> Run {
    run_into(fake, expected, config, budget, None).await.0
}

/// Downloads into a fresh temp file and `mirror`; returns the run and what the mirror holds.
async fn run_into(
    fake: Arc<Fake>,
    expected: Option<u64>,
    config: EngineConfig,
    budget: Arc<PartBudget>,
    mirror: Option<std::fs::File>,
) -> (Run, Vec<u8>) {
    let file = Arc::new(tempfile::tempfile().unwrap());
    let mirror = mirror.map(Arc::new);
    let bytes_read = Arc::new(AtomicU64::new(0));
    let result = download(
        fake,
        Output {
            file: Arc::clone(&file),
            mirror: mirror.clone(),
        },
        expected,
        config,
        budget,
        Arc::clone(&bytes_read),
    )
    .await;
    let read = |file: &std::fs::File| {
        let mut content = Vec::new();
        let mut reader = file;
        std::io::Seek::rewind(&mut reader).unwrap();
        let _ = std::io::Read::read_to_end(&mut reader, &mut content);
        content
    };
    let run = Run {
        result,
        file: read(&file),
        bytes_read: bytes_read.load(Ordering::SeqCst),
    };
    (run, mirror.as_deref().map(read).unwrap_or_default())
}

fn md5_of(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

#[tokio::test]
async fn parts_land_in_place_and_hash_in_order() {
    let content = data(100_000);
    for (part_size, window, chunk) in [(10_000, 4, 1000), (7_777, 3, 333), (100_000, 2, 4096)] {
        let mut fake = Fake::new(content.clone(), part_size);
        fake.chunk = chunk;
        let fake = Arc::new(fake);
        let run = run(
            Arc::clone(&fake),
            Some(content.len() as u64),
            config(part_size, window),
        )
        .await;
        let transfer = run.result.unwrap();
        assert_eq!(transfer.size, content.len() as u64);
        assert_eq!(transfer.md5, md5_of(&content));
        assert!(run.file == content);
        assert_eq!(run.bytes_read, content.len() as u64);
        assert_eq!(
            fake.gets().len(),
            content.len().div_ceil(part_size as usize)
        );
        assert_eq!(fake.heads.load(Ordering::SeqCst), 0);
    }
}

#[test]
fn hasher_orders_out_of_order_parts() {
    let content = data(3000);
    let (tx, rx) = std::sync::mpsc::channel();
    let (progress, seen) = watch::channel(0);
    let part = |i: usize| Bytes::copy_from_slice(&content[i * 1000..(i + 1) * 1000]);
    // Part 2 complete first, then part 1's halves around part 0.
    tx.send(Hash::Data(2, vec![part(2)])).unwrap();
    tx.send(Hash::Done(2)).unwrap();
    tx.send(Hash::Data(1, vec![part(1).slice(..500)])).unwrap();
    tx.send(Hash::Data(0, vec![part(0)])).unwrap();
    tx.send(Hash::Done(0)).unwrap();
    tx.send(Hash::Data(1, vec![part(1).slice(500..)])).unwrap();
    tx.send(Hash::Done(1)).unwrap();
    assert_eq!(hash_in_order(rx, 3, progress), Some(md5_of(&content)));
    assert_eq!(*seen.borrow(), 3);

    let (tx, rx) = std::sync::mpsc::channel();
    let (progress, _seen) = watch::channel(0);
    tx.send(Hash::Done(0)).unwrap();
    drop(tx);
    assert_eq!(hash_in_order(rx, 2, progress), None, "abandoned transfer");
}

#[tokio::test]
async fn the_window_holds_later_parts_until_the_first_is_hashed() {
    let content = data(80_000);
    // Part 0 waits for the gate; parts 1 and 2 may finish, part 3 must not start.
    let fake = Arc::new(Fake::new(content.clone(), 10_000).fault(0, [Fault::Gated]));
    let task = tokio::spawn(run(
        Arc::clone(&fake),
        Some(80_000),
        EngineConfig {
            part_timeout: Duration::from_secs(30),
            ..config(10_000, 3)
        },
    ));
    while fake.gets().len() < 3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fake.gets(),
        [(0, 10_000), (10_000, 20_000), (20_000, 30_000)]
    );
    fake.gate.add_permits(1);
    let run = task.await.unwrap();
    assert_eq!(run.result.unwrap().md5, md5_of(&content));
    assert!(run.file == content);
    assert_eq!(fake.gets().len(), 8);
}

#[tokio::test]
async fn a_broken_part_resumes_where_it_stopped() {
    let content = data(50_000);
    let fake = Arc::new(
        Fake::new(content.clone(), 10_000)
            .fault(1, [Fault::Cut(2_500)])
            .fault(3, [Fault::BreakBody(4_000), Fault::BreakBody(1_000)]),
    );
    let run = run(Arc::clone(&fake), Some(50_000), config(10_000, 5)).await;
    assert_eq!(run.result.unwrap().md5, md5_of(&content));
    assert!(run.file == content);
    // No byte is fetched twice.
    assert_eq!(run.bytes_read, 50_000);
    let gets = fake.gets();
    assert!(gets.contains(&(12_500, 20_000)), "{gets:?}");
    assert!(gets.contains(&(34_000, 40_000)), "{gets:?}");
    assert!(gets.contains(&(35_000, 40_000)), "{gets:?}");
    assert_eq!(gets.len(), 8);
}

async fn run_mirrored(
    fake: Arc<Fake>,
    mirror: std::fs::File,
    config: EngineConfig,
) -> (Run, Vec<u8>) {
    let budget = Arc::new(PartBudget::new(config.part_concurrency));
    run_into(fake, None, config, budget, Some(mirror)).await
}

#[tokio::test]
async fn the_mirror_gets_every_byte_in_place_also_across_retries() {
    let content = data(50_000);
    let fake = Arc::new(
        Fake::new(content.clone(), 10_000)
            .fault(1, [Fault::Cut(2_500)])
            .fault(3, [Fault::BreakBody(4_000)]),
    );
    let (run, mirror) = run_mirrored(fake, tempfile::tempfile().unwrap(), config(10_000, 5)).await;
    let transfer = run.result.unwrap();
    assert!(transfer.mirrored);
    assert_eq!(transfer.md5, md5_of(&content));
    assert!(run.file == content);
    assert!(mirror == content);
}

#[tokio::test]
async fn a_mirror_that_cannot_be_written_does_not_fail_the_transfer() {
    let content = data(30_000);
    let fake = Arc::new(Fake::new(content.clone(), 10_000));
    // Opened read-only: every write to it fails.
    let path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let read_only = std::fs::File::open(&path).unwrap();
    let (run, mirror) = run_mirrored(fake, read_only, config(10_000, 3)).await;
    let transfer = run.result.unwrap();
    assert!(!transfer.mirrored);
    assert_eq!(transfer.md5, md5_of(&content));
    assert!(run.file == content);
    assert!(mirror.is_empty());
}

#[tokio::test]
async fn hung_requests_and_stalled_bodies_are_retried_after_their_deadline() {
    let content = data(40_000);
    let fake = Arc::new(
        Fake::new(content.clone(), 10_000)
            .fault(0, [Fault::Hang])
            .fault(2, [Fault::Stall(3_000)]),
    );
    let config = EngineConfig {
        part_timeout: Duration::from_millis(100),
        ..config(10_000, 4)
    };
    let run = run(Arc::clone(&fake), Some(40_000), config).await;
    assert_eq!(run.result.unwrap().md5, md5_of(&content));
    assert!(run.file == content);
    let gets = fake.gets();
    assert_eq!(gets.iter().filter(|g| **g == (0, 10_000)).count(), 2);
    assert!(gets.contains(&(23_000, 30_000)), "{gets:?}");
}

#[tokio::test]
async fn retries_run_out() {
    let content = data(20_000);
    let fake = Arc::new(
        Fake::new(content.clone(), 10_000)
            .fault(1, [Fault::Hang, Fault::Hang, Fault::Hang, Fault::Hang]),
    );
    let config = EngineConfig {
        part_timeout: Duration::from_millis(50),
        ..config(10_000, 2)
    };
    match run(Arc::clone(&fake), Some(20_000), config).await.result {
        Err(EngineError::Timeout {
            request,
            attempts,
            per_attempt,
        }) => {
            assert_eq!(request.to_string(), "GET of bytes 10000-19999");
            assert_eq!(attempts, 3);
            assert_eq!(per_attempt, Duration::from_millis(50));
        }
        other => panic!("{other:?}"),
    }

    let fake = Arc::new(Fake::new(content.clone(), 10_000).fault(
        0,
        [
            Fault::Fail(SourceErrorKind::Transient),
            Fault::Fail(SourceErrorKind::Transient),
            Fault::Fail(SourceErrorKind::Transient),
        ],
    ));
    match run(Arc::clone(&fake), Some(20_000), config).await.result {
        Err(EngineError::Source { attempts, .. }) => assert_eq!(attempts, 3),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let content = data(20_000);
    for (kind, not_found) in [
        (SourceErrorKind::NotFound, true),
        (SourceErrorKind::Permanent, false),
    ] {
        let fake = Arc::new(Fake::new(content.clone(), 10_000).fault(0, [Fault::Fail(kind)]));
        let result = run(Arc::clone(&fake), Some(20_000), config(10_000, 1))
            .await
            .result;
        match result {
            Err(EngineError::NotFound) => assert!(not_found),
            Err(EngineError::Source { attempts: 1, .. }) => assert!(!not_found),
            other => panic!("{kind:?}: {other:?}"),
        }
        assert_eq!(fake.gets().len(), 1, "{kind:?}");
    }
}

#[tokio::test]
async fn unknown_size_comes_from_the_first_part() {
    let content = data(25_000);
    let fake = Arc::new(Fake::new(content.clone(), 10_000));
    let run = run(Arc::clone(&fake), None, config(10_000, 3)).await;
    assert_eq!(run.result.unwrap().size, 25_000);
    assert!(run.file == content);
    assert_eq!(
        fake.gets(),
        [(0, 10_000), (10_000, 20_000), (20_000, 25_000)]
    );
    assert_eq!(fake.heads.load(Ordering::SeqCst), 0);

    // Smaller than one part.
    let small = data(10);
    let fake = Arc::new(Fake::new(small.clone(), 10_000));
    let run = super::tests::run(Arc::clone(&fake), None, config(10_000, 3)).await;
    assert_eq!(run.result.unwrap().md5, md5_of(&small));
    assert_eq!(fake.gets(), [(0, 10_000)]);
}

#[tokio::test]
async fn a_server_ignoring_ranges_gives_one_part() {
    let content = data(25_000);
    let mut fake = Fake::new(content.clone(), 10_000);
    fake.ignore_range = true;
    let fake = Arc::new(fake);
    let result = run(Arc::clone(&fake), None, config(10_000, 3)).await;
    assert_eq!(result.result.unwrap().md5, md5_of(&content));
    assert!(result.file == content);
    assert_eq!(fake.gets().len(), 1);

    // With a known size, a whole object where a range was asked for is refused.
    let result = run(Arc::clone(&fake), Some(25_000), config(10_000, 3)).await;
    assert!(
        matches!(result.result, Err(EngineError::Source { .. })),
        "{:?}",
        result.result
    );
}

#[tokio::test]
async fn empty_objects() {
    let empty_md5 = md5_of(b"");
    // Size unknown: the first-part GET is refused (416), a HEAD tells the size.
    let fake = Arc::new(Fake::new(Vec::new(), 10_000));
    let result = run(Arc::clone(&fake), None, config(10_000, 3)).await;
    assert_eq!(
        result.result.unwrap(),
        Transfer {
            size: 0,
            md5: empty_md5.clone(),
            mirrored: false,
        }
    );
    assert_eq!(fake.heads.load(Ordering::SeqCst), 1);

    // Size 0 given: a HEAD proves the object exists and is empty.
    let fake = Arc::new(Fake::new(Vec::new(), 10_000));
    let result = run(Arc::clone(&fake), Some(0), config(10_000, 3)).await;
    assert_eq!(result.result.unwrap().md5, empty_md5);
    assert!(fake.gets().is_empty());

    let fake = Arc::new(Fake::new(data(5), 10_000));
    match run(Arc::clone(&fake), Some(0), config(10_000, 3))
        .await
        .result
    {
        Err(EngineError::SizeMismatch {
            expected: 0,
            actual: 5,
        }) => {}
        other => panic!("{other:?}"),
    }
    let fake =
        Arc::new(Fake::new(Vec::new(), 10_000).fault(0, [Fault::Fail(SourceErrorKind::NotFound)]));
    assert!(matches!(
        run(Arc::clone(&fake), Some(0), config(10_000, 3))
            .await
            .result,
        Err(EngineError::NotFound)
    ));
}

#[tokio::test]
async fn wrong_expected_sizes() {
    let content = data(25_000);
    for expected in [24_999, 30_000, 200_000] {
        let fake = Arc::new(Fake::new(content.clone(), 10_000));
        match run(Arc::clone(&fake), Some(expected), config(10_000, 2))
            .await
            .result
        {
            Err(EngineError::SizeMismatch {
                expected: e,
                actual: 25_000,
            }) => assert_eq!(e, expected),
            other => panic!("{expected}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_part_past_the_end_reveals_a_smaller_object() {
    // Parts 0-2 wait, so the first answer is part 3's 416: a HEAD tells the real size.
    let content = data(25_000);
    let fake = Arc::new(
        Fake::new(content.clone(), 10_000)
            .fault(0, [Fault::Gated])
            .fault(1, [Fault::Gated])
            .fault(2, [Fault::Gated]),
    );
    let config = EngineConfig {
        part_timeout: Duration::from_secs(30),
        ..config(10_000, 4)
    };
    match run(Arc::clone(&fake), Some(40_000), config).await.result {
        Err(EngineError::SizeMismatch {
            expected: 40_000,
            actual: 25_000,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.heads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn responses_are_checked() {
    let content = data(30_000);
    let fake = Arc::new(Fake::new(content.clone(), 10_000).fault(1, [Fault::ShortRange]));
    match run(Arc::clone(&fake), Some(30_000), config(10_000, 3))
        .await
        .result
    {
        Err(EngineError::Source { error, .. }) => {
            assert!(
                error.to_string().contains("asked for bytes 10000-19999"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }

    let fake = Arc::new(Fake::new(content.clone(), 10_000).fault(2, [Fault::OtherEtag]));
    match run(Arc::clone(&fake), Some(30_000), config(10_000, 1))
        .await
        .result
    {
        Err(EngineError::Changed(change)) => {
            assert!(change.to_string().contains("ETag"), "{change}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn downloads_share_the_part_budget() {
    let (one, two) = (data(40_000), data(30_000));
    let first = Arc::new(Fake::new(one.clone(), 10_000).fault(0, [Fault::Gated]));
    let second = Arc::new(Fake::new(two.clone(), 10_000));
    let budget = Arc::new(PartBudget::new(2));
    let slow = EngineConfig {
        part_timeout: Duration::from_secs(30),
        ..config(10_000, 2)
    };
    let a = tokio::spawn(run_with(
        Arc::clone(&first),
        Some(40_000),
        slow,
        Arc::clone(&budget),
    ));
    while first.gets().len() < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The first download holds the whole budget while its part 0 waits; the second waits
    // too, without a single request (its size unknown, even the probe waits).
    let b = tokio::spawn(run_with(
        Arc::clone(&second),
        None,
        slow,
        Arc::clone(&budget),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(second.gets().is_empty());
    assert_eq!(first.gets().len(), 2);
    first.gate.add_permits(1);
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a.result.unwrap().md5, md5_of(&one));
    assert_eq!(b.result.unwrap().md5, md5_of(&two));
    assert!(a.file == one && b.file == two);
    assert_eq!(budget.available(), 2);
}

#[test]
fn part_buffers_are_reused_once_their_bytes_are_dropped() {
    let budget = PartBudget::new(2);
    let mut first = budget.buffer(1000);
    first.extend_from_slice(&[1; 600]);
    let held = first.split().freeze();
    let address = held.as_ptr();
    budget.give_back(first);
    // Its bytes are still waiting to be hashed: another buffer is made.
    let second = budget.buffer(1000);
    assert_ne!(second.as_ptr(), address);
    budget.give_back(second);
    drop(held);
    let reused = budget.buffer(1000);
    assert_eq!(reused.as_ptr(), address);
    assert!(reused.is_empty() && reused.capacity() >= 1000);
    budget.give_back(reused);
    // No more spares than parts, and none once nothing is in flight.
    budget.give_back(BytesMut::with_capacity(10));
    assert_eq!(budget.spare().len(), 2);
    budget.trim_if_idle();
    assert!(budget.spare().is_empty());
}

#[test]
fn a_batch_copies_chunks_into_part_buffers_in_order() {
    let budget = PartBudget::new(2);
    let content = data(3000);
    let mut batch = Batch::new(500, &budget, 1000);
    // 1200 bytes: one buffer filled, a second begun.
    batch.push(&content[..700]);
    batch.push(&content[700..1200]);
    let (at, chunks) = batch.take();
    assert_eq!(at, 500);
    assert_eq!(
        chunks.iter().map(Bytes::len).collect::<Vec<_>>(),
        [1000, 200]
    );
    assert_eq!(chunks.concat(), content[..1200]);
    // The full buffer went back; while its bytes live it cannot be handed out again.
    assert_eq!(budget.spare().len(), 1);
    batch.push(&content[1200..3000]);
    let (at, later) = batch.take();
    assert_eq!(at, 1700);
    assert_eq!(later.concat(), content[1200..]);
    drop(chunks);
    drop(later);
    drop(batch);
    // Nothing refers to them any more: both can be reused.
    let spare = budget.spare().len();
    assert_eq!(spare, 2);
    let (a, b) = (budget.buffer(1000), budget.buffer(1000));
    assert!(budget.spare().is_empty());
    assert!(a.capacity() >= 1000 && b.capacity() >= 1000);
}

#[tokio::test]
async fn parts_waiting_for_the_hasher_keep_their_bytes_in_reused_buffers() {
    let content = data(200_000);
    // Part 0 arrives last, so every other part waits for it.
    let fake = Arc::new(Fake::new(content.clone(), 10_000).fault(0, [Fault::Gated]));
    let budget = Arc::new(PartBudget::new(4));
    let run = tokio::spawn(run_with(
        Arc::clone(&fake),
        Some(content.len() as u64),
        config(10_000, 4),
        Arc::clone(&budget),
    ));
    while fake.gets().len() < 4 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    fake.gate.add_permits(1);
    let run = run.await.unwrap();
    assert_eq!(run.result.unwrap().md5, md5_of(&content));
    assert!(run.file == content);
    assert_eq!(budget.available(), 4);
    assert!(budget.spare().is_empty(), "trimmed once idle");
}
