//! RecordIO framing (docs/mesos-executor-api.md, "JSON mapping and framing"):
//! `<decimal length>\n<length bytes>`, repeated; no `\r`, no trailing newline, no header. The
//! decoder is fed whatever slices the transport delivers and is independent of HTTP chunk
//! boundaries.

/// Largest record accepted; a guard against a corrupt length making us buffer without bound.
pub const MAX_RECORD_LEN: u64 = 64 * 1024 * 1024;

/// Longest length prefix accepted (u64::MAX has 20 digits).
const MAX_LENGTH_DIGITS: usize = 20;

/// A framing error; the stream cannot continue after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordIoError {
    /// The length prefix holds something other than ASCII digits.
    #[error("failed to decode length: {text:?} is not a decimal number")]
    NonNumericLength {
        /// The prefix as received (lossily decoded).
        text: String,
    },
    /// The length does not fit or exceeds [`MAX_RECORD_LEN`].
    #[error("record length {text} exceeds the limit of {MAX_RECORD_LEN} bytes")]
    TooLong {
        /// The prefix as received.
        text: String,
    },
}

/// Encodes one record.
pub fn encode(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + 12);
    out.extend_from_slice(record.len().to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(record);
    out
}

/// Incremental decoder.
///
/// ```
/// use singularity_mesos::recordio::Decoder;
/// let mut d = Decoder::new();
/// assert!(d.feed(b"5\nhel").unwrap().is_empty());
/// assert_eq!(d.feed(b"lo2\nok").unwrap(), vec![b"hello".to_vec(), b"ok".to_vec()]);
/// assert!(d.is_idle());
/// ```
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
    /// Length of the record being read, once its prefix is complete.
    expected: Option<usize>,
    failed: Option<RecordIoError>,
}

