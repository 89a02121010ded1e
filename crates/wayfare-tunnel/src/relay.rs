//! Bidirectional copy that never grows the slice it is writing.
//!
//! `tokio::io::copy_bidirectional` reads more into its buffer while a write is pending and
//! retries the write with a longer slice. The shadowsocks crypto streams encrypt the slice
//! of the first call, finish writing that chunk and then report the longer length, which
//! silently drops bytes (seen as truncated downloads under load). This copy always retries
//! a pending write with the exact same slice.

use std::{
    future::poll_fn,
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

struct OneWay {
    buf: Box<[u8]>,
    pos: usize,
    cap: usize,
    read_done: bool,
    need_flush: bool,
    amt: u64,
}

impl OneWay {
    fn new(size: usize) -> Self {
        Self {
            buf: vec![0; size].into_boxed_slice(),
            pos: 0,
            cap: 0,
            read_done: false,
            need_flush: false,
            amt: 0,
        }
    }

    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            while self.pos < self.cap {
                let n = ready!(w.as_mut().poll_write(cx, &self.buf[self.pos..self.cap]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.amt += n as u64;
                self.need_flush = true;
            }
            if self.read_done {
                ready!(w.as_mut().poll_flush(cx))?;
                ready!(w.as_mut().poll_shutdown(cx))?;
                return Poll::Ready(Ok(self.amt));
            }
            let mut rb = ReadBuf::new(&mut self.buf);
            match r.as_mut().poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    self.pos = 0;
                    self.cap = n;
                    self.read_done = n == 0;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if self.need_flush {
                        ready!(w.as_mut().poll_flush(cx))?;
                        self.need_flush = false;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Copy `a -> b` and `b -> a` until both reach EOF; returns (bytes a->b, bytes b->a).
pub(crate) async fn relay<A, B>(a: &mut A, b: &mut B, buf_size: usize) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut ab = OneWay::new(buf_size);
    let mut ba = OneWay::new(buf_size);
    let (mut ab_done, mut ba_done) = (None, None);
    poll_fn(|cx| {
        if ab_done.is_none()
            && let Poll::Ready(r) = ab.poll_copy(cx, Pin::new(&mut *a), Pin::new(&mut *b))
        {
            ab_done = Some(r?);
        }
        if ba_done.is_none()
            && let Poll::Ready(r) = ba.poll_copy(cx, Pin::new(&mut *b), Pin::new(&mut *a))
        {
            ba_done = Some(r?);
        }
        match (ab_done, ba_done) {
            (Some(x), Some(y)) => Poll::Ready(Ok((x, y))),
            _ => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_until_eof() {
        let (mut c1, mut s1) = tokio::io::duplex(1000);
        let (mut s2, mut c2) = tokio::io::duplex(1000);
        let t = tokio::spawn(async move { relay(&mut s1, &mut s2, 777).await });
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let d = data.clone();
        let w = tokio::spawn(async move {
            c1.write_all(&d).await.expect("write");
            c1.shutdown().await.expect("shutdown");
            let mut back = Vec::new();
            c1.read_to_end(&mut back).await.expect("read");
            back
        });
        let mut got = Vec::new();
        c2.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, data);
        c2.write_all(b"pong").await.expect("write");
        c2.shutdown().await.expect("shutdown");
        assert_eq!(w.await.expect("join"), b"pong");
        assert_eq!(t.await.expect("join").expect("relay"), (100_000, 4));
    }
}
