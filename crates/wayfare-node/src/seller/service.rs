//! The seller's data planes: the shadowsocks port and the WireGuard exit started with the exit
//! policy, each buyer's access provisioned (the reveal payload) and removed, and their meters.

use std::net::{IpAddr, SocketAddr};

use alloy_primitives::B256;
use wayfare_proto::{
    Service,
    messages::{IpRange, MAX_EXIT_RANGES},
    seal::{Credentials, RevealPayload, ShadowsocksMethod},
};
use wayfare_tunnel::{
    ExitPolicy,
    shadowsocks::{Seller as SsSeller, SellerConfig as SsSellerConfig, SessionKey},
    wireguard::{PrivateKey as WgPrivateKey, WgPublicKey, WgSeller, WgSellerConfig},
};

use super::SellerRole;
use crate::{
    config::SellerConfig,
    error::NodeError,
    node::{Shared, unix_now},
};

/// `[seller] public_host` as an IP address (resolved when it is a name).
pub(super) async fn public_ip(cfg: &SellerConfig) -> Result<IpAddr, NodeError> {
    match cfg.public_host.parse() {
        Ok(ip) => Ok(ip),
        Err(_) => tokio::net::lookup_host((cfg.public_host.as_str(), 0))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| a.ip())
            .ok_or_else(|| {
                NodeError::Invalid(format!(
                    "[seller] public_host {:?} is neither an IP address nor a name that resolves",
                    cfg.public_host
                ))
            }),
    }
}

/// The exit policy with `[seller] exit_allow`.
pub(super) fn exit_policy(cfg: &SellerConfig) -> Result<ExitPolicy, NodeError> {
    let mut policy_allow = Vec::new();
    for c in &cfg.exit_allow {
        policy_allow.push(c.parse().map_err(|e| {
            NodeError::Invalid(format!("[seller] exit_allow {c:?} is not a CIDR: {e}"))
        })?);
    }
    Ok(ExitPolicy::with_allowed(policy_allow))
}

/// The exit policy as announcements carry it (at most [`MAX_EXIT_RANGES`] ranges).
pub(super) fn announced_exit(policy: &ExitPolicy) -> Result<Vec<IpRange>, NodeError> {
    let allowed = policy.allowed();
    if allowed.len() > MAX_EXIT_RANGES {
        return Err(NodeError::Invalid(format!(
            "[seller] exit_allow lists {} ranges; announcements carry at most {MAX_EXIT_RANGES}: merge them into wider ranges",
            allowed.len()
        )));
    }
    Ok(allowed
        .iter()
        .filter_map(|c| IpRange::new(c.addr(), c.prefix()))
        .collect())
}

/// The shadowsocks port, with the identity key kept in the store.
pub(super) async fn start_shadowsocks(
    shared: &Shared,
    cfg: &SellerConfig,
    policy: ExitPolicy,
) -> Result<(SsSeller, SessionKey), NodeError> {
    let ipsk = stable_key(shared, "ss-ipsk")?;
    let mut sc = SsSellerConfig::new(cfg.shadowsocks_listen);
    sc.exit_policy = policy;
    sc.identity_key = Some(SessionKey::from_base64(&ipsk.to_base64())?);
    let seller = SsSeller::bind(sc).await?;
    Ok((seller, ipsk))
}

/// The WireGuard exit, with its private key kept in the store.
pub(super) async fn start_wireguard(
    shared: &Shared,
    cfg: &SellerConfig,
    public_ip: IpAddr,
    policy: ExitPolicy,
) -> Result<WgSeller, NodeError> {
    let key = match shared.with_store(|s| s.key("wg-seller"))? {
        Some(k) => WgPrivateKey::from_base64(&String::from_utf8_lossy(&k))?,
        None => {
            let k = WgPrivateKey::generate();
            shared.with_store(|s| s.put_key("wg-seller", k.to_base64().as_bytes(), unix_now()))?;
            k
        }
    };
    let mut wc = WgSellerConfig::new(
        cfg.wireguard_port,
        SocketAddr::new(public_ip, cfg.wireguard_port),
    );
    wc.private_key = key;
    wc.exit_policy = policy;
    wc.tun_name = cfg.wireguard_tun.clone();
    wc.pool = cfg.wireguard_pool.parse().map_err(|e| {
        NodeError::Invalid(format!(
            "[seller] wireguard_pool {:?} is not a CIDR: {e}",
            cfg.wireguard_pool
        ))
    })?;
    if cfg.serve_dns {
        wc.dns_upstream = if cfg.dns_upstream.is_empty() {
            let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            wayfare_tunnel::dns::nameservers(&text)
        } else {
            cfg.dns_upstream.clone()
        };
        if wc.dns_upstream.is_empty() {
            tracing::warn!(
                "no nameserver in /etc/resolv.conf: buyers get no resolver in the tunnel; set [seller] dns_upstream"
            );
        }
    }
    Ok(WgSeller::start(wc).await?)
}

/// A 32-byte key kept in the store under `name` (created on first use), so a restarted seller
/// hands out the same credentials.
pub(super) fn stable_key(shared: &Shared, name: &str) -> Result<SessionKey, NodeError> {
    if let Some(k) = shared.with_store(|s| s.key(name))? {
        return Ok(SessionKey::from_base64(&String::from_utf8_lossy(&k))?);
    }
    let k = SessionKey::generate();
    shared.with_store(|s| s.put_key(name, k.to_base64().as_bytes(), unix_now()))?;
    Ok(k)
}

