//! The stream limit of a `GrpcServer` (`limits.max_streams_per_connection` in every
//! service's settings) holds per connection: with a limit of two, two calls open on one
//! connection leave a third waiting until one of them ends, while another connection is
//! served at once. (The message-size limit is tested with each service's own API.)

use std::time::Duration;

use churnguard_runtime::{GrpcServer, ServeError};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

async fn connect(endpoint: &str) -> HealthClient<Channel> {
    let channel = Channel::from_shared(endpoint.to_owned())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    HealthClient::new(channel)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_gets_no_more_open_calls_than_the_stream_limit() {
    let running = GrpcServer::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .max_concurrent_streams(2)
        .spawn::<ServeError>();
    let endpoint = running.endpoint();
    let mut one = connect(&endpoint).await;

    // Two health watches: streams that stay open until the caller drops them.
    let first = one
        .watch(HealthCheckRequest::default())
        .await
        .expect("the first stream")
        .into_inner();
    let second = one
        .watch(HealthCheckRequest::default())
        .await
        .expect("the second stream")
        .into_inner();

    let waited = tokio::time::timeout(
        Duration::from_millis(800),
        one.check(HealthCheckRequest::default()),
    )
    .await;
    assert!(
        waited.is_err(),
        "a third call on the connection waits for a stream: {waited:?}"
    );

    let mut other = connect(&endpoint).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        other.check(HealthCheckRequest::default()),
    )
    .await
    .expect("another connection is not held up")
    .expect("served");

    drop(first);
    tokio::time::timeout(
        Duration::from_secs(10),
        one.check(HealthCheckRequest::default()),
    )
    .await
    .expect("the third call goes once a stream ends")
    .expect("served");

    drop(second);
    running.stop().await.expect("stops");
}
