//! [`KafkaLog`]: the event-log port on Apache Kafka or any Kafka-protocol broker.
//!
//! Writes go through an idempotent producer with `acks=all`; a record is reported `Ok`
//! only once the broker acknowledged it. The partition is chosen here with Kafka's own
//! murmur2 partitioner (the same function the embedded log uses), so both backends place
//! a customer's swipes on the same partition number.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use churnguard_domain::partition_for_key;
use churnguard_eventlog::group::REVOCATION_TIMEOUT;
use churnguard_eventlog::{
    Appended, AssignmentChange, EventLog, Header, LogError, Membership, OutgoingRecord, Record,
    Revocation, check_topic_name,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// How to reach the brokers and how long to wait for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// How long a record may wait for the broker's acknowledgement before it fails
    /// (`message.timeout.ms`).
    pub delivery_timeout_ms: u64,
    /// How long an append waits for room in the producer queue before failing.
    pub queue_timeout_ms: u64,
    /// Producer queue bound, in records: memory stays bounded when the broker is slow.
    pub queue_max_messages: u32,
    /// How long the producer waits to fill a batch (`linger.ms`).
    pub linger_ms: u32,
    /// Timeout of metadata, admin and watermark requests.
    pub request_timeout_ms: u64,
    /// `client.id`, shown in broker logs.
    pub client_id: String,
    /// Replication factor for topics this service creates.
    pub replication_factor: i32,
    /// A consumer-group member that sends no heartbeat for this long is dropped from the
    /// group and its partitions move (`session.timeout.ms`).
    pub group_session_timeout_ms: u64,
    /// How long the broker may hold a read's fetch while it has nothing new
    /// (`fetch.wait.max.ms`). Apache Kafka answers as soon as a record comes, so this
    /// only sets how often an idle reader asks again; Tansu 0.6 holds every fetch for the
    /// whole wait, records or not, so there it adds about one and a half waits to the
    /// time from a swipe's acknowledgement to its score: set 10 on Tansu (BENCHMARKS.md,
    /// the end-to-end section).
    pub fetch_wait_max_ms: u32,
    /// How clients authenticate to the brokers and protect the connection (default:
    /// plaintext, no SASL).
    pub security: KafkaSecurity,
}

/// The brokers' security settings, passed through to librdkafka (built with its own
/// OpenSSL: rdkafka's `ssl-vendored`). SASL PLAIN and SCRAM need nothing more; GSSAPI
/// (Kerberos) is not built in.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSecurity {
    /// `security.protocol`: `plaintext` (empty means that too), `ssl`, `sasl_plaintext`
    /// or `sasl_ssl`.
    pub protocol: String,
    /// `sasl.mechanism` for the `sasl_*` protocols: `PLAIN`, `SCRAM-SHA-256` or
    /// `SCRAM-SHA-512`.
    pub sasl_mechanism: String,
    pub sasl_username: String,
    /// Never shown: `Debug` and every error leave it out.
    pub sasl_password: String,
    /// `ssl.ca.location`: the CA certificates (PEM file) that sign the brokers'
    /// certificates, for `ssl` and `sasl_ssl`. Empty: the system's.
    pub ssl_ca_file: String,
    /// `ssl.certificate.location` and `ssl.key.location`: a client certificate and its
    /// key (PEM files), for brokers that ask for one.
    pub ssl_certificate_file: String,
    pub ssl_key_file: String,
}

impl std::fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSecurity")
            .field("protocol", &self.protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field(
                "sasl_password",
                &if self.sasl_password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("ssl_ca_file", &self.ssl_ca_file)
            .field("ssl_certificate_file", &self.ssl_certificate_file)
            .field("ssl_key_file", &self.ssl_key_file)
            .finish()
    }
}

impl KafkaSecurity {
    fn protocol(&self) -> &str {
        if self.protocol.is_empty() {
            "plaintext"
        } else {
            &self.protocol
        }
    }

