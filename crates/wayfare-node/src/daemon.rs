//! Starting the daemon: config, store, keys, chain, p2p, roles, the API; then the node actor
//! runs until Ctrl-C or SIGTERM.

use std::{path::Path, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};
use wayfare_chain::{
    ConnectOptions, MarketClient,
    keystore::{PasswordSource, load_keystore},
};
use wayfare_p2p::{
    Advertise, Multiaddr, P2pConfig, P2pNode, RelayServerConfig, load_or_create_keypair,
};

use crate::{
    api,
    buyer::BuyerRole,
    chain_watch,
    config::{AdvertiseMode, NodeConfig},
    error::NodeError,
    metrics::Metrics,
    node::{Node, Shared},
    registry::ChainRegistry,
    seller::SellerRole,
    store::Store,
};

/// What a started daemon tells its caller.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ready {
    /// The API's URL.
    pub api: String,
    /// The token file.
    pub token_file: String,
    /// The p2p peer id.
    pub peer_id: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Dialable p2p addresses, `/ip4/…/tcp/…/p2p/<peer id>` (what others bootstrap from).
    pub p2p_addrs: Vec<String>,
}

/// The node's listen addresses with its peer id, once the listeners are up (briefly waited for).
async fn dialable(p2p: &wayfare_p2p::P2pHandle) -> Vec<String> {
    for _ in 0..20 {
        let addrs = p2p.listen_addrs().await.unwrap_or_default();
        if !addrs.is_empty() {
            let me = p2p.peer_id();
            let suffix = format!("/p2p/{me}");
            return addrs
                .iter()
                .map(|a| {
                    let a = a.to_string();
                    // Circuit addresses already end with this node's id.
                    if a.ends_with(&suffix) {
                        a
                    } else {
                        format!("{a}{suffix}")
                    }
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Vec::new()
}

fn password_source(cfg: &NodeConfig) -> PasswordSource {
    match &cfg.chain.password_file {
        Some(p) => PasswordSource::File(p.clone()),
        None if std::env::var_os("WAYFARE_PASSWORD").is_some() => {
            PasswordSource::Env("WAYFARE_PASSWORD".into())
        }
        None => PasswordSource::Prompt,
    }
}

async fn client(
    cfg: &NodeConfig,
    signer: Option<alloy::signers::local::PrivateKeySigner>,
) -> Result<MarketClient, NodeError> {
    Ok(MarketClient::connect(ConnectOptions {
        rpc_url: cfg.chain.rpc_url.clone(),
        market: cfg.chain.market,
        expected_chain_id: cfg.chain.chain_id,
        signer,
    })
    .await?)
}

fn parse_addrs(what: &str, list: &[String]) -> Result<Vec<Multiaddr>, NodeError> {
    list.iter()
        .map(|a| {
            a.parse().map_err(|e| {
                NodeError::Invalid(format!("[p2p] {what} {a:?} is not a multiaddr: {e}"))
            })
        })
        .collect()
}

/// Runs the daemon for `cfg` until `stop` fires (or Ctrl-C / SIGTERM). `ready` receives the
/// addresses once the API listens.
pub async fn run(
    cfg: NodeConfig,
    ready: Option<oneshot::Sender<Ready>>,
    stop: Option<oneshot::Receiver<()>>,
) -> Result<(), NodeError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
        NodeError::Other(format!(
            "can't create the data dir {}: {e} (set data_dir or --data-dir)",
            cfg.data_dir.display()
        ))
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700));
    }
    let store = Store::open(&cfg.store_path())?;
    let passwords = password_source(&cfg);
    let view = client(&cfg, None).await?;

    let (internal_tx, internal_rx) = mpsc::channel(1024);
    let keypair = load_or_create_keypair(&cfg.data_dir.join("p2p.key"))
        .map_err(|e| NodeError::Other(e.to_string()))?;
    let mut p2p_cfg = P2pConfig::new(keypair, view.domain());
    p2p_cfg.listen = parse_addrs("listen", &cfg.p2p.listen)?;
    p2p_cfg.bootstrap = parse_addrs("bootstrap", &cfg.p2p.bootstrap)?;
    p2p_cfg.relays = parse_addrs("relays", &cfg.p2p.relays)?;
    let advertise = cfg.advertise();
    p2p_cfg.advertise = match advertise {
        AdvertiseMode::Relay => Advertise::Relay,
        AdvertiseMode::Direct => Advertise::Direct,
    };
    p2p_cfg.reachable = advertise == AdvertiseMode::Direct;
    if cfg.p2p.relay_server {
        p2p_cfg.relay_server = Some(RelayServerConfig {
            max_circuit_duration: Duration::from_secs(cfg.p2p.relay_circuit_secs),
            max_circuit_bytes: cfg.p2p.relay_circuit_bytes,
            ..RelayServerConfig::default()
        });
    }
    if cfg.seller.is_some() && advertise == AdvertiseMode::Direct {
        tracing::warn!(
            "[p2p] advertise = \"direct\": this seller's addresses go to every peer, so learning them costs nothing; use relays to make them cost a channel"
        );
    }
    p2p_cfg.gossip_heartbeat = Duration::from_millis(250);
    let registry = Arc::new(ChainRegistry::new(view.clone()));
    let (p2p, p2p_events) = P2pNode::spawn(p2p_cfg, registry)?;

    let metrics = Arc::new(Metrics::with_p2p(p2p.stats()));
    let next_block = store
        .meta("chain_next_block")?
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(cfg.chain.start_block);
    let mut shared = Shared {
        cfg: cfg.clone(),
        store: Arc::new(std::sync::Mutex::new(store)),
        p2p: p2p.clone(),
        internal: internal_tx.clone(),
        chain: view.clone(),
        chain_block: next_block.saturating_sub(1),
        chain_ok: true,
        metrics: metrics.clone(),
        in_flight: Default::default(),
        retry_at: Default::default(),
    };

    let mut roles = Vec::new();
    let seller = match &cfg.seller {
        Some(sc) => {
            let signer = load_keystore(&sc.signer_keystore, &passwords)?;
            let (account, payout_client) = match &sc.account_keystore {
                Some(p) => {
                    let key = load_keystore(p, &passwords)?;
                    let addr = key.address();
                    (addr, Some(client(&cfg, Some(key)).await?))
                }
                None => (sc.account.unwrap_or_default(), None),
            };
            let info = view.seller(account).await?;
            if !info.registered {
                return Err(NodeError::Invalid(format!(
                    "seller {account} is not registered on market {}: register it first (`wayfare chain seller register`)",
                    view.address()
                )));
            }
            if info.signer != signer.address() {
                return Err(NodeError::Invalid(format!(
                    "[seller] signer_keystore holds {}, but the registry lists signer {} for {account}: point it at the registered signer or run `wayfare chain seller update`",
                    signer.address(),
                    info.signer
                )));
            }
            let sclient = client(&cfg, Some(signer.clone())).await?;
            roles.push("seller".to_string());
            Some(
                SellerRole::start(sc.clone(), account, signer, sclient, payout_client, &shared)
                    .await?,
            )
        }
        None => None,
    };
    let buyer = match &cfg.buyer {
        Some(bc) => {
            let key = load_keystore(&bc.keystore, &passwords)?;
            let account = key.address();
            let bclient = client(&cfg, Some(key)).await?;
            roles.push("buyer".to_string());
            Some(BuyerRole::new(
                bc.clone(),
                account,
                bclient,
                cfg.data_dir.clone(),
                resolve_own_hosts(&cfg).await,
            ))
        }
        None => None,
    };

    let token = api::load_or_create_token(&cfg.token_path()).map_err(|e| {
        NodeError::Other(format!(
            "can't write the API token {}: {e}",
            cfg.token_path().display()
        ))
    })?;
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .map_err(|e| {
            NodeError::Other(format!(
                "can't listen on {} for the API: {e} (another daemon running? set [api] listen or WAYFARE_API_LISTEN)",
                cfg.api.listen
            ))
        })?;
    let api_addr = listener
        .local_addr()
        .map_err(|e| NodeError::Other(e.to_string()))?;
    let router = api::router(cmd_tx, token, metrics, format!("http://{api_addr}"));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "API server stopped");
        }
    });

    let mut node = Node::new(
        {
            shared.chain_ok = true;
            shared
        },
        seller,
        buyer,
    );
    node.restore()?;
    // Reputation: the stored index first, then the indexer keeps it current.
    let index_next = {
        let store = node.shared.store.lock().unwrap_or_else(|e| e.into_inner());
        node.indexer = crate::indexer::Indexer::load_for(&store, cfg.chain.reorg_depth)?;
        store
            .meta("index_next_block")?
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(cfg.chain.start_block)
    };
    tokio::spawn(crate::memory::trim_periodically());
    tokio::spawn(chain_watch::index(
        view.clone(),
        cfg.chain.start_block,
        index_next,
        cfg.chain.reorg_depth,
        Duration::from_millis(cfg.chain.poll_ms),
        internal_tx.clone(),
    ));
    tokio::spawn(chain_watch::watch(
        view,
        next_block,
        cfg.chain.confirmations,
        Duration::from_millis(cfg.chain.poll_ms),
        internal_tx,
    ));

    if cfg.p2p.relay_server {
        roles.push("relay".to_string());
    }
    let info = Ready {
        api: format!("http://{api_addr}"),
        token_file: cfg.token_path().display().to_string(),
        peer_id: p2p.peer_id().to_string(),
        roles,
        p2p_addrs: dialable(&p2p).await,
    };
    tracing::info!(api = %info.api, peer_id = %info.peer_id, roles = ?info.roles, "daemon ready");
    if let Some(tx) = ready {
        let _ = tx.send(info);
    }
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    tokio::spawn(async move {
        wait_for_stop(stop).await;
        let _ = shutdown_tx.send(());
    });
    // On a worker thread: the actor uses `block_in_place` around tunnel setup.
    tokio::spawn(node.run(p2p_events, cmd_rx, internal_rx, shutdown_rx))
        .await
        .map_err(|e| NodeError::Other(format!("the node task failed: {e}")))?;
    tracing::info!("daemon stopped");
    Ok(())
}

/// The node's own hosts as addresses: the IPv4 literals, and the names resolved now (before
/// any lockdown, which would drop DNS outside the tunnel). A name that does not resolve is
/// logged; the lockdown then blocks it outside the tunnel (it is still reached through one).
async fn resolve_own_hosts(cfg: &NodeConfig) -> Vec<std::net::Ipv4Addr> {
    let mut hosts = cfg.own_hosts();
    for (name, port) in cfg.own_host_names() {
        match tokio::net::lookup_host((name.as_str(), port)).await {
            Ok(addrs) => hosts.extend(addrs.filter_map(|a| match a.ip() {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            })),
            Err(e) => {
                tracing::warn!(%name, error = %e, "can't resolve an own host: the lockdown will not let it through outside the tunnel; use an IP address in the config")
            }
        }
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

async fn wait_for_stop(stop: Option<oneshot::Receiver<()>>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    let external = async {
        match stop {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
        _ = external => {}
    }
}

/// Loads a config file (helper for the CLI).
pub fn load_config(path: &Path) -> Result<NodeConfig, NodeError> {
    Ok(NodeConfig::load(path)?)
}
