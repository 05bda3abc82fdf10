//! USD amounts as decimal strings ("12.50") ↔ integer nano-USD (1e-9 USD),
//! exactly: budgets and prices are money, and a float would round them.
//! Catalog prices (USD per million tokens), budgets and costs all use it.

/// The limiter's counters are exact up to 2^53 (its Lua numbers are
/// doubles): a larger budget would be enforced approximately.
pub const MAX_EXACT_NANO_USD: u64 = 1 << 53;

const NANO_PER_USD: u64 = 1_000_000_000;

/// Parses a USD amount like "12.50" into nano-USD: digits, optionally a point
/// and 1 to 9 decimals; no sign, exponent or spaces.
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
    let too_large = || format!("invalid amount {text:?}: too large");
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    // Right-pad to 9 digits: "5" → 500_000_000 nano-USD.
    let fraction: u64 = format!("{fraction:0<9}").parse().map_err(|_| invalid())?;
    whole
        .checked_mul(NANO_PER_USD)
        .and_then(|nano| nano.checked_add(fraction))
        .ok_or_else(too_large)
}

/// A spend budget: [`parse_usd`], at most [`MAX_EXACT_NANO_USD`].
pub fn parse_budget(text: &str) -> Result<u64, String> {
    let nano = parse_usd(text)?;
    if nano > MAX_EXACT_NANO_USD {
        return Err(format!(
            "invalid amount {text:?}: too large, at most {:?} USD (the largest amount the \
             quota counters hold exactly)",
            format_usd(MAX_EXACT_NANO_USD)
        ));
    }
    Ok(nano)
}

/// The shortest exact decimal: 12_500_000_000 → "12.5".
pub fn format_usd(nano: u64) -> String {
    let whole = nano / NANO_PER_USD;
    let fraction = nano % NANO_PER_USD;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// The cost of `tokens` at a price of `nano_usd_per_mtok` (a catalog price
/// parsed with [`parse_usd`]), rounded up to a whole nano-USD.
pub fn cost_nano_usd(tokens: u64, nano_usd_per_mtok: u64) -> u64 {
    let cost = (u128::from(tokens) * u128::from(nano_usd_per_mtok)).div_ceil(1_000_000);
    u64::try_from(cost).unwrap_or(u64::MAX)
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
        assert_eq!(parse_usd("18446744073.709551615"), Ok(u64::MAX));
        assert_eq!(parse_budget("9007199.254740992"), Ok(MAX_EXACT_NANO_USD));
        assert!(parse_budget("9007199.254740993").is_err());
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
            "18446744073.709551616",
            "99999999999999999999",
        ] {
            assert!(parse_usd(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn formats_the_shortest_exact_decimal() {
        assert_eq!(format_usd(12_500_000_000), "12.5");
        assert_eq!(format_usd(500_000_000_000), "500");
        assert_eq!(format_usd(1), "0.000000001");
        for text in ["0.15", "2.5", "9007199.254740992"] {
            assert_eq!(format_usd(parse_usd(text).unwrap_or_default()), text);
        }
    }

    #[test]
    fn costs_round_up_to_a_nano_usd() {
        let price = parse_usd("0.15").unwrap_or_default(); // per million tokens
        assert_eq!(cost_nano_usd(1_000, price), 150_000); // $0.00015
        assert_eq!(cost_nano_usd(1, price), 150);
        assert_eq!(cost_nano_usd(0, price), 0);
        assert_eq!(cost_nano_usd(1, 1), 1, "a fraction of a nano-USD rounds up");
    }
}
