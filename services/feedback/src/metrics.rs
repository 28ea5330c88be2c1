//! What feedback records for ops, on top of the runtime's gRPC and consumer metrics
//! (consumers `projection` and `outreach`) and Redis's. Complaint and outreach counts come
//! from the projection: each accepted event is counted when the batch that applies it is
//! committed, so a command retried, or a batch applied by two replicas at once, counts
//! once. Labels are bounded vocabularies (severity, touchpoint, level, clock, outcome,
//! reason); never a complaint, a case or a customer.

use std::collections::BTreeMap;

use churnguard_domain::feedback::complaint::ComplaintEvent;
use churnguard_domain::feedback::outreach::OutreachEvent;
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

/// HELP text and units, and the consumers' counters at zero.
pub fn describe() {
    use metrics::{Unit, describe_counter};
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
    churnguard_redis::metrics::describe();
    PROJECTION.register();
    OUTREACH.register();
    metrics::counter!(OUTREACH_OPENED_TOTAL).increment(0);
}

type Labels = Vec<(&'static str, &'static str)>;

/// The counts of one batch's accepted events, recorded once the batch is committed.
#[derive(Debug, Default)]
pub struct Tally {
    counts: BTreeMap<(&'static str, Labels), u64>,
}

impl Tally {
    fn add(&mut self, name: &'static str, labels: Labels) {
        *self.counts.entry((name, labels)).or_default() += 1;
    }

    /// An accepted complaint event.
    pub fn complaint(&mut self, e: &ComplaintEvent) {
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
        for ((name, labels), n) in self.counts {
            let labels: Vec<metrics::Label> = labels
                .into_iter()
                .map(|(k, v)| metrics::Label::new(k, v))
                .collect();
            metrics::counter!(name, labels).increment(n);
        }
    }
}
