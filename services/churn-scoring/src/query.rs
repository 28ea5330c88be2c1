//! The query side's Redis reads: the at-risk index, the day stats and the home-store
//! counts that `transition.lua` maintains (see the key functions in [`crate::store`]).
//! Each read touches one partition's keys; the API merges partitions.

use std::collections::BTreeMap;

use churnguard_domain::customer::Day;

use crate::error::ScoringError;
use crate::store::{CustomerStore, at_risk_key, day_stats_key, home_counts_key};

/// A customer in an at-risk list: value at risk in whole minor units first, so that the
/// list order is value descending, then customer id ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtRisk {
    pub value_at_risk: i64,
    pub customer: String,
}

impl AtRisk {
    /// Whether `self` comes after `cursor` in list order.
    fn after(&self, cursor: &AtRisk) -> bool {
        self.value_at_risk < cursor.value_at_risk
            || (self.value_at_risk == cursor.value_at_risk && self.customer > cursor.customer)
    }

    /// The opaque page token that continues after this entry.
    pub fn page_token(&self) -> String {
        hex::encode(format!("{}\n{}", self.value_at_risk, self.customer))
    }

    /// Reads a page token back; `None` if it is not one of ours.
    pub fn from_page_token(token: &str) -> Option<Self> {
        let raw = String::from_utf8(hex::decode(token).ok()?).ok()?;
        let (value, customer) = raw.split_once('\n')?;
        Some(Self {
            value_at_risk: value.parse().ok()?,
            customer: customer.to_owned(),
        })
    }
}

/// Sorts into list order.
pub fn sort_at_risk(entries: &mut [AtRisk]) {
    entries.sort_by(|a, b| {
        b.value_at_risk
            .cmp(&a.value_at_risk)
            .then_with(|| a.customer.cmp(&b.customer))
    });
}

/// A store with customers at home there, and how many, summed over partitions: an entry
/// of ListStores, in store id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeStore {
    pub store: String,
    pub customers: u64,
}

impl HomeStore {
    /// The opaque page token that continues after this store.
    pub fn page_token(&self) -> String {
        hex::encode(&self.store)
    }

    /// The store a page token continues after; `None` if it is not one of ours (a store
    /// id is never empty and holds no newline, unlike an at-risk list's token).
    pub fn after_page_token(token: &str) -> Option<String> {
        let store = String::from_utf8(hex::decode(token).ok()?).ok()?;
        churnguard_domain::ids::check_id(&store).ok()?;
        Some(store)
    }
}

/// A store's defection figures over a period, summed over partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayStats {
    pub defected: u64,
    pub won_back: u64,
    pub value_lost: i64,
}

fn command(command: &'static str) -> impl FnOnce(redis::RedisError) -> ScoringError {
    move |source| ScoringError::Redis { command, source }
}

/// A store's figures now, over every partition: what the store gauges show
/// ([`crate::metrics::store`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreFigures {
    pub customers: u64,
    pub at_risk: u64,
    /// Value at risk of the at-risk customers, in minor units.
    pub value_at_risk: f64,
    /// Defections counted in the window given to [`CustomerStore::store_figures`], less
    /// the win-backs counted in it (at least 0).
    pub defected: u64,
}

/// Partition `p`'s home counts (`hc:`): store -> customers at home there.
async fn home_counts<T: redis::FromRedisValue>(
    conn: &mut churnguard_redis::RedisConnection,
    p: u32,
) -> Result<BTreeMap<String, T>, ScoringError> {
    redis::cmd("HGETALL")
        .arg(home_counts_key(p))
        .query_async(conn)
        .await
        .map_err(command("HGETALL home counts"))
}

impl CustomerStore {
    /// Every store's figures: home customers (`hc:`), at-risk customers and their value
    /// at risk (`ar:`), and defections less win-backs on the days `window` (`ds:`), summed
    /// over `partitions`.
    pub async fn store_figures(
        &self,
        partitions: u32,
        window: (Day, Day),
    ) -> Result<BTreeMap<String, StoreFigures>, ScoringError> {
        let mut conn = self.connection();
        let mut out: BTreeMap<String, StoreFigures> = BTreeMap::new();
        for p in 0..partitions {
            let counts: BTreeMap<String, u64> = home_counts(&mut conn, p).await?;
            for (store, customers) in counts {
                let scores: Vec<(String, f64)> = redis::cmd("ZRANGE")
                    .arg(at_risk_key(p, &store))
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await
                    .map_err(command("ZRANGE at-risk"))?;
                let days = self.day_stats(p, &store, window.0, window.1).await?;
                let figures = out.entry(store).or_default();
                figures.defected += days.defected.saturating_sub(days.won_back);
                figures.customers += customers;
                figures.at_risk += scores.len() as u64;
                figures.value_at_risk += scores.iter().map(|(_, v)| v).sum::<f64>();
            }
        }
        Ok(out)
    }

    /// Every store with customers at home there, by store id, with their count summed
    /// over `partitions`: one HGETALL of each partition's `hc:` hash. The hash has a
    /// field per store, a chain's few hundred or thousand, and a page in store id order
    /// needs every partition's stores anyway, so HSCAN would only add round trips.
    /// Counts at 0 or below (`transition.lua` deletes them at 0) are left out.
    pub async fn home_stores(&self, partitions: u32) -> Result<Vec<HomeStore>, ScoringError> {
        let mut conn = self.connection();
        let mut sums: BTreeMap<String, i64> = BTreeMap::new();
        for p in 0..partitions {
            let counts: BTreeMap<String, i64> = home_counts(&mut conn, p).await?;
            for (store, customers) in counts {
                *sums.entry(store).or_default() += customers.max(0);
            }
        }
        Ok(sums
            .into_iter()
            .filter(|(_, customers)| *customers > 0)
            .map(|(store, customers)| HomeStore {
                store,
                customers: customers as u64,
            })
            .collect())
    }