    /// Checks the values, naming the bad key (relative to [`KafkaSettings`]).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let protocol = self.protocol();
        let (sasl, ssl) = match protocol {
            "plaintext" => (false, false),
            "ssl" => (false, true),
            "sasl_plaintext" => (true, false),
            "sasl_ssl" => (true, true),
            _ => {
                return Err((
                    "security.protocol",
                    "must be plaintext, ssl, sasl_plaintext or sasl_ssl".into(),
                ));
            }
        };
        if sasl {
            if !matches!(
                self.sasl_mechanism.as_str(),
                "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
            ) {
                return Err((
                    "security.sasl_mechanism",
                    format!("must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 with {protocol}"),
                ));
            }
            if self.sasl_username.is_empty() {
                return Err((
                    "security.sasl_username",
                    format!("must be set with {protocol}"),
                ));
            }
            if self.sasl_password.is_empty() {
                return Err((
                    "security.sasl_password",
                    format!("must be set with {protocol}"),
                ));
            }
        } else if !self.sasl_mechanism.is_empty() {
            return Err((
                "security.sasl_mechanism",
                format!("is for the sasl_* protocols, not {protocol}"),
            ));
        }
        let files = [
            ("security.ssl_ca_file", &self.ssl_ca_file),
            ("security.ssl_certificate_file", &self.ssl_certificate_file),
            ("security.ssl_key_file", &self.ssl_key_file),
        ];
        for (key, file) in files {
            if file.is_empty() {
                continue;
            }
            if !ssl {
                return Err((key, format!("is for the ssl protocols, not {protocol}")));
            }
            if !std::path::Path::new(file).is_file() {
                return Err((key, format!("file {file} does not exist")));
            }
        }
        if self.ssl_certificate_file.is_empty() != self.ssl_key_file.is_empty() {
            return Err((
                "security.ssl_key_file",
                "a client certificate needs both ssl_certificate_file and ssl_key_file".into(),
            ));
        }
        Ok(())
    }

    /// Sets the librdkafka properties these settings name.
    fn apply(&self, c: &mut ClientConfig) {
        c.set("security.protocol", self.protocol());
        let set = |c: &mut ClientConfig, key: &str, value: &str| {
            if !value.is_empty() {
                c.set(key, value);
            }
        };
        set(c, "sasl.mechanism", &self.sasl_mechanism);
        set(c, "sasl.username", &self.sasl_username);
        set(c, "sasl.password", &self.sasl_password);
        set(c, "ssl.ca.location", &self.ssl_ca_file);
        set(c, "ssl.certificate.location", &self.ssl_certificate_file);
        set(c, "ssl.key.location", &self.ssl_key_file);
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            delivery_timeout_ms: 5_000,
            queue_timeout_ms: 1_000,
            queue_max_messages: 100_000,
            linger_ms: 2,
            request_timeout_ms: 5_000,
            client_id: "churnguard".into(),
            replication_factor: 1,
            group_session_timeout_ms: 10_000,
            fetch_wait_max_ms: 100,
            security: KafkaSecurity::default(),
        }
    }
}

impl KafkaSettings {
    /// Checks the values, naming the bad key (relative to this table).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(("bootstrap_servers", "must name at least one broker".into()));
        }
        if self.delivery_timeout_ms == 0 {
            return Err(("delivery_timeout_ms", "must be positive".into()));
        }
        if self.queue_max_messages == 0 {
            return Err(("queue_max_messages", "must be positive".into()));
        }
        if self.group_session_timeout_ms < 1_000 {
            return Err(("group_session_timeout_ms", "must be at least 1000".into()));
        }
        if self.replication_factor < 1 {
            return Err(("replication_factor", "must be at least 1".into()));
        }
        if !(1..=10_000).contains(&self.fetch_wait_max_ms) {
            return Err(("fetch_wait_max_ms", "must be from 1 to 10000".into()));
        }
        self.security.validate()
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("reconnect.backoff.max.ms", "1000")
            .set("socket.connection.setup.timeout.ms", "5000");
        self.security.apply(&mut c);
        c
    }

    fn producer_config(&self) -> ClientConfig {
        let mut c = self.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", self.delivery_timeout_ms.to_string())
            .set(
                "queue.buffering.max.messages",
                self.queue_max_messages.to_string(),
            )
            .set("linger.ms", self.linger_ms.to_string());
        c
    }
}

/// The producer, with its client errors watched.
type LogProducer = FutureProducer<ClientErrors>;

/// The broker's last refusal of the client's credentials or of its TLS handshake:
/// what it was, librdkafka's reason, and when.
#[derive(Clone, Default)]
struct Refusal(Arc<Mutex<Option<Refused>>>);

/// One refusal: what was refused, librdkafka's reason, when.
type Refused = (&'static str, String, Instant);

impl Refusal {
    /// How long a refusal explains later failures: a client whose credentials were
    /// refused is refused again at every reconnection, well within this.
    const RECENT: Duration = Duration::from_secs(120);

    /// `message`, with the recent refusal if there was one: without it, a client with a
    /// wrong password or certificate sees only timeouts and lost connections.
    fn explain(&self, message: String) -> String {
        let last = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match last {
            Some((what, reason, at)) if at.elapsed() < Self::RECENT => {
                format!("{message}; {what}: {reason}")
            }
            _ => message,
        }
    }

    /// [`Refusal::explain`] for the message of an unavailable log.
    fn explain_error(&self, e: LogError) -> LogError {
        match e {
            LogError::Unavailable(m) => LogError::Unavailable(self.explain(m)),
            other => other,
        }
    }
}

/// The producer's client context: logs librdkafka's errors, as the default one does,
/// and keeps an authentication or TLS failure for [`Refusal::explain`]. librdkafka
/// reports them here only; the requests themselves fail as timeouts and transport
/// failures.
struct ClientErrors(Refusal);

impl ClientContext for ClientErrors {
    fn error(&self, error: KafkaError, reason: &str) {
        let what = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
                Some("the broker refused this client's credentials")
            }
            Some(RDKafkaErrorCode::SSL) => Some("the TLS handshake with the broker failed"),
            _ => None,
        };
        if let Some(what) = what {
            *self.0.0.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((what, reason.to_owned(), Instant::now()));
        }
        tracing::error!(%error, reason, "Kafka client error");
    }
}

