//! The seller's UDP side: decrypt with the current user table, drop replayed AEAD-2022
//! packets (a sliding window per client session id), one association per (client address,
//! client session id) up to a cap per session, metered, closed when the session is removed.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use shadowsocks::relay::{
    Address,
    udprelay::{
        crypto_io::{decrypt_client_payload, encrypt_server_payload},
        options::UdpSocketControlData,
    },
};
use tokio::{net::UdpSocket, sync::mpsc};
use tracing::{debug, warn};

use super::{
    replay::PacketWindow,
    server::{PortServer, Session, resolve_allowed},
};

const ASSOC_IDLE: Duration = Duration::from_secs(120);
const MAX_DATAGRAM: usize = 65536;

struct Assoc {
    tx: mpsc::Sender<(Address, Bytes)>,
    session: Arc<Session>,
}

/// Replay windows of a port: (session id, client session id) -> window and last use. Keyed
/// without the client's address, so a datagram replayed from elsewhere meets the same window.
#[derive(Default)]
struct Windows {
    map: HashMap<(String, u64), (PacketWindow, Instant)>,
}

impl Windows {
    /// Whether this packet id of this client session is new.
    fn accept(&mut self, session: &str, client_session: u64, packet_id: u64) -> bool {
        let now = Instant::now();
        if self.map.len() >= 4096 {
            // A window may go once its packets' timestamps (±30 s) can no longer pass.
            self.map
                .retain(|_, (_, seen)| now.duration_since(*seen) < WINDOW_KEEP);
        }
        let (w, seen) = self
            .map
            .entry((session.to_owned(), client_session))
            .or_insert_with(|| (PacketWindow::default(), now));
        *seen = now;
        w.accept(packet_id)
    }
}

/// How long an idle replay window is kept: longer than the ±30 s timestamp check.
const WINDOW_KEEP: Duration = Duration::from_secs(120);

