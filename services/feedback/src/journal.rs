//! What goes on `feedback.events.v1`: one record per accepted command, keyed by the
//! complaint or outreach case it changes, in the CloudEvents envelope every churnguard
//! event travels in. A complaint's commit and an outreach case's commit are two envelope
//! types on the one topic; [`Committed::decode`] reads either.

use chrono::{DateTime, Utc};
use churnguard_domain::Aggregate;
use churnguard_domain::envelope::{DecodeError, Envelope};
use churnguard_domain::feedback::complaint::{Complaint, ComplaintEvent};
use churnguard_domain::feedback::outreach::{OutreachCase, OutreachEvent};
use churnguard_domain::ids::{ComplaintId, OutreachCaseId};
use churnguard_eventlog::{Header, OutgoingRecord};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The envelope type of a complaint's commit.
pub const COMMIT_TYPE: &str = "churnguard.feedback.complaint_committed.v1";
/// The envelope type of an outreach case's commit.
pub const OUTREACH_COMMIT_TYPE: &str = "churnguard.feedback.outreach_committed.v1";
const SOURCE: &str = "churnguard/feedback";

/// One command's events on one complaint, decided on `base_version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub complaint_id: ComplaintId,
    /// The complaint's version the command was decided on (0: it did not exist).
    pub base_version: u64,
    /// Unique per attempt: the writer recognises its own commit in the read model.
    pub commit_id: String,
    /// The caller's key: a command retried with it takes effect once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub events: Vec<ComplaintEvent>,
}

/// One command's events on one outreach case, decided on `base_version`; the same rules
/// as a complaint's [`Commit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutreachCommit {
    pub case_id: OutreachCaseId,
    pub base_version: u64,
    pub commit_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub events: Vec<OutreachEvent>,
}

/// A record of `feedback.events.v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    Complaint(Commit),
    Outreach(OutreachCommit),
}

impl Committed {
    /// Decodes either kind of commit; anything else is an error naming what was found.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        match Commit::decode(payload) {
            Ok(c) => Ok(Self::Complaint(c)),
            Err(DecodeError::UnknownType { found, .. }) if found == OUTREACH_COMMIT_TYPE => {
                Envelope::<OutreachCommit>::decode(payload, OUTREACH_COMMIT_TYPE)
                    .map(|e| Self::Outreach(e.data))
            }
            Err(e) => Err(e),
        }
    }
}

/// What the projection needs of a commit, whichever stream it is on.
pub trait StreamCommit {
    type Event: Serialize;
    type State: Serialize + DeserializeOwned;
    /// The complaint or case id: the record key.
    fn stream(&self) -> &str;
    fn base_version(&self) -> u64;
    fn commit_id(&self) -> &str;
    fn idempotency_key(&self) -> Option<&str>;
    fn events(&self) -> &[Self::Event];
    /// The aggregate's fold.
    fn apply(state: Option<Self::State>, event: &Self::Event) -> Option<Self::State>;
    fn version(state: &Self::State) -> u64;
}

impl StreamCommit for Commit {
    type Event = ComplaintEvent;
    type State = Complaint;
    fn stream(&self) -> &str {
        self.complaint_id.as_str()
    }
    fn base_version(&self) -> u64 {
        self.base_version
    }
    fn commit_id(&self) -> &str {
        &self.commit_id
    }
    fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }
    fn events(&self) -> &[ComplaintEvent] {
        &self.events
    }
    fn apply(state: Option<Complaint>, event: &ComplaintEvent) -> Option<Complaint> {
        Complaint::apply(state, event)
    }
    fn version(state: &Complaint) -> u64 {
        state.version
    }
}

impl StreamCommit for OutreachCommit {
    type Event = OutreachEvent;
    type State = OutreachCase;
    fn stream(&self) -> &str {
        self.case_id.as_str()
    }
    fn base_version(&self) -> u64 {
        self.base_version
    }
    fn commit_id(&self) -> &str {
        &self.commit_id
    }
    fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }
    fn events(&self) -> &[OutreachEvent] {
        &self.events
    }
    fn apply(state: Option<OutreachCase>, event: &OutreachEvent) -> Option<OutreachCase> {
        OutreachCase::apply(state, event)
    }
    fn version(state: &OutreachCase) -> u64 {
        state.version
    }
}

/// The log record of a commit: keyed by its stream, so a stream's commits keep their
/// order.
fn record<T: Serialize>(
    commit_id: &str,
    stream: &str,
    event_type: &str,
    now: DateTime<Utc>,
    actor: Option<&str>,
    data: &T,
) -> OutgoingRecord {
    let envelope = Envelope::new(
        commit_id.to_owned(),
        SOURCE.to_owned(),
        event_type,
        Some(stream.to_owned()),
        now.fixed_offset(),
        data,
    )
    .with_actor(actor.map(str::to_owned));
    OutgoingRecord {
        key: stream.as_bytes().to_vec(),
        payload: envelope.to_json(),
        headers: vec![Header::new(
            "content-type",
            churnguard_domain::envelope::CONTENT_TYPE,
        )],
        timestamp_ms: now.timestamp_millis(),
    }
}

impl Commit {
    /// The log record, keyed by the complaint.
    /// The log record, keyed by the complaint, saying who made the command (`actor`).
    pub fn to_record(&self, now: DateTime<Utc>, actor: Option<&str>) -> OutgoingRecord {
        record(
            &self.commit_id,
            self.complaint_id.as_str(),
            COMMIT_TYPE,
            now,
            actor,
            self,
        )
    }

    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        Ok(Envelope::<Commit>::decode(payload, COMMIT_TYPE)?.data)
    }
}

impl OutreachCommit {
    /// The log record, keyed by the case, saying who made the command (`actor`).
    pub fn to_record(&self, now: DateTime<Utc>, actor: Option<&str>) -> OutgoingRecord {
        record(
            &self.commit_id,
            self.case_id.as_str(),
            OUTREACH_COMMIT_TYPE,
            now,
            actor,
            self,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_decode_and_others_are_named() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .expect("time")
            .to_utc();
        let outreach = OutreachCommit {
            case_id: OutreachCaseId::parse("o-1").expect("id"),
            base_version: 1,
            commit_id: "c-9".into(),
            idempotency_key: Some("k".into()),
            events: vec![],
        };
        let record = outreach.to_record(now, Some("store_manager:m-1"));
        let back = Committed::decode(&record.payload).expect("decodes");
        assert_eq!(back, Committed::Outreach(outreach));
        let json: serde_json::Value = serde_json::from_slice(&record.payload).expect("json");
        assert_eq!(json["actor"], "store_manager:m-1", "the envelope says who");
        let swipe = br#"{"specversion":"1.0","type":"churnguard.purchase.card_swiped.v1"}"#;
        match Committed::decode(swipe) {
            Err(DecodeError::UnknownType { found, .. }) => {
                assert_eq!(found, "churnguard.purchase.card_swiped.v1");
            }
            other => panic!("expected UnknownType, got {other:?}"),
        }
    }
}
