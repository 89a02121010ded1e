//! A seller behind a home router: its service ports mapped by UPnP-IGD (the `igd-next` crate:
//! async on tokio, kept up, and the one of the Rust UPnP clients that also speaks to the IGD v2
//! devices most routers ship), renewed before the lease lapses and removed on shutdown. The
//! mapped external address goes into reveals only, never into an announcement.
//!
//! No gateway answering (a host with a public address, a router without UPnP) is not an error
//! here: the caller then serves on `public_host` directly and says how it is reachable.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use igd_next::{
    PortMappingProtocol, SearchOptions,
    aio::{Gateway, tokio::Tokio},
};

/// How long a mapping is asked for; it is renewed at half of it.
pub(crate) const LEASE: Duration = Duration::from_secs(600);
/// How long to wait for a gateway to answer the search.
const SEARCH: Duration = Duration::from_secs(2);
const DESCRIPTION: &str = "wayfare seller";

/// One port to map: protocol and the local (= external) port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Port {
    pub(crate) udp: bool,
    pub(crate) port: u16,
}

impl Port {
    fn protocol(self) -> PortMappingProtocol {
        if self.udp {
            PortMappingProtocol::UDP
        } else {
            PortMappingProtocol::TCP
        }
    }
}

/// The mappings made on the gateway.
pub(crate) struct PortMap {
    gateway: Gateway<Tokio>,
    local_ip: Ipv4Addr,
    ports: Vec<Port>,
    /// The router's external address, as it reported it.
    pub(crate) external_ip: IpAddr,
}

/// How a gateway search or mapping failed.
#[derive(Debug)]
pub(crate) enum MapError {
    /// No UPnP gateway answered on this network.
    NoGateway,
    /// A gateway answered but refused or failed: what it said.
    Refused(String),
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoGateway => write!(f, "no UPnP gateway answered"),
            Self::Refused(why) => write!(f, "the UPnP gateway refused: {why}"),
        }
    }
}

impl PortMap {
    /// Finds the gateway and maps every port (external port = local port) for [`LEASE`].
    pub(crate) async fn map(ports: &[Port]) -> Result<Self, MapError> {
        let mut opts = SearchOptions::default();
        opts.timeout = Some(SEARCH);
        opts.single_search_timeout = Some(SEARCH);
        let gateway = igd_next::aio::tokio::search_gateway(opts)
            .await
            .map_err(|_| MapError::NoGateway)?;
        let local_ip = local_ip_towards(gateway.addr)
            .ok_or_else(|| MapError::Refused("no local address towards the gateway".into()))?;
        let external_ip = gateway
            .get_external_ip()
            .await
            .map_err(|e| MapError::Refused(format!("external address: {e}")))?;
        let map = Self {
            gateway,
            local_ip,
            ports: ports.to_vec(),
            external_ip,
        };
        map.renew().await?;
        Ok(map)
    }

    /// Asks for every mapping again (a renewal, or the first time).
    pub(crate) async fn renew(&self) -> Result<(), MapError> {
        for p in &self.ports {
            self.gateway
                .add_port(
                    p.protocol(),
                    p.port,
                    SocketAddr::new(IpAddr::V4(self.local_ip), p.port),
                    LEASE.as_secs() as u32,
                    DESCRIPTION,
                )
                .await
                .map_err(|e| {
                    MapError::Refused(format!(
                        "{} {}: {e}",
                        if p.udp { "UDP" } else { "TCP" },
                        p.port
                    ))
                })?;
        }
        Ok(())
    }

    /// Removes every mapping (at shutdown).
    pub(crate) async fn remove(&self) {
        for p in &self.ports {
            if let Err(e) = self.gateway.remove_port(p.protocol(), p.port).await {
                tracing::warn!(port = p.port, error = %e, "could not remove a port mapping; the router drops it when its lease ends");
            }
        }
    }

    /// What it mapped, for the status line.
    pub(crate) fn describe(&self) -> String {
        let ports: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("{}/{}", p.port, if p.udp { "udp" } else { "tcp" }))
            .collect();
        format!(
            "mapped by UPnP on {} as {} ({})",
            self.gateway.addr.ip(),
            self.external_ip,
            ports.join(", ")
        )
    }
}

/// The local address the kernel would use to reach `gateway` (no packet is sent).
fn local_ip_towards(gateway: SocketAddr) -> Option<Ipv4Addr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect(gateway).ok()?;
    match s.local_addr().ok()?.ip() {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_address_towards_a_host_is_the_one_routing_picks() {
        let ip = local_ip_towards("127.0.0.1:1900".parse().unwrap());
        assert_eq!(ip, Some(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn ports_name_their_protocol() {
        assert_eq!(
            Port { udp: true, port: 1 }.protocol(),
            PortMappingProtocol::UDP
        );
        assert_eq!(
            Port {
                udp: false,
                port: 1
            }
            .protocol(),
            PortMappingProtocol::TCP
        );
    }
}
