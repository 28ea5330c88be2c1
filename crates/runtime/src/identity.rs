//! Who is calling, as the transport proves it. On a server with mutual TLS
//! ([`crate::GrpcServer::with_tls`] with a client CA), a store gateway's client
//! certificate names its store in a URI subject alternative name,
//! `urn:churnguard:store:<store_id>` ([`STORE_URI_PREFIX`]); the CA that signs gateway
//! certificates is what vouches for it.

use tonic::transport::CertificateDer;

/// The URI subject alternative name of a store gateway's certificate, before the store id.
pub const STORE_URI_PREFIX: &str = "urn:churnguard:store:";

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No client certificate: the server is plaintext or TLS without client certificates,
    /// where nothing identifies callers (`make run`).
    Unidentified,
    /// A client certificate naming exactly one store.
    Store(String),
    /// A client certificate that names no store, or more than one.
    NoStore,
}

impl Caller {
    /// The caller of `request`, from its peer certificate (the first, the client's own).
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        match request.peer_certs() {
            Some(certs) => Self::from_certificate(certs.first()),
            None => Caller::Unidentified,
        }
    }

    /// The caller a client certificate names; `None` (TLS without a client certificate):
    /// unidentified.
    pub fn from_certificate(cert: Option<&CertificateDer<'_>>) -> Self {
        let Some(cert) = cert else {
            return Caller::Unidentified;
        };
        let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
            return Caller::NoStore;
        };
        let mut stores = cert
            .valid_uri_names()
            .filter_map(|uri| uri.strip_prefix(STORE_URI_PREFIX))
            .filter(|store| !store.is_empty());
        match (stores.next(), stores.next()) {
            (Some(store), None) => Caller::Store(store.to_owned()),
            _ => Caller::NoStore,
        }
    }

    /// Whether this caller may act for `store`: an unidentified caller may (the server
    /// asks for no identity), a store gateway only for its own store.
    pub fn may_act_for_store(&self, store: &str) -> bool {
        match self {
            Caller::Unidentified => true,
            Caller::Store(own) => own == store,
            Caller::NoStore => false,
        }
    }
}
