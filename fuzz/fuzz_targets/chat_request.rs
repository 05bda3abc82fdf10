#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| llmgw_properties::chat_request::check(data));
