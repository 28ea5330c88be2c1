//! Each customer's standing as churn scoring last reported it (churn state, CLV and value
//! at risk), which complaint priorities use. One hash per customer, `fs:{<customer>}`,
//! written by the outreach opener ([`crate::outreach::Opener`]) for every churn signal it
//! reads, in the signals' log order (a customer's signals share a partition). Re-reading
//! the signals topic from the start rebuilds it.

use std::collections::HashMap;

use churnguard_domain::feedback::complaint::CustomerContext;
use churnguard_domain::policy::ChurnState;
use churnguard_domain::signal::ChurnStateChanged;
use churnguard_redis::RedisConnection;

use crate::error::FeedbackError;

/// The hash of a customer's standing.
pub fn standing_key(customer: &str) -> String {
    format!("fs:{{{customer}}}")
}

fn state_of(s: &str) -> Option<ChurnState> {
    match s {
        "active" => Some(ChurnState::Active),
        "at_risk" => Some(ChurnState::AtRisk),
        "defected" => Some(ChurnState::Defected),
        "won_back" => Some(ChurnState::WonBack),
        _ => None,
    }
}

/// Minor units from a signal's figure (rounded; not finite or negative is 0).
pub fn minor(v: f64) -> i64 {
    if v.is_finite() {
        v.round().max(0.0) as i64
    } else {
        0
    }
}

/// Records what the signal says of its customer.
pub async fn record(conn: &RedisConnection, s: &ChurnStateChanged) -> Result<(), FeedbackError> {
    if state_of(&s.state).is_none() {
        return Err(FeedbackError::Corrupt(format!(
            "churn signal with unknown state {:?}",
            s.state
        )));
    }
    let mut conn = conn.clone();
    redis::cmd("HSET")
        .arg(standing_key(&s.customer))
        .arg("state")
        .arg(&s.state)
        .arg("clv")
        .arg(minor(s.clv))
        .arg("var")
        .arg(minor(s.value_at_risk))
        .arg("as_of")
        .arg(s.as_of.to_string())
        .query_async::<()>(&mut conn)
        .await
        .map_err(FeedbackError::redis("HSET standing"))
}

/// The standing of each customer; a customer churn scoring never reported on counts as
/// active with no known value.
pub async fn load(
    conn: &RedisConnection,
    customers: &[&str],
) -> Result<HashMap<String, CustomerContext>, FeedbackError> {
    let unknown = CustomerContext {
        value_at_risk_minor: 0,
        clv_minor: 0,
        churn_state: ChurnState::Active,
    };
    if customers.is_empty() {
        return Ok(HashMap::new());
    }
    let mut pipe = redis::pipe();
    for c in customers {
        pipe.cmd("HMGET")
            .arg(standing_key(c))
            .arg("state")
            .arg("clv")
            .arg("var");
    }
    let mut conn = conn.clone();
    let raw: Vec<(Option<String>, Option<i64>, Option<i64>)> = pipe
        .query_async(&mut conn)
        .await
        .map_err(FeedbackError::redis("HMGET standings"))?;
    Ok(customers
        .iter()
        .zip(raw)
        .map(|(c, (state, clv, var))| {
            let standing = match state.as_deref().and_then(state_of) {
                Some(churn_state) => CustomerContext {
                    value_at_risk_minor: var.unwrap_or(0),
                    clv_minor: clv.unwrap_or(0),
                    churn_state,
                },
                None => unknown,
            };
            ((*c).to_owned(), standing)
        })
        .collect())
}
