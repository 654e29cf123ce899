//! Protocol 1.1 through Redis, on the server side: telling the workers which jobs were
//! cancelled (one task writing the circle's cancel stream), and handing the lines that
//! workers stream back to each job's [`OutputSink`]: a reply entry brings a fast printer's
//! lines by the hundred, so those its sink has no room for wait in a bounded backlog, and
//! the job's answer waits behind them.
//!
//! Plain jobs cost one atomic load here (in [`Dispatch::answer`]): a cancel notice is
//! written only when a caller raises its flag, and only streamed jobs have a sink.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::MAX_BATCH;
use super::state::Dispatch;
use crate::redis::connection::SharedConnection;
use crate::redis::wire;
use crate::{ExecutorError, Offer, OutputSink, ScriptOutput};

/// Bytes of lines one streamed job may have waiting for its sink on this server. Past it
/// the job's later lines are dropped (its answer still carries them all): what a client
/// that reads slowly can make the server hold.
pub(crate) const MAX_BACKLOG_BYTES: usize = 1024 * 1024;

/// How long a job's answer may wait for its lines to be taken by a slow client before the
/// lines still waiting are dropped and the answer goes.
const MAX_ANSWER_HOLD: Duration = Duration::from_secs(2);

/// How often waiting lines are offered again to a full sink.
const FLUSH_RETRY: Duration = Duration::from_millis(2);

/// Cancel notices kept in the circle's cancel stream (`MAXLEN ~`). Workers read it as it
/// grows, so only a worker starting up reads back this far; cancels are rare next to jobs,
/// and a notice older than its job's deadline is worthless anyway.
const MAX_CANCEL_BACKLOG: usize = 1_000;

/// A job whose caller raised its cancel flag before it was answered.
#[derive(Debug, Clone, Copy)]
pub(super) struct CancelRequest {
    pub(super) sequence: u64,
    pub(super) deadline_unix_ms: u64,
}

/// Writes the cancel notices of this server, batched: everything raised while the previous
/// write was in flight goes in one entry. Best effort: a notice that cannot be written only
/// lets a cancelled script run on (its caller was answered `-32006` already), so a failure
/// is logged and not retried.
pub(super) async fn cancel_loop(
    dispatch: Arc<Dispatch>,
    mut requests: mpsc::Receiver<CancelRequest>,
    connection: Arc<SharedConnection>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut value = Vec::new();
    loop {
        if requests.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        value.clear();
        for request in &batch {
            wire::encode_cancel(&mut value, request.sequence, request.deadline_unix_ms);
        }
        let mut command = ::redis::cmd("XADD");
        command
            .arg(&dispatch.cancel_key)
            .arg("MAXLEN")
            .arg("~")
            .arg(MAX_CANCEL_BACKLOG)
            .arg("*");
        for (name, text) in wire::cancel_header(&dispatch.reply_key) {
            command.arg(name).arg(text);
        }
        command.arg(wire::CANCEL_FIELD).arg(&value);
        match connection.get().await {
            Ok((mut redis, generation)) => {
                if let Err(err) = command.query_async::<()>(&mut redis).await {
                    connection.report(generation, &err).await;
                    tracing::warn!(error = %err, jobs = batch.len(), "could not tell the workers about cancelled scripts");
                }
            }
            Err(reason) => {
                tracing::warn!(%reason, jobs = batch.len(), "could not tell the workers about cancelled scripts");
            }
        }
        batch.clear();
    }
}

/// What a job answers.
type JobResult = Result<ScriptOutput, ExecutorError>;

/// A streamed job's sink, and the lines it had no room for yet.
pub(super) struct Stream {
    sink: OutputSink,
    /// Lines waiting for room in the sink, oldest first: the reply reader hands over a
    /// whole batch of a fast printer's lines at once, far more than a sink takes.
    backlog: VecDeque<String>,
    backlog_bytes: usize,
    /// The rest of the job's lines are dropped (its backlog overflowed, or its answer could
    /// wait no longer).
    lossy: bool,
    /// The job's answer, held back until its backlog is handed over, so no line of a job
    /// follows its answer; and since when.
    held_answer: Option<(JobResult, Instant)>,
}

impl Stream {
    pub(super) fn new(sink: OutputSink) -> Self {
        Stream {
            sink,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            lossy: false,
            held_answer: None,
        }
    }

    /// Drops the backlog and every later line of the job.
    fn give_up(&mut self, sequence: u64, why: &str) {
        self.backlog.clear();
        self.backlog_bytes = 0;
        if !self.lossy {
            self.lossy = true;
            tracing::warn!(
                job = sequence,
                "{why}; the rest of its lines come with the answer only"
            );
        }
    }

    /// Hands the sink what it takes of the backlog.
    fn flush(&mut self) {
        while let Some(line) = self.backlog.front() {
            match self.sink.offer(line) {
                Offer::Taken => {
                    self.backlog_bytes -= line.len();
                    self.backlog.pop_front();
                }
                Offer::Full => return,
                Offer::Closed => {
                    self.backlog.clear();
                    self.backlog_bytes = 0;
                    self.lossy = true;
                }
            }
        }
    }
}

impl Dispatch {
    /// Registers the sink of streamed job `sequence`.
    pub(super) fn stream_to(&self, sequence: u64, sink: OutputSink) {
        self.streams().insert(sequence, Stream::new(sink));
    }

