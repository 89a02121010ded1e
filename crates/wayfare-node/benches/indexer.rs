//! Indexer figures on a real chain. 25,000 channels are opened (varied small burns, some zero),
//! settled and rated by both sides on anvil through the benchmark-only load contracts of
//! `contracts/test/utils/EventLoad.sol`: 100,000 reputation events. Then the node's own indexing
//! pipeline reads them back: `chain_watch::index` from the deploy block, and what the node does
//! with each `Internal::Indexed` (`Indexer::apply_batch` into a fresh SQLite store, then the
//! `index_next_block` cursor), timed from the spawn until the cursor passes the head, over
//! rounds with fresh stores; and the restart path, `Indexer::load_for` (refold from the store,
//! as the daemon does at start).
//! The folded ledger is checked against what was sent, so lost or doubled events fail the run.
//!
//! Anvil mines a block per transaction (4 per chunk of ~250 channels), so the events lie in a
//! few hundred busy blocks and the first bounded window already reaches the head. (Spreading
//! them over thousands of empty blocks is not practical: anvil's cost per block grows with its
//! state, ~0.4 s per empty block at 15,000 channels.)
//! `cargo bench -p wayfare-node --bench indexer` (or `make bench-indexer`).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use alloy::{
    network::TransactionBuilder,
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider},
    rpc::types::{TransactionReceipt, TransactionRequest},
    sol_types::{SolCall, SolEvent, SolValue},
};
use tokio::sync::mpsc;
use wayfare_chain::{
    MarketClient,
    WayfareMarket::{ChannelClosed, ChannelOpened, CloseStarted, Rated},
    devnet::{Devnet, DevnetOptions},
    market::wait_for_receipt,
};
use wayfare_node::{
    chain_watch, indexer::Indexer, node::Internal, reputation::Stats, store::Store,
};
use wayfare_proto::{eip712, keys::SecretKey};

/// Channels made; each brings 4 reputation events (opened, closed, rated twice).
const CHANNELS: usize = 25_000;
/// Indexing rounds, each with a fresh store.
const ROUNDS: usize = 3;
/// The node's defaults (`[chain] reorg_depth`, `poll_ms`).
const REORG_DEPTH: u64 = 12;
const POLL: Duration = Duration::from_millis(500);
/// The first chunk: its receipts' gas sizes the others.
const PROBE_CHANNELS: usize = 20;
/// Share of the block gas limit a load transaction may plan for.
const GAS_SHARE: f64 = 0.8;
/// Burns and payments, in wei.
const BURN_UNIT: u128 = 10_000_000_000_000; // 0.00001 ETH
const VALUE_EACH: u128 = 5 * BURN_UNIT; // >= the largest buyer burn + min deposit

alloy::sol! {
    /// `WayfareMarket.Offer` (same fields, same order: the ABI of `openAll`).
    struct LoadOffer {
        address seller;
        address buyer;
        uint8 service;
        uint128 pricePerMiB;
        uint128 pricePerSecond;
        uint128 sellerBurn;
        uint128 buyerBurn;
        uint128 minDeposit;
        uint32 paymentInterval;
        uint64 nonce;
        uint64 expiry;
    }
    function openAll(LoadOffer[] offers, bytes[] sigs, address voucherSigner, uint256 valueEach) external payable;
    function settleAll(bytes32[] ids) external;
    function rateAll(bytes32[] ids, uint8[] scores) external;
}

/// What channel `n` looks like: burns (some zero), scores 1..5 both ways.
struct Plan {
    seller_burn: u128,
    buyer_burn: u128,
    buyer_score: u8,
    seller_score: u8,
}

