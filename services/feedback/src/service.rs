//! Executing complaint commands: decide on the read model's state with the pure
//! aggregate, append the commit to the log, project up to it, and answer from the
//! outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use churnguard_domain::Aggregate;
use churnguard_domain::feedback::complaint::{
    Complaint, ComplaintCommand, ComplaintEvent, Context,
};
use churnguard_domain::feedback::outreach::{OutreachCase, OutreachCommand};
use churnguard_domain::ids::{ComplaintId, OutreachCaseId};
use churnguard_eventlog::{EventLog, OutgoingRecord};
use churnguard_runtime::Clock;

use crate::error::FeedbackError;
use crate::journal::{Commit, OutreachCommit};
use crate::projection::Projection;

/// How long a writer waits for the projection to reach its record.
const PROJECTION_DEADLINE: Duration = Duration::from_secs(10);

pub struct Complaints<L> {
    log: Arc<L>,
    projection: Projection,
    context: Context,
    clock: Clock,
}

impl<L> std::fmt::Debug for Complaints<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Complaints")
            .field("projection", &self.projection)
            .finish_non_exhaustive()
    }
}

impl<L: EventLog> Complaints<L> {
    pub fn new(log: Arc<L>, projection: Projection, context: Context, clock: Clock) -> Self {
        Self {
            log,
            projection,
            context,
            clock,
        }
    }

    /// The log commits are appended to.
    pub fn log(&self) -> &Arc<L> {
        &self.log
    }

    pub fn projection(&self) -> &Projection {
        &self.projection
    }

    /// The chain's settings commands are decided with.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The time by the service's clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// A complaint as it stands, after everything in the log before this call.
    pub async fn get(&self, id: &ComplaintId) -> Result<Option<Complaint>, FeedbackError> {
        let partition = self.projection.partition_of(id);
        self.projection
            .catch_up(self.log.as_ref(), partition, None)
            .await?;
        self.projection.load(id).await
    }

    /// Projects `partition` up to the end of the log as it is now.
    pub async fn catch_up(&self, partition: u32) -> Result<u64, FeedbackError> {
        self.projection
            .catch_up(self.log.as_ref(), partition, None)
            .await
    }

    /// A complaint's accepted events, oldest first, each with the state right after it,
    /// after everything in the log before this call. The projection keeps each event in
    /// the complaint's hash, so this reads one hash, not the log.
    pub async fn history(
        &self,
        id: &ComplaintId,
    ) -> Result<Vec<(ComplaintEvent, Complaint)>, FeedbackError> {
        let partition = self.projection.partition_of(id);
        self.projection
            .catch_up(self.log.as_ref(), partition, None)
            .await?;
        let mut state: Option<Complaint> = None;
        let mut out = Vec::new();
        for e in self.projection.events(id).await? {
            state = Complaint::apply(state, &e);
            if let Some(s) = &state {
                out.push((e, s.clone()));
            }
        }
        Ok(out)
    }

    /// Runs one command. `idempotency_key` makes a retry take effect once: a command
    /// whose key was used already answers with the complaint as it is.
    ///
    /// Errors: the aggregate's refusal (bad input naming the fields, wrong status,
    /// `VersionConflict` against the caller's expected version), or [`FeedbackError::Conflict`]
    /// when a concurrent command decided on the same version came first in the log. A
    /// concurrent call with the same idempotency key that came first is no conflict: this
    /// call is its retry and answers as one.
    pub async fn execute(
        &self,
        id: &ComplaintId,
        command: ComplaintCommand,
        idempotency_key: Option<&str>,
    ) -> Result<Complaint, FeedbackError> {
        self.execute_applied(id, command, idempotency_key)
            .await
            .map(|(c, _)| c)
    }

    /// As [`Complaints::execute`], also saying whether this call's commit took effect
    /// (`false`: the command changed nothing, e.g. a timer alarm already recorded).
    pub async fn execute_applied(
        &self,
        id: &ComplaintId,
        command: ComplaintCommand,
        idempotency_key: Option<&str>,
    ) -> Result<(Complaint, bool), FeedbackError> {
        let partition = self.projection.partition_of(id);
        // Decide on the latest state: everything in the log before us is projected.
        self.projection
            .catch_up(self.log.as_ref(), partition, None)
            .await?;
        let state = self.projection.load(id).await?;
        let base_version = state.as_ref().map_or(0, |s| s.version);
        if let Some(key) = idempotency_key {
            let (_, used) = self.projection.outcome(id, base_version, Some(key)).await?;
            if used.is_some() {
                return self.retried(id, key).await;
            }
        }
        let now = (self.clock)();
        let events = Complaint::handle(state.as_ref(), command, now, &self.context)?;
        if events.is_empty() {
            // Nothing to change (a retried filing, a timer that already fired).
            return state
                .map(|s| (s, false))
                .ok_or_else(|| FeedbackError::Corrupt("no events for a new complaint".into()));
        }
        let commit = Commit {
            complaint_id: id.clone(),
            base_version,
            commit_id: uuid::Uuid::new_v4().to_string(),
            idempotency_key: idempotency_key.map(str::to_owned),
            events,
        };
        self.append_and_project(commit.to_record(now)).await?;
        let (winner, used) = self
            .projection
            .outcome(id, base_version, idempotency_key)
            .await?;
        if let (Some(key), Some(_)) = (idempotency_key, used)
            && winner.as_deref() != Some(commit.commit_id.as_str())
        {
            // A concurrent call with the same key came first in the log: this call is a
            // retry of it, and answers as the retry would.
            return self.retried(id, key).await;
        }
        let now_state = self.projection.load(id).await?;
        let current = now_state.as_ref().map_or(0, |s| s.version);
        won(winner, &commit.commit_id, now_state, base_version, current)
    }

