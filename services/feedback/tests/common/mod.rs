//! What several feedback test files share: reading the read model and the log back, the
//! field names of an INVALID_ARGUMENT, and taking alerts off an escalation watch; and (in
//! [`sla`]) the SLA timer scenario.
#![allow(dead_code)] // each test file uses its own part

pub mod sla;

use std::collections::BTreeMap;
use std::time::Duration;

use churnguard_eventlog::EventLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_testkit::RedisServer;
use feedback::EVENTS_TOPIC;
use feedback::journal::Commit;
use tonic::Streaming;
use tonic_types::StatusExt;

async fn connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn")
}

/// Every hash whose key matches one of `patterns`, field by field.
pub async fn hashes(
    redis: &RedisServer,
    patterns: &[&str],
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut conn = connection(redis).await;
    let mut all = BTreeMap::new();
    for pattern in patterns {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .expect("keys");
        for k in keys {
            let h: BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .expect("hgetall");
            all.insert(k, h);
        }
    }
    all
}

/// Every sorted set whose key matches `pattern`, with scores.
pub async fn sorted_sets(
    redis: &RedisServer,
    pattern: &str,
) -> BTreeMap<String, Vec<(String, i64)>> {
    let mut conn = connection(redis).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .expect("keys");
    let mut all = BTreeMap::new();
    for k in keys {
        let z: Vec<(String, i64)> = redis::cmd("ZRANGE")
            .arg(&k)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .expect("zrange");
        all.insert(k, z);
    }
    all
}

/// Empties the Redis, as a lost read model.
pub async fn flush(redis: &RedisServer) {
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut connection(redis).await)
        .await
        .expect("flush");
}

/// Every commit in a partition of the events topic, in log order.
pub async fn commits<L: EventLog>(log: &L, p: u32) -> Vec<Commit> {
    let mut all = Vec::new();
    let end = log.end_offset(EVENTS_TOPIC, p).await.expect("end");
    let mut from = 0;
    while from < end {
        let records = log
            .read(EVENTS_TOPIC, p, from, 500, Duration::from_millis(500))
            .await
            .expect("read");
        for r in &records {
            all.push(Commit::decode(&r.payload).expect("a commit"));
        }
        from = records.last().map_or(from, |r| r.offset + 1);
    }
    all
}

/// The fields an INVALID_ARGUMENT's BadRequest names.
pub fn bad_fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("a BadRequest detail")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// The next `n` alerts of a watch, then (with `quiet`) nothing more for a while.
pub async fn take(
    s: &mut Streaming<pb::WatchEscalationsResponse>,
    n: usize,
    quiet: bool,
) -> Vec<pb::EscalationAlert> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .unwrap_or_else(|_| panic!("alert {} of {n} within 10 s", out.len() + 1))
            .expect("stream ok")
            .expect("stream open");
        out.push(m.alert.expect("alert"));
    }
    if quiet {
        let more = tokio::time::timeout(Duration::from_millis(1500), s.message()).await;
        assert!(more.is_err(), "an unexpected alert: {more:?}");
    }
    out
}

/// The canary contact details: searched for in Redis, the log and the logs.
pub const PHONE: &str = churnguard_testkit::canary::CONTACT_PHONE;
pub const ADDRESS: &str = churnguard_testkit::canary::CONTACT_ADDRESS;

/// A customer named by id.
pub fn customer(id: &str) -> Option<pb::Customer> {
    Some(pb::Customer {
        kind: Some(pb::customer::Kind::CustomerId(id.into())),
    })
}

/// A major complaint about staff at store-1 by cust-1, with the canary contact details.
pub fn filing(key: &str) -> pb::FileComplaintRequest {
    pb::FileComplaintRequest {
        idempotency_key: key.into(),
        customer: customer("cust-1"),
        contact: Some(pb::ContactDetails {
            name: churnguard_testkit::canary::CONTACT_NAME.into(),
            phone: PHONE.into(),
            email: String::new(),
            address: ADDRESS.into(),
        }),
        store_id: "store-1".into(),
        channel: pb::Channel::Till as i32,
        touchpoint: pb::Touchpoint::Staff as i32,
        severity: pb::Severity::Major as i32,
        description: "Rude at the till, refused the coupon".into(),
        occurred_at: "2026-11-23T08:00:00Z".into(),
    }
}
