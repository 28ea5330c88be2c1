//! Complaints: filing (contact details checked and sealed before the aggregate sees
//! them), the other complaint commands, GetComplaint, and what a summary adds to the
//! complaint (the holder of its level, the next clock due, its priority).

use std::collections::HashMap;

use churnguard_domain::envelope::event_id;
use churnguard_domain::feedback::complaint::{
    self as domain, Complaint, ComplaintCommand, ComplaintError, FileComplaint, SealedContact,
};
use churnguard_domain::feedback::{Channel, Severity, Touchpoint};
use churnguard_domain::ids::{ComplaintId, CustomerKey, check_id};
use churnguard_domain::{Aggregate, CustomerInput, FieldViolation, Violations};
use churnguard_eventlog::EventLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_runtime::identity::Caller;
use tonic::Status;

use super::access;
use super::{FeedbackApi, complaint_id_of, failed, idempotency_key_of, invalid};
use crate::error::FeedbackError;
use crate::mapping::{
    ProtoEnum, command_input, contact_details_in, full_complaint, priority, summary, timestamp,
    timestamp_out,
};
use crate::{sla_clock, standing};

/// The event type the complaint id of a filing is derived from, with the filing's key.
const FILING_ID_TYPE: &str = "churnguard.feedback.complaint_filed.v1";

/// The complaint id a filing with `idempotency_key` gets: a retried filing lands on the
/// same complaint.
pub fn complaint_id_for(idempotency_key: &str) -> String {
    event_id(FILING_ID_TYPE, idempotency_key)
}

impl<L: EventLog> FeedbackApi<L> {
    /// FileComplaint. The caller must file for the request's store
    /// ([`access::may_file`]). Every field is checked before anything is sealed or
    /// appended; a retry answers with what its key filed.
    pub(super) async fn file(
        &self,
        caller: &Caller,
        req: pb::FileComplaintRequest,
    ) -> Result<Complaint, FeedbackError> {
        access::may_file(caller, &req.store_id)?;
        let id = ComplaintId::parse(complaint_id_for(&req.idempotency_key))
            .map_err(|e| FeedbackError::Corrupt(format!("derived complaint id: {e}")))?;
        // A retry files nothing new and answers with what the key filed, whatever the
        // rest of the request says: if the caller may file for its store (a key another
        // caller used for another store is refused as a filing for that store would be).
        if check_id(&req.idempotency_key).is_ok()
            && let Some(existing) = self.complaints.get(&id).await?
            && existing.idempotency_key == req.idempotency_key
        {
            access::may_file(caller, existing.store_id.as_str())?;
            return Ok(existing);
        }
        let now = self.complaints.now();
        let mut early = Vec::new();
        let occurred_at = match timestamp("occurred_at", &req.occurred_at) {
            Ok(t) => Some(t),
            Err(v) => {
                early.push(v);
                None
            }
        };
        let contact = match req.contact {
            None => {
                early.push(FieldViolation::new("contact", "is required"));
                None
            }
            Some(c) => {
                let details = contact_details_in(c);
                if let Err(v) = details.validate() {
                    early.extend(v.0);
                }
                Some(details)
            }
        };
        let (customer, vault_customer) = customer_input(req.customer);
        let mut command = FileComplaint {
            expected_version: None,
            complaint_id: id.clone(),
            idempotency_key: req.idempotency_key.clone(),
            customer,
            // A stand-in for the dry run: the real one is sealed only from valid input.
            contact: SealedContact::new(vec![0]),
            store_id: req.store_id,
            channel: command_input::<Channel>("channel", req.channel),
            touchpoint: command_input::<Touchpoint>("touchpoint", req.touchpoint),
            severity: command_input::<Severity>("severity", req.severity),
            description: req.description,
            occurred_at: occurred_at.unwrap_or(now),
        };
        // Every field is checked before anything is sealed or appended: the adapter's
        // own checks, then the aggregate's on a dry run.
        let dry = Complaint::handle(
            None,
            ComplaintCommand::FileComplaint(command.clone()),
            now,
            self.complaints.context(),
        );
        if let Err(ComplaintError::Invalid(v)) = dry {
            for f in v.0 {
                if !early.iter().any(|e| e.field == f.field) {
                    early.push(f);
                }
            }
        }
        if !early.is_empty() {
            return Err(ComplaintError::Invalid(Violations(early)).into());
        }
        let (Some(details), Some(key)) = (contact, vault_customer) else {
            return Err(FeedbackError::Corrupt(
                "filing passed its checks without contact or customer".into(),
            ));
        };
        let sealed = self
            .vault
            .seal(key.as_str(), &details.to_plaintext())
            .await?;
        command.contact = SealedContact::new(sealed);
        self.complaints
            .execute_as(
                &id,
                ComplaintCommand::FileComplaint(command),
                Some(&req.idempotency_key),
                caller.event_actor().as_deref(),
            )
            .await
    }

