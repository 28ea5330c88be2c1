//! What feedback records for ops, on top of the runtime's gRPC and consumer metrics
//! (consumers `projection` and `outreach`) and Redis's. Complaint and outreach counts come
//! from the projection: each accepted event is counted when the batch that applies it is
//! committed, so a command retried, or a batch applied by two replicas at once, counts
//! once. Labels are bounded vocabularies (severity, touchpoint, level, clock, outcome,
//! reason); never a complaint, a case or a customer.

use std::collections::BTreeMap;

use churnguard_domain::feedback::complaint::{Complaint, ComplaintEvent, SlaClock};
use churnguard_domain::feedback::outreach::OutreachEvent;
use churnguard_domain::feedback::sla::Directory;
use churnguard_domain::feedback::{DefectionReason, Level, OutreachOutcome, Severity, Touchpoint};
use churnguard_runtime::consumer_metrics::ConsumerMetrics;

/// The projection of the feedback events topic into the read model.
pub const PROJECTION: ConsumerMetrics = ConsumerMetrics::new("projection");
/// The outreach opener, a consumer of the churn signals topic.
pub const OUTREACH: ConsumerMetrics = ConsumerMetrics::new("outreach");

/// Complaints filed, by severity and touchpoint.
pub const COMPLAINTS_FILED_TOTAL: &str = "churnguard_complaints_filed_total";
/// Escalations, by the level escalated to.
pub const ESCALATIONS_TOTAL: &str = "churnguard_escalations_total";
/// SLA warnings raised, by clock and level.
pub const SLA_WARNINGS_TOTAL: &str = "churnguard_sla_warnings_total";
/// SLA breaches, by clock and level.
pub const SLA_BREACHES_TOTAL: &str = "churnguard_sla_breaches_total";
/// Outreach cases opened for defectors and customers at risk.
pub const OUTREACH_OPENED_TOTAL: &str = "churnguard_outreach_cases_opened_total";
/// Outreach results recorded, by outcome.
pub const OUTREACH_CLOSED_TOTAL: &str = "churnguard_outreach_cases_closed_total";
/// Reasons defectors gave, by reason.
pub const OUTREACH_REASONS_TOTAL: &str = "churnguard_outreach_reasons_total";
/// Complaints not resolved, by severity and the level that owns them.
pub const COMPLAINTS_OPEN: &str = "churnguard_complaints_open";
/// Business seconds (the store's calendar) from filing to the first response.
pub const FIRST_RESPONSE_BUSINESS_SECONDS: &str =
    "churnguard_complaint_first_response_business_seconds";
/// Business seconds (the store's calendar) from filing to resolution.
pub const RESOLUTION_BUSINESS_SECONDS: &str = "churnguard_complaint_resolution_business_seconds";

/// HELP text and units, and the consumers' counters at zero.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        COMPLAINTS_FILED_TOTAL,
        Unit::Count,
        "Complaints filed, by severity and touchpoint"
    );
    describe_counter!(
        ESCALATIONS_TOTAL,
        Unit::Count,
        "Complaints escalated, by the level escalated to"
    );
    describe_counter!(
        SLA_WARNINGS_TOTAL,
        Unit::Count,
        "SLA warnings raised, by clock and level"
    );
    describe_counter!(
        SLA_BREACHES_TOTAL,
        Unit::Count,
        "SLA deadlines breached, by clock and level"
    );
    describe_counter!(
        OUTREACH_OPENED_TOTAL,
        Unit::Count,
        "Outreach cases opened for customers at risk or defected"
    );
    describe_counter!(
        OUTREACH_CLOSED_TOTAL,
        Unit::Count,
        "Outreach results recorded, by outcome"
    );
    describe_counter!(
        OUTREACH_REASONS_TOTAL,
        Unit::Count,
        "Reasons for leaving that customers gave in outreach, by reason"
    );
    describe_gauge!(
        COMPLAINTS_OPEN,
        Unit::Count,
        "Complaints not resolved, by severity and the level that owns them"
    );
    describe_histogram!(
        FIRST_RESPONSE_BUSINESS_SECONDS,
        Unit::Seconds,
        "Business seconds (the store's opening hours) from filing a complaint to its first response"
    );
    describe_histogram!(
        RESOLUTION_BUSINESS_SECONDS,
        Unit::Seconds,
        "Business seconds (the store's opening hours) from filing a complaint to its resolution"
    );
    churnguard_redis::metrics::describe();
    PROJECTION.register();
    OUTREACH.register();
    register();
}

