//! `wayfare init --seller | --buyer`: the guided first run. Checks the chain first (chain id,
//! market code), then creates the role's V3 keystores (never replacing one), writes a commented
//! `wayfare.toml` with every key (atomically, never over an existing one), reports balances and,
//! for a seller, its registration (registering and funding it with `--register`), and ends with
//! the exact next command.

use std::path::{Path, PathBuf};

use alloy_primitives::{Address, U256};
use anyhow::{Context, bail};
use wayfare_chain::{
    ConnectOptions, MarketClient,
    keystore::{PrivateKeySigner, create_keystore, load_keystore},
    units::{format_eth, parse_amount},
};
use wayfare_node::{
    NodeConfig,
    config_template::{render, toml_string, toml_strings},
    paths,
};

use crate::{init_files, output};

/// `wayfare init`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("role").required(true).args(["seller", "buyer"])))]
pub struct InitArgs {
    /// Set up a seller: account and signer keystores, the `[seller]` config, the registry check.
    #[arg(long)]
    seller: bool,
    /// Set up a buyer: the paying account's keystore and the `[buyer]` config.
    #[arg(long)]
    buyer: bool,
    /// JSON-RPC URL of the chain.
    #[arg(long, env = "WAYFARE_RPC_URL")]
    rpc_url: String,
    /// The WayfareMarket address (`wayfare chain deploy` prints it).
    #[arg(long, env = "WAYFARE_MARKET")]
    market: Address,
    /// Refuse unless the node is on this chain (default: the chain the node reports, written
    /// into the config so the daemon refuses another).
    #[arg(long, env = "WAYFARE_CHAIN_ID")]
    chain_id: Option<u64>,
    /// First block of market events the daemon reads (the deployment block `chain deploy` printed).
    #[arg(long, default_value_t = 0)]
    start_block: u64,
    /// The config to write (default: /etc/wayfare/wayfare.toml as root, else
    /// $XDG_CONFIG_HOME/wayfare/wayfare.toml). An existing one is left as it is.
    #[arg(long, env = "WAYFARE_CONFIG")]
    config: Option<PathBuf>,
    /// The daemon's data dir, written into the config (default: /var/lib/wayfare as root, else
    /// $XDG_DATA_HOME/wayfare). Keystores go into DATA_DIR/keystores.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// File whose first line is the keystores' password (also written into the config, so the
    /// daemon starts unattended).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Environment variable holding the password when there is no --password-file (else a
    /// prompt, twice for a new key, never echoed).
    #[arg(long, default_value = "WAYFARE_PASSWORD")]
    password_env: String,
    /// `[api] listen` (loopback; change it to run two daemons on one host).
    #[arg(long)]
    api_listen: Option<std::net::SocketAddr>,
    /// `[p2p] listen` (default for a seller: /ip4/0.0.0.0/tcp/4001).
    #[arg(long)]
    p2p_listen: Option<String>,
    /// `[p2p] bootstrap`: peers to join through (each /ip4/…/tcp/…/p2p/<peer id>; repeatable).
    #[arg(long)]
    bootstrap: Vec<String>,
    /// `[p2p] relays`: relays to reserve on and reach peers through (repeatable).
    #[arg(long)]
    relay: Vec<String>,
    /// `[p2p] advertise`: relay or direct (a seller without --relay must say direct).
    #[arg(long, value_parser = ["relay", "direct"])]
    advertise: Option<String>,
    /// Seller: the host buyers dial (sent only inside the sealed reveal).
    #[arg(long, required_if_eq("seller", "true"))]
    public_host: Option<String>,
    /// Seller: region announced.
    #[arg(long)]
    region: Option<String>,
    /// Seller: services sold (shadowsocks, wireguard; repeatable).
    #[arg(long, value_parser = ["shadowsocks", "wireguard"])]
    service: Vec<String>,
    /// Seller: `shadowsocks_listen` (HOST:PORT).
    #[arg(long)]
    shadowsocks_listen: Option<std::net::SocketAddr>,
    /// Seller: price per MiB (wei or with a unit, `1gwei`; default 1000000000000).
    #[arg(long, value_parser = parse_amount)]
    price_per_mib: Option<U256>,
    /// Seller: price per second (default 0).
    #[arg(long, value_parser = parse_amount)]
    price_per_second: Option<U256>,
    /// Seller: private ranges the exit may reach (CIDR; repeatable).
    #[arg(long)]
    exit_allow: Vec<String>,
    /// Seller: register the account in the market now (its signer, payout = the account, a new
    /// X25519 key, metadata from --region and --service), with --funds as its seller funds.
    #[arg(long, requires = "seller")]
    register: bool,
    /// Seller: seller funds to deposit (pay seller burns): at registration, or added to a
    /// registered seller's.
    #[arg(long, value_parser = parse_amount, requires = "seller")]
    funds: Option<U256>,
    /// Seconds between vouchers (`payment_interval` of the role's section; default 15).
    #[arg(long)]
    payment_interval: Option<u32>,
    /// Buyer: deposit per channel (default 0.01 ETH).
    #[arg(long, value_parser = parse_amount)]
    deposit: Option<U256>,
    /// Buyer: `socks_listen` (HOST:PORT).
    #[arg(long)]
    socks_listen: Option<std::net::SocketAddr>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// What init found and did, for people and `--json`.
#[derive(Debug, Default, serde::Serialize)]
struct Report {
    role: &'static str,
    config: PathBuf,
    config_written: bool,
    data_dir: PathBuf,
    chain_id: u64,
    market: Address,
    accounts: Vec<AccountReport>,
    registered: Option<bool>,
    active: Option<bool>,
    seller_funds_wei: Option<String>,
    peer_id: String,
    p2p_addr: Option<String>,
    actions: Vec<String>,
    next: String,
}

#[derive(Debug, serde::Serialize)]
struct AccountReport {
    name: &'static str,
    address: Address,
    keystore: PathBuf,
    created: bool,
    balance_wei: String,
}

/// The role's keys, opened or created.
struct Keys {
    account: PrivateKeySigner,
    signer: Option<PrivateKeySigner>,
}

pub async fn run(a: InitArgs) -> anyhow::Result<()> {
    let role = if a.seller { "seller" } else { "buyer" };
    if a.seller && a.relay.is_empty() && a.advertise.as_deref() != Some("direct") {
        bail!(
            "a seller advertises only through relays: pass --relay /ip4/…/tcp/…/p2p/<peer id> (any node with relay_server = true), or --advertise direct to publish this host's address"
        );
    }
    let config = a.config.clone().unwrap_or_else(paths::default_config);
    let data_dir = a.data_dir.clone().unwrap_or_else(paths::default_data_dir);
    // The chain first: a wrong URL, chain or market writes nothing.
    let view = MarketClient::connect(ConnectOptions {
        rpc_url: a.rpc_url.clone(),
        market: a.market,
        expected_chain_id: a.chain_id,
        signer: None,
    })
    .await?;
    let password = init_files::Password::new(a.password_file.clone(), &a.password_env);
    let keys_dir = data_dir.join("keystores");
    let mut report = Report {
        role,
        config: config.clone(),
        data_dir: data_dir.clone(),
        chain_id: view.chain_id(),
        market: a.market,
        ..Report::default()
    };
    // The config is rendered and checked before any file is written.
    let text = if config.exists() {
        NodeConfig::load(&config).with_context(|| {
            format!(
                "{} exists but is not a usable config (it is left as it is: fix it, or remove it and re-run)",
                config.display()
            )
        })?;
        None
    } else {
        Some(config_text(&a, &report, &keys_dir)?)
    };
    let keys = open_or_create_keys(&a, &keys_dir, &password, &mut report)?;
    init_files::ensure_dir(&data_dir)?;
    let peer = wayfare_p2p::load_or_create_keypair(&data_dir.join("p2p.key"))
        .context("the p2p key")?
        .public()
        .to_peer_id();
    report.peer_id = peer.to_string();
    if let Some(text) = text {
        init_files::write_new(&config, &text)?;
        report.config_written = true;
    }
    for acct in &mut report.accounts {
        acct.balance_wei = view.balance(acct.address).await?.to_string();
    }
    if a.seller {
        seller_chain(&a, &view, &keys, &mut report).await?;
        report.p2p_addr = direct_addr(&a, &report.peer_id);
    }
    report.next = next_command(&a, &config, &report);
    print(&report, a.json)
}

fn open_or_create_keys(
    a: &InitArgs,
    dir: &Path,
    password: &init_files::Password,
    report: &mut Report,
) -> anyhow::Result<Keys> {
    let names: &[(&'static str, &str)] = if a.seller {
        &[("account", "seller.json"), ("signer", "seller-signer.json")]
    } else {
        &[("account", "buyer.json")]
    };
    let mut opened = Vec::new();
    for (what, file) in names {
        let path = dir.join(file);
        let (key, created) = if path.exists() {
            (load_keystore(&path, &password.source())?, false)
        } else {
            let key = PrivateKeySigner::random();
            let pw = password.for_new_key(&path)?;
            init_files::ensure_dir(dir)?;
            create_keystore(dir, file, &key, &pw)?;
            (key, true)
        };
        report.accounts.push(AccountReport {
            name: what,
            address: key.address(),
            keystore: path,
            created,
            balance_wei: String::new(),
        });
        opened.push(key);
    }
    let mut it = opened.into_iter();
    let account = it.next().context("no account key")?;
    Ok(Keys {
        account,
        signer: it.next(),
    })
}

fn config_text(a: &InitArgs, report: &Report, keys_dir: &Path) -> anyhow::Result<String> {
    let path = |p: &Path| toml_string(&p.display().to_string());
    let mut set: Vec<(&str, &str, String)> = vec![
        ("chain", "rpc_url", toml_string(&a.rpc_url)),
        ("chain", "market", toml_string(&a.market.to_string())),
        ("chain", "chain_id", report.chain_id.to_string()),
        ("chain", "start_block", a.start_block.to_string()),
    ];
    if a.data_dir.is_some() {
        set.push(("", "data_dir", path(&report.data_dir)));
    }
    if let Some(f) = &a.password_file {
        set.push(("chain", "password_file", path(&absolute(f))));
    }
    if let Some(l) = a.api_listen {
        set.push(("api", "listen", toml_string(&l.to_string())));
    }
    let listen = a
        .p2p_listen
        .clone()
        .or_else(|| a.seller.then(|| "/ip4/0.0.0.0/tcp/4001".to_string()));
    if let Some(l) = listen {
        set.push(("p2p", "listen", toml_strings(&[l])));
    }
    if !a.bootstrap.is_empty() {
        set.push(("p2p", "bootstrap", toml_strings(&a.bootstrap)));
    }
    if !a.relay.is_empty() {
        set.push(("p2p", "relays", toml_strings(&a.relay)));
    }
    if let Some(adv) = &a.advertise {
        set.push(("p2p", "advertise", toml_string(adv)));
    }
    if let Some(iv) = a.payment_interval {
        let role = if a.seller { "seller" } else { "buyer" };
        set.push((role, "payment_interval", iv.to_string()));
    }
    let section = if a.seller {
        seller_keys(a, keys_dir, &mut set);
        "seller"
    } else {
        set.push(("buyer", "keystore", path(&keys_dir.join("buyer.json"))));
        if let Some(d) = a.deposit {
            set.push(("buyer", "deposit", toml_string(&d.to_string())));
        }
        if let Some(s) = a.socks_listen {
            set.push(("buyer", "socks_listen", toml_string(&s.to_string())));
        }
        "buyer"
    };
    let header = format!(
        "# Written by `wayfare init --{section}` for chain {} (market {}).\n# Every key the daemon reads is below, at its default unless init set it.\n\n",
        report.chain_id, a.market
    );
    let text =
        render(&header, &["api", "chain", "p2p", section], &set).map_err(anyhow::Error::msg)?;
    // What the daemon will read: a config init writes must load.
    let mut cfg = NodeConfig::parse(&text).map_err(anyhow::Error::msg)?;
    cfg.apply_env()?;
    cfg.validate()?;
    Ok(text)
}

fn seller_keys(a: &InitArgs, keys_dir: &Path, set: &mut Vec<(&str, &str, String)>) {
    let path = |p: &Path| toml_string(&p.display().to_string());
    set.push((
        "seller",
        "account_keystore",
        path(&keys_dir.join("seller.json")),
    ));
    set.push((
        "seller",
        "signer_keystore",
        path(&keys_dir.join("seller-signer.json")),
    ));
    if let Some(h) = &a.public_host {
        set.push(("seller", "public_host", toml_string(h)));
    }
    if let Some(r) = &a.region {
        set.push(("seller", "region", toml_string(r)));
    }
    if !a.service.is_empty() {
        set.push(("seller", "services", toml_strings(&a.service)));
    }
    if let Some(l) = a.shadowsocks_listen {
        set.push(("seller", "shadowsocks_listen", toml_string(&l.to_string())));
    }
    if let Some(p) = a.price_per_mib {
        set.push(("seller", "price_per_mib", toml_string(&p.to_string())));
    }
    if let Some(p) = a.price_per_second {
        set.push(("seller", "price_per_second", toml_string(&p.to_string())));
    }
    if !a.exit_allow.is_empty() {
        set.push(("seller", "exit_allow", toml_strings(&a.exit_allow)));
    }
}

/// The seller's registry entry: checked, registered and funded when asked.
async fn seller_chain(
    a: &InitArgs,
    view: &MarketClient,
    keys: &Keys,
    report: &mut Report,
) -> anyhow::Result<()> {
    let account = keys.account.address();
    let signer = keys.signer.as_ref().context("no signer key")?.address();
    let mut info = view.seller(account).await?;
    if !info.registered && a.register {
        let balance = view.balance(account).await?;
        if balance.is_zero() {
            bail!(
                "the seller account {account} has no ETH on chain {} to register with: send it ETH (gas{}) and re-run this command",
                view.chain_id(),
                a.funds
                    .map(|f| format!(" + {} funds", format_eth(f)))
                    .unwrap_or_default()
            );
        }
        let client = sending(view, keys.account.clone()).await?;
        let public = init_files::encryption_key(&report.data_dir.join("keystores/seller.x25519"))?;
        let services = if a.service.is_empty() {
            vec!["shadowsocks".to_string()]
        } else {
            a.service.clone()
        };
        let metadata = serde_json::json!({
            "region": a.region.clone().unwrap_or_else(|| "unknown".into()),
            "services": services,
        })
        .to_string();
        let funds = a.funds.unwrap_or_default();
        let tx = client
            .register_seller(signer, account, public, metadata, funds)
            .await?;
        report.actions.push(format!(
            "registered {account} with {} seller funds (tx {} in block {})",
            format_eth(funds),
            tx.hash,
            tx.block
        ));
        info = view.seller(account).await?;
    } else if info.registered && a.funds.is_some_and(|f| !f.is_zero()) {
        let funds = a.funds.unwrap_or_default();
        let tx = sending(view, keys.account.clone())
            .await?
            .fund_seller(funds)
            .await?;
        report.actions.push(format!(
            "added {} seller funds (tx {})",
            format_eth(funds),
            tx.hash
        ));
        info = view.seller(account).await?;
    }
    if info.registered && info.signer != signer {
        bail!(
            "{account} is registered with signer {}, not this signer key {signer}: put that signer's keystore at {} or run `wayfare chain seller update --signer {signer}`",
            info.signer,
            report
                .accounts
                .get(1)
                .map(|k| k.keystore.display().to_string())
                .unwrap_or_default()
        );
    }
    report.registered = Some(info.registered);
    report.active = Some(info.active);
    report.seller_funds_wei = Some(info.funds.to_string());
    Ok(())
}

async fn sending(view: &MarketClient, key: PrivateKeySigner) -> anyhow::Result<MarketClient> {
    Ok(MarketClient::connect(ConnectOptions {
        rpc_url: view.rpc_url().to_string(),
        market: view.address(),
        expected_chain_id: Some(view.chain_id()),
        signer: Some(key),
    })
    .await?)
}

/// A seller advertising directly: the address buyers bootstrap from.
fn direct_addr(a: &InitArgs, peer: &str) -> Option<String> {
    if a.advertise.as_deref() != Some("direct") {
        return None;
    }
    let listen = a
        .p2p_listen
        .clone()
        .unwrap_or_else(|| "/ip4/0.0.0.0/tcp/4001".into());
    let port = listen.split("/tcp/").nth(1)?.split('/').next()?;
    let host = a.public_host.as_deref()?;
    let proto = if host.parse::<std::net::Ipv6Addr>().is_ok() {
        "ip6"
    } else if host.parse::<std::net::Ipv4Addr>().is_ok() {
        "ip4"
    } else {
        "dns"
    };
    Some(format!("/{proto}/{host}/tcp/{port}/p2p/{peer}"))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn next_command(a: &InitArgs, config: &Path, r: &Report) -> String {
    let flag = if a.config.is_some() {
        format!(" --config {}", absolute(config).display())
    } else {
        String::new()
    };
    let broke: Vec<&AccountReport> = r.accounts.iter().filter(|k| k.balance_wei == "0").collect();
    if let Some(k) = broke.first() {
        return format!(
            "send ETH on chain {} to the {} {} (it pays gas{}), then re-run this command",
            r.chain_id,
            r.role,
            k.name,
            if r.role == "buyer" {
                " and deposits"
            } else {
                ""
            },
        ) + &format!(": `{}`", rerun());
    }
    if r.registered == Some(false) {
        return format!("register the seller: `{} --register`", rerun());
    }
    if r.active == Some(false) {
        return format!(
            "the seller is deactivated: `wayfare chain --rpc-url {} --market {} --keystore {} seller reactivate`",
            a.rpc_url,
            a.market,
            r.accounts[0].keystore.display()
        );
    }
    let start = format!("wayfare daemon{flag}");
    if r.role == "buyer" {
        format!("{start}, then `wayfare connect{flag}`")
    } else {
        start
    }
}

/// This command line again, for "re-run" advice.
fn rerun() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|s| s != "--register" && s != "--json")
        .map(|s| if s.contains(' ') { format!("'{s}'") } else { s })
        .collect();
    format!("wayfare {}", args.join(" "))
}

fn print(r: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(r);
    }
    let mut items = vec![
        ("role", r.role.to_string()),
        (
            "config",
            format!(
                "{} ({})",
                r.config.display(),
                if r.config_written {
                    "written"
                } else {
                    "exists, left as it is"
                }
            ),
        ),
        ("data dir", r.data_dir.display().to_string()),
        ("chain", format!("{} (market {})", r.chain_id, r.market)),
        ("peer id", r.peer_id.clone()),
    ];
    for k in &r.accounts {
        let bal = k
            .balance_wei
            .parse::<U256>()
            .map(format_eth)
            .unwrap_or_default();
        items.push((
            k.name,
            format!(
                "{} ({}, {bal}) {}",
                k.address,
                if k.created { "new" } else { "existing" },
                k.keystore.display()
            ),
        ));
    }
    if let Some(reg) = r.registered {
        let state = match (reg, r.active) {
            (false, _) => "not registered".to_string(),
            (true, Some(false)) => "registered, deactivated".to_string(),
            (true, _) => format!(
                "registered, active, seller funds {}",
                r.seller_funds_wei
                    .as_deref()
                    .and_then(|f| f.parse().ok())
                    .map(format_eth)
                    .unwrap_or_default()
            ),
        };
        items.push(("registry", state));
    }
    if let Some(addr) = &r.p2p_addr {
        items.push(("buyers bootstrap from", addr.clone()));
    }
    output::pairs(&items);
    for act in &r.actions {
        println!("done: {act}");
    }
    println!("next: {}", r.next);
    Ok(())
}
