//! Consumer-group membership: which partitions of a topic this instance works on.
//!
//! A service joins a group with [`crate::EventLog::join_group`] and follows the
//! [`AssignmentChange`]s of its [`Membership`]. Partitions are handed over cooperatively:
//! a member is told to stop working on a partition ([`AssignmentChange::Revoked`]) and
//! says when it has stopped ([`Revocation::done`], or dropping it) before the partition
//! goes to another member. Where work is applied exactly once by other means (the
//! scorer's checkpoint lives next to its state), the hand-over keeps members from doing
//! the same work twice; it is not what makes the result correct.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// How long a rebalance waits for a member to stop working on revoked partitions before
/// handing them over anyway.
pub const REVOCATION_TIMEOUT: Duration = Duration::from_secs(30);

/// A change of the partitions a member owns.
#[derive(Debug)]
pub enum AssignmentChange {
    /// Start working on these partitions.
    Assigned(Vec<u32>),
    /// Stop working on these partitions, then call [`Revocation::done`].
    Revoked(Vec<u32>, Revocation),
}

/// The member's answer to a revocation: done when called or dropped.
#[derive(Debug)]
pub struct Revocation(Option<oneshot::Sender<()>>);

impl Revocation {
    /// A revocation and the receiver that learns when it is done.
    pub fn new() -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Self(Some(tx)), rx)
    }

    /// The member has stopped working on the revoked partitions.
    pub fn done(mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Revocation {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// How long [`Membership::leave`] waits for the backend to confirm the member has left.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Membership of one consumer group on one topic. [`Membership::leave`] leaves the group
/// and returns once the backend has left it, so a successor that joins next (a restarted
/// service) finds the partitions free; dropping it starts leaving without waiting.
pub struct Membership {
    member: String,
    changes: mpsc::UnboundedReceiver<AssignmentChange>,
    on_leave: Option<Box<dyn FnOnce() + Send + Sync>>,
    left: Option<oneshot::Receiver<()>>,
    rejoin: Option<Box<dyn Fn() + Send + Sync>>,
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Membership")
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// For backends: a membership fed by `changes`; `on_leave` runs once when it ends.
    pub fn new(
        member: String,
        changes: mpsc::UnboundedReceiver<AssignmentChange>,
        on_leave: impl FnOnce() + Send + Sync + 'static,
    ) -> Self {
        Self {
            member,
            changes,
            on_leave: Some(Box::new(on_leave)),
            left: None,
            rejoin: None,
        }
    }

    /// For backends whose member can leave the group and join it again as a new member:
    /// `rejoin` starts that (see [`Membership::rejoin`]).
    #[must_use]
    pub fn rejoins_with(mut self, rejoin: impl Fn() + Send + Sync + 'static) -> Self {
        self.rejoin = Some(Box::new(rejoin));
        self
    }

    /// Leaves the group and joins it again as a new member, so that the broker forms a new
    /// generation over the members alive now: the way out when the group has left
    /// partitions without an owner. Its partitions are revoked and assigned anew, as in
    /// any rebalance. False where the backend has no such step (in-process groups, which
    /// never leave a partition unowned).
    pub fn rejoin(&self) -> bool {
        self.rejoin.as_ref().map(|rejoin| rejoin()).is_some()
    }

    /// For backends that leave in the background: `left` fires (or is dropped) once the
    /// member is out of the group, and [`Membership::leave`] waits for it.
    #[must_use]
    pub fn left_when(mut self, left: oneshot::Receiver<()>) -> Self {
        self.left = Some(left);
        self
    }

    /// This member's name in the group.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// The next change, or `None` once the backend has ended the membership.
    pub async fn next(&mut self) -> Option<AssignmentChange> {
        self.changes.recv().await
    }

    /// Leaves the group and waits (at most [`LEAVE_TIMEOUT`]) until the backend has.
    pub async fn leave(mut self) {
        self.start_leaving();
        if let Some(left) = self.left.take()
            && tokio::time::timeout(LEAVE_TIMEOUT, left).await.is_err()
        {
            tracing::warn!(member = %self.member, "the group did not confirm the leave in time");
        }
    }

    fn start_leaving(&mut self) {
        self.changes.close();
        if let Some(leave) = self.on_leave.take() {
            leave();
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.start_leaving();
    }
}

/// A sticky, balanced assignment of `partitions` to `members` (member -> partitions):
/// every member ends with ⌊n/m⌋ or ⌈n/m⌉ partitions, and keeps as many of the ones it
/// owns in `current` as that allows. The same inputs always give the same answer.
pub fn balance(
    partitions: u32,
    members: &[String],
    current: &BTreeMap<String, BTreeSet<u32>>,
) -> BTreeMap<String, BTreeSet<u32>> {
    let mut out: BTreeMap<String, BTreeSet<u32>> = members
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    if members.is_empty() {
        return out;
    }
    let n = partitions as usize;
    let base = n / members.len();
    let extra = n % members.len();
    // Members that already own the most keep the larger quotas (fewest moves).
    let mut order: Vec<&String> = out.keys().collect();
    order.sort_by_key(|m| std::cmp::Reverse(current.get(*m).map_or(0, BTreeSet::len)));
    let quota: BTreeMap<String, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| ((*m).clone(), base + usize::from(i < extra)))
        .collect();
    let mut taken = BTreeSet::new();
    for (member, owned) in &mut out {
        if let Some(before) = current.get(member) {
            for p in before.iter().filter(|p| **p < partitions) {
                if owned.len() < quota[member] && taken.insert(*p) {
                    owned.insert(*p);
                }
            }
        }
    }
    let mut free = (0..partitions).filter(|p| !taken.contains(p));
    for (member, owned) in &mut out {
        while owned.len() < quota[member] {
            match free.next() {
                Some(p) => {
                    owned.insert(p);
                }
                None => break,
            }
        }
    }
    out
}

/// An in-process group coordinator, for backends without a broker (the embedded log):
/// members in one process share a topic's partitions, with the same sticky balance and
/// cooperative hand-over a Kafka group gives.
#[derive(Debug, Default, Clone)]
pub struct LocalGroups {
    inner: Arc<Mutex<LocalInner>>,
}

#[derive(Debug, Default)]
struct LocalInner {
    next_member: u64,
    groups: HashMap<(String, String), LocalGroup>,
}

#[derive(Debug)]
struct LocalGroup {
    partitions: u32,
    members: BTreeMap<String, mpsc::UnboundedSender<AssignmentChange>>,
    owned: BTreeMap<String, BTreeSet<u32>>,
    /// One rebalance at a time per group.
    rebalancing: Arc<tokio::sync::Mutex<()>>,
}

impl LocalGroups {
    /// Adds a member to `group` on a topic of `partitions` partitions and rebalances.
    /// Must be called within a Tokio runtime.
    pub fn join(&self, group: &str, topic: &str, partitions: u32) -> Membership {
        let (tx, rx) = mpsc::unbounded_channel();
        let key = (group.to_owned(), topic.to_owned());
        let member = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner.next_member += 1;
            let member = format!("{group}-{}", inner.next_member);
            let g = inner
                .groups
                .entry(key.clone())
                .or_insert_with(|| LocalGroup {
                    partitions,
                    members: BTreeMap::new(),
                    owned: BTreeMap::new(),
                    rebalancing: Arc::default(),
                });
            g.members.insert(member.clone(), tx);
            member
        };
        // As with a broker, the assignment arrives on the membership once the others
        // have released what moves.
        let groups = self.clone();
        let balancing = key.clone();
        tokio::spawn(async move { groups.rebalance(&balancing).await });
        let groups = self.clone();
        let leaving = member.clone();
        Membership::new(member, rx, move || groups.leave(key, &leaving))
    }

    fn leave(&self, key: (String, String), member: &str) {
        {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(g) = inner.groups.get_mut(&key) {
                g.members.remove(member);
                g.owned.remove(member);
            }
        }
        // The survivors take over its partitions; without a runtime (process exit)
        // there is nobody left to tell.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let groups = self.clone();
            rt.spawn(async move { groups.rebalance(&key).await });
        }
    }

    async fn rebalance(&self, key: &(String, String)) {
        let Some(lock) = self.group(key, |g| g.rebalancing.clone()) else {
            return;
        };
        let _one_at_a_time = lock.lock().await;
        let Some((partitions, members, owned)) = self.group(key, |g| {
            let members: Vec<String> = g.members.keys().cloned().collect();
            (g.partitions, members, g.owned.clone())
        }) else {
            return;
        };
        let target = balance(partitions, &members, &owned);
        // First every member stops what moves away from it...
        let mut waits = Vec::new();
        for (member, now) in &owned {
            let lost: Vec<u32> = now
                .iter()
                .filter(|p| !target.get(member).is_some_and(|t| t.contains(p)))
                .copied()
                .collect();
            if lost.is_empty() {
                continue;
            }
            let (revocation, done) = Revocation::new();
            self.group(key, |g| {
                if let Some(tx) = g.members.get(member) {
                    let _ = tx.send(AssignmentChange::Revoked(lost.clone(), revocation));
                }
                if let Some(o) = g.owned.get_mut(member) {
                    o.retain(|p| !lost.contains(p));
                }
            });
            waits.push(done);
        }
        for done in waits {
            let _ = tokio::time::timeout(REVOCATION_TIMEOUT, done).await;
        }
        // ...then the new owners start.
        self.group(key, |g| {
            for (member, wanted) in &target {
                let Some(tx) = g.members.get(member) else {
                    continue; // left meanwhile; the next rebalance sees it
                };
                let have = g.owned.entry(member.clone()).or_default();
                let gained: Vec<u32> = wanted.difference(have).copied().collect();
                if !gained.is_empty() {
                    have.extend(&gained);
                    let _ = tx.send(AssignmentChange::Assigned(gained));
                }
            }
        });
    }

    fn group<T>(&self, key: &(String, String), f: impl FnOnce(&mut LocalGroup) -> T) -> Option<T> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.groups.get_mut(key).map(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m{i}")).collect()
    }

    #[test]
    fn every_partition_has_one_owner_and_loads_differ_by_at_most_one() {
        for partitions in 0..10 {
            for members in 1..6 {
                let a = balance(partitions, &names(members), &BTreeMap::new());
                let mut all: Vec<u32> = a.values().flatten().copied().collect();
                all.sort_unstable();
                assert_eq!(all, (0..partitions).collect::<Vec<_>>());
                let loads: Vec<usize> = a.values().map(BTreeSet::len).collect();
                let (lo, hi) = (loads.iter().min(), loads.iter().max());
                assert!(hi.unwrap_or(&0) - lo.unwrap_or(&0) <= 1, "{a:?}");
            }
        }
    }

    #[test]
    fn a_joining_member_takes_partitions_without_moving_the_rest() {
        let one = balance(6, &names(1), &BTreeMap::new());
        let two = balance(6, &names(2), &one);
        assert_eq!(two["m1"].len(), 3);
        assert!(two["m0"].is_subset(&one["m0"]), "m0 only loses: {two:?}");
        let three = balance(6, &names(3), &two);
        for m in ["m0", "m1"] {
            assert!(three[m].is_subset(&two[m]), "{m} only loses: {three:?}");
        }
        // A member leaving: the survivors keep theirs and split the orphans.
        let survivors = vec!["m0".to_owned(), "m2".to_owned()];
        let after = balance(6, &survivors, &three);
        for m in &survivors {
            assert!(
                three[m].is_subset(&after[m]),
                "{m} keeps its own: {after:?}"
            );
        }
    }
}
