//! Billing math in exact integers.
//!
//! `owed(bytes, seconds, X, Y) = ceil(X * bytes / 2^20) + Y * seconds`, in wei. Bytes are the
//! tunnel's bytes in both directions as one side counted them; X is wei per MiB, Y wei per second.
//! With `u64` counters and `u128` prices every term fits in 193 bits, so a `U256` never overflows;
//! the arithmetic is still checked and reports [`BillingError::Overflow`] rather than wrapping.

use alloy_primitives::U256;
use thiserror::Error;

/// Bytes in a MiB.
pub const MIB: u64 = 1 << 20;

/// Basis points in 100 %.
pub const BPS: u32 = 10_000;

/// Arithmetic that didn't fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BillingError {
    /// A product or sum exceeded 2^256 - 1 (impossible with `u64`/`u128` inputs; kept so a future
    /// change of input types fails loudly).
    #[error("billing arithmetic overflowed 256 bits: check the prices and counters fed in")]
    Overflow,
}

/// What `bytes` and `seconds` cost at `price_per_mib` (X) and `price_per_second` (Y).
///
/// The byte part is rounded up, so any traffic at a non-zero X costs at least 1 wei.
///
/// ```
/// use alloy_primitives::U256;
/// use wayfare_proto::billing::owed;
///
/// // 1 MiB at 1000 wei/MiB, 10 s at 5 wei/s: 1000 + 50.
/// assert_eq!(owed(1 << 20, 10, 1000, 5).unwrap(), U256::from(1050u64));
/// // One byte at 1000 wei/MiB is 1000/1048576 wei, rounded up to 1.
/// assert_eq!(owed(1, 0, 1000, 0).unwrap(), U256::from(1u64));
/// // 1.5 MiB at 3 wei/MiB = 4.5, rounded up to 5.
/// assert_eq!(owed(3 << 19, 0, 3, 0).unwrap(), U256::from(5u64));
/// // Nothing used costs nothing.
/// assert_eq!(owed(0, 0, 1000, 5).unwrap(), U256::ZERO);
/// // The extremes still fit.
/// assert!(owed(u64::MAX, u64::MAX, u128::MAX, u128::MAX).is_ok());
/// ```
pub fn owed(
    bytes: u64,
    seconds: u64,
    price_per_mib: u128,
    price_per_second: u128,
) -> Result<U256, BillingError> {
    let byte_part = U256::from(price_per_mib)
        .checked_mul(U256::from(bytes))
        .ok_or(BillingError::Overflow)?;
    let byte_part = ceil_div(byte_part, U256::from(MIB));
    let time_part = U256::from(price_per_second)
        .checked_mul(U256::from(seconds))
        .ok_or(BillingError::Overflow)?;
    byte_part
        .checked_add(time_part)
        .ok_or(BillingError::Overflow)
}

fn ceil_div(n: U256, d: U256) -> U256 {
    let q = n / d;
    if n % d == U256::ZERO {
        q
    } else {
        q + U256::from(1u8)
    }
}

/// `amount * bps / 10_000`, rounded down.
///
/// ```
/// use alloy_primitives::U256;
/// use wayfare_proto::billing::scale_bps;
/// assert_eq!(scale_bps(U256::from(1000u64), 9_800), U256::from(980u64));
/// assert_eq!(scale_bps(U256::from(999u64), 10_200), U256::from(1018u64));
/// ```
pub fn scale_bps(amount: U256, bps: u32) -> U256 {
    // amount * bps can only overflow for amounts near 2^242; saturate rather than wrap.
    amount.saturating_mul(U256::from(bps)) / U256::from(BPS)
}

/// The least voucher a seller accepts when its own meter says `own_owed`:
/// `own_owed * (1 - tolerance) - slack`, floored at zero.
///
/// ```
/// use alloy_primitives::U256;
/// use wayfare_proto::billing::min_acceptable;
/// // 2 % tolerance, 100 wei slack: 10_000 * 0.98 - 100.
/// assert_eq!(min_acceptable(U256::from(10_000u64), 200, U256::from(100u64)), U256::from(9_700u64));
/// assert_eq!(min_acceptable(U256::from(50u64), 200, U256::from(100u64)), U256::ZERO);
/// ```
pub fn min_acceptable(own_owed: U256, tolerance_bps: u32, slack: U256) -> U256 {
    scale_bps(own_owed, BPS.saturating_sub(tolerance_bps)).saturating_sub(slack)
}

/// The slack the protocol allows: one `interval_secs` interval at the agreed price for a
/// 1 MiB/s flow, i.e. `owed(interval * 1 MiB, interval, X, Y)`.
///
/// ```
/// use alloy_primitives::U256;
/// use wayfare_proto::billing::slack;
/// // 15 s at 1 MiB/s and 1000 wei/MiB, plus 15 s at 2 wei/s.
/// assert_eq!(slack(15, 1000, 2).unwrap(), U256::from(15_030u64));
/// ```
pub fn slack(
    interval_secs: u64,
    price_per_mib: u128,
    price_per_second: u128,
) -> Result<U256, BillingError> {
    owed(
        interval_secs.saturating_mul(MIB),
        interval_secs,
        price_per_mib,
        price_per_second,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn owed_is_the_exact_ceiling(bytes in any::<u64>(), secs in any::<u64>(), x in any::<u128>(), y in any::<u128>()) {
            let got = owed(bytes, secs, x, y).unwrap();
            // Independent form: (X*bytes + 2^20 - 1) >> 20, plus Y*secs.
            let n = U256::from(x) * U256::from(bytes);
            let expected = ((n + U256::from(MIB - 1)) >> 20) + U256::from(y) * U256::from(secs);
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn owed_never_decreases_as_usage_grows(b in 0u64..1 << 50, db in 0u64..1 << 30, s in 0u64..1 << 30, ds in 0u64..1000, x in any::<u64>(), y in any::<u64>()) {
            let (x, y) = (u128::from(x), u128::from(y));
            prop_assert!(owed(b + db, s + ds, x, y).unwrap() >= owed(b, s, x, y).unwrap());
        }

        #[test]
        fn min_acceptable_is_at_most_owed(o in any::<u128>(), tol in 0u32..=10_000, slack in any::<u64>()) {
            let o = U256::from(o);
            prop_assert!(min_acceptable(o, tol, U256::from(slack)) <= o);
        }
    }
}
