//! `churnguard import`: history through purchase-ingest's public API, as a store gateway
//! sends swipes, so an import is validated, keyed and written exactly like live traffic.
//!
//! The file is read in order and cut into batches of `batch_size` swipes, each sent on
//! one StreamSwipes call with `historical: true`; up to `in_flight` batches are sent
//! ahead of their answers, which come back in order, one per batch with a result per
//! swipe. After each answer the state file moves forward ([`crate::state`]), so an
//! import that stops (Ctrl-C, `--max-batches`, a failure) goes on from there when run
//! again, and one that finished sends nothing.
//!
//! Every swipe id is `imp.<source>.<line>`: a line sent twice (a retry, a resumed run
//! after an answer that never came) is the same event to every consumer, which drop the
//! repeat. What is retried:
//! - a swipe rejected with a retriable code (anything but INVALID_ARGUMENT,
//!   FAILED_PRECONDITION and PERMISSION_DENIED: UNAVAILABLE, DEADLINE_EXCEEDED, ...) is
//!   sent again on its own call, with backoff, up to `retries` times, before it counts as
//!   failed. The batches after it are not held back for it, so a retried swipe may land
//!   after a later purchase of its customer (rare: the log was slow or down);
//! - a stream that breaks (the server restarted, a connection reset, no answer within
//!   the answer timeout) is opened again, with backoff, and every unanswered batch is sent
//!   again; after `retries` failures in a row the import stops with an error.

