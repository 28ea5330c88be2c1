//! The embedded event log: Kafka's model on one machine's disk.
//!
//! Layout: `DIR/LOCK`, and per topic `DIR/<topic>/topic.json` plus one append-only file per
//! partition, `DIR/<topic>/<partition>.log`. Each record is framed as
//!
//! ```text
//! u32 body length | u32 CRC-32 of body | body
//! body = u64 offset | i64 timestamp ms | u32 key len | key | u32 payload len | payload
//!        | u16 header count | (u16 name len | name | u32 value len | value)*
//! ```
//! (little-endian). One writer thread takes every append, group-commits what has queued up
//! (write, then `fdatasync` each touched file) and only then acknowledges, so an `Ok` has
//! reached the disk. Readers see a record only once it is durable. On open, each file is
//! scanned and checked; a torn tail left by a crash (which can only hold writes that were
//! never acknowledged) is cut off, as Kafka's own log recovery does.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use churnguard_domain::partition_for_key;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::group::LocalGroups;
use crate::{
    Appended, EventLog, Header, LogError, Membership, OutgoingRecord, Record, check_topic_name,
};

/// Largest encoded record accepted.
pub const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;
/// A sparse index entry is kept for every this many records of a partition.
const INDEX_INTERVAL: u64 = 256;
/// Requests waiting for the writer; a full queue makes `append` wait (backpressure).
const WRITE_QUEUE: usize = 256;
/// At most this many queued requests are committed with one fsync per file.
const MAX_GROUP: usize = 512;
const FRAME_HEADER: usize = 8;

/// A local, durable, partitioned log directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// Held (with an OS lock) for as long as the log is open.
    _lock: File,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    writes: mpsc::Sender<WriteRequest>,
    /// Consumer groups of this process (the log has one process: see LOCK).
    groups: LocalGroups,
}

#[derive(Debug)]
struct Topic {
    partitions: Vec<Arc<Partition>>,
}

#[derive(Debug)]
struct Partition {
    number: u32,
    path: PathBuf,
    /// The end offset readers may see: everything below it is on disk.
    durable_end: watch::Sender<u64>,
    /// (offset, byte position) for every `INDEX_INTERVAL`-th record.
    index: Mutex<Vec<(u64, u64)>>,
    /// Touched only by the writer thread.
    writer: Mutex<PartitionWriter>,
}

#[derive(Debug)]
struct PartitionWriter {
    file: File,
    next_offset: u64,
    len: u64,
    pending: Vec<u8>,
    pending_index: Vec<(u64, u64)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicMeta {
    partitions: u32,
}

#[derive(Debug)]
enum WriteRequest {
    Append {
        partitions: Vec<Arc<Partition>>,
        records: Vec<OutgoingRecord>,
        reply: oneshot::Sender<Vec<Result<Appended, LogError>>>,
    },
    Barrier(oneshot::Sender<()>),
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log in `dir`, recovering every partition file.
    /// Fails if another process has the directory open.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(LogError::io(format!("creating {}", dir.display())))?;
        let lock = File::create(dir.join("LOCK")).map_err(LogError::io("creating LOCK"))?;
        lock.try_lock().map_err(|_| {
            LogError::Unavailable(format!(
                "log directory {} is in use by another process",
                dir.display()
            ))
        })?;