fn plan(n: usize) -> Plan {
    Plan {
        seller_burn: (n % 4) as u128 * BURN_UNIT,
        buyer_burn: ((n / 4) % 3) as u128 * 2 * BURN_UNIT,
        buyer_score: (n % 5) as u8 + 1,
        seller_score: ((n / 5) % 5) as u8 + 1,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root above crates/wayfare-node")
}

/// The creation bytecode of `name` from contracts/out, building the contracts first when the
/// artifact is missing or older than its source.
fn bytecode(root: &Path, name: &str) -> Vec<u8> {
    let contracts = root.join("contracts");
    let source = contracts.join("test/utils/EventLoad.sol");
    let artifact = contracts.join(format!("out/EventLoad.sol/{name}.json"));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&artifact).is_none() || modified(&artifact) < modified(&source) {
        eprintln!("· building the contracts (contracts/forge build)");
        let status = Command::new(contracts.join("forge"))
            .arg("build")
            .current_dir(&contracts)
            .status()
            .expect("running contracts/forge (run `make npm` first)");
        assert!(
            status.success(),
            "contracts/forge build failed ({status}): run `make npm`, then `contracts/forge build`"
        );
    }
    let text = std::fs::read_to_string(&artifact)
        .unwrap_or_else(|e| panic!("reading {}: {e}", artifact.display()));
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", artifact.display()));
    let hex = json["bytecode"]["object"]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no bytecode.object", artifact.display()));
    hex::decode(hex.trim_start_matches("0x"))
        .unwrap_or_else(|e| panic!("{}: bytecode is not hex: {e}", artifact.display()))
}

/// Sends a transaction from the deployer (nonce asked from the node, fees filled), waits for
/// its receipt and insists it succeeded.
async fn send(p: &DynProvider, what: &str, tx: TransactionRequest) -> TransactionReceipt {
    let gas = tx.gas;
    let pending = p
        .send_transaction(tx)
        .await
        .unwrap_or_else(|e| panic!("{what}: the node refused the transaction: {e}"));
    let r = wait_for_receipt(p, what, *pending.tx_hash())
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        r.status(),
        "{what}: transaction {} reverted (gas used {} of {gas:?}{})",
        r.transaction_hash,
        r.gas_used,
        if gas == Some(r.gas_used) {
            ": out of gas, the batch is too big"
        } else {
            ""
        }
    );
    r
}

async fn deploy(p: &DynProvider, what: &str, code: Vec<u8>, args: Vec<u8>, value: U256) -> Address {
    let mut input = code;
    input.extend_from_slice(&args);
    let tx = TransactionRequest::default()
        .with_deploy_code(input)
        .with_value(value);
    send(p, what, tx)
        .await
        .contract_address
        .unwrap_or_else(|| panic!("{what}: the receipt has no contract address"))
}

async fn call(
    p: &DynProvider,
    what: &str,
    to: Address,
    input: Vec<u8>,
    value: U256,
    gas: u64,
) -> TransactionReceipt {
    let tx = TransactionRequest::default()
        .with_to(to)
        .with_input(input)
        .with_value(value)
        .with_gas_limit(gas);
    send(p, what, tx).await
}

/// Reputation events in `r` by kind: [opened, closed, rated, close started]; and the opened ids.
fn count(r: &TransactionReceipt, market: Address, counts: &mut [u64; 4]) -> Vec<B256> {
    let mut ids = Vec::new();
    for log in r.inner.logs() {
        if log.address() != market {
            continue;
        }
        let topics = log.topics();
        match topics.first() {
            Some(t) if *t == ChannelOpened::SIGNATURE_HASH => {
                counts[0] += 1;
                ids.push(*topics.get(1).expect("ChannelOpened has its id as topic 1"));
            }
            Some(t) if *t == ChannelClosed::SIGNATURE_HASH => counts[1] += 1,
            Some(t) if *t == Rated::SIGNATURE_HASH => counts[2] += 1,
            Some(t) if *t == CloseStarted::SIGNATURE_HASH => counts[3] += 1,
            _ => {}
        }
    }
    ids
}

/// What the ledger must hold for the seller and the buyer after every channel, folded the way
/// `Ledger::apply` folds (same order, same arithmetic).
fn expected() -> (Stats, Stats) {
    let mut s = Stats::default();
    let mut b = Stats::default();
    for n in 0..CHANNELS {
        let p = plan(n);
        let burns = (p.seller_burn + p.buyer_burn) as f64 / 1e18;
        for st in [&mut s, &mut b] {
            st.channels += 1;
            st.closed += 1;
            st.burns_closed += burns;
            st.ratings += 1;
        }
        let w = p.buyer_burn as f64 / 1e18;
        s.rating_weight += w;
        s.rating_points += w * f64::from(p.buyer_score - 1) / 4.0;
        let w = p.seller_burn as f64 / 1e18;
        b.rating_weight += w;
        b.rating_points += w * f64::from(p.seller_score - 1) / 4.0;
    }
    (s, b)
}

