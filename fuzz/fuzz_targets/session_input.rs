//! Arbitrary peer bytes, meter readings and clock jumps fed to a seller and a buyer session:
//! neither ever panics, whatever a hostile peer sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wayfare_proto::keys::SecretKey;
use wayfare_proto::session::{
    AcceptedBytes, BuyerParams, BuyerSession, SellerParams, SellerSession, SessionConfig,
};
use wayfare_proto::{Address, Service, ServiceSet, Terms, Timestamp};

fuzz_target!(|data: &[u8]| {
    let (Ok(signer), Ok(voucher)) = (
        SecretKey::from_bytes(&[0x11; 32]),
        SecretKey::from_bytes(&[0x22; 32]),
    ) else {
        return;
    };
    let terms = Terms {
        price_per_mib: 1_000,
        price_per_second: 10,
        seller_burn: 0,
        buyer_burn: 0,
        min_deposit: 0,
        payment_interval: 15,
    };
    let mut seller = SellerSession::new(
        SellerParams {
            chain_id: 1,
            market: Address::ZERO,
            seller: Address::repeat_byte(1),
            signer: signer.clone(),
            list_terms: terms,
            services: ServiceSet::new(&[Service::WireGuard, Service::Shadowsocks]),
        },
        SessionConfig::default(),
    );
    let mut now = Timestamp::from_secs(1_800_000_000);
    let mut buyer = BuyerSession::new(
        BuyerParams {
            chain_id: 1,
            market: Address::ZERO,
            buyer: Address::repeat_byte(2),
            seller: Address::repeat_byte(1),
            seller_signer: signer.address(),
            service: Service::Shadowsocks,
            wanted: None,
            voucher_key: voucher,
            reveal_seed: [3; 32],
            wireguard_key: None,
        },
        SessionConfig::default(),
        now,
    );
    // Frames: [op, len, bytes…].
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (chunk, next) = tail.split_at(n);
        rest = next;
        match op % 6 {
            0 => {
                let _ = seller.handle_bytes(chunk, now);
            }
            1 => {
                let _ = buyer.handle_bytes(chunk, now);
            }
            2 => {
                let b = chunk
                    .iter()
                    .fold(0u64, |a, x| a.wrapping_mul(257).wrapping_add(u64::from(*x)));
                seller.handle_meter(b, now);
                buyer.handle_meter(AcceptedBytes(b), now);
            }
            3 => {
                now = now.saturating_add(core::time::Duration::from_millis(u64::from(*len) * 997));
                seller.handle_timeout(now);
                buyer.handle_timeout(now);
            }
            4 => {
                // Cross the streams: what one side sends goes to the other.
                while let Some(b) = seller.poll_transmit() {
                    let _ = buyer.handle_bytes(&b, now);
                }
                while let Some(b) = buyer.poll_transmit() {
                    let _ = seller.handle_bytes(&b, now);
                }
            }
            _ => {
                while seller.poll_event().is_some() {}
                while buyer.poll_event().is_some() {}
            }
        }
    }
});
