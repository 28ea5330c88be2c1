//! Work per owned partition: a service joins a consumer group on a topic and runs one task
//! per partition the group gives it, stopping a partition's task before the partition
//! moves to another member. Replicas of a service split the partitions between them, and
//! a replica that dies (its session times out) has its partitions handed to the others.
//!
//! With [`Liveness`], members also keep leases on the partitions they work on
//! (`churnguard_redis::leases`) and watch the group's: a partition nobody has held for a
//! lease's lifetime means the broker left it unowned (Tansu 0.6 does so when a member is
//! killed), and a member that sees that joins the group again as a new member, which makes
//! the broker hand out every partition afresh.
//!
//! Metrics, by group: the partitions this member works on
//! (`churnguard_group_partitions_owned`), the topic's partition count on a broker
//! (`churnguard_group_partitions`) and the rejoins (`churnguard_group_rejoins_total`),
//! so ops see partitions nobody works on (the PartitionsWithoutOwner alert).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use churnguard_config::{Backend, LogSettings};
use churnguard_eventlog::{AssignmentChange, EventLog, LogError, Membership};
use churnguard_redis::{PartitionLeases, RedisConnection, RedisLeases};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::consumer_metrics::{GROUP_PARTITIONS, GROUP_PARTITIONS_OWNED, GROUP_REJOINS_TOTAL};

/// The partitions a member works on right now, for observers (tests, status, metrics).
#[derive(Debug, Clone, Default)]
pub struct Owned(Arc<Mutex<BTreeSet<u32>>>);

impl Owned {
    /// The partitions owned at this moment.
    pub fn get(&self) -> BTreeSet<u32> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, partitions: impl Iterator<Item = u32>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = partitions.collect();
    }
}

/// Partition leases for a group's members (see the module docs): each member renews its
/// partitions' leases every third of `ttl`, and rejoins when one of the `partitions` has
/// had no lease for `ttl`. Make `ttl` the group's session timeout.
#[derive(Debug)]
pub struct Liveness<S> {
    pub leases: S,
    pub partitions: u32,
    pub ttl: Duration,
}

impl Liveness<RedisLeases> {
    /// Leases in Redis for a group on a topic of `partitions`, living a group session
    /// timeout, when `log` is a broker; `None` on the embedded log, whose in-process groups
    /// hand a leaving member's partitions on themselves.
    pub fn on_broker(log: &LogSettings, conn: &RedisConnection, partitions: u32) -> Option<Self> {
        (log.backend == Backend::Kafka).then(|| Self {
            leases: RedisLeases::new(conn.clone()),
            partitions,
            ttl: Duration::from_millis(log.kafka.group_session_timeout_ms),
        })
    }
}

/// Decides when a member should rejoin: some partition has been without a lease for the
/// whole `patience`. Quiet for twice the patience at the start and after each rejoin,
/// while the group forms and the new owners take their leases.
#[derive(Debug)]
struct OrphanWatch {
    patience: Duration,
    quiet_until: Instant,
    orphaned_since: Option<Instant>,
}

impl OrphanWatch {
    fn new(now: Instant, patience: Duration) -> Self {
        Self {
            patience,
            quiet_until: now + patience * 2,
            orphaned_since: None,
        }
    }

    /// One look at `now`: whether every partition is held. True when it is time to
    /// rejoin.
    fn observe(&mut self, now: Instant, all_held: bool) -> bool {
        if all_held || now < self.quiet_until {
            self.orphaned_since = None;
            return false;
        }
        let since = *self.orphaned_since.get_or_insert(now);
        if now.duration_since(since) < self.patience {
            return false;
        }
        self.orphaned_since = None;
        self.quiet_until = now + self.patience * 2;
        true
    }
}