fn check(ix: &Indexer, what: &str, events: u64, seller: Address, buyer: Address) {
    let (want_s, want_b) = expected();
    assert_eq!(
        ix.ledger.len(),
        events,
        "{what}: the ledger folded {} events, the chain has {events}",
        ix.ledger.len()
    );
    for (side, got, want) in [
        ("seller", ix.ledger.seller_stats(&seller), want_s),
        ("buyer", ix.ledger.buyer_stats(&buyer), want_b),
    ] {
        assert_eq!(
            (got.channels, got.closed, got.ratings, got.disputed),
            (want.channels, want.closed, want.ratings, 0),
            "{what}: {side} channels/closed/ratings/disputed"
        );
        for (name, g, w) in [
            ("rating weight", got.rating_weight, want.rating_weight),
            ("rating points", got.rating_points, want.rating_points),
            ("closed burns", got.burns_closed, want.burns_closed),
        ] {
            assert!(
                (g - w).abs() <= 1e-9 * w.abs().max(1e-18),
                "{what}: {side} {name} {g} != {w}"
            );
        }
    }
}

struct Generated {
    events: u64,
    deploy_block: u64,
    head: u64,
    seller: Address,
    buyer: Address,
    secs: f64,
}

/// Deploys the load contracts and makes every channel's four events.
async fn generate(devnet: &Devnet, root: &Path) -> Generated {
    let t = Instant::now();
    let p = devnet.deployer.provider().clone();
    let market = devnet.info.market;
    let signer = SecretKey::from_bytes(&rand::random::<[u8; 32]>()).expect("a random key");
    let seller_funds: u128 = (0..CHANNELS).map(|n| plan(n).seller_burn).sum();
    let seller = deploy(
        &p,
        "deploy LoadSeller",
        bytecode(root, "LoadSeller"),
        (market, signer.address()).abi_encode_params(),
        U256::from(seller_funds),
    )
    .await;
    let buyer = deploy(
        &p,
        "deploy LoadBuyer",
        bytecode(root, "LoadBuyer"),
        market.abi_encode(),
        U256::ZERO,
    )
    .await;
    let head = p
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .expect("reading the head")
        .expect("anvil has a latest block");
    let gas_limit = head.header.gas_limit;
    let expiry = head.header.timestamp + 30 * 86_400;
    let domain = eip712::domain(devnet.info.chain_id, market);
    eprintln!(
        "· LoadSeller {seller}, LoadBuyer {buyer}; block gas limit {gas_limit}; making {CHANNELS} channels"
    );

    let mut counts = [0u64; 4];
    let mut n = 0;
    let mut chunk = PROBE_CHANNELS;
    let mut last_report = Instant::now();
    while n < CHANNELS {
        let c = chunk.min(CHANNELS - n);
        let range = n..n + c;
        let plans: Vec<Plan> = range.clone().map(plan).collect();
        let (offers, sigs): (Vec<LoadOffer>, Vec<Bytes>) = range
            .clone()
            .zip(&plans)
            .map(|(i, pl)| {
                let o = eip712::Offer {
                    seller,
                    buyer,
                    service: 1 + (i % 2) as u8,
                    pricePerMiB: (i % 10) as u128 * 1_000_000_000,
                    pricePerSecond: (i % 7) as u128 * 1_000_000,
                    sellerBurn: pl.seller_burn,
                    buyerBurn: pl.buyer_burn,
                    minDeposit: if i % 2 == 0 { 0 } else { BURN_UNIT },
                    paymentInterval: 15 + (i % 30) as u32,
                    nonce: i as u64 + 1,
                    expiry,
                };
                let sig = signer.sign_digest(eip712::offer_digest(&o, &domain));
                let o = LoadOffer {
                    seller: o.seller,
                    buyer: o.buyer,
                    service: o.service,
                    pricePerMiB: o.pricePerMiB,
                    pricePerSecond: o.pricePerSecond,
                    sellerBurn: o.sellerBurn,
                    buyerBurn: o.buyerBurn,
                    minDeposit: o.minDeposit,
                    paymentInterval: o.paymentInterval,
                    nonce: o.nonce,
                    expiry: o.expiry,
                };
                (o, Bytes::copy_from_slice(&sig))
            })
            .unzip();
        let open = call(
            &p,
            "openAll",
            buyer,
            openAllCall {
                offers,
                sigs,
                voucherSigner: signer.address(),
                valueEach: U256::from(VALUE_EACH),
            }
            .abi_encode(),
            U256::from(VALUE_EACH) * U256::from(c),
            gas_limit,
        )
        .await;
        let ids = count(&open, market, &mut counts);
        assert_eq!(ids.len(), c, "openAll opened {} of {c} channels", ids.len());
        let settle = call(
            &p,
            "settleAll",
            seller,
            settleAllCall { ids: ids.clone() }.abi_encode(),
            U256::ZERO,
            gas_limit,
        )
        .await;
        count(&settle, market, &mut counts);
        let by_buyer = call(
            &p,
            "rateAll (buyer)",
            buyer,
            rateAllCall {
                ids: ids.clone(),
                scores: plans.iter().map(|p| p.buyer_score).collect(),
            }
            .abi_encode(),
            U256::ZERO,
            gas_limit,
        )
        .await;
        count(&by_buyer, market, &mut counts);
        let by_seller = call(
            &p,
            "rateAll (seller)",
            seller,
            rateAllCall {
                ids,
                scores: plans.iter().map(|p| p.seller_score).collect(),
            }
            .abi_encode(),
            U256::ZERO,
            gas_limit,
        )
        .await;
        count(&by_seller, market, &mut counts);
        n += c;
        if n == c {
            // The probe: size the chunks from the dearest call per channel.
            let per = [&open, &settle, &by_buyer, &by_seller]
                .iter()
                .map(|r| r.gas_used / c as u64)
                .max()
                .unwrap_or(1)
                .max(1);
            chunk = ((gas_limit as f64 * GAS_SHARE) as u64 / per) as usize;
            eprintln!(
                "· gas per channel: open {}, settle {}, rate {} / {}: {chunk} channels per transaction",
                open.gas_used / c as u64,
                settle.gas_used / c as u64,
                by_buyer.gas_used / c as u64,
                by_seller.gas_used / c as u64,
            );
            assert!(chunk > 0, "one channel's calls do not fit a block");
        }
        if last_report.elapsed() > Duration::from_secs(10) || n == CHANNELS {
            last_report = Instant::now();
            eprintln!(
                "· {n}/{CHANNELS} channels, {} events, {:.0} s",
                counts.iter().sum::<u64>(),
                t.elapsed().as_secs_f64()
            );
        }
    }
    let head = p.get_block_number().await.expect("reading the head");
    let events: u64 = counts.iter().sum();
    assert_eq!(
        counts,
        [CHANNELS as u64, CHANNELS as u64, 2 * CHANNELS as u64, 0],
        "events by kind (opened, closed, rated, close started)"
    );
    Generated {
        events,
        deploy_block: devnet.info.deploy_block,
        head,
        seller,
        buyer,
        secs: t.elapsed().as_secs_f64(),
    }
}

