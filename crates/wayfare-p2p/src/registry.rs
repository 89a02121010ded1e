//! Who may sign a seller's announcements: the on-chain registry, behind a small trait, and a
//! cache with an expiry in front of it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy_primitives::Address;
use thiserror::Error;

/// A failed registry lookup (RPC down, timeout…). Announcements checked against a failing
/// registry are ignored, not held against their sender.
#[derive(Debug, Clone, Error)]
#[error("registry lookup failed: {0}")]
pub struct RegistryError(pub String);

/// The seller registry, as far as announcements need it.
///
/// The node implements it with `wayfare_chain::MarketClient::seller(account)`: `Some(signer)`
/// when the seller is registered and active, `None` otherwise.
pub trait Registry: Send + Sync + 'static {
    /// The signer registered for `seller`, or `None` if `seller` is not a registered, active
    /// seller.
    fn signer_of(
        &self,
        seller: Address,
    ) -> impl Future<Output = Result<Option<Address>, RegistryError>> + Send;
}

/// An in-memory registry, for tests and devnets.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    signers: Mutex<HashMap<Address, Address>>,
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or re-keys) `seller` with `signer`.
    pub fn register(&self, seller: Address, signer: Address) {
        if let Ok(mut m) = self.signers.lock() {
            m.insert(seller, signer);
        }
    }

    /// Removes `seller`.
    pub fn deregister(&self, seller: Address) {
        if let Ok(mut m) = self.signers.lock() {
            m.remove(&seller);
        }
    }
}

impl Registry for MemoryRegistry {
    async fn signer_of(&self, seller: Address) -> Result<Option<Address>, RegistryError> {
        self.signers
            .lock()
            .map(|m| m.get(&seller).copied())
            .map_err(|_| RegistryError("registry lock poisoned".into()))
    }
}

impl<R: Registry> Registry for std::sync::Arc<R> {
    fn signer_of(
        &self,
        seller: Address,
    ) -> impl Future<Output = Result<Option<Address>, RegistryError>> + Send {
        (**self).signer_of(seller)
    }
}

/// Longest a "not registered" answer is cached.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(30);

/// Registry answers kept for `ttl` (negative answers for at most [`NEGATIVE_TTL`], so a seller
/// that just registered is not shut out for long), so a burst of announcements costs one lookup
/// per seller. Time is a parameter.
#[derive(Debug)]
pub struct SignerCache {
    ttl: Duration,
    max_entries: usize,
    entries: HashMap<Address, (Option<Address>, Instant)>,
}

impl SignerCache {
    /// A cache keeping answers for `ttl`, holding at most `max_entries` sellers.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            entries: HashMap::new(),
        }
    }

    /// The cached answer for `seller`, if still fresh at `now`.
    pub fn get(&self, seller: &Address, now: Instant) -> Option<Option<Address>> {
        self.entries
            .get(seller)
            .filter(|(s, at)| {
                let ttl = if s.is_some() {
                    self.ttl
                } else {
                    self.ttl.min(NEGATIVE_TTL)
                };
                now.saturating_duration_since(*at) < ttl
            })
            .map(|(s, _)| *s)
    }

    /// Records the answer for `seller` obtained at `now`.
    pub fn insert(&mut self, seller: Address, signer: Option<Address>, now: Instant) {
        if self.entries.len() >= self.max_entries && !self.entries.contains_key(&seller) {
            let ttl = self.ttl;
            self.entries
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
            if self.entries.len() >= self.max_entries {
                // Still full of fresh entries: drop the oldest one.
                if let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| *k)
                {
                    self.entries.remove(&oldest);
                }
            }
        }
        self.entries.insert(seller, (signer, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_expires_and_stays_bounded() {
        let t0 = Instant::now();
        let mut c = SignerCache::new(Duration::from_secs(10), 2);
        let (a, b, d) = (
            Address::repeat_byte(1),
            Address::repeat_byte(2),
            Address::repeat_byte(3),
        );
        c.insert(a, Some(b), t0);
        assert_eq!(c.get(&a, t0 + Duration::from_secs(9)), Some(Some(b)));
        assert_eq!(c.get(&a, t0 + Duration::from_secs(10)), None);
        c.insert(b, None, t0 + Duration::from_secs(1));
        assert_eq!(c.get(&b, t0 + Duration::from_secs(2)), Some(None));
        let mut long = SignerCache::new(Duration::from_secs(300), 2);
        long.insert(a, None, t0);
        long.insert(b, Some(a), t0);
        assert_eq!(
            long.get(&a, t0 + NEGATIVE_TTL),
            None,
            "negative answers expire sooner"
        );
        assert_eq!(long.get(&b, t0 + NEGATIVE_TTL), Some(Some(a)));
        c.insert(d, None, t0 + Duration::from_secs(2));
        assert!(c.entries.len() <= 2);
        assert_eq!(
            c.get(&a, t0 + Duration::from_secs(2)),
            None,
            "oldest evicted"
        );
    }
}