/// The Kafka event log. Cheap to share behind an `Arc`; the producer is thread-safe.
pub struct KafkaLog {
    settings: KafkaSettings,
    producer: RwLock<LogProducer>,
    admin: AdminClient<DefaultClientContext>,
    /// The broker's last refusal of this client's credentials or TLS handshake (see
    /// [`ClientErrors`]).
    refusal: Refusal,
    partitions: RwLock<HashMap<String, u32>>,
    /// Consumers per partition read, kept between reads.
    readers: Readers,
}

/// The partition readers, by (topic, partition): a few per partition, so that callers
/// reading one partition at different positions (the projection catching up, an
/// escalation watch tailing) each keep a consumer standing where they read next, instead
/// of re-assigning one consumer back and forth. Re-assigning a consumer while its fetcher
/// is busy is what the bundled librdkafka handles worst: seen aborting the process when
/// two readers alternated on one partition.
type Readers = Mutex<HashMap<(String, u32), Vec<SharedReader>>>;

type SharedReader = Arc<Mutex<PartitionReader>>;

/// The most consumers kept per partition: more are made while all are busy (and closed
/// again once idle), and the least recently used idle one gives way to a new position.
const READERS_PER_PARTITION: usize = 3;

/// A consumer assigned to one partition, and the offset it will deliver next.
struct PartitionReader {
    consumer: BaseConsumer,
    next: Option<u64>,
    last_used: Instant,
}

/// The reader to read `from` with: an idle one standing at `from`, else a new one while
/// there are fewer than [`READERS_PER_PARTITION`] (or all are busy), else the least
/// recently used idle one (re-assigned). `make` creates a consumer. Also takes out of the
/// pool the idle readers past [`READERS_PER_PARTITION`] (made while all were busy), least
/// recently used first, for the caller to close off the async runtime.
fn pick_reader(
    pool: &mut Vec<SharedReader>,
    from: u64,
    make: impl FnOnce() -> Result<BaseConsumer, LogError>,
) -> Result<(SharedReader, Vec<SharedReader>), LogError> {
    let picked = choose_reader(pool, from, make)?;
    let mut retired = Vec::new();
    while pool.len() > READERS_PER_PARTITION {
        let least_recent = pool
            .iter()
            .enumerate()
            .filter(|(_, r)| is_idle(r))
            .min_by_key(|(_, r)| r.lock().unwrap_or_else(PoisonError::into_inner).last_used)
            .map(|(i, _)| i);
        match least_recent {
            Some(i) => retired.push(pool.swap_remove(i)),
            None => break,
        }
    }
    Ok((picked, retired))
}

/// Idle means only the pool holds it: a read keeps its clone until its blocking part is
/// done (even if the caller gave up), and readers are picked under the pool's lock, so two
/// reads never pick one reader.
fn is_idle(reader: &SharedReader) -> bool {
    Arc::strong_count(reader) == 1
}