/// The reveal's session id: the first 8 bytes of the node's session id, then of the channel's.
fn reveal_session_id(id: &str, channel_id: B256) -> [u8; 16] {
    let mut session_id = [0u8; 16];
    let raw = hex::decode(id).unwrap_or_default();
    let n = raw.len().min(8);
    session_id[..n].copy_from_slice(&raw[..n]);
    session_id[8..].copy_from_slice(&channel_id.0[..8]);
    session_id
}

impl SellerRole {
    /// Gives the buyer of session `id` access to `service` and returns what to reveal.
    pub(super) fn provision(
        &mut self,
        shared: &Shared,
        id: &str,
        channel_id: B256,
        service: Service,
        wireguard_key: Option<[u8; 32]>,
    ) -> Result<RevealPayload, NodeError> {
        let session_id = reveal_session_id(id, channel_id);
        match service {
            Service::Shadowsocks => self.provision_shadowsocks(shared, id, session_id),
            Service::WireGuard => self.provision_wireguard(shared, id, session_id, wireguard_key),
        }
    }

    /// A shadowsocks user with its own key, kept in the store across restarts.
    fn provision_shadowsocks(
        &self,
        shared: &Shared,
        id: &str,
        session_id: [u8; 16],
    ) -> Result<RevealPayload, NodeError> {
        let (Some(ss), Some(ipsk)) = (&self.ss, &self.ss_ipsk) else {
            return Err(NodeError::Invalid("shadowsocks is not served here".into()));
        };
        let upsk = stable_key(shared, &format!("ss-upsk:{id}"))?;
        let key = SessionKey::from_base64(&upsk.to_base64())?;
        match ss.add_session_with_key(id, key) {
            Ok(_) | Err(wayfare_tunnel::TunnelError::DuplicateSession(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(RevealPayload {
            endpoint: SocketAddr::new(self.public_ip, ss.local_addr().port()),
            session_id,
            credentials: Credentials::Shadowsocks {
                method: ShadowsocksMethod::Blake3Aes256Gcm,
                server_psk: ipsk.as_bytes().to_vec(),
                user_psk: upsk.as_bytes().to_vec(),
            },
        })
    }

    /// A WireGuard peer for the buyer's key, at the address this session had before if any.
    fn provision_wireguard(
        &self,
        shared: &Shared,
        id: &str,
        session_id: [u8; 16],
        wireguard_key: Option<[u8; 32]>,
    ) -> Result<RevealPayload, NodeError> {
        let Some(wg) = self.wg.clone() else {
            return Err(NodeError::Invalid("WireGuard is not served here".into()));
        };
        let key = wireguard_key
            .ok_or_else(|| NodeError::Invalid("the buyer sent no WireGuard key".into()))?;
        let pubkey = WgPublicKey::from_bytes(key);
        // The address this session had (a restarted seller hands it back).
        let addr_key = format!("wg-addr:{id}");
        let preferred = shared
            .with_store(|s| s.key(&addr_key))?
            .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
            .map(std::net::Ipv4Addr::from);
        let grant = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                match wg.add_session_at(id, pubkey, preferred).await {
                    // A resume racing the removal of the paused peer: finish it first.
                    Err(wayfare_tunnel::TunnelError::DuplicateSession(_)) => {
                        let _ = wg.remove_session(id).await;
                        wg.add_session_at(id, pubkey, preferred).await
                    }
                    other => other,
                }
            })
        })?;
        if preferred != Some(grant.address) {
            shared.with_store(|s| s.replace_key(&addr_key, &grant.address.octets(), unix_now()))?;
        }
        let server_public_key = grant.seller_public_key.to_bytes();
        Ok(RevealPayload {
            endpoint: grant.endpoint,
            session_id,
            credentials: Credentials::WireGuard {
                server_public_key,
                tunnel: wayfare_proto::messages::TunnelAddress {
                    address: IpAddr::V4(grant.address),
                    prefix_len: 32,
                },
                dns: wg.dns_server().map(IpAddr::V4),
            },
        })
    }

    /// Removes the buyer's access of session `id`.
    pub(super) fn unprovision(&mut self, id: &str) {
        let Some(entry) = self.sessions.get(id) else {
            return;
        };
        match entry.service {
            Service::Shadowsocks => {
                if let Some(ss) = &self.ss {
                    let _ = ss.remove_session(id);
                }
            }
            Service::WireGuard => {
                if let Some(wg) = self.wg.clone() {
                    let id = id.to_string();
                    tokio::spawn(async move {
                        let _ = wg.remove_session(&id).await;
                    });
                }
            }
        }
    }

    /// Bytes metered so far for session `id`.
    pub(super) fn meter_total(&self, id: &str, service: Service) -> Option<u64> {
        match service {
            Service::Shadowsocks => self.ss.as_ref()?.meter(id).map(|m| m.snapshot().total()),
            Service::WireGuard => self.wg.as_ref()?.meter(id).map(|m| m.snapshot().total()),
        }
    }
}
