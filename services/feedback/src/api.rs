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
//! clock due (from the SLA policy) and the priority: the domain's
//! [`domain::priority`] of the severity, the customer's standing from churn signals
//! ([`crate::standing`]) and the incident history among the customer's complaints
//! ([`domain::incident_history`], from the projection's per-customer hashes).
//!
//! ListComplaints orders by priority (highest first), then oldest filed first, then
//! complaint id, as the proto says. The page token is `<score>:<filed_ms>:<id>` of the
//! last complaint returned; the next page starts after it (a priority that changes
//! between pages may move a complaint across the boundary).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use churnguard_domain::Aggregate;
use churnguard_domain::envelope::event_id;
use churnguard_domain::feedback::complaint::{
    self as domain, AcknowledgeComplaint, AddComplaintUpdate, Complainant, Complaint,
    ComplaintCommand, ComplaintError, ComplaintEvent, ComplaintStatus, ContactDetails,
    EscalateComplaint, EscalationReason, FileComplaint, RecordRootCause, RecordSatisfaction,
    ReopenComplaint, ResolveComplaint, RootCauseInput, SatisfactionInput, SealedContact, SlaClock,
    WaitOnCustomer,
};
use churnguard_domain::feedback::outreach::{
    Cause, DefectorState, OutreachCase, OutreachCommand, OutreachStatus, RecordOutreach,
    input_violations as outreach_input_violations,
};
use churnguard_domain::feedback::sla::Directory;
use churnguard_domain::feedback::{
    Channel, ContactMethod, DefectionReason, Level, OutreachOutcome, Remedy, Severity, Touchpoint,
};
use churnguard_domain::ids::{ComplaintId, CustomerKey, OutreachCaseId, check_id};
use churnguard_domain::{CustomerInput, quoted};
use churnguard_domain::{FieldViolation, Violations};
use churnguard_eventlog::EventLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_proto::feedback::v1::feedback_server::Feedback;
use churnguard_redis::RedisConnection;
use churnguard_vault::{KeyStore, RedisKeyStore, Vault, VaultError};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::error::FeedbackError;
use crate::projection::{CaseEntry, ListEntry};
use crate::service::Complaints;
use crate::sla_clock;
use crate::standing;
use crate::watch::{AlertStream, Filter, Position, Watcher};

/// The fully-qualified gRPC service name, as health checks report it.
pub const SERVICE_NAME: &str = "churnguard.feedback.v1.Feedback";

/// The event type the complaint id of a filing is derived from, with the filing's key.
const FILING_ID_TYPE: &str = "churnguard.feedback.complaint_filed.v1";

/// The Redis key holding when a customer's contact details were first erased.
pub fn erased_at_key(customer: &str) -> String {
    format!("fe:erased:{{{customer}}}")
}

