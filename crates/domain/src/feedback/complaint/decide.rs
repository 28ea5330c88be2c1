//! Deciding: what each command means for a complaint, one function per command. All the
//! business logic of the aggregate is here; it is pure (time is passed in).
//!
//! [`Aggregate::handle`](crate::aggregate::Aggregate::handle) checks existence and the
//! expected version; then [`decide`] checks the status (the command must make sense now:
//! [`allowed`]) and the command's own function checks its input, reporting every bad
//! field at once, and returns the events.
//!
//! A major or critical complaint acknowledged by letter or email is **rejected** (field
//! `method`) rather than recorded without stopping the clock: the caller learns at once
//! that a call or visit is still owed, and the letter can be kept as an update.

use chrono::{DateTime, TimeDelta, Utc};

use super::commands::{
    AcknowledgeComplaint, AddComplaintUpdate, ComplaintCommand, EscalateComplaint, FileComplaint,
    RaiseSlaWarning, RecordRootCause, RecordSatisfaction, RecordSlaBreach, ReopenComplaint,
    ResolveComplaint, RootCauseInput, SatisfactionInput, WaitOnCustomer,
};
use super::contact::MAX_SEALED_CONTACT_BYTES;
use super::events::ComplaintEvent;
use super::state::{
    ClockRun, Complainant, Complaint, ComplaintStatus, EscalationReason, RootCause, Satisfaction,
    SlaClock,
};
use crate::aggregate::Refusal;
use crate::card::looks_like_payment_card;
use crate::error::{FieldViolation, Violations};
use crate::feedback::check::{Check, MAX_TEXT_CHARS, Required, missing_after_check};
use crate::feedback::vocab::{Channel, ContactMethod, Level, Remedy, Severity, Touchpoint};
use crate::ids::{CustomerKey, StoreId, check_id};
use crate::swipe::CustomerInput;

/// Most "whys" a root-cause analysis may have; the method is named after five.
pub const MAX_WHYS: usize = 5;

/// Why a complaint command produced no events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComplaintError {
    /// The input is bad; every bad field is named.
    #[error("invalid complaint command: {0}")]
    Invalid(#[from] Violations),
    /// The complaint changed since the caller read it.
    #[error("version conflict: expected version {expected}, the complaint is at {current}")]
    VersionConflict { expected: u64, current: u64 },
    #[error("no such complaint")]
    NotFound,
    /// The command does not apply to a complaint in this status.
    #[error("{command} is not allowed while the complaint is {from_status}")]
    InvalidTransition {
        from_status: ComplaintStatus,
        command: &'static str,
    },
    /// A complaint with this id was filed with another idempotency key.
    #[error("a complaint with this id already exists")]
    AlreadyExists,
    /// Satisfaction for this resolution is already on record.
    #[error("{what} is already recorded for this resolution")]
    AlreadyRecorded { what: &'static str },
    /// Escalation asked at the top of the chain.
    #[error("the complaint is already at {0}, the top of the chain")]
    NoLevelAbove(Level),
}

impl From<Refusal> for ComplaintError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotFound => ComplaintError::NotFound,
            Refusal::AlreadyExists => ComplaintError::AlreadyExists,
            Refusal::VersionConflict { expected, current } => {
                ComplaintError::VersionConflict { expected, current }
            }
        }
    }
}

/// The chain's settings the aggregate needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Where a critical complaint starts: a store manager is not senior enough for it.
    pub critical_starts_at: Level,
    /// How long ago a problem may have happened and still be filed.
    pub max_complaint_age: TimeDelta,
    /// How far `occurred_at` may be ahead of the server clock (device clocks drift).
    pub max_clock_skew: TimeDelta,
}

impl Default for Context {
    fn default() -> Self {
        Self {
            critical_starts_at: Level::RegionalManager,
            max_complaint_age: TimeDelta::days(365),
            max_clock_skew: TimeDelta::minutes(5),
        }
    }
}

impl Context {
    /// The level a new complaint of `severity` belongs to.
    pub fn starting_level(&self, severity: Severity) -> Level {
        if severity == Severity::Critical {
            self.critical_starts_at
        } else {
            Level::StoreManager
        }
    }
}

/// Decides a command on no complaint: only a filing creates one.
pub(super) fn create(
    command: ComplaintCommand,
    now: DateTime<Utc>,
    ctx: &Context,
) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    match command {
        ComplaintCommand::FileComplaint(c) => file(c, now, ctx),
        _ => Err(ComplaintError::NotFound),
    }
}

