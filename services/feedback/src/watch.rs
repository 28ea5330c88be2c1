//! The escalation watch: escalations, SLA warnings and SLA breaches read from
//! `feedback.events.v1` itself, so a client that reconnects from the position of the last
//! alert it handled loses nothing and sees nothing twice.
//!
//! A position holds, per partition, the offset of the next record to read and how many of
//! that record's events were already reported: `p0:12,p1:7+1,p2:0` (partition 1 resumes
//! at record 7, after its first event: a breach and the escalation it caused share one
//! commit). Clients treat it as opaque.
//!
//! Only accepted commits count. A watch starts anywhere in a partition, so it does not
//! know the complaint's version before a record; instead it projects the partition past
//! the record (`Projection::catch_up(.., Some(offset + 1))`) and reads the read model's
//! `w:<base version>`: the id of the commit accepted on that base version. A commit is
//! accepted iff that field is its own id. The field is written once (versions only grow)
//! by the projection, which applies [`crate::projection::accepts`] in log order, so the
//! watch agrees with the projection and with [`crate::Complaints::history`] without
//! writing the rule again.
//!
//! Each partition is followed by its own task polling [`EventLog::read`] with a wait;
//! the response stream merges them and stamps each alert with the position after it. The
//! tasks end when the client goes away (the stream is dropped) or at shutdown (the stream
//! ends with UNAVAILABLE).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use churnguard_domain::feedback::Level;
use churnguard_domain::feedback::complaint::{ComplaintEvent, EscalationReason};
use churnguard_domain::feedback::sla::Directory;
use churnguard_domain::ids::ComplaintId;
use churnguard_eventlog::{EventLog, Record};
use churnguard_proto::feedback::v1 as pb;
use churnguard_runtime::identity::Caller;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::error::FeedbackError;
use crate::journal::Commit;
use crate::mapping::{ProtoEnum, escalation_reason, timestamp_out};
use crate::projection::Projection;

/// How long one read waits for a new record before looking again.
const POLL_WAIT: Duration = Duration::from_millis(500);
/// Records read at once.
const BATCH: usize = 200;

/// Where a watch is: per partition, the next record and the events of it already seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position(Vec<(u64, u32)>);

