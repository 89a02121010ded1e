//! The seller's port: TCP accept loop on `ProxyServerStream`, session lookup by user key,
//! exit policy, metered relay, and cutting a session's connections.

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, atomic::AtomicBool},
    time::Duration,
};

use arc_swap::ArcSwap;
use shadowsocks::{
    config::{ServerUser, ServerUserManager},
    context::SharedContext,
    crypto::CipherKind,
    relay::{Address, tcprelay::proxy_stream::ProxyServerStream},
};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    ExitPolicy, Meter, TunnelError,
    meter::{MeteredStream, ReadIs},
};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Relay buffer. Below 0xFFFF on purpose: with AEAD-2022 the first write carries the request
/// header, whose length field is 16 bits and must also fit the address (<= 259 bytes) and
/// padding (<= 900 bytes); a 64 KiB first write overflowed it and the seller reset the
/// connection (seen with clients that send > 64 KiB right after CONNECT).
pub(crate) const RELAY_BUF: usize = 60 * 1024;

/// One buyer session as the seller sees it.
#[derive(Debug)]
pub(crate) struct Session {
    pub id: String,
    pub meter: Meter,
    pub cancel: CancellationToken,
    /// Set once the UDP association cap was logged for this session.
    pub udp_cap_logged: AtomicBool,
}

impl Session {
    pub fn new(id: &str, cancel: CancellationToken) -> Self {
        Self {
            id: id.to_owned(),
            meter: Meter::new(),
            cancel,
            udp_cap_logged: AtomicBool::new(false),
        }
    }
}

/// uPSK -> (session, its `ServerUser`).
pub(crate) type SessionTable = HashMap<Vec<u8>, (Arc<Session>, ServerUser)>;

/// How a port authenticates clients.
pub(crate) enum Auth {
    /// AEAD-2022 with EIH: iPSK for the port, one uPSK per session.
    Multi {
        ipsk: Box<[u8]>,
        users: ArcSwap<ServerUserManager>,
        /// uPSK -> session, and the session's `ServerUser`.
        sessions: Mutex<SessionTable>,
    },
    /// One key, one session (legacy ciphers).
    Single {
        key: Box<[u8]>,
        session: Arc<Session>,
    },
}

pub(crate) struct PortServer {
    pub ctx: SharedContext,
    pub method: CipherKind,
    pub auth: Auth,
    pub policy: ExitPolicy,
    /// Most UDP associations one session may hold at once.
    pub udp_assoc_cap: usize,
    pub shutdown: CancellationToken,
}

/// Default for [`PortServer::udp_assoc_cap`] (a DNS-heavy client uses a few dozen).
pub const DEFAULT_UDP_ASSOC_CAP: usize = 256;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PortServer {
    /// Key used with the cipher for the port (iPSK, or the single session's key).
    pub fn port_key(&self) -> &[u8] {
        match &self.auth {
            Auth::Multi { ipsk, .. } => ipsk,
            Auth::Single { key, .. } => key,
        }
    }

    pub fn user_manager(&self) -> Option<Arc<ServerUserManager>> {
        match &self.auth {
            Auth::Multi { users, .. } => Some(users.load_full()),
            Auth::Single { .. } => None,
        }
    }

    /// The live session a client authenticated as, if any.
    pub fn session_for(&self, user_key: Option<&[u8]>) -> Option<Arc<Session>> {
        let s = match &self.auth {
            Auth::Multi { sessions, .. } => lock(sessions).get(user_key?).map(|(s, _)| s.clone()),
            Auth::Single { session, .. } => Some(session.clone()),
        }?;
        (!s.cancel.is_cancelled()).then_some(s)
    }

    /// Rebuild the user manager from the session table (after add or remove).
    pub fn publish_users(&self) {
        if let Auth::Multi {
            users, sessions, ..
        } = &self.auth
        {
            let mut um = ServerUserManager::new();
            for (_, user) in lock(sessions).values() {
                um.add_user(user.clone());
            }
            users.store(Arc::new(um));
        }
    }

    /// Bind TCP and UDP on the same port.
    pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, UdpSocket), TunnelError> {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| TunnelError::Bind { addr, source })?;
        let tcp_addr = tcp.local_addr()?;
        let udp = UdpSocket::bind(tcp_addr)
            .await
            .map_err(|source| TunnelError::Bind {
                addr: tcp_addr,
                source,
            })?;
        Ok((tcp, udp))
    }

    /// Run the TCP and UDP loops until `shutdown` is cancelled.
    pub fn spawn(self: &Arc<Self>, tcp: TcpListener, udp: UdpSocket) {
        let me = self.clone();
        tokio::spawn(async move { me.tcp_loop(tcp).await });
        let me = self.clone();
        tokio::spawn(async move { me.udp_loop(Arc::new(udp)).await });
    }

    async fn tcp_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let me = self.clone();
                    tokio::spawn(async move { me.handle_tcp(stream, peer).await });
                }
                Err(e) => {
                    warn!(error = %e, "accept failed; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        debug!("seller tcp loop stopped");
    }

    async fn handle_tcp(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let mut ss = ProxyServerStream::from_stream_with_user_manager(
            self.ctx.clone(),
            stream,
            self.method,
            self.port_key(),
            self.user_manager(),
        );
        let target = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            r = tokio::time::timeout(HANDSHAKE_TIMEOUT, ss.handshake()) => r,
        };
        let target = match target {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                warn!(%peer, error = %e, "rejected a TCP client that is not speaking shadowsocks with a current session key; other sessions are unaffected");
                return;
            }
            Err(_) => {
                warn!(%peer, "rejected a TCP client that sent no complete shadowsocks request within 10 s");
                return;
            }
        };
        let Some(session) = self.session_for(ss.user_key()) else {
            info!(%peer, %target, "refused a connection for a removed session");
            return;
        };
        let cancel = session.cancel.clone();
        let relay = async {
            let addrs = resolve_allowed(&self.policy, &target).await?;
            let out = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addrs[..]))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            let _ = out.set_nodelay(true);
            let mut out = MeteredStream::new(out, session.meter.clone(), ReadIs::Down);
            crate::relay::relay(&mut ss, &mut out, RELAY_BUF).await
        };
        tokio::select! {
            r = relay => match r {
                Ok((up, down)) => debug!(session = %session.id, %target, up, down, "connection closed"),
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    warn!(session = %session.id, %target, "exit policy refused: {e}");
                }
                Err(e) => debug!(session = %session.id, %target, error = %e, "connection ended"),
            },
            _ = cancel.cancelled() => debug!(session = %session.id, %target, "connection cut: session removed"),
            _ = self.shutdown.cancelled() => {}
        }
    }
}

/// Resolve `target` and keep only the addresses the exit policy allows.
pub(crate) async fn resolve_allowed(
    policy: &ExitPolicy,
    target: &Address,
) -> io::Result<Vec<SocketAddr>> {
    let candidates: Vec<SocketAddr> = match target {
        Address::SocketAddress(sa) => vec![*sa],
        Address::DomainNameAddress(host, port) => tokio::net::lookup_host((host.as_str(), *port))
            .await?
            .collect(),
    };
    let mut denied = None;
    let allowed: Vec<SocketAddr> = candidates
        .into_iter()
        .filter(|sa| match policy.check(sa.ip()) {
            Ok(()) => true,
            Err(d) => {
                denied = Some(d);
                false
            }
        })
        .collect();
    match (allowed.is_empty(), denied) {
        (true, Some(d)) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            d.to_string(),
        )),
        (true, None) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{target} resolved to no address"),
        )),
        (false, _) => Ok(allowed),
    }
}
