//! Any text frame through the real router of one authenticated-mode
//! connection: it must never panic, and every immediate answer must be a
//! JSON-RPC response object or batch.
#![no_main]

use std::cell::RefCell;

use circle_server::fuzzing::RouterHarness;
use libfuzzer_sys::fuzz_target;

thread_local! {
    // One connection for the whole run, as a long-lived session would be:
    // state (pending challenge, failed attempts, rate budget) carries over.
    static ROUTER: RefCell<RouterHarness> =
        RefCell::new(RouterHarness::new().expect("executor starts"));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let answer = ROUTER.with(|router| router.borrow_mut().handle_text(text));
    if let Some(answer) = answer {
        let value: serde_json::Value = serde_json::from_str(&answer).expect("answers are JSON");
        let responses = match &value {
            serde_json::Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        for response in responses {
            assert_eq!(response["jsonrpc"], "2.0", "{answer}");
            assert!(response.get("result").is_some() != response.get("error").is_some(), "{answer}");
        }
    }
});