impl Position {
    /// Parses a position of a topic with `partitions` partitions; the error says what is
    /// wrong with it.
    pub fn parse(s: &str, partitions: u32) -> Result<Self, String> {
        let n = partitions as usize;
        let mut seen: Vec<Option<(u64, u32)>> = vec![None; n];
        for part in s.split(',') {
            let bad = || {
                format!(
                    "is not a position of this stream: {}",
                    churnguard_domain::quoted(part)
                )
            };
            let (p, rest) = part
                .strip_prefix('p')
                .and_then(|r| r.split_once(':'))
                .ok_or_else(bad)?;
            let p: usize = p.parse().map_err(|_| bad())?;
            let (offset, skip) = match rest.split_once('+') {
                Some((o, k)) => (o, k.parse::<u32>().map_err(|_| bad())?),
                None => (rest, 0),
            };
            let offset: u64 = offset.parse().map_err(|_| bad())?;
            let slot = seen
                .get_mut(p)
                .ok_or_else(|| format!("names partition {p}, the stream has {partitions}"))?;
            if slot.replace((offset, skip)).is_some() {
                return Err(format!("names partition {p} twice"));
            }
        }
        seen.into_iter()
            .enumerate()
            .map(|(p, o)| o.ok_or_else(|| format!("lacks partition {p}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn encode(&self) -> String {
        self.0
            .iter()
            .enumerate()
            .map(|(p, (o, k))| {
                if *k == 0 {
                    format!("p{p}:{o}")
                } else {
                    format!("p{p}:{o}+{k}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Which alerts a watcher wants (unset matches all), and who watches: only alerts the
/// caller may see ([`crate::api::access::sees_complaint`], by the alert's store and
/// level) are delivered, whatever else the filter says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub level: Option<Level>,
    pub holder_id: Option<String>,
    pub store_id: Option<String>,
    pub caller: Caller,
}

impl Default for Filter {
    /// Every alert, for a caller that sees every complaint.
    fn default() -> Self {
        Self {
            level: None,
            holder_id: None,
            store_id: None,
            caller: Caller::Unidentified,
        }
    }
}

impl Filter {
    /// Whether the watcher gets `alert`, about a complaint at `level`.
    fn matches(&self, alert: &pb::EscalationAlert, level: Level) -> bool {
        crate::api::access::sees_complaint(&self.caller, &alert.store_id, level)
            && self.level.is_none_or(|l| l == level)
            && self
                .holder_id
                .as_ref()
                .is_none_or(|h| &alert.holder_id == h)
            && self.store_id.as_ref().is_none_or(|s| &alert.store_id == s)
    }
}

/// What a watch reads with.
pub struct Watcher<L> {
    pub log: Arc<L>,
    pub projection: Projection,
    pub directory: Option<Arc<Directory>>,
    /// Cancelled at shutdown.
    pub stopping: CancellationToken,
}

impl<L> std::fmt::Debug for Watcher<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("projection", &self.projection)
            .finish_non_exhaustive()
    }
}

impl<L> Clone for Watcher<L> {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            projection: self.projection.clone(),
            directory: self.directory.clone(),
            stopping: self.stopping.clone(),
        }
    }
}

/// The stream a watch answers with.
pub type AlertStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::WatchEscalationsResponse, Status>> + Send>,
>;

type Found = Result<(usize, (u64, u32), pb::EscalationAlert), Status>;

impl<L: EventLog> Watcher<L> {
    /// The current end of every partition: a watch from here sees only what comes next.
    pub async fn now(&self) -> Result<Position, FeedbackError> {
        let mut all = Vec::new();
        for p in 0..self.projection.partitions() {
            all.push((self.log.end_offset(self.projection.topic(), p).await?, 0));
        }
        Ok(Position(all))
    }

    /// Starts following the log after `from` (its offsets must not pass the partitions'
    /// ends: `Err` with what is wrong, for INVALID_ARGUMENT).
    pub async fn start(
        &self,
        from: Position,
        filter: Filter,
    ) -> Result<Result<AlertStream, String>, FeedbackError> {
        let ends = self.now().await?;
        for (p, ((o, _), (end, _))) in from.0.iter().zip(&ends.0).enumerate() {
            if o > end {
                return Ok(Err(format!(
                    "is past the end of partition {p} (offset {o}, end {end})"
                )));
            }
        }
        let (tx, rx) = mpsc::channel::<Found>(64);
        for (p, (offset, skip)) in from.0.iter().copied().enumerate() {
            let this = self.clone();
            let tx = tx.clone();
            let filter = filter.clone();
            tokio::spawn(async move {
                if let Err(status) = this.follow(p, offset, skip, &filter, &tx).await {
                    let _ = tx.send(Err(status)).await;
                }
            });
        }
        let mut cursor = from;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |found| {
            found.map(|(p, after, mut alert)| {
                cursor.0[p] = after;
                alert.position = cursor.encode();
                pb::WatchEscalationsResponse { alert: Some(alert) }
            })
        });
        Ok(Ok(Box::pin(stream)))
    }

    /// Follows one partition from `from`, sending every matching alert of an accepted
    /// commit; returns when the receiver is gone, `Err` to end the stream with.
    async fn follow(
        &self,
        p: usize,
        mut from: u64,
        mut skip: u32,
        filter: &Filter,
        tx: &mpsc::Sender<Found>,
    ) -> Result<(), Status> {
        let partition = u32::try_from(p).map_err(|_| Status::internal("partition"))?;
        let topic = self.projection.topic().to_owned();
        let mut known = HashMap::new();
        loop {
            if tx.is_closed() {
                return Ok(());
            }
            let records = self.read_from(&topic, partition, from).await?;
            let Some(last) = records.last() else { continue };
            if records[0].offset > from {
                return Err(Status::out_of_range(format!(
                    "from_position: partition {p} no longer holds offset {from}; catch up with ListComplaints, then watch from empty"
                )));
            }
            let next = last.offset + 1;
            let relevant: Vec<(u64, Commit)> = records
                .iter()
                .filter_map(|r| Commit::decode(&r.payload).ok().map(|c| (r.offset, c)))
                .filter(|(_, c)| c.events.iter().any(is_alert))
                .collect();
            if !relevant.is_empty() {
                self.projection
                    .catch_up(self.log.as_ref(), partition, Some(next))
                    .await
                    .map_err(|e| e.status())?;
            }
            for (offset, c) in relevant {
                let Some(alerts) = self.accepted_alerts(&c, &mut known, filter).await? else {
                    continue;
                };
                let skip = if offset == from { skip } else { 0 };
                if !send_alerts(tx, p, offset, skip, alerts).await {
                    return Ok(());
                }
            }
            from = next;
            skip = 0;
        }
    }

    /// The partition's next records from `from`, after waiting up to [`POLL_WAIT`] for
    /// one; UNAVAILABLE when the server shuts down.
    async fn read_from(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Result<Vec<Record>, Status> {
        tokio::select! {
            () = self.stopping.cancelled() => {
                Err(Status::unavailable("the server is shutting down: reconnect from the last position"))
            }
            r = self.log.read(topic, partition, from, BATCH, POLL_WAIT) => {
                r.map_err(|e| FeedbackError::from(e).status())
            }
        }
    }

    /// The alerts of commit `c` that `filter` matches, each with the index of its event
    /// in the commit; `None` if the commit was not accepted, or its complaint is not in
    /// the read model. `known` remembers each complaint's store and severity.
    async fn accepted_alerts(
        &self,
        c: &Commit,
        known: &mut HashMap<ComplaintId, (String, i32)>,
        filter: &Filter,
    ) -> Result<Option<Vec<(u32, pb::EscalationAlert)>>, Status> {
        let (winner, _) = self
            .projection
            .outcome(&c.complaint_id, c.base_version, None)
            .await
            .map_err(|e| e.status())?;
        if winner.as_deref() != Some(c.commit_id.as_str()) {
            return Ok(None);
        }
        let Some((store, severity)) = self.store_and_severity(&c.complaint_id, known).await? else {
            return Ok(None);
        };
        let alerts = c
            .events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let version = c.base_version + i as u64 + 1;
                let (a, level) = self.alert(c, e, version, &store, severity)?;
                if !filter.matches(&a, level) {
                    return None;
                }
                Some((u32::try_from(i).ok()?, a))
            })
            .collect();
        Ok(Some(alerts))
    }

    /// The store and the severity (as its proto number) of a complaint, which its alerts
    /// carry: from `known`, else from the read model (and then remembered). `None` if the
    /// read model does not have the complaint.
    async fn store_and_severity(
        &self,
        complaint: &ComplaintId,
        known: &mut HashMap<ComplaintId, (String, i32)>,
    ) -> Result<Option<(String, i32)>, Status> {
        if let Some(k) = known.get(complaint) {
            return Ok(Some(k.clone()));
        }
        let Some(c) = self
            .projection
            .load(complaint)
            .await
            .map_err(|e| e.status())?
        else {
            return Ok(None);
        };
        let k = (c.store_id.as_str().to_owned(), c.severity.to_proto());
        known.insert(complaint.clone(), k.clone());
        Ok(Some(k))
    }

    fn alert(
        &self,
        c: &Commit,
        e: &ComplaintEvent,
        version: u64,
        store: &str,
        severity: i32,
    ) -> Option<(pb::EscalationAlert, Level)> {
        let (kind, level, clock, percent, due_at, reason) = match e {
            ComplaintEvent::ComplaintEscalated { to, reason, .. } => {
                let clock = match reason {
                    EscalationReason::Breach { clock } => clock.to_proto(),
                    EscalationReason::Manual { .. } => 0,
                };
                // The new level's due times need the SLA calendar at that version: not
                // reported yet.
                (
                    pb::EscalationAlertKind::Escalated,
                    *to,
                    clock,
                    0,
                    String::new(),
                    Some(escalation_reason(reason)),
                )
            }
            ComplaintEvent::SlaWarningRaised {
                run,
                fraction_percent,
                due_at,
                ..
            } => (
                pb::EscalationAlertKind::WarningRaised,
                run.level,
                run.clock.to_proto(),
                u32::from(*fraction_percent),
                timestamp_out(*due_at),
                None,
            ),
            ComplaintEvent::SlaBreached { run, due_at, .. } => (
                pb::EscalationAlertKind::Breached,
                run.level,
                run.clock.to_proto(),
                0,
                timestamp_out(*due_at),
                None,
            ),
            _ => return None,
        };
        let holder_id = self
            .directory
            .as_ref()
            .and_then(|d| d.holder(level, store))
            .unwrap_or_default()
            .to_owned();
        let alert = pb::EscalationAlert {
            position: String::new(),
            complaint_id: c.complaint_id.as_str().to_owned(),
            complaint_version: version,
            store_id: store.to_owned(),
            kind: kind as i32,
            level: level.to_proto(),
            holder_id,
            clock,
            percent_elapsed: percent,
            due_at,
            at: timestamp_out(e.at()),
            reason,
            severity,
        };
        Some((alert, level))
    }
}

fn is_alert(e: &ComplaintEvent) -> bool {
    matches!(
        e,
        ComplaintEvent::ComplaintEscalated { .. }
            | ComplaintEvent::SlaWarningRaised { .. }
            | ComplaintEvent::SlaBreached { .. }
    )
}

/// Sends the alerts of the commit at `offset` of partition `p` (each with the index of
/// its event in the commit), but not those of the events before `skip`: each stamped
/// with the position after it. `false` if the receiver is gone.
async fn send_alerts(
    tx: &mpsc::Sender<Found>,
    p: usize,
    offset: u64,
    skip: u32,
    alerts: Vec<(u32, pb::EscalationAlert)>,
) -> bool {
    let count = alerts.len();
    for (k, (i, alert)) in alerts.into_iter().enumerate() {
        if i < skip {
            continue;
        }
        let after = if k + 1 == count {
            (offset + 1, 0)
        } else {
            (offset, i + 1)
        };
        if tx.send(Ok((p, after, alert))).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_bad_ones_say_why() {
        let p = Position::parse("p0:12,p1:7+1,p2:0", 3).expect("valid");
        assert_eq!(p, Position(vec![(12, 0), (7, 1), (0, 0)]));
        assert_eq!(p.encode(), "p0:12,p1:7+1,p2:0");
        assert_eq!(
            Position::parse("p2:0,p0:12,p1:7+1", 3).expect("any order"),
            p
        );
        for bad in [
            "",
            "garbage",
            "p0:1,p1:2",
            "p0:1,p1:2,p3:0",
            "p0:1,p0:2,p1:0",
            "p0:x,p1:0,p2:0",
            "p0:-1,p1:0,p2:0",
            "p0:1+,p1:0,p2:0",
        ] {
            assert!(Position::parse(bad, 3).is_err(), "{bad:?}");
        }
    }
}
