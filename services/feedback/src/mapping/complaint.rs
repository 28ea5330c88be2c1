//! Complaints as the API shows them: summaries, the full complaint with its clocks and
//! history, and the values recorded on it.

use churnguard_domain::feedback::Remedy;
use churnguard_domain::feedback::complaint::{
    self as domain, Complainant, Complaint, ComplaintEvent, ContactDetails, EscalationReason,
};
use churnguard_proto::feedback::v1 as pb;

use super::enums::ProtoEnum;
use super::time::timestamp_out;

/// The summary lists and write responses show. `holder_id`, `next_due_at` and `priority`
/// need the staff directory, the SLA calendar and the customer's value, which the
/// complaint alone does not have: they are left unset here, and the API fills them in.
pub fn summary(c: &Complaint) -> pb::ComplaintSummary {
    pb::ComplaintSummary {
        complaint_id: c.id.as_str().to_owned(),
        version: c.version,
        status: c.status.to_proto(),
        level: c.level.to_proto(),
        holder_id: String::new(),
        level_since: timestamp_out(c.level_since),
        store_id: c.store_id.as_str().to_owned(),
        customer: Some(customer(&c.customer)),
        severity: c.severity.to_proto(),
        touchpoint: c.touchpoint.to_proto(),
        channel: c.channel.to_proto(),
        filed_at: timestamp_out(c.filed_at),
        breached: c.is_breached(),
        next_due_at: String::new(),
        next_due_clock: 0,
        priority: None,
    }
}

/// The full complaint GetComplaint answers with: its summary (as [`summary`]), clocks,
/// resolution, root cause and `history` (each event with the complaint after it), and
/// the contact details on record if they were asked for.
pub fn full_complaint(
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
            method: f.method.to_proto(),
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

/// A complaint's priority, with the points it is made of.
pub fn priority(p: &domain::Priority) -> pb::Priority {
    pb::Priority {
        score: p.score,
        severity_points: p.severity_points,
        value_points: p.value_points,
        churn_points: p.churn_points,
        incident_points: p.incident_points,
    }
}

/// Why a complaint was escalated: by hand, with the reason given, or by a breach of a
/// clock.
pub fn escalation_reason(r: &EscalationReason) -> pb::EscalationReason {
    let kind = match r {
        EscalationReason::Manual { text } => pb::escalation_reason::Kind::Manual(text.clone()),
        EscalationReason::Breach { clock } => pb::escalation_reason::Kind::Breach(clock.to_proto()),
    };
    pb::EscalationReason { kind: Some(kind) }
}

/// Contact details as a filing sends them, for the domain to check and the vault to seal.
pub fn contact_details_in(c: pb::ContactDetails) -> ContactDetails {
    ContactDetails {
        name: c.name,
        phone: c.phone,
        email: c.email,
        address: c.address,
    }
}

/// Contact details opened from the vault, for GetComplaint.
pub fn contact_details_out(d: ContactDetails) -> pb::ContactDetails {
    pb::ContactDetails {
        name: d.name,
        phone: d.phone,
        email: d.email,
        address: d.address,
    }
}

fn customer(c: &Complainant) -> pb::Customer {
    let kind = match c {
        Complainant::CustomerId(k) => pb::customer::Kind::CustomerId(k.as_str().to_owned()),
        Complainant::CardToken(k) => pb::customer::Kind::CardToken(k.as_str().to_owned()),
    };
    pb::Customer { kind: Some(kind) }
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
        category: r.category.to_proto(),
        corrective_action: r.corrective_action.clone(),
    }
}

fn remedies(r: &[Remedy]) -> Vec<i32> {
    r.iter().map(|r| r.to_proto()).collect()
}

/// One event of the complaint's history, with the version and level it left behind.
fn history_entry(e: &ComplaintEvent, after: &Complaint) -> pb::HistoryEntry {
    pb::HistoryEntry {
        version: after.version,
        at: timestamp_out(e.at()),
        r#type: e.event_type().to_owned(),
        level: after.level.to_proto(),
        details: Some(event_details(e)),
    }
}

/// What an event says, for the history.
fn event_details(e: &ComplaintEvent) -> pb::history_entry::Details {
    use pb::history_entry::Details;
    match e {
        ComplaintEvent::ComplaintFiled {
            channel,
            touchpoint,
            severity,
            description,
            occurred_at,
            ..
        } => Details::Filed(pb::ComplaintFiled {
            channel: channel.to_proto(),
            touchpoint: touchpoint.to_proto(),
            severity: severity.to_proto(),
            description: description.clone(),
            occurred_at: timestamp_out(*occurred_at),
        }),
        ComplaintEvent::ComplaintAcknowledged { method, note, .. } => {
            Details::Acknowledged(pb::ComplaintAcknowledged {
                method: method.to_proto(),
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
            from_level: from.to_proto(),
            to_level: to.to_proto(),
            reason: Some(escalation_reason(reason)),
        }),
        ComplaintEvent::SlaWarningRaised {
            run,
            fraction_percent,
            due_at,
            ..
        } => Details::SlaWarningRaised(pb::SlaWarningRaised {
            clock: run.clock.to_proto(),
            level: run.level.to_proto(),
            started_at: timestamp_out(run.started_at),
            percent_elapsed: (*fraction_percent).into(),
            due_at: timestamp_out(*due_at),
        }),
        ComplaintEvent::SlaBreached { run, due_at, .. } => Details::SlaBreached(pb::SlaBreached {
            clock: run.clock.to_proto(),
            level: run.level.to_proto(),
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
            clock: run.clock.to_proto(),
            level: run.level.to_proto(),
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
