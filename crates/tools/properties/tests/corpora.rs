//! Replays the committed fuzz corpora (`fuzz/corpus/TARGET/`) through the
//! same checks, so every input a fuzzing run kept stays a regression test.

use std::path::PathBuf;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../fuzz/corpus")
        .join(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    let mut replayed = 0;
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        let input = match std::fs::read(&path) {
            Ok(input) => input,
            // A fuzzing run in progress replaces inputs as it reduces them.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => panic!("{}: {error}", path.display()),
        };
        check(&input);
        replayed += 1;
    }
    assert!(replayed > 0, "{} is empty", dir.display());
}

#[test]
fn openai_sse() {
    replay("openai_sse", llmgw_properties::openai_stream::check);
}

#[test]
fn anthropic_stream() {
    replay(
        "anthropic_stream",
        llmgw_properties::anthropic_stream::check,
    );
}

#[test]
fn chat_request() {
    replay("chat_request", llmgw_properties::chat_request::check);
}

#[test]
fn admin_body() {
    replay("admin_body", llmgw_properties::admin_body::check);
}

#[test]
fn spool_segments() {
    replay("spool_segments", llmgw_properties::spool_segments::check);
}