fn choose_reader(
    pool: &mut Vec<SharedReader>,
    from: u64,
    make: impl FnOnce() -> Result<BaseConsumer, LogError>,
) -> Result<SharedReader, LogError> {
    let mut idle: Vec<(Instant, Option<u64>, &SharedReader)> = pool
        .iter()
        .filter(|r| is_idle(r))
        .map(|r| {
            let g = r.lock().unwrap_or_else(PoisonError::into_inner);
            (g.last_used, g.next, r)
        })
        .collect();
    if let Some((_, _, r)) = idle.iter().find(|(_, next, _)| *next == Some(from)) {
        return Ok(Arc::clone(r));
    }
    if pool.len() >= READERS_PER_PARTITION && !idle.is_empty() {
        idle.sort_by_key(|(used, _, _)| *used);
        return Ok(Arc::clone(idle[0].2));
    }
    let r = Arc::new(Mutex::new(PartitionReader {
        consumer: make()?,
        next: None,
        last_used: Instant::now(),
    }));
    pool.push(Arc::clone(&r));
    Ok(r)
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("bootstrap_servers", &self.settings.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Creates the clients. Connecting happens lazily; use [`EventLog::check`] to probe.
    pub fn new(settings: KafkaSettings) -> Result<Self, LogError> {
        let refusal = Refusal::default();
        let producer = settings
            .producer_config()
            .create_with_context(ClientErrors(refusal.clone()))
            .map_err(|e| LogError::Unavailable(format!("creating the producer: {e}")))?;
        let admin = settings
            .client_config()
            .create()
            .map_err(|e| LogError::Unavailable(format!("creating the admin client: {e}")))?;
        Ok(Self {
            settings,
            producer: RwLock::new(producer),
            admin,
            refusal,
            partitions: RwLock::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
        })
    }

    fn producer(&self) -> LogProducer {
        self.producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Retires `used` and puts a fresh producer (with a new producer id) in its place,
    /// once per producer instance.
    ///
    /// Why: after a delivery timeout, librdkafka's idempotent producer bumps its epoch
    /// locally and goes on with it; a broker that never saw that epoch (Tansu 0.6) fails
    /// every later write from it. So a producer that has seen a timeout, a fatal error or a
    /// rejected producer id/sequence never sends again: its queue and in-flight records
    /// are purged (their callers get a failure, never OK) and the next writes go through
    /// the new producer. Acknowledged writes are unaffected, and a caller's retry carries
    /// the same event id, so consumers can drop any duplicate.
    fn retire_producer(&self, used: &LogProducer, reason: &str) {
        let mut slot = self
            .producer
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !std::ptr::eq(slot.client().native_ptr(), used.client().native_ptr()) {
            return; // already retired by another append
        }
        match self
            .settings
            .producer_config()
            .create_with_context(ClientErrors(self.refusal.clone()))
        {
            Ok(fresh) => {
                tracing::warn!(%reason, "retiring the Kafka producer; writes continue on a new one");
                churnguard_eventlog::metrics::producer_retired();
                *slot = fresh;
                drop(slot);
                used.purge(PurgeConfig::default().queue().inflight());
            }
            Err(e) => tracing::error!(error = %e, "could not create a new Kafka producer"),
        }
    }

    async fn partition_count(&self, topic: &str) -> Result<u32, LogError> {
        if let Some(n) = self
            .partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
        {
            return Ok(*n);
        }
        let n = self.fetch_partition_count(topic).await?;
        self.partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.to_owned(), n);
        Ok(n)
    }

    async fn fetch_partition_count(&self, topic: &str) -> Result<u32, LogError> {
        let producer = self.producer();
        let timeout = self.settings.request_timeout();
        let name = topic.to_owned();
        let metadata = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&name), timeout)
                .map(|m| {
                    m.topics()
                        .first()
                        .map(|t| (t.error(), t.partitions().len() as u32))
                })
        })
        .await
        .map_err(|_| LogError::Closed)?
        .map_err(|e| {
            LogError::Unavailable(self.refusal.explain(format!("fetching metadata: {e}")))
        })?;
        match metadata {
            Some((None, n)) if n > 0 => Ok(n),
            _ => Err(LogError::UnknownTopic(topic.to_owned())),
        }
    }

    /// The partition's low and high watermarks: its first offset still held, and the
    /// offset its next record will get.
    async fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError> {
        // A partition past the topic's count would wait out the request's timeout.
        if partition >= self.partition_count(topic).await? {
            return Err(LogError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            });
        }
        let producer = self.producer();
        let timeout = self.settings.request_timeout();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            // A busy broker may miss one request's timeout: ask up to three times.
            let mut attempt = 1;
            loop {
                let asked = producer
                    .client()
                    .fetch_watermarks(&topic, partition as i32, timeout);
                match asked {
                    Err(KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut))
                        if attempt < WATERMARK_ATTEMPTS =>
                    {
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        })
        .await
        .map_err(|_| LogError::Closed)?
        .map(|(low, high)| (low.max(0) as u64, high.max(0) as u64))
        .map_err(|e| match e {
            KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                LogError::UnknownPartition {
                    topic: String::new(),
                    partition,
                }
            }
            e => LogError::Unavailable(format!("fetching watermarks: {e}")),
        })
    }

    fn consumer(&self) -> Result<BaseConsumer, LogError> {
        let mut c = self.settings.client_config();
        c.set("group.id", format!("{}-reader", self.settings.client_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            // Never jump: an offset the broker calls out of range is an error to handle,
            // not a silent move to the end (that would skip records).
            .set("auto.offset.reset", "error")
            .set(
                "fetch.wait.max.ms",
                self.settings.fetch_wait_max_ms.to_string(),
            )
            .set("queued.max.messages.kbytes", "16384");
        c.create()
            .map_err(|e| LogError::Unavailable(format!("creating a consumer: {e}")))
    }
}

impl EventLog for KafkaLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, LogError> {
        check_topic_name(topic)?;
        if partitions == 0 {
            return Err(LogError::Rejected(
                "a topic needs at least one partition".into(),
            ));
        }
        churnguard_eventlog::metrics::topic_in_use(topic);
        // The log is the system of record: everything else is rebuilt by replaying it, so
        // its topics keep every record (the broker's default would delete after 7 days).
        let new = NewTopic::new(
            topic,
            partitions as i32,
            TopicReplication::Fixed(self.settings.replication_factor),
        )
        .set("retention.ms", "-1")
        .set("retention.bytes", "-1");
        let opts = AdminOptions::new()
            .operation_timeout(Some(Timeout::After(self.settings.request_timeout())));
        let results = self
            .admin
            .create_topics([&new], &opts)
            .await
            .map_err(|e| LogError::Unavailable(format!("creating topic {topic}: {e}")))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(LogError::Unavailable(format!(
                        "creating topic {topic}: {code}"
                    )));
                }
            }
        }
        // The broker is the authority on the count: an existing topic keeps its own.
        let deadline = Instant::now() + self.settings.request_timeout();
        loop {
            match self.fetch_partition_count(topic).await {
                Ok(n) => {
                    self.partitions
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(topic.to_owned(), n);
                    return Ok(n);
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Vec<Result<Appended, LogError>> {
        let count = records.len();
        let partitions = match self.partition_count(topic).await {
            Ok(n) => n,
            Err(e) => return e.for_each_record(count),
        };
        let producer = self.producer();
        let queue_timeout = Duration::from_millis(self.settings.queue_timeout_ms);

        // Enqueue in order (that keeps per-partition order), then wait for every ack.
        let mut pending = Vec::with_capacity(count);
        for record in &records {
            let partition = partition_for_key(&record.key, partitions);
            pending.push(enqueue(&producer, topic, partition, record, queue_timeout).await);
        }
        let mut results = Vec::with_capacity(count);
        let mut broken_state = None;
        for p in pending {
            results.push(match p {
                Err(e) => Err(e),
                Ok(delivery) => match delivery.await {
                    Ok(Ok(d)) => Ok(Appended {
                        partition: d.partition as u32,
                        offset: d.offset as u64,
                    }),
                    Ok(Err((e, _))) => {
                        if retires_producer(&e) {
                            broken_state = Some(e.to_string());
                        }
                        Err(self.refusal.explain_error(map_error(e, &self.settings)))
                    }
                    Err(_) => Err(LogError::Closed),
                },
            });
        }
        let fatal = producer.client().fatal_error().map(|(_, reason)| reason);
        if let Some(reason) = fatal.or(broken_state) {
            self.retire_producer(&producer, &reason);
        }
        churnguard_eventlog::metrics::appended(topic, &results);
        results
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Record>, LogError> {
        let partitions = self.partition_count(topic).await?;
        if partition >= partitions {
            return Err(LogError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            });
        }
        let (reader, retired) = {
            let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            let pool = readers.entry((topic.to_owned(), partition)).or_default();
            pick_reader(pool, from, || self.consumer())?
        };
        if !retired.is_empty() {
            // Closing a consumer waits for its threads.
            tokio::task::spawn_blocking(move || drop(retired));
        }
        let topic = topic.to_owned();
        // The first fetch needs a connection: allow that on top of the caller's wait.
        let deadline = Instant::now() + wait + self.settings.request_timeout();
        tokio::task::spawn_blocking(move || {
            let mut reader = reader.lock().unwrap_or_else(PoisonError::into_inner);
            reader.last_used = Instant::now();
            // Where the consumer is assigned: `from`, or earlier (see below).
            let mut start = from;
            loop {
                if reader.next != Some(start) {
                    // Not where the reader stands: (re)assign.
                    let mut assignment = TopicPartitionList::new();
                    assignment
                        .add_partition_offset(
                            &topic,
                            partition as i32,
                            Offset::Offset(start as i64),
                        )
                        .map_err(|e| LogError::Unavailable(e.to_string()))?;
                    reader.consumer.assign(&assignment).map_err(|e| {
                        LogError::Unavailable(format!("assigning {topic}/{partition}: {e}"))
                    })?;
                    reader.next = Some(start);
                }
                match poll_records(&mut reader, partition, from, max, deadline)? {
                    Polled::Records(out) => return Ok(out),
                    // The records at `from` did not come. Tansu 0.6 (memory storage)
                    // answers a fetch from inside a producer's record batch with the batch
                    // after it, silently skipping the rest of that batch (or with nothing
                    // while that batch is the partition's last); and a consumer just
                    // re-assigned can still hand out a fetch from its old position. Either
                    // way: start further back (batch boundaries are unknown), drop what
                    // precedes `from`, and give up only at the deadline.
                    Polled::Skipped(what) => {
                        if Instant::now() >= deadline {
                            return Err(LogError::Unavailable(format!(
                                "reading {topic}/{partition}: {what}"
                            )));
                        }
                        let back = from.saturating_sub(start).max(1) * 4;
                        start = from.saturating_sub(back);
                    }
                }
            }
        })
        .await
        .map_err(|_| LogError::Closed)?
    }

    async fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.watermarks(topic, partition).await.map(|(low, _)| low)
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.watermarks(topic, partition)
            .await
            .map(|(_, high)| high)
    }

    async fn join_group(&self, group: &str, topic: &str) -> Result<Membership, LogError> {
        self.partition_count(topic).await?; // the topic must exist
        static MEMBERS: AtomicU64 = AtomicU64::new(0);
        let member = format!(
            "{}-{}-{}",
            self.settings.client_id,
            std::process::id(),
            MEMBERS.fetch_add(1, Ordering::Relaxed)
        );
        let (changes, rx) = mpsc::unbounded_channel();
        let mut config = self.settings.client_config();
        config
            .set("client.id", &member)
            .set("group.id", group)
            // The eager protocol: a rebalance revokes everything, then assigns anew. With
            // cooperative-sticky, Tansu 0.6 could leave a member that joined right after
            // another left without partitions for good (tests/redis_loss.rs).
            .set("partition.assignment.strategy", "roundrobin")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest")
            .set(
                "session.timeout.ms",
                self.settings.group_session_timeout_ms.to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (self.settings.group_session_timeout_ms / 3)
                    .max(100)
                    .to_string(),
            )
            // This consumer polls every 100 ms, so a member that stops answering is dead:
            // the group's rebalances need not wait the default five minutes for it.
            .set(
                "max.poll.interval.ms",
                (self.settings.group_session_timeout_ms * 3).to_string(),
            );
        let consumer: BaseConsumer<GroupContext> = config
            .create_with_context(GroupContext {
                topic: topic.to_owned(),
                changes,
            })
            .map_err(|e| LogError::Unavailable(format!("creating a group consumer: {e}")))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| LogError::Unavailable(format!("joining group {group}: {e}")))?;
        let leaving = Arc::new(AtomicBool::new(false));
        let stop = leaving.clone();
        let rejoining = Arc::new(AtomicBool::new(false));
        let rejoin = rejoining.clone();
        let subscription = topic.to_owned();
        let (left, gone) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("group-{group}"))
            .spawn(move || {
                // Polling serves the rebalance callbacks; the partitions are paused, so no
                // records arrive here (the member reads them through `read`).
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                        tracing::warn!(error = %e, "consumer group trouble");
                    }
                    // Leave and join again as a new member (see `Membership::rejoin`).
                    if rejoin.swap(false, Ordering::Relaxed) {
                        consumer.unsubscribe();
                        let _ = consumer.poll(Duration::from_millis(100));
                        if let Err(e) = consumer.subscribe(&[subscription.as_str()]) {
                            tracing::warn!(error = %e, "joining the group again");
                        }
                    }
                }
                consumer.unsubscribe();
                let _ = consumer.poll(Duration::from_millis(100));
                // Dropping closes the consumer: it leaves the group, and the others
                // take over its partitions at once.
                drop(consumer);
                let _ = left.send(());
            })
            .map_err(|e| LogError::Unavailable(format!("starting the group thread: {e}")))?;
        Ok(Membership::new(member, rx, move || {
            leaving.store(true, Ordering::Relaxed);
        })
        .left_when(gone)
        .rejoins_with(move || rejoining.store(true, Ordering::Relaxed)))
    }

    async fn check(&self) -> Result<(), LogError> {
        let producer = self.producer();
        let timeout = self.settings.request_timeout().min(Duration::from_secs(2));
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout))
            .await
            .map_err(|_| LogError::Closed)?
            .map(|_| ())
            .map_err(|e| LogError::Unavailable(format!("broker unreachable: {e}")))
    }

    async fn flush(&self, timeout: Duration) -> Result<(), LogError> {
        let producer = self.producer();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|_| LogError::Closed)?
            .map_err(|_| LogError::TimedOut(timeout))
    }
}