impl Decoder {
    /// A decoder at a record boundary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes and returns every record they complete, in order. After an error every
    /// later call returns the same error.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, RecordIoError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buffer.extend_from_slice(data);
        let mut records = Vec::new();
        let mut pos = 0;
        let result = loop {
            match self.expected {
                None => {
                    let pending = &self.buffer[pos..];
                    match pending.iter().position(|&b| b == b'\n') {
                        Some(nl) => match parse_length(&pending[..nl]) {
                            Ok(len) => {
                                self.expected = Some(len);
                                pos += nl + 1;
                            }
                            Err(e) => break Err(e),
                        },
                        None => {
                            // Fail early on garbage instead of waiting for a newline.
                            if let Some(e) = check_partial_length(pending) {
                                break Err(e);
                            }
                            break Ok(());
                        }
                    }
                }
                Some(len) => {
                    if self.buffer.len() - pos < len {
                        break Ok(());
                    }
                    records.push(self.buffer[pos..pos + len].to_vec());
                    pos += len;
                    self.expected = None;
                }
            }
        };
        self.buffer.drain(..pos);
        match result {
            Ok(()) => Ok(records),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// True at a record boundary with nothing buffered: an EOF here is a clean end.
    pub fn is_idle(&self) -> bool {
        self.expected.is_none() && self.buffer.is_empty() && self.failed.is_none()
    }
}

fn parse_length(prefix: &[u8]) -> Result<usize, RecordIoError> {
    let text = String::from_utf8_lossy(prefix).into_owned();
    if prefix.is_empty() || !prefix.iter().all(u8::is_ascii_digit) {
        return Err(RecordIoError::NonNumericLength { text });
    }
    let len: u64 = text
        .parse()
        .map_err(|_| RecordIoError::TooLong { text: text.clone() })?;
    if len > MAX_RECORD_LEN {
        return Err(RecordIoError::TooLong { text });
    }
    usize::try_from(len).map_err(|_| RecordIoError::TooLong { text })
}

fn check_partial_length(pending: &[u8]) -> Option<RecordIoError> {
    let text = || String::from_utf8_lossy(pending).into_owned();
    if !pending.iter().all(u8::is_ascii_digit) {
        return Some(RecordIoError::NonNumericLength { text: text() });
    }
    if pending.len() > MAX_LENGTH_DIGITS {
        return Some(RecordIoError::TooLong { text: text() });
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn stream(records: &[&[u8]]) -> Vec<u8> {
        records.iter().flat_map(|r| encode(r)).collect()
    }

    fn sample() -> Vec<Vec<u8>> {
        vec![
            br#"{"type":"HEARTBEAT"}"#.to_vec(),
            b"x".to_vec(),
            vec![b'7'; 123],
            "{\"message\":\"h\u{e9}llo \u{2603}\\n\"}"
                .as_bytes()
                .to_vec(),
            b"1234567890\n".to_vec(),
        ]
    }

    #[test]
    fn encodes_like_stout() {
        assert_eq!(
            encode(br#"{"type":"HEARTBEAT"}"#),
            b"20\n{\"type\":\"HEARTBEAT\"}"
        );
    }

    #[test]
    fn one_chunk_many_records() {
        let records = sample();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let mut d = Decoder::new();
        assert_eq!(d.feed(&stream(&refs)).unwrap(), records);
        assert!(d.is_idle());
    }

    #[test]
    fn every_split_point_gives_the_same_records() {
        let records = sample();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let bytes = stream(&refs);
        for split in 0..=bytes.len() {
            let mut d = Decoder::new();
            let mut out = d.feed(&bytes[..split]).unwrap();
            out.extend(d.feed(&bytes[split..]).unwrap());
            assert_eq!(out, records, "split at {split}");
            assert!(d.is_idle());
        }
    }

    #[test]
    fn every_pair_of_split_points_gives_the_same_records() {
        let records = sample();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let bytes = stream(&refs);
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut d = Decoder::new();
                let mut out = d.feed(&bytes[..a]).unwrap();
                out.extend(d.feed(&bytes[a..b]).unwrap());
                out.extend(d.feed(&bytes[b..]).unwrap());
                assert_eq!(out, records, "splits at {a}, {b}");
            }
        }
    }

    #[test]
    fn byte_at_a_time_and_record_across_many_chunks() {
        let big = vec![b'a'; 10_000];
        let bytes = stream(&[&big, b"tail"]);
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for b in &bytes {
            out.extend(d.feed(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(out, vec![big.clone(), b"tail".to_vec()]);

        // Irregular chunk sizes, as a proxy might re-chunk.
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut rest: &[u8] = &bytes;
        let mut size = 1;
        while !rest.is_empty() {
            let n = size.min(rest.len());
            out.extend(d.feed(&rest[..n]).unwrap());
            rest = &rest[n..];
            size = size * 3 % 97 + 1;
        }
        assert_eq!(out, vec![big, b"tail".to_vec()]);
    }

    #[test]
    fn partial_record_is_not_idle() {
        let mut d = Decoder::new();
        assert!(d.feed(b"10\nabc").unwrap().is_empty());
        assert!(!d.is_idle());
        let mut d = Decoder::new();
        assert!(d.feed(b"10").unwrap().is_empty());
        assert!(!d.is_idle());
    }

    #[test]
    fn empty_record_is_a_record() {
        let mut d = Decoder::new();
        assert_eq!(d.feed(b"0\n1\nx").unwrap(), vec![Vec::new(), b"x".to_vec()]);
    }

    #[test]
    fn non_numeric_length_fails_and_stays_failed() {
        for bad in [
            &b"abc\n"[..],
            b"1a\nx",
            b"\n",
            b" 5\nhello",
            b"5\r\nhello",
            b"-1\n",
        ] {
            let mut d = Decoder::new();
            let err = d.feed(bad).unwrap_err();
            assert!(
                matches!(err, RecordIoError::NonNumericLength { .. }),
                "{bad:?}: {err}"
            );
            assert!(d.feed(b"1\nx").is_err());
            assert!(!d.is_idle());
        }
        // Detected before the newline arrives.
        let mut d = Decoder::new();
        assert!(d.feed(b"{\"type\"").is_err());
    }

    #[test]
    fn oversized_length_fails() {
        let mut d = Decoder::new();
        assert!(matches!(
            d.feed(b"99999999999\n"),
            Err(RecordIoError::TooLong { .. })
        ));
        let mut d = Decoder::new();
        assert!(matches!(
            d.feed(b"999999999999999999999999"),
            Err(RecordIoError::TooLong { .. })
        ));
    }
}
