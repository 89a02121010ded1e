//! Any bytes as a reveal payload or a stored snapshot: never panics, canonical when valid
//! (snapshots of an older version re-encode as the current one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wayfare_proto::codec::WireFormat;
use wayfare_proto::seal::RevealPayload;
use wayfare_proto::session::{BuyerSnapshot, SellerSnapshot};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RevealPayload::from_wire(data) {
        assert_eq!(p.to_wire(), data);
    }
    // Older snapshot versions decode and re-encode as the current one: the re-encoding must
    // decode to the same snapshot and be a fixed point (canonical).
    if let Ok(s) = SellerSnapshot::from_bytes(data) {
        let bytes = s.to_bytes();
        let again = SellerSnapshot::from_bytes(&bytes).expect("re-encoding decodes");
        assert_eq!(again, s);
        assert_eq!(again.to_bytes(), bytes);
    }
    if let Ok(s) = BuyerSnapshot::from_bytes(data) {
        let bytes = s.to_bytes();
        let again = BuyerSnapshot::from_bytes(&bytes).expect("re-encoding decodes");
        assert_eq!(again, s);
        assert_eq!(again.to_bytes(), bytes);
    }
});
