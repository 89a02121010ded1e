//! `wayfare chain …`: act on the market by hand (sellers, channels, closes, ratings).

use std::path::PathBuf;

use alloy_primitives::{Address, B256, Bytes, U256};
use anyhow::{Context, bail};
use wayfare_chain::{
    ConnectOptions, MarketClient, TxOutcome, WayfareMarket,
    bindings::WayfareMarket::WayfareMarketEvents,
    devnet::{DEVNET_CHAIN_ID, DevnetInfo},
    error::state_name,
    keystore::{PasswordSource, load_keystore, parse_private_key},
    units::{format_eth, format_utc, parse_amount},
};

use crate::output;

/// Connection and key options shared by every `chain` subcommand.
#[derive(Debug, clap::Args)]
pub struct ConnArgs {
    /// Use a running devnet (its RPC URL, market, chain id and keys) from `wayfare devnet --dir DIR`.
    #[arg(long, global = true, env = "WAYFARE_DEVNET_DIR")]
    devnet: Option<PathBuf>,
    /// JSON-RPC URL of an Ethereum node (http, https, ws, wss).
    #[arg(long, global = true, env = "WAYFARE_RPC_URL")]
    rpc_url: Option<String>,
    /// Address of the WayfareMarket contract.
    #[arg(long, global = true, env = "WAYFARE_MARKET")]
    market: Option<Address>,
    /// Refuse to act unless the node is on this chain id.
    #[arg(long, global = true, env = "WAYFARE_CHAIN_ID")]
    chain_id: Option<u64>,
    /// A devnet account by name (seller-1, seller-1-signer, buyer-1, …); needs --devnet.
    #[arg(long = "as", global = true, value_name = "NAME")]
    as_name: Option<String>,
    /// V3 keystore of the account that sends transactions.
    #[arg(long, global = true, env = "WAYFARE_KEYSTORE")]
    keystore: Option<PathBuf>,
    /// File whose first line is the keystore password.
    #[arg(long, global = true)]
    password_file: Option<PathBuf>,
    /// Environment variable holding the keystore password (else: the password file, else a prompt).
    #[arg(long, global = true, default_value = "WAYFARE_PASSWORD")]
    password_env: String,
    /// Raw private key (devnets only: refused unless the chain id is 31337).
    #[arg(
        long,
        global = true,
        env = "WAYFARE_PRIVATE_KEY",
        hide_env_values = true
    )]
    private_key: Option<String>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
}

/// Act on the WayfareMarket contract by hand.
#[derive(Debug, clap::Args)]
pub struct ChainArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    cmd: ChainCmd,
}

#[derive(Debug, clap::Subcommand)]
enum ChainCmd {
    /// The market: chain, address, burn sink, challenge period, unswept burns, head block.
    Info,
    /// An account's ETH balance and what it can withdraw from the market.
    Balance {
        /// The account (default: the sending account).
        account: Option<Address>,
    },
    /// Register, update, fund or inspect a seller.
    #[command(subcommand)]
    Seller(SellerCmd),
    /// List or inspect channels.
    #[command(subcommand)]
    Channel(ChannelCmd),
    /// Add to an open channel's deposit (the buyer).
    TopUp {
        /// Channel id (0x + 64 hex digits).
        id: B256,
        /// Amount (`0.1eth`, `1000` wei).
        #[arg(value_parser = parse_amount)]
        amount: U256,
    },
    /// Close a channel at once as the seller: with a voucher, or on the best stored voucher.
    Settle {
        /// Channel id.
        id: B256,
        /// Voucher amount (cumulative, wei or with a unit); needs --voucher-sig.
        #[arg(long, value_parser = parse_amount, requires = "voucher_sig")]
        amount: Option<U256>,
        /// The buyer's voucher signature (0x + 130 hex digits).
        #[arg(long, requires = "amount")]
        voucher_sig: Option<Bytes>,
    },
    /// Start the buyer's unilateral close; finalize after the challenge period.
    StartClose {
        /// Channel id.
        id: B256,
    },
    /// Submit a voucher to a closing channel (seller or watchtower).
    SubmitVoucher {
        /// Channel id.
        id: B256,
        /// Voucher amount (cumulative).
        #[arg(long, value_parser = parse_amount)]
        amount: U256,
        /// The buyer's voucher signature.
        #[arg(long)]
        voucher_sig: Bytes,
    },
    /// Finish a close after its challenge period (anyone).
    Finalize {
        /// Channel id.
        id: B256,
    },
    /// Pull what closed channels credited to the sending account.
    Withdraw,
    /// Rate the other side of a closed channel, once (score 1..5).
    Rate {
        /// Channel id.
        id: B256,
        /// Score from 1 (bad) to 5 (good).
        #[arg(value_parser = clap::value_parser!(u8).range(1..=5))]
        score: u8,
    },
    /// Send accumulated burns to the burn sink (anyone).
    SweepBurns,
}

