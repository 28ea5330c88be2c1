//! Reading the read model: complaints, cases, their histories and outcomes, the
//! indexes, incident histories and the reasons counters.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use churnguard_domain::feedback::complaint::{Complaint, ComplaintEvent, Incident};
use churnguard_domain::feedback::outreach::{Cause, OutreachCase, Tally};
use churnguard_domain::ids::{ComplaintId, OutreachCaseId};
use serde::de::DeserializeOwned;

use super::{
    CaseEntry, ListEntry, Projection, case_key, case_list_key, complaint_key, customer_cases_key,
    customer_complaints_key, deadline_key, list_key, reasons_key, sum_reasons,
};
use crate::error::FeedbackError;

impl Projection {
    /// A stream (complaint or outreach case) as the read model has it, from its hash.
    pub async fn load_stream<S: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<S>, FeedbackError> {
        let mut conn = self.conn.clone();
        let json: Option<String> = redis::cmd("HGET")
            .arg(key)
            .arg("c")
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGET stream"))?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| FeedbackError::Corrupt(format!("{key}: {e}")))
        })
        .transpose()
    }

    /// A complaint as the read model has it.
    pub async fn load(&self, complaint: &ComplaintId) -> Result<Option<Complaint>, FeedbackError> {
        let key = complaint_key(self.partition_of(complaint), complaint.as_str());
        self.load_stream(&key).await
    }

    /// The complaints of `partition` whose next alarm is due at or before `now_secs`
    /// (epoch seconds), earliest first.
    pub async fn due(&self, partition: u32, now_secs: i64) -> Result<Vec<String>, FeedbackError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZRANGE")
            .arg(deadline_key(partition))
            .arg("-inf")
            .arg(now_secs)
            .arg("BYSCORE")
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("ZRANGE deadlines"))
    }

    /// The whole deadline index of `partition`: complaint and epoch second, earliest first.
    pub async fn deadlines(&self, partition: u32) -> Result<Vec<(String, i64)>, FeedbackError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZRANGE")
            .arg(deadline_key(partition))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("ZRANGE deadlines"))
    }

    /// The list index of `partition`, in no particular order.
    pub async fn listed(&self, partition: u32) -> Result<Vec<ListEntry>, FeedbackError> {
        let mut conn = self.conn.clone();
        let key = list_key(partition);
        let raw: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGETALL list index"))?;
        raw.iter()
            .map(|(id, v)| {
                ListEntry::decode(id, v)
                    .ok_or_else(|| FeedbackError::Corrupt(format!("{key} field {id}")))
            })
            .collect()
    }

    /// Several complaints as the read model has them, in the order asked (`None` where
    /// the read model has none).
    pub async fn load_many(
        &self,
        complaints: &[ComplaintId],
    ) -> Result<Vec<Option<Complaint>>, FeedbackError> {
        if complaints.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for c in complaints {
            pipe.cmd("HGET")
                .arg(complaint_key(self.partition_of(c), c.as_str()))
                .arg("c");
        }
        let raw: Vec<Option<String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGET complaints"))?;
        raw.into_iter()
            .zip(complaints)
            .map(|(json, c)| {
                json.map(|j| {
                    serde_json::from_str(&j)
                        .map_err(|e| FeedbackError::Corrupt(format!("{}: {e}", c.as_str())))
                })
                .transpose()
            })
            .collect()
    }

    /// A complaint's accepted events, oldest first (`e:<version>` of its hash).
    pub async fn events(
        &self,
        complaint: &ComplaintId,
    ) -> Result<Vec<ComplaintEvent>, FeedbackError> {
        let mut conn = self.conn.clone();
        let key = complaint_key(self.partition_of(complaint), complaint.as_str());
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGETALL complaint"))?;
        let mut events = Vec::new();
        for (field, json) in fields {
            let Some(version) = field.strip_prefix("e:") else {
                continue;
            };
            let version: u64 = version
                .parse()
                .map_err(|_| FeedbackError::Corrupt(format!("{key} field {field}")))?;
            let event = serde_json::from_str(&json)
                .map_err(|e| FeedbackError::Corrupt(format!("{key} field {field}: {e}")))?;
            events.push((version, event));
        }
        events.sort_by_key(|(v, _)| *v);
        if events
            .iter()
            .enumerate()
            .any(|(i, (v, _))| *v != i as u64 + 1)
        {
            return Err(FeedbackError::Corrupt(format!(
                "{key}: a gap in the history"
            )));
        }
        Ok(events.into_iter().map(|(_, e)| e).collect())
    }

    /// An outreach case as the read model has it.
    pub async fn load_case(
        &self,
        case: &OutreachCaseId,
    ) -> Result<Option<OutreachCase>, FeedbackError> {
        let key = case_key(self.partition_of_stream(case.as_str()), case.as_str());
        self.load_stream(&key).await
    }

    /// Several cases, in the order asked (`None` where the read model has none).
    pub async fn load_cases(
        &self,
        cases: &[&str],
    ) -> Result<Vec<Option<OutreachCase>>, FeedbackError> {
        if cases.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for c in cases {
            pipe.cmd("HGET")
                .arg(case_key(self.partition_of_stream(c), c))
                .arg("c");
        }
        let raw: Vec<Option<String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGET cases"))?;
        raw.into_iter()
            .zip(cases)
            .map(|(json, c)| {
                json.map(|j| {
                    serde_json::from_str(&j)
                        .map_err(|e| FeedbackError::Corrupt(format!("{c}: {e}")))
                })
                .transpose()
            })
            .collect()
    }

    /// The outreach list index of `partition`, in no particular order.
    pub async fn listed_cases(&self, partition: u32) -> Result<Vec<CaseEntry>, FeedbackError> {
        let mut conn = self.conn.clone();
        let key = case_list_key(partition);
        let raw: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGETALL outreach index"))?;
        raw.iter()
            .map(|(id, v)| {
                CaseEntry::decode(id, v)
                    .ok_or_else(|| FeedbackError::Corrupt(format!("{key} field {id}")))
            })
            .collect()
    }

    /// The ids of a customer's outreach cases, from their hash in every partition (as far
    /// as each partition is projected).
    pub async fn customer_cases(&self, customer: &str) -> Result<Vec<String>, FeedbackError> {
        let mut pipe = redis::pipe();
        for p in 0..self.partitions {
            pipe.cmd("HKEYS").arg(customer_cases_key(p, customer));
        }
        let mut conn = self.conn.clone();
        let raw: Vec<Vec<String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HKEYS customer cases"))?;
        Ok(raw.into_iter().flatten().collect())
    }

    /// Every complaint of each customer, from their hash in every partition.
    pub async fn incidents(
        &self,
        customers: &[&str],
    ) -> Result<HashMap<String, Vec<Incident>>, FeedbackError> {
        let mut pipe = redis::pipe();
        for c in customers {
            for p in 0..self.partitions {
                pipe.cmd("HGETALL").arg(customer_complaints_key(p, c));
            }
        }
        if customers.is_empty() {
            return Ok(HashMap::new());
        }
        let mut conn = self.conn.clone();
        let raw: Vec<Vec<(String, String)>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGETALL customer complaints"))?;
        let per = self.partitions as usize;
        let mut all = HashMap::new();
        for (c, hashes) in customers.iter().zip(raw.chunks(per.max(1))) {
            let mut incidents = Vec::new();
            for (id, value) in hashes.iter().flatten() {
                let parsed = value.split_once(' ').and_then(|(ms, tp)| {
                    Some(Incident {
                        complaint_id: ComplaintId::parse(id.as_str()).ok()?,
                        filed_at: chrono::DateTime::from_timestamp_millis(ms.parse().ok()?)?,
                        touchpoint: tp.parse().ok()?,
                    })
                });
                incidents.push(parsed.ok_or_else(|| {
                    FeedbackError::Corrupt(format!("complaints of {c}: field {id}"))
                })?);
            }
            all.insert((*c).to_owned(), incidents);
        }
        Ok(all)
    }

    /// The reasons counters of every partition over the UTC days `from ..= to`, summed
    /// per store and cause. One HGETALL per partition and day, in one pipeline.
    pub async fn reasons(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<BTreeMap<(String, Cause), Tally>, FeedbackError> {
        let mut pipe = redis::pipe();
        let mut day = from;
        while day <= to {
            for p in 0..self.partitions {
                pipe.cmd("HGETALL").arg(reasons_key(p, day));
            }
            day = day.succ_opt().unwrap_or(NaiveDate::MAX);
            if day == NaiveDate::MAX {
                break;
            }
        }
        let mut conn = self.conn.clone();
        let raw: Vec<Vec<(String, i64)>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HGETALL reasons"))?;
        let mut sums = BTreeMap::new();
        for fields in raw {
            sum_reasons(fields, &mut sums)?;
        }
        Ok(sums)
    }

    /// The commit accepted on `base_version`, and the version a key was used for.
    pub async fn outcome(
        &self,
        complaint: &ComplaintId,
        base_version: u64,
        key: Option<&str>,
    ) -> Result<(Option<String>, Option<u64>), FeedbackError> {
        let hash = complaint_key(self.partition_of(complaint), complaint.as_str());
        self.outcome_in(&hash, base_version, key).await
    }

    /// The commit accepted on `base_version` of the stream whose hash is `hash`, and the
    /// version `key` was used for.
    pub async fn outcome_in(
        &self,
        hash: &str,
        base_version: u64,
        key: Option<&str>,
    ) -> Result<(Option<String>, Option<u64>), FeedbackError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(hash).arg(format!("w:{base_version}"));
        cmd.arg(format!("k:{}", key.unwrap_or("")));
        let (winner, version): (Option<String>, Option<u64>) = cmd
            .query_async(&mut conn)
            .await
            .map_err(FeedbackError::redis("HMGET outcome"))?;
        Ok((winner, key.and(version)))
    }
}
