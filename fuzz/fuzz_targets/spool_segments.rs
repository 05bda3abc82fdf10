#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| llmgw_properties::spool_segments::check(data));