#[derive(Debug, clap::Subcommand)]
enum SellerCmd {
    /// Register the sending account as a seller.
    Register(SellerRecord),
    /// Change the sending seller's record (rotating the signer voids its unused offers).
    Update(SellerRecordUpdate),
    /// Add to the seller's funds, which pay its future seller burns.
    Fund {
        /// Amount (`0.5eth`, `1000` wei).
        #[arg(value_parser = parse_amount)]
        amount: U256,
    },
    /// Take back unused seller funds.
    Withdraw {
        /// Amount (`0.5eth`, `1000` wei).
        #[arg(value_parser = parse_amount)]
        amount: U256,
    },
    /// Stop new channels; open ones run on.
    Deactivate,
    /// A seller's registry entry.
    Show {
        /// The seller's account (default: the sending account).
        account: Option<Address>,
    },
}

#[derive(Debug, clap::Args)]
struct SellerRecord {
    /// Hot signer of offers and announcements (default: the sending account).
    #[arg(long)]
    signer: Option<Address>,
    /// Where earnings go (default: the sending account).
    #[arg(long)]
    payout: Option<Address>,
    /// X25519 public key for sealed reveals (0x + 64 hex digits).
    #[arg(long)]
    encryption_key: B256,
    /// Public metadata: region, services (never an IP address).
    #[arg(long, default_value = "")]
    metadata: String,
    /// Initial seller funds (`1eth`).
    #[arg(long, default_value = "0", value_parser = parse_amount)]
    funds: U256,
}

