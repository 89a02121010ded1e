//! Byte layouts of every message and of the sealed reveal's payload.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{DecodeError, MAX_MESSAGE_SIZE, PROTOCOL_VERSION, Reader, WireFormat, Writer};
use crate::eip712::Offer;
use crate::messages::{
    AEAD_TAG_LEN, Announcement, CloseReason, CloseRequest, IpRange, MAX_DETAIL_LEN,
    MAX_EXIT_RANGES, MAX_PEER_ID_LEN, MAX_REGION_LEN, MAX_SEALED_LEN, Message, Opened, Quote,
    QuoteRequest, Refusal, RefusalReason, Resume, Reveal, SealedReveal, SignatureBytes,
    SignedCloseConsent, SignedVoucher, TunnelAddress, Usage,
};
use crate::seal::{Credentials, RevealPayload, ShadowsocksMethod};
use crate::types::{Service, ServiceSet, Terms};

/// Message type bytes.
mod tag {
    pub const ANNOUNCEMENT: u8 = 0x01;
    pub const QUOTE_REQUEST: u8 = 0x02;
    pub const QUOTE: u8 = 0x03;
    pub const REFUSAL: u8 = 0x04;
    pub const OPENED: u8 = 0x05;
    pub const REVEAL: u8 = 0x06;
    pub const VOUCHER: u8 = 0x07;
    pub const USAGE: u8 = 0x08;
    pub const CLOSE_REQUEST: u8 = 0x09;
    pub const CLOSE_CONSENT: u8 = 0x0a;
    pub const RESUME: u8 = 0x0b;
}

fn bad(field: &'static str, reason: &'static str) -> DecodeError {
    DecodeError::BadValue { field, reason }
}

fn read_signature(r: &mut Reader<'_>, field: &'static str) -> Result<SignatureBytes, DecodeError> {
    let sig: SignatureBytes = r.array(field)?;
    if sig[64] != 27 && sig[64] != 28 {
        return Err(bad(field, "signature v must be 27 or 28"));
    }
    Ok(sig)
}

fn read_service(r: &mut Reader<'_>, field: &'static str) -> Result<Service, DecodeError> {
    Service::from_code(r.u8(field)?)
        .ok_or_else(|| bad(field, "service must be 1 (WireGuard) or 2 (shadowsocks)"))
}

fn read_interval(r: &mut Reader<'_>, field: &'static str) -> Result<u32, DecodeError> {
    match r.u32(field)? {
        0 => Err(bad(field, "payment interval must be at least 1 second")),
        v => Ok(v),
    }
}

impl WireFormat for Terms {
    fn write(&self, w: &mut Writer) {
        w.u128(self.price_per_mib);
        w.u128(self.price_per_second);
        w.u128(self.seller_burn);
        w.u128(self.buyer_burn);
        w.u128(self.min_deposit);
        w.u32(self.payment_interval);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            price_per_mib: r.u128("terms.price_per_mib")?,
            price_per_second: r.u128("terms.price_per_second")?,
            seller_burn: r.u128("terms.seller_burn")?,
            buyer_burn: r.u128("terms.buyer_burn")?,
            min_deposit: r.u128("terms.min_deposit")?,
            payment_interval: read_interval(r, "terms.payment_interval")?,
        })
    }
}

impl WireFormat for Offer {
    fn write(&self, w: &mut Writer) {
        w.address(&self.seller);
        w.address(&self.buyer);
        w.u8(self.service);
        w.u128(self.pricePerMiB);
        w.u128(self.pricePerSecond);
        w.u128(self.sellerBurn);
        w.u128(self.buyerBurn);
        w.u128(self.minDeposit);
        w.u32(self.paymentInterval);
        w.u64(self.nonce);
        w.u64(self.expiry);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            seller: r.address("offer.seller")?,
            buyer: r.address("offer.buyer")?,
            service: read_service(r, "offer.service")?.code(),
            pricePerMiB: r.u128("offer.pricePerMiB")?,
            pricePerSecond: r.u128("offer.pricePerSecond")?,
            sellerBurn: r.u128("offer.sellerBurn")?,
            buyerBurn: r.u128("offer.buyerBurn")?,
            minDeposit: r.u128("offer.minDeposit")?,
            paymentInterval: read_interval(r, "offer.paymentInterval")?,
            nonce: r.u64("offer.nonce")?,
            expiry: r.u64("offer.expiry")?,
        })
    }
}