/// How often a partition's end offset is asked for when the broker does not answer in
/// time.
const WATERMARK_ATTEMPTS: u32 = 3;

/// What one poll run delivered.
enum Polled {
    /// Records from `from` on, dense (possibly none yet).
    Records(Vec<Record>),
    /// The records at `from` did not come: the first one delivered was past it (see
    /// [`KafkaLog::read`]).
    Skipped(String),
}

/// Polls `reader` for up to `max` records from `from` on, until `deadline`. What it hands
/// out is dense: records before `from` (the run-up from an earlier start) and repeats are
/// dropped, and at a gap it stops with what came before and assigns again at the gap next
/// time. The topics this log writes are never compacted, so their offsets have no holes:
/// a gap is always a fetch that skipped records, never records that are not there.
fn poll_records(
    reader: &mut PartitionReader,
    partition: u32,
    from: u64,
    max: usize,
    deadline: Instant,
) -> Result<Polled, LogError> {
    let mut out: Vec<Record> = Vec::new();
    let mut failed = None;
    // A connection lost meanwhile (an error only if nothing came before the deadline).
    let mut lost = None;
    let mut reassign = false;
    while out.len() < max {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // The wait is for the first record only: once some came, what the consumer has
        // already fetched is taken without waiting, and the read returns when that runs
        // out (a steady stream would otherwise hold records back until `max` of them came,
        // most of a second for the scorer at 10,000 swipes/s).
        let poll_for = if out.is_empty() {
            left.min(Duration::from_millis(100))
        } else {
            Duration::ZERO
        };
        match reader.consumer.poll(poll_for) {
            None if !out.is_empty() => break,
            None => {}
            Some(Ok(m)) => {
                let offset = m.offset() as u64;
                let expected = from + out.len() as u64;
                if offset < expected {
                    reader.next = Some(offset + 1);
                    continue;
                }
                if offset > expected {
                    tracing::debug!(partition, expected, offset, "a fetch skipped records");
                    reader.next = None;
                    if out.is_empty() {
                        return Ok(Polled::Skipped(format!(
                            "the first record delivered from {from} was {offset}"
                        )));
                    }
                    reassign = true;
                    break;
                }
                reader.next = Some(offset + 1);
                out.push(Record {
                    partition,
                    offset,
                    timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                    key: m.key().unwrap_or_default().to_vec(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers: m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| Header::new(h.key, h.value.unwrap_or_default()))
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            // At the end: done if we have something, else keep waiting.
            Some(Err(KafkaError::PartitionEOF(_))) if !out.is_empty() => break,
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            // Some brokers (Tansu 0.6) answer a fetch at the very end of the partition
            // with OFFSET_OUT_OF_RANGE. Nothing new yet: assign again next time.
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange,
            ))) => {
                reassign = true;
                if out.is_empty() {
                    std::thread::sleep(left.min(Duration::from_millis(50)));
                }
                break;
            }
            // A dropped connection: librdkafka reconnects by itself. Keep polling until the
            // deadline; only a connection still lost then, with nothing read, is an error.
            Some(Err(
                e @ KafkaError::MessageConsumption(
                    RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure,
                ),
            )) => {
                tracing::debug!(partition, error = %e, "connection to the broker lost while reading");
                lost = Some(e.to_string());
                std::thread::sleep(left.min(Duration::from_millis(50)));
            }
            Some(Err(e)) => {
                failed = Some(e.to_string());
                break;
            }
        }
    }
    if reassign {
        reader.next = None;
    }
    if failed.is_none() && out.is_empty() {
        failed = lost;
    }
    match failed {
        // Start over from a known offset next time.
        Some(e) if out.is_empty() => {
            reader.next = None;
            Err(LogError::Unavailable(format!("reading: {e}")))
        }
        _ => Ok(Polled::Records(out)),
    }
}

