//! What the end-to-end tests share: a client of the test's broker, the model the scorer
//! assesses with when refits are off, and (in [`stack`]) the three services on the
//! embedded log.
#![allow(dead_code)] // each test file uses its own part

pub mod stack;

use chrono::{DateTime, Utc};
use churnguard_domain::models::{BgNbdParams, FittedModel, GammaGammaParams};
use churnguard_eventlog::{Header, OutgoingRecord};
use churnguard_kafka::{KafkaLog, KafkaSettings};
use churnguard_testkit::Tansu;

/// A client of `broker` named `client`.
pub fn kafka(broker: &Tansu, client: &str) -> KafkaLog {
    KafkaLog::new(KafkaSettings {
        bootstrap_servers: broker.bootstrap(),
        client_id: client.into(),
        ..KafkaSettings::default()
    })
    .expect("kafka log")
}

/// The model every decision is made with: the published CDNOW estimates, announced on
/// `churn.models.v1` as version 1, as a refit on the day of `now` would.
pub fn model_record(now: DateTime<Utc>) -> OutgoingRecord {
    let model = FittedModel {
        version: 1,
        fitted_at: "2026-11-19T00:00:00+00:00".into(),
        as_of_day: churnguard_domain::customer::day_of(now.date_naive()),
        customers: 2_357,
        population: 2_357,
        bg_nbd: BgNbdParams {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
        },
        bg_nbd_log_likelihood: -9_582.4,
        gamma_gamma: Some(GammaGammaParams {
            p: 6.25,
            q: 3.74,
            gamma: 15.44,
        }),
    };
    let envelope = churnguard_domain::Envelope::new(
        churnguard_domain::envelope::event_id(FittedModel::EVENT_TYPE, "1"),
        "/churnguard/churn-scoring".into(),
        FittedModel::EVENT_TYPE,
        None,
        now.fixed_offset(),
        model,
    );
    OutgoingRecord {
        key: b"model".to_vec(),
        payload: envelope.to_json(),
        headers: vec![Header::new("content-type", "application/cloudevents+json")],
        timestamp_ms: now.timestamp_millis(),
    }
}
