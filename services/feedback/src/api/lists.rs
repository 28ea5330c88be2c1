//! ListComplaints, from the projection's list index ([`ListEntry`]).
//!
//! The list orders by priority (highest first), then oldest filed first, then complaint
//! id, as the proto says. The page token is `<score>:<filed_ms>:<id>` of the last
//! complaint returned (`PageToken`); the next page starts after it (a priority that
//! changes between pages may move a complaint across the boundary).
//!
//! A caller gets only the complaints it sees ([`access::sees_complaint`]): those are
//! kept before ranking and paging, with the request's filters, so pages stay as correct
//! as without authorization. A complaint that is escalated out of a manager's sight
//! between two pages just leaves their later pages; one that comes into sight may be
//! missed by pages already past its place, as a priority change between pages may.
//! A request naming a store the caller does not see gets an empty list.

use std::collections::HashMap;

use churnguard_domain::FieldViolation;
use churnguard_domain::feedback::Level;
use churnguard_domain::feedback::complaint::{ComplaintStatus, Priority};
use churnguard_domain::feedback::sla::Directory;
use churnguard_domain::ids::ComplaintId;
use churnguard_eventlog::EventLog;
use churnguard_proto::feedback::v1 as pb;
use churnguard_runtime::identity::Caller;

use super::access;
use super::paging::{self, PageToken, page_size};
use super::{FeedbackApi, invalid};
use crate::error::FeedbackError;
use crate::mapping::{ProtoEnum, optional, summary};
use crate::projection::ListEntry;

/// A ListComplaints request, checked.
#[derive(Debug)]
struct ListQuery {
    page_size: usize,
    /// The last complaint of the previous page.
    after: Option<PageToken>,
    filter: ListFilter,
}

/// Which complaints a ListComplaints request keeps; unset or empty matches all.
#[derive(Debug)]
struct ListFilter {
    store_id: String,
    level: Option<Level>,
    statuses: Vec<ComplaintStatus>,
    breached: Option<bool>,
    holder_id: Option<String>,
}

impl ListFilter {
    /// Whether the filter keeps a listed complaint; the holder of its level is looked up
    /// in `directory`.
    fn keeps(&self, e: &ListEntry, directory: Option<&Directory>) -> bool {
        (self.store_id.is_empty() || e.store_id == self.store_id)
            && self.level.is_none_or(|l| e.level == l)
            && (self.statuses.is_empty() || self.statuses.contains(&e.status))
            && self.breached.is_none_or(|b| e.breached == b)
            && self
                .holder_id
                .as_deref()
                .is_none_or(|h| directory.and_then(|d| d.holder(e.level, &e.store_id)) == Some(h))
    }
}

impl<L: EventLog> FeedbackApi<L> {
    /// ListComplaints: one page of the complaints the request's filters keep, of those
    /// the caller sees (PERMISSION_DENIED to callers that see none at all).
    pub(super) async fn list(
        &self,
        caller: &Caller,
        req: pb::ListComplaintsRequest,
    ) -> Result<pb::ListComplaintsResponse, FeedbackError> {
        access::may_list_complaints(caller)?;
        let query = self.list_query(req)?;
        let directory = self.directory.as_deref();
        let matching = self
            .listed_matching(|e| {
                query.filter.keeps(e, directory)
                    && access::sees_complaint(caller, &e.store_id, e.level)
            })
            .await?;
        let priorities = self
            .priorities(
                &matching
                    .iter()
                    .map(|e| (e.complaint_id.as_str(), e.severity, e.customer.as_str()))
                    .collect::<Vec<_>>(),
            )
            .await?;
        let (page, more) = page_of(matching, &priorities, query.after.as_ref(), query.page_size);
        let complaints = self.summaries(&page, &priorities).await?;
        let next_page_token = match page.last() {
            Some((last, _)) if more => last.encode(),
            _ => String::new(),
        };
        Ok(pb::ListComplaintsResponse {
            complaints,
            next_page_token,
        })
    }

