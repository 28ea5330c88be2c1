//! Generated requests to every RPC of the three services (property-based, proptest), on
//! the embedded log and a real Redis. Each request is built from the method's input type
//! in the services' descriptor set: every field present or not, with values chosen to
//! matter (empty, blank, very long, any Unicode, ids, dates and times near the servers'
//! clock, currencies, zero, negative, extreme and unknown enum numbers, NaN), nested
//! messages and repeated fields included; a quarter of them are then corrupted (cut
//! short, a byte changed). Whatever the request, the answer is never INTERNAL, UNKNOWN or
//! DATA_LOSS (a caller's mistake is not the server's fault, and a panic would show as
//! one of those), an INVALID_ARGUMENT names a field of the request or says the message
//! could not be decoded, and a call that fails writes nothing to the log. Every method is
//! found in the descriptor set, so an RPC added later is covered without touching this
//! test.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bytes::{Buf, BufMut};
use churnguard_eventlog::EventLog;
use churnguard_eventlog::embedded::EmbeddedLog;
use churnguard_testkit::{RedisServer, init_test_logging};
use churnguard_vault::Kek;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

mod common;
use common::stack::{Stack, StackSettings};

/// Generated requests per method.
const CASES: usize = 48;
/// Nested messages go this deep at most.
const DEPTH: u32 = 3;

/// A method of a service, from the descriptor set.
struct Method {
    path: String,
    input: String,
    client_streaming: bool,
    server_streaming: bool,
}

/// Every message type by its full name (`.churnguard.ingest.v1.Swipe`), nested ones too.
fn messages(set: &FileDescriptorSet) -> HashMap<String, DescriptorProto> {
    fn add(prefix: &str, m: &DescriptorProto, out: &mut HashMap<String, DescriptorProto>) {
        let name = format!("{prefix}.{}", m.name());
        for nested in &m.nested_type {
            add(&name, nested, out);
        }
        out.insert(name, m.clone());
    }
    let mut out = HashMap::new();
    for file in &set.file {
        let prefix = format!(".{}", file.package());
        for m in &file.message_type {
            add(&prefix, m, &mut out);
        }
    }
    out
}

fn methods(set: &FileDescriptorSet, service: &str) -> Vec<Method> {
    let mut out = Vec::new();
    for file in &set.file {
        for s in &file.service {
            if format!("{}.{}", file.package(), s.name()) == service {
                out.extend(s.method.iter().map(|m| Method {
                    path: format!("/{service}/{}", m.name()),
                    input: m.input_type().to_owned(),
                    client_streaming: m.client_streaming(),
                    server_streaming: m.server_streaming(),
                }));
            }
        }
    }
    assert!(!out.is_empty(), "{service} has methods");
    out
}

/// Every field name of a message, its nested messages' too (what an error may name).
fn field_names(
    all: &HashMap<String, DescriptorProto>,
    name: &str,
    out: &mut BTreeSet<String>,
    depth: u32,
) {
    let Some(m) = all.get(name) else { return };
    for f in &m.field {
        out.insert(f.name().to_owned());
        if f.r#type() == Type::Message && depth > 0 {
            field_names(all, f.type_name(), out, depth - 1);
        }
    }
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(field: i32, wire: u8, out: &mut Vec<u8>) {
    varint(((field as u64) << 3) | u64::from(wire), out);
}