impl PortServer {
    pub(crate) async fn udp_loop(self: Arc<Self>, sock: Arc<UdpSocket>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        // Keyed by the session too (its Arc's address, stable while the Assoc holds it): two
        // sessions behind one NAT address may pick the same client session id.
        let mut assocs: HashMap<(SocketAddr, u64, usize), Assoc> = HashMap::new();
        let mut windows = Windows::default();
        // Garbage must not flood the log: at most 16 lines per minute.
        let mut bad_logged = 0u32;
        let mut bad_window = tokio::time::Instant::now();
        loop {
            let (n, peer) = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                r = sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        debug!(error = %e, "udp recv failed");
                        continue;
                    }
                },
            };
            let um = self.user_manager();
            let decrypted = decrypt_client_payload(
                &self.ctx,
                self.method,
                self.port_key(),
                &mut buf[..n],
                um.as_deref(),
            );
            let (len, target, ctrl) = match decrypted {
                Ok(x) => x,
                Err(e) => {
                    if bad_window.elapsed() > Duration::from_secs(60) {
                        bad_window = tokio::time::Instant::now();
                        bad_logged = 0;
                    }
                    if bad_logged < 16 {
                        bad_logged += 1;
                        warn!(%peer, error = %e, "dropped a UDP packet that is not shadowsocks with a current session key; other sessions are unaffected");
                    }
                    continue;
                }
            };
            let user_key = ctrl.as_ref().and_then(|c| c.user.as_ref().map(|u| u.key()));
            let Some(session) = self.session_for(user_key) else {
                debug!(%peer, "dropped a UDP packet for a removed session");
                continue;
            };
            // Only AEAD-2022 packets carry a session and packet id (legacy ciphers: none).
            if let Some(c) = ctrl.as_ref()
                && !windows.accept(&session.id, c.client_session_id, c.packet_id)
            {
                debug!(session = %session.id, %peer, packet_id = c.packet_id, "dropped a replayed or too old UDP packet");
                continue;
            }
            let ctrl = ctrl.unwrap_or_default();
            let key = (peer, ctrl.client_session_id, Arc::as_ptr(&session) as usize);
            if assocs.get(&key).is_none_or(|a| a.tx.is_closed()) {
                if assocs.len() > 4096 {
                    assocs.retain(|_, a| !a.tx.is_closed());
                }
                let held = assocs
                    .values()
                    .filter(|a| Arc::ptr_eq(&a.session, &session) && !a.tx.is_closed())
                    .count();
                if held >= self.udp_assoc_cap {
                    if !session.udp_cap_logged.swap(true, Ordering::Relaxed) {
                        warn!(session = %session.id, cap = self.udp_assoc_cap, "session reached its cap of UDP associations; datagrams opening more are dropped until some close (idle 120 s)");
                    }
                    continue;
                }
                let (tx, rx) = mpsc::channel(256);
                let me = self.clone();
                let sock = sock.clone();
                let s = session.clone();
                tokio::spawn(async move { me.run_assoc(sock, peer, ctrl, s, rx).await });
                assocs.insert(key, Assoc { tx, session });
            }
            if let Some(a) = assocs.get(&key) {
                // Full queue: drop the datagram, as a congested link would.
                let _ = a.tx.try_send((target, Bytes::copy_from_slice(&buf[..len])));
            }
        }
        debug!("seller udp loop stopped");
    }

    async fn run_assoc(
        self: Arc<Self>,
        sock: Arc<UdpSocket>,
        peer: SocketAddr,
        client_ctrl: UdpSocketControlData,
        session: Arc<Session>,
        mut rx: mpsc::Receiver<(Address, Bytes)>,
    ) {
        let mut out_v4: Option<UdpSocket> = None;
        let mut out_v6: Option<UdpSocket> = None;
        let mut ctrl = UdpSocketControlData::default();
        ctrl.client_session_id = client_ctrl.client_session_id;
        ctrl.server_session_id = rand::random();
        ctrl.user = client_ctrl.user.clone();
        let key: Box<[u8]> = match &client_ctrl.user {
            Some(u) => u.key().into(),
            None => self.port_key().into(),
        };
        let mut rbuf4 = vec![0u8; MAX_DATAGRAM];
        let mut rbuf6 = vec![0u8; MAX_DATAGRAM];
        loop {
            let idle = tokio::time::sleep(ASSOC_IDLE);
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = session.cancel.cancelled() => {
                    debug!(session = %session.id, %peer, "UDP association cut: session removed");
                    break;
                }
                _ = idle => break,
                msg = rx.recv() => {
                    let Some((target, payload)) = msg else { break };
                    let addrs = match resolve_allowed(&self.policy, &target).await {
                        Ok(a) => a,
                        Err(e) => {
                            warn!(session = %session.id, %target, "UDP datagram refused: {e}");
                            continue;
                        }
                    };
                    let dst = addrs[0];
                    let slot = if dst.is_ipv4() { &mut out_v4 } else { &mut out_v6 };
                    if slot.is_none() {
                        let bind: SocketAddr = if dst.is_ipv4() {
                            (Ipv4Addr::UNSPECIFIED, 0).into()
                        } else {
                            (Ipv6Addr::UNSPECIFIED, 0).into()
                        };
                        match UdpSocket::bind(bind).await {
                            Ok(s) => *slot = Some(s),
                            Err(e) => {
                                warn!(error = %e, "cannot open an outbound UDP socket");
                                continue;
                            }
                        }
                    }
                    if let Some(s) = slot.as_ref()
                        && s.send_to(&payload, dst).await.is_ok()
                    {
                        session.meter.add_up(payload.len() as u64);
                    }
                }
                r = recv_opt(out_v4.as_ref(), &mut rbuf4) => {
                    if let Ok((n, from)) = r {
                        self.reply(&sock, peer, &mut ctrl, &key, from, &rbuf4[..n], &session).await;
                    }
                }
                r = recv_opt(out_v6.as_ref(), &mut rbuf6) => {
                    if let Ok((n, from)) = r {
                        self.reply(&sock, peer, &mut ctrl, &key, from, &rbuf6[..n], &session).await;
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn reply(
        &self,
        sock: &UdpSocket,
        peer: SocketAddr,
        ctrl: &mut UdpSocketControlData,
        key: &[u8],
        from: SocketAddr,
        payload: &[u8],
        session: &Session,
    ) {
        ctrl.packet_id = ctrl.packet_id.wrapping_add(1);
        let mut out = BytesMut::with_capacity(payload.len() + 128);
        encrypt_server_payload(
            &self.ctx,
            self.method,
            key,
            &Address::SocketAddress(from),
            ctrl,
            payload,
            &mut out,
        );
        if sock.send_to(&out, peer).await.is_ok() {
            session.meter.add_down(payload.len() as u64);
        }
    }
}

async fn recv_opt(s: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match s {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}