    /// Runs a complaint command. `command` is `Err` with the violation of a required
    /// message the request lacks. Bad request fields are reported all at once: the
    /// complaint id, the key and a missing message together with the command's own
    /// fields ([`domain::input_violations`]).
    ///
    /// A complaint the caller may not see ([`access::sees_complaint`]) answers exactly as
    /// one that does not exist (NOT_FOUND), before anything is appended. The check reads
    /// the complaint's store and level just before the command is decided (a separate
    /// read): a complaint escalated out of the caller's sight between the two (by another
    /// call or an SLA breach) still takes this one command.
    pub(super) async fn command(
        &self,
        caller: &Caller,
        complaint_id: &str,
        idempotency_key: &str,
        command: Result<ComplaintCommand, FieldViolation>,
    ) -> Result<pb::ComplaintSummary, Status> {
        let id =
            ComplaintId::parse(complaint_id).map_err(|e| FieldViolation::new("complaint_id", e));
        let key = idempotency_key_of(idempotency_key);
        let (id, key, command) = match (id, key, command) {
            (Ok(id), Ok(key), Ok(command)) => (id, key, command),
            (id, key, command) => {
                let mut bad: Vec<FieldViolation> =
                    [id.err(), key.err(), command.as_ref().err().cloned()]
                        .into_iter()
                        .flatten()
                        .collect();
                if let Ok(c) = &command {
                    bad.extend(domain::input_violations(c));
                }
                return Err(invalid(bad).status());
            }
        };
        self.visible(caller, &id).await.map_err(|e| failed(&e))?;
        let complaint = self
            .complaints
            .execute_as(&id, command, key, caller.event_actor().as_deref())
            .await
            .map_err(|e| failed(&e))?;
        self.summary_of(&complaint).await.map_err(|e| failed(&e))
    }

    /// `Ok` if the complaint exists and `caller` sees it; else NOT_FOUND, the same answer
    /// whether it does not exist or the caller may not see it. Loads nothing for callers
    /// that see every complaint (the command itself says whether it exists).
    async fn visible(&self, caller: &Caller, id: &ComplaintId) -> Result<(), FeedbackError> {
        if access::sees_every_complaint(caller) {
            return Ok(());
        }
        match self.complaints.get(id).await? {
            Some(c) if access::sees_complaint(caller, c.store_id.as_str(), c.level) => Ok(()),
            _ => Err(ComplaintError::NotFound.into()),
        }
    }

    /// A complaint's summary with what the complaint alone does not say: the holder of
    /// its level, the next clock due and its priority.
    pub(super) async fn summary_of(
        &self,
        c: &Complaint,
    ) -> Result<pb::ComplaintSummary, FeedbackError> {
        let id = c.id.as_str();
        let priorities = self
            .priorities(&[(id, c.severity, c.customer.key().as_str())])
            .await?;
        Ok(self.enrich(summary(c), c, priorities.get(id)))
    }

