//! The test subscriber: formats every event at the filter's level into a line, hands the
//! line to the canary scan, and prints it only under `TEST_LOG=1` (through `print!`, so
//! the test harness captures it per test as its own test writer would).

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

pub(crate) fn init() {
    let show = std::env::var_os("TEST_LOG").is_some();
    let filter = if show {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())
    } else {
        // Prefix match: `churnguard` covers every churnguard_* crate.
        EnvFilter::new(
            "info,churnguard=debug,purchase_ingest=debug,churn_scoring=debug,feedback=debug",
        )
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Scanned { show })
        .try_init();
}

#[derive(Clone, Copy)]
struct Scanned {
    show: bool,
}

impl<'a> MakeWriter<'a> for Scanned {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            show: self.show,
            bytes: Vec::with_capacity(256),
        }
    }
}

/// One event's formatted output: scanned (and printed) when the formatter is done with it.
struct Line {
    show: bool,
    bytes: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        crate::canary::check_log_line(&self.bytes);
        if self.show {
            print!("{}", String::from_utf8_lossy(&self.bytes));
        }
    }
}