        let mut topics = HashMap::new();
        let entries = fs::read_dir(&dir).map_err(LogError::io("listing the log directory"))?;
        for entry in entries {
            let entry = entry.map_err(LogError::io("listing the log directory"))?;
            let meta_path = entry.path().join("topic.json");
            if !meta_path.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = fs::read(&meta_path)
                .map_err(LogError::io(format!("reading {}", meta_path.display())))?;
            let meta: TopicMeta = serde_json::from_slice(&bytes).map_err(|e| LogError::Io {
                action: format!("parsing {}", meta_path.display()),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            })?;
            topics.insert(name, Arc::new(Topic::open(&entry.path(), meta.partitions)?));
        }

        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("eventlog-writer".into())
            .spawn(move || writer_loop(queue))
            .map_err(LogError::io("starting the writer thread"))?;

        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                _lock: lock,
                topics: RwLock::new(topics),
                writes,
                groups: LocalGroups::default(),
            }),
        })
    }

    fn topic(&self, topic: &str) -> Result<Arc<Topic>, LogError> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>, LogError> {
        self.topic(topic)?
            .partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| LogError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            })
    }

    fn create_topic(&self, topic: &str, partitions: u32) -> Result<u32, LogError> {
        let mut topics = self
            .inner
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = topics.get(topic) {
            return Ok(existing.partitions.len() as u32);
        }
        let topic_dir = self.inner.dir.join(topic);
        fs::create_dir_all(&topic_dir)
            .map_err(LogError::io(format!("creating {}", topic_dir.display())))?;
        let opened = Topic::open(&topic_dir, partitions)?;
        // The partition files exist before topic.json appears, atomically, via rename.
        let meta = serde_json::to_vec(&TopicMeta { partitions }).unwrap_or_default();
        let tmp = topic_dir.join("topic.json.tmp");
        write_synced(&tmp, &meta).map_err(LogError::io("writing topic.json"))?;
        fs::rename(&tmp, topic_dir.join("topic.json"))
            .map_err(LogError::io("renaming topic.json"))?;
        sync_dir(&topic_dir).map_err(LogError::io("syncing the topic directory"))?;
        sync_dir(&self.inner.dir).map_err(LogError::io("syncing the log directory"))?;
        topics.insert(topic.to_owned(), Arc::new(opened));
        Ok(partitions)
    }
}

impl EventLog for EmbeddedLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, LogError> {
        check_topic_name(topic)?;
        if partitions == 0 {
            return Err(LogError::Rejected(
                "a topic needs at least one partition".into(),
            ));
        }
        crate::metrics::topic_in_use(topic);
        let this = self.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || this.create_topic(&topic, partitions))
            .await
            .map_err(|_| LogError::Closed)?
    }

    async fn append(
        &self,
        topic: &str,
        records: Vec<OutgoingRecord>,
    ) -> Vec<Result<Appended, LogError>> {
        let count = records.len();
        let name = topic;
        let topic = match self.topic(topic) {
            Ok(t) => t,
            Err(e) => return e.for_each_record(count),
        };
        let mut results: Vec<Option<Result<Appended, LogError>>> =
            (0..count).map(|_| None).collect();
        let mut to_write = Vec::with_capacity(count);
        let mut positions = Vec::with_capacity(count);
        let mut partitions = Vec::with_capacity(count);
        let n = topic.partitions.len() as u32;
        for (i, record) in records.into_iter().enumerate() {
            let size = encoded_len(&record);
            if size > MAX_RECORD_BYTES {
                results[i] = Some(Err(LogError::RecordTooLarge {
                    size,
                    limit: MAX_RECORD_BYTES,
                }));
                continue;
            }
            let p = partition_for_key(&record.key, n);
            partitions.push(topic.partitions[p as usize].clone());
            to_write.push(record);
            positions.push(i);
        }
        if !to_write.is_empty() {
            let (reply, answer) = oneshot::channel();
            let request = WriteRequest::Append {
                partitions,
                records: to_write,
                reply,
            };
            let written = match self.inner.writes.send(request).await {
                Ok(()) => answer.await.ok(),
                Err(_) => None,
            };
            match written {
                Some(written) => {
                    for (i, r) in positions.into_iter().zip(written) {
                        results[i] = Some(r);
                    }
                }
                None => {
                    for i in positions {
                        results[i] = Some(Err(LogError::Closed));
                    }
                }
            }
        }
        let results: Vec<_> = results
            .into_iter()
            .map(|r| r.unwrap_or(Err(LogError::Closed)))
            .collect();
        crate::metrics::appended(name, &results);
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
        let part = self.partition(topic, partition)?;
        let mut end = part.durable_end.subscribe();
        if *end.borrow() <= from {
            // Nothing to read yet: wait for a commit that goes past `from`.
            let _ = tokio::time::timeout(wait, end.wait_for(|e| *e > from)).await;
        }
        let end = *part.durable_end.borrow();
        if end <= from || max == 0 {
            return Ok(Vec::new());
        }
        tokio::task::spawn_blocking(move || part.read_range(from, end, max))
            .await
            .map_err(|_| LogError::Closed)?
    }

    /// The embedded log never deletes records.
    async fn start_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        self.partition(topic, partition).map(|_| 0)
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        Ok(*self.partition(topic, partition)?.durable_end.borrow())
    }

    async fn join_group(&self, group: &str, topic: &str) -> Result<Membership, LogError> {
        let partitions = self.topic(topic)?.partitions.len() as u32;
        Ok(self.inner.groups.join(group, topic, partitions))
    }

    async fn check(&self) -> Result<(), LogError> {
        if self.inner.writes.is_closed() {
            return Err(LogError::Closed);
        }
        Ok(())
    }

    async fn flush(&self, timeout: Duration) -> Result<(), LogError> {
        let (tx, rx) = oneshot::channel();
        let barrier = async {
            self.inner
                .writes
                .send(WriteRequest::Barrier(tx))
                .await
                .map_err(|_| LogError::Closed)?;
            rx.await.map_err(|_| LogError::Closed)
        };
        tokio::time::timeout(timeout, barrier)
            .await
            .map_err(|_| LogError::TimedOut(timeout))?
    }
}

