//! A three-host network-namespace lab for end-to-end tests (needs root and iproute2):
//!
//! ```text
//!  buyer ns            seller ns                internet ns
//!  198.18.1.2 ---veth--- 198.18.1.1
//!                       198.18.2.1 ---veth--- 198.18.2.2
//! ```
//! The buyer has no route to 198.18.2.0/24; only the seller can reach the internet ns.
//! [`Lab::add_attacker`] adds a fourth host, a hostile peer with a link to each of the buyer
//! (198.18.4.2 → 198.18.4.1) and the seller (198.18.3.2 → 198.18.3.1), forwarding for no one.
//! [`Lab::add_relay`] adds a relay host at [`RELAY_IP`] that the buyer, the seller and the
//! attacker each reach over a link of their own (198.18.6/24, 198.18.5/24, 198.18.8/24).
//! Names carry a random suffix; namespaces are deleted on drop, also when a test panics.
//! [`NsRuntime`] runs async code with every worker thread inside one namespace.

use std::{
    fs::File,
    future::Future,
    io,
    net::Ipv4Addr,
    os::fd::AsRawFd,
    process::{Command, Stdio},
    sync::Arc,
};

use tracing::error;

use crate::TunnelError;

/// Buyer address.
pub const BUYER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// Seller address facing the buyer.
pub const SELLER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// Seller address facing the internet.
pub const SELLER_UPLINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// The "internet" host.
pub const INTERNET_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);

/// The seller as the attacker host reaches it.
pub const SELLER_FROM_ATTACKER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 1);
/// The attacker's address on its link to the seller.
pub const ATTACKER_TO_SELLER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 2);
/// The buyer as the attacker host reaches it.
pub const BUYER_FROM_ATTACKER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 1);
/// The attacker's address on its link to the buyer.
pub const ATTACKER_TO_BUYER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 2);

/// The relay host's address (on its loopback), the same from every host.
pub const RELAY_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 1);
const RELAY_TO_SELLER_LINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 2);
const SELLER_TO_RELAY_LINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 1);
const RELAY_TO_BUYER_LINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 6, 2);
const BUYER_TO_RELAY_LINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 6, 1);
const RELAY_TO_ATTACKER_LINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 8, 1);
const ATTACKER_TO_RELAY_LINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 8, 2);

/// The buyer's IPv6 address on its uplink (with [`Lab::add_buyer_uplink`]).
pub const BUYER_IP6: &str = "2001:db8:1::2";
/// The internet host's IPv6 address (with [`Lab::add_buyer_uplink`]).
pub const INTERNET_IP6: &str = "2001:db8:2::2";
/// What a process in the buyer host reads as /etc/resolv.conf (under `ip netns exec`): its
/// "home router" (the seller host, as every host names it) resolves for it.
pub const BUYER_RESOLV_CONF: &str = "# the buyer's LAN resolver\nnameserver 198.18.1.1\n";

/// A home seller's address on its LAN (with [`Lab::add_home`]).
pub const HOME_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 2);
/// The home router's LAN address.
pub const ROUTER_LAN_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 1);
/// The home router's WAN (external) address. Not in 198.18.0.0/15 like the rest of the lab:
/// miniupnpd 2.3 refuses to map ports on a reserved external address, so the router gets one
/// of 11.0.0.0/8 instead. No packet leaves the lab: its namespaces have no link to anything else.
pub const ROUTER_WAN_IP: Ipv4Addr = Ipv4Addr::new(11, 18, 0, 2);
const ROUTER_WAN_PEER_IP: Ipv4Addr = Ipv4Addr::new(11, 18, 0, 1);

/// Why the lab cannot run here, if it cannot (not root, no `ip`).
pub fn unavailable_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: network namespaces need root".into());
    }
    match Command::new("ip").arg("-V").stdout(Stdio::null()).status() {
        Ok(s) if s.success() => None,
        _ => Some("`ip` (iproute2) not found".into()),
    }
}

/// One named network namespace.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Its name under /run/netns.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program`.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// A tokio runtime whose threads all live in this namespace.
    pub fn runtime(&self, workers: usize) -> Result<NsRuntime, TunnelError> {
        let file = Arc::new(
            File::open(format!("/run/netns/{}", self.name))
                .map_err(|e| TunnelError::Lab(format!("open netns {}: {e}", self.name)))?,
        );
        let name = self.name.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .enable_all()
            .thread_name(format!("ns-{name}"))
            .on_thread_start(move || {
                // SAFETY: setns on a valid netns fd only changes this thread's namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    error!(netns = %name, error = %io::Error::last_os_error(), "setns failed; this thread stays in the parent namespace");
                }
            })
            .build()
            .map_err(|e| TunnelError::Lab(format!("tokio runtime: {e}")))?;
        Ok(NsRuntime { rt: Some(rt) })
    }
}