/// The complaint id a filing with `idempotency_key` gets: a retried filing lands on the
/// same complaint.
pub fn complaint_id_for(idempotency_key: &str) -> String {
    event_id(FILING_ID_TYPE, idempotency_key)
}

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

    async fn watch(&self, req: pb::WatchEscalationsRequest) -> Result<AlertStream, Status> {
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
        let level = level_filter(req.level)
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
        };
        watcher
            .start(from, filter)
            .await
            .map_err(|e| failed(&e))?
            .map_err(|e| FeedbackError::invalid("from_position", e).status())
    }

    async fn file(&self, req: pb::FileComplaintRequest) -> Result<Complaint, FeedbackError> {
        let id = ComplaintId::parse(complaint_id_for(&req.idempotency_key))
            .map_err(|e| FeedbackError::Corrupt(format!("derived complaint id: {e}")))?;
        // A retry files nothing new and answers with what the key filed, whatever the
        // rest of the request says.
        if check_id(&req.idempotency_key).is_ok()
            && let Some(existing) = self.complaints.get(&id).await?
            && existing.idempotency_key == req.idempotency_key
        {
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
                let details = ContactDetails {
                    name: c.name,
                    phone: c.phone,
                    email: c.email,
                    address: c.address,
                };
                if let Err(v) = details.validate() {
                    early.extend(v.0);
                }
                Some(details)
            }
        };
        let (customer, vault_customer) = match req.customer.and_then(|c| c.kind) {
            None => (CustomerInput::Missing, None),
            Some(pb::customer::Kind::CustomerId(v)) => {
                let k = CustomerKey::parse(v.as_str()).ok();
                (CustomerInput::CustomerId(v), k)
            }
            Some(pb::customer::Kind::CardToken(v)) => {
                let k = CustomerKey::parse(v.as_str()).ok();
                (CustomerInput::CardToken(v), k)
            }
        };
        let mut command = FileComplaint {
            expected_version: None,
            complaint_id: id.clone(),
            idempotency_key: req.idempotency_key.clone(),
            customer,
            // A stand-in for the dry run: the real one is sealed only from valid input.
            contact: SealedContact::new(vec![0]),
            store_id: req.store_id,
            channel: word(Channel::ALL, Channel::as_str, req.channel),
            touchpoint: word(Touchpoint::ALL, Touchpoint::as_str, req.touchpoint),
            severity: word(Severity::ALL, Severity::as_str, req.severity),
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
            .execute(
                &id,
                ComplaintCommand::FileComplaint(command),
                Some(&req.idempotency_key),
            )
            .await
    }

    /// Runs a complaint command. `command` is `Err` with the violation of a required
    /// message the request lacks. Bad request fields are reported all at once: the
    /// complaint id, the key and a missing message together with the command's own
    /// fields ([`domain::input_violations`]).
    async fn command(
        &self,
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
        let complaint = self
            .complaints
            .execute(&id, command, key)
            .await
            .map_err(|e| failed(&e))?;
        self.summary_of(&complaint).await.map_err(|e| failed(&e))
    }

    /// A complaint's summary with what the complaint alone does not say: the holder of
    /// its level, the next clock due and its priority.
    async fn summary_of(&self, c: &Complaint) -> Result<pb::ComplaintSummary, FeedbackError> {
        let id = c.id.as_str();
        let priorities = self
            .priorities(&[(id, c.severity, c.customer.key().as_str())])
            .await?;
        Ok(self.enrich(summary(c), c, priorities.get(id)))
    }

    fn enrich(
        &self,
        mut s: pb::ComplaintSummary,
        c: &Complaint,
        priority: Option<&domain::Priority>,
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
            s.next_due_clock = code(SlaClock::ALL, &run.clock);
        }
        s.priority = priority.map(|p| pb::Priority {
            score: p.score,
            severity_points: p.severity_points,
            value_points: p.value_points,
            churn_points: p.churn_points,
            incident_points: p.incident_points,
        });
        s
    }

    /// The priority of each complaint (id, severity, customer key): its customer's
    /// standing from churn signals and its incident history among the customer's
    /// complaints.
    async fn priorities(
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

    async fn get(&self, req: pb::GetComplaintRequest) -> Result<pb::Complaint, FeedbackError> {
        let id = complaint_id_of(&req.complaint_id)?;
        let complaint = self
            .complaints
            .get(&id)
            .await?
            .ok_or(ComplaintError::NotFound)?;
        let history = self.complaints.history(&id).await?;
        let contact = if req.include_contact {
            Some(self.contact_on_record(&complaint).await?)
        } else {
            None
        };
        let mut full = full(&complaint, &history, contact);
        full.summary = Some(self.summary_of(&complaint).await?);
        if let Some(sla) = self.complaints.projection().sla() {
            let dues = sla_clock::breach_dues(&complaint, &sla.policy, &sla.directory);
            for clock in &mut full.clocks {
                if let Some((_, due)) = dues.iter().find(|(run, _)| {
                    code(SlaClock::ALL, &run.clock) == clock.clock
                        && code(Level::ALL, &run.level) == clock.level
                }) {
                    clock.due_at = timestamp_out(*due);
                }
            }
        }
        Ok(full)
    }

    async fn contact_on_record(
        &self,
        complaint: &Complaint,
    ) -> Result<pb::ContactOnRecord, FeedbackError> {
        let customer = complaint.customer.key().as_str();
        let state = match self
            .vault
            .open(customer, complaint.contact.as_bytes())
            .await
        {
            Ok(plain) => {
                let d = ContactDetails::from_plaintext(&plain).ok_or_else(|| {
                    FeedbackError::Corrupt("sealed contact details do not parse".into())
                })?;
                pb::contact_on_record::State::Details(pb::ContactDetails {
                    name: d.name,
                    phone: d.phone,
                    email: d.email,
                    address: d.address,
                })
            }
            Err(VaultError::Erased) => {
                pb::contact_on_record::State::ErasedAt(self.erased_at(customer).await?)
            }
            Err(e) => match unavailable(&e) {
                Some(why) => {
                    tracing::warn!(complaint = %complaint.id.as_str(), error = %e, "contact details on record cannot be opened");
                    pb::contact_on_record::State::Unavailable(why.to_owned())
                }
                None => return Err(e.into()),
            },
        };
        Ok(pb::ContactOnRecord { state: Some(state) })
    }

    async fn erased_at(&self, customer: &str) -> Result<String, FeedbackError> {
        let mut conn = self.redis.clone();
        let at: Option<String> = redis::cmd("GET")
            .arg(erased_at_key(customer))
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("GET erased_at"))?;
        Ok(at.unwrap_or_default())
    }

    async fn erase(
        &self,
        req: pb::EraseCustomerContactRequest,
    ) -> Result<pb::EraseCustomerContactResponse, FeedbackError> {
        let (field, value) = match req.customer.and_then(|c| c.kind) {
            None => {
                return Err(FeedbackError::invalid(
                    "customer",
                    "a customer_id or card_token is required",
                ));
            }
            Some(pb::customer::Kind::CustomerId(v)) => ("customer.customer_id", v),
            Some(pb::customer::Kind::CardToken(v)) => ("customer.card_token", v),
        };
        let key = CustomerKey::parse(value).map_err(|e| FeedbackError::invalid(field, e))?;
        let customer = key.as_str();
        let store = self.vault.store();
        let held = store
            .get(customer)
            .await
            .map_err(VaultError::from)?
            .is_some()
            || store.is_erased(customer).await.map_err(VaultError::from)?;
        if !held {
            return Ok(pb::EraseCustomerContactResponse {
                erased: false,
                erased_at: String::new(),
            });
        }
        self.vault.erase(customer).await?;
        let mut conn = self.redis.clone();
        let now = timestamp_out(self.complaints.now());
        let _: Option<String> = redis::cmd("SET")
            .arg(erased_at_key(customer))
            .arg(&now)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("SET erased_at"))?;
        tracing::info!("a customer's contact details were erased");
        Ok(pb::EraseCustomerContactResponse {
            erased: true,
            erased_at: self.erased_at(customer).await?,
        })
    }
}

