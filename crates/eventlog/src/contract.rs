//! The contract every [`EventLog`] implementation passes, written once.
//!
//! Each backend's tests call [`run_all`] with a freshly opened log (the embedded log in a
//! temporary directory, Kafka against a real broker), and use [`append_numbered`] and
//! [`verify_acknowledged`] around a crash of their own kind.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use churnguard_domain::partition_for_key;

use crate::{Appended, AssignmentChange, EventLog, Header, LogError, Membership, OutgoingRecord};

/// Runs every contract check against `log`, on topics named after `prefix`.
pub async fn run_all<L: EventLog>(log: &L, prefix: &str) {
    topics_are_created_once(log, &format!("{prefix}.topics")).await;
    bad_topic_names_are_refused(log).await;
    unknown_topics_and_partitions_are_errors(log, &format!("{prefix}.unknown")).await;
    batches_land_where_the_partitioner_says_in_order(log, &format!("{prefix}.order")).await;
    reads_start_anywhere_and_wait_for_new_records(log, &format!("{prefix}.tail")).await;
    a_read_returns_what_has_come_while_records_keep_coming(log, &format!("{prefix}.stream")).await;
    readers_at_many_positions_get_dense_records(log, &format!("{prefix}.cursors")).await;
    group_members_share_partitions(log, &format!("{prefix}.group")).await;
    log.check()
        .await
        .expect("check: a healthy log reports healthy");
    log.flush(Duration::from_secs(10))
        .await
        .expect("flush: completes");
}

/// `ensure_topic` creates once; asking again (even for another count) keeps the topic.
pub async fn topics_are_created_once<L: EventLog>(log: &L, topic: &str) {
    assert_eq!(log.ensure_topic(topic, 3).await.expect("create topic"), 3);
    assert_eq!(
        log.ensure_topic(topic, 5)
            .await
            .expect("ensure existing topic"),
        3,
        "an existing topic keeps its partition count"
    );
    for p in 0..3 {
        assert_eq!(
            log.end_offset(topic, p).await.expect("end offset"),
            0,
            "a new partition is empty"
        );
    }
}

pub async fn bad_topic_names_are_refused<L: EventLog>(log: &L) {
    for bad in ["", "has space", "slash/ed", ".."] {
        assert!(
            matches!(
                log.ensure_topic(bad, 1).await,
                Err(LogError::InvalidTopic(_))
            ),
            "topic name {bad:?} must be refused"
        );
    }
}

pub async fn unknown_topics_and_partitions_are_errors<L: EventLog>(log: &L, topic: &str) {
    let results = log
        .append(&format!("{topic}.missing"), vec![record("k", "v", 0)])
        .await;
    assert!(
        matches!(results.as_slice(), [Err(LogError::UnknownTopic(_))]),
        "append to a missing topic: {results:?}"
    );
    log.ensure_topic(topic, 2).await.expect("create topic");
    assert!(matches!(
        log.read(topic, 9, 0, 1, Duration::ZERO).await,
        Err(LogError::UnknownPartition { .. })
    ));
    assert!(
        log.start_offset(topic, 9).await.is_err(),
        "the start of a partition that does not exist"
    );
}