impl WireFormat for Announcement {
    fn write(&self, w: &mut Writer) {
        w.address(&self.seller);
        w.bytes(&self.peer_id);
        w.u8(self.services.bits());
        self.terms.write(w);
        w.string(&self.region);
        w.u64(self.capacity_bps);
        write_ranges(w, &self.exit_allow);
        w.u64(self.valid_until);
        w.raw(&self.signature);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            seller: r.address("announcement.seller")?,
            peer_id: r
                .bytes("announcement.peer_id", 1, MAX_PEER_ID_LEN)?
                .to_vec(),
            services: ServiceSet::from_bits(r.u8("announcement.services")?).ok_or_else(|| {
                bad(
                    "announcement.services",
                    "must list at least one known service and no unknown one",
                )
            })?,
            terms: Terms::read(r)?,
            region: r.string("announcement.region", MAX_REGION_LEN)?,
            capacity_bps: r.u64("announcement.capacity_bps")?,
            exit_allow: read_ranges(r, "announcement.exit_allow")?,
            valid_until: r.u64("announcement.valid_until")?,
            signature: read_signature(r, "announcement.signature")?,
        })
    }
}

impl WireFormat for QuoteRequest {
    fn write(&self, w: &mut Writer) {
        w.address(&self.buyer);
        w.u8(self.service.code());
        w.option(self.wanted.as_ref(), |w, t| t.write(w));
        w.raw(&self.buyer_key);
        w.option(self.wireguard_key.as_ref(), |w, k| w.raw(k));
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let buyer = r.address("quote_request.buyer")?;
        let service = read_service(r, "quote_request.service")?;
        let wanted = r.option("quote_request.wanted", Terms::read)?;
        let buyer_key = r.array("quote_request.buyer_key")?;
        let wireguard_key = r.option("quote_request.wireguard_key", |r| {
            r.array("quote_request.wireguard_key")
        })?;
        if (service == Service::WireGuard) != wireguard_key.is_some() {
            return Err(bad(
                "quote_request.wireguard_key",
                "required for WireGuard and forbidden for shadowsocks",
            ));
        }
        Ok(Self {
            buyer,
            service,
            wanted,
            buyer_key,
            wireguard_key,
        })
    }
}

impl WireFormat for Quote {
    fn write(&self, w: &mut Writer) {
        self.offer.write(w);
        w.raw(&self.signature);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            offer: Offer::read(r)?,
            signature: read_signature(r, "quote.signature")?,
        })
    }
}

impl WireFormat for Refusal {
    fn write(&self, w: &mut Writer) {
        w.u8(self.reason as u8);
        w.string(&self.detail);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            reason: RefusalReason::from_code(r.u8("refusal.reason")?)
                .ok_or_else(|| bad("refusal.reason", "unknown refusal reason"))?,
            detail: r.string("refusal.detail", MAX_DETAIL_LEN)?,
        })
    }
}

impl WireFormat for Opened {
    fn write(&self, w: &mut Writer) {
        w.b256(&self.channel_id);
        w.b256(&self.tx_hash);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            channel_id: r.b256("opened.channel_id")?,
            tx_hash: r.b256("opened.tx_hash")?,
        })
    }
}

impl WireFormat for SealedReveal {
    fn write(&self, w: &mut Writer) {
        w.raw(&self.encapped_key);
        w.bytes(&self.ciphertext);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            encapped_key: r.array("reveal.encapped_key")?,
            ciphertext: r
                .bytes("reveal.ciphertext", AEAD_TAG_LEN, MAX_SEALED_LEN)?
                .to_vec(),
        })
    }
}

impl WireFormat for Reveal {
    fn write(&self, w: &mut Writer) {
        w.b256(&self.channel_id);
        self.sealed.write(w);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            channel_id: r.b256("reveal.channel_id")?,
            sealed: SealedReveal::read(r)?,
        })
    }
}

impl WireFormat for SignedVoucher {
    fn write(&self, w: &mut Writer) {
        w.b256(&self.channel_id);
        w.u256(&self.amount);
        w.raw(&self.signature);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            channel_id: r.b256("voucher.channel_id")?,
            amount: r.u256("voucher.amount")?,
            signature: read_signature(r, "voucher.signature")?,
        })
    }
}

impl WireFormat for Usage {
    fn write(&self, w: &mut Writer) {
        w.b256(&self.channel_id);
        w.u32(self.run);
        w.u64(self.bytes);
        w.u64(self.seconds);
        w.u256(&self.paid);
        w.raw(&self.signature);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            channel_id: r.b256("usage.channel_id")?,
            run: r.u32("usage.run")?,
            bytes: r.u64("usage.bytes")?,
            seconds: r.u64("usage.seconds")?,
            paid: r.u256("usage.paid")?,
            signature: read_signature(r, "usage.signature")?,
        })
    }
}

