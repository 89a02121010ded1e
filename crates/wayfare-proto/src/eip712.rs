//! EIP-712 hashing and signature checking for the contract's typed structs — the one
//! implementation the whole workspace uses.
//!
//! The domain is `EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)`
//! with name `"Wayfare"`, version `"1"`, the chain id and the market's address. Digests are the full
//! `keccak256("\x19\x01" ‖ domainSeparator ‖ structHash)`, the same values the contract's
//! `hashOffer`, `hashVoucher` and `hashCloseConsent` return. `Announcement` and `Resume` are
//! off-chain only, hashed under the same domain.
//!
//! ```
//! use alloy_primitives::{address, b256, U256};
//! use wayfare_proto::{eip712, keys::SecretKey};
//!
//! let market = address!("00000000000000000000000000000000000000aa");
//! let domain = eip712::domain(31337, market);
//! let key = SecretKey::from_bytes(&[7u8; 32]).unwrap();
//! let id = eip712::channel_id(31337, market, key.address(), 1);
//! let digest = eip712::voucher_digest(id, U256::from(1000u64), &domain);
//! let sig = key.sign_digest(digest);
//! assert_eq!(eip712::recover_signer(digest, &sig).unwrap(), key.address());
//! ```

use alloy_primitives::{Address, B256, U256, keccak256};
pub use alloy_sol_types::Eip712Domain;
use alloy_sol_types::SolStruct;
use k256::ecdsa::Signature;
use thiserror::Error;

alloy_sol_types::sol! {
    /// The seller-signed offer a buyer opens a channel with (field names, types and order are
    /// binding: they match `WayfareMarket.Offer`).
    #[derive(Debug, PartialEq, Eq)]
    struct Offer {
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

    /// A cumulative payment on a channel, signed by the channel's voucher signer.
    #[derive(Debug, PartialEq, Eq)]
    struct Voucher {
        bytes32 channelId;
        uint256 amount;
    }

    /// The seller's consent to close a channel on an amount, signed by the seller's signer.
    #[derive(Debug, PartialEq, Eq)]
    struct CloseConsent {
        bytes32 channelId;
        uint256 amount;
    }

    /// An off-chain announcement (not known to the contract; signed under the same domain so it
    /// can't be replayed to another chain or deployment).
    #[derive(Debug, PartialEq, Eq)]
    struct Announcement {
        address seller;
        bytes peerId;
        uint8 services;
        uint128 pricePerMiB;
        uint128 pricePerSecond;
        uint128 sellerBurn;
        uint128 buyerBurn;
        uint128 minDeposit;
        uint32 paymentInterval;
        string region;
        uint64 capacityBps;
        string exitAllow;
        uint64 validUntil;
    }

    /// The buyer's request to resume a paused channel with fresh keys (not known to the
    /// contract; signed by the channel's voucher signer under the same domain so it can't be
    /// replayed to another chain or deployment). `wireguardKey` is zero when there is none.
    #[derive(Debug, PartialEq, Eq)]
    struct Resume {
        bytes32 channelId;
        uint32 run;
        bytes32 buyerKey;
        bytes32 wireguardKey;
    }

    /// A request to close (or pause) a channel's service run (off-chain only; signed by the
    /// channel's voucher signer from the buyer, by the seller's signer from the seller).
    #[derive(Debug, PartialEq, Eq)]
    struct CloseRequest {
        bytes32 channelId;
        uint32 run;
        uint8 reason;
    }

    /// The seller's meter report for a run (off-chain only; signed by the seller's signer).
    #[derive(Debug, PartialEq, Eq)]
    struct Usage {
        bytes32 channelId;
        uint32 run;
        uint64 bytes;
        uint64 seconds;
        uint256 paid;
    }
}

/// Domain name the contract uses.
pub const DOMAIN_NAME: &str = "Wayfare";
/// Domain version the contract uses.
pub const DOMAIN_VERSION: &str = "1";

/// The EIP-712 domain of the market deployed at `market` on chain `chain_id`.
pub fn domain(chain_id: u64, market: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some(DOMAIN_NAME.into()),
        Some(DOMAIN_VERSION.into()),
        Some(U256::from(chain_id)),
        Some(market),
        None,
    )
}

/// Digest the seller's signer signs for `offer`.
pub fn offer_digest(offer: &Offer, domain: &Eip712Domain) -> B256 {
    offer.eip712_signing_hash(domain)
}

