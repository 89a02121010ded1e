//! Giving freed memory back to the system: after a burst (a quote flood, many sessions ending)
//! glibc keeps the freed pages in its arenas, so the daemon's resident size would stay at its
//! peak. Every [`TRIM_EVERY`] the daemon asks the allocator to return them (`malloc_trim`).

use std::time::Duration;

/// How often freed memory is returned.
pub const TRIM_EVERY: Duration = Duration::from_secs(20);

/// Returns freed heap pages to the system, where the allocator can (glibc on Linux).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free; it touches no live
    // allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims every [`TRIM_EVERY`], forever (spawn it).
pub async fn trim_periodically() {
    let mut every = tokio::time::interval(TRIM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}
