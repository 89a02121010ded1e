//! Small shared types: services, terms, time.

use core::time::Duration;

/// The kind of tunnel a seller provides (`Offer.service` on chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Service {
    /// Layer-3 WireGuard tunnel (full-device VPN).
    WireGuard = 1,
    /// Shadowsocks 2022 proxy.
    Shadowsocks = 2,
}

impl Service {
    /// The on-chain code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Parses the on-chain code; `None` for anything but 1 or 2.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::WireGuard),
            2 => Some(Self::Shadowsocks),
            _ => None,
        }
    }
}

/// The set of services an announcement lists (a bit per [`Service`] code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceSet(u8);

impl ServiceSet {
    const ALL_BITS: u8 = 0b11;

    /// A set holding `services`.
    pub fn new(services: &[Service]) -> Self {
        Self(services.iter().fold(0, |acc, s| acc | Self::bit(*s)))
    }

    const fn bit(s: Service) -> u8 {
        1 << (s.code() - 1)
    }

    /// Whether `s` is in the set.
    pub const fn contains(self, s: Service) -> bool {
        self.0 & Self::bit(s) != 0
    }

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Parses raw bits: non-empty, no unknown bit.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        if bits == 0 || bits & !Self::ALL_BITS != 0 {
            None
        } else {
            Some(Self(bits))
        }
    }
}

/// The negotiable part of an offer: the rate 4-tuple (X, Y, Z, W), the minimum deposit and the
/// payment interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Terms {
    /// X: wei per MiB (2^20 bytes) carried, both directions.
    pub price_per_mib: u128,
    /// Y: wei per second of session.
    pub price_per_second: u128,
    /// Z: the seller's burn at open.
    pub seller_burn: u128,
    /// W: the buyer's burn at open.
    pub buyer_burn: u128,
    /// Least deposit the channel must hold at open.
    pub min_deposit: u128,
    /// Seconds between vouchers; never 0.
    pub payment_interval: u32,
}

impl Terms {
    /// The payment interval as a [`Duration`].
    pub fn interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.payment_interval))
    }
}

/// A point in time: milliseconds since the Unix epoch, supplied by the shell (the core never
/// reads a clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// From Unix seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// From Unix milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// Unix milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole Unix seconds (rounded down), the unit of on-chain times.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(ms))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}
