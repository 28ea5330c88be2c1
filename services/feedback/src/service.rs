//! Executing commands on the service's aggregates (complaints, outreach cases), one
//! path for all: decide on the read model's state with the pure aggregate, append the
//! commit to the log, project up to it, and answer from the outcome. An aggregate takes
//! part by implementing [`churnguard_domain::Aggregate`] in the domain and [`Stream`]
//! here: nothing else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use churnguard_domain::Aggregate;
use churnguard_domain::feedback::complaint::{
    Complaint, ComplaintCommand, ComplaintEvent, Context,
};
use churnguard_domain::feedback::outreach::{OutreachCase, OutreachCommand, OutreachEvent};
use churnguard_domain::ids::{ComplaintId, OutreachCaseId};
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};
use churnguard_runtime::Clock;
use churnguard_telemetry::TRACEPARENT;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::error::FeedbackError;
use crate::journal::{Commit, OutreachCommit, StreamCommit};
use crate::projection::{Projection, case_key, complaint_key};

/// An aggregate kept on the events topic and in the read model: how its commands are
/// recorded and where its state is read.
pub trait Stream: Aggregate + Serialize + DeserializeOwned {
    /// The stream's id (the record key).
    type Id;
    /// The record of one accepted command.
    type Commit: StreamCommit<Event = Self::Event, State = Self>;
    /// What the stream is called in messages.
    const KIND: &'static str;

    fn id_str(id: &Self::Id) -> &str;

    /// What the command is called in spans (`FileComplaint`, `OpenOutreach`, ...).
    fn command_name(command: &Self::Command) -> &'static str;

    /// The commit of `events`, decided on `base_version` of stream `id`.
    fn commit(
        id: &Self::Id,
        base_version: u64,
        commit_id: String,
        idempotency_key: Option<String>,
        events: Vec<Self::Event>,
    ) -> Self::Commit;

    /// The commit's log record at `now`, saying who made the command (`actor`).
    fn record(commit: &Self::Commit, now: DateTime<Utc>, actor: Option<&str>) -> OutgoingRecord;

    /// The stream's hash in the read model of `partition`.
    fn hash_key(partition: u32, id: &str) -> String;
}

impl Stream for Complaint {
    type Id = ComplaintId;
    type Commit = Commit;
    const KIND: &'static str = "complaint";

    fn id_str(id: &ComplaintId) -> &str {
        id.as_str()
    }

    fn command_name(command: &ComplaintCommand) -> &'static str {
        command.name()
    }

    fn commit(
        id: &ComplaintId,
        base_version: u64,
        commit_id: String,
        idempotency_key: Option<String>,
        events: Vec<ComplaintEvent>,
    ) -> Commit {
        Commit {
            complaint_id: id.clone(),
            base_version,
            commit_id,
            idempotency_key,
            events,
        }
    }

    fn record(commit: &Commit, now: DateTime<Utc>, actor: Option<&str>) -> OutgoingRecord {
        commit.to_record(now, actor)
    }

    fn hash_key(partition: u32, id: &str) -> String {
        complaint_key(partition, id)
    }
}

impl Stream for OutreachCase {
    type Id = OutreachCaseId;
    type Commit = OutreachCommit;
    const KIND: &'static str = "outreach case";

    fn id_str(id: &OutreachCaseId) -> &str {
        id.as_str()
    }

