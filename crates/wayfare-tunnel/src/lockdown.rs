//! The buyer host's lockdown: one nftables table (`inet wayfare_lockdown`) that lets nothing
//! leave the host except through the tunnels, to the sellers' endpoints and to the hosts the
//! node itself needs (chain RPC, bootstrap peers, relays). IPv6 never leaves (the sellers
//! offer IPv4 only); DNS (53, 853) never leaves outside a tunnel, even to an allowed host.
//!
//! The table is independent of any tunnel: sessions come and go under it, and a crash of the
//! process leaves it in the kernel (nothing to undo, so nothing leaks until a person lifts it).
//! Every change replaces the whole table in one `nft -f` transaction, so there is no moment
//! with a half-written ruleset: either the old rules hold or the new ones do.

use std::{
    net::Ipv4Addr,
    process::{Command, Stdio},
};

use crate::{TunnelError, wireguard::sys};

/// The table's name (family `inet`).
pub const LOCKDOWN_TABLE: &str = "wayfare_lockdown";

/// What may leave the host while locked down.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockdownRules {
    /// Interfaces anything may leave through (the live tunnels' TUNs).
    pub tunnels: Vec<String>,
    /// The current sellers' endpoint hosts (the tunnel's outer packets and the node's control
    /// messages to them).
    pub endpoints: Vec<Ipv4Addr>,
    /// Hosts the node itself needs: chain RPC, bootstrap peers, relays.
    pub hosts: Vec<Ipv4Addr>,
}

fn nft_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn set_of<T: ToString>(items: &[T], quote: bool) -> String {
    let mut v: Vec<String> = items
        .iter()
        .map(|i| {
            if quote {
                format!("\"{}\"", i.to_string())
            } else {
                i.to_string()
            }
        })
        .collect();
    v.sort();
    v.dedup();
    format!("{{ {} }}", v.join(", "))
}

impl LockdownRules {
    /// The `nft -f` script that replaces the table with these rules (one transaction).
    pub fn script(&self) -> Result<String, TunnelError> {
        if let Some(bad) = self.tunnels.iter().find(|t| !nft_name_ok(t)) {
            return Err(TunnelError::BadConfig(format!(
                "{bad:?} is not an interface name"
            )));
        }
        let mut out = String::from("    oifname \"lo\" accept\n");
        let mut fwd = String::new();
        if !self.tunnels.is_empty() {
            let tuns = set_of(&self.tunnels, true);
            out.push_str(&format!("    oifname {tuns} accept\n"));
            fwd.push_str(&format!(
                "    oifname {tuns} accept\n    iifname {tuns} accept\n"
            ));
        }
        // The host keeps its DHCP lease; nothing else of the LAN's services is reached.
        out.push_str("    meta nfproto ipv4 udp sport 68 udp dport 67 accept\n");
        // DNS only through a tunnel, never in the clear (also not to an allowed host).
        out.push_str("    meta l4proto { tcp, udp } th dport { 53, 853 } drop\n");
        let mut allowed: Vec<Ipv4Addr> = self.endpoints.clone();
        allowed.extend(&self.hosts);
        if !allowed.is_empty() {
            out.push_str(&format!(
                "    ip daddr {} accept\n",
                set_of(&allowed, false)
            ));
        }
        Ok(format!(
            "table inet {LOCKDOWN_TABLE}\ndelete table inet {LOCKDOWN_TABLE}\n\
             table inet {LOCKDOWN_TABLE} {{\n  chain output {{\n    type filter hook output priority filter - 10; policy drop;\n{out}  }}\n\
             \x20 chain forward {{\n    type filter hook forward priority filter - 10; policy drop;\n{fwd}  }}\n}}\n"
        ))
    }
}

/// Installs (or replaces, atomically) the lockdown table in this thread's network namespace.
pub fn install(rules: &LockdownRules) -> Result<(), TunnelError> {
    sys::nft_script(&rules.script()?).map_err(|e| {
        TunnelError::System(format!(
            "{e}: the lockdown could not be (re)installed, so the rules already in the kernel (if any) stay; check that nftables works (`nft list ruleset`) and restart the daemon"
        ))
    })
}

/// Removes the lockdown table (no error when there is none).
pub fn remove() {
    sys::nft_delete_table("inet", LOCKDOWN_TABLE);
}

/// Whether the lockdown table is in the kernel now (in this thread's namespace).
pub fn installed() -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", LOCKDOWN_TABLE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_replaces_the_table_and_allows_only_what_it_names() {
        let r = LockdownRules {
            tunnels: vec!["wf-vpn1".into(), "wf-vpn0".into()],
            endpoints: vec![Ipv4Addr::new(203, 0, 113, 7)],
            hosts: vec![
                Ipv4Addr::new(198, 51, 100, 1),
                Ipv4Addr::new(203, 0, 113, 7),
            ],
        };
        let s = r.script().unwrap();
        assert!(s.starts_with("table inet wayfare_lockdown\ndelete table inet wayfare_lockdown\n"));
        assert!(s.contains("policy drop;"), "{s}");
        assert!(
            s.contains("oifname { \"wf-vpn0\", \"wf-vpn1\" } accept"),
            "{s}"
        );
        assert!(
            s.contains("ip daddr { 198.51.100.1, 203.0.113.7 } accept"),
            "{s}"
        );
        // DNS is dropped before any host is allowed.
        assert!(s.find("dport { 53, 853 } drop") < s.find("ip daddr"), "{s}");
        assert!(!s.contains("ip6"), "no IPv6 is ever allowed: {s}");
    }

    #[test]
    fn an_empty_lockdown_lets_only_loopback_and_dhcp_out() {
        let s = LockdownRules::default().script().unwrap();
        assert!(!s.contains("daddr"), "{s}");
        assert!(!s.contains("oifname {"), "{s}");
    }

    #[test]
    fn a_bad_interface_name_is_refused_not_injected() {
        let r = LockdownRules {
            tunnels: vec!["x\" accept; #".into()],
            ..LockdownRules::default()
        };
        assert!(r.script().is_err());
    }
}
