//! What one upload sends, decided without touching S3: the key, the headers, the storage
//! class, the encryption, the parts and the ETag S3 must answer with.

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
use md5::{Digest, Md5};
use singularity_common::config::S3ContentHeaders;
use singularity_common::keyfmt::{UploadKeyContext, format_upload_key};
use singularity_common::records::S3UploadMetadata;

/// Smallest part S3 accepts (all but the last part).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Most parts one multipart upload may have.
pub const MAX_PARTS: u64 = 10_000;
/// User metadata key of the `user.logstart` extended attribute.
pub const START_TIME_METADATA: &str = "starttime";
/// User metadata key of the `user.logend` extended attribute.
pub const END_TIME_METADATA: &str = "endtime";
/// Extended attribute logrotate's hooks set when a log file starts.
pub const LOG_START_XATTR: &str = "user.logstart";
/// Extended attribute logrotate's hooks set when a log file is rotated.
pub const LOG_END_XATTR: &str = "user.logend";

/// Server-side encryption of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Encryption {
    /// None asked for.
    #[default]
    None,
    /// SSE-S3 (AES256).
    S3,
    /// SSE-KMS.
    Kms {
        /// The KMS key id.
        key_id: String,
    },
}

impl Encryption {
    /// `encryptionKey` (SSE-KMS) wins over `useS3ServerSideEncryption` (SSE-S3): S3 takes one
    /// algorithm per object, and the key names the stronger wish.
    pub fn of(metadata: &S3UploadMetadata) -> Self {
        match &metadata.encryption_key {
            Some(key) if !key.is_empty() => Self::Kms {
                key_id: key.clone(),
            },
            _ if metadata.use_s3_server_side_encryption => Self::S3,
            _ => Self::None,
        }
    }

    /// Whether S3's ETag is the MD5 of the content. With SSE-KMS it is not.
    pub fn etag_is_md5(&self) -> bool {
        !matches!(self, Self::Kms { .. })
    }
}

/// Everything about an object apart from its bytes, key and bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectOptions {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// Storage class.
    pub storage_class: Option<String>,
    /// Server-side encryption.
    pub encryption: Encryption,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: BTreeMap<String, String>,
}

impl ObjectOptions {
    /// The options for the file at `path` of `size` bytes, with the `user.logstart` /
    /// `user.logend` values read from it.
    pub fn for_file(
        metadata: &S3UploadMetadata,
        headers: &[S3ContentHeaders],
        path: &Path,
        size: u64,
        log_start: Option<String>,
        log_end: Option<String>,
    ) -> Self {
        let matched = content_headers(headers, path);
        let mut user = BTreeMap::new();
        if let Some(start) = log_start {
            user.insert(START_TIME_METADATA.to_owned(), start);
        }
        if let Some(end) = log_end {
            user.insert(END_TIME_METADATA.to_owned(), end);
        }
        Self {
            content_type: matched.and_then(|h| h.content_type.clone()),
            content_encoding: matched.and_then(|h| h.content_encoding.clone()),
            storage_class: storage_class(metadata, size),
            encryption: Encryption::of(metadata),
            metadata: user,
        }
    }
}

/// The first `s3ContentHeaders` entry whose `filenameEndsWith` ends the full path.
pub fn content_headers<'a>(
    headers: &'a [S3ContentHeaders],
    path: &Path,
) -> Option<&'a S3ContentHeaders> {
    let text = path.to_string_lossy();
    headers
        .iter()
        .find(|h| text.ends_with(h.filename_ends_with.as_str()))
}

/// The storage class, when set and the file is larger than `applyStorageClassIfOverBytes`
/// (always when that is absent).
pub fn storage_class(metadata: &S3UploadMetadata, size: u64) -> Option<String> {
    let class = metadata.storage_class.as_ref().filter(|c| !c.is_empty())?;
    match metadata.apply_storage_class_if_over_bytes {
        Some(threshold) if i128::from(size) <= i128::from(threshold) => None,
        _ => Some(class.clone()),
    }
}

/// Applies the same options to a single PUT and to the start of a multipart upload.
macro_rules! apply_options {
    ($builder:expr, $options:expr) => {{
        let options: &ObjectOptions = $options;
        let mut builder = $builder
            .set_content_type(options.content_type.clone())
            .set_content_encoding(options.content_encoding.clone())
            .set_storage_class(options.storage_class.as_deref().map(StorageClass::from));
        builder = match &options.encryption {
            Encryption::None => builder,
            Encryption::S3 => builder.server_side_encryption(ServerSideEncryption::Aes256),
            Encryption::Kms { key_id: key } => builder
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(key),
        };
        for (name, value) in &options.metadata {
            builder = builder.metadata(name, value);
        }
        builder
    }};
}

