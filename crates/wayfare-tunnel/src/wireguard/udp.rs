//! The UDP side of a gotatun device, batched: GRO on receive (one `recvmmsg` returns
//! super-datagrams that are split at the kernel's `gso_size`, done by gotatun's socket) and GSO
//! on send (`UDP_SEGMENT`: runs of equal-sized packets to one peer leave as one message, and the
//! messages of a batch leave in one `sendmmsg`). Socket buffers are sized with `SO_*BUFFORCE`
//! (root) so bursts are not dropped at the 208 KiB default.
//!
//! A kernel that refuses GSO (`EINVAL`, or `EIO` on a device without checksum offload) drops
//! this device to one datagram per segment, with one log line (a message too large for its
//! path, `EMSGSIZE`, is resent one by one without giving GSO up); `WAYFARE_UDP_OFFLOAD=off` forces
//! one datagram per syscall both ways. A failed message drops only its own packets: the other
//! peers' packets of the batch still leave.

use std::{
    io,
    mem::{size_of, zeroed},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, RawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use gotatun::{
    packet::{Packet, PacketBufPool},
    udp::{
        UdpRecv, UdpSend, UdpTransportFactory, UdpTransportFactoryParams,
        socket::{SockOpt, UdpSocket},
    },
};
use tokio::io::Interest;

/// Environment switch: `WAYFARE_UDP_OFFLOAD=off` (or `0`) sends and receives one datagram per
/// syscall (no GSO, no GRO, no batches).
pub(crate) const UDP_OFFLOAD_ENV: &str = "WAYFARE_UDP_OFFLOAD";
/// `SO_RCVBUF` / `SO_SNDBUF` asked for (the kernel doubles it).
pub(crate) const SOCKET_BUFFER: usize = 8 << 20;
/// Packets handed to one `send_many_to` (gotatun's send task collects up to this many).
const MAX_BATCH: usize = 128;
/// Segments in one GSO message (the kernel's `UDP_MAX_SEGMENTS`).
const MAX_SEGMENTS: usize = 64;
/// Payload bytes in one GSO message (below the 65,507 a UDP datagram can carry).
const MAX_GSO_BYTES: usize = 65_000;
/// From `linux/udp.h` (not in every libc target).
const UDP_SEGMENT: libc::c_int = 103;

/// How a device's socket moves datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UdpMode {
    /// GRO, GSO and `recvmmsg`/`sendmmsg` batches, where the kernel allows them.
    Batched,
    /// One datagram per syscall.
    PerPacket,
}

impl UdpMode {
    /// `Batched` unless [`UDP_OFFLOAD_ENV`] turns it off.
    pub(crate) fn from_env() -> Self {
        match std::env::var(UDP_OFFLOAD_ENV).as_deref() {
            Ok("off" | "0" | "false" | "no") => Self::PerPacket,
            _ => Self::Batched,
        }
    }
}

/// A [`UdpTransportFactory`] binding gotatun's socket with batched I/O around it.
#[derive(Debug)]
pub(crate) struct BatchUdpFactory {
    mode: UdpMode,
}

impl BatchUdpFactory {
    pub(crate) fn new(mode: UdpMode) -> Self {
        Self { mode }
    }
}

impl UdpTransportFactory for BatchUdpFactory {
    type Send = BatchSend;
    type Recv = BatchRecv;

    async fn bind(
        &mut self,
        params: &UdpTransportFactoryParams,
    ) -> io::Result<(BatchSend, BatchRecv)> {
        let v6 = |only_v6| SockOpt {
            fwmark: params.fwmark,
            only_v6,
            ..SockOpt::default()
        };
        let udp = match params.addr {
            Some(ip) => {
                UdpSocket::bind((ip, params.port).into(), v6(ip.is_ipv6().then_some(true)))?
            }
            None => {
                match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, params.port).into(), v6(Some(false)))
                {
                    Ok(udp) => udp,
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                        ) =>
                    {
                        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, params.port).into(), v6(None))?
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let fd = udp.socket().as_raw_fd();
        size_buffers(fd, SOCKET_BUFFER);
        let batched = self.mode == UdpMode::Batched;
        let gso = batched && gso_supported(fd);
        if batched && let Err(e) = udp.enable_udp_gro() {
            tracing::info!("UDP GRO refused ({e}); datagrams are received one by one in batches");
        }
        if batched && !gso {
            tracing::info!("UDP GSO unavailable; one datagram per segment");
        }
        if !batched {
            tracing::info!("UDP batching disabled by {UDP_OFFLOAD_ENV}; one datagram per syscall");
        }
        let send = BatchSend {
            udp: udp.clone(),
            batched,
            gso: Arc::new(AtomicBool::new(gso)),
        };
        Ok((send, BatchRecv { udp, batched }))
    }
}