    fn command_name(command: &OutreachCommand) -> &'static str {
        command.name()
    }

    fn commit(
        id: &OutreachCaseId,
        base_version: u64,
        commit_id: String,
        idempotency_key: Option<String>,
        events: Vec<OutreachEvent>,
    ) -> OutreachCommit {
        OutreachCommit {
            case_id: id.clone(),
            base_version,
            commit_id,
            idempotency_key,
            events,
        }
    }

    fn record(commit: &OutreachCommit, now: DateTime<Utc>, actor: Option<&str>) -> OutgoingRecord {
        commit.to_record(now, actor)
    }

    fn hash_key(partition: u32, id: &str) -> String {
        case_key(partition, id)
    }
}

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
        self.execute_as(id, command, idempotency_key, None).await
    }

    /// [`Complaints::execute`] for `actor` (who made the command; its commit record says
    /// so, [`churnguard_runtime::identity::Caller::event_actor`]).
    pub async fn execute_as(
        &self,
        id: &ComplaintId,
        command: ComplaintCommand,
        idempotency_key: Option<&str>,
        actor: Option<&str>,
    ) -> Result<Complaint, FeedbackError> {
        self.execute_applied(id, command, idempotency_key, actor)
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
        actor: Option<&str>,
    ) -> Result<(Complaint, bool), FeedbackError> {
        self.execute_on::<Complaint>(id, command, idempotency_key, actor, &self.context)
            .await
    }

    /// Runs one command on any [`Stream`], with the rules of [`Complaints::execute`]; the
    /// answer says whether this call's commit took effect. The command runs in a span, a
    /// child of the caller's (the gRPC call, the opener's signal, the SLA alarm), and its
    /// commit record carries that span's context in its `traceparent` header.
    pub async fn execute_on<A: Stream>(
        &self,
        id: &A::Id,
        command: A::Command,
        idempotency_key: Option<&str>,
        actor: Option<&str>,
        context: &A::Context,
    ) -> Result<(A, bool), FeedbackError>
    where
        FeedbackError: From<A::Error>,
    {
        let name = A::command_name(&command);
        let span = tracing::info_span!(
            "execute",
            otel.name = %format_args!("{} {name}", A::KIND),
            otel.kind = "internal",
            otel.status_code = tracing::field::Empty,
            feedback.stream.kind = A::KIND,
            feedback.stream.id = %A::id_str(id),
            feedback.command = name,
            feedback.applied = tracing::field::Empty,
        );
        let executed = self
            .execute_in_span::<A>(id, command, idempotency_key, actor, context)
            .instrument(span.clone())
            .await;
        match &executed {
            Ok((_, applied)) => {
                span.record("feedback.applied", applied);
            }
            // The service's trouble, not a refusal of the command.
            Err(
                FeedbackError::Redis { .. }
                | FeedbackError::Log(_)
                | FeedbackError::Corrupt(_)
                | FeedbackError::Timeout { .. },
            ) => {
                span.record("otel.status_code", "ERROR");
            }
            Err(_) => {}
        }
        executed
    }

    async fn execute_in_span<A: Stream>(
        &self,
        id: &A::Id,
        command: A::Command,
        idempotency_key: Option<&str>,
        actor: Option<&str>,
        context: &A::Context,
    ) -> Result<(A, bool), FeedbackError>
    where
        FeedbackError: From<A::Error>,
    {
        let stream = A::id_str(id);
        let hash = A::hash_key(self.projection.partition_of_stream(stream), stream);
        // Decide on the latest state: everything in the log before us is projected.
        self.catch_up_stream(stream).await?;
        let state: Option<A> = self.projection.load_stream(&hash).await?;
        let base_version = state.as_ref().map_or(0, Aggregate::version);
        if let Some(key) = idempotency_key {
            let (_, used) = self
                .projection
                .outcome_in(&hash, base_version, Some(key))
                .await?;
            if used.is_some() {
                return self.retried::<A>(&hash, stream).await;
            }
        }
        let now = (self.clock)();
        let events = A::handle(state.as_ref(), command, now, context)?;
        if events.is_empty() {
            // Nothing to change (a retried creation, a timer that already fired).
            return state.map(|s| (s, false)).ok_or_else(|| {
                FeedbackError::Corrupt(format!("{} {stream}: no events to create it", A::KIND))
            });
        }
        let commit_id = uuid::Uuid::new_v4().to_string();
        let commit = A::commit(
            id,
            base_version,
            commit_id.clone(),
            idempotency_key.map(str::to_owned),
            events,
        );
        let mut record = A::record(&commit, now, actor);
        if let Some(tp) = churnguard_telemetry::traceparent_of(&tracing::Span::current()) {
            record.headers.push(Header::new(TRACEPARENT, tp));
        }
        self.append_and_project(record).await?;
        let (winner, used) = self
            .projection
            .outcome_in(&hash, base_version, idempotency_key)
            .await?;
        if used.is_some() && winner.as_deref() != Some(commit_id.as_str()) {
            // A concurrent call with the same key came first in the log: this call is a
            // retry of it, and answers as the retry would.
            return self.retried::<A>(&hash, stream).await;
        }
        let now_state: Option<A> = self.projection.load_stream(&hash).await?;
        let current = now_state.as_ref().map_or(0, Aggregate::version);
        won(winner, &commit_id, now_state, base_version, current)
    }

    /// Projects the partition of `stream` up to the end of the log as it is now.
    async fn catch_up_stream(&self, stream: &str) -> Result<u64, FeedbackError> {
        let partition = self.projection.partition_of_stream(stream);
        self.projection
            .catch_up(self.log.as_ref(), partition, None)
            .await
    }

    /// The answer to a call whose idempotency key already produced a version: the stream
    /// as it stands now (read after the key, so at or past that version).
    async fn retried<A: Stream>(
        &self,
        hash: &str,
        stream: &str,
    ) -> Result<(A, bool), FeedbackError> {
        self.projection
            .load_stream::<A>(hash)
            .await?
            .map(|s| (s, false))
            .ok_or_else(|| {
                FeedbackError::Corrupt(format!(
                    "{} {stream}: its key was used, it is missing",
                    A::KIND
                ))
            })
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

    /// Runs one outreach command for `actor`, with the rules of
    /// [`Complaints::execute_applied`]: the answer says whether this call's commit took
    /// effect.
    pub async fn execute_outreach(
        &self,
        id: &OutreachCaseId,
        command: OutreachCommand,
        idempotency_key: Option<&str>,
        actor: Option<&str>,
    ) -> Result<(OutreachCase, bool), FeedbackError> {
        self.execute_on::<OutreachCase>(id, command, idempotency_key, actor, &())
            .await
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