fn length_delimited(field: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    key(field, 2, &mut out);
    varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// Strings that matter to these services: ids of the shapes they take, times and days
/// near the servers' clock, currencies, and the awkward ones.
fn string() -> BoxedStrategy<String> {
    let now = chrono::Utc::now();
    prop_oneof![
        Just(String::new()),
        Just(" ".to_owned()),
        "[a-z]{1,3}-[0-9]{1,3}",
        "[ -~]{0,24}",
        "\\PC{0,24}",
        Just("x".repeat(3_000)),
        Just(now.to_rfc3339()),
        Just((now - chrono::TimeDelta::hours(30)).to_rfc3339()),
        Just((now + chrono::TimeDelta::hours(3)).to_rfc3339()),
        Just(now.date_naive().to_string()),
        Just("1997-03-31".to_owned()),
        Just("2026-02-30".to_owned()),
        Just("EUR".to_owned()),
        Just("eur".to_owned()),
        Just("4111111111111111".to_owned()),
        Just("owner".to_owned()),
        Just("s-1".to_owned()),
        Just("c-1".to_owned()),
    ]
    .boxed()
}

fn integer() -> BoxedStrategy<i64> {
    prop_oneof![
        Just(0i64),
        Just(1),
        Just(-1),
        Just(i64::from(i32::MAX)),
        Just(i64::from(i32::MIN)),
        Just(i64::MAX),
        Just(i64::MIN),
        -1_000i64..100_000,
    ]
    .boxed()
}

fn float() -> BoxedStrategy<f64> {
    prop_oneof![
        Just(0.0),
        Just(-1.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::MAX),
        -10.0f64..10.0,
    ]
    .boxed()
}

/// One occurrence of `field`, encoded (its key and value).
fn value(
    all: &HashMap<String, DescriptorProto>,
    f: &FieldDescriptorProto,
    depth: u32,
) -> BoxedStrategy<Vec<u8>> {
    let number = f.number();
    let scalar = move |wire: u8, bytes: Vec<u8>| {
        let mut out = Vec::new();
        key(number, wire, &mut out);
        out.extend(bytes);
        out
    };
    match f.r#type() {
        Type::String => string()
            .prop_map(move |s| length_delimited(number, s.as_bytes()))
            .boxed(),
        Type::Bytes => prop::collection::vec(any::<u8>(), 0..40)
            .prop_map(move |b| length_delimited(number, &b))
            .boxed(),
        Type::Message if depth == 0 => Just(length_delimited(number, &[])).boxed(),
        Type::Message => message(all, f.type_name(), depth - 1)
            .prop_map(move |body| length_delimited(number, &body))
            .boxed(),
        Type::Bool => any::<bool>()
            .prop_map(move |b| {
                let mut v = Vec::new();
                varint(u64::from(b), &mut v);
                scalar(0, v)
            })
            .boxed(),
        Type::Enum => (-2i32..12)
            .prop_map(move |e| {
                let mut v = Vec::new();
                varint(e as i64 as u64, &mut v);
                scalar(0, v)
            })
            .boxed(),
        Type::Sint32 | Type::Sint64 => integer()
            .prop_map(move |i| {
                let mut v = Vec::new();
                varint(((i << 1) ^ (i >> 63)) as u64, &mut v);
                scalar(0, v)
            })
            .boxed(),
        Type::Double => float()
            .prop_map(move |d| scalar(1, d.to_le_bytes().to_vec()))
            .boxed(),
        Type::Float => float()
            .prop_map(move |d| scalar(5, (d as f32).to_le_bytes().to_vec()))
            .boxed(),
        Type::Fixed64 | Type::Sfixed64 => integer()
            .prop_map(move |i| scalar(1, i.to_le_bytes().to_vec()))
            .boxed(),
        Type::Fixed32 | Type::Sfixed32 => integer()
            .prop_map(move |i| scalar(5, (i as i32).to_le_bytes().to_vec()))
            .boxed(),
        // int32, int64, uint32, uint64: a varint of the two's complement.
        _ => integer()
            .prop_map(move |i| {
                let mut v = Vec::new();
                varint(i as u64, &mut v);
                scalar(0, v)
            })
            .boxed(),
    }
}

/// An encoded message of type `name`: each field absent or present (repeated ones up to
/// three times).
fn message(
    all: &HashMap<String, DescriptorProto>,
    name: &str,
    depth: u32,
) -> BoxedStrategy<Vec<u8>> {
    let Some(m) = all.get(name) else {
        return Just(Vec::new()).boxed();
    };
    let fields: Vec<BoxedStrategy<Vec<u8>>> = m
        .field
        .iter()
        .map(|f| {
            let one = value(all, f, depth);
            if f.label() == Label::Repeated {
                prop::collection::vec(one, 0..=3)
                    .prop_map(|vs| vs.concat())
                    .boxed()
            } else {
                prop::option::weighted(0.7, one)
                    .prop_map(Option::unwrap_or_default)
                    .boxed()
            }
        })
        .collect();
    fields.prop_map(|parts| parts.concat()).boxed()
}

/// What a corruption does to an encoded request.
#[derive(Debug, Clone)]
enum Corruption {
    None,
    Truncate(usize),
    Replace(usize, u8),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        6 => Just(Corruption::None),
        1 => any::<usize>().prop_map(Corruption::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Corruption::Replace(i, b)),
    ]
}

fn corrupt(mut bytes: Vec<u8>, c: &Corruption) -> Vec<u8> {
    match c {
        Corruption::None => {}
        Corruption::Truncate(i) if !bytes.is_empty() => bytes.truncate(i % bytes.len()),
        Corruption::Replace(i, b) if !bytes.is_empty() => {
            let at = i % bytes.len();
            bytes[at] = *b;
        }
        _ => {}
    }
    bytes
}

/// Sends and receives messages as the bytes they are.
#[derive(Default, Clone, Copy)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(bytes.to_vec()))
    }
}

