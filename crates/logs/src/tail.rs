//! The last lines of the output, kept in memory as they pass, so teardown writes the tail file
//! without reading the log back.

use std::collections::VecDeque;

/// Above this many bytes older chunks are dropped even when they hold fewer lines than asked
/// (output without newlines must not grow the tail without bound).
const MAX_BYTES: usize = 32 * 1024 * 1024;

/// The last `lines` lines of everything pushed, as `tail -n` would print them.
#[derive(Debug, Default)]
pub struct Tail {
    lines: usize,
    // Chunks as written, with their newline counts: one copy per write, no per-line work.
    chunks: VecDeque<(Vec<u8>, usize)>,
    newlines: usize,
    bytes: usize,
}

impl Tail {
    /// Keeps the last `lines` lines (0 keeps nothing).
    pub fn new(lines: usize) -> Self {
        Tail {
            lines,
            ..Tail::default()
        }
    }

    /// Adds output.
    pub fn push(&mut self, buf: &[u8]) {
        if self.lines == 0 || buf.is_empty() {
            return;
        }
        let count = memchr::memchr_iter(b'\n', buf).count();
        self.chunks.push_back((buf.to_vec(), count));
        self.newlines += count;
        self.bytes += buf.len();
        // The front chunk can go when the rest still holds `lines` complete lines after the
        // (possibly partial) last one.
        while let Some((front, front_count)) = self.chunks.front() {
            let rest_newlines = self.newlines - front_count;
            if rest_newlines > self.lines || (self.bytes > MAX_BYTES && self.chunks.len() > 1) {
                self.bytes -= front.len();
                self.newlines = rest_newlines;
                self.chunks.pop_front();
            } else {
                break;
            }
        }
    }

    /// The last lines: a final line without a newline counts as a line, as with `tail -n`.
    pub fn contents(&self) -> Vec<u8> {
        let all: Vec<u8> = self
            .chunks
            .iter()
            .flat_map(|(c, _)| c.iter().copied())
            .collect();
        tail_lines(&all, self.lines).to_vec()
    }
}

/// The last `n` lines of `text` (`tail -n`).
pub fn tail_lines(text: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    // A trailing newline ends the last line rather than starting an empty one.
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    match memchr::memrchr_iter(b'\n', body).nth(n - 1) {
        Some(pos) => &text[pos + 1..],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_across_chunks() {
        let mut tail = Tail::new(3);
        for i in 0..1000 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        assert_eq!(tail.contents(), b"line 997\nline 998\nline 999\n");
        tail.push(b"partial");
        assert_eq!(tail.contents(), b"line 998\nline 999\npartial");
    }

    #[test]
    fn lines_split_across_writes_are_joined() {
        let mut tail = Tail::new(2);
        tail.push(b"a\nb");
        tail.push(b"c\nd");
        tail.push(b"e\n");
        assert_eq!(tail.contents(), b"bc\nde\n");
    }

    #[test]
    fn zero_lines_keeps_nothing_and_tail_matches_tail_n() {
        let mut tail = Tail::new(0);
        tail.push(b"a\n");
        assert!(tail.contents().is_empty());
        assert_eq!(tail_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail_lines(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(tail_lines(b"a\n", 5), b"a\n");
    }

    #[test]
    fn output_without_newlines_stays_bounded() {
        let mut tail = Tail::new(10);
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..100 {
            tail.push(&chunk);
        }
        assert!(tail.bytes <= MAX_BYTES + chunk.len());
    }
}