/// Turns a Kafka group's rebalances into [`AssignmentChange`]s.
struct GroupContext {
    topic: String,
    changes: mpsc::UnboundedSender<AssignmentChange>,
}

impl GroupContext {
    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<u32> {
        tpl.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition() as u32)
            .collect()
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    /// Before partitions go: tell the member and wait (bounded) until it has stopped
    /// working on them, so the next owner does not overlap with it.
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let lost = self.partitions(tpl);
        if lost.is_empty() {
            return;
        }
        let (revocation, mut done) = Revocation::new();
        if self
            .changes
            .send(AssignmentChange::Revoked(lost, revocation))
            .is_err()
        {
            return; // the member has left
        }
        let deadline = Instant::now() + REVOCATION_TIMEOUT;
        while Instant::now() < deadline {
            match done.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => return,
            }
        }
        tracing::warn!("a member did not release its partitions in time; handing them over");
    }

    /// After partitions arrive: pause them (this consumer only keeps the membership;
    /// records are read from the offsets the member keeps) and tell the member.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                if let Err(e) = consumer.pause(tpl) {
                    tracing::warn!(error = %e, "pausing assigned partitions");
                }
                let gained = self.partitions(tpl);
                let cooperative = matches!(
                    consumer.rebalance_protocol(),
                    rdkafka::consumer::RebalanceProtocol::Cooperative
                );
                tracing::debug!(cooperative, ?gained, "partitions assigned");
                if !gained.is_empty() {
                    let _ = self.changes.send(AssignmentChange::Assigned(gained));
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

/// Puts one record on the producer queue, waiting (bounded) while the queue is full.
async fn enqueue(
    producer: &LogProducer,
    topic: &str,
    partition: u32,
    record: &OutgoingRecord,
    queue_timeout: Duration,
) -> Result<rdkafka::producer::DeliveryFuture, LogError> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for h in &record.headers {
        headers = headers.insert(KafkaHeader {
            key: &h.name,
            value: Some(&h.value),
        });
    }
    let deadline = Instant::now() + queue_timeout;
    let mut kafka_record = FutureRecord::to(topic)
        .partition(partition as i32)
        .key(&record.key)
        .payload(&record.payload)
        .timestamp(record.timestamp_ms)
        .headers(headers);
    loop {
        match producer.send_result(kafka_record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                if Instant::now() >= deadline {
                    return Err(LogError::Unavailable(
                        "producer queue full: the broker is not keeping up".into(),
                    ));
                }
                kafka_record = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(LogError::Rejected(e.to_string())),
        }
    }
}

