//! The daemon and its client commands: `wayfare daemon`, `offers`, `connect`, `status`,
//! `disconnect`, `channels`, `close`, `seller status|withdraw`. Every client command talks to
//! the daemon only through its REST API (bearer token from the data dir).

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use wayfare_chain::units::format_eth;
use wayfare_node::{
    NodeConfig,
    api_types::{
        ApiError, ChannelView, ConnectAnswer, ConnectRequest, DisconnectRequest, NodeStatus,
        OfferView, SellerStatus, SessionView, TxView,
    },
};

use crate::lockdown_cmd::lockdown_line;
use crate::output;

/// How the client reaches the daemon. With no flag it reads the daemon's config at the
/// standard place (root: /etc/wayfare/wayfare.toml, a user: ~/.config/wayfare/wayfare.toml) for
/// its data dir and API address.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The daemon's API address (default: `[api] listen` of its config, else 127.0.0.1:7767).
    #[arg(long, env = "WAYFARE_API", global = true)]
    api: Option<String>,
    /// The daemon's config, to find its data dir and API address (default: the standard place).
    #[arg(long, env = "WAYFARE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// The daemon's data dir, whose `api-token` file is read (default: its config's data_dir,
    /// else /var/lib/wayfare as root, ~/.local/share/wayfare as a user).
    #[arg(long, env = "WAYFARE_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// The token file, when it is not DATA_DIR/api-token.
    #[arg(long, env = "WAYFARE_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// `wayfare daemon`.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// The TOML config (default: /etc/wayfare/wayfare.toml as root, else
    /// $XDG_CONFIG_HOME/wayfare/wayfare.toml; `wayfare init` writes it with every key).
    #[arg(long, short, env = "WAYFARE_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Overrides `[api] listen`.
    #[arg(long)]
    api_listen: Option<std::net::SocketAddr>,
}

/// `wayfare connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The seller's account (default: the best offer).
    #[arg(long)]
    seller: Option<String>,
    /// The service.
    #[arg(long, value_parser = ["wireguard", "shadowsocks"], default_value = "shadowsocks")]
    service: String,
    /// Highest price per MiB accepted (wei, or with a unit: `1gwei`).
    #[arg(long)]
    max_price_per_mib: Option<String>,
    /// Highest price per second accepted.
    #[arg(long)]
    max_price_per_second: Option<String>,
    /// The channel's deposit (default from the daemon's config).
    #[arg(long)]
    deposit: Option<String>,
    /// Only sellers announcing this region.
    #[arg(long)]
    region: Option<String>,
    /// Only sellers scoring at least this (0..1, the SCORE column of `wayfare offers`).
    #[arg(long)]
    min_score: Option<f64>,
    /// Move from the live session to another seller: the new tunnel comes up before the old
    /// one goes (the lockdown stays up throughout), then the old session is left.
    #[arg(long)]
    switch: bool,
    /// Return once the session started instead of waiting for the tunnel.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

/// `wayfare disconnect`.
#[derive(Debug, clap::Args)]
pub struct DisconnectArgs {
    /// The session (default: every live one).
    #[arg(long)]
    session: Option<String>,
    /// Also close the channel (default: keep it open, so reconnecting to this seller needs no
    /// transaction and no new burn; `wayfare close` closes it later).
    #[arg(long)]
    close: bool,
}

/// `wayfare close`.
#[derive(Debug, clap::Args)]
pub struct CloseArgs {
    /// The channel id.
    channel: String,
}

/// `wayfare seller …`.
#[derive(Debug, clap::Subcommand)]
pub enum SellerCmd {
    /// Sessions, earnings, unsettled vouchers and what can be withdrawn.
    Status,
    /// Withdraw what closed channels credited to the payout account.
    Withdraw,
}