/// Renews this member's leases and looks at the group's; rejoins when the watch says so.
async fn keep_leases<S: PartitionLeases>(
    liveness: &Liveness<S>,
    watch: &mut OrphanWatch,
    membership: &Membership,
    group: &str,
    mine: &[u32],
    rejoins: &metrics::Counter,
) {
    if let Err(e) = liveness
        .leases
        .hold(group, membership.member(), mine, liveness.ttl)
        .await
    {
        tracing::warn!(group, error = %e, "renewing partition leases failed");
    }
    match liveness.leases.held(group, liveness.partitions).await {
        Ok(held) => {
            let all = held.len() == liveness.partitions as usize;
            if watch.observe(Instant::now(), all) {
                let unheld: Vec<u32> = (0..liveness.partitions)
                    .filter(|p| !held.contains(p))
                    .collect();
                tracing::warn!(
                    group,
                    ?unheld,
                    "partitions without an owner; joining the group again"
                );
                rejoins.increment(1);
                membership.rejoin();
            }
        }
        Err(e) => tracing::warn!(group, error = %e, "reading partition leases failed"),
    }
}

/// Joins `group` on `topic` and, for every partition assigned to this member, runs
/// `work(partition, token)` on its own task until the partition is revoked (the token is
/// cancelled, the task awaited, and only then the revocation answered) or `stop` is
/// cancelled. Leaves the group at the end. `owned` follows the assignment. With
/// `liveness`, keeps partition leases and rejoins when the group leaves a partition
/// unowned.
///
/// Returns an error only if the group cannot be joined or the membership ends on its own
/// (the backend closed it).
pub async fn work_on_owned_partitions<L, S, W, Fut>(
    log: &L,
    group: &str,
    topic: &str,
    owned: &Owned,
    liveness: Option<&Liveness<S>>,
    stop: CancellationToken,
    work: W,
) -> Result<(), LogError>
where
    L: EventLog,
    S: PartitionLeases,
    W: Fn(u32, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut membership = log.join_group(group, topic).await?;
    // `owned` and its gauge follow the partitions with work running.
    let owned_gauge = metrics::gauge!(GROUP_PARTITIONS_OWNED, "group" => group.to_owned());
    let publish = |running: &HashMap<u32, _>| {
        owned.set(running.keys().copied());
        owned_gauge.set(running.len() as f64);
    };
    let rejoins = metrics::counter!(GROUP_REJOINS_TOTAL, "group" => group.to_owned());
    rejoins.increment(0);
    if let Some(liveness) = liveness {
        metrics::gauge!(GROUP_PARTITIONS, "group" => group.to_owned())
            .set(f64::from(liveness.partitions));
    }
    tracing::info!(
        member = membership.member(),
        group,
        topic,
        "joined the consumer group"
    );
    let every = liveness.map_or(Duration::from_secs(3600), |l| l.ttl / 3);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = OrphanWatch::new(Instant::now(), liveness.map_or(every, |l| l.ttl));
    let mut running: HashMap<u32, (CancellationToken, JoinHandle<()>)> = HashMap::new();
    let outcome = loop {
        tokio::select! {
            () = stop.cancelled() => break Ok(()),
            _ = ticks.tick(), if liveness.is_some() => {
                if let Some(liveness) = liveness {
                    let mine: Vec<u32> = running.keys().copied().collect();
                    keep_leases(liveness, &mut watch, &membership, group, &mine, &rejoins).await;
                }
            }
            change = membership.next() => match change {
                None => break Err(LogError::Closed),
                Some(AssignmentChange::Assigned(partitions)) => {
                    tracing::info!(group, topic, ?partitions, "partitions assigned");
                    for p in partitions {
                        let token = stop.child_token();
                        let task = tokio::spawn(work(p, token.clone()));
                        if let Some((old, task)) = running.insert(p, (token, task)) {
                            old.cancel();
                            let _ = task.await;
                        }
                    }
                    publish(&running);
                }
                Some(AssignmentChange::Revoked(partitions, done)) => {
                    tracing::info!(group, topic, ?partitions, "partitions revoked");
                    for p in partitions {
                        if let Some((token, task)) = running.remove(&p) {
                            token.cancel();
                            let _ = task.await;
                        }
                    }
                    publish(&running);
                    done.done();
                }
            },
        }
    };
    for (_, (token, task)) in running.drain() {
        token.cancel();
        let _ = task.await;
    }
    publish(&running);
    // Waits until the group has let go, so a successor finds the partitions free.
    membership.leave().await;
    outcome
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use churnguard_eventlog::embedded::EmbeddedLog;

    use super::*;

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("not within 5 s: {what}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn two_members_split_the_partitions_and_one_takes_all_when_the_other_leaves() {
        let dir = tempfile::tempdir().expect("dir");
        let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
        log.ensure_topic("t", 4).await.expect("topic");
        let working = Arc::new(AtomicUsize::new(0));
        let member = |owned: Owned, stop: CancellationToken| {
            let (log, working) = (log.clone(), working.clone());
            tokio::spawn(async move {
                let liveness = None::<&Liveness<churnguard_redis::MemoryLeases>>;
                work_on_owned_partitions(
                    log.as_ref(),
                    "g",
                    "t",
                    &owned,
                    liveness,
                    stop,
                    |_, token| {
                        let working = working.clone();
                        async move {
                            working.fetch_add(1, Ordering::SeqCst);
                            token.cancelled().await;
                            working.fetch_sub(1, Ordering::SeqCst);
                        }
                    },
                )
                .await
            })
        };
        let (a, b) = (Owned::default(), Owned::default());
        let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
        let task_a = member(a.clone(), stop_a.clone());
        eventually("a owns all four", || a.get().len() == 4).await;
        let task_b = member(b.clone(), stop_b.clone());
        eventually("two each", || a.get().len() == 2 && b.get().len() == 2).await;
        assert!(a.get().is_disjoint(&b.get()), "{:?} {:?}", a.get(), b.get());
        eventually("one task per partition", || {
            working.load(Ordering::SeqCst) == 4
        })
        .await;

        stop_b.cancel();
        task_b.await.expect("b").expect("b left");
        eventually("a owns all four again", || a.get().len() == 4).await;
        assert!(b.get().is_empty());
        stop_a.cancel();
        task_a.await.expect("a").expect("a left");
        assert_eq!(working.load(Ordering::SeqCst), 0, "every task stopped");
    }

    #[test]
    fn an_orphan_watch_rejoins_once_a_partition_has_gone_unheld_for_its_patience() {
        let t0 = Instant::now();
        let secs = |s: u64| t0 + Duration::from_secs(s);
        let mut w = OrphanWatch::new(t0, Duration::from_secs(6));
        // Quiet while the group forms (twice the patience).
        assert!(!w.observe(secs(1), false));
        assert!(!w.observe(secs(11), false));
        // Then a partition without a lease: only after the whole patience.
        assert!(!w.observe(secs(12), false));
        assert!(!w.observe(secs(17), false));
        assert!(w.observe(secs(18), false));
        // Quiet again after the rejoin, then judged afresh.
        assert!(!w.observe(secs(25), false));
        assert!(!w.observe(secs(31), false));
        assert!(!w.observe(secs(36), false));
        // A lease coming back resets the count.
        assert!(!w.observe(secs(37), true));
        assert!(!w.observe(secs(38), false));
        assert!(!w.observe(secs(43), false));
        assert!(w.observe(secs(44), false));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_member_holds_leases_on_what_it_owns_until_it_stops() {
        use churnguard_redis::{MemoryLeases, PartitionLeases};

        let dir = tempfile::tempdir().expect("dir");
        let log = Arc::new(EmbeddedLog::open(dir.path()).expect("log"));
        log.ensure_topic("t", 4).await.expect("topic");
        let liveness = Arc::new(Liveness {
            leases: MemoryLeases::default(),
            partitions: 4,
            ttl: Duration::from_millis(600),
        });
        let (owned, stop) = (Owned::default(), CancellationToken::new());
        let member = tokio::spawn({
            let (log, owned, stop, liveness) =
                (log.clone(), owned.clone(), stop.clone(), liveness.clone());
            async move {
                work_on_owned_partitions(
                    log.as_ref(),
                    "g",
                    "t",
                    &owned,
                    Some(liveness.as_ref()),
                    stop,
                    |_, token| async move { token.cancelled().await },
                )
                .await
            }
        });
        eventually("it owns all four", || owned.get().len() == 4).await;
        let mut held = BTreeSet::new();
        for _ in 0..40 {
            held = liveness.leases.held("g", 4).await.expect("held");
            if held.len() == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(held, BTreeSet::from([0, 1, 2, 3]), "leases on what it owns");
        // Renewed past their lifetime.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(liveness.leases.held("g", 4).await.expect("held").len(), 4);
        stop.cancel();
        member.await.expect("member").expect("left");
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            liveness.leases.held("g", 4).await.expect("held").is_empty(),
            "a member gone holds nothing once the leases run out"
        );
    }
}
