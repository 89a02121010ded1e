//! Buyer side: a local SOCKS5 server (CONNECT and UDP ASSOCIATE) and plain port forwards
//! through one seller session, metered, refusing new requests once the session is cut.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::BytesMut;
use shadowsocks::{
    config::ServerType,
    context::{Context, SharedContext},
    relay::{
        Address,
        socks5::{Command, Reply, UdpAssociateHeader},
        tcprelay::proxy_stream::ProxyClientStream,
        udprelay::{ProxySocket, options::UdpSocketControlData},
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    ClientConfig,
    server::RELAY_BUF,
    socks5::{command_name, read_request, reply, unspecified},
};
use crate::{
    ExitPolicy, Meter, TunnelError,
    meter::{MeteredStream, ReadIs},
};

/// Buyer settings.
#[derive(Clone, Debug)]
pub struct BuyerConfig {
    /// SOCKS5 listen address; `127.0.0.1:1080` by default.
    pub listen: SocketAddr,
    /// The session's seller and credentials.
    pub server: ClientConfig,
    /// The seller's announced exit policy, when known: a CONNECT to an address it refuses is
    /// answered at once with "connection not allowed by ruleset" (and a log line naming the
    /// policy) instead of a connection the exit would drop. `None`: every request goes out.
    pub exit: Option<ExitPolicy>,
}

impl BuyerConfig {
    /// SOCKS5 on 127.0.0.1:1080 for `server`.
    pub fn new(server: ClientConfig) -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 1080)),
            server,
            exit: None,
        }
    }
}

struct Shared {
    ctx: SharedContext,
    server: ClientConfig,
    exit: Option<ExitPolicy>,
    /// CONNECTs refused by `exit`.
    refused: std::sync::atomic::AtomicU64,
    meter: Meter,
    /// Cancelled when the session is cut: connections close, new requests are refused.
    cut: CancellationToken,
    shutdown: CancellationToken,
}

/// A running buyer. Dropping it stops its listeners.
pub struct Buyer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

impl Buyer {
    /// Start the SOCKS5 server (needs a tokio runtime).
    pub async fn start(cfg: BuyerConfig) -> Result<Self, TunnelError> {
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| TunnelError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            ctx: Context::new_shared(ServerType::Local),
            server: cfg.server,
            exit: cfg.exit,
            refused: Default::default(),
            meter: Meter::new(),
            cut: CancellationToken::new(),
            shutdown: CancellationToken::new(),
        });
        let s = shared.clone();
        tokio::spawn(async move { accept_loop(s, listener, None).await });
        info!(%local_addr, server = %shared.server.server(), "SOCKS5 proxy listening");
        Ok(Self { shared, local_addr })
    }

    /// Also forward `listen` to `target` through the session (like `ss-tunnel`).
    /// Returns the bound address.
    pub async fn forward(
        &self,
        listen: SocketAddr,
        target: SocketAddr,
    ) -> Result<SocketAddr, TunnelError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| TunnelError::Bind {
                addr: listen,
                source,
            })?;
        let bound = listener.local_addr()?;
        let s = self.shared.clone();
        tokio::spawn(async move { accept_loop(s, listener, Some(target)).await });
        info!(%bound, %target, "port forward listening");
        Ok(bound)
    }

    /// SOCKS5 address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// CONNECTs refused because the seller's announced exit policy refuses their destination.
    pub fn exit_refusals(&self) -> u64 {
        self.shared
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Live meter (payload bytes).
    pub fn meter(&self) -> Meter {
        self.shared.meter.clone()
    }

    /// Cut the session: close open connections, refuse new requests with a SOCKS error.
    pub fn cut(&self, reason: &str) {
        warn!(
            reason,
            "session cut: closing its connections and refusing new requests"
        );
        self.shared.cut.cancel();
    }

    /// Whether [`Buyer::cut`] was called.
    pub fn is_cut(&self) -> bool {
        self.shared.cut.is_cancelled()
    }

    /// The session as an `ss://` URI.
    pub fn uri(&self) -> String {
        self.shared.server.to_uri()
    }

    /// Stop listening and close every connection.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }
}

