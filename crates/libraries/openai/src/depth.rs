//! A cap on JSON nesting, checked before parsing: one pass over the bytes,
//! no allocation, no recursion, so a body of 100 000 `[` costs a scan, not
//! a parser descending into it.

/// The first nesting level over `max_depth` in `body`, as
/// `Some(byte offset)` of the bracket that went too deep; `None` when the
/// body stays within it. Brackets inside strings do not count. The body
/// need not be valid JSON (the parser judges that afterwards).
pub fn exceeds_depth(body: &[u8], max_depth: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &byte) in body.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Some(offset);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_arrays_and_objects_but_not_brackets_in_strings() {
        assert_eq!(exceeds_depth(br#"{"a":[1,{"b":[]}]}"#, 4), None);
        assert_eq!(exceeds_depth(br#"{"a":[1,{"b":[]}]}"#, 3), Some(13));
        assert_eq!(exceeds_depth(br#"{"a":"[[[[{{{{"}"#, 1), None);
        // An escaped quote does not end the string.
        assert_eq!(exceeds_depth(br#"{"a":"\"[[[["}"#, 1), None);
        assert_eq!(exceeds_depth(br#"{"a":"\\",  "b":[[]]}"#, 2), Some(17));
        assert_eq!(exceeds_depth(b"", 0), None);
    }

    #[test]
    fn a_hundred_thousand_deep_array_is_refused_at_the_cap() {
        let body = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(exceeds_depth(body.as_bytes(), 64), Some(64));
        let ok = "[".repeat(64) + &"]".repeat(64);
        assert_eq!(exceeds_depth(ok.as_bytes(), 64), None);
    }

    #[test]
    fn siblings_do_not_add_up() {
        let body = "[".to_owned() + &"[],".repeat(10_000) + "[]]";
        assert_eq!(exceeds_depth(body.as_bytes(), 2), None);
    }
}
