//! The `PurchaseIngest` gRPC service: validate, then publish to the event log.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use churnguard_domain::{
    CardSwiped, CardTokenizer, CustomerInput, FieldViolation, SwipeDraft, SwipeLimits, Violations,
    envelope,
};
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_server::PurchaseIngest;
use churnguard_runtime::Clock;
use churnguard_runtime::identity::Caller;
use churnguard_telemetry::{NotSampled, TRACEPARENT};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::error::IngestError;

/// Everything a call needs; shared by all calls.
pub struct Core<L> {
    pub(crate) log: Arc<L>,
    pub(crate) topic: String,
    pub(crate) limits: SwipeLimits,
    /// The limits of `historical` swipes; `None` where imports are not allowed.
    pub(crate) import_limits: Option<SwipeLimits>,
    pub(crate) tokenizer: Option<CardTokenizer>,
    pub(crate) publish_timeout: Duration,
    pub(crate) max_batch: usize,
    pub(crate) clock: Clock,
    /// One permit per swipe being published (`limits.max_in_flight_swipes`).
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) capacity_wait: Duration,
    /// Swipes one StreamSwipes call reads ahead (`limits.stream_read_ahead_swipes`).
    pub(crate) read_ahead: usize,
}

impl<L> std::fmt::Debug for Core<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// A call's trace: the caller's `traceparent`, and whether head sampling kept the call
/// (the runtime's tracing layer made its server span; its appends get producer spans).
#[derive(Debug, Clone)]
pub(crate) struct CallTrace {
    caller: Option<String>,
    sampled: bool,
}

impl CallTrace {
    fn of<T>(request: &Request<T>) -> Self {
        Self {
            caller: traceparent(request.metadata()),
            sampled: request.extensions().get::<NotSampled>().is_none(),
        }
    }
}

/// An append's producer span: one per append, whatever number of messages or calls
/// went into it, so a stream sending one swipe per message makes one span per append,
/// not one per swipe. Every record of the append carries its `traceparent`.
struct Producer {
    span: tracing::Span,
    traceparent: String,
}

impl Producer {
    /// Opens the span of an append of `records` records to `topic`, a child of the
    /// current span (the call's). A call head sampling did not keep gets none, and its
    /// records carry the caller's context or a new unsampled one; so do they where no
    /// subscriber traces spans (tests, benchmarks).
    fn open(topic: &str, records: usize, trace: &CallTrace) -> Self {
        let untraced = || churnguard_telemetry::untraced_traceparent(trace.caller.as_deref());
        if !trace.sampled {
            return Self {
                span: tracing::Span::none(),
                traceparent: untraced(),
            };
        }
        let span = tracing::info_span!(
            "publish",
            otel.name = %format_args!("send {topic}"),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "kafka",
            messaging.destination.name = %topic,
            messaging.operation.type = "send",
            messaging.operation.name = "publish",
            messaging.batch.message_count = records,
            messaging.destination.partition.id = tracing::field::Empty,
            messaging.kafka.destination.partition = tracing::field::Empty,
            messaging.kafka.offset = tracing::field::Empty,
        );
        let traceparent = churnguard_telemetry::traceparent_of(&span).unwrap_or_else(untraced);
        Self { span, traceparent }
    }

    /// Records where the records landed: the partition and the first offset when they
    /// all went to one partition; any failure makes the span an error.
    fn written<T>(&self, results: &[Result<churnguard_eventlog::Appended, T>]) {
        let mut partitions = results.iter().flatten().map(|a| a.partition);
        if let Some(first) = results.iter().flatten().next()
            && partitions.all(|p| p == first.partition)
        {
            self.span
                .record("messaging.kafka.destination.partition", first.partition)
                .record("messaging.destination.partition.id", first.partition)
                .record("messaging.kafka.offset", first.offset);
        }
        if results.iter().any(Result::is_err) {
            self.span.record("otel.status_code", "ERROR");
        }
    }

    fn failed(&self) {
        self.span.record("otel.status_code", "ERROR");
    }
}

/// Swipes as one request sent them: live, or history being imported.
pub(crate) struct Batch {
    pub(crate) swipes: Vec<pb::Swipe>,
    /// The request's `historical` flag.
    pub(crate) historical: bool,
}

