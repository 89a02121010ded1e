//! The seller's DNS forwarder for its WireGuard buyers: a UDP resolver on the tunnel's gateway
//! address that passes each query to the seller's own upstream resolver and the answer back,
//! so a buyer's names are resolved at the exit, never on the buyer's network.
//!
//! Who may ask: only sources inside the tunnel pool (anything else is dropped unanswered).
//! What bounds it: queries are at most 512 bytes in and 4096 out, 256 are in flight at once and
//! 32 per source; each waits at most [`UPSTREAM_TIMEOUT`]. A query the upstream does not answer
//! gets SERVFAIL (and one warning a minute naming the fix), never silence.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{Cidr, TunnelError};

/// How long the upstream has to answer one query.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_QUERY: usize = 512;
const MAX_ANSWER: usize = 4096;
const MAX_IN_FLIGHT: usize = 256;
const MAX_PER_SOURCE: usize = 32;

/// A running forwarder; dropping it stops it.
pub struct DnsForwarder {
    local: SocketAddr,
    stop: CancellationToken,
}

struct Limits {
    total: usize,
    per_source: HashMap<Ipv4Addr, usize>,
}

/// A query's header is sane: long enough, a query (QR = 0), standard opcode, one question.
fn is_query(q: &[u8]) -> bool {
    q.len() >= 12 && q.len() <= MAX_QUERY && q[2] & 0x80 == 0 && (q[2] >> 3) & 0x0f == 0
}

/// SERVFAIL for query `q`: its header and question, QR set, RCODE 2, no records.
pub fn servfail(q: &[u8]) -> Vec<u8> {
    let mut r = q.to_vec();
    r[2] |= 0x80; // QR
    r[3] = (r[3] & 0xf0) | 2; // RA cleared, RCODE = SERVFAIL
    r[3] &= 0x7f;
    // No answer, authority or additional records (EDNS options are dropped with them).
    r[6..12].fill(0);
    // Keep the question section only: skip the name and QTYPE/QCLASS of the first question.
    let mut i = 12;
    while i < r.len() && r[i] != 0 {
        if r[i] & 0xc0 != 0 {
            i += 1;
            break;
        }
        i += usize::from(r[i]) + 1;
    }
    let end = (i + 5).min(r.len());
    r.truncate(end);
    r
}

impl DnsForwarder {
    /// Serves on `listen` for sources in `clients`, forwarding to `upstream` in order.
    pub async fn start(
        listen: SocketAddr,
        clients: Cidr,
        upstream: Vec<SocketAddr>,
    ) -> Result<Self, TunnelError> {
        if upstream.is_empty() {
            return Err(TunnelError::BadConfig(
                "no upstream resolver for the buyers' DNS: set [seller] dns_upstream".into(),
            ));
        }
        let sock = UdpSocket::bind(listen).await.map_err(|e| {
            TunnelError::System(format!(
                "can't serve DNS to buyers on {listen}: {e} (another resolver on port 53 there? set [seller] serve_dns = false to hand buyers no resolver)"
            ))
        })?;
        let local = sock
            .local_addr()
            .map_err(|e| TunnelError::System(e.to_string()))?;
        let stop = CancellationToken::new();
        let sock = Arc::new(sock);
        let limits = Arc::new(Mutex::new(Limits {
            total: 0,
            per_source: HashMap::new(),
        }));
        let warned = Arc::new(Mutex::new(None::<Instant>));
        let s = stop.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_QUERY + 1];
            loop {
                let (n, from) = tokio::select! {
                    r = sock.recv_from(&mut buf) => match r {
                        Ok(v) => v,
                        Err(e) => { debug!(error = %e, "dns recv"); continue; }
                    },
                    _ = s.cancelled() => return,
                };
                let SocketAddr::V4(src) = from else { continue };
                let q = &buf[..n];
                if !clients.contains((*src.ip()).into()) || !is_query(q) {
                    debug!(%from, "dns: dropped a query from outside the pool or not a query");
                    continue;
                }
                {
                    let mut l = limits.lock().unwrap_or_else(|e| e.into_inner());
                    let mine = l.per_source.get(src.ip()).copied().unwrap_or(0);
                    if l.total >= MAX_IN_FLIGHT || mine >= MAX_PER_SOURCE {
                        continue; // the client retries; nothing unbounded is kept
                    }
                    l.total += 1;
                    *l.per_source.entry(*src.ip()).or_default() += 1;
                }
                let (sock, limits, upstream, warned) = (
                    sock.clone(),
                    limits.clone(),
                    upstream.clone(),
                    warned.clone(),
                );
                let q = q.to_vec();
                tokio::spawn(async move {
                    let answer = match ask_upstream(&q, &upstream).await {
                        Some(a) => a,
                        None => {
                            let mut w = warned.lock().unwrap_or_else(|e| e.into_inner());
                            if w.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                                *w = Some(Instant::now());
                                warn!(upstream = ?upstream, "the buyers' DNS upstream does not answer: buyers get SERVFAIL; check [seller] dns_upstream (default: the nameservers in /etc/resolv.conf)");
                            }
                            servfail(&q)
                        }
                    };
                    let _ = sock.send_to(&answer, from).await;
                    let mut l = limits.lock().unwrap_or_else(|e| e.into_inner());
                    l.total = l.total.saturating_sub(1);
                    if let Some(c) = l.per_source.get_mut(src.ip()) {
                        *c -= 1;
                        if *c == 0 {
                            l.per_source.remove(src.ip());
                        }
                    }
                });
            }
        });
        Ok(Self { local, stop })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for DnsForwarder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One query to each upstream in turn until one answers with the query's id.
