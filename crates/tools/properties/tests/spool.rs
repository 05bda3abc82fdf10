//! Property test of the spool's replay after damage (see
//! `llmgw_properties::spool_segments`): a restart delivers exactly the
//! intact records from the cursor on, never one twice.

use llmgw_properties::spool_segments;
use proptest::prelude::*;

proptest! {
    // Each case starts the spool three times: fewer cases than the parsers.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn damaged_segments_replay_a_prefix_never_a_duplicate(
        sizes in prop::collection::vec(any::<u8>(), 0..40),
        cursor in (any::<u8>(), any::<u8>(), any::<u8>()),
        damage in prop::collection::vec((0..5u8, any::<u8>(), any::<u16>(), any::<u8>()), 0..4),
    ) {
        let mut data = vec![sizes.len() as u8];
        data.extend(&sizes);
        data.extend([cursor.0, cursor.1, cursor.2]);
        for (op, segment, at, arg) in damage {
            data.push(op);
            data.push(segment);
            data.extend(at.to_le_bytes());
            data.push(arg);
        }
        spool_segments::check(&data);
    }
}
