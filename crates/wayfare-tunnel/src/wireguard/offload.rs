//! TUN offload (`IFF_VNET_HDR` with TSO/USO/checksum): one read splits a kernel super-packet
//! into MTU-sized segments, and decrypted packets are batched and coalesced (GRO) into few
//! writes. A kernel that refuses the offload, a write it rejects, or a malformed super-packet
//! drops to the per-packet path with one log line.

use std::{
    io,
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::BytesMut;
use gotatun::packet::Packet;
use tokio::{sync::mpsc, task::JoinHandle};
use tun_rs::{AsyncDevice, GROTable, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

use crate::TunnelError;

/// Environment switch: `WAYFARE_TUN_OFFLOAD=off` (or `0`) opens TUNs without offload.
pub(crate) const OFFLOAD_ENV: &str = "WAYFARE_TUN_OFFLOAD";
/// The TUN transmit queue, longer than the kernel's 500 so bursts from a batch are not dropped.
const TX_QUEUE_LEN: u32 = 5000;
/// Headroom in front of each packet handed to the writer (the virtio header goes there).
pub(crate) const WRITE_OFFSET: usize = VIRTIO_NET_HDR_LEN;
/// Packets queued to the writer before `send` waits.
const WRITE_QUEUE: usize = 1024;

/// Whether the environment disables offload.
fn offload_wanted() -> bool {
    !matches!(
        std::env::var(OFFLOAD_ENV).as_deref(),
        Ok("off" | "0" | "false" | "no")
    )
}

/// Open TUN `name`, with offload unless refused or disabled; returns the device and whether it
/// carries virtio headers.
pub(crate) fn open_tun(
    name: &str,
    addr: Ipv4Addr,
    prefix: u8,
    mtu: u16,
) -> Result<(AsyncDevice, bool), TunnelError> {
    let build = |offload: bool| {
        tun_rs::DeviceBuilder::new()
            .name(name)
            .ipv4(addr, prefix, None)
            .mtu(mtu)
            .tx_queue_len(TX_QUEUE_LEN)
            .offload(offload)
            .build_async()
    };
    if offload_wanted() {
        match build(true) {
            Ok(tun) => {
                let on = vnet_hdr(&tun);
                tracing::debug!(%name, offload = on, "TUN opened");
                return Ok((tun, on));
            }
            Err(e) => tracing::warn!(%name, "TUN offload refused ({e}); packet-by-packet path"),
        }
    } else {
        tracing::info!(%name, "TUN offload disabled by {OFFLOAD_ENV}; packet-by-packet path");
    }
    let tun = build(false).map_err(|e| TunnelError::System(format!("create TUN {name}: {e}")))?;
    Ok((tun, false))
}

/// Whether the device reads and writes virtio headers (offload on).
fn vnet_hdr(tun: &AsyncDevice) -> bool {
    tun.tcp_gso()
}

/// Receive buffers for one reader: the raw super-packet and the segments split from it.
pub(crate) struct RxBufs {
    pub(crate) original: Vec<u8>,
    pub(crate) bufs: Vec<Vec<u8>>,
    pub(crate) sizes: Vec<usize>,
}

impl RxBufs {
    pub(crate) fn new(mtu: u16) -> Self {
        let seg = usize::from(mtu) + 256;
        Self {
            original: vec![0; VIRTIO_NET_HDR_LEN + 65536],
            bufs: vec![vec![0; seg]; IDEAL_BATCH_SIZE],
            sizes: vec![0; IDEAL_BATCH_SIZE],
        }
    }
}

/// Say once that a super-packet was malformed; later ones go to the debug log.
pub(crate) fn note_bad_read(e: &io::Error) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if SAID.swap(true, Ordering::Relaxed) {
        tracing::debug!("TUN read dropped: {e}");
    } else {
        tracing::warn!("TUN read dropped ({e}); later drops go to the debug log");
    }
}

/// A read error that means the device is gone (a syscall failed), not a bad super-packet.
pub(crate) fn is_fatal_read(e: &io::Error) -> bool {
    e.raw_os_error().is_some()
}

/// The writing half: packets go to a task that writes them in coalesced batches.
pub(crate) struct Writer {
    tx: mpsc::Sender<Packet>,
    task: JoinHandle<()>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Writer {
    /// Spawn the writer task on the current runtime.
    pub(crate) fn spawn(tun: Arc<AsyncDevice>) -> Self {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let task = tokio::spawn(write_loop(tun, rx));
        Self { tx, task }
    }

    /// Queue one IP packet.
    pub(crate) async fn send(&self, pkt: Packet) -> io::Result<()> {
        self.tx
            .send(pkt)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "TUN writer stopped"))
    }
}

/// Times the writer yields to let the decrypting tasks queue more packets before it writes.
const GATHER_YIELDS: usize = 4;

/// Top `batch` up with packets queued while this task yields, so that one coalesced write
/// carries a run of segments instead of one: the decrypting tasks hand packets over one at a
/// time, and a writer that wrote whatever it had would write one packet per syscall. Stops as
/// soon as a yield brings nothing (an idle tunnel pays a few scheduler passes, no timer).
async fn gather(rx: &mut mpsc::Receiver<Packet>, batch: &mut Vec<Packet>) {
    for _ in 0..GATHER_YIELDS {
        if batch.len() >= IDEAL_BATCH_SIZE {
            return;
        }
        tokio::task::yield_now().await;
        let before = batch.len();
        while batch.len() < IDEAL_BATCH_SIZE {
            match rx.try_recv() {
                Ok(b) => batch.push(b),
                Err(_) => break,
            }
        }
        if batch.len() == before {
            return;
        }
    }
}

