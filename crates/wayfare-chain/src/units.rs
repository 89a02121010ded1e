//! Amounts for people: parse `0.01eth`, `5 gwei`, `1000` (wei); print `0.01 ETH`.

use alloy::primitives::{
    U256,
    utils::{ParseUnits, Unit},
};

/// A bad amount on the command line or in a config file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{input}` is not an amount: {why}. Write wei as a whole number (`1000`) or a decimal with a unit (`0.01eth`, `5gwei`)"
)]
pub struct AmountError {
    /// What was given.
    pub input: String,
    /// What was wrong with it.
    pub why: String,
}

/// Parses an amount: a bare integer is wei; `eth`/`ether`, `gwei` and `wei` suffixes are
/// accepted with or without a space, in any case.
pub fn parse_amount(input: &str) -> Result<U256, AmountError> {
    let err = |why: &str| AmountError {
        input: input.to_string(),
        why: why.to_string(),
    };
    let s = input.trim().to_ascii_lowercase();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = (s[..split].trim(), s[split..].trim());
    if number.is_empty() {
        return Err(err("there is no number"));
    }
    if number.starts_with('-') {
        return Err(err("amounts can't be negative"));
    }
    let unit = match unit {
        "" | "wei" => Unit::WEI,
        "gwei" => Unit::GWEI,
        "eth" | "ether" => Unit::ETHER,
        other => {
            return Err(err(&format!(
                "unknown unit `{other}` (use wei, gwei or eth)"
            )));
        }
    };
    if unit == Unit::WEI && number.contains('.') {
        return Err(err("wei has no fractions"));
    }
    match ParseUnits::parse_units(number, unit) {
        Ok(ParseUnits::U256(v)) => Ok(v),
        Ok(ParseUnits::I256(_)) => Err(err("amounts can't be negative")),
        Err(e) => Err(err(&e.to_string())),
    }
}

/// Formats wei as ETH with no trailing zeros: `10000000000000000` -> `0.01 ETH`.
pub fn format_eth(wei: U256) -> String {
    let unit = U256::from(10u64).pow(U256::from(18u64));
    let whole = wei / unit;
    let frac = wei % unit;
    if frac.is_zero() {
        return format!("{whole} ETH");
    }
    let frac = format!("{:0>18}", frac.to_string());
    format!("{whole}.{} ETH", frac.trim_end_matches('0'))
}

/// Formats a unix time as `2026-11-25 12:01:07 UTC`.
pub fn format_utc(unix_seconds: u64) -> String {
    // Days since 1970-01-01 to a civil date (proleptic Gregorian), per H. Hinnant's algorithm.
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_bare_wei() {
        assert_eq!(parse_amount("1000").unwrap(), U256::from(1000u64));
        assert_eq!(
            parse_amount("0.01eth").unwrap(),
            U256::from(10_000_000_000_000_000u64)
        );
        assert_eq!(
            parse_amount("0.01 ETH").unwrap(),
            U256::from(10_000_000_000_000_000u64)
        );
        assert_eq!(parse_amount("5gwei").unwrap(), U256::from(5_000_000_000u64));
        assert_eq!(
            parse_amount("2 ether").unwrap(),
            U256::from(2_000_000_000_000_000_000u64)
        );
    }

    #[test]
    fn rejects_bad_amounts_with_a_reason() {
        for bad in ["", "eth", "-1", "1.5", "1 btc", "1.2.3eth", "abc"] {
            let e = parse_amount(bad).unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().contains("is not an amount"), "{e}");
        }
    }

    #[test]
    fn formats_eth_without_trailing_zeros() {
        assert_eq!(
            format_eth(U256::from(10_000_000_000_000_000u64)),
            "0.01 ETH"
        );
        assert_eq!(
            format_eth(U256::from(2_000_000_000_000_000_000u64)),
            "2 ETH"
        );
        assert_eq!(format_eth(U256::from(1u64)), "0.000000000000000001 ETH");
        assert_eq!(format_eth(U256::ZERO), "0 ETH");
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_795_609_267), "2026-11-25 12:21:07 UTC");
    }
}
