//! systemd-resolved, where it manages the host's DNS: the buyer's resolv.conf points at its
//! stub (127.0.0.53, or a link into /run/systemd/resolve/), so writing the file would bypass
//! it. The tunnel's resolver goes on the TUN link instead (`resolvectl dns`), with the routing
//! domain `~.` and the default route, so every name is asked through the tunnel; the link's
//! settings vanish with the TUN (also when the daemon is killed) and are reverted at teardown.

use std::{net::IpAddr, path::Path};

use super::sys;
use crate::TunnelError;

/// The stub addresses systemd-resolved answers on.
const STUBS: [&str; 2] = ["127.0.0.53", "127.0.0.54"];

/// Whether `resolv_conf` (its text, and where it links to) hands DNS to systemd-resolved.
pub(crate) fn points_at_stub(text: &str, link: Option<&Path>) -> bool {
    if link.is_some_and(|l| l.to_string_lossy().contains("systemd/resolve/")) {
        return true;
    }
    let servers: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .collect();
    !servers.is_empty() && servers.iter().all(|s| STUBS.contains(s))
}

/// Whether systemd-resolved is in charge of `resolv_conf` and `resolvectl` can be run.
pub(crate) fn in_charge(resolv_conf: &Path) -> bool {
    let text = std::fs::read_to_string(resolv_conf).unwrap_or_default();
    let link = std::fs::read_link(resolv_conf).ok();
    points_at_stub(&text, link.as_deref()) && resolvectl_found()
}

fn resolvectl_found() -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("resolvectl").is_file())
}

/// The `resolvectl` calls that send every name through `tun` to `dns`.
pub(crate) fn link_commands(tun: &str, dns: &[IpAddr]) -> Vec<Vec<String>> {
    let mut servers = vec!["dns".to_string(), tun.to_string()];
    servers.extend(dns.iter().map(ToString::to_string));
    vec![
        servers,
        vec!["domain".into(), tun.into(), "~.".into()],
        vec!["default-route".into(), tun.into(), "yes".into()],
    ]
}

/// Puts the tunnel's resolver on link `tun`.
pub(crate) fn point_link(tun: &str, dns: &[IpAddr]) -> Result<(), TunnelError> {
    for args in link_commands(tun, dns) {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        sys::run("resolvectl", &argv)?;
    }
    Ok(())
}

/// Drops link `tun`'s DNS settings (a no-op once the link is gone).
pub(crate) fn revert(tun: &str) {
    let _ = sys::run("resolvectl", &["revert", tun]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stub_is_recognised_by_content_or_link_and_nothing_else() {
        assert!(points_at_stub(
            "# managed\nnameserver 127.0.0.53\noptions edns0\n",
            None
        ));
        assert!(points_at_stub(
            "",
            Some(Path::new("../run/systemd/resolve/stub-resolv.conf"))
        ));
        assert!(!points_at_stub("nameserver 198.18.1.1\n", None));
        // A stub plus another server: resolv.conf is not resolved's alone.
        assert!(!points_at_stub(
            "nameserver 127.0.0.53\nnameserver 9.9.9.9\n",
            None
        ));
        assert!(!points_at_stub("", None));
    }

    #[test]
    fn every_name_goes_to_the_tunnels_resolver() {
        let dns: IpAddr = "198.19.0.1".parse().unwrap();
        assert_eq!(
            link_commands("wf-vpn0", &[dns]),
            vec![
                vec!["dns", "wf-vpn0", "198.19.0.1"],
                vec!["domain", "wf-vpn0", "~."],
                vec!["default-route", "wf-vpn0", "yes"],
            ]
        );
    }
}
