//! Response body that merges small data frames into large ones.
//!
//! s3s-fs streams object bodies in 4 KiB frames. Written one by one they become 4 KiB socket
//! writes, and on loopback the client's delayed ACK then dominates every GET. Merging frames
//! into ~256 KiB chunks keeps the server out of the measurements.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

/// Target size of the merged frames.
pub const FRAME_SIZE: usize = 256 * 1024;

/// Wraps a body and yields its data in frames of at least [`FRAME_SIZE`] bytes (the last one
/// may be shorter). Trailers and errors pass through in order.
pub struct Coalesce<B> {
    inner: Pin<Box<B>>,
    buf: BytesMut,
    /// A non-data frame read while data was still buffered.
    held: Option<Frame<Bytes>>,
    inner_done: bool,
}

impl<B> std::fmt::Debug for Coalesce<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalesce")
            .field("buffered", &self.buf.len())
            .field("inner_done", &self.inner_done)
            .finish_non_exhaustive()
    }
}

impl<B> Coalesce<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> Self {
        Self {
            inner: Box::pin(inner),
            buf: BytesMut::new(),
            held: None,
            inner_done: false,
        }
    }

    fn take_buf(&mut self) -> Frame<Bytes> {
        Frame::data(self.buf.split().freeze())
    }
}

impl<B> Body for Coalesce<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(frame) = this.held.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        loop {
            if this.inner_done {
                if this.buf.is_empty() {
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Ok(this.take_buf())));
            }
            // While data is buffered, Pending is passed on as is: the inner body has registered
            // the waker, and flushing a partial frame here would bring back the small writes.
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if this.buf.is_empty() && data.len() >= FRAME_SIZE {
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        this.buf.extend_from_slice(&data);
                        if this.buf.len() >= FRAME_SIZE {
                            return Poll::Ready(Some(Ok(this.take_buf())));
                        }
                    }
                    Err(other) => {
                        if this.buf.is_empty() {
                            return Poll::Ready(Some(Ok(other)));
                        }
                        this.held = Some(other);
                        return Poll::Ready(Some(Ok(this.take_buf())));
                    }
                },
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => this.inner_done = true,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none()
            && self.buf.is_empty()
            && (self.inner_done || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let buffered = self.buf.len() as u64;
        let mut hint = SizeHint::new();
        if self.inner_done {
            hint.set_exact(buffered);
            return hint;
        }
        let inner = self.inner.size_hint();
        hint.set_lower(inner.lower() + buffered);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + buffered);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::convert::Infallible;

    /// A body yielding scripted frames, with a Pending before each.
    struct Scripted {
        frames: VecDeque<Frame<Bytes>>,
        pending_next: bool,
    }

    impl Body for Scripted {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if self.pending_next && !self.frames.is_empty() {
                self.pending_next = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.pending_next = true;
            Poll::Ready(self.frames.pop_front().map(Ok))
        }
    }

    fn collect(body: Coalesce<Scripted>) -> Vec<Frame<Bytes>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut body = std::pin::pin!(body);
            let mut out = Vec::new();
            while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                out.push(frame.unwrap());
            }
            out
        })
    }

    #[test]
    fn merges_small_frames_and_keeps_trailers_last() {
        let mut frames: VecDeque<_> = (0..200)
            .map(|i| Frame::data(Bytes::from(vec![i as u8; 4096])))
            .collect();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-amz-checksum-crc32", "AAAAAA==".parse().unwrap());
        frames.push_back(Frame::trailers(trailers));
        let body = Coalesce::new(Scripted {
            frames,
            pending_next: true,
        });
        assert_eq!(body.size_hint().exact(), None);
        let out = collect(body);
        let sizes: Vec<usize> = out
            .iter()
            .filter_map(|f| f.data_ref().map(Bytes::len))
            .collect();
        assert_eq!(
            sizes,
            [
                FRAME_SIZE,
                FRAME_SIZE,
                FRAME_SIZE,
                200 * 4096 - 3 * FRAME_SIZE
            ]
        );
        assert!(out.last().unwrap().is_trailers());
        let bytes: Vec<u8> = out
            .iter()
            .filter_map(|f| f.data_ref())
            .flat_map(|b| b.iter().copied())
            .collect();
        let expected: Vec<u8> = (0..200).flat_map(|i| vec![i as u8; 4096]).collect();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn empty_body_ends_at_once() {
        let out = collect(Coalesce::new(Scripted {
            frames: VecDeque::new(),
            pending_next: false,
        }));
        assert!(out.is_empty());
    }
}