    /// Checks a ListComplaints request, naming every bad field at once.
    fn list_query(&self, req: pb::ListComplaintsRequest) -> Result<ListQuery, FeedbackError> {
        let mut bad = Vec::new();
        let page_size = page_size(req.page_size).map_err(|v| bad.push(v)).ok();
        let after = paging::after(&req.page_token, PageToken::parse)
            .map_err(|v| bad.push(v))
            .ok()
            .flatten();
        let level = optional::<Level>("level", req.level)
            .map_err(|v| bad.push(v))
            .ok()
            .flatten();
        let statuses = statuses(&req.statuses)
            .map_err(|v| bad.push(v))
            .unwrap_or_default();
        let holder_id = (!req.holder_id.is_empty()).then_some(req.holder_id);
        if holder_id.is_some() && self.directory.is_none() {
            bad.push(FieldViolation::new(
                "holder_id",
                "cannot be filtered on: this service has no staff directory",
            ));
        }
        let Some(page_size) = page_size.filter(|_| bad.is_empty()) else {
            return Err(invalid(bad));
        };
        Ok(ListQuery {
            page_size,
            after,
            filter: ListFilter {
                store_id: req.store_id,
                level,
                statuses,
                breached: req.breached,
                holder_id,
            },
        })
    }

    /// Every listed complaint `keep` keeps, after catching up every partition: everything
    /// in the log before this call, as GetComplaint sees it.
    async fn listed_matching(
        &self,
        keep: impl Fn(&ListEntry) -> bool,
    ) -> Result<Vec<ListEntry>, FeedbackError> {
        let projection = self.complaints.projection();
        let mut matching = Vec::new();
        for p in 0..projection.partitions() {
            self.complaints.catch_up(p).await?;
            matching.extend(projection.listed(p).await?.into_iter().filter(&keep));
        }
        Ok(matching)
    }

    /// The summaries of a page of listed complaints, loaded at once.
    async fn summaries(
        &self,
        page: &[(PageToken, ListEntry)],
        priorities: &HashMap<String, Priority>,
    ) -> Result<Vec<pb::ComplaintSummary>, FeedbackError> {
        let ids = page
            .iter()
            .map(|(_, e)| {
                ComplaintId::parse(e.complaint_id.clone())
                    .map_err(|err| FeedbackError::Corrupt(format!("listed id: {err}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let loaded = self.complaints.projection().load_many(&ids).await?;
        let mut complaints = Vec::with_capacity(loaded.len());
        for (c, id) in loaded.into_iter().zip(&ids) {
            let c = c.ok_or_else(|| {
                FeedbackError::Corrupt(format!("{} is listed but not projected", id.as_str()))
            })?;
            complaints.push(self.enrich(summary(&c), &c, priorities.get(id.as_str())));
        }
        Ok(complaints)
    }
}

/// The statuses a ListComplaints request filters on; one violation naming every number
/// that is no status.
fn statuses(numbers: &[i32]) -> Result<Vec<ComplaintStatus>, FieldViolation> {
    let mut statuses = Vec::with_capacity(numbers.len());
    let mut unknown = Vec::new();
    for n in numbers {
        match ComplaintStatus::from_proto("statuses", *n) {
            Ok(s) => statuses.push(s),
            Err(_) => unknown.push(n.to_string()),
        }
    }
    if unknown.is_empty() {
        Ok(statuses)
    } else {
        Err(FieldViolation::new(
            "statuses",
            format!(
                "holds values that are no known status: {}",
                unknown.join(", ")
            ),
        ))
    }
}

/// The page of `matching` that starts after `after` and holds at most `size` complaints,
/// each with its sort key: priority score (highest first), filed time, id. `true` if more
/// follow.
fn page_of(
    matching: Vec<ListEntry>,
    priorities: &HashMap<String, Priority>,
    after: Option<&PageToken>,
    size: usize,
) -> (Vec<(PageToken, ListEntry)>, bool) {
    let score = |e: &ListEntry| priorities.get(&e.complaint_id).map_or(0, |p| p.score);
    let mut ranked: Vec<(PageToken, ListEntry)> = matching
        .into_iter()
        .map(|e| (PageToken::of(&e, score(&e)), e))
        .filter(|(t, _)| after.is_none_or(|a| t > a))
        .collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0));
    let more = ranked.len() > size;
    ranked.truncate(size);
    (ranked, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_name_every_unknown_number_at_once() {
        assert_eq!(
            statuses(&[
                pb::ComplaintStatus::Resolved as i32,
                pb::ComplaintStatus::Open as i32
            ]),
            Ok(vec![ComplaintStatus::Resolved, ComplaintStatus::Open])
        );
        assert_eq!(
            statuses(&[9, 1, 0]),
            Err(FieldViolation::new(
                "statuses",
                "holds values that are no known status: 9, 0"
            ))
        );
    }
}
