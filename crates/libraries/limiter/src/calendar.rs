//! UTC calendar windows (days and months) from unix time, on
//! `llmgw-calendar`'s civil-date arithmetic (Howard Hinnant's
//! `civil_from_days` / `days_from_civil`). `common.lua` repeats that
//! arithmetic for the Redis scripts; `lua_tests` checks the two agree.

pub(crate) const DAY_SECS: u64 = 86_400;
const MICROS: u64 = 1_000_000;

/// The window a calendar counter is in: its id and when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CalWindow {
    /// Day number since 1970-01-01, or `year * 12 + month - 1`.
    pub id: u64,
    /// Unix microseconds of the first instant after the window.
    pub end_us: u64,
}

/// The UTC day containing `now_us`.
pub(crate) fn day(now_us: u64) -> CalWindow {
    let day = now_us / MICROS / DAY_SECS;
    CalWindow {
        id: day,
        end_us: (day + 1) * DAY_SECS * MICROS,
    }
}

/// The UTC calendar month containing `now_us`.
pub(crate) fn month(now_us: u64) -> CalWindow {
    let day = now_us / MICROS / DAY_SECS;
    let (y, m, _) = civil_from_days(day as i64);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let end_day = days_from_civil(ny, nm, 1);
    CalWindow {
        // Unix time starts in 1970, so the year and the day are positive.
        id: (y * 12 + m - 1).unsigned_abs(),
        end_us: end_day.unsigned_abs() * DAY_SECS * MICROS,
    }
}

pub(crate) use llmgw_calendar::{civil_from_days, days_from_civil};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        // 2000-02-29 (leap year divisible by 400), 2024-02-29, 2100-03-01.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(19_783), (2024, 3, 1));
        assert_eq!(
            civil_from_days(days_from_civil(2100, 2, 28) + 1),
            (2100, 3, 1)
        );
        assert_eq!(
            civil_from_days(days_from_civil(2025, 12, 31) + 1),
            (2026, 1, 1)
        );
    }

    #[test]
    fn round_trip_every_day_for_centuries() {
        for day in 0..(400 * 366) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn month_windows() {
        let us = |days: i64| days.unsigned_abs() * DAY_SECS * MICROS;
        // Feb 2024 ends on Mar 1.
        let w = month(us(days_from_civil(2024, 2, 29)) + 5);
        assert_eq!(w.id, 2024 * 12 + 1);
        assert_eq!(w.end_us, us(days_from_civil(2024, 3, 1)));
        // December ends on Jan 1 of the next year.
        let w = month(us(days_from_civil(2025, 12, 31)));
        assert_eq!(w.id, 2025 * 12 + 11);
        assert_eq!(w.end_us, us(days_from_civil(2026, 1, 1)));
        assert_eq!(month(w.end_us).id, 2026 * 12);
        assert_eq!(month(w.end_us - 1).id, 2025 * 12 + 11);
    }
}
