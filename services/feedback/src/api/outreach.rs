//! Defector outreach: ListOutreach (from the outreach list index, by due time),
//! RecordOutreach and GetDefectionReasons (from the per-day reasons counters).

use churnguard_domain::FieldViolation;
use churnguard_domain::feedback::outreach::{
    OutreachCommand, OutreachError, OutreachStatus, RecordOutreach,
    input_violations as outreach_input_violations,
};
use churnguard_domain::feedback::{ContactMethod, DefectionReason, OutreachOutcome};
use churnguard_domain::ids::{OutreachCaseId, check_id};
use churnguard_eventlog::EventLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_runtime::identity::Caller;

use super::access;
use super::paging::{self, CaseToken, page_size};
use super::{FeedbackApi, idempotency_key_of, invalid};
use crate::error::FeedbackError;
use crate::mapping::{command_input, day, defection_reason_row, optional, outreach_case};
use crate::projection::CaseEntry;

/// The longest period GetDefectionReasons sums over, in days.
pub const MAX_REASON_DAYS: i64 = 366;

impl<L: EventLog> FeedbackApi<L> {
    /// ListOutreach: one page of the cases the request's filters keep, by due time, of
    /// the stores the caller sees ([`access::may_list_outreach`]; kept before paging, so
    /// pages stay correct; a request naming another store gets an empty list).
    pub(super) async fn list_cases(
        &self,
        caller: &Caller,
        req: pb::ListOutreachRequest,
    ) -> Result<pb::ListOutreachResponse, FeedbackError> {
        let sees_store = access::may_list_outreach(caller)?;
        let mut bad = Vec::new();
        let size = page_size(req.page_size).map_err(|v| bad.push(v)).ok();
        let after = paging::after(&req.page_token, CaseToken::parse)
            .map_err(|v| bad.push(v))
            .ok()
            .flatten();
        let status = optional::<OutreachStatus>("status", req.status)
            .map_err(|v| bad.push(v))
            .ok()
            .flatten();
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
                && sees_store(&e.store_id)
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

    /// RecordOutreach: one attempt to reach the customer. Bad request fields are reported
    /// all at once: the case id and the key together with the attempt's own fields.
    /// Callers that record no outreach are refused ([`access::may_record_outreach`]); a
    /// case of a store the caller does not see answers as one that does not exist.
    pub(super) async fn record(
        &self,
        caller: &Caller,
        r: pb::RecordOutreachRequest,
    ) -> Result<pb::OutreachCase, FeedbackError> {
        access::may_record_outreach(caller)?;
        let cmd = OutreachCommand::RecordOutreach(RecordOutreach {
            expected_version: r.expected_version,
            reason: command_input::<DefectionReason>("reason", r.reason),
            free_text: r.free_text,
            outcome: command_input::<OutreachOutcome>("outcome", r.outcome),
            method: command_input::<ContactMethod>("method", r.method),
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
        if !access::sees_every_case(caller) {
            let store = self.complaints.get_case(&id).await?.map(|c| c.home_store);
            if !store.is_some_and(|s| access::may_record_outreach_on(caller, s.as_str())) {
                return Err(OutreachError::NotFound.into());
            }
        }
        let (case, _) = self
            .complaints
            .execute_outreach(&id, cmd, key, caller.event_actor().as_deref())
            .await?;
        Ok(outreach_case(&case, self.complaints.now()))
    }

    /// GetDefectionReasons: the reasons counters of the period's days, summed per store
    /// and cause, after catching up every partition.
    /// Store gateways are refused ([`access::may_read_reasons`]); managers get their
    /// stores' rows only.
    pub(super) async fn reasons(
        &self,
        caller: &Caller,
        req: pb::GetDefectionReasonsRequest,
    ) -> Result<pb::GetDefectionReasonsResponse, FeedbackError> {
        access::may_read_reasons(caller)?;
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
            .filter(|((store, _), _)| {
                (req.store_id.is_empty() || *store == req.store_id)
                    && access::reads_reasons_of(caller, store)
            })
            .map(|((store_id, cause), t)| defection_reason_row(store_id, cause, t))
            .collect();
        Ok(pb::GetDefectionReasonsResponse { rows })
    }
}