/// Ask for `bytes` of socket buffer both ways, past `rmem_max`/`wmem_max` when root.
fn size_buffers(fd: RawFd, bytes: usize) {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if setsockopt_int(fd, libc::SOL_SOCKET, force, v).is_err()
            && let Err(e) = setsockopt_int(fd, libc::SOL_SOCKET, plain, v)
        {
            tracing::debug!("UDP socket buffer not sized: {e}");
        }
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `v` outlives the call and the length given is its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const v).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the kernel knows `UDP_SEGMENT` on this socket.
fn gso_supported(fd: RawFd) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            UDP_SEGMENT,
            (&raw mut v).cast(),
            &raw mut len,
        )
    };
    r == 0
}

/// The receiving half: gotatun's `recvmmsg` + GRO split, or one `recv_from` at a time.
pub(crate) struct BatchRecv {
    udp: UdpSocket,
    batched: bool,
}

/// gotatun's receive buffers (about 25 MiB), allocated on the first batched read.
#[derive(Default)]
pub(crate) struct LazyRecvBuf(Option<Box<<UdpSocket as UdpRecv>::RecvManyBuf>>);

impl UdpRecv for BatchRecv {
    type RecvManyBuf = LazyRecvBuf;

    async fn recv_from(&mut self, pool: &mut PacketBufPool) -> io::Result<(Packet, SocketAddr)> {
        self.udp.recv_from(pool).await
    }

    async fn recv_many_from(
        &mut self,
        buf: &mut LazyRecvBuf,
        pool: &mut PacketBufPool,
        packets: &mut Vec<(Packet, SocketAddr)>,
    ) -> io::Result<()> {
        if !self.batched {
            let p = self.udp.recv_from(pool).await?;
            packets.push(p);
            return Ok(());
        }
        let inner = buf.0.get_or_insert_with(Box::default);
        self.udp.recv_many_from(inner, pool, packets).await
    }
}

/// The sending half: `sendmmsg` of GSO messages.
#[derive(Clone)]
pub(crate) struct BatchSend {
    udp: UdpSocket,
    batched: bool,
    /// Cleared for good (for every clone) when the kernel refuses a GSO message.
    gso: Arc<AtomicBool>,
}

/// Packets `start..end` of a batch sent as one message to one peer; each is `seg` bytes but the
/// last, which may be shorter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) seg: usize,
}

/// Cut a batch (lengths and destinations, in order) into messages; without GSO one each.
pub(crate) fn plan(batch: &[(usize, SocketAddr)], gso: bool, out: &mut Vec<Group>) {
    out.clear();
    for (i, &(len, dst)) in batch.iter().enumerate() {
        if gso && let Some(g) = out.last_mut() {
            let n = g.end - g.start;
            let last_len = batch[g.end - 1].0;
            let joins = batch[g.start].1 == dst
                && len > 0
                && len <= g.seg
                && last_len == g.seg
                && n < MAX_SEGMENTS
                && g.seg * n + len <= MAX_GSO_BYTES;
            if joins {
                g.end = i + 1;
                continue;
            }
        }
        out.push(Group {
            start: i,
            end: i + 1,
            seg: len,
        });
    }
}

impl BatchSend {
    /// Say once that GSO was refused and stop using it on this device.
    fn refuse_gso(&self, e: &io::Error) {
        if self.gso.swap(false, Ordering::Relaxed) {
            tracing::warn!("UDP GSO send refused ({e}); one datagram per segment from now on");
        }
    }
}

/// What a failed GSO message (two or more segments) says about GSO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The kernel or device can't segment (`EIO`: no checksum offload; `EINVAL`): stop using
    /// GSO on this device.
    ForGood,
    /// This path's MTU is below the segment size (`EMSGSIZE`): send this message's packets
    /// one by one, keep GSO for the others (a peer must not slow the other sessions).
    ThisMessage,
    /// Not about GSO (the destination refused it): drop this message only.
    NotGso,
}

pub(crate) fn refusal(e: &io::Error) -> Refusal {
    match e.raw_os_error() {
        Some(libc::EIO | libc::EINVAL) => Refusal::ForGood,
        Some(libc::EMSGSIZE) => Refusal::ThisMessage,
        _ => Refusal::NotGso,
    }
}

impl UdpSend for BatchSend {
    type SendManyBuf = ();

    async fn send_to(&self, packet: Packet, destination: SocketAddr) -> io::Result<()> {
        self.udp.send_to(packet, destination).await
    }