use std::collections::VecDeque;
use std::io::Read as _;
use std::iter::Peekable;
use std::path::{Path, PathBuf};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use churnguard_proto::ingest::v1 as pb;
use indicatif::ProgressBar;
use tokio::sync::mpsc;
use tokio::time::{Duration, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use crate::client::{self, IngestClient};
use crate::error::{CliError, describe};
use crate::input::{self, Row, Rows};
use crate::options::ImportOptions;
use crate::report::ImportReport;
use crate::state::ImportState;
use churnguard_proto::code_name;

/// The first wait before a retry; it doubles up to [`MAX_DELAY`], with jitter.
const FIRST_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Imports `opts.file` as `opts` say, drawing progress on `progress` (pass
/// `ProgressBar::hidden()` for none). `stop` ends it early and cleanly: no batch is sent
/// after it is cancelled, the ones in flight are answered and recorded, and the report
/// says the file was not read to its end.
///
/// Bad lines are counted in the report, never an error. An error means the import could
/// not go on (the file or the state could not be read or written, purchase-ingest
/// refused the stream or stayed unreachable); what was answered before it is recorded in
/// the state file all the same.
pub async fn import(
    opts: &ImportOptions,
    progress: &ProgressBar,
    stop: CancellationToken,
) -> Result<ImportReport, CliError> {
    if opts.batch_size == 0 || opts.in_flight == 0 {
        return Err(CliError::Usage(
            "--batch-size and --in-flight must be at least 1".into(),
        ));
    }
    let source = opts.source_name()?;
    let state_path = opts.state_path();
    let file_size = std::fs::metadata(&opts.file)
        .map_err(|source| CliError::ReadInput {
            path: opts.file.clone(),
            source,
        })?
        .len();
    let state = ImportState::resume(
        ImportState::load(&state_path)?,
        &source,
        file_size,
        &state_path,
    )?;
    // The CSV header is checked here, before anything is written or sent.
    let rows = input::open(opts)?;
    // Writing the state now shows that it can be written, before a swipe is sent.
    state.save(&state_path)?;
    if !progress.is_hidden() {
        progress.set_length(count_lines(&opts.file)?);
        progress.set_position(state.lines_done);
        // The rate and the ETA count this run's lines, not the jump to where it resumes.
        progress.reset_eta();
        // Redrawn between answers too, so the rate and the ETA keep moving.
        progress.enable_steady_tick(Duration::from_millis(250));
    }

    let mut run = Run {
        opts,
        rows: rows.peekable(),
        skip_through: state.lines_done,
        report: ImportReport {
            file: opts.file.clone(),
            source: source.clone(),
            state_path: state_path.clone(),
            lines_done: state.lines_done,
            ..ImportReport::default()
        },
        source,
        state,
        state_path,
        progress,
        stop,
        client: None,
        held_at: None,
        input_over: false,
        batches_sent: 0,
        stream_failures: 0,
        stream_backoff: backoff(opts.retries),
    };
    run.all().await?;
    let mut report = run.report;
    report.lines_done = run.state.lines_done;
    report.resend_needed = run.held_at.is_some();
    Ok(report)
}

/// A swipe sent and not yet settled, with the line it came from.
#[derive(Debug)]
struct Pending {
    line: u64,
    text: String,
    swipe: pb::Swipe,
}

/// A batch of swipes, and the last line of the file it covers (the lines refused here
/// and those already imported included): once it and every batch before it are
/// answered, the file is done up to there.
#[derive(Debug)]
struct Batch {
    swipes: Vec<Pending>,
    last_line: u64,
}

impl Batch {
    fn request(&self) -> pb::StreamSwipesRequest {
        pb::StreamSwipesRequest {
            swipes: self.swipes.iter().map(|p| p.swipe.clone()).collect(),
            historical: true,
        }
    }

    /// A batch with no swipe to send (its lines were all refused here, or done before)
    /// is done as soon as the batches before it are.
    fn is_sent(&self) -> bool {
        !self.swipes.is_empty()
    }
}

/// How a stream ended before every batch was answered.
#[derive(Debug)]
enum StreamFailure {
    /// Worth opening the stream again: the server was unreachable, restarted, slow.
    Retriable(Status),
    /// The import cannot go on.
    Fatal(CliError),
}

impl From<CliError> for StreamFailure {
    fn from(e: CliError) -> Self {
        StreamFailure::Fatal(e)
    }
}

/// What a rejection means for its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The line itself is bad (INVALID_ARGUMENT): sending it again changes nothing, so
    /// it is done.
    Bad,
    /// The deployment or the caller refuses imports (FAILED_PRECONDITION: imports are
    /// off; PERMISSION_DENIED: this token may not import). Not retried now, but not done
    /// either: once imports are allowed, running the import again sends it.
    Refused,
    /// Anything else (UNAVAILABLE, DEADLINE_EXCEEDED, ...): try again.
    Retry,
}

fn verdict(code: &str) -> Verdict {
    match code {
        "INVALID_ARGUMENT" => Verdict::Bad,
        "FAILED_PRECONDITION" | "PERMISSION_DENIED" => Verdict::Refused,
        _ => Verdict::Retry,
    }
}

/// Whether a status that ended a whole stream is worth opening it again for.
fn stream_retriable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled
            // A connection reset mid-stream can surface as either of these.
            | Code::Unknown
            | Code::Internal
    )
}

/// The reason a rejection is counted under: its bad fields with what is wrong with them
/// when it names fields, else its code (the message is shown with it).
fn reason_of(rejected: &pb::Rejected) -> (String, Option<String>) {
    if rejected.field_violations.is_empty() {
        (rejected.code.clone(), Some(rejected.message.clone()))
    } else {
        let fields: Vec<String> = rejected
            .field_violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect();
        (fields.join("; "), None)
    }
}

/// The delays between tries: [`FIRST_DELAY`], doubling up to [`MAX_DELAY`], with
/// jitter, `retries` of them.
fn backoff(retries: u32) -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(FIRST_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(retries as usize)
        .build()
}

