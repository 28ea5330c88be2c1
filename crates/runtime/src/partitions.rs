//! Work per owned partition: a service joins a consumer group on a topic and runs one task
//! per partition the group gives it, stopping a partition's task before the partition
//! moves to another member. Replicas of a service split the partitions between them, and
//! a replica that dies (its session times out) has its partitions handed to the others.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use churnguard_eventlog::{AssignmentChange, EventLog, LogError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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

/// Joins `group` on `topic` and, for every partition assigned to this member, runs
/// `work(partition, token)` on its own task until the partition is revoked (the token is
/// cancelled, the task awaited, and only then the revocation answered) or `stop` is
/// cancelled. Leaves the group at the end. `owned` follows the assignment.
///
/// Returns an error only if the group cannot be joined or the membership ends on its own
/// (the backend closed it).
pub async fn work_on_owned_partitions<L, W, Fut>(
    log: &L,
    group: &str,
    topic: &str,
    owned: &Owned,
    stop: CancellationToken,
    work: W,
) -> Result<(), LogError>
where
    L: EventLog,
    W: Fn(u32, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut membership = log.join_group(group, topic).await?;
    tracing::info!(
        member = membership.member(),
        group,
        topic,
        "joined the consumer group"
    );
    let mut running: HashMap<u32, (CancellationToken, JoinHandle<()>)> = HashMap::new();
    let outcome = loop {
        tokio::select! {
            () = stop.cancelled() => break Ok(()),
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
                    owned.set(running.keys().copied());
                }
                Some(AssignmentChange::Revoked(partitions, done)) => {
                    tracing::info!(group, topic, ?partitions, "partitions revoked");
                    for p in partitions {
                        if let Some((token, task)) = running.remove(&p) {
                            token.cancel();
                            let _ = task.await;
                        }
                    }
                    owned.set(running.keys().copied());
                    done.done();
                }
            },
        }
    };
    for (_, (token, task)) in running.drain() {
        token.cancel();
        let _ = task.await;
    }
    owned.set(std::iter::empty());
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
                work_on_owned_partitions(log.as_ref(), "g", "t", &owned, stop, |_, token| {
                    let working = working.clone();
                    async move {
                        working.fetch_add(1, Ordering::SeqCst);
                        token.cancelled().await;
                        working.fetch_sub(1, Ordering::SeqCst);
                    }
                })
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
}