    fn max_number_of_packets_to_send(&self) -> usize {
        if self.batched { MAX_BATCH } else { 1 }
    }

    async fn send_many_to(
        &self,
        _: &mut (),
        packets: &mut Vec<(Packet, SocketAddr)>,
    ) -> io::Result<()> {
        let lens: Vec<(usize, SocketAddr)> = packets.iter().map(|(p, a)| (p.len(), *a)).collect();
        let mut groups = Vec::with_capacity(lens.len());
        plan(&lens, self.gso.load(Ordering::Relaxed), &mut groups);
        let fd = self.udp.socket().as_raw_fd();
        let mut next = 0;
        while next < groups.len() {
            let rest = &groups[next..];
            let sent = self
                .udp
                .socket()
                .async_io(Interest::WRITABLE, || send_groups(fd, packets, rest))
                .await;
            match sent {
                Ok(n) => next += n.max(1),
                Err(e) if rest[0].end - rest[0].start > 1 && refusal(&e) != Refusal::NotGso => {
                    if refusal(&e) == Refusal::ForGood {
                        self.refuse_gso(&e);
                    } else {
                        tracing::debug!(
                            "UDP GSO message too large for its path ({e}); sent one by one"
                        );
                    }
                    // Resend the refused message one datagram per packet.
                    let g = rest[0];
                    let singles = (g.start..g.end).map(|i| Group {
                        start: i,
                        end: i + 1,
                        seg: lens[i].0,
                    });
                    groups.splice(next..=next, singles);
                }
                Err(e) => {
                    // This message's destination refused it; the others still go.
                    tracing::trace!("UDP send to {} failed: {e}", lens[rest[0].start].1);
                    next += 1;
                }
            }
        }
        packets.clear();
        Ok(())
    }

    fn local_addr(&self) -> io::Result<Option<SocketAddr>> {
        self.udp.local_addr().map(Some)
    }

    fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        UdpSend::set_fwmark(&self.udp, mark)
    }
}

/// Room for one `UDP_SEGMENT` control message (a `u16`), aligned for `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct SegCmsg([u8; 32]);

/// One `sendmmsg` of `groups`; returns how many messages the kernel took.
fn send_groups(fd: RawFd, packets: &[(Packet, SocketAddr)], groups: &[Group]) -> io::Result<usize> {
    let groups = &groups[..groups.len().min(1024)];
    let iov: Vec<libc::iovec> = packets
        .iter()
        .map(|(p, _)| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    let mut iov = iov;
    let mut addrs: Vec<(libc::sockaddr_storage, libc::socklen_t)> = groups
        .iter()
        .map(|g| sockaddr(packets[g.start].1))
        .collect();
    let mut cmsgs = vec![SegCmsg([0; 32]); groups.len()];
    // SAFETY: an all-zero mmsghdr is a valid empty message.
    let mut msgs: Vec<libc::mmsghdr> = (0..groups.len()).map(|_| unsafe { zeroed() }).collect();
    for (i, g) in groups.iter().enumerate() {
        let h = &mut msgs[i].msg_hdr;
        h.msg_name = (&raw mut addrs[i].0).cast();
        h.msg_namelen = addrs[i].1;
        h.msg_iov = iov[g.start..g.end].as_mut_ptr();
        h.msg_iovlen = g.end - g.start;
        if g.end - g.start > 1 {
            set_segment(h, &mut cmsgs[i], g.seg);
        }
    }
    // SAFETY: every pointer in `msgs` points into `iov`, `addrs`, `cmsgs` or the packets, all
    // alive and unmoved until the call returns.
    let n = unsafe {
        libc::sendmmsg(
            fd,
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Attach `UDP_SEGMENT = seg` to message `h`, using `room` for the control data.
fn set_segment(h: &mut libc::msghdr, room: &mut SegCmsg, seg: usize) {
    let seg = u16::try_from(seg).unwrap_or(u16::MAX);
    // SAFETY: `room` is aligned and larger than CMSG_SPACE(2); the header and data are written
    // inside it, at the offsets the CMSG macros give.
    unsafe {
        h.msg_control = room.0.as_mut_ptr().cast();
        h.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
        let c = libc::CMSG_FIRSTHDR(h);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
    }
}

/// A socket address in the kernel's layout.
fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid; it is large enough and aligned for both
    // sockaddr_in and sockaddr_in6.
    let mut s: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match a {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: see above.
            unsafe { std::ptr::write((&raw mut s).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: see above.
            unsafe { std::ptr::write((&raw mut s).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (s, len as libc::socklen_t)
}

#[cfg(test)]
#[path = "udp_tests.rs"]
mod tests;
