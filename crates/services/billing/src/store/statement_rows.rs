//! How many rows one multi-row `INSERT ... VALUES` carries (ledger events
//! and audit events on SQLite, the daily rollup on both databases).
//!
//! Every distinct row count is a distinct SQL text, and sqlx keeps each
//! prepared text in a per-connection cache (100 statements by default).
//! With batches of any size up to 1,000 rows, nearly every batch was a new
//! text: SQLite compiled a program of ~1 KB per row for it (parsing and code
//! generation were 3% of the gateway's CPU at full load), and the cache kept
//! up to 100 of them per connection: the process grew by ~200 MB in 120,000
//! requests and kept it. Cutting every batch into chunks of a few fixed
//! sizes (64, 32, ..., 1 rows) bounds the texts to seven per statement,
//! each compiled once per connection.

/// The largest chunk: 64 rows of 29 binds stays far under SQLite's 32,766
/// and Postgres's 65,535 bind parameters, and its program is tens of KB.
const MAX_ROWS: usize = 64;

/// `rows` in order, in chunks of [`MAX_ROWS`] and then of the powers of two
/// that make up the rest (a batch of 100: 64, 32, 4).
pub(super) fn chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        let len = rest.len();
        if len == 0 {
            return None;
        }
        let size = if len >= MAX_ROWS {
            MAX_ROWS
        } else {
            1 << len.ilog2()
        };
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(len: usize) -> Vec<usize> {
        let rows: Vec<usize> = (0..len).collect();
        chunks(&rows).map(<[_]>::len).collect()
    }

    #[test]
    fn a_batch_is_cut_into_fixed_sizes_in_order() {
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(100), [64, 32, 4]);
        assert_eq!(sizes(129), [64, 64, 1]);
        let rows: Vec<usize> = (0..1000).collect();
        let joined: Vec<usize> = chunks(&rows).flatten().copied().collect();
        assert_eq!(joined, rows);
    }

    #[test]
    fn any_batch_uses_at_most_seven_texts() {
        let mut seen = std::collections::BTreeSet::new();
        for len in 0..=1000 {
            seen.extend(sizes(len));
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 32, 64]
        );
    }
}
