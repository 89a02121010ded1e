//! The TUN side of a gotatun device: a tun-rs device wrapped so that every packet passes a
//! hook (exit policy, session meters, the buyer's inbound filter) before it is delivered.
//! With TUN offload (see `offload`) every segment of a super-packet passes the hook on its
//! own, so meters and filters see exactly the packets the per-packet path would.

use std::{io, net::Ipv4Addr, sync::Arc};

use gotatun::{
    packet::{Ip, Packet, PacketBufPool},
    tun::{IpRecv, IpSend, MtuWatcher},
};
use tun_rs::AsyncDevice;

use super::offload::{self, RxBufs, Writer};
use crate::TunnelError;

/// What a side does with packets crossing its TUN.
pub(crate) trait Hooks: Send + Sync + 'static {
    /// A packet decrypted from a peer, about to be written to the kernel. `false` drops it.
    fn on_decrypted(&self, pkt: &[u8]) -> bool;
    /// A packet the kernel routed into the tunnel, about to be encrypted. `false` drops it.
    fn on_routed(&self, pkt: &[u8]) -> bool;
}

/// A TUN device plus hooks, usable as gotatun's `IpSend` and `IpRecv`.
pub(crate) struct TunIo<H> {
    tun: Arc<AsyncDevice>,
    hooks: Arc<H>,
    mtu: u16,
    /// The device carries virtio headers (offload on).
    offload: bool,
    /// This clone's read buffers and the packets of its last read (offload only).
    rx: Option<Box<RxBufs>>,
    out: Vec<Packet<Ip>>,
    /// This clone's batching writer, spawned on its first send (offload only).
    writer: Option<Writer>,
}

impl<H> Clone for TunIo<H> {
    fn clone(&self) -> Self {
        Self {
            tun: self.tun.clone(),
            hooks: self.hooks.clone(),
            mtu: self.mtu,
            offload: self.offload,
            rx: None,
            out: Vec::new(),
            writer: None,
        }
    }
}

impl<H: Hooks> TunIo<H> {
    /// Create TUN `name` with `addr/prefix` and `mtu`, up, in this thread's namespace.
    pub(crate) fn create(
        name: &str,
        addr: Ipv4Addr,
        prefix: u8,
        mtu: u16,
        hooks: Arc<H>,
    ) -> Result<Self, TunnelError> {
        let (tun, offload) = offload::open_tun(name, addr, prefix, mtu)?;
        Ok(Self {
            tun: Arc::new(tun),
            hooks,
            mtu,
            offload,
            rx: None,
            out: Vec::new(),
            writer: None,
        })
    }

    /// One TUN read, split into segments; the hooked-through ones land in `self.out`.
    async fn read_segments(&mut self, pool: &mut PacketBufPool) -> io::Result<()> {
        let rx = self
            .rx
            .get_or_insert_with(|| Box::new(RxBufs::new(self.mtu)));
        let n = match self
            .tun
            .recv_multiple(&mut rx.original, &mut rx.bufs, &mut rx.sizes, 0)
            .await
        {
            Ok(n) => n,
            Err(e) if offload::is_fatal_read(&e) => return Err(e),
            Err(e) => {
                offload::note_bad_read(&e);
                return Ok(());
            }
        };
        for (buf, &size) in rx.bufs.iter().zip(&rx.sizes).take(n) {
            let Some(seg) = buf.get(..size) else { continue };
            if !self.hooks.on_routed(seg) {
                continue;
            }
            let mut packet = pool.get();
            packet.truncate(0);
            packet.buf_mut().extend_from_slice(seg);
            if let Ok(p) = packet.try_into_ip() {
                self.out.push(p);
            }
        }
        Ok(())
    }

    /// One read without offload: one packet.
    async fn read_one(&mut self, pool: &mut PacketBufPool) -> io::Result<()> {
        let mut packet = pool.get();
        let n = self.tun.recv(&mut packet).await?;
        packet.truncate(n);
        if !self.hooks.on_routed(&packet.as_ref()[..n]) {
            return Ok(());
        }
        if let Ok(p) = packet.try_into_ip() {
            self.out.push(p);
        }
        Ok(())
    }
}

impl<H: Hooks> IpSend for TunIo<H> {
    async fn send(&mut self, packet: Packet<Ip>) -> io::Result<()> {
        let bytes = packet.into_bytes();
        // The hook sees each packet before any coalescing, so filters and meters stay per packet.
        if !self.hooks.on_decrypted(bytes.as_ref()) {
            return Ok(());
        }
        if self.offload {
            let tun = &self.tun;
            let writer = self
                .writer
                .get_or_insert_with(|| Writer::spawn(tun.clone()));
            writer.send(bytes).await
        } else {
            self.tun.send(bytes.as_ref()).await.map(|_| ())
        }
    }
}

impl<H: Hooks> IpRecv for TunIo<H> {
    async fn recv<'a>(
        &'a mut self,
        pool: &mut PacketBufPool,
    ) -> io::Result<impl Iterator<Item = Packet<Ip>> + Send + 'a> {
        self.out.clear();
        while self.out.is_empty() {
            if self.offload {
                self.read_segments(pool).await?;
            } else {
                self.read_one(pool).await?;
            }
        }
        Ok(self.out.drain(..))
    }

    fn mtu(&self) -> MtuWatcher {
        MtuWatcher::new(self.mtu)
    }
}

/// The fields of an IPv4 packet the hooks look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct V4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// Source and destination port for TCP/UDP, (type, code) for ICMP, else 0.
    pub sport: u16,
    pub dport: u16,
    /// Offset of the transport header.
    pub l4: usize,
}

/// Parse an IPv4 header; `None` for IPv6 and garbage.
pub(crate) fn parse_v4(p: &[u8]) -> Option<V4> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return None;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let proto = p[9];
    let frag_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
    let (sport, dport) = match (proto, p.get(ihl..ihl + 4)) {
        (6 | 17, Some(h)) if frag_offset == 0 => (
            u16::from_be_bytes([h[0], h[1]]),
            u16::from_be_bytes([h[2], h[3]]),
        ),
        (1, Some(h)) if frag_offset == 0 => (u16::from(h[0]), u16::from(h[1])),
        _ => (0, 0),
    };
    Some(V4 {
        src,
        dst,
        proto,
        sport,
        dport,
        l4: ihl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_udp_header() {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[9] = 17;
        p[12..16].copy_from_slice(&[198, 19, 0, 2]);
        p[16..20].copy_from_slice(&[198, 18, 2, 2]);
        p[20..24].copy_from_slice(&[0x30, 0x39, 0, 53]);
        let v = parse_v4(&p).expect("v4");
        assert_eq!(v.src, Ipv4Addr::new(198, 19, 0, 2));
        assert_eq!((v.proto, v.sport, v.dport), (17, 12345, 53));
        assert!(parse_v4(&[0x60; 40]).is_none());
        assert!(parse_v4(&[0x45; 10]).is_none());
    }
}