/// Swipes validated and turned into records, not yet handed to the log.
pub(crate) struct Prepared {
    /// One per swipe: `Some` for those refused by validation, `None` for those to publish.
    outcomes: Vec<Option<Result<pb::Accepted, IngestError>>>,
    /// Each record's position among the swipes, and its event id.
    slots: Vec<(usize, String)>,
    /// Without their `traceparent` yet: the append's producer span gives it.
    records: Vec<OutgoingRecord>,
    /// The call's trace (see [`Producer::open`]).
    trace: CallTrace,
    /// The time the call allows, counted from `started`.
    timeout: Duration,
    started: tokio::time::Instant,
}

impl Prepared {
    /// How many swipes, valid or not.
    fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// Appends `more` after these swipes, to be written with them; the call's time still
    /// counts from the earlier start.
    fn absorb(&mut self, more: Prepared) {
        let base = self.outcomes.len();
        self.outcomes.extend(more.outcomes);
        self.slots
            .extend(more.slots.into_iter().map(|(i, id)| (base + i, id)));
        self.records.extend(more.records);
    }
}

impl<L: EventLog> Core<L> {
    /// Validates and publishes a batch. Invalid swipes are answered on their own; the
    /// valid ones go to the log together, in order.
    pub(crate) async fn ingest(
        &self,
        batch: Batch,
        caller: &Caller,
        trace: &CallTrace,
        deadline: Option<Duration>,
    ) -> Vec<Result<pb::Accepted, IngestError>> {
        self.publish(self.prepare(batch, caller, trace, deadline))
            .await
    }

    /// Validates the swipes and makes records of the valid ones: CPU only, so a stream can
    /// prepare its next append while the previous one is being written. A swipe of a
    /// store the caller may not act for (a gateway's certificate names another store) is
    /// refused before it is looked at, and so is a `historical` batch the deployment or
    /// the caller may not send.
    pub(crate) fn prepare(
        &self,
        Batch { swipes, historical }: Batch,
        caller: &Caller,
        trace: &CallTrace,
        deadline: Option<Duration>,
    ) -> Prepared {
        let started = tokio::time::Instant::now();
        let now = (self.clock)();
        crate::metrics::batch(swipes.len());
        // `None`: the batch is refused whole.
        let limits = match (historical, &self.import_limits) {
            (false, _) => Some(&self.limits),
            (true, Some(import)) if caller.may_import() => Some(import),
            (true, _) => None,
        };
        let ingested_ms = now.timestamp_millis().to_string();
        let mut outcomes = Vec::with_capacity(swipes.len());
        let mut slots = Vec::with_capacity(swipes.len());
        let mut records = Vec::with_capacity(swipes.len());
        let actor = caller.event_actor();
        for swipe in swipes {
            let Some(limits) = limits else {
                outcomes.push(Some(Err(match self.import_limits {
                    None => IngestError::ImportNotAllowed,
                    Some(_) => IngestError::ImportForbidden(caller.clone()),
                })));
                continue;
            };
            if !caller.may_act_for_store(&swipe.store_id) {
                outcomes.push(Some(Err(IngestError::OtherStore(caller.clone()))));
                continue;
            }
            match draft(swipe).validate(now, limits, self.tokenizer.as_ref()) {
                Ok(s) => {
                    // Moved into its record, not cloned; its position and event id are
                    // kept to answer with.
                    slots.push((outcomes.len(), s.event_id()));
                    records.push(to_record(s, &ingested_ms, actor.clone(), historical));
                    outcomes.push(None);
                }
                Err(v) => outcomes.push(Some(Err(IngestError::InvalidSwipe(v)))),
            }
        }
        Prepared {
            outcomes,
            slots,
            records,
            trace: trace.clone(),
            timeout: deadline.map_or(self.publish_timeout, |d| d.min(self.publish_timeout)),
            started,
        }
    }

    /// Publishes prepared records, within what is left of the call's time: waits (at most
    /// `capacity_wait`) for room under `max_in_flight_swipes`, then for the log. The
    /// append gets one producer span, whose context every record carries.
    pub(crate) async fn publish(
        &self,
        prepared: Prepared,
    ) -> Vec<Result<pb::Accepted, IngestError>> {
        let Prepared {
            outcomes,
            slots,
            mut records,
            trace,
            timeout,
            started,
        } = prepared;
        if records.is_empty() {
            return finish(outcomes);
        }
        let producer = Producer::open(&self.topic, records.len(), &trace);
        for record in &mut records {
            record
                .headers
                .push(Header::new(TRACEPARENT, producer.traceparent.as_str()));
        }
        // Log lines of the append belong to its span.
        let current = producer.span.clone();
        self.publish_records(outcomes, slots, records, &producer, timeout, started)
            .instrument(current)
            .await
    }