/// Calls `method` with `body`; the status (OK for an answer, or for a stream still open
/// after a while: a watch waits for what is to come).
async fn call(channel: Channel, method: &Method, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = PathAndQuery::try_from(method.path.clone()).expect("a path");
    let answer = async {
        match (method.client_streaming, method.server_streaming) {
            (false, false) => grpc
                .unary(tonic::Request::new(body), path, Raw)
                .await
                .map(|_| ()),
            (false, true) => {
                let mut stream = grpc
                    .server_streaming(tonic::Request::new(body), path, Raw)
                    .await?
                    .into_inner();
                stream.message().await.map(|_| ())
            }
            (true, _) => {
                let mut stream = grpc
                    .streaming(tonic::Request::new(tokio_stream::iter([body])), path, Raw)
                    .await?
                    .into_inner();
                while stream.message().await?.is_some() {}
                Ok(())
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(2), answer).await {
        Ok(Ok(())) | Err(_) => tonic::Status::ok(""),
        Ok(Err(status)) => status,
    }
}

/// The end offset of every partition of the topics the APIs write.
async fn ends(log: &EmbeddedLog, topics: &[(String, u32)]) -> Vec<u64> {
    let mut out = Vec::new();
    for (topic, partitions) in topics {
        for p in 0..*partitions {
            out.push(log.end_offset(topic, p).await.unwrap_or(0));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_requests_to_every_rpc_get_clear_answers_and_write_nothing_when_refused() {
    init_test_logging();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("dir");
    let log = EmbeddedLog::open(dir.path().join("log")).expect("log");

    let mut settings = StackSettings::new(&redis, &dir.path().join("log"));
    settings.ingest.card_token_key = Some(purchase_ingest::config::Secret::new(
        "generated-requests-test-key-32-bytes",
    ));
    // No timer fires during the test: the only writes are the calls'.
    settings.scoring.timer_interval_ms = 3_600_000;
    settings.scoring.refit_interval_secs = 0;
    let purchases = (
        settings.ingest.topics.purchases.clone(),
        settings.ingest.topics.partitions,
    );
    let feedback_events = (
        settings.feedback.topics.events.clone(),
        settings.feedback.topics.partitions,
    );
    let stack = Stack::start(settings, &log, Kek::from_bytes([5; 32])).await;
    let written = [purchases, feedback_events];

    let set = FileDescriptorSet::decode(churnguard_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let all = messages(&set);
    // A new seed each run, printed; `GENERATED_REQUESTS_SEED` replays a run.
    let seed: u64 = std::env::var("GENERATED_REQUESTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64)
        });
    eprintln!("generated_requests: seed {seed} (GENERATED_REQUESTS_SEED={seed} replays it)");
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let mut tally: std::collections::BTreeMap<String, usize> = Default::default();
    let mut undecodable = 0;
    for (endpoint, service) in [
        (
            stack.ingest.endpoint(),
            "churnguard.ingest.v1.PurchaseIngest",
        ),
        (
            stack.scoring.endpoint(),
            "churnguard.scoring.v1.ChurnScoring",
        ),
        (stack.feedback.endpoint(), "churnguard.feedback.v1.Feedback"),
    ] {
        let channel = Channel::from_shared(endpoint)
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        for method in methods(&set, service) {
            let mut names = BTreeSet::new();
            field_names(&all, &method.input, &mut names, DEPTH + 1);
            let requests = (message(&all, &method.input, DEPTH), corruption());
            for _ in 0..CASES {
                let (body, c) = requests.new_tree(&mut runner).expect("a request").current();
                let body = corrupt(body, &c);
                let before = ends(&log, &written).await;
                let status = call(channel.clone(), &method, body.clone()).await;
                let code = status.code();
                *tally.entry(format!("{code:?}")).or_default() += 1;
                if status.message().contains("could not be decoded") {
                    undecodable += 1;
                }
                let shown = format!(
                    "seed {seed}, {}: {code:?} {:?} for the request {} ({c:?})",
                    method.path,
                    status.message(),
                    hex::encode(&body)
                );
                assert!(
                    !matches!(code, Code::Internal | Code::Unknown | Code::DataLoss),
                    "a caller's request is never the server's fault: {shown}"
                );
                assert_ne!(code, Code::Unimplemented, "{shown}");
                if code == Code::InvalidArgument {
                    let message = status.message();
                    assert!(
                        names.iter().any(|n| message.contains(n.as_str()))
                            || message.contains("could not be decoded"),
                        "an INVALID_ARGUMENT names the field: {shown}"
                    );
                }
                if code != Code::Ok {
                    assert_eq!(
                        ends(&log, &written).await,
                        before,
                        "a refused call writes nothing: {shown}"
                    );
                }
            }
        }
    }
    eprintln!(
        "generated_requests: {} calls; answers by code {tally:?}; {undecodable} of them \
         requests that could not be decoded",
        tally.values().sum::<usize>()
    );
    assert!(undecodable > 0, "some corrupted requests reach the decoder");
    assert!(
        tally.get("Ok").copied().unwrap_or(0) > 0,
        "some generated requests are good ones"
    );
    assert!(
        tally.get("InvalidArgument").copied().unwrap_or(0) > 0,
        "some are refused"
    );

    stack.stop().await;
}
