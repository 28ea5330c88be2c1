//! The gRPC API `churnguard.feedback.v1.Feedback` over the complaint write path
//! ([`Complaints`]) and the contact vault. Contact details are validated, sealed with the
//! customer's key and only then handed to the aggregate; they are never logged.
//!
//! Built: filing and every complaint command, GetComplaint (with the history read back
//! from the log, contact details only on request), EraseCustomerContact and the
//! escalation stream WatchEscalations ([`crate::watch`]) and ListComplaints (from the
//! projection's list index, [`crate::projection::ListEntry`]), and defector outreach:
//! ListOutreach (from the outreach list index, by due time), RecordOutreach and
//! GetDefectionReasons (from the per-day reasons counters).
//!
//! Summaries carry the holder of the complaint's level (from the directory), the next
//! clock due (from the SLA policy) and the priority: the domain's [`priority`] of the
//! severity, the customer's standing from churn signals ([`crate::standing`]) and the
//! incident history among the customer's complaints ([`incident_history`], from the
//! projection's per-customer hashes). ListComplaints orders by priority, highest first
//! (`lists.rs` says how it pages).
//!
//! [`priority`]: churnguard_domain::feedback::complaint::priority
//! [`incident_history`]: churnguard_domain::feedback::complaint::incident_history
//!
//! This file holds the service, its handlers (each reads its request and hands it on)
//! and what they share; the rest is cut by concern:
//!
//! - `access.rs`: who may do what ([`access`]), the one place the rules are written;
//! - `complaints.rs`: filing, the other complaint commands, GetComplaint and summaries;
//! - `lists.rs` and `paging.rs`: ListComplaints, and the pages of both lists;
//! - `outreach.rs`: ListOutreach, RecordOutreach and GetDefectionReasons;
//! - `contact.rs`: contact details on record and their erasure;
//! - `escalations.rs`: WatchEscalations' request.
//!
//! Messages are made from domain values, and request fields read, by [`crate::mapping`].

use std::sync::Arc;

use churnguard_domain::feedback::complaint::{
    AcknowledgeComplaint, AddComplaintUpdate, ComplaintCommand, ComplaintError, EscalateComplaint,
    RecordRootCause, RecordSatisfaction, ReopenComplaint, ResolveComplaint, RootCauseInput,
    SatisfactionInput, WaitOnCustomer,
};
use churnguard_domain::feedback::sla::Directory;
use churnguard_domain::feedback::{ContactMethod, Remedy, Touchpoint};
use churnguard_domain::ids::{ComplaintId, check_id};
use churnguard_domain::{FieldViolation, Violations};
use churnguard_eventlog::EventLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_server::Feedback;
use churnguard_redis::RedisConnection;
use churnguard_runtime::identity::Caller;
use churnguard_vault::{RedisKeyStore, Vault};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::error::FeedbackError;
use crate::mapping::command_input;
use crate::service::Complaints;
use crate::watch::AlertStream;

pub mod access;
mod complaints;
mod contact;
mod escalations;
mod lists;
mod outreach;
mod paging;

pub use complaints::complaint_id_for;
pub use contact::{ERASURES_KEY, erased_at_key, unavailable};
pub use outreach::MAX_REASON_DAYS;
pub use paging::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
// The messages made from domain values, also reachable here as they always were.
pub use crate::mapping::{outreach_case, summary};

/// The fully-qualified gRPC service name, as health checks report it.
pub const SERVICE_NAME: &str = "churnguard.feedback.v1.Feedback";

/// The Feedback service.
pub struct FeedbackApi<L> {
    complaints: Arc<Complaints<L>>,
    vault: Arc<Vault<RedisKeyStore>>,
    redis: RedisConnection,
    directory: Option<Arc<Directory>>,
    stopping: CancellationToken,
}

impl<L> std::fmt::Debug for FeedbackApi<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedbackApi").finish_non_exhaustive()
    }
}

impl<L: EventLog> FeedbackApi<L> {
    /// `redis` keeps the erasure times (the vault's key store knows only that a key was
    /// erased, not when).
    pub fn new(
        complaints: Arc<Complaints<L>>,
        vault: Arc<Vault<RedisKeyStore>>,
        redis: RedisConnection,
    ) -> Self {
        let directory = complaints
            .projection()
            .sla()
            .map(|s| Arc::new(s.directory.clone()));
        Self {
            complaints,
            vault,
            redis,
            directory,
            stopping: CancellationToken::new(),
        }
    }

    /// The directory of level holders alerts name (`holder_id`) and watchers filter by.
    /// Without it, the projection's SLA directory if it has one; else alerts name nobody.
    pub fn with_directory(mut self, directory: Directory) -> Self {
        self.directory = Some(Arc::new(directory));
        self
    }

    /// Cancelled when the server shuts down: open escalation streams end with UNAVAILABLE
    /// (clients reconnect from their last position).
    pub fn stopping(&self) -> CancellationToken {
        self.stopping.clone()
    }
}