    /// Hands a line a worker streamed for job `sequence` to its sink, or to its backlog
    /// when the sink is full or lines wait before it.
    ///
    /// The reply reader serves every job of this server, so it never waits for one
    /// client: a job's backlog is capped at [`MAX_BACKLOG_BYTES`], past which the job's
    /// later lines are dropped (logged; the answer still carries every line).
    pub(super) fn line(&self, sequence: u64, line: &str) {
        let mut streams = self.streams();
        let Some(stream) = streams.get_mut(&sequence) else {
            // Answered, cancelled, or not streamed: nobody wants it.
            return;
        };
        if stream.lossy {
            return;
        }
        if stream.backlog.is_empty() {
            match stream.sink.offer(line) {
                Offer::Taken => return,
                Offer::Closed => {
                    streams.remove(&sequence);
                    return;
                }
                Offer::Full => {}
            }
        }
        if stream.backlog_bytes + line.len() > MAX_BACKLOG_BYTES {
            stream.give_up(
                sequence,
                "a client reads its streamed lines much slower than its remote script prints them",
            );
            return;
        }
        stream.backlog_bytes += line.len();
        stream.backlog.push_back(line.to_owned());
        // Set under the lock the flusher clears it under, so it is never cleared while a
        // backlog exists.
        self.backlogged.store(true, Ordering::Release);
        self.backlog_wake.notify_one();
    }

    /// Resolves the caller of job `sequence`, unless lines of the job still wait for its
    /// sink: the answer then waits for them (see [`flush_loop`]).
    pub(super) fn answer(&self, sequence: u64, result: JobResult) {
        // Only the reply reader adds backlogs, and it also calls this: a `false` here
        // means this job has none. So plain jobs never lock `streams`.
        if self.backlogged.load(Ordering::Acquire) {
            let mut streams = self.streams();
            if let Some(stream) = streams.get_mut(&sequence)
                && !stream.backlog.is_empty()
            {
                stream.held_answer = Some((result, Instant::now()));
                return;
            }
        }
        self.deliver(sequence, result);
    }

    /// Hands every backlog what its sink takes; returns the answers whose lines are all
    /// handed over, and whether backlogs remain.
    fn flush_backlogs(&self) -> (Vec<(u64, JobResult)>, bool) {
        let mut answers = Vec::new();
        let mut pending = false;
        let mut streams = self.streams();
        for (&sequence, stream) in streams.iter_mut() {
            stream.flush();
            if let Some((_, since)) = &stream.held_answer
                && !stream.backlog.is_empty()
                && since.elapsed() >= MAX_ANSWER_HOLD
            {
                stream.give_up(sequence, "a client did not take its streamed lines in time");
            }
            if stream.backlog.is_empty() {
                if let Some((result, _)) = stream.held_answer.take() {
                    answers.push((sequence, result));
                }
            } else {
                pending = true;
            }
        }
        if !pending {
            self.backlogged.store(false, Ordering::Release);
        }
        (answers, pending)
    }
}

/// Hands waiting lines to their sinks as they make room, and then the answers held back
/// behind them. Asleep while no line waits.
pub(super) async fn flush_loop(dispatch: Arc<Dispatch>) {
    loop {
        dispatch.backlog_wake.notified().await;
        loop {
            let (answers, pending) = dispatch.flush_backlogs();
            for (sequence, result) in answers {
                dispatch.deliver(sequence, result);
            }
            if !pending {
                break;
            }
            // A sink makes room as its connection writes; no waker tells us when.
            tokio::time::sleep(FLUSH_RETRY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::LineSink;
    use crate::redis::dispatcher::unreachable_executor;

    /// A sink taking as many lines as it has room for.
    #[derive(Clone, Default)]
    struct Room(Arc<Mutex<(usize, Vec<String>)>>);

    impl LineSink for Room {
        fn offer(&self, line: &str) -> Offer {
            let mut room = self.0.lock().unwrap();
            if room.0 == 0 {
                return Offer::Full;
            }
            room.0 -= 1;
            room.1.push(line.to_owned());
            Offer::Taken
        }
    }

    fn output(text: &str) -> JobResult {
        Ok(ScriptOutput {
            output: text.into(),
        })
    }

    #[test]
    fn lines_a_full_sink_cannot_take_wait_in_order_and_the_answer_waits_behind_them() {
        let (runtime, executor) = unreachable_executor();
        let _entered = runtime.enter();
        let dispatch = &executor.dispatch;
        let room = Room::default();
        room.0.lock().unwrap().0 = 2;
        dispatch.stream_to(1, OutputSink::new(room.clone()));
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        dispatch.waiting().insert(1, reply);
        for line in ["a", "b", "c", "d"] {
            dispatch.line(1, line);
        }
        dispatch.answer(1, output("a\nb\nc\nd"));
        assert!(answer.try_recv().is_err(), "held behind c and d");
        assert_eq!(dispatch.flush_backlogs().0.len(), 0);
        room.0.lock().unwrap().0 = 10;
        let (answers, pending) = dispatch.flush_backlogs();
        assert!(!pending);
        assert_eq!(room.0.lock().unwrap().1, ["a", "b", "c", "d"]);
        for (sequence, result) in answers {
            dispatch.deliver(sequence, result);
        }
        assert_eq!(answer.try_recv().unwrap().unwrap().output, "a\nb\nc\nd");

        // A sink that never takes: the backlog stops at its cap, the rest is dropped, and
        // the answer goes at once.
        let stuck = Room::default();
        dispatch.stream_to(2, OutputSink::new(stuck.clone()));
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        dispatch.waiting().insert(2, reply);
        let line = "x".repeat(1_000);
        for _ in 0..(MAX_BACKLOG_BYTES / 1_000 + 10) {
            dispatch.line(2, &line);
        }
        let streams = dispatch.streams();
        assert!(streams[&2].lossy && streams[&2].backlog.is_empty());
        drop(streams);
        dispatch.answer(2, output("late"));
        assert_eq!(answer.try_recv().unwrap().unwrap().output, "late");
        assert!(stuck.0.lock().unwrap().1.is_empty());
    }
}