    /// Fills in what [`summary`] leaves unset: the holder of the complaint's level (from
    /// the directory), the next clock due (from the SLA policy) and `priority`.
    pub(super) fn enrich(
        &self,
        mut s: pb::ComplaintSummary,
        c: &Complaint,
        priority_of: Option<&domain::Priority>,
    ) -> pb::ComplaintSummary {
        if let Some(d) = &self.directory {
            s.holder_id = d
                .holder(c.level, c.store_id.as_str())
                .unwrap_or_default()
                .to_owned();
        }
        if let Some(sla) = self.complaints.projection().sla()
            && let Some((run, due)) = sla_clock::breach_dues(c, &sla.policy, &sla.directory)
                .into_iter()
                .min_by_key(|(run, due)| (*due, run.clock))
        {
            s.next_due_at = timestamp_out(due);
            s.next_due_clock = run.clock.to_proto();
        }
        s.priority = priority_of.map(priority);
        s
    }

    /// The priority of each complaint (id, severity, customer key): its customer's
    /// standing from churn signals and its incident history among the customer's
    /// complaints.
    pub(super) async fn priorities(
        &self,
        complaints: &[(&str, Severity, &str)],
    ) -> Result<HashMap<String, domain::Priority>, FeedbackError> {
        let mut customers: Vec<&str> = complaints.iter().map(|c| c.2).collect();
        customers.sort_unstable();
        customers.dedup();
        let projection = self.complaints.projection();
        let standings = standing::load(projection.connection(), &customers).await?;
        let incidents = projection.incidents(&customers).await?;
        let mut out = HashMap::with_capacity(complaints.len());
        for (id, severity, customer) in complaints {
            let (Some(standing), Some(all)) = (standings.get(*customer), incidents.get(*customer))
            else {
                continue;
            };
            let history = all
                .iter()
                .find(|i| i.complaint_id.as_str() == *id)
                .map(|this| domain::incident_history(this, all))
                .unwrap_or_default();
            out.insert(
                (*id).to_owned(),
                domain::priority(*severity, standing, &history),
            );
        }
        Ok(out)
    }

    /// GetComplaint: the complaint with its history read back from the log, the due time
    /// of each running clock, and the contact details only on request. A complaint the
    /// caller may not see ([`access::sees_complaint`]) answers as one that does not exist.
    pub(super) async fn get(
        &self,
        caller: &Caller,
        req: pb::GetComplaintRequest,
    ) -> Result<pb::Complaint, FeedbackError> {
        let id = complaint_id_of(&req.complaint_id)?;
        let complaint = self
            .complaints
            .get(&id)
            .await?
            .filter(|c| access::sees_complaint(caller, c.store_id.as_str(), c.level))
            .ok_or(ComplaintError::NotFound)?;
        let history = self.complaints.history(&id).await?;
        let contact = if req.include_contact {
            Some(self.contact_on_record(&complaint).await?)
        } else {
            None
        };
        let mut full = full_complaint(&complaint, &history, contact);
        full.summary = Some(self.summary_of(&complaint).await?);
        if let Some(sla) = self.complaints.projection().sla() {
            let dues = sla_clock::breach_dues(&complaint, &sla.policy, &sla.directory);
            for clock in &mut full.clocks {
                if let Some((_, due)) = dues.iter().find(|(run, _)| {
                    run.clock.to_proto() == clock.clock && run.level.to_proto() == clock.level
                }) {
                    clock.due_at = timestamp_out(*due);
                }
            }
        }
        Ok(full)
    }
}

/// Who a filing names, as the domain command takes it, and the customer key their contact
/// details are sealed under (if the id is one).
fn customer_input(customer: Option<pb::Customer>) -> (CustomerInput, Option<CustomerKey>) {
    match customer.and_then(|c| c.kind) {
        None => (CustomerInput::Missing, None),
        Some(pb::customer::Kind::CustomerId(v)) => {
            let k = CustomerKey::parse(v.as_str()).ok();
            (CustomerInput::CustomerId(v), k)
        }
        Some(pb::customer::Kind::CardToken(v)) => {
            let k = CustomerKey::parse(v.as_str()).ok();
            (CustomerInput::CardToken(v), k)
        }
    }
}