#[tonic::async_trait]
impl<L: EventLog + 'static> Feedback for FeedbackApi<L> {
    async fn file_complaint(
        &self,
        request: Request<pb::FileComplaintRequest>,
    ) -> Result<Response<pb::FileComplaintResponse>, Status> {
        let caller = Caller::of(&request);
        let complaint = self
            .file(&caller, request.into_inner())
            .await
            .map_err(|e| failed(&e))?;
        let summary = self.summary_of(&complaint).await.map_err(|e| failed(&e))?;
        Ok(Response::new(pb::FileComplaintResponse {
            complaint: Some(summary),
        }))
    }

    async fn get_complaint(
        &self,
        request: Request<pb::GetComplaintRequest>,
    ) -> Result<Response<pb::GetComplaintResponse>, Status> {
        let caller = Caller::of(&request);
        let complaint = self
            .get(&caller, request.into_inner())
            .await
            .map_err(|e| failed(&e))?;
        Ok(Response::new(pb::GetComplaintResponse {
            complaint: Some(complaint),
        }))
    }

    async fn list_complaints(
        &self,
        request: Request<pb::ListComplaintsRequest>,
    ) -> Result<Response<pb::ListComplaintsResponse>, Status> {
        let caller = Caller::of(&request);
        self.list(&caller, request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| failed(&e))
    }

    async fn acknowledge_complaint(
        &self,
        request: Request<pb::AcknowledgeComplaintRequest>,
    ) -> Result<Response<pb::AcknowledgeComplaintResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let cmd = ComplaintCommand::AcknowledgeComplaint(AcknowledgeComplaint {
            expected_version: r.expected_version,
            method: command_input::<ContactMethod>("method", r.method),
            note: r.note,
        });
        let complaint = Some(
            self.command(&caller, &r.complaint_id, &r.idempotency_key, Ok(cmd))
                .await?,
        );
        Ok(Response::new(pb::AcknowledgeComplaintResponse {
            complaint,
        }))
    }

    async fn add_complaint_update(
        &self,
        request: Request<pb::AddComplaintUpdateRequest>,
    ) -> Result<Response<pb::AddComplaintUpdateResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let cmd = ComplaintCommand::AddComplaintUpdate(AddComplaintUpdate {
            expected_version: r.expected_version,
            note: r.note,
            from_customer: r.from_customer,
        });
        let complaint = Some(
            self.command(&caller, &r.complaint_id, &r.idempotency_key, Ok(cmd))
                .await?,
        );
        Ok(Response::new(pb::AddComplaintUpdateResponse { complaint }))
    }

    async fn wait_on_customer(
        &self,
        request: Request<pb::WaitOnCustomerRequest>,
    ) -> Result<Response<pb::WaitOnCustomerResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let cmd = ComplaintCommand::WaitOnCustomer(WaitOnCustomer {
            expected_version: r.expected_version,
            note: r.note,
        });
        let complaint = Some(
            self.command(&caller, &r.complaint_id, &r.idempotency_key, Ok(cmd))
                .await?,
        );
        Ok(Response::new(pb::WaitOnCustomerResponse { complaint }))
    }

    async fn escalate_complaint(
        &self,
        request: Request<pb::EscalateComplaintRequest>,
    ) -> Result<Response<pb::EscalateComplaintResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let cmd = ComplaintCommand::EscalateComplaint(EscalateComplaint {
            expected_version: r.expected_version,
            reason: r.reason,
        });
        let complaint = Some(
            self.command(&caller, &r.complaint_id, &r.idempotency_key, Ok(cmd))
                .await?,
        );
        Ok(Response::new(pb::EscalateComplaintResponse { complaint }))
    }

    async fn resolve_complaint(
        &self,
        request: Request<pb::ResolveComplaintRequest>,
    ) -> Result<Response<pb::ResolveComplaintResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let cmd = ComplaintCommand::ResolveComplaint(ResolveComplaint {
            expected_version: r.expected_version,
            remedies: r
                .remedies
                .iter()
                .enumerate()
                .map(|(i, v)| command_input::<Remedy>(&format!("remedies[{i}]"), *v))
                .collect(),
            summary: r.summary,
        });
        let complaint = Some(
            self.command(&caller, &r.complaint_id, &r.idempotency_key, Ok(cmd))
                .await?,
        );
        Ok(Response::new(pb::ResolveComplaintResponse { complaint }))
    }

    async fn reopen_complaint(
        &self,
        request: Request<pb::ReopenComplaintRequest>,
    ) -> Result<Response<pb::ReopenComplaintResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let cmd = ComplaintCommand::ReopenComplaint(ReopenComplaint {
            expected_version: r.expected_version,
            reason: r.reason,
        });
        let complaint = Some(
            self.command(&caller, &r.complaint_id, &r.idempotency_key, Ok(cmd))
                .await?,
        );
        Ok(Response::new(pb::ReopenComplaintResponse { complaint }))
    }

    async fn record_satisfaction(
        &self,
        request: Request<pb::RecordSatisfactionRequest>,
    ) -> Result<Response<pb::RecordSatisfactionResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let cmd = required("satisfaction", r.satisfaction).map(|s| {
            ComplaintCommand::RecordSatisfaction(RecordSatisfaction {
                expected_version: r.expected_version,
                satisfaction: SatisfactionInput {
                    score: s.score,
                    ownership: s.ownership,
                    felt_valued: s.felt_valued,
                    speed: s.speed,
                    sincere_regret: s.sincere_regret,
                    reason: s.reason,
                },
            })
        });
        let complaint = Some(
            self.command(&caller, &r.complaint_id, &r.idempotency_key, cmd)
                .await?,
        );
        Ok(Response::new(pb::RecordSatisfactionResponse { complaint }))
    }

    async fn record_root_cause(
        &self,
        request: Request<pb::RecordRootCauseRequest>,
    ) -> Result<Response<pb::RecordRootCauseResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let cmd = required("root_cause", r.root_cause).map(|rc| {
            ComplaintCommand::RecordRootCause(RecordRootCause {
                expected_version: r.expected_version,
                root_cause: RootCauseInput {
                    whys: rc.whys,
                    category: command_input::<Touchpoint>("root_cause.category", rc.category),
                    corrective_action: rc.corrective_action,
                },
            })
        });
        let complaint = Some(
            self.command(&caller, &r.complaint_id, &r.idempotency_key, cmd)
                .await?,
        );
        Ok(Response::new(pb::RecordRootCauseResponse { complaint }))
    }

    type WatchEscalationsStream = AlertStream;

    async fn watch_escalations(
        &self,
        request: Request<pb::WatchEscalationsRequest>,
    ) -> Result<Response<Self::WatchEscalationsStream>, Status> {
        let caller = Caller::of(&request);
        Ok(Response::new(
            self.watch(caller, request.into_inner()).await?,
        ))
    }

    async fn list_outreach(
        &self,
        request: Request<pb::ListOutreachRequest>,
    ) -> Result<Response<pb::ListOutreachResponse>, Status> {
        let caller = Caller::of(&request);
        self.list_cases(&caller, request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| failed(&e))
    }

    async fn record_outreach(
        &self,
        request: Request<pb::RecordOutreachRequest>,
    ) -> Result<Response<pb::RecordOutreachResponse>, Status> {
        let caller = Caller::of(&request);
        let case = self
            .record(&caller, request.into_inner())
            .await
            .map_err(|e| failed(&e))?;
        Ok(Response::new(pb::RecordOutreachResponse {
            outreach_case: Some(case),
        }))
    }

    async fn get_defection_reasons(
        &self,
        request: Request<pb::GetDefectionReasonsRequest>,
    ) -> Result<Response<pb::GetDefectionReasonsResponse>, Status> {
        let caller = Caller::of(&request);
        self.reasons(&caller, request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| failed(&e))
    }

    async fn erase_customer_contact(
        &self,
        request: Request<pb::EraseCustomerContactRequest>,
    ) -> Result<Response<pb::EraseCustomerContactResponse>, Status> {
        let caller = Caller::of(&request);
        let r = self
            .erase(&caller, request.into_inner())
            .await
            .map_err(|e| failed(&e))?;
        Ok(Response::new(r))
    }
}

