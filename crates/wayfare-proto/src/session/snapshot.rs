//! What a session persists, and its versioned byte form.
//!
//! A snapshot is everything needed to rebuild a session after a crash, except the secret
//! signing key (which lives in the keystore and is passed to `restore`). Its bytes are
//! `"WFSS"` or `"WFBS"`, a version byte, then the fields in the [`crate::codec`] format; decoding is
//! as strict as for messages.
//!
//! Version 2 adds the `Paused` phases and appends `prior_seconds` (a `u64`) after the last
//! version-1 field. Version-1 bytes still decode (with `prior_seconds` = 0) and re-encode as
//! version 2. Version 3 appends `run` (a `u32`, the channel's current service run); older bytes
//! decode with `run` = 0.

use alloy_primitives::{Address, B256, U256};

use crate::codec::{DecodeError, Reader, WireFormat, Writer};
use crate::messages::{Quote, QuoteRequest, Reveal, SignedVoucher};
use crate::seal::RevealPayload;
use crate::session::events::EndReason;
use crate::types::Timestamp;

/// Snapshot format version this build writes (it also reads versions 1 and 2).
pub const SNAPSHOT_VERSION: u8 = 3;
/// The oldest snapshot version this build still reads.
const OLDEST_VERSION: u8 = 1;
const SELLER_MAGIC: &[u8; 4] = b"WFSS";
const BUYER_MAGIC: &[u8; 4] = b"WFBS";

/// The on-chain channel as a session knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelState {
    /// The channel id.
    pub channel_id: B256,
    /// Its current deposit.
    pub deposit: U256,
    /// Its voucher signer.
    pub voucher_signer: Address,
    /// The `open` transaction.
    pub tx_hash: B256,
}

/// Where a seller session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SellerPhase {
    /// Quote sent; waiting for the channel on chain.
    Quoted = 1,
    /// Channel open; waiting for the shell to provision and call `reveal`.
    Provisioning = 2,
    /// Reveal sent; serving and collecting vouchers.
    Serving = 3,
    /// Over.
    Ended = 4,
    /// The buyer asked to close: consent sent, a final voucher still taken, settles at the
    /// close deadline unless the channel closes first.
    Closing = 5,
    /// The buyer paused: service stopped, the channel kept open for a `Resume` until the pause
    /// timeout, then settled (since version 2).
    Paused = 6,
}

/// Where a buyer session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BuyerPhase {
    /// Quote accepted; waiting for the channel on chain.
    Opening = 1,
    /// Channel open; waiting for the reveal.
    AwaitingReveal = 2,
    /// Connected and paying.
    Serving = 3,
    /// Leaving; waiting for the seller's close consent.
    Closing = 4,
    /// Over.
    Ended = 5,
    /// Paused: service stopped, final voucher sent, the channel left open for a later
    /// [`BuyerSession::resume`](crate::session::BuyerSession::resume) (since version 2).
    Paused = 6,
}

/// A seller session's persisted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerSnapshot {
    /// Phase.
    pub phase: SellerPhase,
    /// The buyer's request.
    pub request: QuoteRequest,
    /// The signed quote sent.
    pub quote: Quote,
    /// The channel, once open.
    pub channel: Option<ChannelState>,
    /// The sealed reveal sent (resent if the buyer asks again).
    pub reveal: Option<Reveal>,
    /// When the current service run started (`None` while paused).
    pub service_start: Option<Timestamp>,
    /// Bytes metered so far.
    pub meter_bytes: u64,
    /// The best voucher held.
    pub best: Option<SignedVoucher>,
    /// Why it ended, once ended.
    pub end: Option<EndReason>,
    /// Seconds billed in earlier service runs on this channel (before a pause); 0 in version 1.
    pub prior_seconds: u64,
    /// The channel's current service run (0 for the first, +1 per resume); 0 before version 3.
    pub run: u32,
}

/// A 32-byte secret whose `Debug` is redacted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secret32(pub [u8; 32]);

impl core::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret32(<redacted>)")
    }
}

