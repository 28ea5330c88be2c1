//! Certificates made at test time (rcgen): a CA that signs server and client
//! certificates, written as PEM files a service's TLS settings name, and the client side
//! of a TLS channel.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use std::time::Duration;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
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

/// A TLS listener in front of a plaintext one, for a Kafka broker that does not serve
/// TLS itself (Tansu 0.6): it completes the handshake with the server certificate a
/// [`TestCa`] signed (asking for a client certificate the CA signed when
/// `client_auth`), then forwards the bytes both ways to the broker on loopback `to`. A
/// broker behind it advertises the front's port ([`crate::Tansu::start_behind`]), so
/// every connection of a client goes through TLS. Stops when dropped.
pub struct TlsFront {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TlsFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFront")
            .field("port", &self.port)
            .finish()
    }
}

impl TlsFront {
    /// Listens on loopback `port` and forwards to loopback `to`.
    pub fn start(port: u16, to: u16, ca: &TestCa, server: &Leaf, client_auth: bool) -> Self {
        let config = Arc::new(server_config(ca, server, client_auth));
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the front");
        listener.set_nonblocking(true).expect("non-blocking");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the front's runtime");
            rt.block_on(forward(listener, TlsAcceptor::from(config), to, stopped));
        });
        Self {
            port,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts TLS connections until `stopped`, each forwarded to `to` in a task of its own
/// (dropped, with its connections, when the runtime ends).
async fn forward(
    listener: std::net::TcpListener,
    acceptor: TlsAcceptor,
    to: u16,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("the front's listener");
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A failed handshake just closes the connection, as a broker would.
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Ok(mut broker) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                });
            }
        }
    }
}

/// The front's TLS: `server`'s certificate and key; client certificates `ca` signed
/// required when `client_auth`.
fn server_config(ca: &TestCa, server: &Leaf, client_auth: bool) -> ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = if client_auth {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).expect("the CA's PEM"))
            .expect("the CA as a root");
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("a client certificate verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    builder
        .with_single_cert(
            vec![CertificateDer::from(server.der.clone())],
            PrivateKeyDer::from_pem_slice(server.key.as_bytes()).expect("the server key's PEM"),
        )
        .expect("the front's TLS configuration")
}
