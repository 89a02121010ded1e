//! `wayfare chain …`: act on the market by hand (deploy, sellers, channels, closes, ratings).

use alloy_primitives::{Address, B256, Bytes, U256};
use anyhow::{Context, bail};
use wayfare_chain::{
    TxOutcome, WayfareMarket,
    bindings::WayfareMarket::WayfareMarketEvents,
    deploy::{DeployOptions, deploy_market},
    devnet::{DEFAULT_BURN_SINK, DEVNET_CHAIN_ID},
    error::state_name,
    units::{format_eth, format_utc, parse_amount},
};

use crate::{
    chain_conn::{ConnArgs, Ctx},
    output,
};

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
    /// Deploy a new WayfareMarket (the committed artifact) from the --keystore account; waits
    /// for the receipt, checks the code and prints the address, chain id and deployment block
    /// (the `start_block` for configs).
    Deploy {
        /// Where swept burns go (default: 0x…dEaD, an address nobody holds the key of).
        #[arg(long, default_value_t = DEFAULT_BURN_SINK)]
        burn_sink: Address,
        /// Seconds a unilateral close waits for vouchers before it can be finalized (60 s to
        /// 365 days).
        #[arg(long, default_value_t = 3600)]
        challenge_period: u64,
    },
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
    /// Close a channel at once with the buyer's voucher and the seller's consent for the same
    /// amount (what a daemon does on `disconnect --close`; either party may send it).
    CooperativeClose {
        /// Channel id.
        id: B256,
        /// The amount both signed (cumulative, wei or with a unit).
        #[arg(long, value_parser = parse_amount)]
        amount: U256,
        /// The buyer's voucher signature for the amount.
        #[arg(long)]
        voucher_sig: Bytes,
        /// The seller signer's close consent for the amount.
        #[arg(long)]
        consent_sig: Bytes,
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
    /// Stop new channels; open ones run on (`reactivate` undoes it).
    Deactivate,
    /// Take new channels again after `deactivate`.
    Reactivate,
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

pub async fn run(args: ChainArgs) -> anyhow::Result<()> {
    if let ChainCmd::Deploy {
        burn_sink,
        challenge_period,
    } = args.cmd
    {
        return deploy(&args.conn, burn_sink, challenge_period).await;
    }
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
        ChainCmd::Deploy { .. } => unreachable!("handled above"),
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
        ChainCmd::CooperativeClose {
            id,
            amount,
            voucher_sig,
            consent_sig,
        } => done(
            &ctx,
            "closed cooperatively",
            c.cooperative_close(id, amount, &voucher_sig, &consent_sig)
                .await?,
        ),
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

async fn deploy(conn: &ConnArgs, burn_sink: Address, challenge_period: u64) -> anyhow::Result<()> {
    let rpc_url = conn
        .rpc_url
        .clone()
        .context("where to deploy? pass --rpc-url URL (or WAYFARE_RPC_URL)")?;
    let (signer, from_private_key) = conn.signer(None)?;
    let signer = signer.context(
        "deploying sends a transaction: choose the paying account with --keystore PATH (a V3 keystore; `cast wallet import` makes one)",
    )?;
    let opts = DeployOptions {
        rpc_url,
        expected_chain_id: conn.chain_id,
        burn_sink,
        challenge_period,
    };
    if from_private_key && conn.chain_id != Some(DEVNET_CHAIN_ID) {
        bail!(
            "--private-key is accepted on devnets only (with --chain-id {DEVNET_CHAIN_ID}): use --keystore"
        );
    }
    let d = deploy_market(&opts, signer).await?;
    if conn.json {
        return output::json(&serde_json::json!({
            "market": d.market, "chain_id": d.chain_id, "deploy_block": d.deploy_block,
            "tx": d.tx, "deployer": d.deployer, "burn_sink": d.burn_sink,
            "challenge_period": d.challenge_period, "gas_used": d.gas_used,
            "rpc_url": opts.rpc_url,
        }));
    }
    output::pairs(&[
        ("market", d.market.to_string()),
        ("chain id", d.chain_id.to_string()),
        ("deployment block", d.deploy_block.to_string()),
        ("transaction", d.tx.to_string()),
        ("deployer", d.deployer.to_string()),
        ("burn sink", d.burn_sink.to_string()),
        ("challenge period", format!("{} s", d.challenge_period)),
    ]);
    println!(
        "next: wayfare init --seller --rpc-url {} --market {} --chain-id {} --start-block {}",
        opts.rpc_url, d.market, d.chain_id, d.deploy_block
    );
    Ok(())
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
        SellerCmd::Reactivate => done(ctx, "reactivated", c.reactivate_seller().await?),
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
