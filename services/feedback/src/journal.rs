//! What goes on `feedback.events.v1`: one record per accepted command, keyed by the
//! complaint, in the CloudEvents envelope every churnguard event travels in.

use chrono::{DateTime, Utc};
use churnguard_domain::envelope::{DecodeError, Envelope};
use churnguard_domain::feedback::complaint::ComplaintEvent;
use churnguard_domain::ids::ComplaintId;
use churnguard_eventlog::{Header, OutgoingRecord};
use serde::{Deserialize, Serialize};

/// The envelope type of a commit.
pub const COMMIT_TYPE: &str = "churnguard.feedback.complaint_committed.v1";
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

impl Commit {
    /// The version after this commit.
    pub fn version_after(&self) -> u64 {
        self.base_version + self.events.len() as u64
    }

    /// The log record: keyed by the complaint, so a complaint's commits keep their order.
    pub fn to_record(&self, now: DateTime<Utc>) -> OutgoingRecord {
        let envelope = Envelope::new(
            self.commit_id.clone(),
            SOURCE.to_owned(),
            COMMIT_TYPE,
            Some(self.complaint_id.as_str().to_owned()),
            now.fixed_offset(),
            self,
        );
        OutgoingRecord {
            key: self.complaint_id.as_str().as_bytes().to_vec(),
            payload: envelope.to_json(),
            headers: vec![Header::new(
                "content-type",
                churnguard_domain::envelope::CONTENT_TYPE,
            )],
            timestamp_ms: now.timestamp_millis(),
        }
    }

    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        Ok(Envelope::<Commit>::decode(payload, COMMIT_TYPE)?.data)
    }
}
