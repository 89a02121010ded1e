//! Announcement checks: size, shape, freshness, origin, and the signature against the signer the
//! registry holds for the seller. Pure: the node supplies the clock and the registry answer.

use alloy_primitives::Address;
use thiserror::Error;
use wayfare_proto::eip712::{Eip712Domain, announcement_digest, recover_signer};
use wayfare_proto::keys::SecretKey;
use wayfare_proto::messages::{Announcement, Message};

/// Largest announcement accepted on the topic (an honest one is well under 1 KiB).
pub const MAX_ANNOUNCEMENT_BYTES: usize = 2048;

/// Why an announcement was dropped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnnouncementError {
    /// Over [`MAX_ANNOUNCEMENT_BYTES`].
    #[error("announcement is {0} bytes, over the cap")]
    TooLarge(usize),
    /// Not a strictly decodable Wayfare message.
    #[error("undecodable: {0}")]
    Malformed(String),
    /// A valid message, but not an announcement.
    #[error("a {0} message on the announcement topic")]
    NotAnAnnouncement(&'static str),
    /// `valid_until` has passed.
    #[error("expired at {valid_until} (now {now})")]
    Expired {
        /// The announcement's expiry.
        valid_until: u64,
        /// The time of the check.
        now: u64,
    },
    /// `valid_until` is further ahead than allowed.
    #[error("valid until {valid_until}, more than {max_ttl}s ahead of {now}")]
    TooLongLived {
        /// The announcement's expiry.
        valid_until: u64,
        /// The time of the check.
        now: u64,
        /// The longest lifetime accepted.
        max_ttl: u64,
    },
    /// Published by a node other than the one the announcement names.
    #[error("published by a peer other than the one it names")]
    WrongOrigin,
    /// The seller is not a registered, active seller.
    #[error("seller {0} is not registered")]
    Unregistered(Address),
    /// The signature is not by the seller's registered signer.
    #[error("not signed by the registered signer of {0}")]
    BadSignature(Address),
}

/// The shape checks that need no registry: size, decoding, freshness and origin.
///
/// `origin` is the peer id bytes of the gossip message's signed author.
pub fn precheck(
    bytes: &[u8],
    origin: Option<&[u8]>,
    now: u64,
    max_ttl: u64,
) -> Result<Announcement, AnnouncementError> {
    if bytes.len() > MAX_ANNOUNCEMENT_BYTES {
        return Err(AnnouncementError::TooLarge(bytes.len()));
    }
    let a = match Message::decode(bytes) {
        Ok(Message::Announcement(a)) => a,
        Ok(other) => return Err(AnnouncementError::NotAnAnnouncement(other.name())),
        Err(e) => return Err(AnnouncementError::Malformed(e.to_string())),
    };
    if a.valid_until <= now {
        return Err(AnnouncementError::Expired {
            valid_until: a.valid_until,
            now,
        });
    }
    if a.valid_until > now.saturating_add(max_ttl) {
        return Err(AnnouncementError::TooLongLived {
            valid_until: a.valid_until,
            now,
            max_ttl,
        });
    }
    if origin != Some(a.peer_id.as_slice()) {
        return Err(AnnouncementError::WrongOrigin);
    }
    Ok(a)
}

/// Checks the signature against `registered`, the registry's signer for `a.seller`.
pub fn check_signature(
    a: &Announcement,
    registered: Option<Address>,
    domain: &Eip712Domain,
) -> Result<(), AnnouncementError> {
    let signer = registered.ok_or(AnnouncementError::Unregistered(a.seller))?;
    match recover_signer(announcement_digest(a, domain), &a.signature) {
        Ok(s) if s == signer => Ok(()),
        _ => Err(AnnouncementError::BadSignature(a.seller)),
    }
}

/// Signs `a` in place with the seller's signer.
pub fn sign_announcement(a: &mut Announcement, signer: &SecretKey, domain: &Eip712Domain) {
    a.signature = signer.sign_digest(announcement_digest(a, domain));
}

#[cfg(test)]
mod tests {
    use super::*;
    use wayfare_proto::{Service, ServiceSet, Terms};

    fn key(b: u8) -> SecretKey {
        SecretKey::from_bytes(&[b; 32]).unwrap()
    }

    fn ann(peer: &[u8], valid_until: u64) -> Announcement {
        Announcement {
            seller: Address::repeat_byte(0xaa),
            peer_id: peer.to_vec(),
            services: ServiceSet::new(&[Service::WireGuard]),
            terms: Terms {
                price_per_mib: 1,
                price_per_second: 1,
                seller_burn: 0,
                buyer_burn: 0,
                min_deposit: 10,
                payment_interval: 30,
            },
            region: "eu-west".into(),
            capacity_bps: 1_000_000,
            exit_allow: Vec::new(),
            valid_until,
            signature: [0; 65],
        }
    }

    #[test]
    fn checks_shape_freshness_origin_and_signer() {
        let domain = wayfare_proto::eip712::domain(31337, Address::repeat_byte(9));
        let signer = key(7);
        let mut a = ann(b"peer", 1_100);
        sign_announcement(&mut a, &signer, &domain);
        let bytes = Message::Announcement(a.clone()).encode();

        let ok = precheck(&bytes, Some(b"peer"), 1_000, 3_600).unwrap();
        assert_eq!(
            check_signature(&ok, Some(signer.address()), &domain),
            Ok(())
        );
        assert_eq!(
            check_signature(&ok, Some(key(8).address()), &domain),
            Err(AnnouncementError::BadSignature(a.seller))
        );
        assert_eq!(
            check_signature(&ok, None, &domain),
            Err(AnnouncementError::Unregistered(a.seller))
        );
        assert!(matches!(
            precheck(&bytes, Some(b"peer"), 1_100, 3_600),
            Err(AnnouncementError::Expired { .. })
        ));
        assert!(matches!(
            precheck(&bytes, Some(b"peer"), 1_000, 50),
            Err(AnnouncementError::TooLongLived { .. })
        ));
        assert_eq!(
            precheck(&bytes, Some(b"other"), 1_000, 3_600),
            Err(AnnouncementError::WrongOrigin)
        );
        assert!(matches!(
            precheck(&[1, 2, 3], Some(b"peer"), 1_000, 3_600),
            Err(AnnouncementError::Malformed(_))
        ));
        assert!(matches!(
            precheck(&vec![0; MAX_ANNOUNCEMENT_BYTES + 1], None, 0, 1),
            Err(AnnouncementError::TooLarge(_))
        ));
        // A tampered field breaks the signature.
        let mut t = ok.clone();
        t.region = "us-east".into();
        assert!(check_signature(&t, Some(signer.address()), &domain).is_err());
    }
}
