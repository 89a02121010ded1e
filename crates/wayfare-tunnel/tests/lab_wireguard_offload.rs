//! The WireGuard data plane with TUN offload and UDP GSO/GRO (the default): a large transfer
//! both ways, meters exact.

mod common;
mod wg_transfer;

#[test]
fn wg_offload_path_500mib_meters_agree() {
    // The offload path is the default; make sure nothing in the environment turns it off.
    for knob in ["WAYFARE_TUN_OFFLOAD", "WAYFARE_UDP_OFFLOAD"] {
        assert!(
            std::env::var(knob).is_err(),
            "{knob} is set; this test runs the offload path"
        );
    }
    wg_transfer::transfer_and_check_meters(
        "wg_offload_path_500mib_meters_agree",
        400 * 1024 * 1024,
        100 * 1024 * 1024,
    );
}