/// A runtime bound to a namespace. Futures passed to [`NsRuntime::block_on`] run on its
/// worker threads (never on the caller's), so their sockets are created in the namespace.
pub struct NsRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

impl NsRuntime {
    /// Run `fut` inside the namespace and wait for it.
    pub fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let Some(rt) = self.rt.as_ref() else {
            unreachable!("runtime present until drop")
        };
        match rt.block_on(rt.spawn(fut)) {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Spawn `fut` inside the namespace.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let Some(rt) = self.rt.as_ref() else {
            unreachable!("runtime present until drop")
        };
        rt.spawn(fut)
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The three namespaces, wired.
#[derive(Debug)]
pub struct Lab {
    /// Buyer host.
    pub buyer: Netns,
    /// Seller host (the exit).
    pub seller: Netns,
    /// Internet host.
    pub internet: Netns,
    /// The hostile peer's host, once [`Lab::add_attacker`] made it.
    pub attacker: Option<Netns>,
    /// The relay host, once [`Lab::add_relay`] made it.
    pub relay: Option<Netns>,
    /// A home seller's host and its router, once [`Lab::add_home`] made them.
    pub home: Option<Home>,
    suffix: String,
}

/// A host behind a home router doing NAT (nft masquerade), with miniupnpd answering UPnP-IGD
/// and NAT-PMP on its LAN or no mapping service at all ([`HomeRouter`]).
#[derive(Debug)]
pub struct Home {
    /// The seller's host, on the router's LAN ([`HOME_IP`]).
    pub host: Netns,
    /// The router ([`ROUTER_LAN_IP`] inside, [`ROUTER_WAN_IP`] outside).
    pub router: Netns,
    miniupnpd: Option<std::process::Child>,
}

/// What the home router does besides NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HomeRouter {
    /// miniupnpd answers UPnP-IGD and NAT-PMP on the LAN; masquerade keeps the source port
    /// where it can (endpoint-independent).
    Upnp,
    /// No mapping service, and masquerade picks a random source port per connection
    /// (`fully-random`): a mapping per destination, as symmetric NATs and CGNATs do.
    Symmetric,
}

impl Home {
    /// The port forwards miniupnpd has installed now (its nft chain, as text).
    pub fn mappings(&self) -> String {
        self.router
            .command("nft")
            .args(["list", "chain", "inet", "nat", "prerouting_miniupnpd"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        if let Some(m) = &mut self.miniupnpd {
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

fn ip(args: &[&str]) -> Result<(), TunnelError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| TunnelError::Lab(format!("run ip: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TunnelError::Lab(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Lab {
    /// Create and wire the namespaces.
    pub fn new() -> Result<Self, TunnelError> {
        let sfx: String = format!("{:08x}", rand::random::<u32>());
        let lab = Self {
            buyer: Netns {
                name: format!("wf-buyer-{sfx}"),
            },
            seller: Netns {
                name: format!("wf-seller-{sfx}"),
            },
            internet: Netns {
                name: format!("wf-inet-{sfx}"),
            },
            attacker: None,
            relay: None,
            home: None,
            suffix: sfx.clone(),
        };
        // From here on, Drop cleans up whatever was created.
        for ns in [&lab.buyer, &lab.seller, &lab.internet] {
            ip(&["netns", "add", &ns.name])?;
            ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        }
        // `ip netns exec` shows these files as the host's /etc/resolv.conf and /etc/hosts, so
        // nothing in the lab reads or writes the real machine's.
        let etc = |ns: &Netns, file: &str, text: &str| -> Result<(), TunnelError> {
            let dir = format!("/etc/netns/{}", ns.name);
            std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(format!("{dir}/{file}"), text))
                .map_err(|e| TunnelError::Lab(format!("write {dir}/{file}: {e}")))
        };
        etc(&lab.buyer, "resolv.conf", BUYER_RESOLV_CONF)?;
        etc(
            &lab.seller,
            "resolv.conf",
            &format!("nameserver {INTERNET_IP}\n"),
        )?;
        etc(
            &lab.seller,
            "hosts",
            &format!("127.0.0.1 localhost\n::1 localhost\n{INTERNET_IP} web.lab\n"),
        )?;
        let (b, s, i) = (&lab.buyer.name, &lab.seller.name, &lab.internet.name);
        let (vb, vsb) = (format!("wb{sfx}"), format!("ws{sfx}"));
        let (vsi, vi) = (format!("wu{sfx}"), format!("wi{sfx}"));
        ip(&[
            "link", "add", &vb, "netns", b, "type", "veth", "peer", "name", &vsb, "netns", s,
        ])?;
        ip(&[
            "link", "add", &vsi, "netns", s, "type", "veth", "peer", "name", &vi, "netns", i,
        ])?;
        for (ns, dev, addr) in [
            (b, &vb, format!("{BUYER_IP}/24")),
            (s, &vsb, format!("{SELLER_IP}/24")),
            (s, &vsi, format!("{SELLER_UPLINK_IP}/24")),
            (i, &vi, format!("{INTERNET_IP}/24")),
        ] {
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(lab)
    }

    /// Adds (once) the attacker host, linked to the buyer, the seller and (if there is one) the
    /// relay host; returns it.
    pub fn add_attacker(&mut self) -> Result<&Netns, TunnelError> {
        if self.attacker.is_none() {
            let a = self.new_host("evil")?;
            self.attacker = Some(Netns { name: a.clone() });
            let sfx = self.suffix.clone();
            link(
                &sfx,
                "xs",
                (&a, ATTACKER_TO_SELLER_IP),
                (&self.seller.name, SELLER_FROM_ATTACKER_IP),
            )?;
            link(
                &sfx,
                "xb",
                (&a, ATTACKER_TO_BUYER_IP),
                (&self.buyer.name, BUYER_FROM_ATTACKER_IP),
            )?;
            if let Some(r) = &self.relay {
                link(
                    &sfx,
                    "xr",
                    (&a, ATTACKER_TO_RELAY_LINK_IP),
                    (&r.name, RELAY_TO_ATTACKER_LINK_IP),
                )?;
                route(&a, RELAY_IP, RELAY_TO_ATTACKER_LINK_IP)?;
            }
        }
        self.attacker
            .as_ref()
            .ok_or_else(|| TunnelError::Lab("attacker host missing".into()))
    }

    /// Adds (once) the relay host: [`RELAY_IP`] on its loopback, reached by the buyer and the
    /// seller over links of their own (neither forwards for the other); returns it.
    pub fn add_relay(&mut self) -> Result<&Netns, TunnelError> {
        if self.relay.is_none() {
            let r = self.new_host("relay")?;
            self.relay = Some(Netns { name: r.clone() });
            ip(&[
                "-n",
                &r,
                "addr",
                "add",
                &format!("{RELAY_IP}/32"),
                "dev",
                "lo",
            ])?;
            let sfx = self.suffix.clone();
            let sides = [
                (
                    "rs",
                    &self.seller.name,
                    RELAY_TO_SELLER_LINK_IP,
                    SELLER_TO_RELAY_LINK_IP,
                ),
                (
                    "rb",
                    &self.buyer.name,
                    RELAY_TO_BUYER_LINK_IP,
                    BUYER_TO_RELAY_LINK_IP,
                ),
            ];
            for (tag, host, relay_side, host_side) in sides {
                link(&sfx, tag, (&r, relay_side), (host, host_side))?;
                route(host, RELAY_IP, relay_side)?;
            }
            // The chain's RPC lives on the seller host (at SELLER_IP, as every host names it).
            route(&r, SELLER_IP, SELLER_TO_RELAY_LINK_IP)?;
        }
        self.relay
            .as_ref()
            .ok_or_else(|| TunnelError::Lab("relay host missing".into()))
    }

    /// Gives the buyer a way out that is not the tunnel, as every real buyer has: a default
    /// route (IPv4 and IPv6) via the seller host acting as its ISP router, which forwards to
    /// the internet host. Anything a kill switch lets leak then really reaches the internet.
    pub fn add_buyer_uplink(&self) -> Result<(), TunnelError> {
        let (b, s, i) = (&self.buyer.name, &self.seller.name, &self.internet.name);
        let sfx = &self.suffix;
        let (vb, vsb, vsi, vi) = (
            format!("wb{sfx}"),
            format!("ws{sfx}"),
            format!("wu{sfx}"),
            format!("wi{sfx}"),
        );
        for (ns, dev, addr) in [
            (b, &vb, format!("{BUYER_IP6}/64")),
            (s, &vsb, "2001:db8:1::1/64".to_string()),
            (s, &vsi, "2001:db8:2::1/64".to_string()),
            (i, &vi, format!("{INTERNET_IP6}/64")),
        ] {
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev, "nodad"])?;
        }
        ip(&[
            "-n",
            b,
            "route",
            "add",
            "default",
            "via",
            &SELLER_IP.to_string(),
        ])?;
        ip(&[
            "-n",
            b,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:1::1",
        ])?;
        ip(&[
            "-n",
            i,
            "route",
            "add",
            "default",
            "via",
            &SELLER_UPLINK_IP.to_string(),
        ])?;
        ip(&[
            "-n",
            i,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:2::1",
        ])?;
        for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            let st = self
                .seller
                .command("sysctl")
                .args(["-qw", key])
                .status()
                .map_err(|e| TunnelError::Lab(format!("sysctl: {e}")))?;
            if !st.success() {
                return Err(TunnelError::Lab(format!("sysctl {key} failed")));
            }
        }
        Ok(())
    }

    /// Adds (once) a home: a seller host behind a NAT router running miniupnpd, the router's
    /// WAN linked to the seller host (the lab's "internet core", forwarding), reachable from
    /// the buyer, the relay and the internet host.
    pub fn add_home(&mut self) -> Result<&Home, TunnelError> {
        self.add_home_with(HomeRouter::Upnp)
    }

    /// [`Self::add_home`] with a `router` of that kind.
    pub fn add_home_with(&mut self, router: HomeRouter) -> Result<&Home, TunnelError> {
        let kind = router;
        if self.home.is_none() {
            let h = self.new_host("home")?;
            let r = self.new_host("router")?;
            let sfx = self.suffix.clone();
            link(&sfx, "hl", (&h, HOME_IP), (&r, ROUTER_LAN_IP))?;
            link(
                &sfx,
                "hw",
                (&r, ROUTER_WAN_IP),
                (&self.seller.name, ROUTER_WAN_PEER_IP),
            )?;
            ip(&[
                "-n",
                &h,
                "route",
                "add",
                "default",
                "via",
                &ROUTER_LAN_IP.to_string(),
            ])?;
            ip(&[
                "-n",
                &r,
                "route",
                "add",
                "default",
                "via",
                &ROUTER_WAN_PEER_IP.to_string(),
            ])?;
            let wan_net = "11.18.0.0/24";
            ip(&[
                "-n",
                &self.buyer.name,
                "route",
                "replace",
                wan_net,
                "via",
                &SELLER_IP.to_string(),
            ])?;
            ip(&[
                "-n",
                &self.internet.name,
                "route",
                "replace",
                wan_net,
                "via",
                &SELLER_UPLINK_IP.to_string(),
            ])?;
            if let Some(relay) = &self.relay {
                ip(&[
                    "-n",
                    &relay.name,
                    "route",
                    "replace",
                    wan_net,
                    "via",
                    &SELLER_TO_RELAY_LINK_IP.to_string(),
                ])?;
            }
            for (ns, key) in [
                (&self.seller.name, "net.ipv4.ip_forward=1"),
                (&r, "net.ipv4.ip_forward=1"),
            ] {
                let st = Command::new("ip")
                    .args(["netns", "exec", ns, "sysctl", "-qw", key])
                    .status()
                    .map_err(|e| TunnelError::Lab(format!("sysctl: {e}")))?;
                if !st.success() {
                    return Err(TunnelError::Lab(format!("sysctl {key} in {ns} failed")));
                }
            }
            let (lan_if, wan_if) = (format!("hlb{sfx}"), format!("hwa{sfx}"));
            let router = Netns { name: r.clone() };
            router_nft(&router, &wan_if, kind)?;
            let miniupnpd = match kind {
                HomeRouter::Upnp => Some(start_miniupnpd(&router, &lan_if, &wan_if, &sfx)?),
                HomeRouter::Symmetric => None,
            };
            self.home = Some(Home {
                host: Netns { name: h },
                router,
                miniupnpd,
            });
        }
        self.home
            .as_ref()
            .ok_or_else(|| TunnelError::Lab("home missing".into()))
    }

    /// The buyer host's links to other hosts (its veths): where a leak would leave.
    pub fn buyer_links(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-n", &self.buyer.name, "-o", "link", "show", "type", "veth"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .filter(|n| !n.is_empty())
            .collect()
    }

    fn new_host(&self, kind: &str) -> Result<String, TunnelError> {
        let name = format!("wf-{kind}-{}", self.suffix);
        ip(&["netns", "add", &name])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }
}

/// The router's firewall: masquerade out of the WAN, and the chains miniupnpd fills.
fn router_nft(router: &Netns, wan_if: &str, kind: HomeRouter) -> Result<(), TunnelError> {
    let masquerade = match kind {
        HomeRouter::Upnp => "masquerade",
        HomeRouter::Symmetric => "masquerade fully-random",
    };
    let script = format!(
        "table inet filter {{\n  chain miniupnpd {{\n  }}\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    jump miniupnpd\n  }}\n}}\n\
         table inet nat {{\n  chain prerouting_miniupnpd {{\n  }}\n  chain postrouting_miniupnpd {{\n  }}\n\
         \x20 chain prerouting {{\n    type nat hook prerouting priority -100; policy accept;\n    jump prerouting_miniupnpd\n  }}\n\
         \x20 chain postrouting {{\n    type nat hook postrouting priority 100; policy accept;\n    jump postrouting_miniupnpd\n    oifname \"{wan_if}\" {masquerade}\n  }}\n}}\n"
    );
    let mut child = router
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| TunnelError::Lab(format!("nft: {e}")))?;
    if let Some(mut i) = child.stdin.take() {
        use std::io::Write;
        i.write_all(script.as_bytes())
            .map_err(|e| TunnelError::Lab(format!("nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| TunnelError::Lab(format!("nft: {e}")))?;
    if !out.status.success() {
        return Err(TunnelError::Lab(format!(
            "the router's nft rules: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// miniupnpd (Debian's miniupnpd-nftables) on the router, in the foreground until killed.
fn start_miniupnpd(
    router: &Netns,
    lan_if: &str,
    wan_if: &str,
    sfx: &str,
) -> Result<std::process::Child, TunnelError> {
    let conf = std::env::temp_dir().join(format!("wf-miniupnpd-{sfx}.conf"));
    let text = format!(
        "ext_ifname={wan_if}\nlistening_ip={lan_if}\nenable_natpmp=yes\nenable_upnp=yes\nsecure_mode=yes\n\
         upnp_table_name=filter\nupnp_nat_table_name=nat\nupnp_forward_chain=miniupnpd\n\
         upnp_nat_chain=prerouting_miniupnpd\nupnp_nat_postrouting_chain=postrouting_miniupnpd\n\
         system_uptime=yes\nuuid=3d3cec3a-8cf0-11e0-98ee-{sfx}0000\n\
         allow 1024-65535 198.18.10.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n"
    );
    std::fs::write(&conf, text).map_err(|e| TunnelError::Lab(format!("miniupnpd.conf: {e}")))?;
    let child = router
        .command("miniupnpd")
        .args(["-d", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            TunnelError::Lab(format!(
                "miniupnpd: {e} (Debian's miniupnpd-nftables; `make setup` installs it)"
            ))
        })?;
    // It answers SSDP within a moment; the seller's search waits for it anyway.
    std::thread::sleep(std::time::Duration::from_millis(500));
    Ok(child)
}

/// A veth between two namespaces, each end with its /24 address, up.
fn link(sfx: &str, tag: &str, a: (&str, Ipv4Addr), b: (&str, Ipv4Addr)) -> Result<(), TunnelError> {
    let (va, vb) = (format!("{tag}a{sfx}"), format!("{tag}b{sfx}"));
    ip(&[
        "link", "add", &va, "netns", a.0, "type", "veth", "peer", "name", &vb, "netns", b.0,
    ])?;
    for (ns, dev, addr) in [(a.0, &va, a.1), (b.0, &vb, b.1)] {
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
    }
    Ok(())
}

/// A host route in `ns` to `dst` via `gateway`.
fn route(ns: &str, dst: Ipv4Addr, gateway: Ipv4Addr) -> Result<(), TunnelError> {
    ip(&[
        "-n",
        ns,
        "route",
        "add",
        &format!("{dst}/32"),
        "via",
        &gateway.to_string(),
    ])
}

impl Drop for Lab {
    fn drop(&mut self) {
        let home: Vec<&Netns> = self
            .home
            .iter()
            .flat_map(|h| [&h.host, &h.router])
            .collect();
        for ns in [&self.buyer, &self.seller, &self.internet]
            .into_iter()
            .chain(self.attacker.as_ref())
            .chain(self.relay.as_ref())
            .chain(home)
        {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns.name])
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", ns.name));
        }
    }
}