impl WireFormat for CloseRequest {
    fn write(&self, w: &mut Writer) {
        w.b256(&self.channel_id);
        w.u32(self.run);
        w.u8(self.reason as u8);
        w.raw(&self.signature);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            channel_id: r.b256("close_request.channel_id")?,
            run: r.u32("close_request.run")?,
            reason: CloseReason::from_code(r.u8("close_request.reason")?)
                .ok_or_else(|| bad("close_request.reason", "unknown close reason"))?,
            signature: read_signature(r, "close_request.signature")?,
        })
    }
}

impl WireFormat for SignedCloseConsent {
    fn write(&self, w: &mut Writer) {
        w.b256(&self.channel_id);
        w.u256(&self.amount);
        w.raw(&self.signature);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            channel_id: r.b256("close_consent.channel_id")?,
            amount: r.u256("close_consent.amount")?,
            signature: read_signature(r, "close_consent.signature")?,
        })
    }
}

impl WireFormat for Resume {
    fn write(&self, w: &mut Writer) {
        w.b256(&self.channel_id);
        w.u32(self.run);
        w.raw(&self.buyer_key);
        w.option(self.wireguard_key.as_ref(), |w, k| w.raw(k));
        w.raw(&self.signature);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            channel_id: r.b256("resume.channel_id")?,
            run: r.u32("resume.run")?,
            buyer_key: r.array("resume.buyer_key")?,
            wireguard_key: r.option("resume.wireguard_key", |r| r.array("resume.wireguard_key"))?,
            signature: read_signature(r, "resume.signature")?,
        })
    }
}

/// Writes address ranges as a count and each range's address and prefix.
fn write_ranges(w: &mut Writer, ranges: &[IpRange]) {
    w.u8(u8::try_from(ranges.len()).unwrap_or(u8::MAX));
    for r in ranges {
        write_ip(w, &r.addr);
        w.u8(r.prefix);
    }
}

/// Reads what [`write_ranges`] wrote: at most [`MAX_EXIT_RANGES`], each prefix within its family.
fn read_ranges(r: &mut Reader<'_>, field: &'static str) -> Result<Vec<IpRange>, DecodeError> {
    let n = usize::from(r.u8(field)?);
    if n > MAX_EXIT_RANGES {
        return Err(bad(field, "lists more than 16 ranges"));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let addr = read_ip(r, field)?;
        let prefix = r.u8(field)?;
        out.push(
            IpRange::new(addr, prefix)
                .ok_or_else(|| bad(field, "a prefix longer than its address family"))?,
        );
    }
    Ok(out)
}

/// Writes an IP address as a family tag (4 or 6) and its octets.
pub(crate) fn write_ip(w: &mut Writer, ip: &IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            w.u8(4);
            w.raw(&v4.octets());
        }
        IpAddr::V6(v6) => {
            w.u8(6);
            w.raw(&v6.octets());
        }
    }
}

/// Reads what [`write_ip`] wrote.
pub(crate) fn read_ip(r: &mut Reader<'_>, field: &'static str) -> Result<IpAddr, DecodeError> {
    match r.u8(field)? {
        4 => Ok(IpAddr::V4(Ipv4Addr::from(r.array::<4>(field)?))),
        6 => Ok(IpAddr::V6(Ipv6Addr::from(r.array::<16>(field)?))),
        _ => Err(bad(field, "address family must be 4 or 6")),
    }
}