/// A single PUT with `options`.
pub fn apply_put(
    builder: PutObjectFluentBuilder,
    options: &ObjectOptions,
) -> PutObjectFluentBuilder {
    apply_options!(builder, options)
}

/// The start of a multipart upload with `options`: S3 applies them to the whole object.
pub fn apply_create_multipart(
    builder: CreateMultipartUploadFluentBuilder,
    options: &ObjectOptions,
) -> CreateMultipartUploadFluentBuilder {
    apply_options!(builder, options)
}

/// The object key of a file: the stage-2 key tokens of `pattern` for this file.
pub fn object_key(
    pattern: &str,
    filename: &str,
    mtime_millis: i64,
    hostname: &str,
    index: usize,
) -> String {
    format_upload_key(
        pattern,
        &UploadKeyContext {
            filename,
            mtime_millis,
            hostname: Some(hostname),
            index,
            guid: None,
        },
    )
}

/// One part of a multipart upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    /// 1-based part number.
    pub number: i32,
    /// First byte in the file.
    pub offset: u64,
    /// Bytes in the part.
    pub len: u64,
}

/// The part size for a file of `size` bytes: `part_size`, grown if needed so the file fits
/// in [`MAX_PARTS`] parts, never below [`MIN_PART_SIZE`].
pub fn effective_part_size(size: u64, part_size: u64) -> u64 {
    part_size.max(MIN_PART_SIZE).max(size.div_ceil(MAX_PARTS))
}

/// The parts of a file of `size` bytes cut at `part_size` (see [`effective_part_size`]).
pub fn parts(size: u64, part_size: u64) -> Vec<PartPlan> {
    let part_size = effective_part_size(size, part_size);
    let mut parts = Vec::new();
    let mut offset = 0;
    let mut number = 1;
    while offset < size {
        let len = part_size.min(size - offset);
        parts.push(PartPlan {
            number,
            offset,
            len,
        });
        offset += len;
        number += 1;
    }
    parts
}

/// The ETag S3 gives a single PUT of content with this MD5.
pub fn single_etag(md5: &[u8; 16]) -> String {
    hex::encode(md5)
}

/// The ETag S3 gives a multipart upload whose parts have these MD5s, in part order: the MD5
/// of the concatenated part MD5s, `-`, the number of parts.
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut hasher = Md5::new();
    for md5 in part_md5s {
        hasher.update(md5);
    }
    format!("{}-{}", hex::encode(hasher.finalize()), part_md5s.len())
}

/// ETags compare without their quotes and case.
pub fn etag_eq(a: &str, b: &str) -> bool {
    a.trim_matches('"')
        .eq_ignore_ascii_case(b.trim_matches('"'))
}

/// An ETag without its quotes.
pub fn bare_etag(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

/// What a single PUT's answer says about the object S3 now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutAnswer {
    /// The answered ETag is the MD5 of the bytes read from the file, and S3 computes a single
    /// PUT's ETag as the MD5 of the bytes it stored: S3 holds exactly the file's bytes (and so
    /// its size), which is the confirmation a HeadObject would give.
    Confirmed {
        /// The answered ETag.
        etag: String,
    },
    /// The ETag cannot vouch for the content (SSE-KMS ETags are not MD5s) or none was
    /// answered: a HeadObject must confirm the object before the file is deleted.
    Unconfirmed {
        /// The ETag to check against (the answered one, else the MD5 of the bytes read).
        etag: String,
    },
    /// The ETag is the MD5 of other bytes than those read: the file changed while it was being
    /// read, or the body was corrupted. Nothing may be deleted.
    Mismatch {
        /// What S3 answered.
        answered: String,
        /// The MD5 of the bytes read.
        expected: String,
    },
    /// No ETag where one is needed (SSE-KMS): the upload cannot be checked at all.
    Missing,
}

