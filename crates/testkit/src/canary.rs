//! Canaries: a secret, a store token and a customer's contact details that tests use
//! where a real deployment holds credentials and personal data, and the scans that show
//! none of them ever reaches a log line, an error message, a topic or Redis.
//!
//! Where the scans run:
//! - every log line of every test that calls [`crate::init_test_logging`] (at `info`, or
//!   what `RUST_LOG` says with `TEST_LOG=1`), as it is written;
//! - every [`crate::RedisServer`] when it is dropped: its whole keyspace, saved to an
//!   uncompressed RDB file and searched byte for byte;
//! - every [`crate::Tansu`] broker when it is dropped: its storage files (records, keys,
//!   headers) and its own log;
//! - error messages and the embedded log's files where a test asks ([`assert_absent`],
//!   [`assert_dir_clean`]), as `tests/tests/canary.rs` does for a whole secured stack.
//!
//! Every [`crate::auth::TestIssuer`] signs with a key that starts with [`SECRET`], and
//! every token it mints is a canary too (a JWT is a bearer credential).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use memchr::memmem;

/// The start of every test issuer's signing key.
pub const SECRET: &str = "canary-secret-5Jq8Zr";
/// The start of every store gateway token made by [`store_token`].
pub const TOKEN: &str = "canary-token-Wd41Kx";
/// A complainant's name, phone, email and address, for complaints filed with contact
/// details.
pub const CONTACT_NAME: &str = "Canary Vq73 Lowther";
pub const CONTACT_PHONE: &str = "+44 7700 900461";
pub const CONTACT_EMAIL: &str = "canary.tm62@example.org";
pub const CONTACT_ADDRESS: &str = "221B Canary Wharf Road";
/// [`CONTACT_PHONE`]'s digits alone, as a normalised copy would hold them.
const CONTACT_PHONE_DIGITS: &str = "447700900461";

/// The gateway token of `store`: starts with [`TOKEN`].
pub fn store_token(store: &str) -> String {
    format!("{TOKEN}-{store}")
}

/// Tokens minted in this process ([`register`]), searched for as well as the constants.
static MINTED: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Log lines that held a canary, with what they held.
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Adds a credential made at run time (a minted JWT) to what the scans look for.
pub fn register(credential: &str) {
    MINTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(credential.to_owned());
}

/// What of the canaries `bytes` holds: "the secret", "a store token", "the contact's
/// phone" ..., each at most once.
pub fn found_in(bytes: &[u8]) -> Vec<&'static str> {
    let mut found = Vec::new();
    for (needle, what) in [
        (SECRET, "the secret"),
        (TOKEN, "a store token"),
        (CONTACT_NAME, "the contact's name"),
        (CONTACT_PHONE, "the contact's phone"),
        (CONTACT_PHONE_DIGITS, "the contact's phone"),
        (CONTACT_EMAIL, "the contact's email"),
        (CONTACT_ADDRESS, "the contact's address"),
    ] {
        if found.contains(&what) {
            continue;
        }
        if memmem::find(bytes, needle.as_bytes()).is_some() {
            found.push(what);
        }
    }
    let minted = MINTED.lock().unwrap_or_else(|e| e.into_inner());
    if minted
        .iter()
        .any(|t| memmem::find(bytes, t.as_bytes()).is_some())
    {
        found.push("a minted token");
    }
    found
}

/// Panics naming `place` if `bytes` holds a canary.
pub fn assert_absent(place: &str, bytes: &[u8]) {
    let found = found_in(bytes);
    assert!(found.is_empty(), "canary leak: {found:?} found in {place}");
}

/// Every file under `dir` (recursively) that holds a canary, with what it holds.
pub fn leaks_in_dir(dir: &Path) -> Vec<(PathBuf, Vec<&'static str>)> {
    let mut leaks = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let found = found_in(&bytes);
                if !found.is_empty() {
                    leaks.push((path, found));
                }
            }
        }
    }
    leaks
}

/// Panics naming the files under `dir` that hold a canary.
pub fn assert_dir_clean(place: &str, dir: &Path) {
    let leaks = leaks_in_dir(dir);
    assert!(leaks.is_empty(), "canary leak in {place}: {leaks:?}");
}

/// Log lines scanned in this process.
static SCANNED: AtomicU64 = AtomicU64::new(0);

/// Checks one written log line; a line with a canary is kept for [`assert_logs_clean`]
/// and said on stderr at once.
pub(crate) fn check_log_line(line: &[u8]) {
    SCANNED.fetch_add(1, Ordering::Relaxed);
    let found = found_in(line);
    if !found.is_empty() {
        let line = String::from_utf8_lossy(line).into_owned();
        eprintln!("canary leak: {found:?} in a log line: {line}");
        LOGGED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{found:?} in: {line}"));
    }
}

/// How many log lines were scanned (all of them, in this process).
pub fn log_lines_scanned() -> u64 {
    SCANNED.load(Ordering::Relaxed)
}

/// Panics if any log line written so far in this process held a canary.
pub fn assert_logs_clean() {
    let logged = LOGGED.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        logged.is_empty(),
        "canary leak in {} log line(s): {:?}",
        logged.len(),
        *logged
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_canary_is_found_where_it_is_and_nowhere_else() {
        assert!(found_in(b"a clean line: store s-1, complaint c-9").is_empty());
        assert_eq!(
            found_in(format!("Bearer {}", store_token("s-1")).as_bytes()),
            ["a store token"]
        );
        assert_eq!(
            found_in(format!("k={SECRET}x; {CONTACT_EMAIL}").as_bytes()),
            ["the secret", "the contact's email"]
        );
        register("eyJ.minted.sig-Zz");
        assert_eq!(found_in(b"xx eyJ.minted.sig-Zz yy"), ["a minted token"]);
    }

    #[test]
    fn a_file_with_a_canary_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("sub")).expect("sub");
        std::fs::write(dir.path().join("clean"), b"nothing here").expect("write");
        std::fs::write(dir.path().join("sub/leak"), CONTACT_PHONE).expect("write");
        let leaks = leaks_in_dir(dir.path());
        assert_eq!(leaks.len(), 1);
        assert!(leaks[0].0.ends_with("sub/leak"));
        assert_eq!(leaks[0].1, ["the contact's phone"]);
    }
}