impl Topic {
    fn open(dir: &Path, partitions: u32) -> Result<Self, LogError> {
        let partitions = (0..partitions)
            .map(|number| Partition::open(dir.join(format!("{number}.log")), number).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Self { partitions })
    }
}

impl Partition {
    /// Opens a partition file, checks every frame and cuts off a torn tail.
    fn open(path: PathBuf, number: u32) -> Result<Self, LogError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(LogError::io(format!("opening {}", path.display())))?;
        let file_len = file
            .metadata()
            .map_err(LogError::io("reading file size"))?
            .len();
        let mut reader = BufReader::with_capacity(
            1 << 16,
            File::open(&path).map_err(LogError::io("opening for recovery"))?,
        );
        let mut index = Vec::new();
        let mut pos = 0u64;
        let mut next = 0u64;
        loop {
            match read_frame(&mut reader) {
                Ok(None) => break,
                Ok(Some(body)) => match decode_body(&body) {
                    Some(rec) if rec.offset == next => {
                        if next.is_multiple_of(INDEX_INTERVAL) {
                            index.push((next, pos));
                        }
                        pos += (FRAME_HEADER + body.len()) as u64;
                        next += 1;
                    }
                    _ => break,
                },
                Err(_) => break,
            }
        }
        if pos < file_len {
            tracing::warn!(
                file = %path.display(),
                kept_records = next,
                dropped_bytes = file_len - pos,
                "cutting off a torn tail (writes that were never acknowledged)"
            );
            file.set_len(pos)
                .map_err(LogError::io("truncating a torn tail"))?;
            file.sync_all()
                .map_err(LogError::io("syncing after truncation"))?;
        }
        let (durable_end, _) = watch::channel(next);
        Ok(Self {
            number,
            path,
            durable_end,
            index: Mutex::new(index),
            writer: Mutex::new(PartitionWriter {
                file,
                next_offset: next,
                len: pos,
                pending: Vec::new(),
                pending_index: Vec::new(),
            }),
        })
    }

    /// Reads durable records `from..end`, at most `max` of them.
    fn read_range(&self, from: u64, end: u64, max: usize) -> Result<Vec<Record>, LogError> {
        let (mut offset, pos) = {
            let index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
            let i = index.partition_point(|(o, _)| *o <= from);
            if i == 0 { (0, 0) } else { index[i - 1] }
        };
        let mut file =
            File::open(&self.path).map_err(LogError::io("opening a partition for reading"))?;
        file.seek(SeekFrom::Start(pos))
            .map_err(LogError::io("seeking"))?;
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let path = &self.path;
        let corrupt = |offset: u64, what: &str| LogError::Io {
            action: format!("reading {} at offset {offset}", path.display()),
            source: io::Error::new(io::ErrorKind::InvalidData, what.to_owned()),
        };
        let mut out = Vec::new();
        while offset < end && out.len() < max {
            let body = read_frame(&mut reader)
                .map_err(|e| corrupt(offset, &e.to_string()))?
                .ok_or_else(|| corrupt(offset, "unexpected end of file"))?;
            let mut record =
                decode_body(&body).ok_or_else(|| corrupt(offset, "undecodable record"))?;
            if record.offset != offset {
                return Err(corrupt(offset, "offset out of sequence"));
            }
            offset += 1;
            if record.offset >= from {
                record.partition = self.number;
                out.push(record);
            }
        }
        Ok(out)
    }
}

/// The writer thread: takes whatever has queued up, commits it with one fsync per file,
/// then answers every request of the group.
fn writer_loop(mut queue: mpsc::Receiver<WriteRequest>) {
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        commit_group(group);
    }
}