    async fn publish_records(
        &self,
        mut outcomes: Vec<Option<Result<pb::Accepted, IngestError>>>,
        slots: Vec<(usize, String)>,
        records: Vec<OutgoingRecord>,
        producer: &Producer,
        timeout: Duration,
        started: tokio::time::Instant,
    ) -> Vec<Result<pb::Accepted, IngestError>> {
        let timeout = timeout.saturating_sub(started.elapsed());
        let waited = tokio::time::Instant::now();
        let permits = tokio::time::timeout(
            timeout.min(self.capacity_wait),
            self.in_flight
                .clone()
                .acquire_many_owned(records.len() as u32),
        )
        .await;
        let Ok(Ok(_permits)) = permits else {
            tracing::warn!(
                swipes = records.len(),
                "too many swipes in flight; refusing the batch"
            );
            producer.failed();
            for (i, _) in slots {
                outcomes[i] = Some(Err(IngestError::Overloaded));
            }
            return finish(outcomes);
        };
        let timeout = timeout.saturating_sub(waited.elapsed());
        let handed = records.len() as f64;
        crate::metrics::in_flight(handed);
        let appending = tokio::time::Instant::now();
        let written = tokio::time::timeout(timeout, self.log.append(&self.topic, records)).await;
        crate::metrics::in_flight(-handed);
        if written.is_ok() {
            crate::metrics::published(appending.elapsed());
        }
        match written {
            Ok(results) => {
                producer.written(&results);
                for ((i, event_id), result) in slots.into_iter().zip(results) {
                    outcomes[i] = Some(
                        result
                            .map(|at| pb::Accepted {
                                event_id,
                                partition: at.partition,
                                offset: at.offset,
                            })
                            .map_err(|e| {
                                tracing::warn!(error = %e, "publishing a swipe failed");
                                IngestError::Publish(e)
                            }),
                    );
                }
            }
            Err(_) => {
                tracing::warn!(?timeout, "event log did not acknowledge in time");
                producer.failed();
                for (i, _) in slots {
                    outcomes[i] = Some(Err(IngestError::DeadlineExceeded(timeout)));
                }
            }
        }
        finish(outcomes)
    }
}

/// Every swipe's answer (counted for the metrics).
fn finish(
    outcomes: Vec<Option<Result<pb::Accepted, IngestError>>>,
) -> Vec<Result<pb::Accepted, IngestError>> {
    let answers: Vec<_> = outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Err(IngestError::DeadlineExceeded(Duration::ZERO))))
        .collect();
    crate::metrics::answered(&answers);
    answers
}

/// The gRPC face of [`Core`].
#[derive(Debug)]
pub struct IngestService<L> {
    core: Arc<Core<L>>,
}