/// A batch spread over partitions: one result per record, each on the partition the
/// Kafka partitioner gives its key, offsets consecutive in batch order, and every record
/// read back exactly (key, payload, headers, timestamp).
pub async fn batches_land_where_the_partitioner_says_in_order<L: EventLog>(log: &L, topic: &str) {
    let partitions = log.ensure_topic(topic, 4).await.expect("create topic");
    let records: Vec<OutgoingRecord> = (0..200)
        .map(|i| {
            record(
                &format!("customer-{}", i % 17),
                &format!("payload-{i}"),
                1_700_000_000_000 + i,
            )
        })
        .collect();
    let results = log.append(topic, records.clone()).await;
    assert_eq!(results.len(), records.len(), "one result per record");

    let mut next: HashMap<u32, u64> = HashMap::new();
    for (record, result) in records.iter().zip(&results) {
        let at = result.as_ref().expect("append succeeds");
        assert_eq!(
            at.partition,
            partition_for_key(&record.key, partitions),
            "records are placed by murmur2 of their key"
        );
        let expected = next.entry(at.partition).or_insert(0);
        assert_eq!(
            at.offset, *expected,
            "offsets are consecutive in batch order"
        );
        *expected += 1;
    }

    for p in 0..partitions {
        let count = next.get(&p).copied().unwrap_or(0);
        assert_eq!(log.end_offset(topic, p).await.expect("end offset"), count);
        assert_eq!(
            log.start_offset(topic, p).await.expect("start offset"),
            0,
            "nothing deleted: the partition starts at 0"
        );
        let read = read_all(log, topic, p, count).await;
        let sent: Vec<&OutgoingRecord> = records
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.as_ref().map(|a| a.partition == p).unwrap_or(false))
            .map(|(rec, _)| rec)
            .collect();
        assert_eq!(read.len(), sent.len(), "partition {p} holds what was sent");
        for (got, want) in read.iter().zip(sent) {
            assert_eq!(got.partition, p);
            assert_eq!(got.key, want.key);
            assert_eq!(got.payload, want.payload);
            assert_eq!(got.timestamp_ms, want.timestamp_ms);
            for h in &want.headers {
                assert_eq!(
                    got.header(&h.name),
                    Some(h.value.as_slice()),
                    "header {}",
                    h.name
                );
            }
        }
    }
}

/// Reading from the middle starts there; reading at the end waits for the next write.
pub async fn reads_start_anywhere_and_wait_for_new_records<L: EventLog>(log: &L, topic: &str) {
    log.ensure_topic(topic, 1).await.expect("create topic");
    let first: Vec<OutgoingRecord> = (0..10).map(|i| record("k", &format!("v{i}"), i)).collect();
    for r in log.append(topic, first).await {
        r.expect("append");
    }
    let middle = log
        .read(topic, 0, 6, 100, Duration::from_secs(10))
        .await
        .expect("read from the middle");
    let offsets: Vec<u64> = middle.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![6, 7, 8, 9]);

    let empty = log
        .read(topic, 0, 10, 100, Duration::from_millis(300))
        .await
        .expect("read at the end");
    assert!(empty.is_empty(), "nothing past the end: {empty:?}");

    let (tail, ()) = tokio::join!(
        log.read(topic, 0, 10, 100, Duration::from_secs(20)),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for r in log.append(topic, vec![record("k", "late", 10)]).await {
                r.expect("append");
            }
        }
    );
    let tail = tail.expect("tailing read");
    assert_eq!(
        tail.first().map(|r| r.payload.as_slice()),
        Some(&b"late"[..]),
        "a waiting read sees the new record"
    );
}

