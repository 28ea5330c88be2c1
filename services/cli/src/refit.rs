//! `churnguard refit`: asks churn-scoring for a refit of its models now (RequestRefit),
//! as after an import of history, and waits until GetModel shows the new version, so
//! that what is read next (a report, the at-risk lists) uses models fitted on the
//! history just loaded.

use std::fmt;
use std::time::Duration;

use churnguard_proto::scoring::v1 as pb;

use crate::client;
use crate::error::CliError;
use crate::options::Connection;

/// How often GetModel is asked while waiting.
const POLL: Duration = Duration::from_millis(500);

/// The model the refit stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Refitted {
    /// The version before the refit.
    pub previous: u64,
    pub model: pb::GetModelResponse,
}

impl fmt::Display for Refitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.model;
        writeln!(
            f,
            "model version {} (was {}), fitted {} on {} of {} customers, as of {}",
            m.version, self.previous, m.fitted_at, m.customers, m.population, m.as_of
        )?;
        if let Some(b) = &m.bg_nbd {
            writeln!(
                f,
                "  BG/NBD r {:.4}, alpha {:.4}, a {:.4}, b {:.4}; log-likelihood {:.2}",
                b.r, b.alpha, b.a, b.b, m.bg_nbd_log_likelihood
            )?;
        }
        if let Some(g) = &m.gamma_gamma {
            writeln!(
                f,
                "  Gamma-Gamma p {:.4}, q {:.4}, gamma {:.4}",
                g.p, g.q, g.gamma
            )?;
        }
        Ok(())
    }
}

/// Asks for a refit and waits at most `wait` for GetModel to show a newer version.
pub async fn refit(connection: &Connection, wait: Duration) -> Result<Refitted, CliError> {
    let mut scoring = client::scoring(connection)?;
    let failed = |call: &'static str| {
        move |status: tonic::Status| CliError::Scoring {
            url: connection.url.clone(),
            call,
            status,
        }
    };
    let previous = scoring
        .request_refit(pb::RequestRefitRequest {})
        .await
        .map_err(failed("RequestRefit"))?
        .into_inner()
        .current_version;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match scoring.get_model(pb::GetModelRequest {}).await {
            Ok(model) if model.get_ref().version > previous => {
                return Ok(Refitted {
                    previous,
                    model: model.into_inner(),
                });
            }
            Ok(_) => {}
            // No model at all yet: the first is on its way.
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {}
            Err(status) => return Err(failed("GetModel")(status)),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::RefitTimeout {
                url: connection.url.clone(),
                version: previous,
                waited: wait,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
