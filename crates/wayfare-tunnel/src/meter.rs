//! Live per-session byte meters and a counting stream wrapper.
//!
//! Both ends count payload bytes (what the application sent and received, without
//! shadowsocks framing), so the buyer's and the seller's meters for a session agree.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared, lock-free byte counters of one session. Clones share the same counters.
#[derive(Clone, Debug, Default)]
pub struct Meter(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    up: AtomicU64,
    down: AtomicU64,
}

/// Counters read at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeterSnapshot {
    /// Bytes from the buyer towards the internet.
    pub up: u64,
    /// Bytes from the internet towards the buyer.
    pub down: u64,
}

impl MeterSnapshot {
    /// Up plus down.
    pub fn total(&self) -> u64 {
        self.up.saturating_add(self.down)
    }
}

impl Meter {
    /// A meter at zero.
    pub fn new() -> Self {
        Self::default()
    }
    /// Count `n` bytes buyer -> internet.
    pub fn add_up(&self, n: u64) {
        self.0.up.fetch_add(n, Ordering::Relaxed);
    }
    /// Count `n` bytes internet -> buyer.
    pub fn add_down(&self, n: u64) {
        self.0.down.fetch_add(n, Ordering::Relaxed);
    }
    /// Current values.
    pub fn snapshot(&self) -> MeterSnapshot {
        MeterSnapshot {
            up: self.0.up.load(Ordering::Relaxed),
            down: self.0.down.load(Ordering::Relaxed),
        }
    }
}

/// Which direction the bytes *read* from the wrapped stream travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadIs {
    /// Reads are buyer -> internet (the buyer's application socket).
    Up,
    /// Reads are internet -> buyer (the seller's outbound socket).
    Down,
}

/// Wraps a stream and counts every byte read and written, as it happens.
#[derive(Debug)]
pub struct MeteredStream<S> {
    inner: S,
    meter: Meter,
    read_is: ReadIs,
}

impl<S> MeteredStream<S> {
    /// Wrap `inner`.
    pub fn new(inner: S, meter: Meter, read_is: ReadIs) -> Self {
        Self {
            inner,
            meter,
            read_is,
        }
    }

    fn count(&self, read: bool, n: usize) {
        let up = (self.read_is == ReadIs::Up) == read;
        if up {
            self.meter.add_up(n as u64);
        } else {
            self.meter.add_down(n as u64);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for MeteredStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let n = buf.filled().len() - before;
            self.count(true, n);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MeteredStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            self.count(false, n);
        }
        res
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn counts_reads_and_writes_live() {
        let (a, mut b) = tokio::io::duplex(1024);
        let meter = Meter::new();
        let mut m = MeteredStream::new(a, meter.clone(), ReadIs::Down);
        m.write_all(b"hello").await.expect("write");
        assert_eq!(meter.snapshot(), MeterSnapshot { up: 5, down: 0 });
        b.write_all(b"abc").await.expect("write");
        let mut buf = [0u8; 3];
        m.read_exact(&mut buf).await.expect("read");
        assert_eq!(meter.snapshot(), MeterSnapshot { up: 5, down: 3 });
        assert_eq!(meter.snapshot().total(), 8);
    }
}
