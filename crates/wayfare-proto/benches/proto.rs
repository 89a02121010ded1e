//! Benchmarks: voucher signing and verification, encode/decode of every message, a reveal
//! seal/open. Run with `cargo bench -p wayfare-proto`.

use std::hint::black_box;

use alloy_primitives::{Address, B256, U256};
use divan::Bencher;
use wayfare_proto::eip712::{self, Offer};
use wayfare_proto::keys::SecretKey;
use wayfare_proto::messages::*;
use wayfare_proto::seal::{self, Credentials, RevealPayload, RevealSecret};
use wayfare_proto::{ServiceSet, Terms};

fn main() {
    divan::main();
}

fn key() -> SecretKey {
    SecretKey::from_bytes(&[0x42; 32]).expect("key")
}

fn domain() -> eip712::Eip712Domain {
    eip712::domain(31337, Address::repeat_byte(0xaa))
}

#[divan::bench]
fn voucher_sign(bencher: Bencher) {
    let (k, d) = (key(), domain());
    let id = B256::repeat_byte(1);
    let mut amount = 0u64;
    bencher.bench_local(|| {
        amount += 1;
        let digest = eip712::voucher_digest(id, U256::from(amount), &d);
        black_box(k.sign_digest(digest))
    });
}

#[divan::bench]
fn voucher_verify(bencher: Bencher) {
    let (k, d) = (key(), domain());
    let id = B256::repeat_byte(1);
    let amount = U256::from(123_456_789u64);
    let sig = k.sign_digest(eip712::voucher_digest(id, amount, &d));
    let expected = k.address();
    bencher.bench_local(|| {
        let digest = eip712::voucher_digest(black_box(id), black_box(amount), &d);
        eip712::verify_signer(digest, black_box(&sig), expected).expect("valid")
    });
}

#[divan::bench]
fn voucher_digest_only(bencher: Bencher) {
    let d = domain();
    bencher.bench_local(|| {
        eip712::voucher_digest(black_box(B256::ZERO), black_box(U256::from(7u8)), &d)
    });
}

#[divan::bench]
fn reveal_seal_and_open(bencher: Bencher) {
    let buyer = RevealSecret::from_seed(&[1; 32]);
    let payload = RevealPayload {
        endpoint: "198.18.1.1:51820".parse().expect("addr"),
        session_id: [2; 16],
        credentials: Credentials::WireGuard {
            server_public_key: [3; 32],
            tunnel: TunnelAddress {
                address: "198.19.0.2".parse().expect("ip"),
                prefix_len: 32,
            },
            dns: None,
        },
    };
    let id = B256::repeat_byte(4);
    bencher.bench_local(|| {
        let sealed =
            seal::seal_with_seed(&payload, id, &buyer.public_key(), &[5; 32]).expect("seal");
        seal::open(&sealed, id, &buyer).expect("open")
    });
}

const MESSAGES: &[&str] = &[
    "Announcement",
    "QuoteRequest",
    "Quote",
    "Refusal",
    "Opened",
    "Reveal",
    "Voucher",
    "Usage",
    "CloseRequest",
    "CloseConsent",
];

fn sample(name: &str) -> Message {
    let sig = {
        let mut s = [7u8; 65];
        s[64] = 27;
        s
    };
    let terms = Terms {
        price_per_mib: 1_000_000_000,
        price_per_second: 1_000_000,
        seller_burn: 10,
        buyer_burn: 10,
        min_deposit: 1_000_000,
        payment_interval: 15,
    };
    let id = B256::repeat_byte(9);
    match name {
        "Announcement" => Message::Announcement(Announcement {
            seller: Address::repeat_byte(1),
            peer_id: vec![0x12; 38],
            services: ServiceSet::from_bits(3).expect("bits"),
            terms,
            region: "eu-west".into(),
            capacity_bps: 1_000_000_000,
            exit_allow: Vec::new(),
            valid_until: 1_800_000_000,
            signature: sig,
        }),
        "QuoteRequest" => Message::QuoteRequest(QuoteRequest {
            buyer: Address::repeat_byte(2),
            service: wayfare_proto::Service::WireGuard,
            wanted: Some(terms),
            buyer_key: [3; 32],
            wireguard_key: Some([4; 32]),
        }),
        "Quote" => Message::Quote(Quote {
            offer: Offer {
                seller: Address::repeat_byte(1),
                buyer: Address::repeat_byte(2),
                service: 1,
                pricePerMiB: 1,
                pricePerSecond: 2,
                sellerBurn: 3,
                buyerBurn: 4,
                minDeposit: 5,
                paymentInterval: 15,
                nonce: 6,
                expiry: 7,
            },
            signature: sig,
        }),
        "Refusal" => Message::Refusal(Refusal {
            reason: RefusalReason::AtCapacity,
            detail: "full".into(),
        }),
        "Opened" => Message::Opened(Opened {
            channel_id: id,
            tx_hash: id,
        }),
        "Reveal" => Message::Reveal(Reveal {
            channel_id: id,
            sealed: SealedReveal {
                encapped_key: [1; 32],
                ciphertext: vec![2; 96],
            },
        }),
        "Voucher" => Message::Voucher(SignedVoucher {
            channel_id: id,
            amount: U256::from(5u8),
            signature: sig,
        }),
        "Usage" => Message::Usage(Usage {
            channel_id: id,
            run: 0,
            bytes: 1 << 30,
            seconds: 900,
            paid: U256::from(5u8),
            signature: sig,
        }),
        "CloseRequest" => Message::CloseRequest(CloseRequest {
            channel_id: id,
            run: 0,
            reason: CloseReason::BuyerDone,
            signature: sig,
        }),
        _ => Message::CloseConsent(SignedCloseConsent {
            channel_id: id,
            amount: U256::from(5u8),
            signature: sig,
        }),
    }
}

#[divan::bench(args = MESSAGES)]
fn encode(bencher: Bencher, name: &str) {
    let m = sample(name);
    bencher.bench_local(|| black_box(&m).encode());
}

#[divan::bench(args = MESSAGES)]
fn decode(bencher: Bencher, name: &str) {
    let bytes = sample(name).encode();
    bencher.bench_local(|| Message::decode(black_box(&bytes)).expect("valid"));
}
