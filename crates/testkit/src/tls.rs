//! Certificates made at test time (rcgen): a CA that signs server and client
//! certificates, written as PEM files a service's TLS settings name, and the client side
//! of a TLS channel.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A certificate authority made for one test.
pub struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A certificate (PEM and DER) and its private key (PEM).
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert: String,
    pub der: Vec<u8>,
    pub key: String,
}

impl TestCa {
    /// A self-signed CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Self {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A certificate this CA signed for `names` (DNS subject alternative names).
    pub fn sign(&self, names: &[&str]) -> Leaf {
        self.sign_with(names, &[])
    }

    /// A certificate this CA signed for DNS names `names` and URIs `uris` (subject
    /// alternative names: a store gateway's is `urn:churnguard:store:<store_id>`).
    pub fn sign_with(&self, names: &[&str], uris: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI((*uri).try_into().expect("an ASCII URI")));
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert: cert.pem(),
            der: cert.der().to_vec(),
            key: key.serialize_pem(),
        }
    }

    /// The client side of a channel to a server whose certificate this CA signed for
    /// `localhost`, presenting `identity` if given.
    pub fn client(&self, identity: Option<&Leaf>) -> ClientTlsConfig {
        let tls = ClientTlsConfig::new()
            .domain_name("localhost")
            .ca_certificate(Certificate::from_pem(&self.pem));
        match identity {
            Some(leaf) => tls.identity(Identity::from_pem(&leaf.cert, &leaf.key)),
            None => tls,
        }
    }

    /// A TLS channel to a server on loopback `port` whose certificate this CA signed for
    /// `localhost`, presenting `identity` if given; the error says why it could not
    /// connect (a refused handshake, a certificate not trusted).
    pub async fn channel(&self, port: u16, identity: Option<&Leaf>) -> Result<Channel, String> {
        Channel::from_shared(format!("https://127.0.0.1:{port}"))
            .expect("endpoint")
            .tls_config(self.client(identity))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| format!("connect: {e:?}"))
    }
}

/// Writes `pem` to `dir/name`; the path, as a setting names it.
pub fn write_pem(dir: &Path, name: &str, pem: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write a PEM file");
    path.to_string_lossy().into_owned()
}