/// Decides a command on an existing complaint: the status first ([`allowed`]), then the
/// command's own function.
pub(super) fn decide(
    state: &Complaint,
    command: ComplaintCommand,
    now: DateTime<Utc>,
) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    if !allowed(state, &command) {
        return Err(ComplaintError::InvalidTransition {
            from_status: state.status,
            command: command.name(),
        });
    }
    match command {
        ComplaintCommand::FileComplaint(_) => Err(ComplaintError::AlreadyExists),
        ComplaintCommand::AcknowledgeComplaint(c) => acknowledge(state, &c, now),
        ComplaintCommand::AddComplaintUpdate(c) => add_update(state, &c, now),
        ComplaintCommand::WaitOnCustomer(c) => wait_on_customer(&c, now),
        ComplaintCommand::EscalateComplaint(c) => escalate(state, &c, now),
        ComplaintCommand::ResolveComplaint(c) => resolve(&c, now),
        ComplaintCommand::ReopenComplaint(c) => reopen(&c, now),
        ComplaintCommand::RecordSatisfaction(c) => record_satisfaction(state, &c, now),
        ComplaintCommand::RecordRootCause(c) => record_root_cause(&c, now),
        ComplaintCommand::RaiseSlaWarning(c) => raise_sla_warning(state, &c, now),
        ComplaintCommand::RecordSlaBreach(c) => record_sla_breach(state, &c, now),
    }
}

/// The status rules: whether `command` makes sense for the complaint now. A note, a root
/// cause and the timer's commands are taken in any status (the timer's are ignored when
/// their run is not counting).
fn allowed(state: &Complaint, command: &ComplaintCommand) -> bool {
    let resolved = state.status == ComplaintStatus::Resolved;
    match command {
        ComplaintCommand::AcknowledgeComplaint(_) => state.status == ComplaintStatus::Open,
        // Waiting needs a conversation: a complaint nobody has answered cannot be parked
        // on the customer, or the first-response clock could be dodged.
        ComplaintCommand::WaitOnCustomer(_) => state.status == ComplaintStatus::Acknowledged,
        ComplaintCommand::EscalateComplaint(_) | ComplaintCommand::ResolveComplaint(_) => !resolved,
        ComplaintCommand::ReopenComplaint(_) => resolved,
        ComplaintCommand::RecordSatisfaction(_) => state.current_resolution().is_some(),
        ComplaintCommand::FileComplaint(_)
        | ComplaintCommand::AddComplaintUpdate(_)
        | ComplaintCommand::RecordRootCause(_)
        | ComplaintCommand::RaiseSlaWarning(_)
        | ComplaintCommand::RecordSlaBreach(_) => true,
    }
}

/// Records a new complaint, owned first by the level its severity starts at.
fn file(
    c: FileComplaint,
    now: DateTime<Utc>,
    ctx: &Context,
) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    let mut check = Check::default();
    if let Err(e) = check_id(&c.idempotency_key) {
        check.fail("idempotency_key", e);
    }
    let customer = complainant(&mut check, c.customer);
    if c.contact.as_bytes().is_empty() {
        check.fail("contact", "the sealed contact details are missing");
    } else if c.contact.as_bytes().len() > MAX_SEALED_CONTACT_BYTES {
        check.fail(
            "contact",
            format!("must be at most {MAX_SEALED_CONTACT_BYTES} bytes sealed"),
        );
    }
    let store_id = StoreId::parse(c.store_id)
        .map_err(|e| check.fail("store_id", e))
        .ok();
    let channel = check.parse::<Channel>("channel", &c.channel);
    let touchpoint = check.parse::<Touchpoint>("touchpoint", &c.touchpoint);
    let severity = check.parse::<Severity>("severity", &c.severity);
    let description = check.text("description", &c.description, Required::Yes, MAX_TEXT_CHARS);
    if c.occurred_at > now + ctx.max_clock_skew {
        check.fail("occurred_at", "is in the future");
    } else if c.occurred_at < now - ctx.max_complaint_age {
        check.fail(
            "occurred_at",
            format!(
                "is older than the limit of {} days",
                ctx.max_complaint_age.num_days()
            ),
        );
    }
    check.finish()?;
    let (Some(customer), Some(store_id), Some(channel), Some(touchpoint), Some(severity)) =
        (customer, store_id, channel, touchpoint, severity)
    else {
        return Err(internal());
    };
    Ok(vec![ComplaintEvent::ComplaintFiled {
        complaint_id: c.complaint_id,
        idempotency_key: c.idempotency_key,
        customer,
        contact: c.contact,
        store_id,
        channel,
        touchpoint,
        severity,
        description,
        occurred_at: c.occurred_at,
        level: ctx.starting_level(severity),
        at: now,
    }])
}