/// The wait is for the first record only. While records keep coming, one every 10 ms, a
/// read that may take 100,000 returns with those that have come, long before its wait
/// would run out: a reader tailing a steady stream must not hold every record back until
/// `max` of them are there (the scorer would score swipes seconds late).
pub async fn a_read_returns_what_has_come_while_records_keep_coming<L: EventLog>(
    log: &L,
    topic: &str,
) {
    const WAIT: Duration = Duration::from_secs(30);
    log.ensure_topic(topic, 1).await.expect("create topic");
    let reading = std::sync::atomic::AtomicBool::new(true);
    let started = std::time::Instant::now();
    let (read, written) = tokio::join!(
        async {
            let read = log.read(topic, 0, 0, 100_000, WAIT).await;
            reading.store(false, std::sync::atomic::Ordering::Relaxed);
            read
        },
        async {
            let mut written = 0u64;
            while reading.load(std::sync::atomic::Ordering::Relaxed) && started.elapsed() < WAIT {
                let r = record("k", &format!("s{written}"), written as i64);
                for r in log.append(topic, vec![r]).await {
                    r.expect("append");
                }
                written += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            written
        }
    );
    let took = started.elapsed();
    let read = read.expect("read while records keep coming");
    assert!(
        took < WAIT / 2,
        "a read returns what has come, not after its wait: took {took:?} of {WAIT:?} and \
         got {} of the {written} records written",
        read.len()
    );
    let offsets: Vec<u64> = read.iter().map(|r| r.offset).collect();
    let dense: Vec<u64> = (0..read.len() as u64).collect();
    assert!(!read.is_empty(), "the first record is returned");
    assert_eq!(offsets, dense, "from offset 0, dense");
}

/// Five readers of one partition, each at its own position and all at once (a projection
/// catching up and watches tailing, say), each get exactly the records from where they
/// ask: dense, in order, none skipped or repeated.
pub async fn readers_at_many_positions_get_dense_records<L: EventLog>(log: &L, topic: &str) {
    const RECORDS: u64 = 3_000;
    log.ensure_topic(topic, 1).await.expect("create topic");
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(100) {
        let records = chunk
            .iter()
            .map(|i| record("k", &format!("r{i}"), *i as i64))
            .collect();
        for r in log.append(topic, records).await {
            r.expect("append");
        }
    }
    let cursor = |start: u64, step: usize| async move {
        let mut next = start;
        let mut reads = 0;
        while next < RECORDS {
            let got = log
                .read(topic, 0, next, step, Duration::from_secs(20))
                .await
                .expect("read");
            assert!(!got.is_empty(), "a read at {next} found nothing");
            for r in &got {
                assert_eq!(
                    (r.offset, String::from_utf8_lossy(&r.payload).into_owned()),
                    (next, format!("r{next}")),
                    "a reader that started at {start} got a gap or a repeat"
                );
                next += 1;
            }
            reads += 1;
        }
        reads
    };
    let (a, b, c, d, e) = tokio::join!(
        cursor(0, 137),
        cursor(611, 59),
        cursor(1_222, 250),
        cursor(1_833, 41),
        cursor(2_444, 17),
    );
    assert!(a + b + c + d + e >= 5, "every reader read");
}

/// One record whose append was acknowledged, for crash checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub at: Appended,
    pub payload: Vec<u8>,
}

/// A consumer group: one member gets every partition; a second member takes half of
/// them, each partition owned by exactly one member, after the first released them; when
/// the second leaves, the first owns all again; when that one leaves too, a member that
/// joins next (a restarted service) gets every partition.
pub async fn group_members_share_partitions<L: EventLog>(log: &L, topic: &str) {
    const PARTITIONS: u32 = 4;
    let all: BTreeSet<u32> = (0..PARTITIONS).collect();
    log.ensure_topic(topic, PARTITIONS).await.expect("topic");
    let group = format!("{topic}-members");
    let mut a = Member::new(log.join_group(&group, topic).await.expect("join a"));
    a.until(
        |owned| owned == &all,
        "the only member owns every partition",
    )
    .await;

    let mut b = Member::new(log.join_group(&group, topic).await.expect("join b"));
    let wait = Duration::from_secs(90);
    tokio::time::timeout(wait, async {
        loop {
            let halves = a.owned.len() == 2 && b.owned.len() == 2;
            if halves && a.owned.union(&b.owned).copied().collect::<BTreeSet<_>>() == all {
                break;
            }
            tokio::select! {
                c = a.membership.next() => a.apply(c),
                c = b.membership.next() => b.apply(c),
            }
            assert!(
                a.owned.is_disjoint(&b.owned),
                "a partition has two owners: {:?} and {:?}",
                a.owned,
                b.owned
            );
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "two members split the partitions: {:?} {:?}",
            a.owned, b.owned
        )
    });

    b.membership.leave().await;
    a.until(
        |owned| owned == &all,
        "the member left takes back every partition",
    )
    .await;

    a.membership.leave().await;
    let mut c = Member::new(log.join_group(&group, topic).await.expect("join c"));
    c.until(
        |owned| owned == &all,
        "a member joining after the others left owns every partition",
    )
    .await;
}