/// One import under way.
struct Run<'a> {
    opts: &'a ImportOptions,
    source: String,
    rows: Peekable<Rows>,
    /// Lines up to this one were done by earlier runs.
    skip_through: u64,
    state: ImportState,
    state_path: PathBuf,
    report: ImportReport,
    progress: &'a ProgressBar,
    stop: CancellationToken,
    /// Made on the first batch to send: a run with nothing to send connects to nothing.
    client: Option<IngestClient>,
    /// The first line that is not done for good (refused by the deployment, or failed):
    /// the state stays before it for the rest of the run.
    held_at: Option<u64>,
    /// No more batches: the file is read, or the import was told to stop.
    input_over: bool,
    batches_sent: u64,
    /// Streams that failed since the last answer.
    stream_failures: u32,
    stream_backoff: ExponentialBackoff,
}

impl Run<'_> {
    /// Sends every batch and settles every answer, opening the stream again as often as
    /// it breaks (within the retries).
    async fn all(&mut self) -> Result<(), CliError> {
        let mut pending = VecDeque::new();
        loop {
            match self.stream(&mut pending).await {
                Ok(()) => return Ok(()),
                Err(StreamFailure::Fatal(e)) => return Err(e),
                Err(StreamFailure::Retriable(status)) => {
                    self.stream_failures += 1;
                    self.report.reconnects += 1;
                    let Some(delay) = self.stream_backoff.next() else {
                        return Err(CliError::Unreachable {
                            url: self.opts.connection.url.clone(),
                            attempts: self.stream_failures,
                            lines_done: self.state.lines_done,
                            status,
                        });
                    };
                    self.progress.set_message(format!(
                        "{}; trying again in {delay:.1?}",
                        describe(&status)
                    ));
                    // Told to stop while the server is away: what was answered is
                    // recorded, and the batches still unanswered are the next run's.
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.stop.cancelled() => {
                            self.report.reached_end = false;
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// One StreamSwipes call: sends the batches still unanswered (those of a stream that
    /// broke) and then new ones, keeping at most `in_flight` unanswered, and settles the
    /// answers in order. `Ok` once the input is over and every batch is settled.
    async fn stream(&mut self, pending: &mut VecDeque<Batch>) -> Result<(), StreamFailure> {
        // Batches the file has that need no answer (all done, all refused here) are
        // settled without a connection.
        self.fill(pending)?;
        self.settle_unsent(pending)?;
        if pending.is_empty() {
            return Ok(());
        }
        let mut client = match &self.client {
            Some(client) => client.clone(),
            None => self
                .client
                .insert(client::connect(&self.opts.connection)?)
                .clone(),
        };
        // The channel holds every batch unanswered, so sending into it never waits.
        let (requests, outgoing) = mpsc::channel(self.opts.in_flight);
        for batch in pending.iter().filter(|b| b.is_sent()) {
            // Full only if the call is already gone; its answer stream says why.
            let _ = requests.try_send(batch.request());
        }
        let answer_timeout = self.opts.connection.answer_timeout;
        let call = client.stream_swipes(ReceiverStream::new(outgoing));
        let mut answers = match timeout(answer_timeout, call).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(self.stream_ended(status)),
            Err(_) => return Err(StreamFailure::Retriable(no_answer(answer_timeout))),
        };
        loop {
            let known = pending.len();
            self.fill(pending)?;
            for batch in pending.range(known..).filter(|b| b.is_sent()) {
                let _ = requests.try_send(batch.request());
            }
            self.settle_unsent(pending)?;
            if pending.is_empty() {
                return Ok(());
            }
            let answer = match timeout(answer_timeout, answers.message()).await {
                Ok(Ok(Some(answer))) => answer,
                Ok(Ok(None)) => {
                    return Err(StreamFailure::Retriable(Status::unavailable(
                        "the stream ended with batches unanswered",
                    )));
                }
                Ok(Err(status)) => return Err(self.stream_ended(status)),
                Err(_) => return Err(StreamFailure::Retriable(no_answer(answer_timeout))),
            };
            self.stream_failures = 0;
            self.stream_backoff = backoff(self.opts.retries);
            let Some(batch) = pending.pop_front() else {
                return Err(CliError::Protocol("an answer with no batch sent".into()).into());
            };
            self.settle(batch, answer.results).await?;
        }
    }

    /// Reads batches until `in_flight` of them are to be answered, or the input is over.
    fn fill(&mut self, pending: &mut VecDeque<Batch>) -> Result<(), CliError> {
        while pending.iter().filter(|b| b.is_sent()).count() < self.opts.in_flight {
            let Some(batch) = self.next_batch()? else {
                break;
            };
            if batch.is_sent() {
                self.batches_sent += 1;
            }
            pending.push_back(batch);
        }
        Ok(())
    }

    /// The next batch: rows until `batch_size` swipes or the end of the file. Lines done
    /// by an earlier run are counted and passed over; lines that cannot be read are
    /// refused here and counted. `None` once the file is read, or the import told to stop.
    fn next_batch(&mut self) -> Result<Option<Batch>, CliError> {
        if self.input_over {
            return Ok(None);
        }
        let limit_reached = self
            .opts
            .max_batches
            .is_some_and(|max| self.batches_sent >= max);
        if self.stop.is_cancelled() || limit_reached {
            self.input_over = true;
            self.report.reached_end = self.rows.peek().is_none();
            return Ok(None);
        }
        let mut batch = Batch {
            swipes: Vec::with_capacity(self.opts.batch_size),
            last_line: self.state.lines_done,
        };
        while batch.swipes.len() < self.opts.batch_size {
            let Some(row) = self.rows.next() else {
                self.input_over = true;
                self.report.reached_end = true;
                break;
            };
            let Row {
                line,
                text,
                purchase,
            } = row?;
            self.report.lines += 1;
            batch.last_line = line;
            if line <= self.skip_through {
                self.report.already_imported += 1;
                continue;
            }
            match purchase {
                Ok(purchase) => {
                    let swipe = purchase.into_swipe(format!("imp.{}.{line}", self.source));
                    batch.swipes.push(Pending { line, text, swipe });
                }
                Err(reject) => {
                    self.report.rejected += 1;
                    self.report.refuse(line, || text, &reject.to_string(), None);
                }
            }
        }
        Ok(Some(batch))
    }

    /// Settles the batches at the front that were never sent.
    fn settle_unsent(&mut self, pending: &mut VecDeque<Batch>) -> Result<(), CliError> {
        while pending.front().is_some_and(|b| !b.is_sent()) {
            if let Some(batch) = pending.pop_front() {
                self.batch_done(batch.last_line)?;
            }
        }
        Ok(())
    }

    /// Counts a batch's answer: each accepted and finally rejected swipe, and, after
    /// retrying them, the ones rejected with a retriable code. Then moves the state.
    async fn settle(
        &mut self,
        batch: Batch,
        results: Vec<pb::SwipeResult>,
    ) -> Result<(), StreamFailure> {
        if results.len() != batch.swipes.len() {
            return Err(CliError::Protocol(format!(
                "{} results for a batch of {} swipes",
                results.len(),
                batch.swipes.len()
            ))
            .into());
        }
        let mut retry = Vec::new();
        for (i, result) in results.into_iter().enumerate() {
            let pending = &batch.swipes[i];
            if let Some(rejected) = self.result(pending, result)? {
                retry.push((i, rejected));
            }
        }
        let mut tries = 1;
        let mut delays = backoff(self.opts.retries);
        while !retry.is_empty() {
            let Some(delay) = delays.next() else {
                break;
            };
            tokio::time::sleep(delay).await;
            tries += 1;
            retry = self.retry(&batch, retry).await?;
        }
        for (i, rejected) in retry {
            let pending = &batch.swipes[i];
            self.report.failed += 1;
            self.report.refuse(
                pending.line,
                || pending.text.clone(),
                &format!("{} after {tries} tries", rejected.code),
                Some(&rejected.message),
            );
            self.hold(pending.line);
        }
        self.batch_done(batch.last_line)?;
        Ok(())
    }

    /// Sends the swipes of `batch` at `retry` again, on a call of their own, and returns
    /// those still rejected with a retriable code. A call that fails as a whole leaves
    /// them all to retry, with its status as their reason.
    async fn retry(
        &mut self,
        batch: &Batch,
        retry: Vec<(usize, pb::Rejected)>,
    ) -> Result<Vec<(usize, pb::Rejected)>, StreamFailure> {
        let request = pb::StreamSwipesRequest {
            swipes: retry
                .iter()
                .map(|(i, _)| batch.swipes[*i].swipe.clone())
                .collect(),
            historical: true,
        };
        let results = match self.send_alone(request).await {
            Ok(results) => results,
            Err(status) if stream_retriable(status.code()) => {
                let as_rejection = pb::Rejected {
                    code: code_name(status.code()).into(),
                    message: status.message().into(),
                    field_violations: Vec::new(),
                };
                return Ok(retry
                    .into_iter()
                    .map(|(i, _)| (i, as_rejection.clone()))
                    .collect());
            }
            Err(status) => return Err(self.stream_ended(status)),
        };
        if results.len() != retry.len() {
            return Err(CliError::Protocol(format!(
                "{} results for a retry of {} swipes",
                results.len(),
                retry.len()
            ))
            .into());
        }
        let mut still = Vec::new();
        for ((i, _), result) in retry.into_iter().zip(results) {
            if let Some(rejected) = self.result(&batch.swipes[i], result)? {
                still.push((i, rejected));
            }
        }
        Ok(still)
    }

    /// One batch on a call of its own, and its answer.
    async fn send_alone(
        &mut self,
        request: pb::StreamSwipesRequest,
    ) -> Result<Vec<pb::SwipeResult>, Status> {
        let Some(client) = &self.client else {
            return Err(Status::internal("no client"));
        };
        let answer_timeout = self.opts.connection.answer_timeout;
        let exchange = async {
            let mut answers = client
                .clone()
                .stream_swipes(tokio_stream::once(request))
                .await?
                .into_inner();
            match answers.message().await? {
                Some(answer) => Ok(answer.results),
                None => Err(Status::unavailable("the stream ended unanswered")),
            }
        };
        timeout(answer_timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(no_answer(answer_timeout)))
    }

    /// Counts one swipe's result; returns its rejection if it is to be retried.
    fn result(
        &mut self,
        pending: &Pending,
        result: pb::SwipeResult,
    ) -> Result<Option<pb::Rejected>, CliError> {
        if result.swipe_id != pending.swipe.swipe_id {
            return Err(CliError::Protocol(format!(
                "the result for {} names {}",
                pending.swipe.swipe_id, result.swipe_id
            )));
        }
        let rejected = match result.outcome {
            Some(pb::swipe_result::Outcome::Accepted(_)) => {
                self.report.accepted += 1;
                return Ok(None);
            }
            Some(pb::swipe_result::Outcome::Rejected(rejected)) => rejected,
            None => {
                return Err(CliError::Protocol(format!(
                    "the result for {} is neither accepted nor rejected",
                    pending.swipe.swipe_id
                )));
            }
        };
        let verdict = verdict(&rejected.code);
        if verdict == Verdict::Retry {
            return Ok(Some(rejected));
        }
        self.report.rejected += 1;
        let (reason, message) = reason_of(&rejected);
        self.report.refuse(
            pending.line,
            || pending.text.clone(),
            &reason,
            message.as_deref(),
        );
        if verdict == Verdict::Refused {
            self.hold(pending.line);
        }
        Ok(None)
    }

    /// Keeps the state before `line`, which is not done.
    fn hold(&mut self, line: u64) {
        self.held_at = Some(self.held_at.map_or(line, |held| held.min(line)));
    }

    /// A batch is settled, and every one before it: the file is done up to its last
    /// line, or up to the first line held.
    fn batch_done(&mut self, last_line: u64) -> Result<(), CliError> {
        let done = match self.held_at {
            Some(held) => last_line.min(held - 1),
            None => last_line,
        };
        if done > self.state.lines_done {
            self.state.lines_done = done;
            self.state.save(&self.state_path)?;
        }
        self.progress.set_position(last_line);
        self.progress.set_message(format!(
            "{} accepted, {} rejected, {} failed",
            self.report.accepted, self.report.rejected, self.report.failed
        ));
        Ok(())
    }

    /// What a status that ended a stream means for the import.
    fn stream_ended(&self, status: Status) -> StreamFailure {
        if stream_retriable(status.code()) {
            return StreamFailure::Retriable(status);
        }
        let hint = match status.code() {
            Code::InvalidArgument if status.message().contains("swipes") => {
                " (a smaller --batch-size fits the server's limits.max_batch_swipes)"
            }
            Code::Unauthenticated => " (give a token with --token or CHURNGUARD_TOKEN)",
            Code::PermissionDenied => " (imports take a service token)",
            _ => "",
        };
        StreamFailure::Fatal(CliError::Refused {
            status,
            hint,
            lines_done: self.state.lines_done,
        })
    }
}

fn no_answer(after: Duration) -> Status {
    Status::deadline_exceeded(format!("no answer within {after:?}"))
}

/// The file's lines, for the progress bar's length: one quick pass over the bytes.
fn count_lines(path: &Path) -> Result<u64, CliError> {
    let failed = |source| CliError::ReadInput {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(failed)?;
    let mut buf = vec![0_u8; 64 * 1024];
    let (mut lines, mut last) = (0_u64, b'\n');
    loop {
        let n = file.read(&mut buf).map_err(failed)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    // A last line without a line end is a line too.
    Ok(lines + u64::from(last != b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bad_swipes_are_done_without_retrying() {
        assert_eq!(verdict("INVALID_ARGUMENT"), Verdict::Bad);
        assert_eq!(verdict("FAILED_PRECONDITION"), Verdict::Refused);
        assert_eq!(verdict("PERMISSION_DENIED"), Verdict::Refused);
        for code in [
            "UNAVAILABLE",
            "DEADLINE_EXCEEDED",
            "RESOURCE_EXHAUSTED",
            "INTERNAL",
        ] {
            assert_eq!(verdict(code), Verdict::Retry, "{code}");
        }
    }

    #[test]
    fn rejections_count_under_their_fields_or_their_code() {
        let bad = pb::Rejected {
            code: "INVALID_ARGUMENT".into(),
            message: "invalid swipe".into(),
            field_violations: vec![
                pb::FieldViolation {
                    field: "amount.currency".into(),
                    description: "must be ...".into(),
                },
                pb::FieldViolation {
                    field: "item_count".into(),
                    description: "must be at least 1".into(),
                },
            ],
        };
        assert_eq!(
            reason_of(&bad),
            (
                "amount.currency: must be ...; item_count: must be at least 1".to_owned(),
                None
            )
        );
        let off = pb::Rejected {
            code: "FAILED_PRECONDITION".into(),
            message: "no imports".into(),
            field_violations: Vec::new(),
        };
        assert_eq!(
            reason_of(&off),
            (
                "FAILED_PRECONDITION".to_owned(),
                Some("no imports".to_owned())
            )
        );
    }

    #[test]
    fn lines_are_counted_with_or_without_a_last_line_end() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        for (text, lines) in [("", 0), ("a\n", 1), ("a\nb", 2), ("a\r\nb\r\n", 2)] {
            std::fs::write(&path, text).expect("written");
            assert_eq!(count_lines(&path).expect("counted"), lines, "{text:?}");
        }
    }
}
