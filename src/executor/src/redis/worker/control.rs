//! Protocol 1.1 through Redis, on the worker side: reading the circle's cancel stream and
//! raising the [`Cancel`](crate::Cancel) of the job it names (held, running, or not taken yet), and
//! [`RemoteLines`], the sink that sends a streamed job's lines back to its server.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ::redis::Value;
use ::redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use super::{Outgoing, Worker};
use crate::redis::connection::{connection_config, is_connection_error};
use crate::redis::endpoint::Endpoint;
use crate::redis::wire::{self, CancelNotice};
use crate::{LineSink, Offer};

/// How long one `XREAD BLOCK` of the cancel stream waits before it is issued again.
const CANCEL_BLOCK: Duration = Duration::from_secs(1);

/// Lines of this worker's streamed jobs read from their scripts but not yet written to
/// Redis. Past it a printing script waits at its `print` (within its run time) until the
/// answer writer catches up, so a worker's memory does not grow with a fast printer.
pub(super) const MAX_UNSENT_LINES: usize = 4_096;

/// Cancel notices for jobs this worker may not hold yet: the job may still be in the job
/// stream, or in an entry another worker will hand over. Kept until the job's deadline.
#[derive(Default)]
pub(super) struct CancelledJobs {
    /// By reply stream, then job id: the job's deadline (Unix milliseconds).
    by_server: HashMap<Arc<str>, HashMap<u64, u64>>,
}

impl CancelledJobs {
    fn insert(&mut self, notice: &CancelNotice) {
        self.by_server
            .entry(Arc::clone(&notice.reply_to))
            .or_default()
            .insert(notice.job_id, notice.deadline_unix_ms);
    }

    /// Whether job `job_id` of `reply_to` was cancelled (forgotten once asked: a job
    /// starts once per worker).
    pub(super) fn take(&mut self, reply_to: &str, job_id: u64) -> bool {
        self.by_server
            .get_mut(reply_to)
            .and_then(|jobs| jobs.remove(&job_id))
            .is_some()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_server.is_empty()
    }

    /// Forgets the notices whose callers stopped waiting anyway.
    fn prune(&mut self, now_unix_ms: u64) {
        self.by_server.retain(|_, jobs| {
            jobs.retain(|_, deadline| *deadline > now_unix_ms);
            !jobs.is_empty()
        });
    }
}

impl Worker {
    /// Reads the circle's cancel stream (every worker all of it, no group) for as long as
    /// the worker runs, reconnecting when the connection breaks, and stops each job named
    /// there: at once if this worker holds it, when it takes it otherwise.
    pub(super) async fn cancel_loop(self: Arc<Self>, endpoint: Arc<Endpoint>) {
        // From the start: a worker started after a cancel must still know of it when it
        // takes the job. The stream is capped, and notices past their deadline are skipped.
        let mut last_id = "0-0".to_owned();
        let config = connection_config(
            self.config.connect_timeout,
            CANCEL_BLOCK + self.config.command_timeout,
        );
        let mut connection: Option<MultiplexedConnection> = None;
        let mut last_prune = Instant::now();
        loop {
            let redis = match &mut connection {
                Some(redis) => redis,
                None => match endpoint.connect(&config, self.config.connect_timeout).await {
                    Ok(redis) => connection.insert(redis),
                    Err(err) => {
                        tracing::debug!(error = %err, "cancel reader cannot reach Redis");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                },
            };
            let read = ::redis::cmd("XREAD")
                .arg("COUNT")
                .arg(256)
                .arg("BLOCK")
                .arg(CANCEL_BLOCK.as_millis().to_string())
                .arg("STREAMS")
                .arg(&self.cancel_key)
                .arg(&last_id)
                .query_async::<Value>(redis)
                .await;
            if last_prune.elapsed() >= CANCEL_BLOCK {
                last_prune = Instant::now();
                self.cancelled().prune(wire::unix_now_ms());
            }
            let reply = match read {
                Ok(Value::Nil) => continue,
                Ok(reply) => reply,
                Err(err) => {
                    tracing::debug!(error = %err, "reading the cancel stream failed");
                    if is_connection_error(&err) {
                        connection = None;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            };
            let now = wire::unix_now_ms();
            let last = wire::for_each_entry(&reply, |_, fields| {
                wire::read_cancels(fields, |notice| {
                    if notice.deadline_unix_ms > now {
                        self.cancel_job(&notice);
                    }
                });
            });
            if let Some(last) = last {
                last_id = String::from_utf8_lossy(last).into_owned();
            }
        }
    }

    /// Stops the job `notice` names if this worker holds it, and remembers the notice in
    /// case it takes the job later.
    fn cancel_job(&self, notice: &CancelNotice) {
        // Remembered before looking at the held jobs, and `start` registers an entry's
        // jobs before it looks here: whichever comes second sees the other.
        self.cancelled().insert(notice);
        let in_flight = self.in_flight();
        let held = in_flight
            .values()
            .filter(|entry| entry.reply_to.as_deref() == Some(&*notice.reply_to))
            .flat_map(|entry| entry.cancels.iter())
            .find(|(job_id, _)| *job_id == notice.job_id);
        if let Some((job_id, cancel)) = held {
            tracing::debug!(job = job_id, "stopping a cancelled job");
            cancel.cancel();
        }
    }
}

/// A streamed job's sink on a worker: each line goes to the answer writer, which sends it
/// to the job's server in the same order as, and before, the job's answer.
pub(super) struct RemoteLines {
    pub(super) outgoing: mpsc::UnboundedSender<Outgoing>,
    pub(super) unsent: Arc<AtomicUsize>,
    pub(super) job_id: String,
    pub(super) reply_to: Arc<str>,
    pub(super) give_up_at: u64,
}

/// One line on its way to Redis; counted in [`MAX_UNSENT_LINES`] until it is dropped
/// (written or given up).
pub(super) struct StreamedLine {
    pub(super) job_id: String,
    pub(super) reply_to: Arc<str>,
    pub(super) line: String,
    pub(super) give_up_at: u64,
    unsent: Arc<AtomicUsize>,
}

impl Drop for StreamedLine {
    fn drop(&mut self) {
        self.unsent.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LineSink for RemoteLines {
    fn offer(&self, line: &str) -> Offer {
        if self.unsent.fetch_add(1, Ordering::AcqRel) >= MAX_UNSENT_LINES {
            self.unsent.fetch_sub(1, Ordering::AcqRel);
            return Offer::Full;
        }
        let line = StreamedLine {
            job_id: self.job_id.clone(),
            reply_to: Arc::clone(&self.reply_to),
            line: line.to_owned(),
            give_up_at: self.give_up_at,
            unsent: Arc::clone(&self.unsent),
        };
        match self.outgoing.send(Outgoing::Line(line)) {
            Ok(()) => Offer::Taken,
            // The answer writer is gone: the worker is stopping.
            Err(_) => Offer::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_taken_once_and_pruned_by_deadline() {
        let mut cancelled = CancelledJobs::default();
        let notice = |job_id, deadline_unix_ms| CancelNotice {
            reply_to: Arc::from("r"),
            job_id,
            deadline_unix_ms,
        };
        cancelled.insert(&notice(1, 100));
        cancelled.insert(&notice(2, 300));
        assert!(!cancelled.take("other", 1));
        assert!(cancelled.take("r", 1));
        assert!(!cancelled.take("r", 1));
        cancelled.prune(200);
        assert!(!cancelled.is_empty());
        cancelled.prune(300);
        assert!(cancelled.is_empty());
    }
}