/// A test member: follows its membership and keeps what it owns.
struct Member {
    membership: Membership,
    owned: BTreeSet<u32>,
}

impl Member {
    fn new(membership: Membership) -> Self {
        Self {
            membership,
            owned: BTreeSet::new(),
        }
    }

    fn apply(&mut self, change: Option<AssignmentChange>) {
        match change.expect("membership ended") {
            AssignmentChange::Assigned(ps) => {
                for p in ps {
                    assert!(self.owned.insert(p), "partition {p} assigned twice");
                }
            }
            AssignmentChange::Revoked(ps, done) => {
                for p in &ps {
                    assert!(self.owned.remove(p), "partition {p} revoked but not owned");
                }
                done.done();
            }
        }
    }

    async fn until(&mut self, goal: impl Fn(&BTreeSet<u32>) -> bool, what: &str) {
        let wait = Duration::from_secs(90);
        let reached = tokio::time::timeout(wait, async {
            while !goal(&self.owned) {
                let change = self.membership.next().await;
                self.apply(change);
            }
        })
        .await;
        assert!(
            reached.is_ok(),
            "{what}: owns {:?} after {wait:?}",
            self.owned
        );
    }
}

/// Appends `count` numbered records (`<tag>-<n>`) in batches of `batch`, returning the
/// acknowledged ones; stops early at the first failed batch.
pub async fn append_numbered<L: EventLog>(
    log: &L,
    topic: &str,
    tag: &str,
    count: usize,
    batch: usize,
) -> Vec<Acked> {
    let mut acked = Vec::new();
    let mut n = 0;
    while n < count {
        let records: Vec<OutgoingRecord> = (n..(n + batch).min(count))
            .map(|i| record(&format!("key-{}", i % 31), &format!("{tag}-{i}"), i as i64))
            .collect();
        n += records.len();
        let payloads: Vec<Vec<u8>> = records.iter().map(|r| r.payload.clone()).collect();
        let mut failed = false;
        for (payload, result) in payloads.into_iter().zip(log.append(topic, records).await) {
            match result {
                Ok(at) => acked.push(Acked { at, payload }),
                Err(_) => failed = true,
            }
        }
        if failed {
            break;
        }
    }
    acked
}

/// Every acknowledged record is at its partition and offset, and no payload appears in
/// the topic twice.
pub async fn verify_acknowledged<L: EventLog>(
    log: &L,
    topic: &str,
    partitions: u32,
    acked: &[Acked],
) {
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut at: HashMap<(u32, u64), Vec<u8>> = HashMap::new();
    for p in 0..partitions {
        let end = log.end_offset(topic, p).await.expect("end offset");
        for r in read_all(log, topic, p, end).await {
            *seen.entry(r.payload.clone()).or_default() += 1;
            at.insert((p, r.offset), r.payload);
        }
    }
    for a in acked {
        assert_eq!(
            at.get(&(a.at.partition, a.at.offset)),
            Some(&a.payload),
            "acknowledged record {} lost (partition {}, offset {})",
            String::from_utf8_lossy(&a.payload),
            a.at.partition,
            a.at.offset
        );
    }
    let twice: Vec<String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert!(twice.is_empty(), "records written twice: {twice:?}");
}

/// Reads `count` records of a partition from offset 0, checking that every read is dense
/// (starts where it was asked to and skips nothing).
pub async fn read_all<L: EventLog>(
    log: &L,
    topic: &str,
    partition: u32,
    count: u64,
) -> Vec<crate::Record> {
    let mut out: Vec<crate::Record> = Vec::new();
    while (out.len() as u64) < count {
        let from = out.len() as u64;
        let batch = log
            .read(topic, partition, from, 5_000, Duration::from_secs(30))
            .await
            .expect("read");
        assert!(
            !batch.is_empty(),
            "partition {partition} ended at {from} of {count} records"
        );
        for (expected, r) in (from..).zip(&batch) {
            assert_eq!(
                r.offset, expected,
                "a read of {topic}/{partition} from {from} skipped or repeated records"
            );
        }
        out.extend(batch);
    }
    out.truncate(count as usize);
    out
}