/// Digest the voucher signer signs for a cumulative `amount` on `channel_id`.
pub fn voucher_digest(channel_id: B256, amount: U256, domain: &Eip712Domain) -> B256 {
    Voucher {
        channelId: channel_id,
        amount,
    }
    .eip712_signing_hash(domain)
}

/// Digest the seller's signer signs to consent to closing `channel_id` on `amount`.
pub fn close_consent_digest(channel_id: B256, amount: U256, domain: &Eip712Domain) -> B256 {
    CloseConsent {
        channelId: channel_id,
        amount,
    }
    .eip712_signing_hash(domain)
}

/// Digest the seller's signer signs for an announcement.
pub fn announcement_digest(a: &crate::messages::Announcement, domain: &Eip712Domain) -> B256 {
    Announcement {
        seller: a.seller,
        peerId: a.peer_id.clone().into(),
        services: a.services.bits(),
        pricePerMiB: a.terms.price_per_mib,
        pricePerSecond: a.terms.price_per_second,
        sellerBurn: a.terms.seller_burn,
        buyerBurn: a.terms.buyer_burn,
        minDeposit: a.terms.min_deposit,
        paymentInterval: a.terms.payment_interval,
        region: a.region.clone(),
        capacityBps: a.capacity_bps,
        exitAllow: a
            .exit_allow
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        validUntil: a.valid_until,
    }
    .eip712_signing_hash(domain)
}

/// Digest the channel's voucher signer signs to resume `channel_id` as service run `run` with a
/// fresh X25519 `buyer_key` and, for WireGuard, a new `wireguard_key` (zero bytes32 when `None`).
pub fn resume_digest(
    channel_id: B256,
    run: u32,
    buyer_key: [u8; 32],
    wireguard_key: Option<[u8; 32]>,
    domain: &Eip712Domain,
) -> B256 {
    Resume {
        channelId: channel_id,
        run,
        buyerKey: B256::from(buyer_key),
        wireguardKey: wireguard_key.map_or(B256::ZERO, B256::from),
    }
    .eip712_signing_hash(domain)
}

/// Digest a party signs to close (or pause) run `run` of `channel_id` for `reason` (the
/// [`CloseReason`](crate::messages::CloseReason) wire code).
pub fn close_request_digest(channel_id: B256, run: u32, reason: u8, domain: &Eip712Domain) -> B256 {
    CloseRequest {
        channelId: channel_id,
        run,
        reason,
    }
    .eip712_signing_hash(domain)
}

/// Digest the seller's signer signs for its meter report `u` (its signature field is ignored).
pub fn usage_digest(u: &crate::messages::Usage, domain: &Eip712Domain) -> B256 {
    Usage {
        channelId: u.channel_id,
        run: u.run,
        bytes: u.bytes,
        seconds: u.seconds,
        paid: u.paid,
    }
    .eip712_signing_hash(domain)
}

/// `keccak256(abi.encode(chainid, market, seller, nonce))`, the contract's channel id.
pub fn channel_id(chain_id: u64, market: Address, seller: Address, nonce: u64) -> B256 {
    let mut buf = [0u8; 128];
    buf[24..32].copy_from_slice(&chain_id.to_be_bytes());
    buf[44..64].copy_from_slice(market.as_slice());
    buf[76..96].copy_from_slice(seller.as_slice());
    buf[120..128].copy_from_slice(&nonce.to_be_bytes());
    keccak256(buf)
}

/// Why a signature was rejected. The remedy is always to drop what it signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// Not 65 bytes.
    #[error("signature is {0} bytes, expected 65 (r ‖ s ‖ v)")]
    BadLength(usize),
    /// `v` is not 27 or 28.
    #[error("signature v is {0}, expected 27 or 28")]
    BadV(u8),
    /// `r` or `s` is zero or not below the curve order.
    #[error("signature r or s is zero or out of range")]
    BadScalar,
    /// `s` is in the upper half of the order (a malleated signature; the contract rejects it).
    #[error("signature s is in the upper half of the curve order (malleable); sign with low-s")]
    HighS,
    /// No public key recovers from it.
    #[error("no public key recovers from this signature and digest")]
    Unrecoverable,
}

