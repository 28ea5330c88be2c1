//! Step 2 of the checkpoint-guarded fold ([`churnguard_redis::guarded`]) for the read
//! model: a partition's commits applied in log order, by the one acceptance rule, to the
//! streams (complaints, outreach cases) as read after the checkpoint.

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::FeedbackError;
use crate::journal::StreamCommit;

/// [`crate::Complaints::history`] reads the events it accepted back; the escalation
/// watch ([`crate::watch`]) reads its outcome from the read model instead
/// (`w:<base version>`), as it starts mid-partition.
pub fn accepts<C: StreamCommit>(commit: &C, version: u64, key_used: bool) -> bool {
    !key_used && commit.base_version() == version && !commit.events().is_empty()
}

/// A stream (complaint or case) as the read model holds it, and what the batch changes.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Current<S> {
    pub(super) state: Option<S>,
    pub(super) keys: HashMap<String, Option<u64>>,
    pub(super) changed: Vec<(String, String)>,
}

/// The streams a batch touches, in first-seen order, with the key fields to read.
pub(super) fn wanted<C: StreamCommit>(commits: &[(u64, C)]) -> Vec<(&str, Vec<String>)> {
    let mut order: Vec<(&str, Vec<String>)> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (_, c) in commits {
        let i = *at.entry(c.stream()).or_insert_with(|| {
            order.push((c.stream(), Vec::new()));
            order.len() - 1
        });
        if let Some(k) = c.idempotency_key() {
            order[i].1.push(format!("k:{k}"));
        }
    }
    order
}

/// Parses one `HMGET <hash> c <key fields...>` reply.
pub(super) fn current<S: DeserializeOwned>(
    id: &str,
    key_fields: &[String],
    reply: redis::Value,
) -> Result<Current<S>, FeedbackError> {
    let mut values: Vec<Option<String>> =
        redis::from_redis_value(reply).map_err(|e| FeedbackError::Corrupt(format!("{id}: {e}")))?;
    let state = match values.first_mut().and_then(Option::take) {
        Some(json) => Some(
            serde_json::from_str::<S>(&json)
                .map_err(|e| FeedbackError::Corrupt(format!("{id} field c: {e}")))?,
        ),
        None => None,
    };
    let mut keys = HashMap::new();
    for (field, value) in key_fields.iter().zip(values.into_iter().skip(1)) {
        let version = match value {
            Some(v) => Some(
                v.parse()
                    .map_err(|_| FeedbackError::Corrupt(format!("{id} field {field}")))?,
            ),
            None => None,
        };
        keys.insert(field.clone(), version);
    }
    Ok(Current {
        state,
        keys,
        changed: Vec::new(),
    })
}

/// Applies the commits at or after `checkpoint` in log order by [`accepts`], calling
/// `on_event` with the state before each applied event. Returns (accepted, rejected).
pub(super) fn fold<C: StreamCommit>(
    partition: u32,
    commits: &[(u64, C)],
    current: &mut HashMap<&str, Current<C::State>>,
    checkpoint: u64,
    mut on_event: impl FnMut(Option<&C::State>, &C::Event),
) -> (u64, u64) {
    let (mut accepted, mut rejected) = (0, 0);
    for (offset, c) in commits.iter().filter(|(o, _)| *o >= checkpoint) {
        let Some(cur) = current.get_mut(c.stream()) else {
            continue;
        };
        let version = cur.state.as_ref().map_or(0, C::version);
        let key_field = c.idempotency_key().map(|k| format!("k:{k}"));
        let key_used = key_field
            .as_ref()
            .is_some_and(|f| cur.keys.get(f).is_some_and(Option::is_some));
        if !accepts(c, version, key_used) {
            rejected += 1;
            tracing::debug!(partition, offset, stream = %c.stream(), base = c.base_version(), version, key_used, "commit rejected");
            continue;
        }
        let mut state = cur.state.take();
        for (i, e) in c.events().iter().enumerate() {
            on_event(state.as_ref(), e);
            state = C::apply(state, e);
            // The stream's history, one field per event (serialising plain data cannot
            // fail).
            cur.changed.push((
                format!("e:{}", version + i as u64 + 1),
                serde_json::to_string(e).unwrap_or_default(),
            ));
        }
        let after = state.as_ref().map_or(0, C::version);
        cur.state = state;
        cur.changed
            .push((format!("w:{}", c.base_version()), c.commit_id().to_owned()));
        if let Some(f) = key_field {
            cur.changed.push((f.clone(), after.to_string()));
            cur.keys.insert(f, Some(after));
        }
        accepted += 1;
    }
    (accepted, rejected)
}

/// The HSET arguments of a changed stream: `v`, `c` and the batch's fields.
pub(super) fn hash_fields<S: Serialize>(
    id: &str,
    version: u64,
    state: &S,
    changed: &[(String, String)],
) -> Result<Vec<String>, FeedbackError> {
    let mut set = vec![
        "v".to_owned(),
        version.to_string(),
        "c".to_owned(),
        serde_json::to_string(state).map_err(|e| FeedbackError::Corrupt(format!("{id}: {e}")))?,
    ];
    for (f, v) in changed {
        set.push(f.clone());
        set.push(v.clone());
    }
    Ok(set)
}
