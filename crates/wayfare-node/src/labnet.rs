//! A whole Wayfare network on one machine, for `wayfare demo` and the end-to-end tests: a
//! devnet chain, seller and buyer daemons (the real `wayfare` binary, as separate processes)
//! and an "internet" web server. As root it uses the namespace lab (buyer, seller and internet
//! hosts, see `wayfare_tunnel::lab`), with anvil on the seller host reachable at 198.18.1.1;
//! without root everything runs on loopback (shadowsocks only).

use std::{
    fs,
    future::Future,
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc as std_mpsc,
    time::{Duration, Instant},
};

use alloy_primitives::U256;
use wayfare_chain::{
    ConnectOptions, MarketClient,
    devnet::{Devnet, DevnetInfo, DevnetOptions},
};
use wayfare_tunnel::lab::{self, Lab, NsRuntime};

use crate::config::ServiceName;

/// The lab relay's circuit lifetime, in seconds.
const LAB_CIRCUIT_SECS: u64 = 20;

/// What went wrong setting up or driving the network.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LabNetError(pub String);

fn err(s: impl std::fmt::Display) -> LabNetError {
    LabNetError(s.to_string())
}

/// Which host a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The buyer's host.
    Buyer,
    /// The sellers' host (also runs anvil).
    Seller,
    /// The internet host.
    Internet,
    /// The relay host (in the lab; loopback otherwise).
    Relay,
    /// A seller's host behind a home router ([`LabNet::add_home`]).
    Home,
}

enum Rt {
    Ns(NsRuntime),
    Plain(tokio::runtime::Runtime),
}

impl Rt {
    fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Self::Ns(rt) => rt.block_on(fut),
            Self::Plain(rt) => rt.block_on(fut),
        }
    }

    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self {
            Self::Ns(rt) => {
                rt.spawn(fut);
            }
            Self::Plain(rt) => {
                rt.spawn(fut);
            }
        }
    }
}

/// Terms and services of one seller daemon.
#[derive(Debug, Clone)]
pub struct SellerSpec {
    /// Which devnet seller (1-based).
    pub index: usize,
    /// Services sold.
    pub services: Vec<ServiceName>,
    /// X.
    pub price_per_mib: u128,
    /// Y.
    pub price_per_second: u128,
    /// Z.
    pub seller_burn: u128,
    /// W.
    pub buyer_burn: u128,
    /// Least deposit.
    pub min_deposit: u128,
    /// Seconds between vouchers.
    pub interval: u32,
    /// Grace after an interval.
    pub grace: u64,
    /// Region announced.
    pub region: String,
    /// More `[seller]` lines (TOML), e.g. a settle policy.
    pub extra_config: String,
    /// More `[p2p]` lines (TOML), e.g. `advertise = "direct"`.
    pub extra_p2p_config: String,
    /// What the exit lets through (`[seller] exit_allow`); `None` is the lab's internet.
    /// `Some(vec![])` makes a seller whose tunnels come up but reach nothing.
    pub exit_allow: Option<Vec<String>>,
    /// Run it behind the home router ([`LabNet::add_home`]) with no `public_host`: buyers
    /// reach it only through the ports it maps.
    pub at_home: bool,
}

impl SellerSpec {
    /// Seller `index` with demo prices.
    pub fn new(index: usize) -> Self {
        Self {
            index,
            services: vec![ServiceName::Shadowsocks],
            price_per_mib: 1_000_000_000_000,
            price_per_second: 10_000_000_000,
            seller_burn: 1_000_000_000_000_000,
            buyer_burn: 1_000_000_000_000_000,
            min_deposit: 10_000_000_000_000_000,
            interval: 2,
            grace: 2,
            region: "lab".into(),
            extra_config: String::new(),
            extra_p2p_config: String::new(),
            exit_allow: None,
            at_home: false,
        }
    }
}

/// A daemon process.
#[derive(Debug)]
pub struct Daemon {
    /// Name (`seller-1`, `buyer`).
    pub name: String,
    /// Its host.
    pub host: Host,
    /// The process.
    pub child: Option<Child>,
    /// libp2p peer id.
    pub peer_id: String,
    /// API address (inside its host).
    pub api: SocketAddr,
    /// Data dir.
    pub data_dir: PathBuf,
    /// Config file.
    pub config: PathBuf,
    /// p2p TCP port.
    pub p2p_port: u16,
    /// Shadowsocks port (sellers) or SOCKS5 port (buyers).
    pub service_port: u16,
    /// The log file (stdout and stderr).
    pub log: PathBuf,
}

