//! One file's upload, driven by its ledger row: choose the key once, send it (single PUT or
//! multipart, resuming acknowledged parts), check what S3 holds (size and ETag), and only then
//! delete the local file.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use md5::{Digest, Md5};
use singularity_runtime::StaticCredentials;

use crate::Clock;
use crate::clients::{RequestError, S3ClientFactory, Target, call, deadline_for};
use crate::error::{ErrorKind, Mismatch, UploadError};
use crate::ledger::{FileRecord, FileState, Ledger, PartRecord};
use crate::metadata::{UploaderId, UploaderSpec};
use crate::metrics::Metrics;
use crate::plan::{self, Encryption, ObjectOptions, PutAnswer};
use crate::scan::SkipReason;
use crate::settings::Settings;

/// Files up to this size are read into memory and sent with their Content-MD5; larger ones
/// stream from disk while their MD5 is computed alongside. Small enough that every worker
/// holding one stays within the memory budget.
const IN_MEMORY_MAX: u64 = 1024 * 1024;
/// Read size of bodies streamed from disk (the SDK's default, 4 KiB, costs a frame per 4 KiB).
const READ_BUFFER: usize = 256 * 1024;

/// What an uploader's files are sent with.
#[derive(Debug)]
pub struct UploadTarget {
    /// The uploader.
    pub id: UploaderId,
    /// Its metadata.
    pub spec: Arc<UploaderSpec>,
    /// Its keys (`None`: the AWS default chain).
    pub credentials: Option<StaticCredentials>,
}

/// One file to upload.
#[derive(Debug, Clone)]
pub struct FileJob {
    /// The uploader it belongs to.
    pub target: Arc<UploadTarget>,
    /// The file.
    pub path: PathBuf,
    /// Its position in the pass that found it (the `%index` token).
    pub index: usize,
}

/// How a job ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// S3 confirmed the object and the local file was deleted.
    Done {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Bytes.
        size: u64,
    },
    /// The file is gone (deleted by someone else, or rotated away).
    Vanished,
    /// The file changed while it was being uploaded: it starts over on its next pass.
    Changed,
    /// Not uploadable now.
    Skipped(SkipReason),
}

/// What the workers share.
pub struct UploadContext {
    /// Settings.
    pub settings: Arc<Settings>,
    /// The ledger.
    pub ledger: Ledger,
    /// S3 clients.
    pub clients: Arc<dyn S3ClientFactory>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Once triggered, no new part is started.
    pub shutdown: singularity_runtime::Shutdown,
}

impl std::fmt::Debug for UploadContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadContext").finish_non_exhaustive()
    }
}

fn local(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> UploadError {
    let path = path.to_owned();
    move |source| UploadError::Local { what, path, source }
}

fn mtime_millis(meta: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt as _;
    meta.mtime()
        .saturating_mul(1000)
        .saturating_add(meta.mtime_nsec() / 1_000_000)
}

/// Opens `path` for reading only if it is a regular file, without following a symlink in
/// its last component and without blocking: a file swapped for a FIFO or a device after the
/// scan is refused instead of wedging the reader.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc_flags())
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// `O_NOFOLLOW | O_NONBLOCK` (non-blocking only matters for FIFOs, refused right after).
fn libc_flags() -> i32 {
    i32::try_from((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits()).unwrap_or(0)
}

/// The MD5 of `len` bytes of `path` from `offset`; fails if the file is shorter.
pub fn md5_range(path: &Path, offset: u64, len: u64) -> std::io::Result<[u8; 16]> {
    let mut file = open_regular(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file is shorter than when it was recorded",
            ));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hasher.finalize().into())
}

async fn md5_range_async(path: &Path, offset: u64, len: u64) -> Result<[u8; 16], UploadError> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || md5_range(&owned, offset, len))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(local("read", path))
}

fn xattr_text(path: &Path, name: &str) -> Option<String> {
    match xattr::get(path, name) {
        Ok(Some(value)) => Some(String::from_utf8_lossy(&value).trim().to_owned()),
        _ => None,
    }
}

impl UploadContext {
    fn now(&self) -> i64 {
        self.clock.now_millis()
    }

    fn timeout(&self) -> Duration {
        self.settings.request_timeout
    }

