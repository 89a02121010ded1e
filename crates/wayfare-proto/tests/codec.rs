//! The codec: round trips, strictness, and random input never panicking.

use std::net::{IpAddr, SocketAddr};

use alloy_primitives::{Address, B256, U256};
use proptest::collection::vec;
use proptest::prelude::*;
use wayfare_proto::codec::{DecodeError, MAX_MESSAGE_SIZE, PROTOCOL_VERSION, WireFormat};
use wayfare_proto::eip712::Offer;
use wayfare_proto::messages::*;
use wayfare_proto::seal::{Credentials, RevealPayload, ShadowsocksMethod};
use wayfare_proto::session::{
    BuyerPhase, BuyerSnapshot, SNAPSHOT_VERSION, SellerPhase, SellerSnapshot,
};
use wayfare_proto::{Service, ServiceSet, Terms};

fn address() -> impl Strategy<Value = Address> {
    any::<[u8; 20]>().prop_map(Address::from)
}
fn b256() -> impl Strategy<Value = B256> {
    any::<[u8; 32]>().prop_map(B256::from)
}
fn u256() -> impl Strategy<Value = U256> {
    any::<[u8; 32]>().prop_map(U256::from_be_bytes)
}
fn signature() -> impl Strategy<Value = SignatureBytes> {
    (vec(any::<u8>(), 64), prop_oneof![Just(27u8), Just(28u8)]).prop_map(|(rs, v)| {
        let mut s = [0u8; 65];
        s[..64].copy_from_slice(&rs);
        s[64] = v;
        s
    })
}
fn service() -> impl Strategy<Value = Service> {
    prop_oneof![Just(Service::WireGuard), Just(Service::Shadowsocks)]
}
fn terms() -> impl Strategy<Value = Terms> {
    (
        any::<u128>(),
        any::<u128>(),
        any::<u128>(),
        any::<u128>(),
        any::<u128>(),
        1u32..,
    )
        .prop_map(|(a, b, c, d, e, f)| Terms {
            price_per_mib: a,
            price_per_second: b,
            seller_burn: c,
            buyer_burn: d,
            min_deposit: e,
            payment_interval: f,
        })
}
fn offer() -> impl Strategy<Value = Offer> {
    (
        address(),
        address(),
        service(),
        terms(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(s, b, svc, t, n, e)| Offer {
            seller: s,
            buyer: b,
            service: svc.code(),
            pricePerMiB: t.price_per_mib,
            pricePerSecond: t.price_per_second,
            sellerBurn: t.seller_burn,
            buyerBurn: t.buyer_burn,
            minDeposit: t.min_deposit,
            paymentInterval: t.payment_interval,
            nonce: n,
            expiry: e,
        })
}
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-z0-9 \\-é]{{0,{}}}", max / 2)).expect("regex")
}
fn range() -> impl Strategy<Value = IpRange> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, p)| IpRange::new(IpAddr::from(a), p).unwrap()),
        (any::<[u8; 16]>(), 0u8..=128).prop_map(|(a, p)| IpRange::new(IpAddr::from(a), p).unwrap()),
    ]
}
fn announcement() -> impl Strategy<Value = Announcement> {
    (
        address(),
        vec(any::<u8>(), 1..=MAX_PEER_ID_LEN),
        1u8..=3,
        terms(),
        text(MAX_REGION_LEN),
        any::<u64>(),
        vec(range(), 0..=MAX_EXIT_RANGES),
        any::<u64>(),
        signature(),
    )
        .prop_map(
            |(seller, peer_id, bits, terms, region, cap, exit_allow, until, signature)| {
                Announcement {
                    seller,
                    peer_id,
                    services: ServiceSet::from_bits(bits).expect("bits"),
                    terms,
                    region,
                    capacity_bps: cap,
                    exit_allow,
                    valid_until: until,
                    signature,
                }
            },
        )
}
fn quote_request() -> impl Strategy<Value = QuoteRequest> {
    (
        address(),
        service(),
        proptest::option::of(terms()),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
    )
        .prop_map(|(buyer, service, wanted, buyer_key, wg)| QuoteRequest {
            buyer,
            service,
            wanted,
            buyer_key,
            wireguard_key: (service == Service::WireGuard).then_some(wg),
        })
}
fn refusal() -> impl Strategy<Value = Refusal> {
    (1u8..=5, text(MAX_DETAIL_LEN)).prop_map(|(r, detail)| Refusal {
        reason: RefusalReason::from_code(r).expect("reason"),
        detail,
    })
}
fn reveal() -> impl Strategy<Value = Reveal> {
    (
        b256(),
        any::<[u8; 32]>(),
        vec(any::<u8>(), AEAD_TAG_LEN..=MAX_SEALED_LEN),
    )
        .prop_map(|(id, k, c)| Reveal {
            channel_id: id,
            sealed: SealedReveal {
                encapped_key: k,
                ciphertext: c,
            },
        })
}
fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        announcement().prop_map(Message::Announcement),
        quote_request().prop_map(Message::QuoteRequest),
        (offer(), signature())
            .prop_map(|(offer, signature)| Message::Quote(Quote { offer, signature })),
        refusal().prop_map(Message::Refusal),
        (b256(), b256()).prop_map(|(channel_id, tx_hash)| Message::Opened(Opened {
            channel_id,
            tx_hash
        })),
        reveal().prop_map(Message::Reveal),
        (b256(), u256(), signature()).prop_map(|(channel_id, amount, signature)| Message::Voucher(
            SignedVoucher {
                channel_id,
                amount,
                signature
            }
        )),
        (
            b256(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            u256(),
            signature()
        )
            .prop_map(|(channel_id, run, bytes, seconds, paid, signature)| {
                Message::Usage(Usage {
                    channel_id,
                    run,
                    bytes,
                    seconds,
                    paid,
                    signature,
                })
            }),
        (b256(), any::<u32>(), 1u8..=6, signature()).prop_map(|(channel_id, run, r, signature)| {
            Message::CloseRequest(CloseRequest {
                channel_id,
                run,
                reason: CloseReason::from_code(r).expect("reason"),
                signature,
            })
        }),
        (b256(), u256(), signature()).prop_map(|(channel_id, amount, signature)| {
            Message::CloseConsent(SignedCloseConsent {
                channel_id,
                amount,
                signature,
            })
        }),
        resume().prop_map(Message::Resume),
    ]
}
fn resume() -> impl Strategy<Value = Resume> {
    (
        b256(),
        any::<u32>(),
        any::<[u8; 32]>(),
        proptest::option::of(any::<[u8; 32]>()),
        signature(),
    )
        .prop_map(
            |(channel_id, run, buyer_key, wireguard_key, signature)| Resume {
                channel_id,
                run,
                buyer_key,
                wireguard_key,
                signature,
            },
        )
}
fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from)
    ]
}
fn reveal_payload() -> impl Strategy<Value = RevealPayload> {
    let wg =
        (any::<[u8; 32]>(), ip(), any::<u8>(), any::<bool>()).prop_map(|(k, address, p, dns)| {
            let max = if address.is_ipv4() { 33 } else { 129 };
            Credentials::WireGuard {
                server_public_key: k,
                tunnel: TunnelAddress {
                    address,
                    prefix_len: p % max,
                },
                dns: dns.then_some(address),
            }
        });
    let ss = (any::<bool>(), any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(big, a, b)| {
        let method = if big {
            ShadowsocksMethod::Blake3Aes256Gcm
        } else {
            ShadowsocksMethod::Blake3Aes128Gcm
        };
        let n = method.key_len();
        Credentials::Shadowsocks {
            method,
            server_psk: a[..n].to_vec(),
            user_psk: b[..n].to_vec(),
        }
    });
    (ip(), 1u16.., any::<[u8; 16]>(), prop_oneof![wg, ss]).prop_map(
        |(ip, port, session_id, credentials)| RevealPayload {
            endpoint: SocketAddr::new(ip, port),
            session_id,
            credentials,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_message_round_trips(m in message()) {
        let bytes = m.encode();
        prop_assert!(bytes.len() <= MAX_MESSAGE_SIZE);
        prop_assert_eq!(bytes[0], PROTOCOL_VERSION);
        prop_assert_eq!(Message::decode(&bytes), Ok(m));
    }

    #[test]
    fn reveal_payload_round_trips(p in reveal_payload()) {
        prop_assert_eq!(RevealPayload::from_wire(&p.to_wire()), Ok(p));
    }

    #[test]
    fn trailing_bytes_are_rejected(m in message(), extra in vec(any::<u8>(), 1..8)) {
        let mut bytes = m.encode();
        bytes.extend_from_slice(&extra);
        prop_assert_eq!(Message::decode(&bytes), Err(DecodeError::TrailingBytes { count: extra.len() }));
    }

    #[test]
    fn every_truncation_is_an_error(m in message(), cut in any::<proptest::sample::Index>()) {
        let bytes = m.encode();
        let at = cut.index(bytes.len());
        prop_assert!(Message::decode(&bytes[..at]).is_err());
    }

    #[test]
    fn resume_round_trips_and_every_truncation_is_an_error(r in resume(), cut in any::<proptest::sample::Index>()) {
        let bytes = Message::Resume(r).encode();
        prop_assert_eq!(bytes[1], 0x0b);
        prop_assert_eq!(bytes.len(), 2 + 32 + 4 + 32 + 1 + if r.wireguard_key.is_some() { 32 } else { 0 } + 65);
        prop_assert_eq!(Message::decode(&bytes), Ok(Message::Resume(r)));
        let at = cut.index(bytes.len());
        prop_assert!(Message::decode(&bytes[..at]).is_err());
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..2048)) {
        let _ = Message::decode(&bytes);
        let _ = RevealPayload::from_wire(&bytes);
        let _ = SellerSnapshot::from_bytes(&bytes);
        let _ = BuyerSnapshot::from_bytes(&bytes);
    }

    #[test]
    fn random_bodies_after_a_valid_header_never_panic(kind in 0u8..=12, body in vec(any::<u8>(), 0..600)) {
        let mut bytes = vec![PROTOCOL_VERSION, kind];
        bytes.extend_from_slice(&body);
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn single_byte_corruptions_never_panic(m in message(), at in any::<proptest::sample::Index>(), b in any::<u8>()) {
        let mut bytes = m.encode();
        let i = at.index(bytes.len());
        bytes[i] = b;
        if let Ok(decoded) = Message::decode(&bytes) {
            // Whatever decodes re-encodes to the same bytes (the encoding is canonical).
            prop_assert_eq!(decoded.encode(), bytes);
        }
    }
}

fn voucher_bytes() -> Vec<u8> {
    let mut sig = [1u8; 65];
    sig[64] = 27;
    Message::Voucher(SignedVoucher {
        channel_id: B256::ZERO,
        amount: U256::from(5u8),
        signature: sig,
    })
    .encode()
}

#[test]
fn oversized_input_is_rejected_before_parsing() {
    let big = vec![PROTOCOL_VERSION; MAX_MESSAGE_SIZE + 1];
    assert_eq!(
        Message::decode(&big),
        Err(DecodeError::TooLarge {
            size: MAX_MESSAGE_SIZE + 1,
            max: MAX_MESSAGE_SIZE
        })
    );
}

#[test]
fn unknown_version_and_type_are_typed_errors() {
    let mut b = voucher_bytes();
    b[0] = 3;
    assert_eq!(
        Message::decode(&b),
        Err(DecodeError::UnknownVersion {
            found: 3,
            supported: 2
        })
    );
    let mut b = voucher_bytes();
    b[1] = 0x7f;
    assert_eq!(
        Message::decode(&b),
        Err(DecodeError::UnknownMessageType(0x7f))
    );
    assert_eq!(Message::decode(&[]), Err(DecodeError::Empty));
}

#[test]
fn bad_field_values_are_typed_errors() {
    // v outside {27, 28}.
    let mut b = voucher_bytes();
    let last = b.len() - 1;
    b[last] = 29;
    assert!(matches!(
        Message::decode(&b),
        Err(DecodeError::BadValue {
            field: "voucher.signature",
            ..
        })
    ));
    // A WireGuard quote request without a WireGuard key.
    let req = QuoteRequest {
        buyer: Address::ZERO,
        service: Service::Shadowsocks,
        wanted: None,
        buyer_key: [0; 32],
        wireguard_key: None,
    };
    let mut b = Message::QuoteRequest(req).encode();
    b[22] = Service::WireGuard.code();
    assert!(matches!(
        Message::decode(&b),
        Err(DecodeError::BadValue {
            field: "quote_request.wireguard_key",
            ..
        })
    ));
    // Service 3, option tag 2, interval 0, unknown close reason, empty peer id.
    b[22] = 3;
    assert!(matches!(
        Message::decode(&b),
        Err(DecodeError::BadValue {
            field: "quote_request.service",
            ..
        })
    ));
    b[22] = Service::Shadowsocks.code();
    b[23] = 2;
    assert!(matches!(
        Message::decode(&b),
        Err(DecodeError::BadValue {
            field: "quote_request.wanted",
            ..
        })
    ));
    let mut c = Message::CloseRequest(CloseRequest {
        channel_id: B256::ZERO,
        run: 0,
        reason: CloseReason::BuyerDone,
        signature: sig27(),
    })
    .encode();
    // version, type, channel id, run, then the reason.
    c[2 + 32 + 4] = 0;
    assert!(matches!(
        Message::decode(&c),
        Err(DecodeError::BadValue {
            field: "close_request.reason",
            ..
        })
    ));
    // A sealed reveal shorter than an AEAD tag.
    let r = Message::Reveal(Reveal {
        channel_id: B256::ZERO,
        sealed: SealedReveal {
            encapped_key: [0; 32],
            ciphertext: vec![0; 15],
        },
    })
    .encode();
    assert!(matches!(
        Message::decode(&r),
        Err(DecodeError::BadLength {
            field: "reveal.ciphertext",
            len: 15,
            ..
        })
    ));
}

#[test]
fn terms_with_a_zero_interval_are_rejected() {
    let t = Terms {
        price_per_mib: 1,
        price_per_second: 1,
        seller_burn: 0,
        buyer_burn: 0,
        min_deposit: 0,
        payment_interval: 0,
    };
    assert!(matches!(
        Terms::from_wire(&t.to_wire()),
        Err(DecodeError::BadValue {
            field: "terms.payment_interval",
            ..
        })
    ));
}

fn resume_bytes(wireguard_key: Option<[u8; 32]>) -> Vec<u8> {
    let mut sig = [1u8; 65];
    sig[64] = 28;
    Message::Resume(Resume {
        channel_id: B256::repeat_byte(3),
        run: 1,
        buyer_key: [4; 32],
        wireguard_key,
        signature: sig,
    })
    .encode()
}

#[test]
fn resume_bad_field_values_are_typed_errors() {
    // v outside {27, 28}.
    for wg in [None, Some([5u8; 32])] {
        let mut b = resume_bytes(wg);
        let last = b.len() - 1;
        b[last] = 0;
        assert!(matches!(
            Message::decode(&b),
            Err(DecodeError::BadValue {
                field: "resume.signature",
                ..
            })
        ));
    }
    // The WireGuard key's option tag is 0 or 1, nothing else.
    let mut b = resume_bytes(None);
    let tag_at = 2 + 32 + 4 + 32;
    assert_eq!(b[tag_at], 0);
    b[tag_at] = 2;
    assert!(matches!(
        Message::decode(&b),
        Err(DecodeError::BadValue {
            field: "resume.wireguard_key",
            ..
        })
    ));
    // A present tag with the key missing is a truncation; a key after an absent tag is junk.
    let mut b = resume_bytes(None);
    b[tag_at] = 1;
    assert!(Message::decode(&b).is_err());
    let mut b = resume_bytes(Some([5; 32]));
    b[tag_at] = 0;
    assert!(Message::decode(&b).is_err());
    // The pause close reason has its own code.
    let c = Message::CloseRequest(CloseRequest {
        channel_id: B256::ZERO,
        run: 0,
        reason: CloseReason::Pause,
        signature: sig27(),
    })
    .encode();
    assert_eq!(c[2 + 32 + 4], 6);
    assert_eq!(CloseReason::from_code(7), None);
}

const SELLER_V1: &str = include_str!("fixtures/seller_snapshot_v1_serving.hex");
const BUYER_V1: &str = include_str!("fixtures/buyer_snapshot_v1_serving.hex");

fn unhex(s: &str) -> Vec<u8> {
    alloy_primitives::hex::decode(s.trim()).expect("hex")
}

/// The fixtures were written by the daemon's snapshot code before version 2 (a serving session
/// two minutes in).
#[test]
fn version_1_snapshots_still_decode_and_re_encode_as_version_3() {
    assert_eq!(SNAPSHOT_VERSION, 3);
    let v1 = unhex(SELLER_V1);
    assert_eq!(&v1[..5], b"WFSS\x01");
    let s = SellerSnapshot::from_bytes(&v1).expect("v1 seller snapshot");
    assert_eq!(s.phase, SellerPhase::Serving);
    assert_eq!(s.prior_seconds, 0);
    assert!(s.best.is_some() && s.channel.is_some() && s.service_start.is_some());
    assert_eq!(s.run, 0);
    let v3 = s.to_bytes();
    assert_eq!(v3[4], 3);
    assert_eq!(
        v3.len(),
        v1.len() + 8 + 4,
        "v2 appends prior_seconds, v3 the run"
    );
    assert_eq!(&v3[5..v1.len()], &v1[5..]);
    assert_eq!(SellerSnapshot::from_bytes(&v3), Ok(s.clone()));
    // Version 2 (v1 + prior_seconds) still reads, with run 0.
    let mut v2 = v3[..v3.len() - 4].to_vec();
    v2[4] = 2;
    assert_eq!(SellerSnapshot::from_bytes(&v2), Ok(s.clone()));
    // The run survives a round trip.
    let s7 = SellerSnapshot { run: 7, ..s };
    assert_eq!(SellerSnapshot::from_bytes(&s7.to_bytes()), Ok(s7));

    let v1 = unhex(BUYER_V1);
    assert_eq!(&v1[..5], b"WFBS\x01");
    let b = BuyerSnapshot::from_bytes(&v1).expect("v1 buyer snapshot");
    assert_eq!(b.phase, BuyerPhase::Serving);
    assert_eq!(b.prior_seconds, 0);
    assert!(b.last_voucher.is_some() && b.reveal.is_some());
    let v3 = b.to_bytes();
    assert_eq!(v3[4], 3);
    assert_eq!(v3.len(), v1.len() + 8 + 4);
    assert_eq!(BuyerSnapshot::from_bytes(&v3), Ok(b.clone()));
    let b5 = BuyerSnapshot { run: 5, ..b };
    assert_eq!(BuyerSnapshot::from_bytes(&b5.to_bytes()), Ok(b5));
}

#[test]
fn snapshot_versions_and_the_paused_phase_are_checked() {
    let v1 = unhex(SELLER_V1);
    // Version 1 plus prior_seconds is trailing junk for version 1.
    let mut long = v1.clone();
    long.extend_from_slice(&[0; 8]);
    assert_eq!(
        SellerSnapshot::from_bytes(&long),
        Err(DecodeError::TrailingBytes { count: 8 })
    );
    // Version 2 without prior_seconds is truncated.
    let mut short = v1.clone();
    short[4] = 2;
    assert!(SellerSnapshot::from_bytes(&short).is_err());
    // Version 3 without the run is truncated.
    let mut short3 = v1.clone();
    short3.extend_from_slice(&[0; 8]);
    short3[4] = 3;
    assert!(SellerSnapshot::from_bytes(&short3).is_err());
    // Unknown versions.
    for v in [0u8, 4] {
        let mut b = v1.clone();
        b[4] = v;
        assert_eq!(
            SellerSnapshot::from_bytes(&b),
            Err(DecodeError::UnknownVersion {
                found: v,
                supported: 3
            })
        );
    }
    // Paused (6) did not exist in version 1.
    let mut b = v1.clone();
    b[5] = 6;
    assert!(matches!(
        SellerSnapshot::from_bytes(&b),
        Err(DecodeError::BadValue {
            field: "snapshot.phase",
            ..
        })
    ));
    // In version 2 it does, and a paused snapshot holds no running service.
    let mut s = SellerSnapshot::from_bytes(&v1).unwrap();
    s.phase = SellerPhase::Paused;
    s.prior_seconds = 120;
    assert!(matches!(
        SellerSnapshot::from_bytes(&s.to_bytes()),
        Err(DecodeError::BadValue {
            field: "snapshot.service_start",
            ..
        })
    ));
    s.service_start = None;
    assert_eq!(SellerSnapshot::from_bytes(&s.to_bytes()), Ok(s.clone()));
    s.channel = None;
    assert!(SellerSnapshot::from_bytes(&s.to_bytes()).is_err());

    let mut b = BuyerSnapshot::from_bytes(&unhex(BUYER_V1)).unwrap();
    b.phase = BuyerPhase::Paused;
    b.service_start = None;
    b.prior_seconds = 120;
    assert_eq!(BuyerSnapshot::from_bytes(&b.to_bytes()), Ok(b.clone()));
    b.channel = None;
    assert!(BuyerSnapshot::from_bytes(&b.to_bytes()).is_err());
}

/// A syntactically valid signature (v = 27) for layout tests.
fn sig27() -> [u8; 65] {
    let mut sig = [1u8; 65];
    sig[64] = 27;
    sig
}

#[test]
fn version_1_session_messages_are_refused() {
    // An unsigned version-1 `CloseRequest` (channel id, reason) and `Usage` are not read as
    // anything: the version byte alone refuses them.
    let mut close_v1 = vec![1u8, 0x09];
    close_v1.extend_from_slice(&[0u8; 32]);
    close_v1.push(6);
    let mut usage_v1 = vec![1u8, 0x08];
    usage_v1.extend_from_slice(&[0u8; 32 + 8 + 8 + 32]);
    for bytes in [close_v1, usage_v1] {
        assert_eq!(
            Message::decode(&bytes),
            Err(DecodeError::UnknownVersion {
                found: 1,
                supported: PROTOCOL_VERSION
            })
        );
    }
    // The same bytes under version 2 are too short: the signature is not optional.
    let mut close = vec![PROTOCOL_VERSION, 0x09];
    close.extend_from_slice(&[0u8; 32 + 4]);
    close.push(6);
    assert!(matches!(
        Message::decode(&close),
        Err(DecodeError::Truncated { .. })
    ));
}
