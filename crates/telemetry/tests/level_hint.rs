//! The installed subscriber tells `tracing` the most verbose level it wants, so that the
//! `trace!` and `debug!` callsites of the libraries under a service (h2, hyper, tonic: several
//! per HTTP/2 frame) are skipped where they stand instead of asking the subscriber at run
//! time. Its own process: the level is global.

use tracing::level_filters::LevelFilter;

#[test]
fn debug_and_trace_callsites_are_off_where_they_stand() {
    if std::env::var_os("RUST_LOG").is_some() {
        eprintln!("skipped: RUST_LOG is set, and it chooses the level");
        return;
    }
    let _telemetry = churnguard_telemetry::Telemetry::init_with(
        "level-hint-test",
        churnguard_telemetry::TraceSettings::default(),
    );
    assert_eq!(LevelFilter::current(), LevelFilter::INFO);
    assert!(!tracing::enabled!(tracing::Level::DEBUG));
    assert!(tracing::enabled!(tracing::Level::INFO));
}