/// Records the first response; a major or critical complaint needs a personal one.
fn acknowledge(
    state: &Complaint,
    c: &AcknowledgeComplaint,
    now: DateTime<Utc>,
) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    let mut check = Check::default();
    let (method, note) = acknowledgement(&mut check, c);
    if let Some(m) = method
        && state.severity >= Severity::Major
        && !m.is_personal()
    {
        check.fail(
            "method",
            format!(
                "a {} complaint needs a personal first response (phone or in_person), not {m}",
                state.severity
            ),
        );
    }
    check.finish()?;
    Ok(vec![ComplaintEvent::ComplaintAcknowledged {
        method: method.ok_or_else(internal)?,
        note,
        at: now,
    }])
}

/// Adds a note; the customer's note while we wait on them resumes the clocks.
fn add_update(
    state: &Complaint,
    c: &AddComplaintUpdate,
    now: DateTime<Utc>,
) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    let mut check = Check::default();
    let note = check.text("note", &c.note, Required::Yes, MAX_TEXT_CHARS);
    check.finish()?;
    let mut events = vec![ComplaintEvent::ComplaintUpdated {
        note,
        from_customer: c.from_customer,
        at: now,
    }];
    if c.from_customer && state.status == ComplaintStatus::WaitingOnCustomer {
        events.push(ComplaintEvent::CustomerResponded { at: now });
    }
    Ok(events)
}

/// Pauses the clocks until the customer answers what we asked.
fn wait_on_customer(
    c: &WaitOnCustomer,
    now: DateTime<Utc>,
) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    let mut check = Check::default();
    let note = check.text("note", &c.note, Required::Yes, MAX_TEXT_CHARS);
    check.finish()?;
    Ok(vec![ComplaintEvent::WaitingOnCustomer { note, at: now }])
}

/// Moves the complaint up one level by hand.
fn escalate(
    state: &Complaint,
    c: &EscalateComplaint,
    now: DateTime<Utc>,
) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    let to = state
        .level
        .above()
        .ok_or(ComplaintError::NoLevelAbove(state.level))?;
    let mut check = Check::default();
    let text = check.text("reason", &c.reason, Required::Yes, MAX_TEXT_CHARS);
    check.finish()?;
    Ok(vec![ComplaintEvent::ComplaintEscalated {
        from: state.level,
        to,
        reason: EscalationReason::Manual { text },
        at: now,
    }])
}

/// Closes the complaint with at least one remedy and what was done.
fn resolve(
    c: &ResolveComplaint,
    now: DateTime<Utc>,
) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    let mut check = Check::default();
    let (remedies, summary) = resolution(&mut check, c);
    check.finish()?;
    Ok(vec![ComplaintEvent::ComplaintResolved {
        remedies,
        summary,
        at: now,
    }])
}

/// Reopens a resolved complaint that did not stay resolved.
fn reopen(c: &ReopenComplaint, now: DateTime<Utc>) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    let mut check = Check::default();
    let reason = check.text("reason", &c.reason, Required::Yes, MAX_TEXT_CHARS);
    check.finish()?;
    Ok(vec![ComplaintEvent::ComplaintReopened { reason, at: now }])
}

/// Records how the customer judged the resolution in force, once per resolution.
fn record_satisfaction(
    state: &Complaint,
    c: &RecordSatisfaction,
    now: DateTime<Utc>,
) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    if state
        .current_resolution()
        .is_some_and(|r| r.satisfaction.is_some())
    {
        return Err(ComplaintError::AlreadyRecorded {
            what: "satisfaction",
        });
    }
    let satisfaction = validate_satisfaction(&c.satisfaction)?;
    Ok(vec![ComplaintEvent::SatisfactionRecorded {
        satisfaction,
        at: now,
    }])
}

/// Records (or replaces with a better one) the root cause.
fn record_root_cause(
    c: &RecordRootCause,
    now: DateTime<Utc>,
) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    let root_cause = validate_root_cause(&c.root_cause)?;
    Ok(vec![ComplaintEvent::RootCauseRecorded {
        root_cause,
        at: now,
    }])
}

