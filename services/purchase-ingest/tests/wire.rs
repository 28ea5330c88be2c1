//! purchase-ingest on the wire, on the embedded log: small messages at full speed, a
//! reader that waits, and bytes that are not a message, sent through a raw gRPC codec.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_proto::ingest::v1 as pb;
use common::{channel, envelope, read_topic, settings, spawn_app, swipe, total_records};
use purchase_ingest::Running;
use purchase_ingest::config::Backend;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

// ---------------------------------------------------------------------------------
// On the wire: small messages at full speed, bytes that are not a message.

/// Sends raw bytes as gRPC messages, each in its own DATA frame (as a gateway sending
/// each swipe as it happens does), and decodes the answers as `D`.
struct RawCodec<D>(std::marker::PhantomData<D>);

impl<D> Default for RawCodec<D> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        buf.put_slice(&item);
        Ok(())
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        // Yield after every message: one message, one DATA frame.
        tonic::codec::BufferSettings::new(1024, 1)
    }
}

impl<D: prost::Message + Default + Send + 'static> tonic::codec::Codec for RawCodec<D> {
    type Encode = Vec<u8>;
    type Decode = D;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<D>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<Vec<u8>, D>::raw_decoder(Default::default())
    }
}

const RECORD_SWIPE: &str = "/churnguard.ingest.v1.PurchaseIngest/RecordSwipe";
const STREAM_SWIPES: &str = "/churnguard.ingest.v1.PurchaseIngest/StreamSwipes";

async fn raw_client(app: &Running) -> tonic::client::Grpc<Channel> {
    let mut grpc = tonic::client::Grpc::new(channel(app).await);
    grpc.ready().await.expect("ready");
    grpc
}

