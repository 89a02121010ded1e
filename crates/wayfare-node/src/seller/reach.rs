//! How buyers reach this seller, decided at start: the ports mapped on the home router (and
//! the external address it reports), or `[seller] public_host` served directly; the line
//! `wayfare seller status` shows, with the fix when something is wrong.

use std::{net::IpAddr, sync::Arc};

use super::{
    portmap::{LEASE, MapError, Port, PortMap},
    service,
};
use crate::{config::SellerConfig, error::NodeError};

/// The seller's reachability.
pub(crate) struct Reach {
    /// The address reveals name.
    pub(crate) public_ip: IpAddr,
    /// What `wayfare seller status` says.
    pub(crate) line: String,
    /// Whether buyers can reach it at all (a mapping, or `public_host`). An unreachable seller
    /// announces nothing and refuses quotes, so no buyer opens a channel that could never work.
    pub(crate) reachable: bool,
    map: Option<Arc<PortMap>>,
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl Reach {
    /// Maps `ports` on the router when asked to (and one answers), else `public_host`.
    pub(crate) async fn find(cfg: &SellerConfig, ports: &[Port]) -> Result<Self, NodeError> {
        let mapped = if cfg.port_mapping && !ports.is_empty() {
            Some(PortMap::map(ports).await)
        } else {
            None
        };
        match mapped {
            Some(Ok(m)) => {
                let line = m.describe();
                tracing::info!(reach = %line, "buyers reach this seller through the router");
                let m = Arc::new(m);
                let renew = m.clone();
                let renewal = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(LEASE / 2).await;
                        if let Err(e) = renew.renew().await {
                            tracing::warn!(error = %e, "renewing the port mapping failed; retrying at the next half lease");
                        }
                    }
                });
                Ok(Self {
                    public_ip: m.external_ip,
                    line,
                    reachable: true,
                    map: Some(m),
                    renewal: Some(renewal),
                })
            }
            other => {
                let why = match &other {
                    Some(Err(MapError::Refused(w))) => {
                        tracing::warn!(error = %w, "the router refused to map the service ports");
                        format!("{w}; ")
                    }
                    Some(Err(MapError::NoGateway)) => "no UPnP gateway answered; ".into(),
                    _ => String::new(),
                };
                if cfg.public_host.is_empty() {
                    let line = format!(
                        "unreachable: {why}buyers can't reach this seller, so it announces nothing — forward {} on the router to this host and set [seller] public_host to the address buyers dial (or turn on UPnP on the router), then restart the daemon",
                        ports_text(ports)
                    );
                    tracing::warn!("{line}");
                    return Ok(Self {
                        public_ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                        line,
                        reachable: false,
                        map: None,
                        renewal: None,
                    });
                }
                let public_ip = service::public_ip(cfg).await?;
                Ok(Self {
                    public_ip,
                    reachable: true,
                    line: format!(
                        "direct on {public_ip} ({why}{} must reach this host)",
                        ports_text(ports)
                    ),
                    map: None,
                    renewal: None,
                })
            }
        }
    }

    /// At shutdown: the mappings are removed (waiting at most a few seconds for the router).
    pub(crate) fn shutdown(&mut self) {
        if let Some(t) = self.renewal.take() {
            t.abort();
        }
        if let Some(m) = self.map.take() {
            let _ = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(tokio::time::timeout(
                    std::time::Duration::from_secs(3),
                    m.remove(),
                ))
            });
            tracing::info!("port mappings removed");
        }
    }
}

fn ports_text(ports: &[Port]) -> String {
    let v: Vec<String> = ports
        .iter()
        .map(|p| format!("{} {}", if p.udp { "UDP" } else { "TCP" }, p.port))
        .collect();
    v.join(", ")
}
