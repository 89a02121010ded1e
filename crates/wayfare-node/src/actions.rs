//! One-shot chain actions, executed from their durable `actions` row: the payload is JSON with
//! hex signatures and decimal amounts, so a restarted node resends exactly what was decided.

use alloy_primitives::{Address, B256, U256};
use serde_json::{Value, json};
use wayfare_chain::{MarketClient, bindings::WayfareMarket::WayfareMarketEvents};
use wayfare_proto::{
    messages::{Message, Quote},
    session::ChannelOpened,
};

use crate::{node::retryable, store::ActionRow};

/// The payload of an `open` action.
pub fn open_payload(quote: &Quote, voucher_signer: Address, value: U256) -> Value {
    json!({
        "quote": hex::encode(Message::Quote(quote.clone()).encode()),
        "voucher_signer": voucher_signer.to_string(),
        "value": value.to_string(),
    })
}

/// The payload of a voucher-carrying action (`settle`, `submit_voucher`).
pub fn voucher_payload(amount: U256, sig: &[u8]) -> Value {
    json!({ "amount": amount.to_string(), "sig": hex::encode(sig) })
}

/// The payload of `rate`: the score and which side rates.
pub fn rate_payload(score: u8, side: &str) -> Value {
    json!({ "score": score, "side": side })
}

/// The payload of `cooperative_close`.
pub fn cooperative_payload(amount: U256, voucher_sig: &[u8], consent_sig: &[u8]) -> Value {
    json!({
        "amount": amount.to_string(),
        "sig": hex::encode(voucher_sig),
        "consent": hex::encode(consent_sig),
    })
}

fn field<'a>(row: &'a ActionRow, k: &str) -> Result<&'a str, (String, bool)> {
    row.payload
        .get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| (format!("action {} has no `{k}`", row.id), false))
}

fn amount(row: &ActionRow, k: &str) -> Result<U256, (String, bool)> {
    field(row, k)?
        .parse()
        .map_err(|e| (format!("action {}: bad `{k}`: {e}", row.id), false))
}

fn bytes(row: &ActionRow, k: &str) -> Result<Vec<u8>, (String, bool)> {
    hex::decode(field(row, k)?).map_err(|e| (format!("action {}: bad `{k}`: {e}", row.id), false))
}

/// Sends the action's transaction. `Ok(tx hash)`, or the error and whether a retry may help.
/// An `open` also returns the `ChannelOpened` fields read back from its block.
pub async fn execute(
    client: &MarketClient,
    row: &ActionRow,
) -> (Result<String, (String, bool)>, Option<Box<ChannelOpened>>) {
    match run(client, row).await {
        Ok((tx, opened)) => (Ok(tx), opened),
        Err(e) => (Err(e), None),
    }
}

fn chain_err(e: wayfare_chain::ChainError) -> (String, bool) {
    let retry = retryable(&e);
    (e.to_string(), retry)
}

async fn run(
    client: &MarketClient,
    row: &ActionRow,
) -> Result<(String, Option<Box<ChannelOpened>>), (String, bool)> {
    let id = row.channel_id;
    let outcome = match row.kind.as_str() {
        "open" => return open(client, row).await,
        "settle" => client
            .settle(id, amount(row, "amount")?, &bytes(row, "sig")?)
            .await
            .map_err(chain_err)?,
        "submit_voucher" => client
            .submit_voucher(id, amount(row, "amount")?, &bytes(row, "sig")?)
            .await
            .map_err(chain_err)?,
        "cooperative_close" => client
            .cooperative_close(
                id,
                amount(row, "amount")?,
                &bytes(row, "sig")?,
                &bytes(row, "consent")?,
            )
            .await
            .map_err(chain_err)?,
        "start_close" => client.start_close(id).await.map_err(chain_err)?,
        "finalize" => {
            let not_before = row
                .payload
                .get("not_before")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let (_, chain_time) = client.head().await.map_err(chain_err)?;
            if chain_time < not_before {
                return Err((
                    format!(
                        "the challenge period runs until {} (chain time now {chain_time}); finalize waits",
                        wayfare_chain::units::format_utc(not_before)
                    ),
                    true,
                ));
            }
            client.finalize(id).await.map_err(chain_err)?
        }
        "rate" => {
            let score = row
                .payload
                .get("score")
                .and_then(Value::as_u64)
                .and_then(|s| u8::try_from(s).ok())
                .ok_or_else(|| (format!("action {} has no score", row.id), false))?;
            client.rate(id, score).await.map_err(chain_err)?
        }
        "top_up" => client
            .top_up(id, amount(row, "amount")?)
            .await
            .map_err(chain_err)?,
        other => return Err((format!("unknown action kind `{other}`"), false)),
    };
    Ok((outcome.hash.to_string(), None))
}

async fn open(
    client: &MarketClient,
    row: &ActionRow,
) -> Result<(String, Option<Box<ChannelOpened>>), (String, bool)> {
    let quote = match Message::decode(&bytes(row, "quote")?) {
        Ok(Message::Quote(q)) => q,
        _ => {
            return Err((
                format!("action {}: the stored quote is corrupt", row.id),
                false,
            ));
        }
    };
    let voucher_signer: Address = field(row, "voucher_signer")?
        .parse()
        .map_err(|e| (format!("bad voucher signer: {e}"), false))?;
    let value = amount(row, "value")?;
    let (id, outcome) = client
        .open(&quote.offer, &quote.signature, voucher_signer, value)
        .await
        .map_err(chain_err)?;
    let opened = read_opened(client, id, outcome.block, outcome.hash, voucher_signer).await;
    Ok((outcome.hash.to_string(), opened.map(Box::new)))
}

/// The `ChannelOpened` event of channel `id` in `block`.
pub async fn read_opened(
    client: &MarketClient,
    id: B256,
    block: u64,
    tx: B256,
    voucher_signer: Address,
) -> Option<ChannelOpened> {
    let logs = client.events_between(block, block).await.ok()?;
    logs.into_iter().find_map(|l| match &l.event {
        WayfareMarketEvents::ChannelOpened(e) if e.id == id => {
            Some(opened_fields(e, voucher_signer, tx))
        }
        _ => None,
    })
}

/// The session's `ChannelOpened` from the market event, the channel's voucher signer (read
/// from the `channel(id)` view or known to the buyer) and the transaction.
pub fn opened_fields(
    e: &wayfare_chain::bindings::WayfareMarket::ChannelOpened,
    voucher_signer: Address,
    tx: B256,
) -> ChannelOpened {
    ChannelOpened {
        channel_id: e.id,
        seller: e.seller,
        buyer: e.buyer,
        service: e.service,
        price_per_mib: e.pricePerMiB,
        price_per_second: e.pricePerSecond,
        seller_burn: e.sellerBurn,
        buyer_burn: e.buyerBurn,
        deposit: e.deposit,
        payment_interval: e.paymentInterval,
        voucher_signer,
        tx_hash: tx,
    }
}