impl<L> IngestService<L> {
    pub fn new(core: Arc<Core<L>>) -> Self {
        Self { core }
    }
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<pb::StreamSwipesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<L: EventLog> PurchaseIngest for IngestService<L> {
    async fn record_swipe(
        &self,
        request: Request<pb::RecordSwipeRequest>,
    ) -> Result<Response<pb::RecordSwipeResponse>, Status> {
        let trace = CallTrace::of(&request);
        let deadline = grpc_timeout(request.metadata());
        let caller = Caller::of(&request);
        let pb::RecordSwipeRequest { swipe, historical } = request.into_inner();
        let Some(swipe) = swipe else {
            return Err(
                IngestError::InvalidSwipe(Violations(vec![FieldViolation::new(
                    "swipe",
                    "is required",
                )]))
                .status(),
            );
        };
        let mut outcomes = self
            .core
            .ingest(
                Batch {
                    swipes: vec![swipe],
                    historical,
                },
                &caller,
                &trace,
                deadline,
            )
            .await;
        match outcomes.pop() {
            Some(Ok(accepted)) => Ok(Response::new(pb::RecordSwipeResponse {
                accepted: Some(accepted),
            })),
            Some(Err(e)) => Err(e.status()),
            None => Err(Status::internal("no outcome")),
        }
    }

    type StreamSwipesStream = ResultStream;

    /// Reads the call's messages ahead (up to `read_ahead` swipes) on one task while
    /// another publishes what has been read, one append at a time so the call's swipes keep
    /// their order, and answers each message in turn. Messages read while an append is in
    /// flight go to the log together in the next one.
    async fn stream_swipes(
        &self,
        request: Request<Streaming<pb::StreamSwipesRequest>>,
    ) -> Result<Response<Self::StreamSwipesStream>, Status> {
        let trace = CallTrace::of(&request);
        let deadline = grpc_timeout(request.metadata());
        let caller = Caller::of(&request);
        let batches = request.into_inner();
        let core = self.core.clone();
        let read_ahead = Arc::new(Semaphore::new(core.read_ahead));
        // Unbounded in count, bounded by the read-ahead permits each item holds.
        let (queue, queued) = mpsc::unbounded_channel();
        // Bounded: a client that does not read its answers stops being read from.
        let (answers, rx) = mpsc::channel(core.read_ahead.clamp(4, 1024));
        let reader = read_batches(batches, queue, read_ahead, core.max_batch);
        tokio::spawn(
            async move {
                let reader = AbortOnDrop(tokio::spawn(reader.in_current_span()));
                publish_batches(core, queued, answers, caller, trace, deadline).await;
                drop(reader);
            }
            .in_current_span(),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// What the reader hands the publisher, in stream order.
enum Read {
    /// A batch, holding read-ahead permits until it is taken into an append.
    Batch {
        batch: Batch,
        _room: OwnedSemaphorePermit,
    },
    /// The client finished sending.
    End,
    /// The stream cannot go on; answered with this status after the batches before it.
    Fail(Status),
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads batches as long as there is read-ahead room, and ends the queue with `End` or
/// `Fail`. A batch costs one permit per swipe (at least one, at most all of them).
async fn read_batches(
    mut batches: Streaming<pb::StreamSwipesRequest>,
    queue: mpsc::UnboundedSender<Read>,
    room: Arc<Semaphore>,
    max_batch: usize,
) {
    let capacity = room.available_permits().max(1);
    for index in 0_u64.. {
        let last = match batches.message().await {
            Ok(Some(batch)) if batch.swipes.len() > max_batch => {
                let e = IngestError::BatchTooLarge {
                    index,
                    size: batch.swipes.len(),
                    max: max_batch,
                };
                Read::Fail(e.status())
            }
            Ok(Some(batch)) => {
                let cost = batch.swipes.len().clamp(1, capacity) as u32;
                let Ok(permit) = room.clone().acquire_many_owned(cost).await else {
                    return;
                };
                let read = Read::Batch {
                    batch: Batch {
                        swipes: batch.swipes,
                        historical: batch.historical,
                    },
                    _room: permit,
                };
                if queue.send(read).is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => Read::End,
            Err(status) => {
                tracing::debug!(%status, index, "reading a swipe batch failed");
                Read::Fail(unreadable_batch(index, &status))
            }
        };
        let _ = queue.send(last);
        return;
    }
}

/// The status that ends a stream whose batch `index` (0-based) could not be read: the
/// caller learns which batch, why, and that it and everything after it was not processed.
fn unreadable_batch(index: u64, status: &Status) -> Status {
    Status::new(
        status.code(),
        format!(
            "batch {index} of the stream could not be read, so the stream ends here: {}. \
             Every batch before it was answered; batch {index} and any sent after it were \
             not processed: send them again on a new stream",
            status.message()
        ),
    )
}

/// An append of a stream: the sizes and swipe ids of its batches, and the task writing it
/// (which finishes even if the stream goes away, like any call in flight).
struct InFlight {
    sizes: Vec<usize>,
    ids: Vec<String>,
    written: tokio::task::JoinHandle<Vec<Result<pb::Accepted, IngestError>>>,
}

/// The next append of a stream, prepared while the one in flight is being written: the
/// batches read meanwhile, validated as they come.
struct Next {
    sizes: Vec<usize>,
    ids: Vec<String>,
    prepared: Prepared,
    /// No more batches fit (the read-ahead is reached, or the next batch is too big).
    full: bool,
}

/// Publishes what the reader queued and answers each batch, in order. One append is in
/// flight at a time (so the stream's swipes reach the log in the order sent); while it is
/// being written, the batches read meanwhile, up to the read-ahead, are validated into the
/// next one.
async fn publish_batches<L: EventLog>(
    core: Arc<Core<L>>,
    mut queued: mpsc::UnboundedReceiver<Read>,
    answers: mpsc::Sender<Result<pb::StreamSwipesResponse, Status>>,
    caller: Caller,
    trace: CallTrace,
    deadline: Option<Duration>,
) {
    let mut in_flight: Option<InFlight> = None;
    let mut next: Option<Next> = None;
    // A batch read that did not fit in the next append.
    let mut carried: Option<Read> = None;
    // How the stream ends, once everything before it is answered.
    let mut stop: Option<Read> = None;
    loop {
        if in_flight.is_none()
            && let Some(Next {
                sizes,
                ids,
                prepared,
                ..
            }) = next.take()
        {
            let core = core.clone();
            in_flight = Some(InFlight {
                sizes,
                ids,
                written: tokio::spawn(
                    async move { core.publish(prepared).await }.in_current_span(),
                ),
            });
        }
        if in_flight.is_none() && stop.is_some() {
            if let Some(Read::Fail(status)) = stop {
                let _ = answers.send(Err(status)).await;
            }
            return;
        }
        let can_read = stop.is_none() && !next.as_ref().is_some_and(|n| n.full);
        tokio::select! {
            biased;
            written = async { Some((&mut in_flight.as_mut()?.written).await) }, if in_flight.is_some() => {
                let Some(InFlight { sizes, ids, .. }) = in_flight.take() else { return };
                let Some(Ok(outcomes)) = written else {
                    tracing::error!(?written, "a stream's publishing task failed");
                    let _ = answers
                        .send(Err(Status::internal("the swipes could not be written")))
                        .await;
                    return;
                };
                if !answer(&answers, &sizes, ids, outcomes).await {
                    return;
                }
            }
            read = next_read(&mut carried, &mut queued), if can_read => {
                let Some(first) = read else {
                    // The reader ended without saying how: never end the call with OK.
                    tracing::error!("a stream's reader stopped");
                    stop = Some(Read::Fail(Status::internal("reading the stream failed")));
                    continue;
                };
                let taken = next.as_ref().map_or(0, |n| n.prepared.len());
                let (group, end) =
                    take_group(first, &mut queued, &mut carried, taken, core.read_ahead);
                stop = end;
                let sizes: Vec<usize> = group.iter().map(|b| b.swipes.len()).collect();
                let ids: Vec<String> = group
                    .iter()
                    .flat_map(|b| b.swipes.iter().map(|s| s.swipe_id.clone()))
                    .collect();
                // Each batch is validated as sent (live or historical); they go to the
                // log together.
                let prepared = group
                    .into_iter()
                    .map(|batch| core.prepare(batch, &caller, &trace, deadline))
                    .reduce(|mut all, more| {
                        all.absorb(more);
                        all
                    });
                if let Some(prepared) = prepared {
                    match &mut next {
                        Some(n) => {
                            n.sizes.extend(sizes);
                            n.ids.extend(ids);
                            n.prepared.absorb(prepared);
                        }
                        None => {
                            next = Some(Next {
                                sizes,
                                ids,
                                prepared,
                                full: false,
                            });
                        }
                    }
                }
                if let Some(n) = &mut next {
                    n.full = carried.is_some() || n.prepared.len() >= core.read_ahead;
                }
            }
        }
    }
}

/// The batch carried over, or the next one read.
async fn next_read(
    carried: &mut Option<Read>,
    queued: &mut mpsc::UnboundedReceiver<Read>,
) -> Option<Read> {
    match carried.take() {
        Some(read) => Some(read),
        None => queued.recv().await,
    }
}

/// `first` and the batches already read after it, as long as they fit with the `taken`
/// swipes in `max` (the first batch of an empty append always fits); the batch that does
/// not fit is carried over. Also returns how the stream ends if that was read (the
/// batches before it are in the group).
fn take_group(
    first: Read,
    queued: &mut mpsc::UnboundedReceiver<Read>,
    carried: &mut Option<Read>,
    taken: usize,
    max: usize,
) -> (Vec<Batch>, Option<Read>) {
    let mut group: Vec<Batch> = Vec::new();
    let mut size = taken;
    let mut read = Some(first);
    while let Some(item) = read.take() {
        match item {
            // Taking the swipes releases the batch's read-ahead permits: the reader may
            // read the next ones while these are prepared and written.
            Read::Batch { batch, .. } if size == 0 || size + batch.swipes.len() <= max => {
                size += batch.swipes.len();
                group.push(batch);
            }
            batch @ Read::Batch { .. } => {
                *carried = Some(batch);
                break;
            }
            end => return (group, Some(end)),
        }
        read = queued.try_recv().ok();
    }
    (group, None)
}

/// Sends one answer per batch of an append, in order. False when the client is gone.
async fn answer(
    answers: &mpsc::Sender<Result<pb::StreamSwipesResponse, Status>>,
    sizes: &[usize],
    ids: Vec<String>,
    outcomes: Vec<Result<pb::Accepted, IngestError>>,
) -> bool {
    let mut outcomes = outcomes.into_iter().zip(ids);
    for &size in sizes {
        let results = outcomes
            .by_ref()
            .take(size)
            .enumerate()
            .map(|(index, (outcome, swipe_id))| pb::SwipeResult {
                index: index as u32,
                swipe_id,
                outcome: Some(match outcome {
                    Ok(a) => pb::swipe_result::Outcome::Accepted(a),
                    Err(e) => pb::swipe_result::Outcome::Rejected(e.rejection()),
                }),
            })
            .collect();
        if answers
            .send(Ok(pb::StreamSwipesResponse { results }))
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

/// The draft the domain validates, from the wire message.
fn draft(s: pb::Swipe) -> SwipeDraft {
    use pb::swipe::Customer;
    let (minor_units, currency) = s
        .amount
        .map_or((0, String::new()), |a| (a.minor_units, a.currency));
    SwipeDraft {
        swipe_id: s.swipe_id,
        customer: match s.customer {
            None => CustomerInput::Missing,
            Some(Customer::CustomerId(v)) => CustomerInput::CustomerId(v),
            Some(Customer::CardToken(v)) => CustomerInput::CardToken(v),
            Some(Customer::CardNumber(v)) => CustomerInput::CardNumber(v),
        },
        store_id: s.store_id,
        terminal_id: s.terminal_id,
        employee_id: s.employee_id,
        occurred_at: s.occurred_at,
        amount_minor_units: minor_units,
        currency,
        item_count: s.item_count,
    }
}

/// The swipe as a log record: keyed by customer, stamped with its event time and with
/// when ingest accepted it (the end-to-end latency's start), and saying who sent it
/// (`actor`, where callers are identified). The append adds its trace context (see
/// [`Core::publish`]).
/// The record of an accepted swipe; one of an import (`historical`) says so in a header.
fn to_record(
    swipe: CardSwiped,
    ingested_ms: &str,
    actor: Option<String>,
    historical: bool,
) -> OutgoingRecord {
    let key = swipe.customer.as_str().as_bytes().to_vec();
    let timestamp_ms = swipe.occurred_at.timestamp_millis();
    let mut headers = vec![
        Header::new("content-type", envelope::CONTENT_TYPE),
        Header::new(envelope::INGESTED_AT_HEADER, ingested_ms),
    ];
    if historical {
        headers.push(Header::new(envelope::HISTORY_HEADER, "1"));
    }
    OutgoingRecord {
        key,
        payload: swipe.into_envelope().with_actor(actor).to_json(),
        headers,
        timestamp_ms,
    }
}

fn traceparent(metadata: &MetadataMap) -> Option<String> {
    metadata
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The caller's deadline from the `grpc-timeout` header (`<digits><H|M|S|m|u|n>`).
pub fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_timeout(v: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("grpc-timeout", v.parse().expect("ascii"));
        m
    }

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(
            grpc_timeout(&with_timeout("250m")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            grpc_timeout(&with_timeout("3S")),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            grpc_timeout(&with_timeout("2M")),
            Some(Duration::from_secs(120))
        );
        assert_eq!(grpc_timeout(&with_timeout("10")), None);
        assert_eq!(grpc_timeout(&with_timeout("m")), None);
        assert_eq!(grpc_timeout(&MetadataMap::new()), None);
    }
}
