//! The PurchaseIngest client a store gateway would use, and the ChurnScoring client the
//! refit command uses: one HTTP/2 connection each, made on first use, and the bearer
//! token on every call.

use std::fmt;
use std::time::Duration;

use churnguard_proto::ingest::v1::purchase_ingest_client::PurchaseIngestClient;
use churnguard_proto::scoring::v1::churn_scoring_client::ChurnScoringClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::error::CliError;
use crate::options::Connection;

/// How long making the connection may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub type IngestClient = PurchaseIngestClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every call, when there is a token. The value
/// is marked sensitive, so it is never logged by the HTTP layers.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(<redacted>)"
        } else {
            "Bearer(none)"
        })
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A client for `connection`. The connection itself is made on the first call (and made
/// again after it breaks), so an unreachable server shows as a failed call, retried like
/// any other.
pub fn connect(connection: &Connection) -> Result<IngestClient, CliError> {
    let (channel, bearer) = channel(connection)?;
    Ok(PurchaseIngestClient::with_interceptor(channel, bearer))
}

/// A ChurnScoring client for `connection` (RequestRefit, GetModel), made like
/// [`connect`]'s.
pub fn scoring(connection: &Connection) -> Result<ScoringClient, CliError> {
    let (channel, bearer) = channel(connection)?;
    Ok(ChurnScoringClient::with_interceptor(channel, bearer))
}

pub type ScoringClient = ChurnScoringClient<InterceptedService<Channel, Bearer>>;

/// The lazily connected channel to `connection` and the bearer token for its calls.
fn channel(connection: &Connection) -> Result<(Channel, Bearer), CliError> {
    let fail = |message: String| CliError::Connect {
        url: connection.url.clone(),
        message,
    };
    let mut endpoint = Endpoint::from_shared(connection.url.clone())
        .map_err(|e| fail(format!("not a URL: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT);
    if connection.url.starts_with("https://") {
        let Some(ca) = &connection.ca_cert else {
            return Err(fail(
                "https needs the CA certificate that signed the server's: --ca-cert FILE".into(),
            ));
        };
        let pem = std::fs::read(ca)
            .map_err(|e| fail(format!("reading --ca-cert {}: {e}", ca.display())))?;
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            .map_err(|e| fail(format!("TLS: {e}")))?;
    }
    let bearer = match &connection.token {
        None => Bearer(None),
        Some(token) => {
            let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.expose())
                .parse()
                .map_err(|_| fail("the token holds characters a header cannot carry".into()))?;
            value.set_sensitive(true);
            Bearer(Some(value))
        }
    };
    Ok((endpoint.connect_lazy(), bearer))
}
