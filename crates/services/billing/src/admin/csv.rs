//! CSV (RFC 4180) lines for the admin API's exports (usage, audit), safe
//! to open in a spreadsheet.

use std::fmt::Write as _;

/// One CSV line, CRLF-terminated as RFC 4180 asks.
pub fn line<'a>(out: &mut String, cells: impl Iterator<Item = &'a str>) {
    for (index, cell) in cells.enumerate() {
        if index > 0 {
            out.push(',');
        }
        escape(out, cell);
    }
    out.push_str("\r\n");
}

/// Quotes a cell holding a separator, quote or line break, doubling quotes.
/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or
/// carriage return first: a model name or finish reason comes from
/// providers and clients) gets a leading `'`, as OWASP recommends. Counts
/// and amounts are never negative, so numbers are never touched.
fn escape(out: &mut String, cell: &str) {
    let guarded;
    let cell = if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        guarded = format!("'{cell}");
        guarded.as_str()
    } else {
        cell
    };
    if cell.contains([',', '"', '\r', '\n']) {
        let _ = write!(out, "\"{}\"", cell.replace('"', "\"\""));
    } else {
        out.push_str(cell);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_cells() {
        let mut out = String::new();
        line(&mut out, ["a", "b,c", "say \"hi\"", ""].into_iter());
        assert_eq!(out, "a,\"b,c\",\"say \"\"hi\"\"\",\r\n");
    }

    #[test]
    fn formulas_are_defused() {
        let mut out = String::new();
        line(
            &mut out,
            ["=HYPERLINK(\"x\")", "@SUM(A1)", "-1+2", "ok", "12"].into_iter(),
        );
        assert_eq!(out, "\"'=HYPERLINK(\"\"x\"\")\",'@SUM(A1),'-1+2,ok,12\r\n");
    }
}