fn record(key: &str, payload: &str, timestamp_ms: i64) -> OutgoingRecord {
    OutgoingRecord {
        key: key.as_bytes().to_vec(),
        payload: payload.as_bytes().to_vec(),
        headers: vec![
            Header::new("content-type", "text/plain"),
            Header::new(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ],
        timestamp_ms,
    }
}

/// What [`Intercepted`] does with one append before the log sees it.
#[derive(Debug)]
pub enum BeforeAppend {
    /// Hand it to the log.
    Go,
    /// Wait, then hand it to the log (a slow disk or broker).
    Wait(Duration),
    /// Fail every record of it with this error; nothing is written (a log gone away).
    Refuse(LogError),
}

/// A log whose appends first ask `before_append` what to do: the faults a service's
/// tests put under the real service. Everything else goes straight to `inner`.
#[derive(Clone)]
pub struct Intercepted<L> {
    inner: L,
    before_append: std::sync::Arc<dyn Fn() -> BeforeAppend + Send + Sync>,
    /// Partitions whose records before an offset count as deleted (retention).
    deleted_before: HashMap<(String, u32), u64>,
}

impl<L> Intercepted<L> {
    pub fn new(inner: L, before_append: impl Fn() -> BeforeAppend + Send + Sync + 'static) -> Self {
        Self {
            inner,
            before_append: std::sync::Arc::new(before_append),
            deleted_before: HashMap::new(),
        }
    }

    /// As if retention had deleted `topic`'s partition `partition` before `offset`: its
    /// start offset is `offset`, and a read before it fails as Kafka's does
    /// (`OFFSET_OUT_OF_RANGE`).
    pub fn with_deleted_before(mut self, topic: &str, partition: u32, offset: u64) -> Self {
        self.deleted_before
            .insert((topic.to_owned(), partition), offset);
        self
    }

    fn deleted_before(&self, topic: &str, partition: u32) -> u64 {
        self.deleted_before
            .get(&(topic.to_owned(), partition))
            .copied()
            .unwrap_or(0)
    }
}

impl<L> std::fmt::Debug for Intercepted<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intercepted").finish_non_exhaustive()
    }
}

impl<L: EventLog> EventLog for Intercepted<L> {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, LogError> {
        self.inner.ensure_topic(topic, partitions).await
    }

    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Vec<Result<Appended, LogError>> {
        match (self.before_append)() {
            BeforeAppend::Go => {}
            BeforeAppend::Wait(delay) => tokio::time::sleep(delay).await,
            BeforeAppend::Refuse(e) => return e.for_each_record(records.len()),
        }
        self.inner.append(topic, records).await
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<crate::Record>, LogError> {
        let start = self.deleted_before(topic, partition);
        if from < start {
            return Err(LogError::Unavailable(format!(
                "reading {topic}/{partition} at {from}: offset out of range (the log starts at {start})"
            )));
        }
        self.inner.read(topic, partition, from, max, wait).await
    }

    async fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        let start = self.inner.start_offset(topic, partition).await?;
        Ok(start.max(self.deleted_before(topic, partition)))
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.inner.end_offset(topic, partition).await
    }

    async fn join_group(&self, group: &str, topic: &str) -> Result<Membership, LogError> {
        self.inner.join_group(group, topic).await
    }

    async fn check(&self) -> Result<(), LogError> {
        self.inner.check().await
    }

    async fn flush(&self, timeout: Duration) -> Result<(), LogError> {
        self.inner.flush(timeout).await
    }
}
