//! A log line holding a credential fails the test when its Redis or broker is dropped,
//! quoting the line. One test in its own file: the leak stays in the process's record.

use churnguard_testkit::{RedisServer, canary, init_test_logging};

#[test]
#[should_panic(expected = "canary leak in 1 log line(s)")]
fn a_token_in_a_log_line_fails_the_test() {
    init_test_logging();
    let redis = RedisServer::start();
    let before = canary::log_lines_scanned();
    tracing::info!(
        store = "s-1",
        "a gateway signed in with {}",
        canary::store_token("s-1")
    );
    tracing::info!(store = "s-1", "a clean line");
    assert_eq!(canary::log_lines_scanned(), before + 2);
    drop(redis);
}