impl Drop for Buyer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(s: Arc<Shared>, listener: TcpListener, forward: Option<SocketAddr>) {
    loop {
        let r = tokio::select! {
            _ = s.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match r {
            Ok((stream, peer)) => {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let res = match forward {
                        Some(t) => relay_tcp(&s, stream, Address::SocketAddress(t)).await,
                        None => handle_socks(&s, stream).await,
                    };
                    if let Err(e) = res {
                        debug!(%peer, error = %e, "client connection ended");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle_socks(s: &Arc<Shared>, mut stream: TcpStream) -> io::Result<()> {
    let req = read_request(&mut stream).await?;
    if s.cut.is_cancelled() {
        warn!(
            command = command_name(req.command),
            target = %req.address,
            "refused SOCKS request: the session was cut; open a new session"
        );
        return reply(&mut stream, Reply::ConnectionNotAllowed, unspecified()).await;
    }
    match req.command {
        Command::TcpConnect => {
            if let Some(why) = refused_by_exit(s, &req.address) {
                warn!(target = %req.address, "refused: {why}");
                s.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return reply(&mut stream, Reply::ConnectionNotAllowed, unspecified()).await;
            }
            reply(&mut stream, Reply::Succeeded, unspecified()).await?;
            relay_tcp(s, stream, req.address).await
        }
        Command::UdpAssociate => udp_associate(s, stream).await,
        Command::TcpBind => reply(&mut stream, Reply::CommandNotSupported, unspecified()).await,
    }
}

/// Why the seller's announced exit policy refuses `target` (an address; names are resolved,
/// and judged, at the seller).
fn refused_by_exit(s: &Shared, target: &Address) -> Option<String> {
    let (Some(policy), Address::SocketAddress(a)) = (&s.exit, target) else {
        return None;
    };
    let denied = policy.check(a.ip()).err()?;
    Some(format!(
        "the seller's exit policy refuses it ({denied}; it opens {}): choose a seller whose `wayfare offers` exit lists it",
        policy.describe()
    ))
}

async fn relay_tcp(s: &Arc<Shared>, stream: TcpStream, target: Address) -> io::Result<()> {
    if s.cut.is_cancelled() {
        warn!(%target, "refused connection: the session was cut; open a new session");
        return Ok(());
    }
    let mut remote = ProxyClientStream::connect(s.ctx.clone(), &s.server.inner, target.clone())
        .await
        .map_err(|e| {
            warn!(%target, server = %s.server.server(), error = %e, "cannot reach the seller");
            e
        })?;
    // The request header travels with the first payload. Server-first protocols (SMTP,
    // FTP banners) send nothing, so after a short wait send the header alone.
    // (`peek`, not `readable()`: readiness left over from the SOCKS exchange is stale.)
    let mut probe = [0u8; 1];
    if tokio::time::timeout(SERVER_FIRST_WAIT, stream.peek(&mut probe))
        .await
        .is_err()
    {
        // `write_all` skips empty buffers; an empty poll_write sends the header (+ padding).
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut remote).poll_write(cx, &[])).await?;
        remote.flush().await?;
    }
    let mut local = MeteredStream::new(stream, s.meter.clone(), ReadIs::Up);
    tokio::select! {
        r = crate::relay::relay(&mut local, &mut remote, RELAY_BUF) => {
            r.map(|(up, down)| debug!(%target, up, down, "connection closed"))
        }
        _ = s.cut.cancelled() => Ok(()),
        _ = s.shutdown.cancelled() => Ok(()),
    }
}

const SERVER_FIRST_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

static NEXT_UDP_SESSION: AtomicU64 = AtomicU64::new(0);

async fn udp_associate(s: &Arc<Shared>, mut control: TcpStream) -> io::Result<()> {
    let ip = control.local_addr()?.ip();
    let local = UdpSocket::bind((ip, 0)).await?;
    let proxy = match ProxySocket::connect(s.ctx.clone(), &s.server.inner).await {
        Ok(p) => p,
        Err(e) => {
            warn!(server = %s.server.server(), error = %e, "cannot reach the seller over UDP");
            reply(&mut control, Reply::NetworkUnreachable, unspecified()).await?;
            return Ok(());
        }
    };
    reply(&mut control, Reply::Succeeded, local.local_addr()?).await?;
    let mut ctrl = UdpSocketControlData::default();
    ctrl.client_session_id =
        rand::random::<u64>() ^ NEXT_UDP_SESSION.fetch_add(1, Ordering::Relaxed);
    let mut client: Option<SocketAddr> = None;
    let mut lbuf = vec![0u8; 65536];
    let mut pbuf = vec![0u8; 65536];
    let mut ctl_buf = [0u8; 64];
    loop {
        tokio::select! {
            _ = s.cut.cancelled() => break,
            _ = s.shutdown.cancelled() => break,
            r = control.read(&mut ctl_buf) => {
                // The association lives as long as the control connection.
                if matches!(r, Ok(0) | Err(_)) { break; }
            }
            r = local.recv_from(&mut lbuf) => {
                let (n, from) = r?;
                let mut cur = &lbuf[..n];
                let header = match UdpAssociateHeader::read_from(&mut cur).await {
                    Ok(h) if h.frag == 0 => h,
                    _ => { debug!(%from, "dropped a malformed or fragmented SOCKS5 UDP datagram"); continue; }
                };
                client = Some(from);
                ctrl.packet_id = ctrl.packet_id.wrapping_add(1);
                if proxy.send_with_ctrl(&header.address, &ctrl, cur).await.is_ok() {
                    s.meter.add_up(cur.len() as u64);
                }
            }
            r = proxy.recv(&mut pbuf) => {
                let Ok((n, addr, _)) = r else { continue };
                let Some(client) = client else { continue };
                let header = UdpAssociateHeader::new(0, addr);
                let mut out = BytesMut::with_capacity(header.serialized_len() + n);
                header.write_to_buf(&mut out);
                out.extend_from_slice(&pbuf[..n]);
                if local.send_to(&out, client).await.is_ok() {
                    s.meter.add_down(n as u64);
                }
            }
        }
    }
    Ok(())
}
