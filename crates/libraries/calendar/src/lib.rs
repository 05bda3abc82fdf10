//! UTC calendar days and months: the units of the usage ledger's rollups,
//! reports and partitions, of the quota service's day and month windows, and
//! of dates in the CLI. Small on purpose: all of them need only "which UTC
//! day / month is this instant in" and the text forms `YYYY-MM-DD` /
//! `YYYY-MM`, so no date crate is pulled in for it.

use std::fmt;

const MS_PER_DAY: i64 = 86_400_000;

/// Years 1970 to 9999: four-digit years keep the text forms fixed-width, so
/// comparing `YYYY-MM-DD` strings compares dates (the rollup's `day` column
/// relies on it), and nothing the ledger records predates the epoch.
const MIN_YEAR: i64 = 1970;
const MAX_YEAR: i64 = 9999;

/// A UTC calendar day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day {
    /// Days since 1970-01-01.
    days: i64,
}

/// A UTC calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i64,
    /// 1 to 12.
    month: i64,
}

impl Day {
    /// The day of a unix-milliseconds instant; `None` outside 1970..=9999.
    pub fn of_ms(ms: i64) -> Option<Day> {
        let day = Day {
            days: ms.div_euclid(MS_PER_DAY),
        };
        (MIN_YEAR..=MAX_YEAR).contains(&day.ymd().0).then_some(day)
    }

    /// Today, UTC.
    pub fn today() -> Day {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |now| now.as_millis() as i64);
        Day {
            days: now_ms.div_euclid(MS_PER_DAY),
        }
    }

    /// Parses `YYYY-MM-DD`, refusing impossible dates (2026-02-30).
    pub fn parse(text: &str) -> Result<Day, String> {
        let bad = || format!("{text:?} is not a date: expected YYYY-MM-DD (UTC)");
        let fields = digit_fields(text, &[4, 2, 2]).ok_or_else(bad)?;
        let (year, month, day) = (fields[0], fields[1], fields[2]);
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
            return Err(format!(
                "{text:?}: the year must be {MIN_YEAR} to {MAX_YEAR}"
            ));
        }
        let days = days_from_civil(year, month, day);
        // Converting back catches month 13 or February 30.
        if civil_from_days(days) != (year, month, day) {
            return Err(format!("{text:?} is not a calendar date"));
        }
        Ok(Day { days })
    }

    /// Days since 1970-01-01.
    pub fn days_since_epoch(self) -> i64 {
        self.days
    }

    /// Midnight UTC starting this day, in unix milliseconds.
    pub fn start_ms(self) -> i64 {
        self.days * MS_PER_DAY
    }

    pub fn month(self) -> Month {
        let (year, month, _) = self.ymd();
        Month { year, month }
    }

    /// The next day.
    pub fn succ(self) -> Day {
        Day {
            days: self.days + 1,
        }
    }

    fn ymd(self) -> (i64, i64, i64) {
        civil_from_days(self.days)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = self.ymd();
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

impl Month {
    /// The month of a unix-milliseconds instant; `None` outside 1970..=9999.
    pub fn of_ms(ms: i64) -> Option<Month> {
        Day::of_ms(ms).map(Day::month)
    }

    /// The current month, UTC.
    pub fn current() -> Month {
        Day::today().month()
    }

    /// Parses `YYYY-MM`.
    pub fn parse(text: &str) -> Result<Month, String> {
        let bad = || format!("{text:?} is not a month: expected YYYY-MM (UTC)");
        let fields = digit_fields(text, &[4, 2]).ok_or_else(bad)?;
        let (year, month) = (fields[0], fields[1]);
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }

    /// The first day of the month.
    pub fn first_day(self) -> Day {
        Day {
            days: days_from_civil(self.year, self.month, 1),
        }
    }

    /// The following month (December 9999 is followed by January 10000,
    /// which exists only as the end of ranges).
    pub fn succ(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// `[start, end)` of the month in unix milliseconds.
    pub fn range_ms(self) -> (i64, i64) {
        (
            self.first_day().start_ms(),
            self.succ().first_day().start_ms(),
        )
    }

    /// `YYYYMM`, for partition names.
    pub fn compact(self) -> String {
        format!("{:04}{:02}", self.year, self.month)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Splits `text` on '-' into fields of exactly the given widths, all ASCII
/// digits.
fn digit_fields(text: &str, widths: &[usize]) -> Option<Vec<i64>> {
    let parts: Vec<&str> = text.split('-').collect();
    let shaped = parts.len() == widths.len()
        && parts
            .iter()
            .zip(widths)
            .all(|(part, width)| part.len() == *width && part.bytes().all(|b| b.is_ascii_digit()));
    // At most 4 digits each: parsing cannot fail or overflow.
    shaped.then(|| parts.iter().filter_map(|part| part.parse().ok()).collect())
}

// Howard Hinnant's civil-date algorithms (proleptic Gregorian):
// https://howardhinnant.github.io/date_algorithms.html
/// Days since 1970-01-01 of a (year, month 1..=12, day 1..=31) date.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// (year, month 1..=12, day 1..=31) of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = shifted_month + if shifted_month < 10 { 3 } else { -9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use super::*;

    /// 2026-11-01T00:00:00Z.
    const NOV_1_2026: i64 = 1_793_491_200_000;

    #[test]
    fn days_of_instants_are_utc() {
        assert_eq!(Day::of_ms(NOV_1_2026).unwrap().to_string(), "2026-11-01");
        assert_eq!(
            Day::of_ms(NOV_1_2026 - 1).unwrap().to_string(),
            "2026-10-31"
        );
        assert_eq!(Day::of_ms(0).unwrap().to_string(), "1970-01-01");
        assert_eq!(Day::of_ms(-1), None);
        assert_eq!(Day::parse("2026-11-01").unwrap().start_ms(), NOV_1_2026);
        assert_eq!(Month::of_ms(NOV_1_2026 - 1).unwrap().to_string(), "2026-10");
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(Day::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-1-01",
            "26-11-01",
            "2026/11/01",
            "2026-11-01T00:00",
            "",
            "1969-12-31",
            "+026-11-01",
        ] {
            assert!(Day::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(Month::parse("2026-11").unwrap().to_string(), "2026-11");
        for bad in ["2026-13", "2026-00", "2026-1", "2026", "2026-11-01", "x"] {
            assert!(Month::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn months_step_over_years() {
        let december = Month::parse("2026-12").unwrap();
        assert_eq!(december.succ().to_string(), "2027-01");
        let (start, end) = december.range_ms();
        assert_eq!(Day::of_ms(start).unwrap().to_string(), "2026-12-01");
        assert_eq!(Day::of_ms(end).unwrap().to_string(), "2027-01-01");
        assert_eq!(end - start, 31 * MS_PER_DAY);
        assert_eq!(december.compact(), "202612");
        assert_eq!(
            Day::parse("2026-12-31").unwrap().succ().month(),
            december.succ()
        );
    }
}