/// Packets per batch, logged at debug level every `EVERY` batches.
#[derive(Default)]
struct WriteStats {
    batches: u64,
    packets: u64,
}

impl WriteStats {
    const EVERY: u64 = 1 << 14;

    fn note(&mut self, n: usize) {
        self.batches += 1;
        self.packets += n as u64;
        if self.batches.is_multiple_of(Self::EVERY) {
            tracing::debug!(
                packets_per_batch = self.packets as f64 / self.batches as f64,
                "TUN writes"
            );
            *self = Self::default();
        }
    }
}

/// Room in each write buffer: the virtio header twice (tun-rs's rule) and a whole coalesced
/// packet. tun-rs only merges a segment into a buffer that already has this capacity.
const WRITE_BUF_CAP: usize = 2 * WRITE_OFFSET + 65_535;

/// Copy packets into the write buffers, each behind a zero virtio header (no GSO, no checksum
/// to complete; GRO rewrites the heads it merges into); returns how many were filled.
fn fill<P: AsRef<[u8]>>(bufs: &mut [BytesMut], packets: impl Iterator<Item = P>) -> usize {
    let mut n = 0;
    for (b, p) in bufs.iter_mut().zip(packets) {
        b.clear();
        b.resize(WRITE_OFFSET, 0);
        b.extend_from_slice(p.as_ref());
        n += 1;
    }
    n
}

async fn write_loop(tun: Arc<AsyncDevice>, mut rx: mpsc::Receiver<Packet>) {
    let mut gro = GROTable::default();
    let mut batch = Vec::with_capacity(IDEAL_BATCH_SIZE);
    // Reused between batches; their memory is touched only as far as packets fill it.
    let mut bufs: Vec<BytesMut> = (0..IDEAL_BATCH_SIZE)
        .map(|_| BytesMut::with_capacity(WRITE_BUF_CAP))
        .collect();
    let mut coalesce = true;
    let mut said_write_error = false;
    let mut stats = WriteStats::default();
    while rx.recv_many(&mut batch, IDEAL_BATCH_SIZE).await > 0 {
        gather(&mut rx, &mut batch).await;
        stats.note(batch.len());
        let n = fill(&mut bufs, batch.drain(..));
        let bufs = &mut bufs[..n];
        if coalesce {
            if let Err(e) = tun.send_multiple(&mut gro, bufs, WRITE_OFFSET).await {
                // The batch may be half written and half merged: drop it (the senders
                // retransmit) and write packet by packet from now on.
                tracing::warn!("coalesced TUN write refused ({e}); packet-by-packet writes");
                coalesce = false;
            }
        } else {
            for b in bufs.iter() {
                if let Err(e) = tun.send(b).await
                    && !said_write_error
                {
                    tracing::warn!("TUN write failed: {e}");
                    said_write_error = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 16-bit one's complement sum of `b`, folded.
    fn sum(b: &[u8], mut acc: u32) -> u16 {
        for c in b.chunks(2) {
            acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// Segment `i` of one TCP flow: IPv4 + 20-byte TCP header + 1000 bytes, checksums valid.
    fn segment(i: u32) -> Vec<u8> {
        let payload = 1000usize;
        let mut p = vec![0u8; 40 + payload];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
        p[4..6].copy_from_slice(&(i as u16).to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[198, 19, 0, 2]);
        p[16..20].copy_from_slice(&[198, 18, 2, 2]);
        let c = !sum(&p[..20], 0);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&5201u16.to_be_bytes());
        p[24..28].copy_from_slice(&(1 + i * payload as u32).to_be_bytes());
        p[32] = 0x50;
        p[33] = 0x10;
        p[34..36].copy_from_slice(&1000u16.to_be_bytes());
        for (j, b) in p[40..].iter_mut().enumerate() {
            *b = (j as u32 ^ i) as u8;
        }
        let pseudo = u32::from(sum(&p[12..20], 0)) + 6 + (20 + payload) as u32;
        let c = !sum(&p[20..], pseudo);
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// A run of one flow's segments, filled the way the writer fills its buffers, is merged
    /// into one write (tun-rs merges only into buffers with room for the whole packet).
    #[test]
    fn filled_buffers_coalesce_a_flow_into_one_write() {
        let mut bufs: Vec<BytesMut> = (0..8)
            .map(|_| BytesMut::with_capacity(WRITE_BUF_CAP))
            .collect();
        let n = fill(&mut bufs, (0..8).map(segment));
        assert_eq!(n, 8);
        let mut to_write = Vec::new();
        tun_rs::handle_gro(
            &mut bufs,
            WRITE_OFFSET,
            &mut Default::default(),
            &mut Default::default(),
            false,
            &mut to_write,
        )
        .expect("gro");
        assert_eq!(to_write.len(), 1, "one coalesced write");
        assert_eq!(bufs[to_write[0]].len(), WRITE_OFFSET + 40 + 8 * 1000);
    }

    #[test]
    fn read_errors_from_parsing_are_not_fatal() {
        assert!(!is_fatal_read(&io::Error::other("bad virtio header")));
        assert!(is_fatal_read(&io::Error::from_raw_os_error(libc::EBADFD)));
    }
}
