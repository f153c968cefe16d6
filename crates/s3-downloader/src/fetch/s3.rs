//! [`PartSource`] over an S3 client.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use std::sync::Arc;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::S3Failure;
use super::engine::{
    ObjectInfo, PartBody, PartSource, RangeResponse, SourceError, SourceErrorKind,
};

/// One object in one bucket, read through `client`.
#[derive(Debug)]
pub(crate) struct S3Object {
    pub client: Client,
    pub bucket: String,
    pub key: String,
}

/// The body of a GetObject response.
pub(crate) struct S3Body(ByteStream);

impl PartBody for S3Body {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
        self.0.try_next().await.map_err(|error| {
            SourceError::new(
                SourceErrorKind::Transient,
                S3Failure::Body {
                    source: Arc::new(error),
                },
            )
        })
    }
}

impl PartSource for S3Object {
    type Body = S3Body;

    async fn get(&self, start: u64, end: u64) -> Result<RangeResponse<S3Body>, SourceError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .range(format!("bytes={start}-{}", end.saturating_sub(1)))
            .send()
            .await
            .map_err(classify)?;
        let content_length = output
            .content_length()
            .and_then(|len| u64::try_from(len).ok());
        let etag = output.e_tag().map(str::to_owned);
        let (first, len, total, partial) = match output.content_range() {
            Some(range) => {
                let (first, last, total) = parse_content_range(range).ok_or_else(|| {
                    SourceError::new(
                        SourceErrorKind::Permanent,
                        S3Failure::UnusableContentRange {
                            range: range.to_owned(),
                        },
                    )
                })?;
                let len = last - first + 1;
                if let Some(content_length) = content_length.filter(|&cl| cl != len) {
                    return Err(SourceError::new(
                        SourceErrorKind::Permanent,
                        S3Failure::LengthMismatch {
                            content_length,
                            range: range.to_owned(),
                        },
                    ));
                }
                (first, len, total, true)
            }
            None => {
                let len = content_length.ok_or_else(|| {
                    SourceError::new(SourceErrorKind::Permanent, S3Failure::NoLength)
                })?;
                (0, len, len, false)
            }
        };
        Ok(RangeResponse {
            start: first,
            len,
            total,
            partial,
            etag,
            body: S3Body(output.body),
        })
    }

    async fn head(&self) -> Result<ObjectInfo, SourceError> {
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(classify)?;
        let size = output
            .content_length()
            .and_then(|len| u64::try_from(len).ok())
            .ok_or_else(|| {
                SourceError::new(SourceErrorKind::Permanent, S3Failure::HeadWithoutSize)
            })?;
        Ok(ObjectInfo {
            size,
            etag: output.e_tag().map(str::to_owned),
        })
    }
}

/// `bytes FIRST-LAST/TOTAL` → (first, last, total).
fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, total) = (
        first.trim().parse::<u64>().ok()?,
        last.trim().parse::<u64>().ok()?,
        total.trim().parse::<u64>().ok()?,
    );
    (first <= last && last < total).then_some((first, last, total))
}

/// Sorts an SDK error into what the transfer does about it.
fn classify<E>(error: SdkError<E, HttpResponse>) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let kind = match &error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match service.err().code() {
                _ if status == 404 => SourceErrorKind::NotFound,
                Some("NoSuchKey" | "NoSuchBucket" | "NotFound") => SourceErrorKind::NotFound,
                _ if status == 416 => SourceErrorKind::InvalidRange,
                Some("InvalidRange") => SourceErrorKind::InvalidRange,
                _ if status >= 500 || status == 429 || status == 408 => SourceErrorKind::Transient,
                Some(
                    "SlowDown"
                    | "RequestTimeout"
                    | "Throttling"
                    | "ThrottlingException"
                    | "InternalError"
                    | "ServiceUnavailable",
                ) => SourceErrorKind::Transient,
                _ => SourceErrorKind::Permanent,
            }
        }
        SdkError::ConstructionFailure(_) => SourceErrorKind::Permanent,
        // Timeouts, connection failures, unreadable responses.
        _ => SourceErrorKind::Transient,
    };
    SourceError::new(
        kind,
        S3Failure::Sdk {
            source: Arc::new(error),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 0-99/1000"), Some((0, 99, 1000)));
        assert_eq!(parse_content_range("bytes 5-5/6"), Some((5, 5, 6)));
        assert_eq!(parse_content_range("bytes 0-99/*"), None);
        assert_eq!(parse_content_range("bytes 10-9/100"), None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