    /// The answer to a call whose idempotency key already produced a version: the
    /// complaint as it stands now (read after the key, so at or past that version).
    async fn retried(
        &self,
        id: &ComplaintId,
        key: &str,
    ) -> Result<(Complaint, bool), FeedbackError> {
        self.projection
            .load(id)
            .await?
            .map(|s| (s, false))
            .ok_or_else(|| FeedbackError::Corrupt(format!("key {key} used on no complaint")))
    }

    /// Appends one commit record and projects its partition up to it (in any process:
    /// whoever projects first, the outcome is the same).
    async fn append_and_project(&self, record: OutgoingRecord) -> Result<(), FeedbackError> {
        let appended = self
            .log
            .append(self.projection.topic(), vec![record])
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| {
                Err(churnguard_eventlog::LogError::Unavailable(
                    "the log answered no result".into(),
                ))
            })?;
        let started = Instant::now();
        loop {
            let reached = self
                .projection
                .catch_up(
                    self.log.as_ref(),
                    appended.partition,
                    Some(appended.offset + 1),
                )
                .await?;
            if reached > appended.offset {
                return Ok(());
            }
            if started.elapsed() > PROJECTION_DEADLINE {
                return Err(FeedbackError::Timeout {
                    partition: appended.partition,
                    offset: appended.offset,
                });
            }
        }
    }

    /// An outreach case as it stands, after everything in the log before this call.
    pub async fn get_case(
        &self,
        id: &OutreachCaseId,
    ) -> Result<Option<OutreachCase>, FeedbackError> {
        let partition = self.projection.partition_of_stream(id.as_str());
        self.projection
            .catch_up(self.log.as_ref(), partition, None)
            .await?;
        self.projection.load_case(id).await
    }

    /// Runs one outreach command, with the rules of [`Complaints::execute_applied`]: the
    /// answer says whether this call's commit took effect.
    pub async fn execute_outreach(
        &self,
        id: &OutreachCaseId,
        command: OutreachCommand,
        idempotency_key: Option<&str>,
    ) -> Result<(OutreachCase, bool), FeedbackError> {
        let partition = self.projection.partition_of_stream(id.as_str());
        self.projection
            .catch_up(self.log.as_ref(), partition, None)
            .await?;
        let state = self.projection.load_case(id).await?;
        let base_version = state.as_ref().map_or(0, |s| s.version);
        let unchanged = |state: Option<OutreachCase>| {
            state
                .map(|s| (s, false))
                .ok_or_else(|| FeedbackError::Corrupt(format!("{}: no case", id.as_str())))
        };
        if let Some(key) = idempotency_key {
            let (_, used) = self
                .projection
                .case_outcome(id, base_version, Some(key))
                .await?;
            if used.is_some() {
                return self.retried_case(id).await;
            }
        }
        let now = (self.clock)();
        let events = OutreachCase::handle(state.as_ref(), command, now, &())?;
        if events.is_empty() {
            return unchanged(state);
        }
        let commit = OutreachCommit {
            case_id: id.clone(),
            base_version,
            commit_id: uuid::Uuid::new_v4().to_string(),
            idempotency_key: idempotency_key.map(str::to_owned),
            events,
        };
        self.append_and_project(commit.to_record(now)).await?;
        let (winner, used) = self
            .projection
            .case_outcome(id, base_version, idempotency_key)
            .await?;
        if used.is_some() && winner.as_deref() != Some(commit.commit_id.as_str()) {
            // A concurrent call with the same key came first: answer as its retry.
            return self.retried_case(id).await;
        }
        let now_state = self.projection.load_case(id).await?;
        let current = now_state.as_ref().map_or(0, |s| s.version);
        won(winner, &commit.commit_id, now_state, base_version, current)
    }

    /// As [`Complaints::retried`], for an outreach case.
    async fn retried_case(
        &self,
        id: &OutreachCaseId,
    ) -> Result<(OutreachCase, bool), FeedbackError> {
        self.projection
            .load_case(id)
            .await?
            .map(|s| (s, false))
            .ok_or_else(|| FeedbackError::Corrupt(format!("{}: key used on no case", id.as_str())))
    }
}

/// The answer of a writer whose commit `commit_id` was decided on `base_version`: the
/// state, if `winner` (the commit accepted on that version) is its own; else a version
/// conflict naming the stream's `current` version.
fn won<S>(
    winner: Option<String>,
    commit_id: &str,
    state: Option<S>,
    base_version: u64,
    current: u64,
) -> Result<(S, bool), FeedbackError> {
    match (winner, state) {
        (Some(w), Some(s)) if w == commit_id => Ok((s, true)),
        _ => Err(FeedbackError::Conflict {
            expected: base_version,
            current,
        }),
    }
}