/// The page size when a list request names none, and the largest it may name.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Where a page of ListComplaints ends: the sort key of its last complaint (priority
/// score, highest first, then filed time, then id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PageToken {
    score: std::cmp::Reverse<u32>,
    filed_ms: i64,
    complaint_id: String,
}

impl PageToken {
    fn of(e: &ListEntry, score: u32) -> Self {
        Self {
            score: std::cmp::Reverse(score),
            filed_ms: e.filed_ms,
            complaint_id: e.complaint_id.clone(),
        }
    }

    fn encode(&self) -> String {
        format!("{}:{}:{}", self.score.0, self.filed_ms, self.complaint_id)
    }

    fn parse(s: &str) -> Result<Self, FieldViolation> {
        let bad = || FieldViolation::new("page_token", "is not a token this service issued");
        let mut parts = s.splitn(3, ':');
        let mut next = || parts.next().ok_or_else(bad);
        let score = next()?.parse().map_err(|_| bad())?;
        let filed_ms = next()?.parse().map_err(|_| bad())?;
        let id = ComplaintId::parse(next()?.to_owned()).map_err(|_| bad())?;
        Ok(Self {
            score: std::cmp::Reverse(score),
            filed_ms,
            complaint_id: id.as_str().to_owned(),
        })
    }
}

impl<L: EventLog> FeedbackApi<L> {
    async fn list(
        &self,
        req: pb::ListComplaintsRequest,
    ) -> Result<pb::ListComplaintsResponse, FeedbackError> {
        let mut bad = Vec::new();
        let page_size = page_size(req.page_size).map_err(|v| bad.push(v)).ok();
        let after = if req.page_token.is_empty() {
            None
        } else {
            PageToken::parse(&req.page_token)
                .map_err(|v| bad.push(v))
                .ok()
        };
        let level = level_filter(req.level)
            .map_err(|v| bad.push(v))
            .ok()
            .flatten();
        let mut statuses = Vec::with_capacity(req.statuses.len());
        let mut unknown = Vec::new();
        for s in &req.statuses {
            match usize::try_from(*s) {
                Ok(n) if (1..=STATUSES.len()).contains(&n) => statuses.push(STATUSES[n - 1]),
                _ => unknown.push(s.to_string()),
            }
        }
        if !unknown.is_empty() {
            bad.push(FieldViolation::new(
                "statuses",
                format!(
                    "holds values that are no known status: {}",
                    unknown.join(", ")
                ),
            ));
        }
        let holder = (!req.holder_id.is_empty()).then_some(req.holder_id.as_str());
        if holder.is_some() && self.directory.is_none() {
            bad.push(FieldViolation::new(
                "holder_id",
                "cannot be filtered on: this service has no staff directory",
            ));
        }
        let Some(page_size) = page_size.filter(|_| bad.is_empty()) else {
            return Err(invalid(bad));
        };
        let directory = self.directory.as_deref();
        let keep = |e: &ListEntry| {
            (req.store_id.is_empty() || e.store_id == req.store_id)
                && level.is_none_or(|l| e.level == l)
                && (statuses.is_empty() || statuses.contains(&e.status))
                && req.breached.is_none_or(|b| e.breached == b)
                && holder.is_none_or(|h| {
                    directory.and_then(|d| d.holder(e.level, &e.store_id)) == Some(h)
                })
        };
        // Everything in the log before this call, as GetComplaint sees it.
        let projection = self.complaints.projection();
        let mut matching = Vec::new();
        for p in 0..projection.partitions() {
            self.complaints.catch_up(p).await?;
            matching.extend(projection.listed(p).await?.into_iter().filter(&keep));
        }
        let priorities = self
            .priorities(
                &matching
                    .iter()
                    .map(|e| (e.complaint_id.as_str(), e.severity, e.customer.as_str()))
                    .collect::<Vec<_>>(),
            )
            .await?;
        let score = |e: &ListEntry| priorities.get(&e.complaint_id).map_or(0, |p| p.score);
        let mut ranked: Vec<(PageToken, ListEntry)> = matching
            .into_iter()
            .map(|e| (PageToken::of(&e, score(&e)), e))
            .filter(|(t, _)| after.as_ref().is_none_or(|a| t > a))
            .collect();
        ranked.sort_by(|a, b| a.0.cmp(&b.0));
        let size = page_size;
        let more = ranked.len() > size;
        ranked.truncate(size);
        let ids = ranked
            .iter()
            .map(|(_, e)| {
                ComplaintId::parse(e.complaint_id.clone())
                    .map_err(|err| FeedbackError::Corrupt(format!("listed id: {err}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let loaded = projection.load_many(&ids).await?;
        let mut complaints = Vec::with_capacity(loaded.len());
        for (c, id) in loaded.into_iter().zip(&ids) {
            let c = c.ok_or_else(|| {
                FeedbackError::Corrupt(format!("{} is listed but not projected", id.as_str()))
            })?;
            complaints.push(self.enrich(summary(&c), &c, priorities.get(id.as_str())));
        }
        let next_page_token = match ranked.last() {
            Some((last, _)) if more => last.encode(),
            _ => String::new(),
        };
        Ok(pb::ListComplaintsResponse {
            complaints,
            next_page_token,
        })
    }
}

/// The longest period GetDefectionReasons sums over, in days.
pub const MAX_REASON_DAYS: i64 = 366;

/// Where ListOutreach's next page starts: after the case with this due time and id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CaseToken {
    due_ms: i64,
    case_id: String,
}

impl CaseToken {
    fn of(e: &CaseEntry) -> Self {
        Self {
            due_ms: e.due_ms,
            case_id: e.case_id.clone(),
        }
    }

    fn encode(&self) -> String {
        format!("{}:{}", self.due_ms, self.case_id)
    }

    fn parse(s: &str) -> Result<Self, FieldViolation> {
        let bad = || FieldViolation::new("page_token", "is not a token this service issued");
        let (ms, id) = s.split_once(':').ok_or_else(bad)?;
        let due_ms = ms.parse().map_err(|_| bad())?;
        let id = OutreachCaseId::parse(id.to_owned()).map_err(|_| bad())?;
        Ok(Self {
            due_ms,
            case_id: id.as_str().to_owned(),
        })
    }
}

fn page_size(requested: u32) -> Result<usize, FieldViolation> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE as usize),
        n if n <= MAX_PAGE_SIZE => Ok(n as usize),
        n => Err(FieldViolation::new(
            "page_size",
            format!("must be at most {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE}), got {n}"),
        )),
    }
}

/// A day written exactly `YYYY-MM-DD` (four-digit year, two-digit month and day), as the
/// proto says: `2026-9-30` or `+2026-09-30` are refused, not read leniently.
fn day(field: &str, value: &str) -> Result<NaiveDate, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    shaped
        .then(|| NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| {
            FieldViolation::new(
                field,
                format!(
                    "must be a day as YYYY-MM-DD, e.g. 2026-11-23, got {}",
                    quoted(value)
                ),
            )
        })
}

