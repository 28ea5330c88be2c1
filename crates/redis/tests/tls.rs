//! `rediss://` against a real redis-server (Debian's is built with TLS), with
//! certificates made here: the server's CA trusted through `tls_ca_file`, an ACL user in
//! the URL, and a Redis that asks clients for a certificate.

use churnguard_redis::{RedisSettings, StoreError};
use churnguard_testkit::tls::{TestCa, write_pem};
use churnguard_testkit::{RedisCluster, RedisServer};

/// Settings for `url`, trusting `ca_file`, with short timeouts.
fn settings(url: String, ca_file: &str) -> RedisSettings {
    RedisSettings {
        url,
        tls_ca_file: ca_file.into(),
        connect_timeout_ms: 2_000,
        response_timeout_ms: 2_000,
        reconnect_attempts: 0,
        ..RedisSettings::default()
    }
}

/// A CA made for the test, the server certificate it signed for 127.0.0.1 and
/// localhost, and the `redis-server` TLS settings naming their PEM files in `dir`;
/// clients are asked for a certificate when `client_certs`.
struct ServerTls {
    ca: TestCa,
    ca_file: String,
    args: Vec<String>,
}

impl ServerTls {
    fn new(dir: &std::path::Path, client_certs: bool) -> Self {
        let ca = TestCa::new("redis CA");
        let server = ca.sign(&["127.0.0.1", "localhost"]);
        let ca_file = write_pem(dir, "ca.pem", ca.pem());
        let args = vec![
            "--tls-cert-file".into(),
            write_pem(dir, "redis.pem", &server.cert),
            "--tls-key-file".into(),
            write_pem(dir, "redis.key", &server.key),
            "--tls-ca-cert-file".into(),
            ca_file.clone(),
            "--tls-auth-clients".into(),
            if client_certs { "yes" } else { "no" }.into(),
        ];
        Self { ca, ca_file, args }
    }

    /// The settings, followed by `more`.
    fn args<'a>(&'a self, more: &[&'a str]) -> Vec<&'a str> {
        self.args
            .iter()
            .map(String::as_str)
            .chain(more.iter().copied())
            .collect()
    }
}

/// SET then GET over `settings`' connection.
async fn round_trip(settings: &RedisSettings) -> Result<String, String> {
    let mut conn = settings.connect().await.map_err(|e| format!("{e:?}"))?;
    redis::cmd("SET")
        .arg("tls-check")
        .arg("over tls")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| format!("{e:?}"))?;
    redis::cmd("GET")
        .arg("tls-check")
        .query_async::<String>(&mut conn)
        .await
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn rediss_with_an_acl_user_and_the_servers_ca() {
    let dir = tempfile::tempdir().expect("dir");
    let tls = ServerTls::new(dir.path(), false);
    let ca_file = tls.ca_file.clone();
    let (_redis, port) = RedisServer::start_tls(&tls.args(&[
        // One word per argument: redis-server joins them into the config line.
        "--user",
        "default",
        "off",
        "--user",
        "churnguard",
        "on",
        ">s3cret-pass",
        "~*",
        "&*",
        "+@all",
    ]));

    let user = format!("rediss://churnguard:s3cret-pass@127.0.0.1:{port}/");
    assert_eq!(
        round_trip(&settings(user.clone(), &ca_file)).await,
        Ok("over tls".into())
    );

    // The wrong password, no user, another CA, or plaintext to the TLS port: refused.
    let wrong = format!("rediss://churnguard:wrong@127.0.0.1:{port}/");
    assert!(round_trip(&settings(wrong, &ca_file)).await.is_err());
    let anonymous = format!("rediss://127.0.0.1:{port}/");
    assert!(round_trip(&settings(anonymous, &ca_file)).await.is_err());
    let stranger = TestCa::new("someone else's CA");
    let stranger_file = write_pem(dir.path(), "stranger.pem", stranger.pem());
    assert!(
        round_trip(&settings(user, &stranger_file)).await.is_err(),
        "a server certificate another CA signed is not trusted"
    );
    let plaintext = format!("redis://churnguard:s3cret-pass@127.0.0.1:{port}/");
    assert!(round_trip(&settings(plaintext, "")).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_asking_for_client_certificates_gets_ours() {
    let dir = tempfile::tempdir().expect("dir");
    let tls = ServerTls::new(dir.path(), true);
    let client = tls.ca.sign(&["scorer.churnguard"]);
    let ca_file = tls.ca_file.clone();
    let (_redis, port) = RedisServer::start_tls(&tls.args(&[]));
    let url = format!("rediss://127.0.0.1:{port}/");

    assert!(
        round_trip(&settings(url.clone(), &ca_file)).await.is_err(),
        "no client certificate: refused"
    );
    let with_cert = RedisSettings {
        tls_client_cert_file: write_pem(dir.path(), "client.pem", &client.cert),
        tls_client_key_file: write_pem(dir.path(), "client.key", &client.key),
        ..settings(url.clone(), &ca_file)
    };
    assert_eq!(round_trip(&with_cert).await, Ok("over tls".into()));

    let half = RedisSettings {
        tls_client_key_file: String::new(),
        ..with_cert
    };
    match half.connect().await {
        Err(StoreError::Tls { key, .. }) => assert_eq!(key, "redis.tls_client_key_file"),
        other => panic!("expected the missing key to be named, got {other:?}"),
    }
}

/// A Redis Cluster whose nodes and bus speak TLS: `cluster_nodes` as `rediss://` URLs and
/// the CA reach every node (keys of every partition, so every node's slots), and a node
/// certificate from another CA is not trusted.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_over_tls() {
    let dir = tempfile::tempdir().expect("dir");
    let tls = ServerTls::new(dir.path(), false);
    let ca_file = tls.ca_file.clone();
    let cluster = RedisCluster::start_tls(&tls.args(&[]), &["--cacert", &ca_file]);
    let nodes = cluster.tls_urls();
    assert_eq!(nodes.len(), 3);
    let trusted = RedisSettings {
        cluster_nodes: nodes.clone(),
        ..settings(String::new(), &ca_file)
    };
    let mut conn = trusted.connect().await.expect("the cluster over TLS");
    // Keys tagged as the store tags partitions (`{p3}`): 16 tags hash to slots on all
    // three nodes.
    for p in 0..16 {
        redis::cmd("SET")
            .arg(format!("tls-check:{{p{p}}}"))
            .arg(p)
            .query_async::<()>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("SET on partition {p}: {e:?}"));
    }
    for p in 0..16 {
        let v: u32 = redis::cmd("GET")
            .arg(format!("tls-check:{{p{p}}}"))
            .query_async(&mut conn)
            .await
            .expect("GET");
        assert_eq!(v, p);
    }

    let stranger = TestCa::new("someone else's CA");
    let stranger_file = write_pem(dir.path(), "stranger.pem", stranger.pem());
    let untrusted = RedisSettings {
        cluster_nodes: nodes,
        ..settings(String::new(), &stranger_file)
    };
    assert!(
        untrusted.connect().await.is_err(),
        "node certificates another CA signed are not trusted"
    );
}
