//! Protocol 1.1 through Redis, on the server side: telling the workers which jobs were
//! cancelled (one task writing the circle's cancel stream), and handing the lines that
//! workers stream back to each job's [`OutputSink`].
//!
//! Plain jobs (no cancel raised, no sink) never reach this file: a cancel notice is written
//! only when a caller raises its flag, and only streamed jobs have a sink here.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::MAX_BATCH;
use super::state::Dispatch;
use crate::redis::connection::SharedConnection;
use crate::redis::wire;
use crate::{Offer, OutputSink};

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

impl Dispatch {
    /// Registers the sink of streamed job `sequence`.
    pub(super) fn stream_to(&self, sequence: u64, sink: OutputSink) {
        self.streams().insert(sequence, sink);
    }

    /// Hands a line a worker streamed for job `sequence` to its sink.
    ///
    /// The reply reader serves every job of this server, so it never waits for one
    /// client: a sink that is full (its client reads slower than its script prints) loses
    /// this line and every later one of the job, which is logged. The answer still
    /// carries every line. So a slow client costs at most its sink's capacity in memory.
    pub(super) fn line(&self, sequence: u64, line: &str) {
        let mut streams = self.streams();
        let Some(sink) = streams.get(&sequence) else {
            // Answered, cancelled, or not streamed: nobody wants it.
            return;
        };
        match sink.offer(line) {
            Offer::Taken => {}
            Offer::Closed => {
                streams.remove(&sequence);
            }
            Offer::Full => {
                streams.remove(&sequence);
                tracing::warn!(
                    job = sequence,
                    "a client reads its streamed lines slower than its remote script prints them; the rest of its lines come with the answer only"
                );
            }
        }
    }
}
