//! `churnguard import` against a real purchase-ingest on the embedded log, started in
//! this process on a free port: the CDNOW sample whole, again (nothing sent), in parts,
//! from a state file; a CSV file with bad lines; a deployment that takes no imports; a
//! deployment that asks for identities; a server that comes up after the import starts;
//! a log whose writes fail for a while (every swipe rejected UNAVAILABLE, and retried).
//! The log is read back to count what was written.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use churnguard_cli::{
    CliError, CsvColumns, Format, ImportOptions, ImportReport, ImportState, Pick, TimePick,
};
use churnguard_config::{AuthSettings, JwtSettings};
use churnguard_eventlog::contract::{BeforeAppend, Intercepted};
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_eventlog::{EventLog, LogError, contract};
use churnguard_testkit::auth::{AUDIENCE, ISSUER, TestIssuer};
use churnguard_testkit::init_test_logging;
use indicatif::ProgressBar;
use purchase_ingest::config::Backend;
use purchase_ingest::{App, Running, Settings};
use serde_json::Value;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// The CDNOW 1/10 sample: 6,919 purchases, no header, five columns.
const SAMPLE_LINES: u64 = 6_919;
const TOPIC: &str = "purchases.v1";

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/domain/tests/data/CDNOW_sample.txt")
}

/// purchase-ingest on an embedded log of its own, and that log, to read back.
struct Ingest {
    app: Running,
    log: EmbeddedLog,
    _dir: TempDir,
}

impl Ingest {
    /// A deployment that takes imports (of history up to 100 years old) when
    /// `allow_import`, on a free port.
    async fn start(allow_import: bool) -> Self {
        Self::start_with(allow_import, "127.0.0.1:0", AuthSettings::default()).await
    }

    async fn start_with(allow_import: bool, addr: &str, auth: AuthSettings) -> Self {
        Self::start_on(allow_import, addr, auth, |log| log).await
    }

    /// The same, with purchase-ingest writing through `wrap(log)`.
    async fn start_on<L: EventLog>(
        allow_import: bool,
        addr: &str,
        auth: AuthSettings,
        wrap: impl FnOnce(EmbeddedLog) -> L,
    ) -> Self {
        init_test_logging();
        let dir = tempfile::tempdir().expect("a log directory");
        let log = EmbeddedLog::open(dir.path()).expect("the embedded log opens");
        let mut settings = Settings {
            listen_addr: addr.into(),
            admin_addr: String::new(),
            publish_timeout_ms: 30_000,
            auth,
            ..Settings::default()
        };
        settings.log.backend = Backend::Embedded;
        settings.limits.allow_import = allow_import;
        settings.limits.max_import_age_days = 36_500;
        let app = App::build(settings, wrap(log.clone()))
            .await
            .expect("purchase-ingest starts")
            .spawn();
        Self {
            app,
            log,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.app.local_addr())
    }

    /// Every event written, as CloudEvents.
    async fn events(&self) -> Vec<Value> {
        let partitions = self
            .log
            .ensure_topic(TOPIC, Settings::default().topics.partitions)
            .await
            .expect("the topic");
        let mut events = Vec::new();
        for p in 0..partitions {
            let end = self.log.end_offset(TOPIC, p).await.expect("end offset");
            for r in contract::read_all(&self.log, TOPIC, p, end).await {
                events.push(serde_json::from_slice(&r.payload).expect("a JSON event"));
            }
        }
        events
    }

    /// The swipe ids of every event written, checking that none is there twice.
    async fn unique_swipe_ids(&self) -> HashSet<String> {
        let events = self.events().await;
        let ids: HashSet<String> = events.iter().map(swipe_id).collect();
        assert_eq!(ids.len(), events.len(), "a swipe id is in the log twice");
        ids
    }

    async fn stop(self) {
        let _ = self.app.stop().await;
    }
}

fn swipe_id(event: &Value) -> String {
    event["data"]["swipe_id"]
        .as_str()
        .expect("a swipe id")
        .to_owned()
}

/// The import of `file` into `url` with the command line's defaults, its state in
/// `state_dir`.
fn options(file: &Path, format: Format, url: &str, state_dir: &TempDir) -> ImportOptions {
    let mut opts = ImportOptions::new(file, format, url);
    opts.state = Some(state_dir.path().join("import-state"));
    opts.retries = 3;
    opts
}