/// Classifies a PutObject answer: `answered` is its ETag, `md5` the MD5 of the bytes read
/// from the file, `etag_is_md5` whether the object's encryption keeps ETags as MD5s.
pub fn check_put_answer(answered: Option<&str>, md5: &[u8; 16], etag_is_md5: bool) -> PutAnswer {
    let expected = single_etag(md5);
    match answered.map(bare_etag) {
        Some(etag) if !etag_is_md5 => PutAnswer::Unconfirmed { etag },
        Some(etag) if etag_eq(&etag, &expected) => PutAnswer::Confirmed { etag },
        Some(answered) => PutAnswer::Mismatch { answered, expected },
        None if etag_is_md5 => PutAnswer::Unconfirmed { etag: expected },
        None => PutAnswer::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_md5_etag_of_the_bytes_read_confirms_a_put() {
        let md5 = md5_of(b"hello");
        let hex = single_etag(&md5);
        let quoted = format!("\"{}\"", hex.to_uppercase());
        assert_eq!(
            check_put_answer(Some(&quoted), &md5, true),
            PutAnswer::Confirmed {
                etag: hex.to_uppercase()
            }
        );
        // Another content's MD5: never a confirmation.
        let other = single_etag(&md5_of(b"hellO"));
        assert_eq!(
            check_put_answer(Some(&other), &md5, true),
            PutAnswer::Mismatch {
                answered: other.clone(),
                expected: hex.clone()
            }
        );
        // SSE-KMS: the ETag is no MD5, whatever it looks like; HeadObject decides.
        assert_eq!(
            check_put_answer(Some(&hex), &md5, false),
            PutAnswer::Unconfirmed { etag: hex.clone() }
        );
        assert_eq!(
            check_put_answer(Some(&other), &md5, false),
            PutAnswer::Unconfirmed { etag: other }
        );
        // No ETag: HeadObject must find the expected one; with SSE-KMS there is none to find.
        assert_eq!(
            check_put_answer(None, &md5, true),
            PutAnswer::Unconfirmed { etag: hex }
        );
        assert_eq!(check_put_answer(None, &md5, false), PutAnswer::Missing);
    }

    fn md5_of(data: &[u8]) -> [u8; 16] {
        Md5::digest(data).into()
    }

    fn headers() -> Vec<S3ContentHeaders> {
        vec![
            S3ContentHeaders {
                filename_ends_with: ".log.gz".into(),
                content_type: Some("text/plain".into()),
                content_encoding: Some("gzip".into()),
            },
            S3ContentHeaders {
                filename_ends_with: ".gz".into(),
                content_type: Some("application/gzip".into()),
                content_encoding: None,
            },
        ]
    }

    #[test]
    fn the_first_matching_content_header_wins() {
        let h = headers();
        let first = content_headers(&h, Path::new("/logs/service.log.gz")).unwrap();
        assert_eq!(first.content_type.as_deref(), Some("text/plain"));
        let second = content_headers(&h, Path::new("/logs/other.tar.gz")).unwrap();
        assert_eq!(second.content_type.as_deref(), Some("application/gzip"));
        assert!(content_headers(&h, Path::new("/logs/service.log")).is_none());
        // The suffix is matched against the full path, as Singularity does.
        let h = vec![S3ContentHeaders {
            filename_ends_with: "logs/app.txt".into(),
            content_type: Some("text/plain".into()),
            content_encoding: None,
        }];
        assert!(content_headers(&h, Path::new("/t/logs/app.txt")).is_some());
    }

    #[test]
    fn storage_class_applies_above_the_threshold_only() {
        let mut m = S3UploadMetadata::new("/d", "*", "b", "k");
        assert_eq!(storage_class(&m, 10), None);
        m.storage_class = Some("STANDARD_IA".into());
        assert_eq!(storage_class(&m, 0).as_deref(), Some("STANDARD_IA"));
        m.apply_storage_class_if_over_bytes = Some(75_000);
        assert_eq!(storage_class(&m, 75_000), None);
        assert_eq!(storage_class(&m, 75_001).as_deref(), Some("STANDARD_IA"));
        m.apply_storage_class_if_over_bytes = Some(-1);
        assert_eq!(storage_class(&m, 0).as_deref(), Some("STANDARD_IA"));
    }

    #[test]
    fn kms_wins_over_sse_s3() {
        let mut m = S3UploadMetadata::new("/d", "*", "b", "k");
        assert_eq!(Encryption::of(&m), Encryption::None);
        m.use_s3_server_side_encryption = true;
        assert_eq!(Encryption::of(&m), Encryption::S3);
        m.encryption_key = Some("alias/logs".into());
        assert_eq!(
            Encryption::of(&m),
            Encryption::Kms {
                key_id: "alias/logs".into(),
            }
        );
        assert!(!Encryption::of(&m).etag_is_md5());
        m.encryption_key = Some(String::new());
        assert_eq!(Encryption::of(&m), Encryption::S3);
    }

    fn offline_client() -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    fn options(encryption: Encryption) -> ObjectOptions {
        let mut metadata = S3UploadMetadata::new("/d", "*", "b", "k");
        metadata.storage_class = Some("STANDARD_IA".into());
        let mut options = ObjectOptions::for_file(
            &metadata,
            &headers(),
            Path::new("/d/service.log.gz"),
            10,
            Some("1668780000000".into()),
            Some("1668781234567".into()),
        );
        options.encryption = encryption;
        options
    }

    #[test]
    fn a_single_put_carries_every_option() {
        let client = offline_client();
        let put = apply_put(client.put_object(), &options(Encryption::S3));
        assert_eq!(put.get_content_type().as_deref(), Some("text/plain"));
        assert_eq!(put.get_content_encoding().as_deref(), Some("gzip"));
        assert_eq!(put.get_storage_class(), &Some(StorageClass::StandardIa));
        assert_eq!(
            put.get_server_side_encryption(),
            &Some(ServerSideEncryption::Aes256)
        );
        assert_eq!(put.get_ssekms_key_id(), &None);
        let meta = put.get_metadata().as_ref().unwrap();
        assert_eq!(meta["starttime"], "1668780000000");
        assert_eq!(meta["endtime"], "1668781234567");

        let put = apply_put(
            client.put_object(),
            &options(Encryption::Kms {
                key_id: "k1".into(),
            }),
        );
        assert_eq!(
            put.get_server_side_encryption(),
            &Some(ServerSideEncryption::AwsKms)
        );
        assert_eq!(put.get_ssekms_key_id().as_deref(), Some("k1"));

        let put = apply_put(client.put_object(), &options(Encryption::None));
        assert_eq!(put.get_server_side_encryption(), &None);
    }

    #[test]
    fn a_multipart_upload_carries_every_option_too() {
        let client = offline_client();
        let create = apply_create_multipart(
            client.create_multipart_upload(),
            &options(Encryption::Kms {
                key_id: "k2".into(),
            }),
        );
        assert_eq!(create.get_content_type().as_deref(), Some("text/plain"));
        assert_eq!(create.get_storage_class(), &Some(StorageClass::StandardIa));
        assert_eq!(
            create.get_server_side_encryption(),
            &Some(ServerSideEncryption::AwsKms)
        );
        assert_eq!(create.get_ssekms_key_id().as_deref(), Some("k2"));
        assert_eq!(create.get_metadata().as_ref().unwrap().len(), 2);

        let create =
            apply_create_multipart(client.create_multipart_upload(), &options(Encryption::S3));
        assert_eq!(
            create.get_server_side_encryption(),
            &Some(ServerSideEncryption::Aes256)
        );
    }

    #[test]
    fn parts_cover_the_file_exactly() {
        let mib = 1024 * 1024;
        let p = parts(17 * mib, 5 * mib);
        assert_eq!(p.len(), 4);
        assert_eq!(
            p[0],
            PartPlan {
                number: 1,
                offset: 0,
                len: 5 * mib
            }
        );
        assert_eq!(
            p[3],
            PartPlan {
                number: 4,
                offset: 15 * mib,
                len: 2 * mib
            }
        );
        assert_eq!(parts(10 * mib, 5 * mib).len(), 2);
        assert!(parts(0, 5 * mib).is_empty());
        // Too small a part size is raised to S3's minimum, and to fit 10 000 parts.
        assert_eq!(parts(6 * mib, 1)[0].len, 5 * mib);
        let huge = 100_000 * mib;
        let p = parts(huge, 5 * mib);
        assert!(p.len() <= 10_000, "{}", p.len());
        assert_eq!(p.iter().map(|x| x.len).sum::<u64>(), huge);
    }

    #[test]
    fn etags_are_computed_like_s3() {
        // Known value: md5("hello") and a two-part upload of "hello" + "world".
        assert_eq!(
            single_etag(&md5_of(b"hello")),
            "5d41402abc4b2a76b9719d911017c592"
        );
        let two = multipart_etag(&[md5_of(b"hello"), md5_of(b"world")]);
        let mut concat = Vec::new();
        concat.extend_from_slice(&md5_of(b"hello"));
        concat.extend_from_slice(&md5_of(b"world"));
        assert_eq!(two, format!("{}-2", hex::encode(md5_of(&concat))));
        assert!(etag_eq("\"ABC-2\"", "abc-2"));
        assert!(!etag_eq("abc-2", "abc-3"));
        assert_eq!(bare_etag("\"x\""), "x");
    }

    #[test]
    fn keys_use_the_upload_time_tokens() {
        let key = object_key("p/%host/%index-%filename%fileext", "a.log.gz", 0, "h1", 3);
        assert_eq!(key, "p/h1/3-a.log.gz.gz");
    }
}