#[derive(Debug, clap::Args)]
struct SellerRecordUpdate {
    /// New signer (default: unchanged).
    #[arg(long)]
    signer: Option<Address>,
    /// New payout (default: unchanged).
    #[arg(long)]
    payout: Option<Address>,
    /// New X25519 public key (default: unchanged).
    #[arg(long)]
    encryption_key: Option<B256>,
    /// New metadata (default: unchanged).
    #[arg(long)]
    metadata: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum ChannelCmd {
    /// Channels opened on this market, with their current state.
    List {
        /// Only this seller's.
        #[arg(long)]
        seller: Option<Address>,
        /// Only this buyer's.
        #[arg(long)]
        buyer: Option<Address>,
        /// First block to scan (default: the devnet's deployment block, else 0).
        #[arg(long)]
        from_block: Option<u64>,
    },
    /// One channel's state.
    Show {
        /// Channel id.
        id: B256,
    },
}

struct Ctx {
    client: MarketClient,
    json: bool,
    devnet: Option<DevnetInfo>,
}

impl ConnArgs {
    async fn connect(&self, needs_signer: bool) -> anyhow::Result<Ctx> {
        let devnet = match &self.devnet {
            Some(dir) => Some(DevnetInfo::load(dir)?),
            None => None,
        };
        let rpc_url = self
            .rpc_url
            .clone()
            .or_else(|| devnet.as_ref().map(|d| d.rpc_url.clone()))
            .context(
                "no node to talk to: pass --rpc-url URL (or WAYFARE_RPC_URL), or --devnet DIR",
            )?;
        let market = self
            .market
            .or_else(|| devnet.as_ref().map(|d| d.market))
            .context(
                "no market address: pass --market ADDRESS (or WAYFARE_MARKET), or --devnet DIR",
            )?;
        let expected_chain_id = self
            .chain_id
            .or_else(|| devnet.as_ref().map(|d| d.chain_id));
        let mut from_private_key = false;
        let signer = if let Some(pk) = &self.private_key {
            from_private_key = true;
            Some(parse_private_key(pk)?)
        } else {
            let keystore = match (&self.keystore, &self.as_name, &devnet) {
                (Some(path), _, _) => Some(path.clone()),
                (None, Some(name), Some(d)) => Some(devnet_keystore(d, name)?),
                (None, Some(_), None) => {
                    bail!("--as needs --devnet DIR (the devnet that named the account)")
                }
                (None, None, _) => None,
            };
            match keystore {
                Some(path) => {
                    let source = if let Some(f) = &self.password_file {
                        PasswordSource::File(f.clone())
                    } else if std::env::var_os(&self.password_env).is_some() {
                        PasswordSource::Env(self.password_env.clone())
                    } else if let Some(d) = &devnet {
                        PasswordSource::File(d.password_file.clone())
                    } else {
                        PasswordSource::Prompt
                    };
                    Some(load_keystore(&path, &source)?)
                }
                None => None,
            }
        };
        if needs_signer && signer.is_none() {
            bail!(
                "this sends a transaction: choose the account with --keystore PATH, --as NAME (devnet) or --private-key (devnet only)"
            );
        }
        let client = MarketClient::connect(ConnectOptions {
            rpc_url,
            market,
            expected_chain_id,
            signer,
        })
        .await?;
        if from_private_key && client.chain_id() != DEVNET_CHAIN_ID {
            bail!(
                "--private-key is accepted on devnets only (chain {DEVNET_CHAIN_ID}); this node is chain {}: use --keystore",
                client.chain_id()
            );
        }
        Ok(Ctx {
            client,
            json: self.json,
            devnet,
        })
    }
}

fn devnet_keystore(d: &DevnetInfo, name: &str) -> anyhow::Result<PathBuf> {
    let mut names = Vec::new();
    for (i, s) in d.sellers.iter().enumerate() {
        let n = i + 1;
        if name == format!("seller-{n}") {
            return Ok(s.account.keystore.clone());
        }
        if name == format!("seller-{n}-signer") {
            return Ok(s.signer.keystore.clone());
        }
        names.push(format!("seller-{n}"));
        names.push(format!("seller-{n}-signer"));
    }
    for (i, b) in d.buyers.iter().enumerate() {
        if name == format!("buyer-{}", i + 1) {
            return Ok(b.keystore.clone());
        }
        names.push(format!("buyer-{}", i + 1));
    }
    bail!(
        "the devnet has no account named `{name}`; it has: {}",
        names.join(", ")
    )
}

pub async fn run(args: ChainArgs) -> anyhow::Result<()> {
    let needs_signer = !matches!(
        args.cmd,
        ChainCmd::Info
            | ChainCmd::Balance { .. }
            | ChainCmd::Channel(_)
            | ChainCmd::Seller(SellerCmd::Show { .. })
    );
    let ctx = args.conn.connect(needs_signer).await?;
    let c = &ctx.client;
    match args.cmd {
        ChainCmd::Info => info(&ctx).await,
        ChainCmd::Balance { account } => {
            let account = account
                .or(c.from())
                .context("which account? pass it, or --as / --keystore")?;
            let balance = c.balance(account).await?;
            let withdrawable = c.withdrawable(account).await?;
            if ctx.json {
                output::json(&serde_json::json!({
                    "account": account, "balance_wei": balance.to_string(),
                    "withdrawable_wei": withdrawable.to_string(),
                }))
            } else {
                output::pairs(&[
                    ("account", account.to_string()),
                    ("balance", format_eth(balance)),
                    ("withdrawable", format_eth(withdrawable)),
                ]);
                Ok(())
            }
        }
        ChainCmd::Seller(cmd) => seller(&ctx, cmd).await,
        ChainCmd::Channel(ChannelCmd::List {
            seller,
            buyer,
            from_block,
        }) => channel_list(&ctx, seller, buyer, from_block).await,
        ChainCmd::Channel(ChannelCmd::Show { id }) => channel_show(&ctx, id).await,
        ChainCmd::TopUp { id, amount } => done(&ctx, "topped up", c.top_up(id, amount).await?),
        ChainCmd::Settle {
            id,
            amount,
            voucher_sig,
        } => {
            let (amount, sig) = match (amount, voucher_sig) {
                (Some(a), Some(s)) => (a, s),
                _ => (U256::ZERO, Bytes::new()),
            };
            done(&ctx, "settled", c.settle(id, amount, &sig).await?)
        }
        ChainCmd::StartClose { id } => {
            let tx = c.start_close(id).await?;
            if !ctx.json {
                let ch = c.channel(id).await?;
                println!("close started; finalize after {}", format_utc(ch.closesAt));
            }
            done(&ctx, "close started", tx)
        }
        ChainCmd::SubmitVoucher {
            id,
            amount,
            voucher_sig,
        } => done(
            &ctx,
            "voucher submitted",
            c.submit_voucher(id, amount, &voucher_sig).await?,
        ),
        ChainCmd::Finalize { id } => done(&ctx, "finalized", c.finalize(id).await?),
        ChainCmd::Withdraw => {
            let from = c.from().context("no sending account")?;
            let amount = c.withdrawable(from).await?;
            let tx = c.withdraw().await?;
            if !ctx.json {
                println!("withdrew {} to {from}", format_eth(amount));
            }
            done(&ctx, "withdrawn", tx)
        }
        ChainCmd::Rate { id, score } => done(&ctx, "rated", c.rate(id, score).await?),
        ChainCmd::SweepBurns => {
            let amount = c.burned_unswept().await?;
            let tx = c.sweep_burns().await?;
            if !ctx.json {
                println!("swept {} to the burn sink", format_eth(amount));
            }
            done(&ctx, "burns swept", tx)
        }
    }
}

fn done(ctx: &Ctx, what: &str, tx: TxOutcome) -> anyhow::Result<()> {
    if ctx.json {
        output::json(&serde_json::json!({ "result": what, "tx": tx }))
    } else {
        println!(
            "{what}: tx {} in block {} ({} gas)",
            tx.hash, tx.block, tx.gas_used
        );
        Ok(())
    }
}

async fn info(ctx: &Ctx) -> anyhow::Result<()> {
    let c = &ctx.client;
    let (head, time) = c.head().await?;
    let sink = c.burn_sink().await?;
    let period = c.challenge_period().await?;
    let unswept = c.burned_unswept().await?;
    if ctx.json {
        return output::json(&serde_json::json!({
            "rpc_url": c.rpc_url(), "chain_id": c.chain_id(), "market": c.address(),
            "burn_sink": sink, "challenge_period": period,
            "burned_unswept_wei": unswept.to_string(), "head_block": head, "head_time": time,
        }));
    }
    output::pairs(&[
        ("RPC URL", c.rpc_url().to_string()),
        ("chain id", c.chain_id().to_string()),
        ("market", c.address().to_string()),
        ("burn sink", sink.to_string()),
        ("challenge period", format!("{period} s")),
        ("unswept burns", format_eth(unswept)),
        ("head", format!("block {head} at {}", format_utc(time))),
    ]);
    Ok(())
}

async fn seller(ctx: &Ctx, cmd: SellerCmd) -> anyhow::Result<()> {
    let c = &ctx.client;
    let me = c.from();
    match cmd {
        SellerCmd::Register(r) => {
            let me = me.context("no sending account")?;
            let tx = c
                .register_seller(
                    r.signer.unwrap_or(me),
                    r.payout.unwrap_or(me),
                    r.encryption_key,
                    r.metadata,
                    r.funds,
                )
                .await?;
            done(ctx, "registered", tx)
        }
        SellerCmd::Update(u) => {
            let me = me.context("no sending account")?;
            let cur = c.seller(me).await?;
            if !cur.registered {
                bail!(
                    "{me} is not a registered seller: register it first with `wayfare chain seller register`"
                );
            }
            let tx = c
                .update_seller(
                    u.signer.unwrap_or(cur.signer),
                    u.payout.unwrap_or(cur.payout),
                    u.encryption_key.unwrap_or(cur.encryptionKey),
                    u.metadata.unwrap_or(cur.metadata),
                )
                .await?;
            done(ctx, "updated", tx)
        }
        SellerCmd::Fund { amount } => done(ctx, "funded", c.fund_seller(amount).await?),
        SellerCmd::Withdraw { amount } => done(
            ctx,
            "seller funds withdrawn",
            c.withdraw_seller_funds(amount).await?,
        ),
        SellerCmd::Deactivate => done(ctx, "deactivated", c.deactivate_seller().await?),
        SellerCmd::Show { account } => {
            let account = account
                .or(me)
                .context("which seller? pass its account, or --as / --keystore")?;
            let s = c.seller(account).await?;
            if !s.registered {
                bail!(
                    "{account} is not a registered seller on market {}",
                    c.address()
                );
            }
            if ctx.json {
                return output::json(&serde_json::json!({
                    "account": account, "signer": s.signer, "payout": s.payout,
                    "encryption_key": s.encryptionKey, "funds_wei": s.funds.to_string(),
                    "active": s.active, "metadata": s.metadata,
                }));
            }
            output::pairs(&[
                ("seller", account.to_string()),
                ("signer", s.signer.to_string()),
                ("payout", s.payout.to_string()),
                ("encryption key", s.encryptionKey.to_string()),
                ("funds", format_eth(s.funds)),
                (
                    "active",
                    if s.active {
                        "yes".into()
                    } else {
                        "no (deactivated)".into()
                    },
                ),
                ("metadata", s.metadata),
            ]);
            Ok(())
        }
    }
}

fn channel_json(id: B256, ch: &WayfareMarket::ChannelInfo) -> serde_json::Value {
    serde_json::json!({
        "id": id, "seller": ch.seller, "buyer": ch.buyer, "voucher_signer": ch.voucherSigner,
        "deposit_wei": ch.deposit.to_string(), "best_wei": ch.best.to_string(),
        "seller_burn_wei": ch.sellerBurn.to_string(), "buyer_burn_wei": ch.buyerBurn.to_string(),
        "closes_at": ch.closesAt, "state": state_name(ch.state),
        "seller_rated": ch.sellerRated, "buyer_rated": ch.buyerRated,
    })
}

async fn channel_list(
    ctx: &Ctx,
    seller: Option<Address>,
    buyer: Option<Address>,
    from_block: Option<u64>,
) -> anyhow::Result<()> {
    let c = &ctx.client;
    let from = from_block
        .or(ctx.devnet.as_ref().map(|d| d.deploy_block))
        .unwrap_or(0);
    let (head, _) = c.head().await?;
    let logs = c.events_between(from, head).await?;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for log in logs {
        let WayfareMarketEvents::ChannelOpened(ev) = &log.event else {
            continue;
        };
        if seller.is_some_and(|s| s != ev.seller) || buyer.is_some_and(|b| b != ev.buyer) {
            continue;
        }
        let ch = c.channel(ev.id).await?;
        json.push(channel_json(ev.id, &ch));
        rows.push(vec![
            ev.id.to_string(),
            ev.seller.to_string(),
            ev.buyer.to_string(),
            match ev.service {
                1 => "wireguard".into(),
                2 => "shadowsocks".into(),
                s => s.to_string(),
            },
            format_eth(ch.deposit),
            state_name(ch.state).into(),
        ]);
    }
    if ctx.json {
        return output::json(&json);
    }
    if rows.is_empty() {
        println!("no channels opened since block {from}");
        return Ok(());
    }
    output::table(
        &["channel", "seller", "buyer", "service", "deposit", "state"],
        &rows,
    );
    Ok(())
}

async fn channel_show(ctx: &Ctx, id: B256) -> anyhow::Result<()> {
    let ch = ctx.client.channel(id).await?;
    if ch.state == 0 {
        bail!(
            "no channel {id} on market {}: check the id (`wayfare chain channel list`)",
            ctx.client.address()
        );
    }
    if ctx.json {
        return output::json(&channel_json(id, &ch));
    }
    let mut items = vec![
        ("channel", id.to_string()),
        ("state", state_name(ch.state).to_string()),
        ("seller", ch.seller.to_string()),
        ("buyer", ch.buyer.to_string()),
        ("voucher signer", ch.voucherSigner.to_string()),
        ("deposit", format_eth(ch.deposit)),
        ("best voucher", format_eth(ch.best)),
        ("seller burn", format_eth(U256::from(ch.sellerBurn))),
        ("buyer burn", format_eth(U256::from(ch.buyerBurn))),
    ];
    if ch.closesAt != 0 {
        items.push(("closes at", format_utc(ch.closesAt)));
    }
    items.push((
        "rated",
        format!(
            "seller {}, buyer {}",
            if ch.sellerRated { "yes" } else { "no" },
            if ch.buyerRated { "yes" } else { "no" }
        ),
    ));
    output::pairs(&items);
    Ok(())
}
