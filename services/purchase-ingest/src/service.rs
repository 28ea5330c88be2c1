//! The `PurchaseIngest` gRPC service: validate, then publish to the event log.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use churnguard_domain::{
    CardSwiped, CardTokenizer, CustomerInput, FieldViolation, SwipeDraft, SwipeLimits, Violations,
    envelope,
};
use churnguard_eventlog::{EventLog, Header, OutgoingRecord};
use churnguard_proto::ingest::v1 as pb;
use churnguard_proto::ingest::v1::purchase_ingest_server::PurchaseIngest;
use churnguard_telemetry::{TRACEPARENT, Telemetry};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::error::IngestError;

/// A clock, injectable for tests.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Everything a call needs; shared by all calls.
pub struct Core<L> {
    pub(crate) log: Arc<L>,
    pub(crate) topic: String,
    pub(crate) limits: SwipeLimits,
    pub(crate) tokenizer: Option<CardTokenizer>,
    pub(crate) publish_timeout: Duration,
    pub(crate) max_batch: usize,
    pub(crate) telemetry: Arc<Telemetry>,
    pub(crate) clock: Clock,
    /// One permit per swipe being published (`limits.max_in_flight_swipes`).
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) capacity_wait: Duration,
}

impl<L> std::fmt::Debug for Core<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl<L: EventLog> Core<L> {
    /// Validates and publishes a batch. Invalid swipes are answered on their own; the
    /// valid ones go to the log together, in order.
    pub(crate) async fn ingest(
        &self,
        swipes: Vec<pb::Swipe>,
        traceparent: Option<&str>,
        deadline: Option<Duration>,
    ) -> Vec<Result<pb::Accepted, IngestError>> {
        let now = (self.clock)();
        let mut outcomes: Vec<Option<Result<pb::Accepted, IngestError>>> =
            Vec::with_capacity(swipes.len());
        let mut valid = Vec::with_capacity(swipes.len());
        for swipe in swipes {
            match draft(swipe).validate(now, &self.limits, self.tokenizer.as_ref()) {
                Ok(s) => {
                    valid.push((outcomes.len(), s));
                    outcomes.push(None);
                }
                Err(v) => outcomes.push(Some(Err(IngestError::InvalidSwipe(v)))),
            }
        }
        if !valid.is_empty() {
            let timeout = deadline.map_or(self.publish_timeout, |d| d.min(self.publish_timeout));
            let started = tokio::time::Instant::now();
            let permits = tokio::time::timeout(
                timeout.min(self.capacity_wait),
                self.in_flight
                    .clone()
                    .acquire_many_owned(valid.len() as u32),
            )
            .await;
            let Ok(Ok(_permits)) = permits else {
                tracing::warn!(
                    swipes = valid.len(),
                    "too many swipes in flight; refusing the batch"
                );
                for (i, _) in valid {
                    outcomes[i] = Some(Err(IngestError::Overloaded));
                }
                return finish(outcomes);
            };
            let timeout = timeout.saturating_sub(started.elapsed());
            let span = self.telemetry.span("purchases.publish", traceparent);
            let traceparent = span.traceparent();
            // Each valid swipe becomes its record (moved, not cloned); its batch position
            // and event id are kept to answer with.
            let mut slots = Vec::with_capacity(valid.len());
            let mut records = Vec::with_capacity(valid.len());
            for (i, swipe) in valid {
                slots.push((i, swipe.event_id()));
                records.push(to_record(swipe, &traceparent));
            }
            let written =
                tokio::time::timeout(timeout, self.log.append(&self.topic, records)).await;
            match written {
                Ok(results) => {
                    for ((i, event_id), result) in slots.into_iter().zip(results) {
                        outcomes[i] = Some(
                            result
                                .map(|at| pb::Accepted {
                                    event_id,
                                    partition: at.partition,
                                    offset: at.offset,
                                })
                                .map_err(|e| {
                                    tracing::warn!(error = %e, trace_id = %span.trace_id(), "publishing a swipe failed");
                                    IngestError::Publish(e)
                                }),
                        );
                    }
                }
                Err(_) => {
                    tracing::warn!(?timeout, trace_id = %span.trace_id(), "event log did not acknowledge in time");
                    for (i, _) in slots {
                        outcomes[i] = Some(Err(IngestError::DeadlineExceeded(timeout)));
                    }
                }
            }
        }
        finish(outcomes)
    }
}

fn finish(
    outcomes: Vec<Option<Result<pb::Accepted, IngestError>>>,
) -> Vec<Result<pb::Accepted, IngestError>> {
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Err(IngestError::DeadlineExceeded(Duration::ZERO))))
        .collect()
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
        let traceparent = traceparent(request.metadata());
        let deadline = grpc_timeout(request.metadata());
        let Some(swipe) = request.into_inner().swipe else {
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
            .ingest(vec![swipe], traceparent.as_deref(), deadline)
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

    async fn stream_swipes(
        &self,
        request: Request<Streaming<pb::StreamSwipesRequest>>,
    ) -> Result<Response<Self::StreamSwipesStream>, Status> {
        let traceparent = traceparent(request.metadata());
        let deadline = grpc_timeout(request.metadata());
        let mut batches = request.into_inner();
        let core = self.core.clone();
        // Bounded: a client that does not read its answers stops being read from.
        let (answers, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let batch = match batches.message().await {
                    Ok(Some(batch)) => batch,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "swipe stream ended by the client");
                        break;
                    }
                };
                if batch.swipes.len() > core.max_batch {
                    let e = IngestError::BatchTooLarge {
                        size: batch.swipes.len(),
                        max: core.max_batch,
                    };
                    let _ = answers.send(Err(e.status())).await;
                    break;
                }
                let ids: Vec<String> = batch.swipes.iter().map(|s| s.swipe_id.clone()).collect();
                let outcomes = core
                    .ingest(batch.swipes, traceparent.as_deref(), deadline)
                    .await;
                let results = outcomes
                    .into_iter()
                    .zip(ids)
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
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
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

fn to_record(swipe: CardSwiped, traceparent: &str) -> OutgoingRecord {
    let key = swipe.customer.as_str().as_bytes().to_vec();
    let timestamp_ms = swipe.occurred_at.timestamp_millis();
    OutgoingRecord {
        key,
        payload: swipe.into_envelope().to_json(),
        headers: vec![
            Header::new("content-type", envelope::CONTENT_TYPE),
            Header::new(TRACEPARENT, traceparent),
        ],
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