/// A unary call with `body` as the request message's bytes.
async fn raw_record_swipe(
    app: &Running,
    body: Vec<u8>,
) -> Result<pb::RecordSwipeResponse, tonic::Status> {
    let mut grpc = raw_client(app).await;
    grpc.unary(
        tonic::Request::new(body),
        tonic::codegen::http::uri::PathAndQuery::from_static(RECORD_SWIPE),
        RawCodec::<pb::RecordSwipeResponse>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// Opens StreamSwipes with `messages` as the request messages' bytes.
async fn raw_stream_swipes(
    app: &Running,
    messages: impl tokio_stream::Stream<Item = Vec<u8>> + Send + 'static,
) -> tonic::Streaming<pb::StreamSwipesResponse> {
    let mut grpc = raw_client(app).await;
    grpc.streaming(
        tonic::Request::new(messages),
        tonic::codegen::http::uri::PathAndQuery::from_static(STREAM_SWIPES),
        RawCodec::<pb::StreamSwipesResponse>::default(),
    )
    .await
    .expect("stream opens")
    .into_inner()
}

fn one_swipe_message(i: usize) -> Vec<u8> {
    use prost::Message;
    pb::StreamSwipesRequest {
        swipes: vec![swipe(&format!("sw-{i}"), &format!("cust-{}", i % 1_000))],
        historical: false,
    }
    .encode_to_vec()
}

/// `n` messages of one swipe each, each its own DATA frame, sent as fast as the client can;
/// the answers are read from the start, or only after `reader_pause`.
async fn one_swipe_per_message(n: usize, reader_pause: Duration) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    let app = spawn_app(settings(Backend::Embedded), log.clone()).await;
    let frame = one_swipe_message(0).len();
    let (tx, rx) = mpsc::channel::<Vec<u8>>(1_024);
    let sender = tokio::spawn(async move {
        for i in 0..n {
            if tx.send(one_swipe_message(i)).await.is_err() {
                return i;
            }
        }
        n
    });
    let started = Instant::now();
    let mut answers = raw_stream_swipes(&app, ReceiverStream::new(rx)).await;
    tokio::time::sleep(reader_pause).await;
    let mut answered = 0;
    while let Some(answer) = answers
        .message()
        .await
        .unwrap_or_else(|status| panic!("the stream failed after {answered} answers: {status:?}"))
    {
        assert_eq!(answer.results.len(), 1, "one result per one-swipe message");
        let r = &answer.results[0];
        assert_eq!(
            r.swipe_id,
            format!("sw-{answered}"),
            "answers come in order"
        );
        assert!(
            matches!(r.outcome, Some(pb::swipe_result::Outcome::Accepted(_))),
            "{r:?}"
        );
        answered += 1;
    }
    let took = started.elapsed();
    assert_eq!(sender.await.expect("sender"), n, "every message was sent");
    assert_eq!(answered, n, "every message was answered");

    // None lost, none written twice, and each customer's swipes in the order sent.
    assert_eq!(total_records(&log).await, n as u64);
    let mut last: HashMap<String, usize> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for r in read_topic(&log).await {
        let e = envelope(&r);
        let id = e["data"]["swipe_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let seq: usize = id.trim_start_matches("sw-").parse().expect("sw-<n>");
        let customer = e["data"]["customer"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(before) = last.insert(customer.clone(), seq) {
            assert!(
                before < seq,
                "{customer}: sw-{seq} written after sw-{before}"
            );
        }
        assert!(seen.insert(seq), "sw-{seq} written twice");
    }
    assert_eq!(seen.len(), n, "every swipe once");
    let rate = n as f64 / took.as_secs_f64();
    eprintln!(
        "{n} one-swipe messages ({frame} bytes each), reader paused {reader_pause:?}: \
         all accepted in {took:?}, {rate:.0} messages/s"
    );
    app.stop().await.expect("clean shutdown");
    rate
}

/// 100,000 one-swipe messages at full speed are all answered in order and written once.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_100k_one_swipe_messages_stream_at_full_speed_without_goaway() {
    one_swipe_per_message(100_000, Duration::ZERO).await;
}

/// A client that reads its answers only after a pause is held back, not cut off.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_one_swipe_messages_with_a_reader_that_waits_are_held_back_not_cut_off() {
    one_swipe_per_message(30_000, Duration::from_secs(3)).await;
}

/// An undecodable batch ends the stream with INVALID_ARGUMENT naming it; nothing after it
/// is processed.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_an_undecodable_batch_ends_the_stream_with_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    let app = spawn_app(settings(Backend::Embedded), log.clone()).await;
    let garbage = b"not a protobuf message".to_vec();
    let messages = vec![one_swipe_message(0), garbage, one_swipe_message(2)];
    let mut answers = raw_stream_swipes(&app, tokio_stream::iter(messages)).await;
    let first = answers
        .message()
        .await
        .expect("batch 0 is answered")
        .expect("an answer");
    assert_eq!(first.results.len(), 1);
    assert_eq!(first.results[0].swipe_id, "sw-0");
    assert!(matches!(
        first.results[0].outcome,
        Some(pb::swipe_result::Outcome::Accepted(_))
    ));
    let status = answers
        .message()
        .await
        .expect_err("a stream that stops reading never ends with OK");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("batch 1 ") && status.message().contains("could not be"),
        "says which batch and why: {}",
        status.message()
    );
    assert!(
        !status.message().contains("not a protobuf"),
        "never echoes the bytes"
    );
    let ids: Vec<String> = read_topic(&log)
        .await
        .iter()
        .map(|r| {
            envelope(r)["data"]["swipe_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["sw-0"], "nothing after the bad batch was processed");
    app.stop().await.expect("clean shutdown");
}

/// Undecodable unary requests and a stream's undecodable first batch are INVALID_ARGUMENT;
/// nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_undecodable_requests_are_invalid_argument() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(dir.path()).expect("open");
    let app = spawn_app(settings(Backend::Embedded), log.clone()).await;
    let cases: [(&str, Vec<u8>); 3] = [
        // A varint that never ends.
        ("random bytes", vec![0xff; 11]),
        // Field 1 (`swipe`, a message) sent as a varint.
        ("wrong wire type", vec![0x08, 0x01]),
        // `swipe { swipe_id: <0xff 0xfe> }`: a string that is not UTF-8.
        ("invalid UTF-8", vec![0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe]),
    ];
    for (what, body) in cases {
        let status = raw_record_swipe(&app, body).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status
                .message()
                .starts_with("the request could not be decoded: "),
            "{what}: {}",
            status.message()
        );
    }
    // The first message of a stream too.
    let mut answers = raw_stream_swipes(&app, tokio_stream::iter([vec![0x0a, 0x01, 0x08]])).await;
    let status = answers.message().await.expect_err("undecodable");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("batch 0 "),
        "{}",
        status.message()
    );
    assert_eq!(total_records(&log).await, 0);
    app.stop().await.expect("clean shutdown");
}