/// Records the timer's warning for a run still counting, once per run and percent.
fn raise_sla_warning(
    state: &Complaint,
    c: &RaiseSlaWarning,
    now: DateTime<Utc>,
) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    let mut check = Check::default();
    if !(1..=99).contains(&c.fraction_percent) {
        check.fail("fraction_percent", "must be 1..=99");
    }
    if c.due_at <= c.started_at {
        check.fail("due_at", "must be after started_at");
    }
    check.finish()?;
    let Some(run) = live_run(state, c.clock, c.started_at) else {
        return Ok(vec![]);
    };
    let repeated = state.breaches.iter().any(|b| b.run == run)
        || state
            .warnings
            .iter()
            .any(|w| w.run == run && w.fraction_percent == Some(c.fraction_percent));
    if repeated {
        return Ok(vec![]);
    }
    Ok(vec![ComplaintEvent::SlaWarningRaised {
        run,
        fraction_percent: c.fraction_percent,
        due_at: c.due_at,
        at: now,
    }])
}

/// Records the timer's breach of a run still counting, once per run, and moves the
/// complaint up a level: the next one takes over, with its own clocks. The owner has
/// nobody above; the complaint stays breached there.
fn record_sla_breach(
    state: &Complaint,
    c: &RecordSlaBreach,
    now: DateTime<Utc>,
) -> Result<Vec<ComplaintEvent>, ComplaintError> {
    let mut check = Check::default();
    if c.due_at <= c.started_at {
        check.fail("due_at", "must be after started_at");
    } else if c.due_at > now {
        check.fail(
            "due_at",
            "is still ahead: a breach is recorded once it has passed",
        );
    }
    check.finish()?;
    let Some(run) = live_run(state, c.clock, c.started_at) else {
        return Ok(vec![]);
    };
    if state.breaches.iter().any(|b| b.run == run) {
        return Ok(vec![]);
    }
    let mut events = vec![ComplaintEvent::SlaBreached {
        run,
        due_at: c.due_at,
        at: now,
    }];
    if let Some(to) = state.level.above() {
        events.push(ComplaintEvent::ComplaintEscalated {
            from: state.level,
            to,
            reason: EscalationReason::Breach { clock: c.clock },
            at: now,
        });
    }
    Ok(events)
}

/// The run a timer command is about, if it is still counting: none while resolved or
/// paused, or when the timer computed it from a run that has since ended (a stale command
/// is ignored, not an error: the timer races with people).
fn live_run(state: &Complaint, clock: SlaClock, started_at: DateTime<Utc>) -> Option<ClockRun> {
    if state.status == ComplaintStatus::WaitingOnCustomer {
        return None;
    }
    state
        .clock_run(clock)
        .filter(|run| run.started_at == started_at)
}

/// Who complained, from the customer input of a filing.
fn complainant(check: &mut Check, customer: CustomerInput) -> Option<Complainant> {
    match customer {
        CustomerInput::Missing => {
            check.fail("customer", "a customer_id or card_token is required");
            None
        }
        CustomerInput::CardNumber(_) => {
            check.fail(
                "customer.card_number",
                "card numbers are not accepted here: send the card token",
            );
            None
        }
        CustomerInput::CustomerId(v) => {
            customer_key(check, "customer.customer_id", &v).map(Complainant::CustomerId)
        }
        CustomerInput::CardToken(v) => {
            customer_key(check, "customer.card_token", &v).map(Complainant::CardToken)
        }
    }
}

fn customer_key(check: &mut Check, field: &str, value: &str) -> Option<CustomerKey> {
    if looks_like_payment_card(value) {
        check.fail(field, "looks like a card number: send the card token");
        return None;
    }
    CustomerKey::parse(value)
        .map_err(|e| check.fail(field, e))
        .ok()
}

/// The input of an acknowledgement: its method and note.
fn acknowledgement(check: &mut Check, c: &AcknowledgeComplaint) -> (Option<ContactMethod>, String) {
    let method = check.parse::<ContactMethod>("method", &c.method);
    let note = check.text("note", &c.note, Required::No, MAX_TEXT_CHARS);
    (method, note)
}

/// The input of a resolution: its remedies (each once) and summary.
fn resolution(check: &mut Check, c: &ResolveComplaint) -> (Vec<Remedy>, String) {
    let mut remedies = Vec::with_capacity(c.remedies.len());
    if c.remedies.is_empty() {
        check.fail("remedies", "at least one remedy is required");
    }
    for (i, r) in c.remedies.iter().enumerate() {
        let field = format!("remedies[{i}]");
        if let Some(r) = check.parse::<Remedy>(&field, r) {
            if remedies.contains(&r) {
                check.fail(&field, format!("{r} is listed twice"));
            } else {
                remedies.push(r);
            }
        }
    }
    let summary = check.text("summary", &c.summary, Required::Yes, MAX_TEXT_CHARS);
    (remedies, summary)
}

