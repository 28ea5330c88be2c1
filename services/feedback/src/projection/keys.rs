//! The read model's Redis keys. Every key of a partition carries the partition's hash
//! tag (`{p<partition>}`), so one script can change them all atomically, on a single
//! Redis or a cluster.

use chrono::NaiveDate;

/// The hash of a complaint.
pub fn complaint_key(partition: u32, complaint: &str) -> String {
    format!("fc:{{p{partition}}}:{complaint}")
}

/// The deadline index of a partition.
pub fn deadline_key(partition: u32) -> String {
    format!("fd:{{p{partition}}}")
}

/// The list index of a partition.
pub fn list_key(partition: u32) -> String {
    format!("fl:{{p{partition}}}")
}

/// The hash of an outreach case.
pub fn case_key(partition: u32, case: &str) -> String {
    format!("fo:{{p{partition}}}:{case}")
}

/// The outreach list index of a partition.
pub fn case_list_key(partition: u32) -> String {
    format!("fol:{{p{partition}}}")
}

/// A customer's complaints filed to a partition: complaint → `<filed_ms> <touchpoint>`.
/// Incident histories read the customer's hash in every partition.
pub fn customer_complaints_key(partition: u32, customer: &str) -> String {
    format!("fu:{{p{partition}}}:{customer}")
}

/// A customer's outreach cases opened in a partition: case → opened time (epoch ms). The
/// outreach opener reads the customer's hash in every partition to find the case of their
/// current episode.
pub fn customer_cases_key(partition: u32, customer: &str) -> String {
    format!("fuo:{{p{partition}}}:{customer}")
}

/// The defection-reason counters of a partition for one UTC day.
pub fn reasons_key(partition: u32, day: NaiveDate) -> String {
    format!("fr:{{p{partition}}}:{day}")
}