pub(crate) struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub(crate) fn new(a: &ApiArgs) -> anyhow::Result<Self> {
        let (path, api) = match (&a.token_file, &a.data_dir, &a.api) {
            (Some(t), _, Some(api)) => (t.clone(), api.clone()),
            (None, Some(d), Some(api)) => (d.join("api-token"), api.clone()),
            _ => {
                let found = wayfare_node::paths::daemon_address(a.config.as_deref())
                    .map_err(anyhow::Error::msg)?;
                let dir = a.data_dir.clone().unwrap_or(found.data_dir);
                let token = a
                    .token_file
                    .clone()
                    .unwrap_or_else(|| dir.join("api-token"));
                (token, a.api.clone().unwrap_or(found.api.to_string()))
            }
        };
        let token = std::fs::read_to_string(&path)
            .with_context(|| {
                format!(
                    "can't read the API token {} (is the daemon running with this data dir? pass --config, --data-dir or --token-file)",
                    path.display()
                )
            })?
            .trim()
            .to_string();
        let base = if api.starts_with("http") {
            api.trim_end_matches('/').to_string()
        } else {
            format!("http://{api}")
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()?;
        Ok(Self { base, token, http })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<T> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow::anyhow!(
                    "the daemon is not running at {} (start it with `wayfare daemon --config …`, or pass --api)",
                    self.base
                )
            } else {
                anyhow::anyhow!("talking to the daemon at {}: {e}", self.base)
            }
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<ApiError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            bail!("{msg}");
        }
        serde_json::from_slice(&bytes).with_context(|| format!("the daemon's answer to {path}"))
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<T> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

fn eth(wei: &str) -> String {
    wei.parse()
        .map(format_eth)
        .unwrap_or_else(|_| wei.to_string())
}

fn short(s: &str) -> String {
    if s.len() > 14 {
        format!("{}…{}", &s[..8], &s[s.len() - 4..])
    } else {
        s.to_string()
    }
}

/// `wayfare daemon`.
pub async fn daemon(args: DaemonArgs) -> anyhow::Result<()> {
    let path = args
        .config
        .unwrap_or_else(wayfare_node::paths::default_config);
    let mut cfg = NodeConfig::load(&path)?;
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(a) = args.api_listen {
        cfg.api.listen = a;
    }
    cfg.validate()?;
    let hup = watch_sighup(
        path.clone(),
        cfg.clone(),
        args.data_dir.clone(),
        args.api_listen,
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<wayfare_node::daemon::Ready>();
    let printer = tokio::spawn(async move {
        if let Ok(r) = rx.await {
            println!(
                "wayfare daemon ready: {} ({}), api {}, token {}, p2p {}",
                r.roles.join("+"),
                r.peer_id,
                r.api,
                r.token_file,
                r.p2p_addrs.join(" ")
            );
        }
    });
    wayfare_node::daemon::run(cfg, Some(tx), None).await?;
    printer.abort();
    hup.abort();
    Ok(())
}

/// On `SIGHUP`: the config file read again, and one log line naming the changed keys (applied
/// at the next start; see `wayfare_node::config_reload`).
fn watch_sighup(
    path: std::path::PathBuf,
    running: NodeConfig,
    data_dir: Option<std::path::PathBuf>,
    api_listen: Option<std::net::SocketAddr>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let line = wayfare_node::config_reload::on_sighup(&path, &running, || {
                let mut c = NodeConfig::load(&path).map_err(|e| e.to_string())?;
                if let Some(d) = &data_dir {
                    c.data_dir = d.clone();
                }
                if let Some(a) = api_listen {
                    c.api.listen = a;
                }
                Ok(c)
            });
            tracing::warn!("{line}");
        }
    })
}