impl<L: EventLog> FeedbackApi<L> {
    async fn list_cases(
        &self,
        req: pb::ListOutreachRequest,
    ) -> Result<pb::ListOutreachResponse, FeedbackError> {
        let mut bad = Vec::new();
        let size = page_size(req.page_size).map_err(|v| bad.push(v)).ok();
        let after = if req.page_token.is_empty() {
            None
        } else {
            CaseToken::parse(&req.page_token)
                .map_err(|v| bad.push(v))
                .ok()
        };
        let status = match req.status {
            0 => None,
            1 => Some(OutreachStatus::Open),
            2 => Some(OutreachStatus::Closed),
            n => {
                bad.push(FieldViolation::new(
                    "status",
                    format!("{n} is not a known status"),
                ));
                None
            }
        };
        if !req.store_id.is_empty()
            && let Err(e) = check_id(&req.store_id)
        {
            bad.push(FieldViolation::new("store_id", e));
        }
        let Some(size) = size.filter(|_| bad.is_empty()) else {
            return Err(invalid(bad));
        };
        let now = self.complaints.now();
        let now_ms = now.timestamp_millis();
        let keep = |e: &CaseEntry| {
            (req.store_id.is_empty() || e.store_id == req.store_id)
                && status.is_none_or(|s| e.status == s)
                && req.overdue.is_none_or(|o| e.is_overdue(now_ms) == o)
                && after.as_ref().is_none_or(|a| CaseToken::of(e) > *a)
        };
        let projection = self.complaints.projection();
        let mut matching = Vec::new();
        for p in 0..projection.partitions() {
            self.complaints.catch_up(p).await?;
            matching.extend(projection.listed_cases(p).await?.into_iter().filter(&keep));
        }
        matching.sort_by(|a, b| CaseToken::of(a).cmp(&CaseToken::of(b)));
        let more = matching.len() > size;
        matching.truncate(size);
        let ids: Vec<&str> = matching.iter().map(|e| e.case_id.as_str()).collect();
        let mut cases = Vec::with_capacity(ids.len());
        for (c, id) in projection.load_cases(&ids).await?.into_iter().zip(&ids) {
            let c = c.ok_or_else(|| {
                FeedbackError::Corrupt(format!("{id} is listed but not projected"))
            })?;
            cases.push(outreach_case(&c, now));
        }
        let next_page_token = match matching.last() {
            Some(last) if more => CaseToken::of(last).encode(),
            _ => String::new(),
        };
        Ok(pb::ListOutreachResponse {
            cases,
            next_page_token,
        })
    }

    async fn record(
        &self,
        r: pb::RecordOutreachRequest,
    ) -> Result<pb::OutreachCase, FeedbackError> {
        let cmd = OutreachCommand::RecordOutreach(RecordOutreach {
            expected_version: r.expected_version,
            reason: word(DefectionReason::ALL, DefectionReason::as_str, r.reason),
            free_text: r.free_text,
            outcome: word(OutreachOutcome::ALL, OutreachOutcome::as_str, r.outcome),
            method: word(ContactMethod::ALL, ContactMethod::as_str, r.method),
        });
        let id = OutreachCaseId::parse(r.case_id.as_str())
            .map_err(|e| FieldViolation::new("case_id", e));
        let key = idempotency_key_of(&r.idempotency_key);
        let (id, key) = match (id, key) {
            (Ok(id), Ok(key)) => (id, key),
            (id, key) => {
                let mut bad: Vec<FieldViolation> =
                    [id.err(), key.err()].into_iter().flatten().collect();
                bad.extend(outreach_input_violations(&cmd));
                return Err(invalid(bad));
            }
        };
        let (case, _) = self.complaints.execute_outreach(&id, cmd, key).await?;
        Ok(outreach_case(&case, self.complaints.now()))
    }

