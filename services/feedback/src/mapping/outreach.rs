//! Outreach cases and defection reasons as the API shows them.

use chrono::{DateTime, Utc};
use churnguard_domain::feedback::outreach::{Cause, OutreachCase, Tally};
use churnguard_proto::feedback::v1 as pb;

use super::enums::ProtoEnum;
use super::time::timestamp_out;

/// An outreach case for the API; `overdue` as of `now`.
pub fn outreach_case(c: &OutreachCase, now: DateTime<Utc>) -> pb::OutreachCase {
    pb::OutreachCase {
        case_id: c.id.as_str().to_owned(),
        version: c.version,
        status: c.status.to_proto(),
        customer_id: c.customer.as_str().to_owned(),
        home_store_id: c.home_store.as_str().to_owned(),
        defector_state: c.state.to_proto(),
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
                reason: a.reason.map_or(0, ProtoEnum::to_proto),
                free_text: a.free_text.clone().unwrap_or_default(),
                outcome: a.outcome.to_proto(),
                method: a.method.to_proto(),
            })
            .collect(),
        customer_returned_on: c.returned_on.map(|d| d.to_string()).unwrap_or_default(),
    }
}

/// One row of GetDefectionReasons: what a store's defectors and complaints say about one
/// cause over the period.
pub fn defection_reason_row(store_id: String, cause: Cause, t: Tally) -> pb::DefectionReasonRow {
    use pb::defection_reason_row::Cause as Row;
    pb::DefectionReasonRow {
        store_id,
        cause: Some(match cause {
            Cause::Reason(r) => Row::Reason(r.to_proto()),
            Cause::Touchpoint(t) => Row::Touchpoint(t.to_proto()),
        }),
        complaints: t.complaints,
        defectors: t.defectors,
        lost: t.lost,
        won_back: t.won_back,
        value_lost_minor_units: t.value_lost_minor,
        value_saved_minor_units: t.value_saved_minor,
    }
}