/// The violations of a command's own fields, whatever the complaint: what
/// [`Aggregate::handle`](crate::aggregate::Aggregate::handle) reports after its existence,
/// version and status checks, less the rules that depend on the complaint (a personal
/// first response for a major one). For an adapter that has refused the request for its
/// own fields (a bad complaint id) and names every bad field at once. Filings are checked
/// whole by `handle` (they need no complaint); timer commands come from no caller: both
/// have none here.
pub fn input_violations(cmd: &ComplaintCommand) -> Vec<FieldViolation> {
    let mut check = Check::default();
    let text = |check: &mut Check, field: &str, value: &str| {
        check.text(field, value, Required::Yes, MAX_TEXT_CHARS);
    };
    match cmd {
        ComplaintCommand::AcknowledgeComplaint(c) => {
            acknowledgement(&mut check, c);
        }
        ComplaintCommand::AddComplaintUpdate(AddComplaintUpdate { note, .. })
        | ComplaintCommand::WaitOnCustomer(WaitOnCustomer { note, .. }) => {
            text(&mut check, "note", note);
        }
        ComplaintCommand::EscalateComplaint(EscalateComplaint { reason, .. })
        | ComplaintCommand::ReopenComplaint(ReopenComplaint { reason, .. }) => {
            text(&mut check, "reason", reason);
        }
        ComplaintCommand::ResolveComplaint(c) => {
            resolution(&mut check, c);
        }
        ComplaintCommand::RecordSatisfaction(c) => {
            if let Err(ComplaintError::Invalid(v)) = validate_satisfaction(&c.satisfaction) {
                check.extend(v);
            }
        }
        ComplaintCommand::RecordRootCause(c) => {
            if let Err(ComplaintError::Invalid(v)) = validate_root_cause(&c.root_cause) {
                check.extend(v);
            }
        }
        ComplaintCommand::FileComplaint(_)
        | ComplaintCommand::RaiseSlaWarning(_)
        | ComplaintCommand::RecordSlaBreach(_) => {}
    }
    check.into_violations()
}

fn validate_satisfaction(s: &SatisfactionInput) -> Result<Satisfaction, ComplaintError> {
    let mut check = Check::default();
    let mut answer = |field: &str, value: u32| match u8::try_from(value) {
        Ok(v) if (1..=5).contains(&v) => v,
        _ => {
            check.fail(field, format!("must be 1..=5, got {value}"));
            0
        }
    };
    let score = answer("satisfaction.score", s.score);
    let ownership = answer("satisfaction.ownership", s.ownership);
    let felt_valued = answer("satisfaction.felt_valued", s.felt_valued);
    let speed = answer("satisfaction.speed", s.speed);
    let sincere_regret = answer("satisfaction.sincere_regret", s.sincere_regret);
    // A bad rating without a reason teaches nothing: ask why, as the best helpdesks do.
    let required = if (1..=2).contains(&s.score) {
        Required::Yes
    } else {
        Required::No
    };
    let reason = check.text("satisfaction.reason", &s.reason, required, MAX_TEXT_CHARS);
    check.finish()?;
    Ok(Satisfaction {
        score,
        ownership,
        felt_valued,
        speed,
        sincere_regret,
        reason: (!reason.is_empty()).then_some(reason),
    })
}

fn validate_root_cause(r: &RootCauseInput) -> Result<RootCause, ComplaintError> {
    let mut check = Check::default();
    if r.whys.is_empty() || r.whys.len() > MAX_WHYS {
        check.fail(
            "root_cause.whys",
            format!("must have 1 to {MAX_WHYS} answers, got {}", r.whys.len()),
        );
    }
    let whys: Vec<String> = r
        .whys
        .iter()
        .enumerate()
        .map(|(i, w)| {
            check.text(
                &format!("root_cause.whys[{i}]"),
                w,
                Required::Yes,
                MAX_TEXT_CHARS,
            )
        })
        .collect();
    let category = check.parse::<Touchpoint>("root_cause.category", &r.category);
    let corrective_action = check.text(
        "root_cause.corrective_action",
        &r.corrective_action,
        Required::Yes,
        MAX_TEXT_CHARS,
    );
    check.finish()?;
    Ok(RootCause {
        whys,
        category: category.ok_or_else(internal)?,
        corrective_action,
    })
}

fn internal() -> ComplaintError {
    ComplaintError::Invalid(missing_after_check())
}

#[cfg(test)]
mod tests;