    async fn reasons(
        &self,
        req: pb::GetDefectionReasonsRequest,
    ) -> Result<pb::GetDefectionReasonsResponse, FeedbackError> {
        let mut bad = Vec::new();
        if !req.store_id.is_empty()
            && let Err(e) = check_id(&req.store_id)
        {
            bad.push(FieldViolation::new("store_id", e));
        }
        let from = day("from_date", &req.from_date)
            .map_err(|v| bad.push(v))
            .ok();
        let to = day("to_date", &req.to_date).map_err(|v| bad.push(v)).ok();
        if let (Some(from), Some(to)) = (from, to) {
            if to < from {
                bad.push(FieldViolation::new(
                    "to_date",
                    "must not be before from_date",
                ));
            } else if (to - from).num_days() >= MAX_REASON_DAYS {
                bad.push(FieldViolation::new(
                    "to_date",
                    format!("the period may span at most {MAX_REASON_DAYS} days"),
                ));
            }
        }
        let (Some(from), Some(to), true) = (from, to, bad.is_empty()) else {
            return Err(invalid(bad));
        };
        let projection = self.complaints.projection();
        for p in 0..projection.partitions() {
            self.complaints.catch_up(p).await?;
        }
        let rows = projection
            .reasons(from, to)
            .await?
            .into_iter()
            .filter(|((store, _), _)| req.store_id.is_empty() || *store == req.store_id)
            .map(|((store_id, cause), t)| pb::DefectionReasonRow {
                store_id,
                cause: Some(match cause {
                    Cause::Reason(r) => {
                        pb::defection_reason_row::Cause::Reason(code(DefectionReason::ALL, &r))
                    }
                    Cause::Touchpoint(t) => {
                        pb::defection_reason_row::Cause::Touchpoint(code(Touchpoint::ALL, &t))
                    }
                }),
                complaints: t.complaints,
                defectors: t.defectors,
                lost: t.lost,
                won_back: t.won_back,
                value_lost_minor_units: t.value_lost_minor,
                value_saved_minor_units: t.value_saved_minor,
            })
            .collect();
        Ok(pb::GetDefectionReasonsResponse { rows })
    }
}

/// An outreach case for the API; `overdue` as of `now`.
pub fn outreach_case(c: &OutreachCase, now: DateTime<Utc>) -> pb::OutreachCase {
    pb::OutreachCase {
        case_id: c.id.as_str().to_owned(),
        version: c.version,
        status: match c.status {
            OutreachStatus::Open => pb::OutreachStatus::Open,
            OutreachStatus::Closed => pb::OutreachStatus::Closed,
        } as i32,
        customer_id: c.customer.as_str().to_owned(),
        home_store_id: c.home_store.as_str().to_owned(),
        defector_state: match c.state {
            DefectorState::AtRisk => pb::DefectorState::AtRisk,
            DefectorState::Defected => pb::DefectorState::Defected,
        } as i32,
        value_at_risk_minor_units: c.value_at_risk_minor,
        clv_minor_units: c.clv_minor,
        opened_at: timestamp_out(c.opened_at),
        due_at: timestamp_out(c.due_at),
        overdue: c.is_overdue(now),
        attempts: c
            .attempts
            .iter()
            .map(|a| pb::OutreachAttempt {
                at: timestamp_out(a.at),
                reason: a.reason.map_or(0, |r| code(DefectionReason::ALL, &r)),
                free_text: a.free_text.clone().unwrap_or_default(),
                outcome: code(OutreachOutcome::ALL, &a.outcome),
                method: code(ContactMethod::ALL, &a.method),
            })
            .collect(),
        customer_returned_on: c.returned_on.map(|d| d.to_string()).unwrap_or_default(),
    }
}

/// Why sealed contact details that are on record cannot be opened, for
/// `ContactOnRecord.unavailable`: the key that sealed them is not the one this service
/// holds. `None` for errors that are no such answer (the key store unreachable, a blob
/// that is not one).
pub fn unavailable(e: &VaultError) -> Option<&'static str> {
    match e {
        _ if !e.is_key_unavailable() => None,
        VaultError::KeyUnwrap => Some(
            "the customer's key does not open under this service's key-encryption key: \
             it was sealed under another one",
        ),
        _ => Some(
            "the key that sealed the details is not in the contact vault's key store: \
             lost or replaced",
        ),
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

/// A level filter: 0 is none.
fn level_filter(level: i32) -> Result<Option<Level>, FieldViolation> {
    match usize::try_from(level) {
        Ok(0) => Ok(None),
        Ok(n) if n <= Level::ALL.len() => Ok(Some(Level::ALL[n - 1])),
        _ => Err(FieldViolation::new(
            "level",
            format!("{level} is not a known level"),
        )),
    }
}

/// A required message of a request.
fn required<T>(field: &str, value: Option<T>) -> Result<T, FieldViolation> {
    value.ok_or_else(|| FieldViolation::new(field, "is required"))
}

fn timestamp(field: &str, value: &str) -> Result<DateTime<Utc>, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            FieldViolation::new(
                field,
                "must be an RFC 3339 time with an offset, e.g. 2026-11-22T10:15:00+01:00",
            )
        })
}