/// Recovers the address that signed `digest`, with the contract's rules (OpenZeppelin ECDSA):
/// 65 bytes `r ‖ s ‖ v`, `v` in {27, 28}, low `s`, non-zero scalars.
pub fn recover_signer(digest: B256, sig: &[u8]) -> Result<Address, SignatureError> {
    let sig: &[u8; 65] = sig
        .try_into()
        .map_err(|_| SignatureError::BadLength(sig.len()))?;
    let parity = match sig[64] {
        27 => false,
        28 => true,
        v => return Err(SignatureError::BadV(v)),
    };
    let signature = Signature::from_slice(&sig[..64]).map_err(|_| SignatureError::BadScalar)?;
    if signature.normalize_s().is_some() {
        return Err(SignatureError::HighS);
    }
    // Recovery itself runs on libsecp256k1 (one multi-scalar multiplication; k256's
    // `recover_from_prehash` does a second one to re-verify). `r` is below the order, so the
    // recovery id is 0 or 1.
    let recid = if parity {
        secp256k1::ecdsa::RecoveryId::One
    } else {
        secp256k1::ecdsa::RecoveryId::Zero
    };
    let rsig = secp256k1::ecdsa::RecoverableSignature::from_compact(&sig[..64], recid)
        .map_err(|_| SignatureError::BadScalar)?;
    let key = secp256k1::SECP256K1
        .recover_ecdsa(secp256k1::Message::from_digest(digest.0), &rsig)
        .map_err(|_| SignatureError::Unrecoverable)?;
    let uncompressed = key.serialize_uncompressed();
    Ok(Address::from_raw_public_key(&uncompressed[1..]))
}

/// Checks that `sig` over `digest` is by `expected`.
pub fn verify_signer(digest: B256, sig: &[u8], expected: Address) -> Result<(), VerifyError> {
    let got = recover_signer(digest, sig)?;
    if got == expected {
        Ok(())
    } else {
        Err(VerifyError::WrongSigner { expected, got })
    }
}

