//! Any bytes as a reveal payload or a stored snapshot: never panics, canonical when valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wayfare_proto::codec::WireFormat;
use wayfare_proto::seal::RevealPayload;
use wayfare_proto::session::{BuyerSnapshot, SellerSnapshot};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RevealPayload::from_wire(data) {
        assert_eq!(p.to_wire(), data);
    }
    if let Ok(s) = SellerSnapshot::from_bytes(data) {
        assert_eq!(s.to_bytes(), data);
    }
    if let Ok(s) = BuyerSnapshot::from_bytes(data) {
        assert_eq!(s.to_bytes(), data);
    }
});