/// Every counter at zero for every value of its labels (all bounded vocabularies), so
/// that dashboards and alerts see a series before its first event.
fn register() {
    metrics::counter!(OUTREACH_OPENED_TOTAL).increment(0);
    for severity in Severity::ALL {
        for touchpoint in Touchpoint::ALL {
            metrics::counter!(COMPLAINTS_FILED_TOTAL, "severity" => severity.as_str(), "touchpoint" => touchpoint.as_str())
                .increment(0);
        }
    }
    for level in Level::ALL {
        metrics::counter!(ESCALATIONS_TOTAL, "level" => level.as_str()).increment(0);
        for clock in SlaClock::ALL {
            for name in [SLA_WARNINGS_TOTAL, SLA_BREACHES_TOTAL] {
                metrics::counter!(name, "clock" => clock.as_str(), "level" => level.as_str())
                    .increment(0);
            }
        }
    }
    for outcome in OutreachOutcome::ALL {
        metrics::counter!(OUTREACH_CLOSED_TOTAL, "outcome" => outcome.as_str()).increment(0);
    }
    for reason in DefectionReason::ALL {
        metrics::counter!(OUTREACH_REASONS_TOTAL, "reason" => reason.as_str()).increment(0);
    }
    // The histograms exist (empty) before the first complaint is answered.
    let _ = metrics::histogram!(FIRST_RESPONSE_BUSINESS_SECONDS);
    let _ = metrics::histogram!(RESOLUTION_BUSINESS_SECONDS);
}

/// The open-complaint gauges: `open` counts by (severity, level); combinations not in it
/// are set to zero.
pub fn complaints_open(open: &BTreeMap<(Severity, Level), u64>) {
    for severity in Severity::ALL {
        for level in Level::ALL {
            let n = open.get(&(*severity, *level)).copied().unwrap_or(0);
            metrics::gauge!(COMPLAINTS_OPEN, "severity" => severity.as_str(), "level" => level.as_str())
                .set(n as f64);
        }
    }
}

type Labels = Vec<(&'static str, &'static str)>;

/// The counts of one batch's accepted events, recorded once the batch is committed.
#[derive(Debug, Default)]
pub struct Tally {
    counts: BTreeMap<(&'static str, Labels), u64>,
    /// Business seconds to record in a histogram, by its name.
    durations: Vec<(&'static str, f64)>,
}

impl Tally {
    fn add(&mut self, name: &'static str, labels: Labels) {
        *self.counts.entry((name, labels)).or_default() += 1;
    }

    /// An accepted complaint event, applied to `before`; `directory` (when the SLA is
    /// kept) gives the store's calendar for the business-time histograms.
    pub fn complaint(
        &mut self,
        before: Option<&Complaint>,
        e: &ComplaintEvent,
        directory: Option<&Directory>,
    ) {
        if let (Some(c), Some(directory)) = (before, directory) {
            let since_filing = |at| {
                directory
                    .calendar_for(c.store_id.as_str())
                    .business_between(c.filed_at, at) as f64
            };
            match e {
                ComplaintEvent::ComplaintAcknowledged { at, .. } if c.first_response.is_none() => {
                    self.durations
                        .push((FIRST_RESPONSE_BUSINESS_SECONDS, since_filing(*at)));
                }
                ComplaintEvent::ComplaintResolved { at, .. } => {
                    self.durations
                        .push((RESOLUTION_BUSINESS_SECONDS, since_filing(*at)));
                }
                _ => {}
            }
        }
        match e {
            ComplaintEvent::ComplaintFiled {
                severity,
                touchpoint,
                ..
            } => self.add(
                COMPLAINTS_FILED_TOTAL,
                vec![
                    ("severity", severity.as_str()),
                    ("touchpoint", touchpoint.as_str()),
                ],
            ),
            ComplaintEvent::ComplaintEscalated { to, .. } => {
                self.add(ESCALATIONS_TOTAL, vec![("level", to.as_str())]);
            }
            ComplaintEvent::SlaWarningRaised { run, .. } => self.add(
                SLA_WARNINGS_TOTAL,
                vec![("clock", run.clock.as_str()), ("level", run.level.as_str())],
            ),
            ComplaintEvent::SlaBreached { run, .. } => self.add(
                SLA_BREACHES_TOTAL,
                vec![("clock", run.clock.as_str()), ("level", run.level.as_str())],
            ),
            _ => {}
        }
    }

    /// An accepted outreach event.
    pub fn outreach(&mut self, e: &OutreachEvent) {
        match e {
            OutreachEvent::OutreachOpened { .. } => self.add(OUTREACH_OPENED_TOTAL, vec![]),
            OutreachEvent::OutreachRecorded {
                outcome, reason, ..
            } => {
                self.add(OUTREACH_CLOSED_TOTAL, vec![("outcome", outcome.as_str())]);
                if let Some(reason) = reason {
                    self.add(OUTREACH_REASONS_TOTAL, vec![("reason", reason.as_str())]);
                }
            }
            _ => {}
        }
    }

    /// The batch was committed: the counts go to the counters.
    pub fn record(self) {
        for (name, seconds) in self.durations {
            metrics::histogram!(name).record(seconds);
        }
        for ((name, labels), n) in self.counts {
            let labels: Vec<metrics::Label> = labels
                .into_iter()
                .map(|(k, v)| metrics::Label::new(k, v))
                .collect();
            metrics::counter!(name, labels).increment(n);
        }
    }
}