/// A buyer session's persisted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyerSnapshot {
    /// Phase.
    pub phase: BuyerPhase,
    /// The request sent.
    pub request: QuoteRequest,
    /// Seed of the X25519 key the reveal is sealed to.
    pub reveal_seed: Secret32,
    /// The accepted quote.
    pub quote: Quote,
    /// The channel, once open.
    pub channel: Option<ChannelState>,
    /// The opened reveal, once received (while resuming, the previous run's until the new one
    /// arrives).
    pub reveal: Option<RevealPayload>,
    /// When the current service run started (`None` while paused).
    pub service_start: Option<Timestamp>,
    /// Accepted bytes metered so far.
    pub meter_bytes: u64,
    /// The last voucher signed.
    pub last_voucher: Option<SignedVoucher>,
    /// Why it is ending or ended.
    pub end: Option<EndReason>,
    /// Seconds billed in earlier service runs on this channel (before a pause); 0 in version 1.
    pub prior_seconds: u64,
    /// The channel's current service run (0 for the first, +1 per resume); 0 before version 3.
    pub run: u32,
}

fn bad(field: &'static str, reason: &'static str) -> DecodeError {
    DecodeError::BadValue { field, reason }
}

impl WireFormat for ChannelState {
    fn write(&self, w: &mut Writer) {
        w.b256(&self.channel_id);
        w.u256(&self.deposit);
        w.address(&self.voucher_signer);
        w.b256(&self.tx_hash);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            channel_id: r.b256("channel.channel_id")?,
            deposit: r.u256("channel.deposit")?,
            voucher_signer: r.address("channel.voucher_signer")?,
            tx_hash: r.b256("channel.tx_hash")?,
        })
    }
}

fn write_header(w: &mut Writer, magic: &[u8; 4]) {
    w.raw(magic);
    w.u8(SNAPSHOT_VERSION);
}

/// Reads the magic and the version (1 to 3), returning the version.
fn read_header(r: &mut Reader<'_>, magic: &[u8; 4]) -> Result<u8, DecodeError> {
    if &r.array::<4>("snapshot.magic")? != magic {
        return Err(bad(
            "snapshot.magic",
            "not a snapshot of this kind of session",
        ));
    }
    let v = r.u8("snapshot.version")?;
    if !(OLDEST_VERSION..=SNAPSHOT_VERSION).contains(&v) {
        return Err(DecodeError::UnknownVersion {
            found: v,
            supported: SNAPSHOT_VERSION,
        });
    }
    Ok(v)
}

/// `prior_seconds`: absent (0) in version 1.
fn read_prior_seconds(r: &mut Reader<'_>, version: u8) -> Result<u64, DecodeError> {
    if version < 2 {
        Ok(0)
    } else {
        r.u64("snapshot.prior_seconds")
    }
}

/// `run`: absent (0) before version 3.
fn read_run(r: &mut Reader<'_>, version: u8) -> Result<u32, DecodeError> {
    if version < 3 {
        Ok(0)
    } else {
        r.u32("snapshot.run")
    }
}

fn write_time(w: &mut Writer, t: Option<&Timestamp>) {
    w.option(t, |w, t| w.u64(t.as_millis()));
}

fn read_time(r: &mut Reader<'_>, field: &'static str) -> Result<Option<Timestamp>, DecodeError> {
    r.option(field, |r| r.u64(field).map(Timestamp::from_millis))
}

fn write_end(w: &mut Writer, e: Option<&EndReason>) {
    w.option(e, |w, e| w.u8(*e as u8));
}

fn read_end(r: &mut Reader<'_>) -> Result<Option<EndReason>, DecodeError> {
    r.option("snapshot.end", |r| {
        EndReason::from_code(r.u8("snapshot.end")?)
            .ok_or_else(|| bad("snapshot.end", "unknown end reason"))
    })
}