    /// The first `limit` at-risk customers of `store` in `partition` after `cursor`, in
    /// list order. Redis orders equal scores by member descending, so whole groups of
    /// equal values are read before the page is cut.
    pub async fn at_risk_page(
        &self,
        partition: u32,
        store: &str,
        cursor: Option<&AtRisk>,
        limit: usize,
    ) -> Result<Vec<AtRisk>, ScoringError> {
        let mut conn = self.connection();
        let key = at_risk_key(partition, store);
        let max = cursor.map_or_else(|| "+inf".to_owned(), |c| c.value_at_risk.to_string());
        let chunk = limit.clamp(16, 1_000);
        let mut out: Vec<AtRisk> = Vec::new();
        let mut offset = 0;
        loop {
            let entries: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(&key)
                .arg(&max)
                .arg("-inf")
                .arg("BYSCORE")
                .arg("REV")
                .arg("LIMIT")
                .arg(offset)
                .arg(chunk)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .map_err(command("ZRANGE at-risk"))?;
            let read = entries.len();
            offset += read;
            for (customer, score) in entries {
                let entry = AtRisk {
                    value_at_risk: score as i64,
                    customer,
                };
                if out.len() >= limit
                    && out
                        .last()
                        .is_some_and(|last| entry.value_at_risk < last.value_at_risk)
                {
                    sort_at_risk(&mut out);
                    out.truncate(limit);
                    return Ok(out);
                }
                if cursor.is_none_or(|c| entry.after(c)) {
                    out.push(entry);
                }
            }
            if read < chunk {
                break;
            }
        }
        sort_at_risk(&mut out);
        out.truncate(limit);
        Ok(out)
    }

    /// `store`'s day stats in `partition` for the days `from..=to`.
    pub async fn day_stats(
        &self,
        partition: u32,
        store: &str,
        from: Day,
        to: Day,
    ) -> Result<DayStats, ScoringError> {
        let mut conn = self.connection();
        let fields: BTreeMap<String, i64> = redis::cmd("HGETALL")
            .arg(day_stats_key(partition, store))
            .query_async(&mut conn)
            .await
            .map_err(command("HGETALL day stats"))?;
        let mut stats = DayStats::default();
        for (field, value) in fields {
            let (day, kind) = field
                .split_once(':')
                .ok_or_else(|| ScoringError::Corrupt(format!("day stats field {field}")))?;
            let day: Day = day
                .parse()
                .map_err(|_| ScoringError::Corrupt(format!("day stats field {field}")))?;
            if day < from || day > to {
                continue;
            }
            match kind {
                "defected" => stats.defected += value.max(0) as u64,
                "won_back" => stats.won_back += value.max(0) as u64,
                "lost" => stats.value_lost += value,
                _ => return Err(ScoringError::Corrupt(format!("day stats field {field}"))),
            }
        }
        Ok(stats)
    }

    /// How many of `partition`'s customers have `store` as their home store.
    pub async fn home_customers(&self, partition: u32, store: &str) -> Result<u64, ScoringError> {
        let mut conn = self.connection();
        let n: Option<u64> = redis::cmd("HGET")
            .arg(home_counts_key(partition))
            .arg(store)
            .query_async(&mut conn)
            .await
            .map_err(command("HGET home counts"))?;
        Ok(n.unwrap_or(0))
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), ScoringError> {
        let mut conn = self.connection();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(command("PING"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_strangers_are_refused() {
        let e = AtRisk {
            value_at_risk: 12_345,
            customer: "cust:7\nodd".into(),
        };
        assert_eq!(AtRisk::from_page_token(&e.page_token()), Some(e));
        assert_eq!(AtRisk::from_page_token("zz"), None);
        assert_eq!(AtRisk::from_page_token(&hex::encode("no-newline")), None);
    }

    #[test]
    fn store_page_tokens_round_trip_and_strangers_are_refused() {
        let s = HomeStore {
            store: "store-7:north".into(),
            customers: 3,
        };
        assert_eq!(
            HomeStore::after_page_token(&s.page_token()).as_deref(),
            Some("store-7:north")
        );
        let at_risk = AtRisk {
            value_at_risk: 5,
            customer: "c".into(),
        };
        for bad in ["zz", "", &hex::encode("two words"), &at_risk.page_token()] {
            assert_eq!(HomeStore::after_page_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn list_order_is_value_descending_then_customer() {
        let mut v = vec![
            AtRisk {
                value_at_risk: 5,
                customer: "b".into(),
            },
            AtRisk {
                value_at_risk: 9,
                customer: "z".into(),
            },
            AtRisk {
                value_at_risk: 5,
                customer: "a".into(),
            },
        ];
        sort_at_risk(&mut v);
        let order: Vec<&str> = v.iter().map(|e| e.customer.as_str()).collect();
        assert_eq!(order, ["z", "a", "b"]);
        assert!(v[2].after(&v[1]) && !v[1].after(&v[2]));
    }
}