/// The status of a failed call; trouble on our side is logged (never with request
/// contents: they may hold contact details).
fn failed(e: &FeedbackError) -> Status {
    let status = e.status();
    if matches!(
        status.code(),
        tonic::Code::Internal | tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
    ) {
        tracing::warn!(error = %e, "feedback call failed");
    }
    status
}

/// A complaint id of a request; INVALID_ARGUMENT naming `complaint_id` if it is not one.
fn complaint_id_of(value: &str) -> Result<ComplaintId, FeedbackError> {
    ComplaintId::parse(value).map_err(|e| FeedbackError::invalid("complaint_id", e))
}

/// INVALID_ARGUMENT naming every field in `bad`.
fn invalid(bad: Vec<FieldViolation>) -> FeedbackError {
    FeedbackError::Complaint(ComplaintError::Invalid(Violations(bad)))
}

/// An optional idempotency key: empty is none.
fn idempotency_key_of(key: &str) -> Result<Option<&str>, FieldViolation> {
    if key.is_empty() {
        return Ok(None);
    }
    check_id(key)
        .map(|()| Some(key))
        .map_err(|e| FieldViolation::new("idempotency_key", e))
}

/// A required message of a request.
fn required<T>(field: &str, value: Option<T>) -> Result<T, FieldViolation> {
    value.ok_or_else(|| FieldViolation::new(field, "is required"))
}