impl WireFormat for RevealPayload {
    fn write(&self, w: &mut Writer) {
        write_ip(w, &self.endpoint.ip());
        w.u16(self.endpoint.port());
        w.raw(&self.session_id);
        match &self.credentials {
            Credentials::WireGuard {
                server_public_key,
                tunnel,
                dns,
            } => {
                // Tag 1: no resolver (as before resolvers were revealed); 3: one follows.
                w.u8(if dns.is_some() { 3 } else { 1 });
                w.raw(server_public_key);
                write_ip(w, &tunnel.address);
                w.u8(tunnel.prefix_len);
                if let Some(d) = dns {
                    write_ip(w, d);
                }
            }
            Credentials::Shadowsocks {
                method,
                server_psk,
                user_psk,
            } => {
                w.u8(2);
                w.u8(*method as u8);
                w.bytes(server_psk);
                w.bytes(user_psk);
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let ip = read_ip(r, "reveal.endpoint")?;
        let port = r.u16("reveal.endpoint_port")?;
        if port == 0 {
            return Err(bad("reveal.endpoint_port", "port 0 is not reachable"));
        }
        let session_id = r.array("reveal.session_id")?;
        let credentials = match r.u8("reveal.credentials")? {
            tag @ (1 | 3) => {
                let server_public_key = r.array("reveal.server_public_key")?;
                let address = read_ip(r, "reveal.tunnel_address")?;
                let prefix_len = r.u8("reveal.tunnel_prefix")?;
                let max = if address.is_ipv4() { 32 } else { 128 };
                if prefix_len > max {
                    return Err(bad(
                        "reveal.tunnel_prefix",
                        "prefix longer than the address",
                    ));
                }
                let dns = if tag == 3 {
                    Some(read_ip(r, "reveal.dns")?)
                } else {
                    None
                };
                Credentials::WireGuard {
                    server_public_key,
                    tunnel: TunnelAddress {
                        address,
                        prefix_len,
                    },
                    dns,
                }
            }
            2 => {
                let method = ShadowsocksMethod::from_code(r.u8("reveal.ss_method")?)
                    .ok_or_else(|| bad("reveal.ss_method", "unknown shadowsocks method"))?;
                let n = method.key_len();
                let server_psk = r.bytes("reveal.ss_server_psk", n, n)?.to_vec();
                let user_psk = r.bytes("reveal.ss_user_psk", n, n)?.to_vec();
                Credentials::Shadowsocks {
                    method,
                    server_psk,
                    user_psk,
                }
            }
            _ => return Err(bad("reveal.credentials", "unknown credentials kind")),
        };
        Ok(Self {
            endpoint: SocketAddr::new(ip, port),
            session_id,
            credentials,
        })
    }
}

impl Message {
    /// Encodes as `version ‖ type ‖ fields`. Every message's fields are bounded, so the result is
    /// always below [`MAX_MESSAGE_SIZE`].
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(PROTOCOL_VERSION);
        match self {
            Self::Announcement(m) => {
                w.u8(tag::ANNOUNCEMENT);
                m.write(&mut w);
            }
            Self::QuoteRequest(m) => {
                w.u8(tag::QUOTE_REQUEST);
                m.write(&mut w);
            }
            Self::Quote(m) => {
                w.u8(tag::QUOTE);
                m.write(&mut w);
            }
            Self::Refusal(m) => {
                w.u8(tag::REFUSAL);
                m.write(&mut w);
            }
            Self::Opened(m) => {
                w.u8(tag::OPENED);
                m.write(&mut w);
            }
            Self::Reveal(m) => {
                w.u8(tag::REVEAL);
                m.write(&mut w);
            }
            Self::Voucher(m) => {
                w.u8(tag::VOUCHER);
                m.write(&mut w);
            }
            Self::Usage(m) => {
                w.u8(tag::USAGE);
                m.write(&mut w);
            }
            Self::CloseRequest(m) => {
                w.u8(tag::CLOSE_REQUEST);
                m.write(&mut w);
            }
            Self::CloseConsent(m) => {
                w.u8(tag::CLOSE_CONSENT);
                m.write(&mut w);
            }
            Self::Resume(m) => {
                w.u8(tag::RESUME);
                m.write(&mut w);
            }
        }
        w.into_bytes()
    }

    /// Decodes one message, strictly: see [`crate::codec`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_SIZE {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                max: MAX_MESSAGE_SIZE,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8("version").map_err(|_| DecodeError::Empty)?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnknownVersion {
                found: version,
                supported: PROTOCOL_VERSION,
            });
        }
        let msg = match r.u8("message type")? {
            tag::ANNOUNCEMENT => Self::Announcement(Announcement::read(&mut r)?),
            tag::QUOTE_REQUEST => Self::QuoteRequest(QuoteRequest::read(&mut r)?),
            tag::QUOTE => Self::Quote(Quote::read(&mut r)?),
            tag::REFUSAL => Self::Refusal(Refusal::read(&mut r)?),
            tag::OPENED => Self::Opened(Opened::read(&mut r)?),
            tag::REVEAL => Self::Reveal(Reveal::read(&mut r)?),
            tag::VOUCHER => Self::Voucher(SignedVoucher::read(&mut r)?),
            tag::USAGE => Self::Usage(Usage::read(&mut r)?),
            tag::CLOSE_REQUEST => Self::CloseRequest(CloseRequest::read(&mut r)?),
            tag::CLOSE_CONSENT => Self::CloseConsent(SignedCloseConsent::read(&mut r)?),
            tag::RESUME => Self::Resume(Resume::read(&mut r)?),
            other => return Err(DecodeError::UnknownMessageType(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}