fn cdnow(url: &str, state_dir: &TempDir) -> ImportOptions {
    options(&sample(), Format::Cdnow(Default::default()), url, state_dir)
}

async fn run(opts: &ImportOptions) -> Result<ImportReport, CliError> {
    churnguard_cli::import(opts, &ProgressBar::hidden(), CancellationToken::new()).await
}

/// Where nothing listens: a run that connects fails.
const NOWHERE: &str = "http://127.0.0.1:9";

#[tokio::test(flavor = "multi_thread")]
async fn the_cdnow_sample_is_imported_whole_and_a_second_run_sends_nothing() {
    let ingest = Ingest::start(true).await;
    let state = tempfile::tempdir().expect("dir");
    let opts = cdnow(&ingest.url(), &state);

    let report = run(&opts).await.expect("the import runs");
    assert_eq!(report.lines, SAMPLE_LINES, "{report}");
    assert_eq!(report.accepted, SAMPLE_LINES, "{report}");
    assert_eq!(
        (report.rejected, report.failed, report.already_imported),
        (0, 0, 0)
    );
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.lines_done, SAMPLE_LINES);
    assert_eq!(report.source, "CDNOW_sample");

    let events = ingest.events().await;
    assert_eq!(events.len() as u64, SAMPLE_LINES);
    let ids = ingest.unique_swipe_ids().await;
    assert!((1..=SAMPLE_LINES).all(|line| ids.contains(&format!("imp.CDNOW_sample.{line}"))));
    // Line 1: ` 00004 0001 19970101  2   29.33`.
    let first = events
        .iter()
        .find(|e| swipe_id(e) == "imp.CDNOW_sample.1")
        .expect("line 1's event");
    let data = &first["data"];
    assert_eq!(first["subject"], "00004");
    // Sent as 1997-01-01T12:00:00+00:00; the event writes UTC as Z.
    assert_eq!(data["occurred_at"], "1997-01-01T12:00:00Z");
    assert_eq!(data["amount"]["minor_units"], 2933);
    assert_eq!(data["amount"]["currency"], "USD");
    assert_eq!(data["item_count"], 2);
    assert_eq!(data["store_id"], "cdnow");
    assert_eq!(data["terminal_id"], "import");

    // Again: every line is done, so nothing is sent; not even a connection is made (it
    // goes nowhere this time).
    let again = run(&ImportOptions {
        connection: churnguard_cli::Connection::new(NOWHERE),
        ..opts.clone()
    })
    .await
    .expect("the second run");
    assert_eq!(again.already_imported, SAMPLE_LINES, "{again}");
    assert_eq!((again.accepted, again.rejected, again.failed), (0, 0, 0));
    assert_eq!(again.lines, SAMPLE_LINES);
    assert!(again.is_clean());
    let printed = again.to_string();
    assert!(printed.contains("already imported       6919"), "{printed}");
    assert_eq!(ingest.events().await.len() as u64, SAMPLE_LINES);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_stopped_after_some_batches_goes_on_where_it_stopped() {
    let ingest = Ingest::start(true).await;
    let state = tempfile::tempdir().expect("dir");
    let opts = cdnow(&ingest.url(), &state);

    let first = run(&ImportOptions {
        max_batches: Some(3),
        ..opts.clone()
    })
    .await
    .expect("the first part");
    assert_eq!(first.accepted, 1_500, "{first}");
    assert!(!first.reached_end && !first.is_clean(), "{first}");
    assert_eq!(first.lines_done, 1_500);
    let saved = ImportState::load(&opts.state_path())
        .expect("state")
        .expect("saved");
    assert_eq!(saved.lines_done, 1_500);
    assert_eq!(ingest.events().await.len(), 1_500);

    let rest = run(&opts).await.expect("the rest");
    assert_eq!(rest.already_imported, 1_500, "{rest}");
    assert_eq!(rest.accepted, SAMPLE_LINES - 1_500, "{rest}");
    assert!(rest.is_clean(), "{rest}");
    assert_eq!(ingest.unique_swipe_ids().await.len() as u64, SAMPLE_LINES);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_request_lets_the_batches_in_flight_finish_and_the_next_run_completes() {
    let ingest = Ingest::start(true).await;
    let state = tempfile::tempdir().expect("dir");
    let opts = ImportOptions {
        batch_size: 100,
        in_flight: 2,
        ..cdnow(&ingest.url(), &state)
    };
    let stop = CancellationToken::new();
    // Stopped once the first batch is answered (the progress bar moves then).
    let progress = ProgressBar::hidden();
    let watcher = {
        let (stop, progress) = (stop.clone(), progress.clone());
        tokio::spawn(async move {
            while progress.position() == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            stop.cancel();
        })
    };
    let first = churnguard_cli::import(&opts, &progress, stop)
        .await
        .expect("the stopped run");
    watcher.await.expect("the watcher");
    assert!(!first.reached_end, "{first}");
    assert!(
        first.accepted >= 100 && first.accepted < SAMPLE_LINES,
        "{first}"
    );
    assert_eq!(
        first.lines_done, first.accepted,
        "every batch sent was answered"
    );

    let rest = run(&opts).await.expect("the rest");
    assert_eq!(rest.already_imported, first.accepted);
    assert_eq!(first.accepted + rest.accepted, SAMPLE_LINES, "{rest}");
    assert_eq!(ingest.unique_swipe_ids().await.len() as u64, SAMPLE_LINES);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_file_saying_3000_lines_are_done_sends_only_the_rest() {
    let ingest = Ingest::start(true).await;
    let state = tempfile::tempdir().expect("dir");
    let opts = cdnow(&ingest.url(), &state);
    let size = std::fs::metadata(sample()).expect("the sample").len();
    ImportState {
        source: "CDNOW_sample".into(),
        file_size: size,
        lines_done: 3_000,
    }
    .save(&opts.state_path())
    .expect("a state");

    let report = run(&opts).await.expect("the import");
    assert_eq!(report.already_imported, 3_000, "{report}");
    assert_eq!(report.accepted, SAMPLE_LINES - 3_000, "{report}");
    let ids = ingest.unique_swipe_ids().await;
    assert_eq!(ids.len() as u64, SAMPLE_LINES - 3_000);
    assert!(!ids.contains("imp.CDNOW_sample.3000"));
    assert!(ids.contains("imp.CDNOW_sample.3001"));
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_of_another_import_is_refused_before_anything_is_sent() {
    let state = tempfile::tempdir().expect("dir");
    let opts = cdnow(NOWHERE, &state);
    let size = std::fs::metadata(sample()).expect("the sample").len();
    for (source, file_size, what) in [
        ("other", size, "another source"),
        ("CDNOW_sample", size + 1, "a file that shrank"),
    ] {
        ImportState {
            source: source.into(),
            file_size,
            lines_done: 10,
        }
        .save(&opts.state_path())
        .expect("a state");
        match run(&opts).await {
            Err(e @ CliError::StateMismatch { .. }) => {
                assert!(e.to_string().contains("does not fit"), "{e}");
            }
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }
    // The default place is beside the file; a read-only one says to use --state.
    let beside = ImportOptions {
        state: None,
        ..opts.clone()
    };
    assert_eq!(
        beside.state_path(),
        PathBuf::from(format!("{}.import-state", sample().display()))
    );
    let unwritable = ImportOptions {
        state: Some("/proc/churnguard-import-state".into()),
        ..opts
    };
    match run(&unwritable).await {
        Err(e @ CliError::WriteState { .. }) => assert!(e.to_string().contains("--state"), "{e}"),
        other => panic!("expected a state that cannot be written, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csv_file_with_bad_lines_imports_the_good_ones_and_names_the_bad() {
    let ingest = Ingest::start(true).await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("till export 2024.csv");
    std::fs::write(
        &file,
        "customer,store,employee,date,amount,currency\n\
         c-1,s-1,e-1,2024-05-01,12.50,EUR\n\
         c-2,s-1,e-1,2024-05-02,12.5x,EUR\n\
         c-3,s-1,e-1,2024-02-30,3.00,EUR\n\
         \n\
         c-4,s-2,e-2,2024-05-03,7,EUR\n\
         c-5,s-2,e-2,2024-05-03,7,eur\n",
    )
    .expect("the file");
    let opts = options(
        &file,
        Format::Csv(CsvColumns::default()),
        &ingest.url(),
        &dir,
    );

    let report = run(&opts).await.expect("the import");
    assert_eq!(report.source, "till-export-2024");
    assert_eq!(report.lines, 5, "{report}");
    assert_eq!(
        (report.accepted, report.rejected, report.failed),
        (2, 3, 0),
        "{report}"
    );
    let bad: Vec<(u64, &str)> = report
        .bad_lines
        .iter()
        .map(|b| (b.line, b.reason.as_str()))
        .collect();
    assert_eq!(bad[0], (3, "amount: not a decimal amount such as 12.50"));
    assert_eq!(bad[1], (4, "date: not a date YYYY-MM-DD"));
    assert_eq!(bad[2].0, 7);
    assert!(bad[2].1.starts_with("amount.currency: "), "{report}");
    assert_eq!(report.bad_lines[0].text, "c-2,s-1,e-1,2024-05-02,12.5x,EUR");
    assert_eq!(report.reasons.len(), 3);
    // Refused for what they are, the bad lines are done: running again sends nothing.
    assert_eq!(report.lines_done, 7);
    assert!(!report.resend_needed);
    let printed = report.to_string();
    assert!(
        printed.contains("line 4: \"c-3,s-1,e-1,2024-02-30,3.00,EUR\""),
        "{printed}"
    );

    let events = ingest.events().await;
    let mut written: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                swipe_id(e),
                e["data"]["occurred_at"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    written.sort();
    assert_eq!(
        written,
        [
            (
                "imp.till-export-2024.2".to_owned(),
                "2024-05-01T12:00:00Z".to_owned()
            ),
            (
                "imp.till-export-2024.6".to_owned(),
                "2024-05-03T12:00:00Z".to_owned()
            ),
        ]
    );
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_without_imports_refuses_every_line_and_the_state_waits_for_it() {
    let closed = Ingest::start(false).await;
    let state = tempfile::tempdir().expect("dir");
    let opts = cdnow(&closed.url(), &state);

    let report = run(&opts).await.expect("the import runs");
    assert_eq!(report.accepted, 0, "{report}");
    assert_eq!(report.rejected, SAMPLE_LINES, "{report}");
    let reason = &report.reasons["FAILED_PRECONDITION"];
    assert_eq!(reason.count, SAMPLE_LINES);
    let why = reason.message.as_deref().unwrap_or_default();
    assert!(why.contains("limits.allow_import"), "{why}");
    assert!(
        report.to_string().contains("limits.allow_import"),
        "{report}"
    );
    // Not the lines' fault: none is done, so the import can be run again once allowed.
    assert_eq!(report.lines_done, 0);
    assert!(report.resend_needed && !report.is_clean());
    assert!(closed.events().await.is_empty());
    closed.stop().await;

    let open = Ingest::start(true).await;
    let report = run(&ImportOptions {
        connection: churnguard_cli::Connection::new(open.url()),
        ..opts
    })
    .await
    .expect("the import, allowed");
    assert_eq!(report.accepted, SAMPLE_LINES, "{report}");
    assert_eq!(open.unique_swipe_ids().await.len() as u64, SAMPLE_LINES);
    open.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secured_deployment_takes_an_import_with_a_service_token_only() {
    let issuer = TestIssuer::new();
    let auth = AuthSettings {
        required: true,
        jwt: JwtSettings {
            algorithm: "HS256".into(),
            key_file: issuer.key_file(),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
        },
        ..AuthSettings::default()
    };
    let ingest = Ingest::start_with(true, "127.0.0.1:0", auth).await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("few.txt");
    let few: String = std::fs::read_to_string(sample())
        .expect("the sample")
        .lines()
        .take(20)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, few).expect("the file");
    let opts = options(
        &file,
        Format::Cdnow(Default::default()),
        &ingest.url(),
        &dir,
    );

    match run(&opts).await {
        Err(e @ CliError::Refused { .. }) => {
            assert!(e.to_string().contains("UNAUTHENTICATED"), "{e}");
            assert!(e.to_string().contains("--token"), "{e}");
        }
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }

    let mut analyst = opts.clone();
    analyst.connection.token = Some(churnguard_cli::Token::new(issuer.token(
        "analyst",
        "a-1",
        &[],
    )));
    let report = run(&analyst).await.expect("the analyst's run");
    assert_eq!(report.reasons["PERMISSION_DENIED"].count, 20, "{report}");
    assert_eq!(report.lines_done, 0);

    let mut service = opts.clone();
    service.connection.token = Some(churnguard_cli::Token::new(issuer.token(
        "service",
        "importer",
        &[],
    )));
    let report = run(&service).await.expect("the service's run");
    assert_eq!(report.accepted, 20, "{report}");
    assert!(report.is_clean(), "{report}");
    assert_eq!(ingest.unique_swipe_ids().await.len(), 20);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_comes_up_late_gets_the_import_all_the_same() {
    // A free port, for a server started after the import.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let state = tempfile::tempdir().expect("dir");
    let opts = ImportOptions {
        retries: 8,
        ..cdnow(&format!("http://{addr}"), &state)
    };
    let import = tokio::spawn(async move { run(&opts).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let ingest = Ingest::start_with(true, &addr, AuthSettings::default()).await;
    let report = import.await.expect("the import task").expect("the import");
    assert_eq!(report.accepted, SAMPLE_LINES, "{report}");
    assert!(report.reconnects >= 1, "{report}");
    assert_eq!(ingest.unique_swipe_ids().await.len() as u64, SAMPLE_LINES);
    ingest.stop().await;
}

/// The column options reach the swipes: a CSV with its own names, RFC 3339 times, item
/// counts and a terminal column.
#[tokio::test(flavor = "multi_thread")]
async fn csv_columns_with_other_names_map_to_the_swipe() {
    let ingest = Ingest::start(true).await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("pos.csv");
    std::fs::write(
        &file,
        "Kunde;Filiale;Kasse;Zeit;Betrag;Stueck\n\
         k-1;f-1;k1;2024-05-01T10:15:00+02:00;1250;3\n",
    )
    .expect("the file");
    // Semicolons are not commas: the header is one column and the import stops at once.
    let columns = CsvColumns {
        customer: "Kunde".into(),
        store: Pick::Column("Filiale".into()),
        terminal: Pick::Column("Kasse".into()),
        employee: Pick::Value("emp-9".into()),
        time: TimePick::Timestamp("Zeit".into()),
        amount: "Betrag".into(),
        currency: Pick::Value("JPY".into()),
        items: Some("Stueck".into()),
    };
    let opts = options(&file, Format::Csv(columns.clone()), &ingest.url(), &dir);
    assert!(matches!(run(&opts).await, Err(CliError::CsvColumns { .. })));

    std::fs::write(
        &file,
        "Kunde,Filiale,Kasse,Zeit,Betrag,Stueck\n\
         k-1,f-1,k1,2024-05-01T10:15:00+02:00,1250,3\n",
    )
    .expect("the file");
    let report = run(&opts).await.expect("the import");
    assert_eq!(report.accepted, 1, "{report}");
    let events = ingest.events().await;
    let data = &events[0]["data"];
    assert_eq!(data["store_id"], "f-1");
    assert_eq!(data["terminal_id"], "k1");
    assert_eq!(data["employee_id"], "emp-9");
    assert_eq!(data["occurred_at"], "2024-05-01T10:15:00+02:00");
    assert_eq!(data["amount"]["minor_units"], 1250);
    assert_eq!(data["amount"]["currency"], "JPY");
    assert_eq!(data["item_count"], 3);
    ingest.stop().await;
}

/// The number on the report's line for `what` (`  accepted      6919`).
fn count_of(report: &str, what: &str) -> Option<u64> {
    report
        .lines()
        .find(|l| l.trim_start().starts_with(what))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
}

/// Runs the `churnguard` binary with `args`, off the async runtime.
async fn churnguard(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_churnguard"))
            .args(args)
            .env_remove("CHURNGUARD_TOKEN")
            .output()
            .expect("churnguard runs")
    })
    .await
    .expect("the command's task")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_prints_the_report_and_exits_by_what_happened() {
    let ingest = Ingest::start(true).await;
    let dir = tempfile::tempdir().expect("dir");
    let import = |file: &Path, format: &str| {
        vec![
            "import".to_owned(),
            file.display().to_string(),
            "--format".into(),
            format.into(),
            "--ingest".into(),
            ingest.url(),
            "--state".into(),
            dir.path().join(format).display().to_string(),
        ]
    };

    let out = churnguard(import(&sample(), "cdnow")).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        count_of(&stdout, "lines read"),
        Some(SAMPLE_LINES),
        "{stdout}"
    );
    assert_eq!(
        count_of(&stdout, "accepted"),
        Some(SAMPLE_LINES),
        "{stdout}"
    );
    // stderr is not a terminal here: no progress bar.
    assert!(stderr.is_empty(), "{stderr}");

    let csv = dir.path().join("bad.csv");
    std::fs::write(
        &csv,
        "customer,store,timestamp,amount,currency\nc-1,s-1,2024-05-01T10:00:00Z,1.5.0,EUR\n",
    )
    .expect("the file");
    let out = churnguard(import(&csv, "csv")).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert_eq!(count_of(&stdout, "rejected"), Some(1), "{stdout}");
    assert!(
        stdout.contains("line 2: \"c-1,s-1,2024-05-01T10:00:00Z,1.5.0,EUR\""),
        "{stdout}"
    );

    let out = churnguard(vec![
        "import".into(),
        "x".into(),
        "--format".into(),
        "xml".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    let out = churnguard(import(Path::new("/no/such/file"), "cdnow")).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file"));
    ingest.stop().await;
}

async fn flaky_ingest(failures: u32) -> (Ingest, Arc<AtomicU32>) {
    let failures_left = Arc::new(AtomicU32::new(failures));
    let shared = failures_left.clone();
    // The embedded log, whose appends fail (every record UNAVAILABLE, nothing written)
    // as long as failures are left, one per append: a disk gone for a while, under the
    // real service.
    let ingest = Ingest::start_on(true, "127.0.0.1:0", AuthSettings::default(), |inner| {
        Intercepted::new(inner, move || {
            let failing = shared
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                BeforeAppend::Refuse(LogError::Unavailable("the disk is away (test)".into()))
            } else {
                BeforeAppend::Go
            }
        })
    })
    .await;
    (ingest, failures_left)
}

#[tokio::test(flavor = "multi_thread")]
async fn swipes_rejected_unavailable_are_retried_until_they_are_written() {
    // Two appends fail: whichever batches or retries they were, their swipes come back
    // UNAVAILABLE and are sent again.
    let (ingest, failures_left) = flaky_ingest(2).await;
    let state = tempfile::tempdir().expect("dir");
    let report = run(&cdnow(&ingest.url(), &state))
        .await
        .expect("the import");
    assert_eq!(
        failures_left.load(Ordering::SeqCst),
        0,
        "the log failed twice"
    );
    assert_eq!(report.accepted, SAMPLE_LINES, "{report}");
    assert_eq!((report.rejected, report.failed), (0, 0), "{report}");
    assert_eq!(report.lines_done, SAMPLE_LINES);
    // A failed append wrote nothing: every line is in the log once.
    assert_eq!(ingest.unique_swipe_ids().await.len() as u64, SAMPLE_LINES);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn swipes_that_keep_failing_are_counted_and_sent_again_by_the_next_run() {
    let (ingest, failures_left) = flaky_ingest(u32::MAX).await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("few.txt");
    let few: String = std::fs::read_to_string(sample())
        .expect("the sample")
        .lines()
        .take(30)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, few).expect("the file");
    let opts = ImportOptions {
        batch_size: 10,
        retries: 1,
        ..options(
            &file,
            Format::Cdnow(Default::default()),
            &ingest.url(),
            &dir,
        )
    };

    let report = run(&opts).await.expect("the import runs");
    assert_eq!((report.accepted, report.failed), (0, 30), "{report}");
    assert_eq!(
        report.reasons["UNAVAILABLE after 2 tries"].count, 30,
        "{report}"
    );
    assert_eq!(report.lines_done, 0, "failed lines are not done");
    assert!(report.resend_needed && !report.is_clean());
    assert!(ingest.events().await.is_empty());

    // The disk is back: the next run sends them all.
    failures_left.store(0, Ordering::SeqCst);
    let report = run(&opts).await.expect("the next run");
    assert_eq!(report.accepted, 30, "{report}");
    assert!(report.is_clean(), "{report}");
    assert_eq!(ingest.unique_swipe_ids().await.len(), 30);
    ingest.stop().await;
}
