//! The list indexes: what ListComplaints and ListOutreach filter and order by without
//! loading a complaint or case, as one small string per stream.

use churnguard_domain::feedback::complaint::{Complaint, ComplaintStatus};
use churnguard_domain::feedback::outreach::{OutreachCase, OutreachStatus};
use churnguard_domain::feedback::{Level, OutreachOutcome, Severity};

const STATUSES: &[ComplaintStatus] = &[
    ComplaintStatus::Open,
    ComplaintStatus::Acknowledged,
    ComplaintStatus::WaitingOnCustomer,
    ComplaintStatus::Resolved,
];

/// What the list index holds of a complaint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub complaint_id: String,
    pub filed_ms: i64,
    pub level: Level,
    pub status: ComplaintStatus,
    pub breached: bool,
    pub severity: Severity,
    /// The complainant's customer key (customer id or card token).
    pub customer: String,
    pub store_id: String,
}

impl ListEntry {
    pub fn of(c: &Complaint) -> Self {
        Self {
            complaint_id: c.id.as_str().to_owned(),
            filed_ms: c.filed_at.timestamp_millis(),
            level: c.level,
            status: c.status,
            breached: c.is_breached(),
            severity: c.severity,
            customer: c.customer.key().as_str().to_owned(),
            store_id: c.store_id.as_str().to_owned(),
        }
    }

    /// The index value (the complaint id is the field).
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {} {} {} {}",
            self.filed_ms,
            self.level.as_str(),
            self.status.as_str(),
            u8::from(self.breached),
            self.severity.as_str(),
            self.customer,
            self.store_id
        )
    }

    pub fn decode(complaint_id: &str, value: &str) -> Option<Self> {
        let mut parts = value.splitn(7, ' ');
        let filed_ms = parts.next()?.parse().ok()?;
        let level = parts.next()?;
        let level = *Level::ALL.iter().find(|l| l.as_str() == level)?;
        let status = parts.next()?;
        let status = *STATUSES.iter().find(|s| s.as_str() == status)?;
        let breached = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let severity = parts.next()?.parse().ok()?;
        let customer = parts.next()?.to_owned();
        let store_id = parts.next()?.to_owned();
        Some(Self {
            complaint_id: complaint_id.to_owned(),
            filed_ms,
            level,
            status,
            breached,
            severity,
            customer,
            store_id,
        })
    }
}

/// What the outreach list index holds of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseEntry {
    pub case_id: String,
    pub due_ms: i64,
    pub status: OutreachStatus,
    /// Someone got through at least once (so the case is not overdue, whatever the time).
    pub reached: bool,
    pub store_id: String,
}

impl CaseEntry {
    pub fn of(c: &OutreachCase) -> Self {
        Self {
            case_id: c.id.as_str().to_owned(),
            due_ms: c.due_at.timestamp_millis(),
            status: c.status,
            reached: c
                .attempts
                .iter()
                .any(|a| a.outcome != OutreachOutcome::NotReached),
            store_id: c.home_store.as_str().to_owned(),
        }
    }

    /// Open, past its deadline at `now_ms` and nobody reached: the rule of
    /// [`OutreachCase::is_overdue`], on the index entry.
    pub fn is_overdue(&self, now_ms: i64) -> bool {
        self.status == OutreachStatus::Open && now_ms > self.due_ms && !self.reached
    }

    /// The index value (the case id is the field).
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.due_ms,
            self.status.as_str(),
            u8::from(self.reached),
            self.store_id
        )
    }

    pub fn decode(case_id: &str, value: &str) -> Option<Self> {
        let mut parts = value.splitn(4, ' ');
        let due_ms = parts.next()?.parse().ok()?;
        let status = match parts.next()? {
            "open" => OutreachStatus::Open,
            "closed" => OutreachStatus::Closed,
            _ => return None,
        };
        let reached = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        Some(Self {
            case_id: case_id.to_owned(),
            due_ms,
            status,
            reached,
            store_id: parts.next()?.to_owned(),
        })
    }
}