/// `wayfare offers`.
pub async fn offers(a: ApiArgs, sort: &str) -> anyhow::Result<()> {
    let c = Client::new(&a)?;
    let offers: Vec<OfferView> = c.get(&format!("/v1/offers?sort={sort}")).await?;
    if a.json {
        return output::json(&offers);
    }
    if offers.is_empty() {
        println!(
            "no offers yet: sellers announce every few seconds; check [p2p] bootstrap if this stays empty"
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = offers
        .iter()
        .map(|o| {
            vec![
                o.seller.clone(),
                o.region.clone(),
                o.services.join(","),
                o.price_per_mib_wei.clone(),
                o.price_per_second_wei.clone(),
                o.seller_burn_wei.clone(),
                o.buyer_burn_wei.clone(),
                match (o.score, o.failed_recently) {
                    (Some(s), true) => format!("{s:.3} failed recently"),
                    (Some(s), false) => format!("{s:.3}"),
                    (None, _) => "-".into(),
                },
                if o.exit_allow.is_empty() {
                    "internet".into()
                } else {
                    format!("internet+{}", o.exit_allow.join(","))
                },
            ]
        })
        .collect();
    output::table(
        &[
            "SELLER",
            "REGION",
            "SERVICE",
            "X wei/MiB",
            "Y wei/s",
            "Z burn",
            "W burn",
            "SCORE",
            "EXIT",
        ],
        &rows,
    );
    Ok(())
}

/// `wayfare connect`.
pub async fn connect(a: ApiArgs, args: ConnectArgs) -> anyhow::Result<()> {
    let c = Client::new(&a)?;
    let started = std::time::Instant::now();
    let req = ConnectRequest {
        seller: args.seller,
        service: Some(args.service),
        max_price_per_mib: args.max_price_per_mib,
        max_price_per_second: args.max_price_per_second,
        deposit: args.deposit,
        region: args.region,
        min_score: args.min_score,
        switch: args.switch,
    };
    let ans: ConnectAnswer = c.post("/v1/connect", serde_json::to_value(&req)?).await?;
    if !a.json {
        println!("seller     {}", ans.seller);
        println!("session    {}", ans.session);
        if let Some(c) = &ans.reused_channel {
            println!("channel    {c} (open already: reused, no transaction)");
        }
    }
    if args.no_wait {
        return if a.json { output::json(&ans) } else { Ok(()) };
    }
    let deadline = started + Duration::from_secs(args.timeout);
    let mut last = String::new();
    loop {
        let s: SessionView = c.get(&format!("/v1/sessions/{}", ans.session)).await?;
        if s.phase != last && !a.json {
            let what = match s.phase.as_str() {
                "requesting" => "asking the seller for a quote".to_string(),
                "opening" => "opening the payment channel on chain".to_string(),
                "awaiting-reveal" => format!(
                    "channel {} open; waiting for the seller's sealed endpoint",
                    s.channel_id.as_deref().map(short).unwrap_or_default()
                ),
                "connected" => "connected".to_string(),
                other => other.to_string(),
            };
            println!("{:>6.2}s    {what}", started.elapsed().as_secs_f64());
            last = s.phase.clone();
        }
        if s.live {
            if a.json {
                return output::json(&s);
            }
            if let Some(exit) = &s.exit {
                println!("EXIT       {exit} (other destinations are refused at once)");
            }
            if let Some(socks) = &s.socks {
                println!("SOCKS5     {socks}  (curl --socks5-hostname {socks} …)");
            } else {
                println!(
                    "VPN        up (routes per the daemon's [buyer] wireguard_split; all traffic by default)"
                );
            }
            println!(
                "paying every interval; `wayfare status` shows the meter, `wayfare disconnect` leaves"
            );
            return Ok(());
        }
        if s.phase == "ended" && s.end_reason.as_deref() == Some("ResumeRefused") {
            bail!(
                "the seller no longer holds paused channel {} (it settled or lost it){}: the node closes it on chain, so what you did not pay comes back after the challenge period; run `wayfare connect` again for a new channel",
                s.channel_id.as_deref().unwrap_or("?"),
                s.last_error.map(|e| format!(" — {e}")).unwrap_or_default()
            );
        }
        // A seller that settled the paused channel may be seen on chain before its refusal
        // arrives: the same answer, the channel already closing.
        if s.phase == "ended"
            && ans.reused_channel.is_some()
            && s.end_reason.as_deref() == Some("ChannelClosed")
        {
            bail!(
                "the seller no longer holds paused channel {}: it settled it on chain, so what you did not pay comes back after the challenge period; run `wayfare connect` again for a new channel",
                s.channel_id.as_deref().unwrap_or("?"),
            );
        }
        if s.phase == "ended" {
            bail!(
                "the session ended before it connected ({}{}): try another seller (`wayfare offers`)",
                s.end_reason.unwrap_or_else(|| "no reason".into()),
                s.last_error.map(|e| format!(": {e}")).unwrap_or_default()
            );
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "not connected after {} s (phase {}{}): `wayfare disconnect` gives up and closes",
                args.timeout,
                s.phase,
                s.last_error
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `wayfare status`.
pub async fn status(a: ApiArgs) -> anyhow::Result<()> {
    let c = Client::new(&a)?;
    let s: NodeStatus = c.get("/v1/status").await?;
    if a.json {
        return output::json(&s);
    }
    output::pairs(&[
        ("roles", s.roles.join(", ")),
        ("peer id", s.peer_id.clone()),
        (
            "chain",
            format!(
                "{} block {}{}",
                s.chain_id,
                s.chain_block,
                if s.chain_ok {
                    ""
                } else {
                    " (unreachable: retrying)"
                }
            ),
        ),
        ("market", s.market.clone()),
        (
            "p2p",
            format!(
                "advertise {}{}{}",
                s.advertise,
                match s.relays.len() {
                    0 => String::new(),
                    n => format!(", {n} relay{}", if n == 1 { "" } else { "s" }),
                },
                if s.relay_server {
                    ", relaying for others"
                } else {
                    ""
                }
            ),
        ),
        (
            "dial",
            s.p2p_addrs
                .iter()
                .map(|a| format!("{a}/p2p/{}", s.peer_id))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        ("outside tunnel", s.outside_tunnel.join(", ")),
    ]);
    if let Some(l) = &s.lockdown {
        println!("{:<15}{}", "lockdown", lockdown_line(l));
    }
    let rows: Vec<Vec<String>> = s
        .sessions
        .iter()
        .filter(|x| x.phase != "ended")
        .map(|x| {
            vec![
                x.role.clone(),
                short(&x.counterparty),
                x.service.clone(),
                x.phase.clone(),
                x.bytes.to_string(),
                x.price_per_mib_wei.clone().unwrap_or_default(),
                eth(&x.paid_wei),
                x.deposit_left_wei.as_deref().map(eth).unwrap_or("-".into()),
                if x.live { "yes".into() } else { "no".into() },
                x.measured.as_ref().map(measured).unwrap_or("-".into()),
            ]
        })
        .collect();
    // What each live buyer session refused by its seller's exit policy, with the policy.
    let refusals = s
        .sessions
        .iter()
        .filter(|x| x.role == "buyer" && x.phase != "ended" && x.exit_refused > 0);
    for x in refusals {
        println!(
            "{:<15}{} refused: {} exits to {} only",
            "exit policy",
            x.exit_refused,
            short(&x.counterparty),
            x.exit.as_deref().unwrap_or("?")
        );
    }
    if rows.is_empty() {
        println!("no live sessions");
    } else {
        output::table(
            &[
                "ROLE",
                "PEER",
                "SERVICE",
                "PHASE",
                "BYTES",
                "X wei/MiB",
                "PAID",
                "DEPOSIT LEFT",
                "LIVE",
                "FIRST BYTE · PEAK · LOST",
            ],
            &rows,
        );
    }
    Ok(())
}

/// A buyer's measurements in a cell: `120 ms · 45.2 MiB/s · 0/12 lost`.
fn measured(m: &wayfare_node::api_types::MeasuredView) -> String {
    format!(
        "{} · {:.1} MiB/s · {}/{} lost",
        m.first_byte_ms.map_or("-".into(), |ms| format!("{ms} ms")),
        m.peak_down_bps as f64 / 1048576.0,
        m.lost,
        m.answered + m.lost
    )
}

/// `wayfare disconnect`.
pub async fn disconnect(a: ApiArgs, args: DisconnectArgs) -> anyhow::Result<()> {
    let c = Client::new(&a)?;
    let close = args.close;
    let body = serde_json::to_value(DisconnectRequest {
        session: args.session,
        close,
    })?;
    let left: Vec<String> = c.post("/v1/disconnect", body).await?;
    if a.json {
        return output::json(&left);
    }
    if left.is_empty() {
        println!("no live session to leave");
    }
    for id in left {
        if close {
            println!("leaving {id}: final voucher sent, closing the channel cooperatively");
        } else {
            println!(
                "paused {id}: final voucher sent; the channel stays open (`wayfare connect` reuses it, `wayfare close` closes it)"
            );
        }
    }
    let s: NodeStatus = c.get("/v1/status").await?;
    if let Some(l) = &s.lockdown {
        println!("lockdown: {}", lockdown_line(l));
    }
    Ok(())
}

/// `wayfare channels`.
pub async fn channels(a: ApiArgs) -> anyhow::Result<()> {
    let c = Client::new(&a)?;
    let list: Vec<ChannelView> = c.get("/v1/channels").await?;
    if a.json {
        return output::json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|ch| {
            vec![
                ch.id.clone(),
                ch.role.clone(),
                ch.service.clone(),
                ch.state.clone(),
                eth(&ch.deposit_wei),
                eth(&ch.voucher_wei),
                ch.to_seller_wei.as_deref().map(eth).unwrap_or("-".into()),
                ch.pending_actions.join(","),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no channels yet");
        return Ok(());
    }
    output::table(
        &[
            "CHANNEL",
            "ROLE",
            "SERVICE",
            "STATE",
            "DEPOSIT",
            "VOUCHER",
            "TO SELLER",
            "PENDING",
        ],
        &rows,
    );
    Ok(())
}

/// `wayfare close`.
pub async fn close(a: ApiArgs, args: CloseArgs) -> anyhow::Result<()> {
    let c = Client::new(&a)?;
    let what: String = c
        .post(
            &format!("/v1/channels/{}/close", args.channel),
            serde_json::json!({}),
        )
        .await?;
    if a.json {
        return output::json(&what);
    }
    println!("{what}");
    Ok(())
}

/// `wayfare seller …`.
pub async fn seller(a: ApiArgs, cmd: SellerCmd) -> anyhow::Result<()> {
    let c = Client::new(&a)?;
    match cmd {
        SellerCmd::Status => {
            let s: SellerStatus = c.get("/v1/seller").await?;
            if a.json {
                return output::json(&s);
            }
            output::pairs(&[
                ("account", s.account.clone()),
                ("live sessions", s.live_sessions.to_string()),
                ("earned", eth(&s.earned_wei)),
                ("unsettled", eth(&s.unsettled_wei)),
                (
                    "withdrawable",
                    s.withdrawable_wei
                        .as_deref()
                        .map(eth)
                        .unwrap_or_else(|| "unknown (chain unreachable)".into()),
                ),
                ("reachable", s.reachability.clone()),
            ]);
            Ok(())
        }
        SellerCmd::Withdraw => {
            let t: TxView = c.post("/v1/withdraw", serde_json::json!({})).await?;
            if a.json {
                return output::json(&t);
            }
            println!(
                "withdrew {} (tx {})",
                t.amount_wei.as_deref().map(eth).unwrap_or_default(),
                t.tx
            );
            Ok(())
        }
    }
}
