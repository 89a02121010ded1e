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
    tx: mpsc::Sender<BytesMut>,
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

    /// Queue one IP packet (copied behind the virtio header room).
    pub(crate) async fn send(&self, pkt: &[u8]) -> io::Result<()> {
        let mut b = BytesMut::with_capacity(WRITE_OFFSET + pkt.len());
        b.resize(WRITE_OFFSET, 0);
        b.extend_from_slice(pkt);
        self.tx
            .send(b)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "TUN writer stopped"))
    }
}

async fn write_loop(tun: Arc<AsyncDevice>, mut rx: mpsc::Receiver<BytesMut>) {
    let mut gro = GROTable::default();
    let mut batch = Vec::with_capacity(IDEAL_BATCH_SIZE);
    let mut coalesce = true;
    let mut said_write_error = false;
    while rx.recv_many(&mut batch, IDEAL_BATCH_SIZE).await > 0 {
        if coalesce {
            if let Err(e) = tun.send_multiple(&mut gro, &mut batch, WRITE_OFFSET).await {
                // The batch may be half written and half merged: drop it (the senders
                // retransmit) and write packet by packet from now on.
                tracing::warn!("coalesced TUN write refused ({e}); packet-by-packet writes");
                coalesce = false;
            }
        } else {
            for b in &mut batch {
                // A zero virtio header: no GSO, no checksum to complete.
                b[..WRITE_OFFSET].fill(0);
                if let Err(e) = tun.send(b).await
                    && !said_write_error
                {
                    tracing::warn!("TUN write failed: {e}");
                    said_write_error = true;
                }
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_errors_from_parsing_are_not_fatal() {
        assert!(!is_fatal_read(&io::Error::other("bad virtio header")));
        assert!(is_fatal_read(&io::Error::from_raw_os_error(libc::EBADFD)));
    }
}