    /// Takes a file as far as it can go now: recorded, uploaded, confirmed, deleted.
    pub async fn process(&self, job: &FileJob) -> Result<Outcome, UploadError> {
        let path = &job.path;
        // Metadata calls, unlinks and reads of at most IN_MEMORY_MAX bytes are done in place:
        // they cost less than handing them to a blocking thread and back.
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.vanished(job).await?;
                return Ok(Outcome::Vanished);
            }
            Err(e) => return Err(local("stat", path)(e)),
        };
        if !meta.is_file() || !inside(&job.target.spec.metadata.directory, path) {
            return Ok(Outcome::Skipped(SkipReason::OutsideDirectory));
        }
        let size = meta.len();
        let mtime_ms = mtime_millis(&meta);
        if size == 0 {
            return Ok(Outcome::Skipped(SkipReason::Empty));
        }
        let client = self.clients.client(job.target.credentials.as_ref()).await;
        let key = self.key_for(job, mtime_ms);
        let bucket = &job.target.spec.metadata.s3_bucket;
        let taken = self
            .ledger
            .live_or_insert_pending(path, size, mtime_ms, bucket, &key, self.now())
            .await?;
        let mut row = match taken {
            (row, true) => row,
            (row, false) if row.size != size || row.mtime_ms != mtime_ms => {
                tracing::info!(
                    path = %path.display(),
                    recorded_size = row.size,
                    size,
                    "the file changed since it was recorded: starting its upload over"
                );
                self.restart(&client, job, row, size, mtime_ms).await?
            }
            (row, false) => row,
        };
        // Set when this run's PutObject answer itself confirmed the object.
        let mut confirmed_by_put = false;
        // Set once this run created a multipart upload: if S3 refuses that one too, the error
        // goes to the driver's backoff instead of starting over again at once.
        let mut created_here = false;
        loop {
            match row.state {
                FileState::Pending => {
                    if size > self.settings.max_single_upload_size {
                        self.start_multipart(&client, job, &mut row).await?;
                        created_here = true;
                    } else {
                        confirmed_by_put = self.single_put(&client, job, &mut row).await?;
                    }
                }
                FileState::Uploading => {
                    self.resume_multipart(&client, job, &mut row, created_here)
                        .await?;
                }
                FileState::Uploaded if confirmed_by_put => {
                    return self.delete_local(&client, job, &row).await;
                }
                FileState::Uploaded => return self.confirm_and_delete(&client, job, &row).await,
                FileState::Deleted | FileState::Abandoned => return Ok(Outcome::Vanished),
            }
        }
    }

    fn key_for(&self, job: &FileJob, mtime_ms: i64) -> String {
        let filename = job
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        plan::object_key(
            &job.target.spec.metadata.s3_key_format,
            &filename,
            mtime_ms,
            &self.settings.hostname,
            job.index,
        )
    }

    /// The file is gone: a confirmed upload is complete; anything else is given up, and a
    /// multipart upload it left behind is aborted.
    async fn vanished(&self, job: &FileJob) -> Result<(), UploadError> {
        let Some(row) = self.ledger.live(&job.path).await? else {
            return Ok(());
        };
        let client = self.clients.client(job.target.credentials.as_ref()).await;
        settle_vanished(self, &client, &row).await
    }

    async fn restart(
        &self,
        client: &Client,
        job: &FileJob,
        row: FileRecord,
        size: u64,
        mtime_ms: i64,
    ) -> Result<FileRecord, UploadError> {
        if let Some(upload_id) = &row.upload_id {
            abort_multipart(self, client, &row.bucket, &row.key, upload_id).await;
        }
        let key = self.key_for(job, mtime_ms);
        let bucket = job.target.spec.metadata.s3_bucket.clone();
        self.ledger
            .restart(row.id, size, mtime_ms, &bucket, &key, self.now())
            .await?;
        Ok(FileRecord {
            size,
            mtime_ms,
            bucket,
            key,
            state: FileState::Pending,
            upload_id: None,
            part_size: None,
            etag: None,
            ..row
        })
    }

    fn options(&self, job: &FileJob, size: u64) -> ObjectOptions {
        ObjectOptions::for_file(
            &job.target.spec.metadata,
            &self.settings.content_headers,
            &job.path,
            size,
            xattr_text(&job.path, plan::LOG_START_XATTR),
            xattr_text(&job.path, plan::LOG_END_XATTR),
        )
    }

    /// Sends the file in one PutObject and records S3's ETag. Returns whether S3's answer
    /// confirmed the object (see [`plan::PutAnswer`]); if not, a HeadObject must.
    async fn single_put(
        &self,
        client: &Client,
        job: &FileJob,
        row: &mut FileRecord,
    ) -> Result<bool, UploadError> {
        let options = self.options(job, row.size);
        let target = Target {
            op: "PutObject",
            bucket: &row.bucket,
            key: &row.key,
        };
        let deadline = deadline_for(self.timeout(), row.size);
        let retry = self.settings.request_retry;
        let path = job.path.clone();
        let size = row.size;
        let (etag, md5) = if size <= IN_MEMORY_MAX {
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            open_regular(&path)
                .and_then(|mut file| file.read_to_end(&mut bytes))
                .map_err(local("read", &path))?;
            if bytes.len() as u64 != size {
                return self.changed_during_upload(client, job, row).await;
            }
            let md5: [u8; 16] = Md5::digest(&bytes).into();
            let content_md5 = base64::engine::general_purpose::STANDARD.encode(md5);
            let body = bytes::Bytes::from(bytes);
            let response = call(target, deadline, retry, || {
                let request = plan::apply_put(client.put_object(), &options)
                    .bucket(&row.bucket)
                    .key(&row.key)
                    .content_length(i64::try_from(size).unwrap_or(i64::MAX))
                    .content_md5(&content_md5)
                    .body(ByteStream::from(body.clone()))
                    // The signed Content-MD5 already binds the body to the request, and S3
                    // refuses a body that does not match it: a SHA-256 of the same bytes on
                    // both ends would add only CPU.
                    .customize()
                    .disable_payload_signing();
                async move { request.send().await.map_err(RequestError::from) }
            })
            .await?;
            (response.e_tag, md5)
        } else {
            let mut hashing = tokio::task::spawn_blocking({
                let path = path.clone();
                move || md5_range(&path, 0, size)
            });
            // With SSE-KMS the ETag is no MD5, so the body's MD5 must go with the request.
            let mut content_md5 = None;
            if !options.encryption.etag_is_md5() {
                let md5 = match (&mut hashing).await {
                    Ok(Ok(md5)) => md5,
                    Ok(Err(e)) => return Err(local("read", &path)(e)),
                    Err(e) => {
                        return Err(local("read", &path)(std::io::Error::other(e.to_string())));
                    }
                };
                content_md5 = Some(base64::engine::general_purpose::STANDARD.encode(md5));
                hashing = tokio::task::spawn_blocking(move || Ok(md5));
            }
            let response = call(target, deadline, retry, || {
                let request = plan::apply_put(client.put_object(), &options)
                    .bucket(&row.bucket)
                    .key(&row.key)
                    .content_length(i64::try_from(size).unwrap_or(i64::MAX))
                    .set_content_md5(content_md5.clone());
                let path = path.clone();
                async move {
                    let body = ByteStream::read_from()
                        .path(&path)
                        .length(Length::Exact(size))
                        .buffer_size(READ_BUFFER)
                        .build()
                        .await
                        .map_err(|e| {
                            RequestError::Local(UploadError::Local {
                                what: "open",
                                path: path.clone(),
                                source: std::io::Error::other(e.to_string()),
                            })
                        })?;
                    request.body(body).send().await.map_err(RequestError::from)
                }
            })
            .await?;
            let md5 = match hashing.await {
                Ok(Ok(md5)) => md5,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return self.changed_during_upload(client, job, row).await;
                }
                Ok(Err(e)) => return Err(local("read", &path)(e)),
                Err(e) => return Err(local("read", &path)(std::io::Error::other(e.to_string()))),
            };
            (response.e_tag, md5)
        };
        let etag_is_md5 = options.encryption.etag_is_md5();
        let (etag, confirmed) = match plan::check_put_answer(etag.as_deref(), &md5, etag_is_md5) {
            PutAnswer::Confirmed { etag } => (etag, true),
            PutAnswer::Unconfirmed { etag } => (etag, false),
            // The bytes read for the MD5 are not the bytes S3 received: the file changed.
            PutAnswer::Mismatch { .. } => {
                return self.changed_during_upload(client, job, row).await;
            }
            PutAnswer::Missing => {
                return Err(self.verify_error(job, row, Mismatch::PutWithoutEtag));
            }
        };
        self.ledger.mark_uploaded(row.id, &etag, self.now()).await?;
        self.metrics.uploaded(row.size);
        row.state = FileState::Uploaded;
        row.etag = Some(etag);
        Ok(confirmed)
    }

    async fn changed_during_upload<T>(
        &self,
        client: &Client,
        job: &FileJob,
        row: &mut FileRecord,
    ) -> Result<T, UploadError> {
        let meta = std::fs::symlink_metadata(&job.path).map_err(local("stat", &job.path))?;
        *row = self
            .restart(client, job, row.clone(), meta.len(), mtime_millis(&meta))
            .await?;
        Err(self.verify_error(job, row, Mismatch::ChangedDuringUpload))
    }

    fn verify_error(&self, job: &FileJob, row: &FileRecord, reason: Mismatch) -> UploadError {
        UploadError::Verify {
            path: job.path.clone(),
            bucket: row.bucket.clone(),
            key: row.key.clone(),
            reason,
        }
    }

    async fn start_multipart(
        &self,
        client: &Client,
        job: &FileJob,
        row: &mut FileRecord,
    ) -> Result<(), UploadError> {
        let options = self.options(job, row.size);
        let target = Target {
            op: "CreateMultipartUpload",
            bucket: &row.bucket,
            key: &row.key,
        };
        let response = call(target, self.timeout(), self.settings.request_retry, || {
            let request = plan::apply_create_multipart(client.create_multipart_upload(), &options)
                .bucket(&row.bucket)
                .key(&row.key);
            async move { request.send().await.map_err(RequestError::from) }
        })
        .await?;
        let Some(upload_id) = response.upload_id else {
            return Err(self.verify_error(job, row, Mismatch::NoUploadId));
        };
        let part_size = plan::effective_part_size(row.size, self.settings.part_size);
        self.ledger
            .start_multipart(row.id, &upload_id, part_size, self.now())
            .await?;
        row.state = FileState::Uploading;
        row.upload_id = Some(upload_id);
        row.part_size = Some(part_size);
        Ok(())
    }

    /// Sends the parts S3 does not have yet and completes the upload. Parts the ledger
    /// recorded and S3 still lists are not sent again; parts S3 lists that the ledger missed
    /// (a crash between S3's answer and the ledger write) are kept when their ETag is the MD5
    /// of the local bytes. An upload id S3 refuses (see [`upload_refused`]) is never tried
    /// again: the object is checked, else the file starts over from part 1.
    async fn resume_multipart(
        &self,
        client: &Client,
        job: &FileJob,
        row: &mut FileRecord,
        created_here: bool,
    ) -> Result<(), UploadError> {
        let (Some(upload_id), Some(part_size)) = (row.upload_id.clone(), row.part_size) else {
            *row = self
                .restart(client, job, row.clone(), row.size, row.mtime_ms)
                .await?;
            return Ok(());
        };
        let plan = plan::parts(row.size, part_size);
        let recorded: BTreeMap<i32, PartRecord> = self
            .ledger
            .parts(row.id)
            .await?
            .into_iter()
            .map(|p| (p.number, p))
            .collect();
        let gone = |cause| Gone {
            cause,
            upload_id: upload_id.clone(),
            created_here,
        };
        let listed = match list_parts(self, client, row, &upload_id).await {
            Ok(listed) => listed,
            Err(e) if upload_refused(&e) => {
                return self
                    .upload_gone(client, job, row, &plan, &recorded, gone(e))
                    .await;
            }
            Err(e) => return Err(e),
        };
        let mut done: BTreeMap<i32, PartRecord> = BTreeMap::new();
        for part in &plan {
            let on_s3 = listed.get(&part.number);
            match (on_s3, recorded.get(&part.number)) {
                // Some servers list parts without their ETag: the size must then do.
                (Some((etag, size)), Some(rec))
                    if *size == part.len
                        && etag.as_deref().is_none_or(|e| plan::etag_eq(e, &rec.etag)) =>
                {
                    done.insert(part.number, rec.clone());
                }
                (Some((Some(etag), size)), _) if *size == part.len => {
                    let md5 = md5_range_async(&job.path, part.offset, part.len).await?;
                    if plan::etag_eq(etag, &hex::encode(md5)) {
                        let rec = PartRecord {
                            number: part.number,
                            size: part.len,
                            etag: plan::bare_etag(etag),
                            md5,
                        };
                        self.ledger.record_part(row.id, &rec).await?;
                        done.insert(part.number, rec);
                    }
                }
                (None, Some(_)) => self.ledger.forget_part(row.id, part.number).await?,
                _ => {}
            }
        }
        let missing: Vec<plan::PartPlan> = plan
            .iter()
            .filter(|p| !done.contains_key(&p.number))
            .copied()
            .collect();
        if !done.is_empty() {
            tracing::info!(
                path = %job.path.display(),
                key = %row.key,
                parts_kept = done.len(),
                parts_left = missing.len(),
                "resuming a multipart upload"
            );
        }
        let sent = match self.send_parts(client, job, row, &upload_id, missing).await {
            Ok(sent) => sent,
            Err(e) if upload_refused(&e) => {
                return self
                    .upload_gone(client, job, row, &plan, &recorded, gone(e))
                    .await;
            }
            Err(e) => return Err(e),
        };
        done.extend(sent.into_iter().map(|p| (p.number, p)));
        match self.complete(client, job, row, &upload_id, &done).await {
            Err(e) if upload_refused(&e) => {
                self.upload_gone(client, job, row, &plan, &done, gone(e))
                    .await
            }
            other => other,
        }
    }

    async fn send_parts(
        &self,
        client: &Client,
        job: &FileJob,
        row: &FileRecord,
        upload_id: &str,
        parts: Vec<plan::PartPlan>,
    ) -> Result<Vec<PartRecord>, UploadError> {
        let mut queue = parts.into_iter();
        let mut running = tokio::task::JoinSet::new();
        let mut sent = Vec::new();
        let mut first_error = None;
        let concurrency = self.settings.part_concurrency;
        loop {
            while first_error.is_none()
                && !self.shutdown.is_triggered()
                && running.len() < concurrency
            {
                let Some(part) = queue.next() else { break };
                let send = PartSender {
                    client: client.clone(),
                    ledger: self.ledger.clone(),
                    path: job.path.clone(),
                    row_id: row.id,
                    bucket: row.bucket.clone(),
                    key: row.key.clone(),
                    upload_id: upload_id.to_owned(),
                    timeout: self.timeout(),
                    retry: self.settings.request_retry,
                };
                running.spawn(async move { send.send(part).await });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            match joined {
                Ok(Ok(part)) => sent.push(part),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(UploadError::Local {
                        what: "send a part of",
                        path: job.path.clone(),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None if queue.next().is_some() => Err(UploadError::Interrupted {
                path: job.path.clone(),
            }),
            None => Ok(sent),
        }
    }

    async fn complete(
        &self,
        client: &Client,
        job: &FileJob,
        row: &mut FileRecord,
        upload_id: &str,
        parts: &BTreeMap<i32, PartRecord>,
    ) -> Result<(), UploadError> {
        let completed: Vec<CompletedPart> = parts
            .values()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number)
                    .e_tag(format!("\"{}\"", p.etag))
                    .build()
            })
            .collect();
        let md5s: Vec<[u8; 16]> = parts.values().map(|p| p.md5).collect();
        let expected = plan::multipart_etag(&md5s);
        let target = Target {
            op: "CompleteMultipartUpload",
            bucket: &row.bucket,
            key: &row.key,
        };
        let body = CompletedMultipartUpload::builder()
            .set_parts(Some(completed))
            .build();
        let result = call(target, self.timeout(), self.settings.request_retry, || {
            let request = client
                .complete_multipart_upload()
                .bucket(&row.bucket)
                .key(&row.key)
                .upload_id(upload_id)
                .multipart_upload(body.clone());
            async move { request.send().await.map_err(RequestError::from) }
        })
        .await;
        let etag = result?.e_tag.map(|e| plan::bare_etag(&e));
        let encryption = Encryption::of(&job.target.spec.metadata);
        let etag = match etag {
            Some(etag) => etag,
            None if encryption.etag_is_md5() => expected.clone(),
            None => {
                return Err(self.verify_error(job, row, Mismatch::CompleteWithoutEtag));
            }
        };
        if encryption.etag_is_md5() && !plan::etag_eq(&etag, &expected) {
            let reason = Mismatch::CompletedEtag {
                answered: etag,
                expected: expected.clone(),
            };
            *row = self
                .restart(client, job, row.clone(), row.size, row.mtime_ms)
                .await?;
            return Err(self.verify_error(job, row, reason));
        }
        self.ledger.mark_uploaded(row.id, &etag, self.now()).await?;
        self.metrics.uploaded(row.size);
        row.state = FileState::Uploaded;
        row.etag = Some(etag);
        row.upload_id = None;
        Ok(())
    }

    /// S3 refused the stored multipart upload: it no longer knows it. If a crash came between
    /// S3 completing it and the ledger recording that, the object is there with the expected
    /// size and ETag: take it. Otherwise abort it (best effort: a completion cut short may
    /// have left parts behind) and start over from part 1, at once unless the refused upload
    /// was created by this very run.
    async fn upload_gone(
        &self,
        client: &Client,
        job: &FileJob,
        row: &mut FileRecord,
        plan: &[plan::PartPlan],
        recorded: &BTreeMap<i32, PartRecord>,
        gone: Gone,
    ) -> Result<(), UploadError> {
        let all_recorded = plan.iter().all(|p| recorded.contains_key(&p.number));
        if all_recorded && Encryption::of(&job.target.spec.metadata).etag_is_md5() {
            let md5s: Vec<[u8; 16]> = recorded.values().map(|p| p.md5).collect();
            let expected = plan::multipart_etag(&md5s);
            if let Ok(Some((size, etag))) = head(self, client, &row.bucket, &row.key).await
                && size == row.size
                && plan::etag_eq(&etag, &expected)
            {
                tracing::info!(key = %row.key, "S3 completed this upload before the last stop");
                self.ledger.mark_uploaded(row.id, &etag, self.now()).await?;
                self.metrics.uploaded(row.size);
                row.state = FileState::Uploaded;
                row.etag = Some(plan::bare_etag(&etag));
                row.upload_id = None;
                return Ok(());
            }
        }
        tracing::info!(
            path = %job.path.display(),
            key = %row.key,
            cause = %gone.cause,
            "S3 refused the stored multipart upload: starting it over from part 1"
        );
        abort_multipart(self, client, &row.bucket, &row.key, &gone.upload_id).await;
        self.ledger
            .restart(
                row.id,
                row.size,
                row.mtime_ms,
                &row.bucket,
                &row.key,
                self.now(),
            )
            .await?;
        row.state = FileState::Pending;
        row.upload_id = None;
        row.part_size = None;
        if gone.created_here {
            return Err(gone.cause);
        }
        Ok(())
    }

    /// Deletes the local file once HeadObject shows an object of its size with the recorded
    /// ETag and the file is unchanged since it was recorded.
    async fn confirm_and_delete(
        &self,
        client: &Client,
        job: &FileJob,
        row: &FileRecord,
    ) -> Result<Outcome, UploadError> {
        let Some(recorded_etag) = row.etag.clone() else {
            let mut row = row.clone();
            row = self
                .restart(client, job, row.clone(), row.size, row.mtime_ms)
                .await?;
            return Err(self.verify_error(job, &row, Mismatch::NoRecordedEtag));
        };
        let on_s3 = head(self, client, &row.bucket, &row.key).await?;
        let mismatch = match &on_s3 {
            None => Some(Mismatch::NoObject),
            Some((size, _)) if *size != row.size => Some(Mismatch::Size {
                on_s3: *size,
                local: row.size,
            }),
            Some((_, etag)) if !plan::etag_eq(etag, &recorded_etag) => Some(Mismatch::Etag {
                on_s3: etag.clone(),
                recorded: recorded_etag.clone(),
            }),
            Some(_) => None,
        };
        if let Some(reason) = mismatch {
            self.restart(client, job, row.clone(), row.size, row.mtime_ms)
                .await?;
            return Err(self.verify_error(job, row, reason));
        }
        self.delete_local(client, job, row).await
    }

    /// Deletes the local file of an object S3 has confirmed, unless the file changed since it
    /// was recorded (then it is uploaded again); then records the deletion. The order matters:
    /// `deleted` is written only once the file is gone.
    async fn delete_local(
        &self,
        client: &Client,
        job: &FileJob,
        row: &FileRecord,
    ) -> Result<Outcome, UploadError> {
        match std::fs::symlink_metadata(&job.path) {
            Ok(meta) if meta.len() == row.size && mtime_millis(&meta) == row.mtime_ms => {}
            Ok(meta) => {
                tracing::info!(
                    path = %job.path.display(),
                    key = %row.key,
                    "the file changed after its upload: uploading it again instead of deleting it"
                );
                self.restart(client, job, row.clone(), meta.len(), mtime_millis(&meta))
                    .await?;
                return Ok(Outcome::Changed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(local("stat", &job.path)(e)),
        }
        // A directory on the way swapped for a symlink since the scan: the path now names a
        // file elsewhere, which is not this upload's to delete.
        if !inside(&job.target.spec.metadata.directory, &job.path) {
            tracing::warn!(
                path = %job.path.display(),
                "the file's directory now leads outside the uploader's directory: not deleting it"
            );
            return Ok(Outcome::Skipped(SkipReason::OutsideDirectory));
        }
        match std::fs::remove_file(&job.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(local("delete", &job.path)(e)),
        }
        self.ledger
            .finish(row.id, FileState::Deleted, None, self.now())
            .await?;
        tracing::info!(
            path = %job.path.display(),
            bucket = %row.bucket,
            key = %row.key,
            size = row.size,
            "uploaded and deleted"
        );
        Ok(Outcome::Done {
            bucket: row.bucket.clone(),
            key: row.key.clone(),
            size: row.size,
        })
    }
}

/// Whether `path` (whose last component is not followed) really lies below `directory`
/// once every symlink on the way is resolved. A vanished parent counts as inside: the caller
/// then finds the file gone.
fn inside(directory: &Path, path: &Path) -> bool {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return false;
    };
    let Ok(root) = std::fs::canonicalize(directory) else {
        return true;
    };
    match std::fs::canonicalize(parent) {
        Ok(parent) => parent.join(name).starts_with(&root),
        Err(_) => true,
    }
}

/// A multipart upload S3 refused, and why.
struct Gone {
    /// S3's refusal.
    cause: UploadError,
    /// The refused upload id.
    upload_id: String,
    /// Whether this run created that upload.
    created_here: bool,
}

/// Whether S3's answer to a request on a stored upload id means that upload cannot go on.
/// Real S3 says NoSuchUpload; other servers answer AccessDenied for an upload id they have
/// forgotten, and InvalidPart or another 4xx when a completion cut short consumed some
/// parts. Retrying the same id can never help, so any refusal counts.
fn upload_refused(error: &UploadError) -> bool {
    error.code() == Some("NoSuchUpload") || error.kind() == ErrorKind::S3Client
}

/// Size and ETag of an object; `None` if there is no such object.
async fn head(
    ctx: &UploadContext,
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<Option<(u64, String)>, UploadError> {
    let target = Target {
        op: "HeadObject",
        bucket,
        key,
    };
    let result = call(target, ctx.timeout(), ctx.settings.request_retry, || {
        let request = client.head_object().bucket(bucket).key(key);
        async move { request.send().await.map_err(RequestError::from) }
    })
    .await;
    match result {
        Ok(response) => Ok(Some((
            u64::try_from(response.content_length.unwrap_or(-1)).unwrap_or(u64::MAX),
            response
                .e_tag
                .map(|e| plan::bare_etag(&e))
                .unwrap_or_default(),
        ))),
        Err(e) if matches!(e.code(), Some("NotFound" | "NoSuchKey")) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every part S3 lists for an upload: number → (ETag, size). s3s-fs lists them unsorted and
/// without ETags; the map sorts them.
async fn list_parts(
    ctx: &UploadContext,
    client: &Client,
    row: &FileRecord,
    upload_id: &str,
) -> Result<BTreeMap<i32, (Option<String>, u64)>, UploadError> {
    let mut parts = BTreeMap::new();
    let mut marker: Option<String> = None;
    loop {
        let target = Target {
            op: "ListParts",
            bucket: &row.bucket,
            key: &row.key,
        };
        let page = call(target, ctx.timeout(), ctx.settings.request_retry, || {
            let request = client
                .list_parts()
                .bucket(&row.bucket)
                .key(&row.key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone());
            async move { request.send().await.map_err(RequestError::from) }
        })
        .await?;
        for part in page.parts() {
            if let Some(number) = part.part_number {
                let size = u64::try_from(part.size.unwrap_or(-1)).unwrap_or(u64::MAX);
                parts.insert(number, (part.e_tag.as_deref().map(plan::bare_etag), size));
            }
        }
        let next = page.next_part_number_marker.clone();
        if page.is_truncated != Some(true) || next.is_none() || next == marker {
            return Ok(parts);
        }
        marker = next;
    }
}

/// Aborts a multipart upload that will never be completed; failures are only logged (S3
/// lifecycle rules clean up what is left).
pub async fn abort_multipart(
    ctx: &UploadContext,
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) {
    let target = Target {
        op: "AbortMultipartUpload",
        bucket,
        key,
    };
    let result = call(target, ctx.timeout(), ctx.settings.request_retry, || {
        let request = client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id);
        async move { request.send().await.map_err(RequestError::from) }
    })
    .await;
    match result {
        Ok(_) => tracing::info!(bucket, key, "aborted an orphaned multipart upload"),
        Err(e) if e.code() == Some("NoSuchUpload") => {}
        Err(error) => {
            ctx.metrics.error(error.kind());
            tracing::warn!(%error, "cannot abort an orphaned multipart upload");
        }
    }
}

/// Ends the row of a file that no longer exists: an uploaded one is complete (S3 has it); any
/// other is abandoned, aborting its multipart upload.
pub async fn settle_vanished(
    ctx: &UploadContext,
    client: &Client,
    row: &FileRecord,
) -> Result<(), UploadError> {
    match row.state {
        FileState::Uploaded => {
            ctx.ledger
                .finish(row.id, FileState::Deleted, None, ctx.now())
                .await?;
        }
        _ => {
            if let Some(upload_id) = &row.upload_id {
                abort_multipart(ctx, client, &row.bucket, &row.key, upload_id).await;
            }
            tracing::info!(
                path = %row.path.display(),
                "the file vanished before it was uploaded"
            );
            ctx.ledger
                .finish(
                    row.id,
                    FileState::Abandoned,
                    Some("the file vanished before it was uploaded"),
                    ctx.now(),
                )
                .await?;
        }
    }
    Ok(())
}

/// Sends one part: MD5 of the local range, UploadPart streaming that range with its
/// Content-MD5, then the ledger records S3's ETag.
struct PartSender {
    client: Client,
    ledger: Ledger,
    path: PathBuf,
    row_id: i64,
    bucket: String,
    key: String,
    upload_id: String,
    timeout: Duration,
    retry: singularity_runtime::Backoff,
}

impl PartSender {
    async fn send(self, part: plan::PartPlan) -> Result<PartRecord, UploadError> {
        let md5 = md5_range_async(&self.path, part.offset, part.len).await?;
        let content_md5 = base64::engine::general_purpose::STANDARD.encode(md5);
        let target = Target {
            op: "UploadPart",
            bucket: &self.bucket,
            key: &self.key,
        };
        let response = call(
            target,
            deadline_for(self.timeout, part.len),
            self.retry,
            || {
                let request = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .upload_id(&self.upload_id)
                    .part_number(part.number)
                    .content_length(i64::try_from(part.len).unwrap_or(i64::MAX))
                    .content_md5(&content_md5);
                let path = self.path.clone();
                async move {
                    let body = ByteStream::read_from()
                        .path(&path)
                        .offset(part.offset)
                        .length(Length::Exact(part.len))
                        .buffer_size(READ_BUFFER)
                        .build()
                        .await
                        .map_err(|e| {
                            RequestError::Local(UploadError::Local {
                                what: "open",
                                path: path.clone(),
                                source: std::io::Error::other(e.to_string()),
                            })
                        })?;
                    request.body(body).send().await.map_err(RequestError::from)
                }
            },
        )
        .await?;
        let etag = response
            .e_tag
            .map(|e| plan::bare_etag(&e))
            .unwrap_or_else(|| hex::encode(md5));
        let record = PartRecord {
            number: part.number,
            size: part.len,
            etag,
            md5,
        };
        self.ledger.record_part(self.row_id, &record).await?;
        Ok(record)
    }
}

/// Whether an error means the bucket, not the file, is in trouble: the same error would hit
/// every file of the bucket.
pub fn is_bucket_wide(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Timeout | ErrorKind::Network | ErrorKind::S3Server
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(kind: ErrorKind, code: Option<&str>) -> UploadError {
        UploadError::S3 {
            op: "UploadPart",
            bucket: "b".into(),
            key: "k".into(),
            kind,
            code: code.map(str::to_owned),
            source: crate::error::S3Failure::NoAnswer {
                after: Duration::from_secs(1),
            },
        }
    }

    #[test]
    fn any_refusal_of_a_stored_upload_id_ends_it_and_transient_failures_do_not() {
        for code in [
            "NoSuchUpload",
            "AccessDenied",
            "InvalidPart",
            "InvalidRequest",
        ] {
            assert!(
                upload_refused(&answered(ErrorKind::S3Client, Some(code))),
                "{code}"
            );
        }
        assert!(upload_refused(&answered(ErrorKind::S3Client, None)));
        for kind in [ErrorKind::Timeout, ErrorKind::Network, ErrorKind::S3Server] {
            assert!(!upload_refused(&answered(kind, None)), "{kind:?}");
        }
        let local = UploadError::Local {
            what: "read",
            path: "/f".into(),
            source: std::io::Error::other("x"),
        };
        assert!(!upload_refused(&local));
    }

    #[test]
    fn md5_of_a_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"helloworld").unwrap();
        assert_eq!(
            md5_range(&path, 5, 5).unwrap(),
            <[u8; 16]>::from(Md5::digest(b"world"))
        );
        assert_eq!(
            md5_range(&path, 0, 0).unwrap(),
            <[u8; 16]>::from(Md5::digest(b""))
        );
        let short = md5_range(&path, 8, 5).unwrap_err();
        assert_eq!(short.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn xattrs_are_read_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        assert_eq!(xattr_text(&path, plan::LOG_START_XATTR), None);
        // tmpfs and some file systems refuse user xattrs; only check when they are kept.
        if xattr::set(&path, plan::LOG_START_XATTR, b"1668780000000").is_ok() {
            assert_eq!(
                xattr_text(&path, plan::LOG_START_XATTR).as_deref(),
                Some("1668780000000")
            );
        }
    }
}