pub(crate) fn timestamp_out(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A proto enum value as the domain's word for it: unset is empty (the domain names the
/// field as required), an unknown number stays a number (the domain names it unknown).
fn word<T: Copy>(all: &[T], name: fn(T) -> &'static str, value: i32) -> String {
    match usize::try_from(value) {
        Ok(0) => String::new(),
        Ok(n) if n <= all.len() => name(all[n - 1]).to_owned(),
        _ => value.to_string(),
    }
}

/// A domain value as its proto enum number: the proto lists the values in the domain's
/// order, after UNSPECIFIED.
pub(crate) fn code<T: PartialEq>(all: &[T], value: &T) -> i32 {
    all.iter()
        .position(|v| v == value)
        .and_then(|i| i32::try_from(i + 1).ok())
        .unwrap_or(0)
}

const STATUSES: &[ComplaintStatus] = &[
    ComplaintStatus::Open,
    ComplaintStatus::Acknowledged,
    ComplaintStatus::WaitingOnCustomer,
    ComplaintStatus::Resolved,
];

fn customer(c: &Complainant) -> pb::Customer {
    let kind = match c {
        Complainant::CustomerId(k) => pb::customer::Kind::CustomerId(k.as_str().to_owned()),
        Complainant::CardToken(k) => pb::customer::Kind::CardToken(k.as_str().to_owned()),
    };
    pb::Customer { kind: Some(kind) }
}

/// The summary lists and write responses show. `holder_id`, `next_due_at` and `priority`
/// need the staff directory, the SLA calendar and the customer's value, which this
/// adapter does not have yet: they are left unset rather than guessed.
pub fn summary(c: &Complaint) -> pb::ComplaintSummary {
    pb::ComplaintSummary {
        complaint_id: c.id.as_str().to_owned(),
        version: c.version,
        status: code(STATUSES, &c.status),
        level: code(Level::ALL, &c.level),
        holder_id: String::new(),
        level_since: timestamp_out(c.level_since),
        store_id: c.store_id.as_str().to_owned(),
        customer: Some(customer(&c.customer)),
        severity: code(Severity::ALL, &c.severity),
        touchpoint: code(Touchpoint::ALL, &c.touchpoint),
        channel: code(Channel::ALL, &c.channel),
        filed_at: timestamp_out(c.filed_at),
        breached: c.is_breached(),
        next_due_at: String::new(),
        next_due_clock: 0,
        priority: None,
    }
}

fn satisfaction(s: &domain::Satisfaction) -> pb::Satisfaction {
    pb::Satisfaction {
        score: s.score.into(),
        ownership: s.ownership.into(),
        felt_valued: s.felt_valued.into(),
        speed: s.speed.into(),
        sincere_regret: s.sincere_regret.into(),
        reason: s.reason.clone().unwrap_or_default(),
    }
}

fn root_cause(r: &domain::RootCause) -> pb::RootCause {
    pb::RootCause {
        whys: r.whys.clone(),
        category: code(Touchpoint::ALL, &r.category),
        corrective_action: r.corrective_action.clone(),
    }
}

fn remedies(r: &[Remedy]) -> Vec<i32> {
    r.iter().map(|r| code(Remedy::ALL, r)).collect()
}

pub(crate) fn escalation_reason(r: &EscalationReason) -> pb::EscalationReason {
    let kind = match r {
        EscalationReason::Manual { text } => pb::escalation_reason::Kind::Manual(text.clone()),
        EscalationReason::Breach { clock } => {
            pb::escalation_reason::Kind::Breach(code(SlaClock::ALL, clock))
        }
    };
    pb::EscalationReason { kind: Some(kind) }
}

fn history_entry(e: &ComplaintEvent, after: &Complaint) -> pb::HistoryEntry {
    use pb::history_entry::Details;
    let details = match e {
        ComplaintEvent::ComplaintFiled {
            channel,
            touchpoint,
            severity,
            description,
            occurred_at,
            ..
        } => Details::Filed(pb::ComplaintFiled {
            channel: code(Channel::ALL, channel),
            touchpoint: code(Touchpoint::ALL, touchpoint),
            severity: code(Severity::ALL, severity),
            description: description.clone(),
            occurred_at: timestamp_out(*occurred_at),
        }),
        ComplaintEvent::ComplaintAcknowledged { method, note, .. } => {
            Details::Acknowledged(pb::ComplaintAcknowledged {
                method: code(ContactMethod::ALL, method),
                note: note.clone(),
            })
        }
        ComplaintEvent::ComplaintUpdated {
            note,
            from_customer,
            ..
        } => Details::Updated(pb::ComplaintUpdated {
            note: note.clone(),
            from_customer: *from_customer,
        }),
        ComplaintEvent::WaitingOnCustomer { note, .. } => {
            Details::WaitingOnCustomer(pb::WaitingOnCustomer { note: note.clone() })
        }
        ComplaintEvent::CustomerResponded { .. } => {
            Details::CustomerResponded(pb::CustomerResponded {})
        }
        ComplaintEvent::ComplaintEscalated {
            from, to, reason, ..
        } => Details::Escalated(pb::ComplaintEscalated {
            from_level: code(Level::ALL, from),
            to_level: code(Level::ALL, to),
            reason: Some(escalation_reason(reason)),
        }),
        ComplaintEvent::SlaWarningRaised {
            run,
            fraction_percent,
            due_at,
            ..
        } => Details::SlaWarningRaised(pb::SlaWarningRaised {
            clock: code(SlaClock::ALL, &run.clock),
            level: code(Level::ALL, &run.level),
            started_at: timestamp_out(run.started_at),
            percent_elapsed: (*fraction_percent).into(),
            due_at: timestamp_out(*due_at),
        }),
        ComplaintEvent::SlaBreached { run, due_at, .. } => Details::SlaBreached(pb::SlaBreached {
            clock: code(SlaClock::ALL, &run.clock),
            level: code(Level::ALL, &run.level),
            started_at: timestamp_out(run.started_at),
            due_at: timestamp_out(*due_at),
        }),
        ComplaintEvent::ComplaintResolved {
            remedies: r,
            summary,
            ..
        } => Details::Resolved(pb::ComplaintResolved {
            remedies: remedies(r),
            summary: summary.clone(),
        }),
        ComplaintEvent::ComplaintReopened { reason, .. } => {
            Details::Reopened(pb::ComplaintReopened {
                reason: reason.clone(),
            })
        }
        ComplaintEvent::SatisfactionRecorded {
            satisfaction: s, ..
        } => Details::SatisfactionRecorded(satisfaction(s)),
        ComplaintEvent::RootCauseRecorded { root_cause: r, .. } => {
            Details::RootCauseRecorded(root_cause(r))
        }
    };
    pb::HistoryEntry {
        version: after.version,
        at: timestamp_out(e.at()),
        r#type: e.event_type().to_owned(),
        level: code(Level::ALL, &after.level),
        details: Some(details),
    }
}

/// The clocks running now. Due times need the store's business calendar (the SLA timer's
/// job) and are left empty here.
fn clocks(c: &Complaint) -> Vec<pb::SlaClockStatus> {
    let paused_since = c
        .pauses()
        .iter()
        .rev()
        .find(|p| p.to.is_none())
        .map(|p| timestamp_out(p.from))
        .unwrap_or_default();
    c.running_clocks()
        .into_iter()
        .map(|run| pb::SlaClockStatus {
            clock: code(SlaClock::ALL, &run.clock),
            level: code(Level::ALL, &run.level),
            started_at: timestamp_out(run.started_at),
            due_at: String::new(),
            paused_since: paused_since.clone(),
            warnings: c
                .warnings
                .iter()
                .filter(|w| w.run == run)
                .map(|w| pb::SlaWarning {
                    percent_elapsed: w.fraction_percent.map_or(0, u32::from),
                    due_at: timestamp_out(w.due_at),
                    at: timestamp_out(w.at),
                })
                .collect(),
            breached_at: c
                .breaches
                .iter()
                .find(|b| b.run == run)
                .map(|b| timestamp_out(b.at))
                .unwrap_or_default(),
        })
        .collect()
}

fn full(
    c: &Complaint,
    history: &[(ComplaintEvent, Complaint)],
    contact: Option<pb::ContactOnRecord>,
) -> pb::Complaint {
    pb::Complaint {
        summary: Some(summary(c)),
        description: c.description.clone(),
        occurred_at: timestamp_out(c.occurred_at),
        first_response: c.first_response.as_ref().map(|f| pb::FirstResponse {
            at: timestamp_out(f.at),
            method: code(ContactMethod::ALL, &f.method),
            note: f.note.clone(),
        }),
        last_update_at: timestamp_out(c.last_update_at),
        clocks: clocks(c),
        resolution: c.current_resolution().map(|r| pb::Resolution {
            at: timestamp_out(r.at),
            remedies: remedies(&r.remedies),
            summary: r.summary.clone(),
            satisfaction: r.satisfaction.as_ref().map(satisfaction),
        }),
        root_cause: c.root_cause.as_ref().map(root_cause),
        history: history.iter().map(|(e, s)| history_entry(e, s)).collect(),
        contact,
    }
}

#[tonic::async_trait]
impl<L: EventLog + 'static> Feedback for FeedbackApi<L> {
    async fn file_complaint(
        &self,
        request: Request<pb::FileComplaintRequest>,
    ) -> Result<Response<pb::FileComplaintResponse>, Status> {
        let complaint = self
            .file(request.into_inner())
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
        let complaint = self
            .get(request.into_inner())
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
        self.list(request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| failed(&e))
    }

    async fn acknowledge_complaint(
        &self,
        request: Request<pb::AcknowledgeComplaintRequest>,
    ) -> Result<Response<pb::AcknowledgeComplaintResponse>, Status> {
        let r = request.into_inner();
        let cmd = ComplaintCommand::AcknowledgeComplaint(AcknowledgeComplaint {
            expected_version: r.expected_version,
            method: word(ContactMethod::ALL, ContactMethod::as_str, r.method),
            note: r.note,
        });
        let complaint = Some(
            self.command(&r.complaint_id, &r.idempotency_key, Ok(cmd))
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
        let r = request.into_inner();
        let cmd = ComplaintCommand::AddComplaintUpdate(AddComplaintUpdate {
            expected_version: r.expected_version,
            note: r.note,
            from_customer: r.from_customer,
        });
        let complaint = Some(
            self.command(&r.complaint_id, &r.idempotency_key, Ok(cmd))
                .await?,
        );
        Ok(Response::new(pb::AddComplaintUpdateResponse { complaint }))
    }

    async fn wait_on_customer(
        &self,
        request: Request<pb::WaitOnCustomerRequest>,
    ) -> Result<Response<pb::WaitOnCustomerResponse>, Status> {
        let r = request.into_inner();
        let cmd = ComplaintCommand::WaitOnCustomer(WaitOnCustomer {
            expected_version: r.expected_version,
            note: r.note,
        });
        let complaint = Some(
            self.command(&r.complaint_id, &r.idempotency_key, Ok(cmd))
                .await?,
        );
        Ok(Response::new(pb::WaitOnCustomerResponse { complaint }))
    }

    async fn escalate_complaint(
        &self,
        request: Request<pb::EscalateComplaintRequest>,
    ) -> Result<Response<pb::EscalateComplaintResponse>, Status> {
        let r = request.into_inner();
        let cmd = ComplaintCommand::EscalateComplaint(EscalateComplaint {
            expected_version: r.expected_version,
            reason: r.reason,
        });
        let complaint = Some(
            self.command(&r.complaint_id, &r.idempotency_key, Ok(cmd))
                .await?,
        );
        Ok(Response::new(pb::EscalateComplaintResponse { complaint }))
    }

    async fn resolve_complaint(
        &self,
        request: Request<pb::ResolveComplaintRequest>,
    ) -> Result<Response<pb::ResolveComplaintResponse>, Status> {
        let r = request.into_inner();
        let cmd = ComplaintCommand::ResolveComplaint(ResolveComplaint {
            expected_version: r.expected_version,
            remedies: r
                .remedies
                .iter()
                .map(|v| word(Remedy::ALL, Remedy::as_str, *v))
                .collect(),
            summary: r.summary,
        });
        let complaint = Some(
            self.command(&r.complaint_id, &r.idempotency_key, Ok(cmd))
                .await?,
        );
        Ok(Response::new(pb::ResolveComplaintResponse { complaint }))
    }

    async fn reopen_complaint(
        &self,
        request: Request<pb::ReopenComplaintRequest>,
    ) -> Result<Response<pb::ReopenComplaintResponse>, Status> {
        let r = request.into_inner();
        let cmd = ComplaintCommand::ReopenComplaint(ReopenComplaint {
            expected_version: r.expected_version,
            reason: r.reason,
        });
        let complaint = Some(
            self.command(&r.complaint_id, &r.idempotency_key, Ok(cmd))
                .await?,
        );
        Ok(Response::new(pb::ReopenComplaintResponse { complaint }))
    }

    async fn record_satisfaction(
        &self,
        request: Request<pb::RecordSatisfactionRequest>,
    ) -> Result<Response<pb::RecordSatisfactionResponse>, Status> {
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
            self.command(&r.complaint_id, &r.idempotency_key, cmd)
                .await?,
        );
        Ok(Response::new(pb::RecordSatisfactionResponse { complaint }))
    }

    async fn record_root_cause(
        &self,
        request: Request<pb::RecordRootCauseRequest>,
    ) -> Result<Response<pb::RecordRootCauseResponse>, Status> {
        let r = request.into_inner();
        let cmd = required("root_cause", r.root_cause).map(|rc| {
            ComplaintCommand::RecordRootCause(RecordRootCause {
                expected_version: r.expected_version,
                root_cause: RootCauseInput {
                    whys: rc.whys,
                    category: word(Touchpoint::ALL, Touchpoint::as_str, rc.category),
                    corrective_action: rc.corrective_action,
                },
            })
        });
        let complaint = Some(
            self.command(&r.complaint_id, &r.idempotency_key, cmd)
                .await?,
        );
        Ok(Response::new(pb::RecordRootCauseResponse { complaint }))
    }

    type WatchEscalationsStream = AlertStream;

    async fn watch_escalations(
        &self,
        request: Request<pb::WatchEscalationsRequest>,
    ) -> Result<Response<Self::WatchEscalationsStream>, Status> {
        Ok(Response::new(self.watch(request.into_inner()).await?))
    }

    async fn list_outreach(
        &self,
        request: Request<pb::ListOutreachRequest>,
    ) -> Result<Response<pb::ListOutreachResponse>, Status> {
        self.list_cases(request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| failed(&e))
    }

    async fn record_outreach(
        &self,
        request: Request<pb::RecordOutreachRequest>,
    ) -> Result<Response<pb::RecordOutreachResponse>, Status> {
        let case = self
            .record(request.into_inner())
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
        self.reasons(request.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| failed(&e))
    }

    async fn erase_customer_contact(
        &self,
        request: Request<pb::EraseCustomerContactRequest>,
    ) -> Result<Response<pb::EraseCustomerContactResponse>, Status> {
        let r = self
            .erase(request.into_inner())
            .await
            .map_err(|e| failed(&e))?;
        Ok(Response::new(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_exactly_yyyy_mm_dd() {
        assert_eq!(
            day("d", "2026-11-23").ok(),
            NaiveDate::from_ymd_opt(2026, 11, 23)
        );
        for bad in [
            "1997-9-30",
            "1997-09-3",
            " 2026-11-23",
            "2026/11/23",
            "+2026-11-23",
            "2026-13-01",
            "２０２６-11-23",
        ] {
            assert!(day("d", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            day("d", "").map_err(|v| v.description),
            Err("is required".to_owned())
        );
    }
}