async fn ask_upstream(q: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for up in upstream {
        let bind: SocketAddr = if up.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(sock) = UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.connect(up).await.is_err() || sock.send(q).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; MAX_ANSWER];
        let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT / upstream.len() as u32;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Ok(Ok(n)) if n >= 12 && buf[..2] == q[..2] && buf[2] & 0x80 != 0 => {
                    return Some(buf[..n].to_vec());
                }
                Ok(Ok(_)) => continue, // not the answer to this query
                _ => break,
            }
        }
    }
    None
}

/// The nameservers in a resolv.conf text (`nameserver` lines), on port 53.
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next()?.parse::<std::net::IpAddr>().ok())
                .flatten()
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `a.b` type A.
    fn query(id: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend([1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend([1, b'a', 1, b'b', 0, 0, 1, 0, 1]);
        q
    }

    #[test]
    fn servfail_answers_the_same_question_with_rcode_2() {
        let q = query(0x1234);
        let r = servfail(&q);
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert!(r[2] & 0x80 != 0, "QR set");
        assert_eq!(r[3] & 0x0f, 2);
        assert_eq!(r.len(), q.len());
    }

    #[test]
    fn only_sane_queries_pass() {
        assert!(is_query(&query(1)));
        let mut answer = query(1);
        answer[2] |= 0x80;
        assert!(!is_query(&answer));
        assert!(!is_query(&[0; 11]));
        assert!(!is_query(&vec![0; MAX_QUERY + 1]));
    }

    #[test]
    fn nameservers_are_read_from_resolv_conf() {
        let n =
            nameservers("# x\nnameserver 192.0.2.53\nsearch lab\nnameserver ::1\nnameserver bad\n");
        assert_eq!(
            n,
            vec![
                "192.0.2.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }

    #[tokio::test]
    async fn a_query_is_forwarded_and_a_silent_upstream_gets_servfail() {
        // An upstream that answers every query with its id and QR set.
        let up = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up_addr = up.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 512];
            while let Ok((n, from)) = up.recv_from(&mut b).await {
                let mut a = b[..n].to_vec();
                a[2] |= 0x80;
                a.push(0xaa);
                let _ = up.send_to(&a, from).await;
            }
        });
        let clients: Cidr = "127.0.0.0/8".parse().unwrap();
        let f = DnsForwarder::start("127.0.0.1:0".parse().unwrap(), clients, vec![up_addr])
            .await
            .unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(&query(7), f.local_addr()).await.unwrap();
        let mut b = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(2), c.recv(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b[n - 1], 0xaa, "the upstream's answer came back");

        // A silent upstream: SERVFAIL within the timeout.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let f2 = DnsForwarder::start(
            "127.0.0.1:0".parse().unwrap(),
            clients,
            vec![silent.local_addr().unwrap()],
        )
        .await
        .unwrap();
        c.send_to(&query(8), f2.local_addr()).await.unwrap();
        let n = tokio::time::timeout(UPSTREAM_TIMEOUT + Duration::from_secs(2), c.recv(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b[3] & 0x0f, 2, "SERVFAIL");
        assert_eq!(&b[..2], &[0, 8]);
        let _ = n;
    }

    #[tokio::test]
    async fn a_source_outside_the_pool_gets_nothing() {
        let up = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let clients: Cidr = "198.19.0.0/16".parse().unwrap();
        let f = DnsForwarder::start(
            "127.0.0.1:0".parse().unwrap(),
            clients,
            vec![up.local_addr().unwrap()],
        )
        .await
        .unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(&query(9), f.local_addr()).await.unwrap();
        let mut b = [0u8; 64];
        // Not forwarded upstream either.
        assert!(
            tokio::time::timeout(Duration::from_millis(500), up.recv_from(&mut b))
                .await
                .is_err()
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(100), c.recv(&mut b))
                .await
                .is_err()
        );
    }
}
