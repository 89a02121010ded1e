//! Legacy seller for clients without AEAD-2022: one port per session with
//! `chacha20-ietf-poly1305`, same metering and cutting as [`super::Seller`].

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use rand::RngCore;
use shadowsocks::{ServerConfig, config::ServerType, context::Context, crypto::CipherKind};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{
    CIPHER_LEGACY, ClientConfig,
    server::{Auth, DEFAULT_UDP_ASSOC_CAP, PortServer, Session, lock},
};
use crate::{ExitPolicy, Meter, MeterSnapshot, TunnelError};

/// A set of single-session ports. Dropping it closes every port.
pub struct LegacySeller {
    policy: ExitPolicy,
    public_host: Option<String>,
    ports: Mutex<HashMap<String, Arc<PortServer>>>,
    shutdown: CancellationToken,
}

impl LegacySeller {
    /// `public_host` is the host buyers dial (defaults to each port's bound IP).
    pub fn new(exit_policy: ExitPolicy, public_host: Option<String>) -> Self {
        let policy = exit_policy.guarding_this_host();
        if let (Some(own), Some(ip)) = (
            policy.local_addrs(),
            public_host.as_deref().and_then(|h| h.parse().ok()),
        ) {
            own.pin([ip]);
        }
        Self {
            policy,
            public_host,
            ports: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
        }
    }

    /// Open a port for session `id` (port 0 picks one) with a fresh random password.
    pub async fn add_session(
        &self,
        id: &str,
        listen: SocketAddr,
    ) -> Result<ClientConfig, TunnelError> {
        let mut pw = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut pw);
        self.add_session_with_password(id, listen, &STANDARD.encode(pw))
            .await
    }

    /// Open a port for session `id` with a given password.
    pub async fn add_session_with_password(
        &self,
        id: &str,
        listen: SocketAddr,
        password: &str,
    ) -> Result<ClientConfig, TunnelError> {
        if lock(&self.ports).contains_key(id) {
            return Err(TunnelError::DuplicateSession(id.to_owned()));
        }
        let (tcp, udp) = PortServer::bind(listen).await?;
        let local = tcp.local_addr()?;
        let cfg = ServerConfig::new(local, password, CipherKind::CHACHA20_POLY1305)
            .map_err(|e| TunnelError::BadKey(e.to_string()))?;
        let cancel = self.shutdown.child_token();
        let server = Arc::new(PortServer {
            ctx: Context::new_shared(ServerType::Server),
            method: CipherKind::CHACHA20_POLY1305,
            auth: Auth::Single {
                key: cfg.key().to_vec().into_boxed_slice(),
                session: Arc::new(Session::new(id, cancel.clone())),
            },
            policy: self.policy.clone(),
            udp_assoc_cap: DEFAULT_UDP_ASSOC_CAP,
            shutdown: cancel,
        });
        {
            let mut ports = lock(&self.ports);
            if ports.contains_key(id) {
                return Err(TunnelError::DuplicateSession(id.to_owned()));
            }
            ports.insert(id.to_owned(), server.clone());
        }
        server.spawn(tcp, udp);
        info!(session = id, %local, cipher = CIPHER_LEGACY, "legacy session port open");
        let host = match &self.public_host {
            Some(h) => format!("{h}:{}", local.port()),
            None => local.to_string(),
        };
        ClientConfig::new(&host, CIPHER_LEGACY, password)
    }

    /// Close the session's port and its connections; returns the final meter.
    pub fn remove_session(&self, id: &str) -> Result<MeterSnapshot, TunnelError> {
        let server = lock(&self.ports)
            .remove(id)
            .ok_or_else(|| TunnelError::UnknownSession(id.to_owned()))?;
        server.shutdown.cancel();
        let snap = match &server.auth {
            Auth::Single { session, .. } => session.meter.snapshot(),
            Auth::Multi { .. } => MeterSnapshot::default(),
        };
        info!(
            session = id,
            up = snap.up,
            down = snap.down,
            "legacy session removed; port closed"
        );
        Ok(snap)
    }

    /// Live meter of a session.
    pub fn meter(&self, id: &str) -> Option<Meter> {
        match &lock(&self.ports).get(id)?.auth {
            Auth::Single { session, .. } => Some(session.meter.clone()),
            Auth::Multi { .. } => None,
        }
    }

    /// Close every port.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for LegacySeller {
    fn drop(&mut self) {
        self.shutdown();
    }
}