/// One round of the node's indexing pipeline into a fresh store.
struct Round {
    /// Seconds from the spawn until the cursor passed the head.
    secs: f64,
    /// Of which in the node's handling (`apply_batch` + cursor): store and fold.
    apply_secs: f64,
    /// `Indexed` messages until then.
    windows: usize,
    /// The next two passes at the head (the reorg re-read): events, first block, handling ms.
    head_pass: (usize, u64, [f64; 2]),
    ix: Indexer,
    store: Store,
}

/// What node.rs does with an `Internal::Indexed`; insists history did not change (anvil does
/// not reorganise).
fn on_indexed(ix: &mut Indexer, store: &mut Store, from: u64, next: u64, events: &[IndexedEvent]) {
    let rebuilt = ix
        .apply_batch(store, from, next, events)
        .expect("storing indexed events");
    assert!(
        !rebuilt,
        "blocks {from}..{next}: the index saw a reorg that did not happen"
    );
}

type IndexedEvent = (u64, u64, wayfare_node::reputation::RepEvent);

async fn index_round(client: MarketClient, g: &Generated, db: &Path) -> Round {
    let mut store = Store::open(db).expect("a fresh store");
    let mut ix = Indexer::load_for(&store, REORG_DEPTH).expect("loading the empty index");
    let (tx, mut rx) = mpsc::channel(1024);
    let t = Instant::now();
    let task = tokio::spawn(chain_watch::index(
        client,
        g.deploy_block,
        g.deploy_block,
        REORG_DEPTH,
        POLL,
        tx,
    ));
    let mut recv = async || loop {
        let msg = tokio::time::timeout(Duration::from_secs(600), rx.recv())
            .await
            .expect("the indexer sent nothing for 10 minutes")
            .expect("the index task ended");
        if let Internal::Indexed { from, next, events } = msg {
            return (from, next, events);
        }
    };
    let (mut windows, mut apply_secs) = (0, 0.0);
    loop {
        let (from, next, events) = recv().await;
        windows += 1;
        let a = Instant::now();
        on_indexed(&mut ix, &mut store, from, next, &events);
        apply_secs += a.elapsed().as_secs_f64();
        if next > g.head {
            break;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    // The next passes, at the head: the last blocks again. The first also makes what the last
    // window read final (the checkpoint); the second is what every poll costs a node there.
    let mut head_pass = (0, 0, [0.0; 2]);
    for ms in &mut head_pass.2 {
        let (from, next, events) = recv().await;
        assert_eq!(next, g.head + 1, "the chain moved during the benchmark");
        let a = Instant::now();
        on_indexed(&mut ix, &mut store, from, next, &events);
        *ms = a.elapsed().as_secs_f64() * 1000.0;
        head_pass.0 = events.len();
        head_pass.1 = from;
    }
    task.abort();
    Round {
        secs,
        apply_secs,
        windows,
        head_pass,
        ix,
        store,
    }
}

fn main() {
    // `cargo bench` passes --bench. A listing (--list) or a test run of the bench target
    // (`cargo test --all-targets` passes no --bench) returns at once: this takes minutes.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        eprintln!(
            "indexer benchmark skipped: run it with `cargo bench -p wayfare-node --bench indexer`"
        );
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(run());
}

async fn run() {
    let root = repo_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = DevnetOptions::new(tmp.path().join("devnet"));
    opts.sellers = 0;
    opts.buyers = 0;
    let devnet = Devnet::start(opts, &mut |m| eprintln!("· {m}"))
        .await
        .expect("starting the devnet (anvil from contracts/node_modules: run `make npm`)");

    let g = generate(&devnet, &root).await;
    let blocks = g.head - g.deploy_block + 1;
    eprintln!(
        "· generated {} reputation events in blocks {}..={} ({blocks} blocks) in {:.1} s",
        g.events, g.deploy_block, g.head, g.secs
    );
    assert!(g.events >= 100_000, "only {} events", g.events);

    let (mut index, mut reload) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let db = tmp.path().join(format!("round-{round}.db"));
        let Round {
            secs,
            apply_secs,
            windows,
            head_pass,
            ix,
            store,
        } = index_round(devnet.deployer.clone(), &g, &db).await;
        check(&ix, "indexed", g.events, g.seller, g.buyer);
        assert_eq!(
            store.meta("index_next_block").expect("reading the cursor"),
            Some((g.head + 1).to_string()),
            "the stored cursor"
        );
        drop(ix);
        let t = Instant::now();
        let again = Indexer::load_for(&store, REORG_DEPTH).expect("reloading the index");
        let r = t.elapsed().as_secs_f64();
        check(&again, "reloaded", g.events, g.seller, g.buyer);
        eprintln!(
            "· round {round}: {} events in {windows} window(s) indexed in {secs:.2} s \
             ({:.0} events/s; read and decode {:.2} s, store and fold {apply_secs:.2} s); \
             reload {r:.2} s; passes at the head re-read {} events from block {}: \
             handled in {:.0} ms (the first, which also checkpoints the window), then {:.0} ms",
            g.events,
            g.events as f64 / secs,
            secs - apply_secs,
            head_pass.0,
            head_pass.1,
            head_pass.2[0],
            head_pass.2[1]
        );
        index.push(secs);
        reload.push(r);
    }
    let im = median(&mut index);
    println!(
        "RESULT events={} blocks={blocks} index_median_s={im:.2} events_per_s={:.0} reload_median_s={:.2} generate_s={:.1} debug={}",
        g.events,
        g.events as f64 / im,
        median(&mut reload),
        g.secs,
        cfg!(debug_assertions)
    );
    println!(
        "{} market events ({CHANNELS} channels: opened, settled, rated by both sides) over {blocks} \
         blocks of anvil. index: the node's pipeline from the deploy block to the head \
         (eth_getLogs in windows of at most {} blocks, decode, store in SQLite, fold into the \
         ledger, cursor), median of {ROUNDS} rounds with fresh stores. reload: the restart path, \
         refolding the stored events. The ledger was checked against what was sent each time.",
        g.events,
        chain_watch::INDEX_WINDOW
    );
    drop(devnet);
}