/// Failures after which a producer must not send again (see `retire_producer`): a
/// delivery timeout (librdkafka then bumps the epoch locally), or a broker answer saying
/// the producer's id, epoch or sequence numbers no longer match its own.
fn retires_producer(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::Unknown
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::DuplicateSequenceNumber
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::InvalidProducerIdMapping
                | RDKafkaErrorCode::ProducerFenced
        )
    )
}

/// Maps a delivery failure; says whether retrying may help by the variant chosen.
fn map_error(e: KafkaError, settings: &KafkaSettings) -> LogError {
    match e {
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut) => {
            LogError::Unavailable(format!(
                "broker did not acknowledge within {} ms",
                settings.delivery_timeout_ms
            ))
        }
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize,
        ) => LogError::Rejected("record too large for the broker".into()),
        KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition) => {
            LogError::UnknownTopic("(as reported by the broker)".into())
        }
        e => LogError::Unavailable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scram() -> KafkaSecurity {
        KafkaSecurity {
            protocol: "sasl_ssl".into(),
            sasl_mechanism: "SCRAM-SHA-512".into(),
            sasl_username: "ingest".into(),
            sasl_password: "canary-kafka-password".into(),
            ..KafkaSecurity::default()
        }
    }

    /// librdkafka takes every protocol and mechanism the settings allow (it refuses
    /// `ssl` and SCRAM when built without OpenSSL), and the password stays out of `Debug`.
    #[test]
    fn security_settings_reach_librdkafka() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").expect("write");
        let secured = [
            KafkaSecurity::default(),
            KafkaSecurity {
                protocol: "ssl".into(),
                ..KafkaSecurity::default()
            },
            KafkaSecurity {
                protocol: "sasl_plaintext".into(),
                sasl_mechanism: "PLAIN".into(),
                ..scram()
            },
            KafkaSecurity {
                sasl_mechanism: "SCRAM-SHA-256".into(),
                ..scram()
            },
            scram(),
        ];
        for security in secured {
            security.validate().expect("valid");
            let settings = KafkaSettings {
                security: security.clone(),
                ..KafkaSettings::default()
            };
            let config = settings.producer_config();
            assert_eq!(config.get("security.protocol"), Some(security.protocol()));
            let made: Result<rdkafka::producer::BaseProducer, _> = config.create();
            assert!(made.is_ok(), "{security:?}: {:?}", made.err());
            assert!(
                !format!("{settings:?}").contains("canary-kafka-password"),
                "the password is redacted"
            );
        }
        let with_ca = KafkaSecurity {
            ssl_ca_file: ca.to_string_lossy().into_owned(),
            ..scram()
        };
        with_ca.validate().expect("valid");
        let mut c = ClientConfig::new();
        with_ca.apply(&mut c);
        assert_eq!(c.get("ssl.ca.location"), Some(with_ca.ssl_ca_file.as_str()));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
    }

    #[test]
    fn bad_security_settings_name_the_key() {
        let bad = |s: KafkaSecurity| s.validate().expect_err("invalid").0;
        assert_eq!(
            bad(KafkaSecurity {
                protocol: "tls".into(),
                ..KafkaSecurity::default()
            }),
            "security.protocol"
        );
        assert_eq!(
            bad(KafkaSecurity {
                sasl_mechanism: "GSSAPI".into(),
                ..scram()
            }),
            "security.sasl_mechanism"
        );
        assert_eq!(
            bad(KafkaSecurity {
                sasl_password: String::new(),
                ..scram()
            }),
            "security.sasl_password"
        );
        assert_eq!(
            bad(KafkaSecurity {
                sasl_mechanism: "PLAIN".into(),
                ..KafkaSecurity::default()
            }),
            "security.sasl_mechanism"
        );
        assert_eq!(
            bad(KafkaSecurity {
                ssl_ca_file: "/nonexistent/ca.pem".into(),
                ..scram()
            }),
            "security.ssl_ca_file"
        );
        let err = KafkaSecurity {
            sasl_username: String::new(),
            ..scram()
        }
        .validate()
        .expect_err("no user");
        assert!(!err.1.contains("canary-kafka-password"), "{err:?}");
    }

    #[test]
    fn a_fetch_wait_outside_1_to_10000_ms_is_refused_by_name() {
        let with_wait = |fetch_wait_max_ms| KafkaSettings {
            fetch_wait_max_ms,
            ..KafkaSettings::default()
        };
        for ok in [1, 10, 100, 10_000] {
            with_wait(ok).validate().expect("a wait in range");
        }
        for bad in [0, 10_001] {
            assert_eq!(
                with_wait(bad).validate().expect_err("out of range").0,
                "fetch_wait_max_ms"
            );
        }
    }

    /// A consumer that never connects (nothing listens on port 1): creating one needs no
    /// broker.
    fn consumer() -> Result<BaseConsumer, LogError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "pool-test");
        c.create()
            .map_err(|e| LogError::Unavailable(format!("creating a consumer: {e}")))
    }

    fn pick(pool: &mut Vec<SharedReader>, from: u64) -> (SharedReader, Vec<SharedReader>) {
        pick_reader(pool, from, consumer).expect("a reader")
    }

    fn stand_at(reader: &SharedReader, next: u64) {
        reader.lock().expect("lock").next = Some(next);
    }

    #[test]
    fn a_busy_reader_is_never_picked_twice_and_an_idle_one_at_the_offset_is_reused() {
        let mut pool = Vec::new();
        let (a, _) = pick(&mut pool, 0);
        stand_at(&a, 0);
        // `a` is held by a read: a second read at the same offset gets another consumer.
        let (b, _) = pick(&mut pool, 0);
        assert!(!Arc::ptr_eq(&a, &b));
        stand_at(&b, 40);
        drop(a);
        // Idle again, and standing where the next read starts.
        let (again, _) = pick(&mut pool, 0);
        assert_eq!(pool.len(), 2);
        assert!(pool.iter().any(|r| Arc::ptr_eq(r, &again)));
        assert_eq!(again.lock().expect("lock").next, Some(0));
        drop(b);
        let (at_40, _) = pick(&mut pool, 40);
        assert_eq!(at_40.lock().expect("lock").next, Some(40));
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn readers_made_while_all_were_busy_are_retired_once_idle() {
        let mut pool = Vec::new();
        let held: Vec<SharedReader> = (0..5).map(|i| pick(&mut pool, i * 10).0).collect();
        assert_eq!(
            pool.len(),
            5,
            "every read got its own consumer while all were busy"
        );
        for (i, r) in held.iter().enumerate() {
            stand_at(r, i as u64 * 10);
        }
        // The one at 20 stays busy; the others become idle.
        let busy = held[2].clone();
        drop(held);
        let (at_30, retired) = pick(&mut pool, 30);
        assert_eq!(at_30.lock().expect("lock").next, Some(30));
        assert_eq!(pool.len(), READERS_PER_PARTITION);
        assert_eq!(retired.len(), 2);
        assert!(
            pool.iter().any(|r| Arc::ptr_eq(r, &busy)),
            "a busy reader stays"
        );
        assert!(
            retired.iter().all(|r| !Arc::ptr_eq(r, &at_30)),
            "the picked reader stays"
        );
    }
}