impl Daemon {
    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process gently (SIGTERM), waiting up to `wait`.
    pub fn stop(&mut self, wait: Duration) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + wait;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The whole network.
pub struct LabNet {
    exe: PathBuf,
    dir: PathBuf,
    devnet: Option<Devnet>,
    /// The devnet's description.
    pub info: DevnetInfo,
    rt_seller: Option<Rt>,
    rt_inet: Option<Rt>,
    lab: Option<Lab>,
    http: SocketAddr,
    poll_ms: u64,
    /// The relay every seller reserves a slot on (sellers advertise through it by default).
    relay: Option<Daemon>,
    /// Environment for daemons started from now on ([`Self::set_daemon_env`]).
    daemon_env: Vec<(String, String)>,
}

impl std::fmt::Debug for LabNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabNet")
            .field("dir", &self.dir)
            .field("namespaces", &self.lab.is_some())
            .finish()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl LabNet {
    /// Whether the namespace lab can run here (root and iproute2), else why not.
    pub fn namespaces_unavailable() -> Option<String> {
        lab::unavailable_reason()
    }

    /// Starts the chain (with `sellers` registered sellers and one buyer) and the web server.
    /// `namespaces`: use the lab (root) or loopback.
    pub fn start(
        exe: &Path,
        dir: &Path,
        namespaces: bool,
        sellers: usize,
        challenge_period: u64,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Self, LabNetError> {
        fs::create_dir_all(dir).map_err(err)?;
        let (lab, rt_seller, rt_inet) = if namespaces {
            progress("creating the namespace lab (buyer, seller, internet hosts)");
            let lab = Lab::new().map_err(err)?;
            let rs = Rt::Ns(lab.seller.runtime(2).map_err(err)?);
            let ri = Rt::Ns(lab.internet.runtime(1).map_err(err)?);
            (Some(lab), rs, ri)
        } else {
            let mk = || {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(err)
            };
            (None, Rt::Plain(mk()?), Rt::Plain(mk()?))
        };
        progress("starting the devnet chain (anvil + WayfareMarket + accounts)");
        let mut opts = DevnetOptions::new(dir.join("devnet"));
        opts.sellers = sellers;
        opts.buyers = 1;
        opts.challenge_period = challenge_period;
        if namespaces {
            opts.host = Some("0.0.0.0".into());
        }
        let devnet = rt_seller
            .block_on(async move {
                let mut quiet = |_: &str| {};
                Devnet::start(opts, &mut quiet).await
            })
            .map_err(err)?;
        let info = devnet.info.clone();
        // The "internet": a web server answering GET /bytes/N with N bytes.
        let http_ip = if namespaces {
            lab::INTERNET_IP
        } else {
            Ipv4Addr::LOCALHOST
        };
        let (tx, rx) = std_mpsc::channel();
        rt_inet.spawn(async move {
            match tokio::net::TcpListener::bind((http_ip, 0)).await {
                Ok(l) => {
                    let _ = tx.send(l.local_addr().ok());
                    serve_http(l).await;
                }
                Err(_) => {
                    let _ = tx.send(None);
                }
            }
        });
        let http = rx
            .recv_timeout(Duration::from_secs(10))
            .ok()
            .flatten()
            .ok_or_else(|| err("the internet host's web server did not start"))?;
        Ok(Self {
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            devnet: Some(devnet),
            info,
            rt_seller: Some(rt_seller),
            rt_inet: Some(rt_inet),
            lab,
            http,
            poll_ms: 200,
            relay: None,
            daemon_env: Vec::new(),
        })
        .and_then(|mut net| {
            progress("starting the relay node (sellers advertise only through it)");
            net.start_relay()?;
            Ok(net)
        })
    }

    /// Starts the relay daemon (`[p2p] relay_server = true`, no role) on its own host.
    fn start_relay(&mut self) -> Result<(), LabNetError> {
        if let Some(l) = &mut self.lab {
            l.add_relay().map_err(err)?;
        }
        let data_dir = self.dir.join("relay");
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let p2p_port = free_port();
        let mut text = self.common_config(&data_dir, api, p2p_port);
        // Circuits far shorter than a session (libp2p's defaults are 2 min and 128 KiB), so
        // every session longer than this runs past them and must reopen its circuit.
        text.push_str(&format!(
            "relay_server = true\nrelay_circuit_secs = {LAB_CIRCUIT_SECS}\nrelay_circuit_bytes = 65536\n"
        ));
        let d = self.spawn_daemon("relay", Host::Relay, &text, data_dir, api, p2p_port, 0)?;
        self.relay = Some(d);
        Ok(())
    }

    /// The namespace lab, when it runs in one.
    pub fn lab(&self) -> Option<&Lab> {
        self.lab.as_ref()
    }

    /// Runs `fut` on the seller's or the internet host's runtime (test servers).
    pub fn spawn_on<F>(&self, host: Host, fut: F) -> Result<(), LabNetError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let rt = match host {
            Host::Seller => self.rt_seller.as_ref(),
            Host::Internet => self.rt_inet.as_ref(),
            _ => None,
        };
        rt.ok_or_else(|| err("only the seller and internet hosts run test servers"))?
            .spawn(fut);
        Ok(())
    }

    /// Also serves the internet host's web (`GET /bytes/N`) on `addr`, e.g. its IPv6 address.
    pub fn serve_http_at(&self, addr: SocketAddr) -> Result<SocketAddr, LabNetError> {
        let (tx, rx) = std_mpsc::channel();
        self.spawn_on(Host::Internet, async move {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    let _ = tx.send(l.local_addr().ok());
                    serve_http(l).await;
                }
                Err(_) => {
                    let _ = tx.send(None);
                }
            }
        })?;
        rx.recv_timeout(Duration::from_secs(10))
            .ok()
            .flatten()
            .ok_or_else(|| err(format!("no web server could listen on {addr}")))
    }

    /// The relay's dialable address, `/ip4/…/tcp/…/p2p/…`.
    pub fn relay_addr(&self) -> String {
        let ip = if self.namespaces() {
            lab::RELAY_IP
        } else {
            Ipv4Addr::LOCALHOST
        };
        match &self.relay {
            Some(r) => format!("/ip4/{ip}/tcp/{}/p2p/{}", r.p2p_port, r.peer_id),
            None => String::new(),
        }
    }

    /// Whether the network runs in namespaces.
    pub fn namespaces(&self) -> bool {
        self.lab.is_some()
    }

    /// A runtime on the attacker host (made on first use; see [`Lab::add_attacker`]), for a
    /// hostile peer that reaches the seller at [`lab::SELLER_FROM_ATTACKER_IP`] and the buyer at
    /// [`lab::BUYER_FROM_ATTACKER_IP`]. Needs the namespace lab.
    pub fn attacker_runtime(&mut self, workers: usize) -> Result<NsRuntime, LabNetError> {
        let lab = self
            .lab
            .as_mut()
            .ok_or_else(|| err("the attacker host needs the namespace lab (run as root)"))?;
        lab.add_attacker()
            .map_err(err)?
            .runtime(workers)
            .map_err(err)
    }

    /// The web server on the internet host.
    pub fn http(&self) -> SocketAddr {
        self.http
    }

    /// The seller host's address as buyers see it.
    pub fn seller_ip(&self) -> Ipv4Addr {
        if self.namespaces() {
            lab::SELLER_IP
        } else {
            Ipv4Addr::LOCALHOST
        }
    }

    /// The chain's RPC URL from any host.
    pub fn rpc_url(&self) -> String {
        let port = self
            .info
            .rpc_url
            .rsplit(':')
            .next()
            .unwrap_or("8545")
            .trim_end_matches('/')
            .to_string();
        format!("http://{}:{port}", self.seller_ip())
    }

    /// `program` as a command on `host` (inside its namespace in the lab).
    pub fn command(&self, host: Host, program: &Path) -> Command {
        match &self.lab {
            Some(l) => {
                let ns = match host {
                    Host::Buyer => &l.buyer,
                    Host::Seller => &l.seller,
                    Host::Internet => &l.internet,
                    Host::Relay => l.relay.as_ref().unwrap_or(&l.seller),
                    Host::Home => l.home.as_ref().map(|h| &h.host).unwrap_or(&l.seller),
                };
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name()]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    fn common_config(&self, data_dir: &Path, api: SocketAddr, p2p_port: u16) -> String {
        format!(
            "data_dir = {data:?}\n\n[api]\nlisten = \"{api}\"\n\n[chain]\nrpc_url = \"{rpc}\"\nmarket = \"{market}\"\nchain_id = {chain}\npassword_file = {pw:?}\nstart_block = {start}\npoll_ms = {poll}\nconfirmations = 1\n\n[p2p]\nlisten = [\"/ip4/0.0.0.0/tcp/{p2p_port}\"]\n",
            data = data_dir.display().to_string(),
            rpc = self.rpc_url(),
            market = self.info.market,
            chain = self.info.chain_id,
            pw = self.info.password_file.display().to_string(),
            start = self.info.deploy_block,
            poll = self.poll_ms,
        )
    }

    /// Writes a seller's config and starts its daemon; waits until it is ready.
    pub fn start_seller(&self, spec: &SellerSpec) -> Result<Daemon, LabNetError> {
        let s = self
            .info
            .sellers
            .get(spec.index.wrapping_sub(1))
            .ok_or_else(|| err(format!("the devnet has no seller {}", spec.index)))?;
        let name = format!("seller-{}", spec.index);
        let data_dir = self.dir.join(&name);
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let p2p_port = free_port();
        let ss_port = free_port();
        let wg_port = 51820 + spec.index as u16;
        let services: Vec<String> = spec
            .services
            .iter()
            .map(|s| format!("\"{}\"", s.as_str()))
            .collect();
        let lab_internet = if self.namespaces() {
            "198.18.0.0/15"
        } else {
            "127.0.0.0/8"
        };
        let allow = spec
            .exit_allow
            .clone()
            .unwrap_or_else(|| vec![lab_internet.to_string()]);
        let allow: Vec<String> = allow.iter().map(|a| format!("{a:?}")).collect();
        let mut text = self.common_config(&data_dir, api, p2p_port);
        text.push_str(&format!("relays = [{:?}]\n", self.relay_addr()));
        text.push_str(&spec.extra_p2p_config);
        text.push_str(&format!(
            "\n[seller]\naccount_keystore = {acct:?}\nsigner_keystore = {signer:?}\nregion = \"{region}\"\nservices = [{services}]\npublic_host = \"{host}\"\nshadowsocks_listen = \"0.0.0.0:{ss_port}\"\nwireguard_port = {wg_port}\nwireguard_tun = \"wfx{idx}\"\nwireguard_pool = \"198.19.{idx}.0/24\"\nexit_allow = [{allow}]\nprice_per_mib = \"{x}\"\nprice_per_second = \"{y}\"\nseller_burn = \"{z}\"\nbuyer_burn = \"{w}\"\nmin_deposit = \"{md}\"\npayment_interval = {iv}\ngrace_secs = {grace}\n",
            acct = s.account.keystore.display().to_string(),
            signer = s.signer.keystore.display().to_string(),
            region = spec.region,
            services = services.join(", "),
            host = if spec.at_home {
                String::new()
            } else {
                self.seller_ip().to_string()
            },
            idx = spec.index,
            x = spec.price_per_mib,
            y = spec.price_per_second,
            z = spec.seller_burn,
            w = spec.buyer_burn,
            md = spec.min_deposit,
            iv = spec.interval,
            grace = spec.grace,
            allow = allow.join(", "),
        ));
        text.push_str(&spec.extra_config);
        text.push('\n');
        let host = if spec.at_home {
            Host::Home
        } else {
            Host::Seller
        };
        self.spawn_daemon(&name, host, &text, data_dir, api, p2p_port, ss_port)
    }

    /// Breaks seller `index`'s exit as a dead uplink would: the seller host drops everything it
    /// forwards from that seller's WireGuard TUN (`wfx<index>`), while its announced policy
    /// stays what it is (namespace lab only).
    pub fn break_exit(&self, index: usize) -> Result<(), LabNetError> {
        if !self.namespaces() {
            return Err(err("breaking an exit needs the namespace lab (root)"));
        }
        let script = format!(
            "table inet wayfare_lab_broken_{index} {{\n  chain forward {{\n    type filter hook forward priority -10; policy accept;\n    iifname \"wfx{index}\" drop\n  }}\n}}\n"
        );
        let mut child = self
            .command(Host::Seller, Path::new("nft"))
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(err)?;
        {
            let mut stdin = child.stdin.take().ok_or_else(|| err("nft: no stdin"))?;
            stdin.write_all(script.as_bytes()).map_err(err)?;
        }
        let out = child.wait_with_output().map_err(err)?;
        if !out.status.success() {
            return Err(err(format!(
                "nft could not break seller {index}'s exit: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Adds the home router (NAT, miniupnpd) and the host behind it (namespace lab only).
    pub fn add_home(&mut self) -> Result<(), LabNetError> {
        self.add_home_with(wayfare_tunnel::lab::HomeRouter::Upnp)
    }

    /// [`Self::add_home`] with a router of that kind.
    pub fn add_home_with(
        &mut self,
        router: wayfare_tunnel::lab::HomeRouter,
    ) -> Result<(), LabNetError> {
        let l = self
            .lab
            .as_mut()
            .ok_or_else(|| err("a home router needs the namespace lab (root)"))?;
        l.add_home_with(router).map(|_| ()).map_err(err)
    }

    /// Writes the buyer's config (joining the network at the relay) and starts its daemon:
    /// WireGuard split to the lab's internet (so no kill switch by default).
    pub fn start_buyer(&self, deposit: U256) -> Result<Daemon, LabNetError> {
        self.start_buyer_with(deposit, "wireguard_split = [\"198.18.2.0/24\"]\n")
    }

    /// Like [`LabNet::start_buyer`] with these `[buyer]` lines instead of the split: `""` is the
    /// default full tunnel (kill switch on).
    pub fn start_buyer_with(
        &self,
        deposit: U256,
        buyer_lines: &str,
    ) -> Result<Daemon, LabNetError> {
        let b = self
            .info
            .buyers
            .first()
            .ok_or_else(|| err("the devnet has no buyer"))?;
        let name = "buyer".to_string();
        let data_dir = self.dir.join(&name);
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let p2p_port = free_port();
        let socks = free_port();
        let mut text = self.common_config(&data_dir, api, p2p_port);
        // The sellers advertise only through the relay: the buyer joins there, and reaches them
        // through it until a reveal names their endpoints.
        text = text.replace(
            "[p2p]\n",
            &format!(
                "[p2p]\nbootstrap = [{relay:?}]\nrelays = [{relay:?}]\n",
                relay = self.relay_addr()
            ),
        );
        text.push_str(&format!(
            "\n[buyer]\nkeystore = {ks:?}\nsocks_listen = \"127.0.0.1:{socks}\"\ndeposit = \"{deposit}\"\npayment_interval = 2\nclose_timeout_secs = 5\nreveal_timeout_secs = 20\nwireguard_tun = \"wfv0\"\n{buyer_lines}",
            ks = b.keystore.display().to_string(),
        ));
        self.spawn_daemon(&name, Host::Buyer, &text, data_dir, api, p2p_port, socks)
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_daemon(
        &self,
        name: &str,
        host: Host,
        config_text: &str,
        data_dir: PathBuf,
        api: SocketAddr,
        p2p_port: u16,
        service_port: u16,
    ) -> Result<Daemon, LabNetError> {
        fs::create_dir_all(&data_dir).map_err(err)?;
        let config = self.dir.join(format!("{name}.toml"));
        fs::write(&config, config_text).map_err(err)?;
        let mut d = Daemon {
            name: name.into(),
            host,
            child: None,
            peer_id: String::new(),
            api,
            data_dir,
            config,
            p2p_port,
            service_port,
            log: self.dir.join(format!("{name}.log")),
        };
        self.restart(&mut d)?;
        Ok(d)
    }

    /// Sets `key=value` in the environment of every daemon started or restarted from now on
    /// (e.g. the system bus a test's systemd-resolved listens on).
    pub fn set_daemon_env(&mut self, key: &str, value: &str) {
        self.daemon_env.retain(|(k, _)| k != key);
        self.daemon_env.push((key.into(), value.into()));
    }

    /// (Re)starts a daemon's process from its config; waits until it is ready.
    pub fn restart(&self, d: &mut Daemon) -> Result<(), LabNetError> {
        d.kill();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&d.log)
            .map_err(err)?;
        let mut cmd = self.command(d.host, &self.exe);
        cmd.envs(self.daemon_env.iter().map(|(k, v)| (k, v)));
        cmd.arg("--log")
            .arg("info,wayfare_node=debug")
            .arg("daemon")
            .arg("--config")
            .arg(&d.config)
            .stdout(Stdio::piped())
            .stderr(log.try_clone().map_err(err)?)
            .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| err(format!("start {}: {e}", d.name)))?;
        let stdout = child.stdout.take().ok_or_else(|| err("no stdout"))?;
        let (tx, rx) = std_mpsc::channel();
        let mut log_out = log;
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(log_out, "{line}");
                if !sent && line.starts_with("wayfare daemon ready") {
                    let _ = tx.send(line);
                    sent = true;
                }
            }
        });
        d.child = Some(child);
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let tail = fs::read_to_string(&d.log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                d.kill();
                return Err(err(format!(
                    "{} did not become ready; its log ends:\n{}",
                    d.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )));
            }
        };
        // "wayfare daemon ready: seller (PEER), api http://…, token …"
        d.peer_id = line
            .split('(')
            .nth(1)
            .and_then(|r| r.split(')').next())
            .unwrap_or_default()
            .to_string();
        Ok(())
    }

    /// Runs `wayfare ARGS` against daemon `d`'s API on its host; returns stdout, or the error
    /// with stderr.
    pub fn cli(&self, d: &Daemon, args: &[&str]) -> Result<String, LabNetError> {
        let mut cmd = self.command(d.host, &self.exe);
        cmd.args(args)
            .arg("--api")
            .arg(d.api.to_string())
            .arg("--data-dir")
            .arg(&d.data_dir)
            .stdin(Stdio::null());
        let out = cmd.output().map_err(err)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(err(format!(
                "`wayfare {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Like [`Self::cli`], parsing `--json` output.
    pub fn cli_json(&self, d: &Daemon, args: &[&str]) -> Result<serde_json::Value, LabNetError> {
        let mut a: Vec<&str> = args.to_vec();
        a.push("--json");
        let out = self.cli(d, &a)?;
        serde_json::from_str(&out)
            .map_err(|e| err(format!("`wayfare {}`: {e}: {out}", args.join(" "))))
    }

    /// Downloads `bytes` from the internet host on the buyer's host: through SOCKS5 at
    /// `socks` when given, else directly (through the VPN). Returns the bytes received.
    pub fn download(&self, socks: Option<u16>, bytes: u64) -> Result<u64, LabNetError> {
        self.download_within(socks, bytes, Duration::from_secs(60))
    }

    /// [`Self::download`] giving up after `max`.
    pub fn download_within(
        &self,
        socks: Option<u16>,
        bytes: u64,
        max: Duration,
    ) -> Result<u64, LabNetError> {
        let url = format!("http://{}/bytes/{bytes}", self.http);
        let mut cmd = self.command(Host::Buyer, Path::new("curl"));
        cmd.args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            "--max-time",
        ]);
        cmd.arg(max.as_secs().max(1).to_string());
        if let Some(p) = socks {
            cmd.arg("--socks5-hostname").arg(format!("127.0.0.1:{p}"));
        }
        let out = cmd.arg(&url).output().map_err(err)?;
        if !out.status.success() {
            return Err(err(format!(
                "curl {url} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(err)
    }

    /// Runs `f` with a views-only market client on the seller host.
    pub fn chain<F, Fut, T>(&self, f: F) -> Result<T, LabNetError>
    where
        F: FnOnce(MarketClient) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, wayfare_chain::ChainError>> + Send + 'static,
        T: Send + 'static,
    {
        let rpc = self.rpc_url();
        let market = self.info.market;
        let rt = self.rt_seller.as_ref().ok_or_else(|| err("no runtime"))?;
        rt.block_on(async move {
            let c = MarketClient::connect(ConnectOptions {
                rpc_url: rpc,
                market,
                expected_chain_id: None,
                signer: None,
            })
            .await?;
            f(c).await
        })
        .map_err(err)
    }

    /// Moves the chain's clock forward (anvil `evm_increaseTime` and a block).
    pub fn time_travel(&self, seconds: u64) -> Result<(), LabNetError> {
        self.chain(move |c| async move {
            wayfare_chain::devnet::increase_time(c.provider(), seconds).await
        })
    }

    /// Polls `f` every 200 ms until it returns `Some`, or fails after `timeout` with `what`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Option<T>,
    ) -> Result<T, LabNetError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "timed out after {timeout:?} waiting for {what}"
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for LabNet {
    fn drop(&mut self) {
        // The relay daemon and anvil first (anvil lives in the seller host), then the runtimes,
        // then the namespaces.
        self.relay.take();
        self.devnet.take();
        self.rt_inet.take();
        self.rt_seller.take();
        self.lab.take();
    }
}

async fn serve_http(listener: tokio::net::TcpListener) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let text = String::from_utf8_lossy(&buf);
            let path = text.split_whitespace().nth(1).unwrap_or("/");
            let n: u64 = path
                .strip_prefix("/bytes/")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
            );
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let block = vec![0x5au8; 64 * 1024];
            let mut left = n;
            while left > 0 {
                let k = left.min(block.len() as u64) as usize;
                if sock.write_all(&block[..k]).await.is_err() {
                    return;
                }
                left -= k as u64;
            }
            let _ = sock.shutdown().await;
        });
    }
}
