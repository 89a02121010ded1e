//! The WireGuard data plane forced onto the per-packet path (`WAYFARE_TUN_OFFLOAD=off` and
//! `WAYFARE_UDP_OFFLOAD=off`, what a kernel refusing the offloads gets): a large transfer both
//! ways, meters exact.

mod common;
mod wg_transfer;

#[test]
fn wg_fallback_path_large_transfer_meters_agree() {
    // SAFETY: the only test in this binary, set before any thread of ours reads the environment.
    unsafe {
        std::env::set_var("WAYFARE_TUN_OFFLOAD", "off");
        std::env::set_var("WAYFARE_UDP_OFFLOAD", "off");
    }
    wg_transfer::transfer_and_check_meters(
        "wg_fallback_path_large_transfer_meters_agree",
        200 * 1024 * 1024,
        50 * 1024 * 1024,
    );
}
