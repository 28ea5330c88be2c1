//! WatchEscalations: reading the request; the stream itself is [`crate::watch`]'s.

use churnguard_domain::FieldViolation;
use churnguard_domain::feedback::Level;
use churnguard_eventlog::EventLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_runtime::identity::Caller;
use tonic::Status;

use super::{FeedbackApi, access, failed, invalid};
use crate::error::FeedbackError;
use crate::mapping::optional;
use crate::watch::{AlertStream, Filter, Position, Watcher};

impl<L: EventLog> FeedbackApi<L> {
    /// Starts a watch from the request's position (else from now) with its filters.
    /// Whatever they say, the stream carries only alerts about complaints the caller
    /// sees, at the alert's level ([`access::sees_complaint`]); callers that see none are
    /// refused (PERMISSION_DENIED).
    pub(super) async fn watch(
        &self,
        caller: Caller,
        req: pb::WatchEscalationsRequest,
    ) -> Result<AlertStream, Status> {
        access::may_list_complaints(&caller).map_err(|e| failed(&e))?;
        let partitions = self.complaints.projection().partitions();
        let watcher = Watcher {
            log: self.complaints.log().clone(),
            projection: self.complaints.projection().clone(),
            directory: self.directory.clone(),
            stopping: self.stopping.clone(),
        };
        let mut bad = Vec::new();
        let position = if req.from_position.is_empty() {
            None
        } else {
            Position::parse(&req.from_position, partitions)
                .map_err(|e| bad.push(FieldViolation::new("from_position", e)))
                .ok()
        };
        let level = optional::<Level>("level", req.level)
            .map_err(|v| bad.push(v))
            .ok()
            .flatten();
        if !bad.is_empty() {
            return Err(invalid(bad).status());
        }
        let from = match position {
            Some(p) => p,
            None => watcher.now().await.map_err(|e| failed(&e))?,
        };
        let some = |s: String| (!s.is_empty()).then_some(s);
        let filter = Filter {
            level,
            holder_id: some(req.holder_id),
            store_id: some(req.store_id),
            caller,
        };
        watcher
            .start(from, filter)
            .await
            .map_err(|e| failed(&e))?
            .map_err(|e| FeedbackError::invalid("from_position", e).status())
    }
}