fn commit_group(group: Vec<WriteRequest>) {
    // 1. Encode every record into its partition's pending buffer and give it an offset.
    let mut touched: Vec<Arc<Partition>> = Vec::new();
    let mut answers = Vec::with_capacity(group.len());
    for request in group {
        match request {
            WriteRequest::Barrier(reply) => answers.push(Answer::Barrier(reply)),
            WriteRequest::Append {
                partitions,
                records,
                reply,
            } => {
                let mut placed = Vec::with_capacity(records.len());
                for (part, record) in partitions.into_iter().zip(records) {
                    let mut w = part.writer.lock().unwrap_or_else(PoisonError::into_inner);
                    let offset = w.next_offset;
                    if offset.is_multiple_of(INDEX_INTERVAL) {
                        let at = w.len + w.pending.len() as u64;
                        w.pending_index.push((offset, at));
                    }
                    encode_record(&mut w.pending, offset, &record);
                    w.next_offset += 1;
                    drop(w);
                    if !touched.iter().any(|t| Arc::ptr_eq(t, &part)) {
                        touched.push(part.clone());
                    }
                    placed.push((part, offset));
                }
                answers.push(Answer::Append { placed, reply });
            }
        }
    }

    // 2. Write and fsync each touched file; publish the new durable end to readers.
    let mut failed: Vec<(Arc<Partition>, io::ErrorKind, String)> = Vec::new();
    for part in &touched {
        let mut w = part.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let pending = std::mem::take(&mut w.pending);
        let new_index = std::mem::take(&mut w.pending_index);
        let outcome = w.file.write_all(&pending).and_then(|()| w.file.sync_data());
        match outcome {
            Ok(()) => {
                w.len += pending.len() as u64;
                part.index
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(new_index);
                part.durable_end.send_replace(w.next_offset);
            }
            Err(e) => {
                tracing::error!(file = %part.path.display(), error = %e, "append failed; rolling back the batch");
                let durable = *part.durable_end.borrow();
                let _ = w.file.set_len(w.len);
                w.next_offset = durable;
                failed.push((part.clone(), e.kind(), e.to_string()));
            }
        }
    }

    // 3. Answer.
    for answer in answers {
        match answer {
            Answer::Barrier(reply) => {
                let _ = reply.send(());
            }
            Answer::Append { placed, reply } => {
                let results = placed
                    .into_iter()
                    .map(
                        |(part, offset)| match failed.iter().find(|f| Arc::ptr_eq(&f.0, &part)) {
                            Some((_, kind, msg)) => Err(LogError::Io {
                                action: format!("appending to {}", part.path.display()),
                                source: io::Error::new(*kind, msg.clone()),
                            }),
                            None => Ok(Appended {
                                partition: part.number,
                                offset,
                            }),
                        },
                    )
                    .collect();
                let _ = reply.send(results);
            }
        }
    }
}

enum Answer {
    Barrier(oneshot::Sender<()>),
    Append {
        placed: Vec<(Arc<Partition>, u64)>,
        reply: oneshot::Sender<Vec<Result<Appended, LogError>>>,
    },
}

fn encoded_len(r: &OutgoingRecord) -> usize {
    FRAME_HEADER
        + 8
        + 8
        + 4
        + r.key.len()
        + 4
        + r.payload.len()
        + 2
        + r.headers
            .iter()
            .map(|h| 2 + h.name.len() + 4 + h.value.len())
            .sum::<usize>()
}

fn encode_record(out: &mut Vec<u8>, offset: u64, r: &OutgoingRecord) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&r.timestamp_ms.to_le_bytes());
    out.extend_from_slice(&(r.key.len() as u32).to_le_bytes());
    out.extend_from_slice(&r.key);
    out.extend_from_slice(&(r.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&r.payload);
    out.extend_from_slice(&(r.headers.len() as u16).to_le_bytes());
    for h in &r.headers {
        out.extend_from_slice(&(h.name.len() as u16).to_le_bytes());
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(&(h.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&h.value);
    }
    let body_len = (out.len() - start - FRAME_HEADER) as u32;
    let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads one frame: `Ok(None)` at a clean end of file, an error for a short or
/// mismatching frame.
fn read_frame(reader: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; FRAME_HEADER];
    let mut got = 0;
    while got < FRAME_HEADER {
        match reader.read(&mut header[got..])? {
            0 if got == 0 => return Ok(None),
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "short frame header",
                ));
            }
            n => got += n,
        }
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame length out of range",
        ));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    if crc32fast::hash(&body) != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "checksum mismatch",
        ));
    }
    Ok(Some(body))
}

