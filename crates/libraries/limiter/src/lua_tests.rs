//! The Lua calendar arithmetic against `calendar.rs` at arbitrary instants
//! (the scripts read Redis time, so the behavioural tests can only check
//! today): runs `common.lua` in the real Redis with `now_s` overridden.
#![allow(clippy::unwrap_used)]

use crate::calendar;

/// Every 6 days and 1 hour from 1970 to ~2150, plus the last and first
/// second of every month from 2020 to 2110 (leap years, centuries).
fn instants() -> Vec<u64> {
    let mut secs: Vec<u64> = (0..11_000).map(|i| i * (6 * 86_400 + 3600)).collect();
    for y in 2020..2110 {
        for m in 1..=12 {
            let first = calendar::days_from_civil(y, m, 1).unsigned_abs() * calendar::DAY_SECS;
            secs.extend([first - 1, first]);
        }
    }
    secs
}

#[tokio::test]
async fn lua_calendar_matches_rust() {
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let probe = concat!(
        include_str!("common.lua"),
        r#"
local out = {}
for i = 1, #ARGV do
  now_s = tonumber(ARGV[i])
  local day, day_end = window(3)
  local month, month_end = window(5)
  out[#out + 1] = day
  out[#out + 1] = day_end / 1000000
  out[#out + 1] = month
  out[#out + 1] = month_end / 1000000
end
return out
"#
    );
    let instants = instants();
    // Keyless and read-only: nothing is written.
    let got: Vec<u64> = redis::Script::new(probe)
        .prepare_invoke()
        .arg(&instants)
        .invoke_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(got.len(), instants.len() * 4);
    for (secs, got) in instants.iter().zip(got.chunks(4)) {
        let day = calendar::day(secs * 1_000_000);
        let month = calendar::month(secs * 1_000_000);
        let want = [
            day.id,
            day.end_us / 1_000_000,
            month.id,
            month.end_us / 1_000_000,
        ];
        assert_eq!(got, want, "at unix second {secs}");
    }
}
