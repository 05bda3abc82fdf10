//! USD amounts as decimal strings ("12.50") ↔ integer nano-USD, exactly: a
//! budget is money, and a float would round it. The same format as
//! `quota.limits.*.monthly_budget_usd` (services share no code, so this is
//! a copy of the quota service's parser, with the same ceiling).

/// The limiter's counters are exact up to 2^53 (Lua numbers are doubles): a
/// larger budget would be enforced approximately, so it is refused.
pub const MAX_NANO_USD: u64 = 1 << 53;

const NANO_PER_USD: u64 = 1_000_000_000;

/// Parses a USD amount like "12.50" into nano-USD.
pub fn parse_usd(text: &str) -> Result<u64, String> {
    let expected =
        "expected a non-negative decimal number of USD with at most 9 decimals, like \"12.50\"";
    let invalid = || format!("invalid amount {text:?}: {expected}");
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
        Some(_) => return Err(invalid()),
        None => (text, ""),
    };
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(invalid());
    }
    if fraction.len() > 9 {
        return Err(format!(
            "invalid amount {text:?}: more than 9 decimals (the unit is 1e-9 USD)"
        ));
    }
    let too_large = || {
        format!(
            "invalid amount {text:?}: too large, at most {:?} USD (the largest amount the \
             quota counters hold exactly)",
            format_usd(MAX_NANO_USD)
        )
    };
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    // Right-pad to 9 digits: "5" → 500_000_000 nano-USD.
    let fraction: u64 = format!("{fraction:0<9}").parse().map_err(|_| invalid())?;
    whole
        .checked_mul(NANO_PER_USD)
        .and_then(|nano| nano.checked_add(fraction))
        .filter(|nano| *nano <= MAX_NANO_USD)
        .ok_or_else(too_large)
}

/// Renders nano-USD as the shortest exact decimal: 12_500_000_000 → "12.5",
/// 3_000_000_000 → "3".
pub fn format_usd(nano: u64) -> String {
    let whole = nano / NANO_PER_USD;
    let fraction = nano % NANO_PER_USD;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_usd_exactly() {
        assert_eq!(parse_usd("500"), Ok(500_000_000_000));
        assert_eq!(parse_usd("12.50"), Ok(12_500_000_000));
        assert_eq!(parse_usd("0.000000001"), Ok(1));
        assert_eq!(parse_usd("0"), Ok(0));
        assert_eq!(parse_usd("007.1"), Ok(7_100_000_000));
        assert_eq!(parse_usd("9007199.254740992"), Ok(MAX_NANO_USD));
    }

    #[test]
    fn rejects_bad_amounts() {
        for bad in [
            "",
            "-1",
            "+1",
            "1.",
            ".5",
            "1.2.3",
            "1e3",
            "12,50",
            " 1",
            "1 ",
            "$5",
            "NaN",
            "0.0000000001",
            "9007199.254740993",
            "18446744073.709551616",
            "99999999999999999999",
        ] {
            assert!(parse_usd(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn formats_the_shortest_exact_decimal() {
        assert_eq!(format_usd(12_500_000_000), "12.5");
        assert_eq!(format_usd(3_000_000_000), "3");
        assert_eq!(format_usd(0), "0");
        assert_eq!(format_usd(1), "0.000000001");
        assert_eq!(format_usd(1_010_000_000), "1.01");
        for text in ["12.5", "0.3", "9007199.254740992", "42"] {
            assert_eq!(format_usd(parse_usd(text).unwrap_or_default()), text);
        }
    }
}