fn decode_body(body: &[u8]) -> Option<Record> {
    let mut cur = Cursor { buf: body };
    let offset = u64::from_le_bytes(cur.take(8)?.try_into().ok()?);
    let timestamp_ms = i64::from_le_bytes(cur.take(8)?.try_into().ok()?);
    let key_len = cur.u32()? as usize;
    let key = cur.take(key_len)?.to_vec();
    let payload_len = cur.u32()? as usize;
    let payload = cur.take(payload_len)?.to_vec();
    let header_count = u16::from_le_bytes(cur.take(2)?.try_into().ok()?);
    let mut headers = Vec::with_capacity(header_count as usize);
    for _ in 0..header_count {
        let name_len = u16::from_le_bytes(cur.take(2)?.try_into().ok()?) as usize;
        let name = String::from_utf8(cur.take(name_len)?.to_vec()).ok()?;
        let value_len = cur.u32()? as usize;
        let value = cur.take(value_len)?.to_vec();
        headers.push(Header { name, value });
    }
    if !cur.buf.is_empty() {
        return None;
    }
    Some(Record {
        partition: 0,
        offset,
        timestamp_ms,
        key,
        payload,
        headers,
    })
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, payload: &str) -> OutgoingRecord {
        OutgoingRecord {
            key: key.as_bytes().to_vec(),
            payload: payload.as_bytes().to_vec(),
            headers: vec![Header::new("content-type", "text/plain")],
            timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, &record("k", "v"));
        assert_eq!(buf.len(), encoded_len(&record("k", "v")));
        let body = read_frame(&mut buf.as_slice())
            .expect("frame")
            .expect("some");
        let r = decode_body(&body).expect("decodes");
        assert_eq!(
            (r.offset, r.key, r.payload),
            (7, b"k".to_vec(), b"v".to_vec())
        );
        assert_eq!(r.headers, vec![Header::new("content-type", "text/plain")]);
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 0, &record("k", "payload"));
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert!(read_frame(&mut buf.as_slice()).is_err());
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off_and_writing_resumes() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = EmbeddedLog::open(dir.path()).expect("open");
            log.ensure_topic("t", 1).await.expect("topic");
            for r in log
                .append(
                    "t",
                    (0..10).map(|i| record("k", &format!("v{i}"))).collect(),
                )
                .await
            {
                r.expect("appended");
            }
        }
        // A crash in the middle of a write leaves half a frame at the end of the file.
        let path = dir.path().join("t").join("0.log");
        let mut torn = Vec::new();
        encode_record(&mut torn, 10, &record("k", "never acknowledged"));
        torn.truncate(torn.len() / 2);
        OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open")
            .write_all(&torn)
            .expect("write");

        let log = EmbeddedLog::open(dir.path()).expect("reopen");
        assert_eq!(log.end_offset("t", 0).await.expect("end"), 10);
        let appended = log.append("t", vec![record("k", "v10")]).await;
        assert_eq!(appended[0].as_ref().expect("appended").offset, 10);
        let all = log
            .read("t", 0, 0, 100, Duration::ZERO)
            .await
            .expect("read");
        let payloads: Vec<String> = all
            .iter()
            .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            .collect();
        assert_eq!(
            payloads,
            (0..=10).map(|i| format!("v{i}")).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = EmbeddedLog::open(dir.path()).expect("open");
        // Locks are per open file description, so a second open in-process conflicts too.
        assert!(matches!(
            EmbeddedLog::open(dir.path()),
            Err(LogError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn the_sparse_index_finds_records_far_into_a_partition() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path()).expect("open");
        log.ensure_topic("t", 1).await.expect("topic");
        let n = INDEX_INTERVAL * 3 + 17;
        for r in log
            .append("t", (0..n).map(|i| record("k", &i.to_string())).collect())
            .await
        {
            r.expect("appended");
        }
        for from in [
            0,
            1,
            INDEX_INTERVAL - 1,
            INDEX_INTERVAL,
            INDEX_INTERVAL * 2 + 5,
            n - 1,
        ] {
            let got = log
                .read("t", 0, from, 2, Duration::ZERO)
                .await
                .expect("read");
            assert_eq!(got[0].offset, from);
            assert_eq!(got[0].payload, from.to_string().into_bytes());
        }
    }
}