/// A signature that is valid but by the wrong key, or not valid at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// The signature itself is bad.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// A valid signature by someone else.
    #[error("signed by {got}, expected {expected}")]
    WrongSigner {
        /// Who should have signed.
        expected: Address,
        /// Who did.
        got: Address,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;
    use alloy_primitives::{address, b256, hex};

    fn word_u(v: u128) -> [u8; 32] {
        U256::from(v).to_be_bytes()
    }

    fn word_a(a: Address) -> [u8; 32] {
        let mut w = [0u8; 32];
        w[12..].copy_from_slice(a.as_slice());
        w
    }

    fn sample_offer() -> Offer {
        Offer {
            seller: address!("1111111111111111111111111111111111111111"),
            buyer: address!("2222222222222222222222222222222222222222"),
            service: 1,
            pricePerMiB: 1_000_000_000,
            pricePerSecond: 2_000,
            sellerBurn: 3,
            buyerBurn: 4,
            minDeposit: 5_000_000,
            paymentInterval: 15,
            nonce: 42,
            expiry: 1_700_000_000,
        }
    }

    const OFFER_TYPE: &str = "Offer(address seller,address buyer,uint8 service,uint128 pricePerMiB,uint128 pricePerSecond,uint128 sellerBurn,uint128 buyerBurn,uint128 minDeposit,uint32 paymentInterval,uint64 nonce,uint64 expiry)";
    const VOUCHER_TYPE: &str = "Voucher(bytes32 channelId,uint256 amount)";
    const CONSENT_TYPE: &str = "CloseConsent(bytes32 channelId,uint256 amount)";
    const DOMAIN_TYPE: &str =
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";

    fn manual_separator(chain_id: u64, market: Address) -> B256 {
        let mut buf = Vec::new();
        buf.extend_from_slice(keccak256(DOMAIN_TYPE).as_slice());
        buf.extend_from_slice(keccak256("Wayfare").as_slice());
        buf.extend_from_slice(keccak256("1").as_slice());
        buf.extend_from_slice(&word_u(u128::from(chain_id)));
        buf.extend_from_slice(&word_a(market));
        keccak256(buf)
    }

    fn manual_digest(sep: B256, struct_hash: B256) -> B256 {
        let mut buf = vec![0x19, 0x01];
        buf.extend_from_slice(sep.as_slice());
        buf.extend_from_slice(struct_hash.as_slice());
        keccak256(buf)
    }

    #[test]
    fn typehashes_are_keccak_of_the_contract_type_strings() {
        assert_eq!(Offer::eip712_encode_type(), OFFER_TYPE);
        assert_eq!(Voucher::eip712_encode_type(), VOUCHER_TYPE);
        assert_eq!(CloseConsent::eip712_encode_type(), CONSENT_TYPE);
        assert_eq!(sample_offer().eip712_type_hash(), keccak256(OFFER_TYPE));
        // Pinned values, so a change in any type string shows up as a diff here.
        assert_eq!(
            keccak256(VOUCHER_TYPE),
            keccak256(b"Voucher(bytes32 channelId,uint256 amount)")
        );
        assert_ne!(keccak256(VOUCHER_TYPE), keccak256(CONSENT_TYPE));
    }

    #[test]
    fn domain_separator_matches_a_hand_computation() {
        let market = address!("5FbDB2315678afecb367f032d93F642f64180aa3");
        assert_eq!(
            domain(31337, market).separator(),
            manual_separator(31337, market)
        );
    }

    #[test]
    fn offer_digest_matches_a_hand_computation() {
        let market = address!("5FbDB2315678afecb367f032d93F642f64180aa3");
        let o = sample_offer();
        let mut enc = Vec::new();
        enc.extend_from_slice(keccak256(OFFER_TYPE).as_slice());
        enc.extend_from_slice(&word_a(o.seller));
        enc.extend_from_slice(&word_a(o.buyer));
        enc.extend_from_slice(&word_u(u128::from(o.service)));
        enc.extend_from_slice(&word_u(o.pricePerMiB));
        enc.extend_from_slice(&word_u(o.pricePerSecond));
        enc.extend_from_slice(&word_u(o.sellerBurn));
        enc.extend_from_slice(&word_u(o.buyerBurn));
        enc.extend_from_slice(&word_u(o.minDeposit));
        enc.extend_from_slice(&word_u(u128::from(o.paymentInterval)));
        enc.extend_from_slice(&word_u(u128::from(o.nonce)));
        enc.extend_from_slice(&word_u(u128::from(o.expiry)));
        let expected = manual_digest(manual_separator(31337, market), keccak256(enc));
        assert_eq!(offer_digest(&o, &domain(31337, market)), expected);
    }

    #[test]
    fn voucher_and_consent_digests_match_a_hand_computation_and_differ() {
        let market = address!("5FbDB2315678afecb367f032d93F642f64180aa3");
        let d = domain(1, market);
        let id = B256::repeat_byte(0xab);
        let amount = U256::from(123_456_789u64);
        let manual = |ty: &str| {
            let mut enc = Vec::new();
            enc.extend_from_slice(keccak256(ty).as_slice());
            enc.extend_from_slice(id.as_slice());
            enc.extend_from_slice(&amount.to_be_bytes::<32>());
            manual_digest(manual_separator(1, market), keccak256(enc))
        };
        assert_eq!(voucher_digest(id, amount, &d), manual(VOUCHER_TYPE));
        assert_eq!(close_consent_digest(id, amount, &d), manual(CONSENT_TYPE));
        assert_ne!(
            voucher_digest(id, amount, &d),
            close_consent_digest(id, amount, &d)
        );
        // Another chain or deployment gives another digest (no replay).
        assert_ne!(
            voucher_digest(id, amount, &d),
            voucher_digest(id, amount, &domain(2, market))
        );
        assert_ne!(
            voucher_digest(id, amount, &d),
            voucher_digest(id, amount, &domain(1, Address::ZERO))
        );
    }

    #[test]
    fn resume_digest_matches_a_hand_computation() {
        const RESUME_TYPE: &str =
            "Resume(bytes32 channelId,uint32 run,bytes32 buyerKey,bytes32 wireguardKey)";
        assert_eq!(Resume::eip712_encode_type(), RESUME_TYPE);
        let market = address!("5FbDB2315678afecb367f032d93F642f64180aa3");
        let d = domain(31337, market);
        let id = B256::repeat_byte(0xab);
        let manual = |wg: [u8; 32]| {
            let mut enc = Vec::new();
            enc.extend_from_slice(keccak256(RESUME_TYPE).as_slice());
            enc.extend_from_slice(id.as_slice());
            enc.extend_from_slice(&word_u(3));
            enc.extend_from_slice(&[0x11; 32]);
            enc.extend_from_slice(&wg);
            manual_digest(manual_separator(31337, market), keccak256(enc))
        };
        assert_eq!(
            resume_digest(id, 3, [0x11; 32], Some([0x22; 32]), &d),
            manual([0x22; 32])
        );
        // No WireGuard key hashes as zero bytes32.
        assert_eq!(resume_digest(id, 3, [0x11; 32], None, &d), manual([0; 32]));
        // Each field, the chain and the market are bound.
        let base = resume_digest(id, 3, [0x11; 32], None, &d);
        assert_ne!(base, resume_digest(B256::ZERO, 3, [0x11; 32], None, &d));
        assert_ne!(base, resume_digest(id, 2, [0x11; 32], None, &d));
        assert_ne!(base, resume_digest(id, 3, [0x12; 32], None, &d));
        assert_ne!(
            base,
            resume_digest(id, 3, [0x11; 32], None, &domain(1, market))
        );
        assert_ne!(
            base,
            resume_digest(id, 3, [0x11; 32], None, &domain(31337, Address::ZERO))
        );
        // Not interchangeable with a voucher for the same channel.
        assert_ne!(base, voucher_digest(id, U256::ZERO, &d));
    }

    #[test]
    fn close_request_and_usage_digests_match_a_hand_computation() {
        const CLOSE_TYPE: &str = "CloseRequest(bytes32 channelId,uint32 run,uint8 reason)";
        const USAGE_TYPE: &str =
            "Usage(bytes32 channelId,uint32 run,uint64 bytes,uint64 seconds,uint256 paid)";
        assert_eq!(CloseRequest::eip712_encode_type(), CLOSE_TYPE);
        assert_eq!(Usage::eip712_encode_type(), USAGE_TYPE);
        let market = address!("5FbDB2315678afecb367f032d93F642f64180aa3");
        let d = domain(31337, market);
        let id = B256::repeat_byte(0xcd);
        let sep = manual_separator(31337, market);
        let mut enc = Vec::new();
        enc.extend_from_slice(keccak256(CLOSE_TYPE).as_slice());
        enc.extend_from_slice(id.as_slice());
        enc.extend_from_slice(&word_u(2));
        enc.extend_from_slice(&word_u(6));
        assert_eq!(
            close_request_digest(id, 2, 6, &d),
            manual_digest(sep, keccak256(&enc))
        );
        let base = close_request_digest(id, 2, 6, &d);
        assert_ne!(base, close_request_digest(id, 1, 6, &d));
        assert_ne!(base, close_request_digest(id, 2, 1, &d));
        assert_ne!(base, close_request_digest(B256::ZERO, 2, 6, &d));
        assert_ne!(base, close_request_digest(id, 2, 6, &domain(1, market)));

        let u = crate::messages::Usage {
            channel_id: id,
            run: 2,
            bytes: 1_000,
            seconds: 30,
            paid: U256::from(77u64),
            signature: [0; 65],
        };
        let mut enc = Vec::new();
        enc.extend_from_slice(keccak256(USAGE_TYPE).as_slice());
        enc.extend_from_slice(id.as_slice());
        enc.extend_from_slice(&word_u(2));
        enc.extend_from_slice(&word_u(1_000));
        enc.extend_from_slice(&word_u(30));
        enc.extend_from_slice(&word_u(77));
        assert_eq!(usage_digest(&u, &d), manual_digest(sep, keccak256(&enc)));
        // The signature field is not hashed; every other field is.
        let signed = crate::messages::Usage {
            signature: [9; 65],
            ..u
        };
        assert_eq!(usage_digest(&signed, &d), usage_digest(&u, &d));
        for other in [
            crate::messages::Usage { run: 3, ..u },
            crate::messages::Usage { bytes: 1_001, ..u },
            crate::messages::Usage { seconds: 31, ..u },
            crate::messages::Usage {
                paid: U256::from(78u64),
                ..u
            },
        ] {
            assert_ne!(usage_digest(&other, &d), usage_digest(&u, &d));
        }
        assert_ne!(usage_digest(&u, &domain(1, market)), usage_digest(&u, &d));
    }

    #[test]
    fn channel_id_is_keccak_of_abi_encode() {
        let market = address!("5FbDB2315678afecb367f032d93F642f64180aa3");
        let seller = address!("70997970C51812dc3A010C7d01b50e0d17dc79C8");
        let mut enc = Vec::new();
        enc.extend_from_slice(&word_u(31337));
        enc.extend_from_slice(&word_a(market));
        enc.extend_from_slice(&word_a(seller));
        enc.extend_from_slice(&word_u(7));
        assert_eq!(channel_id(31337, market, seller, 7), keccak256(enc));
        assert_ne!(
            channel_id(31337, market, seller, 7),
            channel_id(31337, market, seller, 8)
        );
    }

    #[test]
    fn known_key_has_known_address() {
        // Private key 1 is the well-known 0x7E5F…5Bdf.
        let mut one = [0u8; 32];
        one[31] = 1;
        let k = SecretKey::from_bytes(&one).unwrap();
        assert_eq!(
            k.address(),
            address!("7E5F4552091A69125d5DfCb7b8C2659029395Bdf")
        );
        // Anvil's first dev key.
        let anvil = b256!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
        let k = SecretKey::from_bytes(&anvil.0).unwrap();
        assert_eq!(
            k.address(),
            address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
        );
        assert_eq!(k.to_bytes(), anvil.0);
    }

    #[test]
    fn sign_then_recover_round_trips_with_low_s_and_v_27_or_28() {
        let k = SecretKey::from_bytes(&[0x42; 32]).unwrap();
        let n_half = U256::from_be_bytes(hex!(
            "7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0"
        ));
        for i in 0u64..64 {
            let digest = keccak256(i.to_be_bytes());
            let sig = k.sign_digest(digest);
            assert!(sig[64] == 27 || sig[64] == 28);
            let s = U256::from_be_slice(&sig[32..64]);
            assert!(s <= n_half, "high s produced");
            assert_eq!(recover_signer(digest, &sig).unwrap(), k.address());
        }
    }

    #[test]
    fn rejects_high_s_bad_v_bad_length_and_zero_scalars() {
        let k = SecretKey::from_bytes(&[0x42; 32]).unwrap();
        let digest = keccak256(b"voucher");
        let sig = k.sign_digest(digest);
        // Malleate: s' = n - s, flip v. Valid for ecrecover, rejected like OpenZeppelin does.
        let n = U256::from_be_bytes(hex!(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
        ));
        let s = U256::from_be_slice(&sig[32..64]);
        let mut high = sig;
        high[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
        high[64] = if sig[64] == 27 { 28 } else { 27 };
        assert_eq!(recover_signer(digest, &high), Err(SignatureError::HighS));

        let mut bad_v = sig;
        bad_v[64] = 0;
        assert_eq!(recover_signer(digest, &bad_v), Err(SignatureError::BadV(0)));
        bad_v[64] = 29;
        assert_eq!(
            recover_signer(digest, &bad_v),
            Err(SignatureError::BadV(29))
        );
        assert_eq!(
            recover_signer(digest, &sig[..64]),
            Err(SignatureError::BadLength(64))
        );
        assert_eq!(
            recover_signer(digest, &[]),
            Err(SignatureError::BadLength(0))
        );

        let mut zero = sig;
        zero[..32].fill(0);
        assert_eq!(
            recover_signer(digest, &zero),
            Err(SignatureError::BadScalar)
        );
        let mut zero_s = sig;
        zero_s[32..64].fill(0);
        assert_eq!(
            recover_signer(digest, &zero_s),
            Err(SignatureError::BadScalar)
        );

        // A different digest recovers someone else, which verify_signer refuses.
        let other = keccak256(b"other");
        assert!(matches!(
            verify_signer(other, &sig, k.address()),
            Err(VerifyError::WrongSigner { .. }) | Err(VerifyError::Signature(_))
        ));
        assert_eq!(verify_signer(digest, &sig, k.address()), Ok(()));
    }

    #[test]
    fn libsecp_recovery_agrees_with_k256() {
        use k256::ecdsa::{RecoveryId, Signature as KSig, VerifyingKey};
        for i in 1u8..=32 {
            let k = SecretKey::from_bytes(&[i; 32]).unwrap();
            let digest = keccak256([i, 0xee]);
            let sig = k.sign_digest(digest);
            let ks = KSig::from_slice(&sig[..64]).unwrap();
            let recid = RecoveryId::new(sig[64] == 28, false);
            let vk = VerifyingKey::recover_from_prehash(digest.as_slice(), &ks, recid).unwrap();
            assert_eq!(
                recover_signer(digest, &sig).unwrap(),
                Address::from_public_key(&vk)
            );
        }
    }

    #[test]
    fn secret_key_debug_hides_the_secret() {
        let k = SecretKey::from_bytes(&[0x42; 32]).unwrap();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains("4242"), "{dbg}");
        assert!(dbg.contains(&format!("{}", k.address())) || dbg.contains("address"));
        assert_eq!(
            SecretKey::from_bytes(&[0u8; 32]).unwrap_err(),
            crate::keys::KeyError::OutOfRange
        );
        assert_eq!(
            SecretKey::from_bytes(&[0xff; 32]).unwrap_err(),
            crate::keys::KeyError::OutOfRange
        );
    }
}
