//! Multi-user seller: one TCP+UDP port, `2022-blake3-aes-256-gcm`, one uPSK per session.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use arc_swap::ArcSwap;
use shadowsocks::{
    config::{ServerType, ServerUser, ServerUserManager},
    context::Context,
    crypto::CipherKind,
};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{
    CIPHER_2022, ClientConfig, SessionKey,
    server::{Auth, DEFAULT_UDP_ASSOC_CAP, PortServer, Session, lock},
};
use crate::{ExitPolicy, Meter, MeterSnapshot, TunnelError};

/// Seller settings.
#[derive(Clone, Debug)]
pub struct SellerConfig {
    /// TCP+UDP listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// `HOST:PORT` buyers should dial; defaults to the bound address.
    pub public_addr: Option<String>,
    /// Destinations buyers may reach.
    pub exit_policy: ExitPolicy,
    /// The port's identity key (iPSK); a fresh one when `None`.
    pub identity_key: Option<SessionKey>,
    /// Most UDP associations (client address + client session id) one session may hold.
    pub max_udp_assocs_per_session: usize,
}

impl SellerConfig {
    /// Listen on `listen` with the default exit policy and a fresh iPSK.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            public_addr: None,
            exit_policy: ExitPolicy::new(),
            identity_key: None,
            max_udp_assocs_per_session: DEFAULT_UDP_ASSOC_CAP,
        }
    }
}

/// A running multi-user seller. Dropping it stops the port and cuts every session.
pub struct Seller {
    server: Arc<PortServer>,
    ipsk: SessionKey,
    local_addr: SocketAddr,
    public_addr: String,
    ids: Mutex<HashMap<String, Vec<u8>>>,
}

impl Seller {
    /// Bind the port and start serving (needs a tokio runtime).
    pub async fn bind(cfg: SellerConfig) -> Result<Self, TunnelError> {
        let (tcp, udp) = PortServer::bind(cfg.listen).await?;
        let local_addr = tcp.local_addr()?;
        let ipsk = cfg.identity_key.unwrap_or_else(SessionKey::generate);
        let policy = cfg.exit_policy.guarding_this_host();
        if let Some(own) = policy.local_addrs() {
            // The address buyers dial, also when it is a NAT's and on no interface here.
            let public = cfg
                .public_addr
                .as_deref()
                .and_then(|a| a.parse::<SocketAddr>().ok());
            own.pin(public.map(|a| a.ip()).into_iter().chain([local_addr.ip()]));
        }
        let server = Arc::new(PortServer {
            ctx: Context::new_shared(ServerType::Server),
            method: CipherKind::AEAD2022_BLAKE3_AES_256_GCM,
            auth: Auth::Multi {
                ipsk: ipsk.as_bytes().to_vec().into_boxed_slice(),
                users: ArcSwap::from_pointee(ServerUserManager::new()),
                sessions: Mutex::new(HashMap::new()),
            },
            policy,
            udp_assoc_cap: cfg.max_udp_assocs_per_session.max(1),
            shutdown: CancellationToken::new(),
        });
        server.spawn(tcp, udp);
        info!(%local_addr, cipher = CIPHER_2022, "shadowsocks seller listening (TCP+UDP)");
        Ok(Self {
            server,
            ipsk,
            local_addr,
            public_addr: cfg.public_addr.unwrap_or_else(|| local_addr.to_string()),
            ids: Mutex::new(HashMap::new()),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Add a session with a fresh user key; returns what the buyer needs.
    pub fn add_session(&self, id: &str) -> Result<ClientConfig, TunnelError> {
        self.add_session_with_key(id, SessionKey::generate())
    }

    /// Add a session with a given user key (uPSK).
    pub fn add_session_with_key(
        &self,
        id: &str,
        upsk: SessionKey,
    ) -> Result<ClientConfig, TunnelError> {
        let Auth::Multi { sessions, .. } = &self.server.auth else {
            return Err(TunnelError::UnsupportedCipher("single-key port".into()));
        };
        let mut ids = lock(&self.ids);
        if ids.contains_key(id) {
            return Err(TunnelError::DuplicateSession(id.to_owned()));
        }
        let key = upsk.as_bytes().to_vec();
        {
            let mut table = lock(sessions);
            if table.contains_key(&key) {
                return Err(TunnelError::BadKey(
                    "this user key is already in use".into(),
                ));
            }
            let session = Arc::new(Session::new(id, self.server.shutdown.child_token()));
            table.insert(key.clone(), (session, ServerUser::new(id, key.clone())));
        }
        ids.insert(id.to_owned(), key);
        drop(ids);
        self.server.publish_users();
        info!(session = id, "session added");
        let password = format!("{}:{}", self.ipsk.to_base64(), upsk.to_base64());
        ClientConfig::new(&self.public_addr, CIPHER_2022, &password)
    }

    /// Remove a session: its key stops working and its open TCP connections and UDP
    /// associations are closed. Returns the final meter.
    pub fn remove_session(&self, id: &str) -> Result<MeterSnapshot, TunnelError> {
        let Auth::Multi { sessions, .. } = &self.server.auth else {
            return Err(TunnelError::UnknownSession(id.to_owned()));
        };
        let key = lock(&self.ids)
            .remove(id)
            .ok_or_else(|| TunnelError::UnknownSession(id.to_owned()))?;
        let removed = lock(sessions).remove(&key);
        self.server.publish_users();
        let (session, _) = removed.ok_or_else(|| TunnelError::UnknownSession(id.to_owned()))?;
        session.cancel.cancel();
        let snap = session.meter.snapshot();
        info!(
            session = id,
            up = snap.up,
            down = snap.down,
            "session removed; its connections are closed"
        );
        Ok(snap)
    }

    /// Live meter of a session.
    pub fn meter(&self, id: &str) -> Option<Meter> {
        let Auth::Multi { sessions, .. } = &self.server.auth else {
            return None;
        };
        let key = lock(&self.ids).get(id)?.clone();
        lock(sessions).get(&key).map(|(s, _)| s.meter.clone())
    }

    /// Ids of the current sessions, sorted.
    pub fn sessions(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.ids).keys().cloned().collect();
        v.sort();
        v
    }

    /// Stop serving and cut every session.
    pub fn shutdown(&self) {
        self.server.shutdown.cancel();
    }
}

impl Drop for Seller {
    fn drop(&mut self) {
        self.shutdown();
    }
}