impl WireFormat for SellerSnapshot {
    fn write(&self, w: &mut Writer) {
        write_header(w, SELLER_MAGIC);
        w.u8(self.phase as u8);
        self.request.write(w);
        self.quote.write(w);
        w.option(self.channel.as_ref(), |w, c| c.write(w));
        w.option(self.reveal.as_ref(), |w, c| c.write(w));
        write_time(w, self.service_start.as_ref());
        w.u64(self.meter_bytes);
        w.option(self.best.as_ref(), |w, v| v.write(w));
        write_end(w, self.end.as_ref());
        w.u64(self.prior_seconds);
        w.u32(self.run);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = read_header(r, SELLER_MAGIC)?;
        let phase = match r.u8("snapshot.phase")? {
            1 => SellerPhase::Quoted,
            2 => SellerPhase::Provisioning,
            3 => SellerPhase::Serving,
            4 => SellerPhase::Ended,
            5 => SellerPhase::Closing,
            6 if version >= 2 => SellerPhase::Paused,
            _ => return Err(bad("snapshot.phase", "unknown seller phase")),
        };
        let s = Self {
            phase,
            request: QuoteRequest::read(r)?,
            quote: Quote::read(r)?,
            channel: r.option("snapshot.channel", ChannelState::read)?,
            reveal: r.option("snapshot.reveal", Reveal::read)?,
            service_start: read_time(r, "snapshot.service_start")?,
            meter_bytes: r.u64("snapshot.meter_bytes")?,
            best: r.option("snapshot.best", SignedVoucher::read)?,
            end: read_end(r)?,
            prior_seconds: read_prior_seconds(r, version)?,
            run: read_run(r, version)?,
        };
        if matches!(
            phase,
            SellerPhase::Provisioning | SellerPhase::Serving | SellerPhase::Paused
        ) && s.channel.is_none()
        {
            return Err(bad(
                "snapshot.channel",
                "an open-channel phase needs the channel",
            ));
        }
        if phase == SellerPhase::Serving && s.service_start.is_none() {
            return Err(bad(
                "snapshot.service_start",
                "a serving session needs its start time",
            ));
        }
        if phase == SellerPhase::Paused && s.service_start.is_some() {
            return Err(bad(
                "snapshot.service_start",
                "a paused session has no running service",
            ));
        }
        Ok(s)
    }
}

impl WireFormat for BuyerSnapshot {
    fn write(&self, w: &mut Writer) {
        write_header(w, BUYER_MAGIC);
        w.u8(self.phase as u8);
        self.request.write(w);
        w.raw(&self.reveal_seed.0);
        self.quote.write(w);
        w.option(self.channel.as_ref(), |w, c| c.write(w));
        w.option(self.reveal.as_ref(), |w, p| p.write(w));
        write_time(w, self.service_start.as_ref());
        w.u64(self.meter_bytes);
        w.option(self.last_voucher.as_ref(), |w, v| v.write(w));
        write_end(w, self.end.as_ref());
        w.u64(self.prior_seconds);
        w.u32(self.run);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = read_header(r, BUYER_MAGIC)?;
        let phase = match r.u8("snapshot.phase")? {
            1 => BuyerPhase::Opening,
            2 => BuyerPhase::AwaitingReveal,
            3 => BuyerPhase::Serving,
            4 => BuyerPhase::Closing,
            5 => BuyerPhase::Ended,
            6 if version >= 2 => BuyerPhase::Paused,
            _ => return Err(bad("snapshot.phase", "unknown buyer phase")),
        };
        let s = Self {
            phase,
            request: QuoteRequest::read(r)?,
            reveal_seed: Secret32(r.array("snapshot.reveal_seed")?),
            quote: Quote::read(r)?,
            channel: r.option("snapshot.channel", ChannelState::read)?,
            reveal: r.option("snapshot.reveal", RevealPayload::read)?,
            service_start: read_time(r, "snapshot.service_start")?,
            meter_bytes: r.u64("snapshot.meter_bytes")?,
            last_voucher: r.option("snapshot.last_voucher", SignedVoucher::read)?,
            end: read_end(r)?,
            prior_seconds: read_prior_seconds(r, version)?,
            run: read_run(r, version)?,
        };
        if matches!(
            phase,
            BuyerPhase::AwaitingReveal | BuyerPhase::Serving | BuyerPhase::Paused
        ) && s.channel.is_none()
        {
            return Err(bad(
                "snapshot.channel",
                "an open-channel phase needs the channel",
            ));
        }
        if phase == BuyerPhase::Serving && (s.service_start.is_none() || s.reveal.is_none()) {
            return Err(bad(
                "snapshot.service_start",
                "a serving session needs its start and reveal",
            ));
        }
        if phase == BuyerPhase::Paused && s.service_start.is_some() {
            return Err(bad(
                "snapshot.service_start",
                "a paused session has no running service",
            ));
        }
        Ok(s)
    }
}

impl SellerSnapshot {
    /// The versioned bytes to store.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_wire()
    }

    /// Parses stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_wire(bytes)
    }
}

impl BuyerSnapshot {
    /// The versioned bytes to store.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_wire()
    }

    /// Parses stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_wire(bytes)
    }
}
