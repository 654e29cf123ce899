//! Taking jobs: the worker's main loop. Whenever a job slot (a script thread, or a place
//! among the jobs held beyond them) is free, it takes over abandoned jobs (when due), then
//! reads new entries, about as many as the free slots hold jobs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::Worker;
use crate::redis::CONSUMER_GROUP;
use crate::redis::connection::{connection_config, is_connection_error, is_missing_group};
use crate::redis::dispatcher::MAX_JOBS_PER_ENTRY;
use crate::redis::endpoint::Endpoint;
use crate::redis::wire;

/// What the main loop keeps from one round to the next.
struct Taking {
    /// The connection of the blocking reads, which hold it for up to `block`.
    reader: Option<MultiplexedConnection>,
    reader_config: AsyncConnectionConfig,
    /// How long a read waits for new entries.
    block: Duration,
    /// Where the next look for abandoned entries (`XAUTOCLAIM`) goes on.
    claim_cursor: String,
    next_claim_check: Instant,
    backoff: Duration,
    /// Whether the worker has joined the consumer group.
    ready: bool,
    /// Jobs per entry in the latest read, to ask for as many entries as the free slots
    /// hold: one when servers fill their entries, many when entries hold one job each.
    jobs_per_entry: usize,
    stop: watch::Receiver<bool>,
    /// Whether the reader's failure to reach Redis has been logged: one
    /// warning per outage (a wrong CA or password is one clear line, not a
    /// line every backoff).
    unreachable_logged: bool,
}

impl Taking {
    /// How many entries to ask for with `permits` free slots.
    fn wanted(&self, permits: &OwnedSemaphorePermit) -> usize {
        (permits.num_permits() / self.jobs_per_entry).max(1)
    }

    /// Waits the backoff (or until stopping), then doubles it up to 2 s.
    async fn pause(&mut self) {
        tokio::select! {
            _ = tokio::time::sleep(self.backoff) => {}
            _ = self.stop.wait_for(|stopping| *stopping) => {}
        }
        self.backoff = (self.backoff * 2).min(Duration::from_secs(2));
    }
}

impl Worker {
    /// The main loop, until `stop` says so. Every job it takes is started before it returns.
    pub(super) async fn take_jobs(
        self: Arc<Self>,
        endpoint: &Endpoint,
        slots: Arc<Semaphore>,
        stop: watch::Receiver<bool>,
    ) {
        let block = self.claim_check_interval();
        let mut taking = Taking {
            reader: None,
            reader_config: connection_config(
                self.config.connect_timeout,
                block + self.config.command_timeout,
            ),
            block,
            claim_cursor: "0-0".to_owned(),
            next_claim_check: Instant::now(),
            backoff: Duration::from_millis(50),
            ready: false,
            jobs_per_entry: 1,
            stop,
            unreachable_logged: false,
        };
        while let Some(permits) = free_slots(&slots, &mut taking.stop).await {
            let Some(redis) = self.reader(endpoint, &mut taking).await else {
                continue;
            };
            let Some(permits) = self.claim_if_due(&mut taking, permits, &slots).await else {
                continue;
            };
            self.read_new(&mut taking, redis, permits, &slots).await;
        }
    }

    /// The connection for blocking reads, connected (and the group joined, the first time)
    /// if need be. `None`: Redis cannot be reached now (after a pause).
    async fn reader(
        &self,
        endpoint: &Endpoint,
        taking: &mut Taking,
    ) -> Option<MultiplexedConnection> {
        if taking.reader.is_none() {
            match endpoint
                .connect(&taking.reader_config, self.config.connect_timeout)
                .await
            {
                Ok(redis) => {
                    if std::mem::take(&mut taking.unreachable_logged) {
                        tracing::info!("Redis is reachable again");
                    }
                    taking.reader = Some(redis);
                }
                Err(err) if !taking.unreachable_logged => {
                    taking.unreachable_logged = true;
                    tracing::warn!(error = %err, "cannot reach Redis; retrying in the background");
                    taking.pause().await;
                    return None;
                }
                Err(err) => {
                    tracing::debug!(error = %err, "cannot reach Redis");
                    taking.pause().await;
                    return None;
                }
            }
        }
        if !taking.ready {
            // The shared connection creates the consumer group when it connects.
            if self.join_group().await.is_err() {
                taking.pause().await;
                return None;
            }
            taking.ready = true;
            tracing::info!(
                worker = %self.config.name,
                jobs = %self.jobs_key,
                concurrency = self.config.concurrency,
                "circle-worker ready"
            );
        }
        taking.backoff = Duration::from_millis(50);
        taking.reader.clone()
    }

    /// Takes over abandoned entries and starts their jobs, when it is time to look. Returns
    /// the slots left, `None` if there are none.
    async fn claim_if_due(
        self: &Arc<Self>,
        taking: &mut Taking,
        mut permits: OwnedSemaphorePermit,
        slots: &Arc<Semaphore>,
    ) -> Option<OwnedSemaphorePermit> {
        if Instant::now() < taking.next_claim_check {
            return Some(permits);
        }
        taking.next_claim_check = Instant::now() + self.claim_check_interval();
        let count = taking.wanted(&permits);
        match self.claim_abandoned(&mut taking.claim_cursor, count).await {
            Ok(claimed) => {
                for (entry, deliveries) in claimed {
                    permits = self.start(entry, deliveries, permits, slots).await;
                }
            }
            Err(reason) => tracing::debug!(%reason, "looking for abandoned jobs failed"),
        }
        (permits.num_permits() > 0).then_some(permits)
    }

    /// Reads new entries (`XREADGROUP`), as many as `permits` hold jobs, and starts them.
    async fn read_new(
        self: &Arc<Self>,
        taking: &mut Taking,
        mut redis: MultiplexedConnection,
        permits: OwnedSemaphorePermit,
        slots: &Arc<Semaphore>,
    ) {
        // Not raced against `stop`: dropping a read that Redis has already served would
        // leave its jobs pending on this worker until another takes them over. A read
        // returns within `block` anyway.
        let read = ::redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(CONSUMER_GROUP)
            .arg(&self.config.name)
            .arg("COUNT")
            .arg(taking.wanted(&permits))
            .arg("BLOCK")
            .arg(taking.block.as_millis().to_string())
            .arg("STREAMS")
            .arg(&self.jobs_key)
            .arg(">")
            .query_async::<Value>(&mut redis)
            .await;
        match read {
            Ok(reply) => self.start_read(taking, reply, permits, slots).await,
            Err(err) if is_missing_group(&err) => {
                tracing::warn!(
                    "the job stream or its consumer group is gone (Redis restarted or was flushed); recreating it"
                );
                if let Err(reason) = self.recreate_group().await {
                    tracing::debug!(%reason, "recreating the consumer group failed");
                    taking.pause().await;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading jobs failed");
                if is_connection_error(&err) {
                    taking.reader = None;
                }
                taking.pause().await;
            }
        }
    }

    /// Starts the jobs of the entries in an `XREADGROUP` reply.
    async fn start_read(
        self: &Arc<Self>,
        taking: &mut Taking,
        reply: Value,
        mut permits: OwnedSemaphorePermit,
        slots: &Arc<Semaphore>,
    ) {
        let mut entries = Vec::new();
        wire::for_each_entry(&reply, |id, fields| {
            entries.push(wire::read_job_entry(id, fields));
        });
        // Dropped before the jobs start: the reply holds a copy of every script.
        drop(reply);
        if let Some(most) = entries.iter().map(|entry| entry.jobs.len()).max() {
            taking.jobs_per_entry = most.clamp(1, MAX_JOBS_PER_ENTRY);
        }
        for entry in entries {
            permits = self.start(entry, 1, permits, slots).await;
        }
    }
}

/// Waits for a free job slot (`None`: stopping), then takes every other free one too.
async fn free_slots(
    slots: &Arc<Semaphore>,
    stop: &mut watch::Receiver<bool>,
) -> Option<OwnedSemaphorePermit> {
    let mut permits = tokio::select! {
        biased;
        _ = stop.wait_for(|stopping| *stopping) => return None,
        permit = Arc::clone(slots).acquire_owned() => permit.ok()?,
    };
    let more = slots.available_permits();
    if more > 0
        && let Ok(more) =
            Arc::clone(slots).try_acquire_many_owned(u32::try_from(more).unwrap_or(u32::MAX))
    {
        permits.merge(more);
    }
    Some(permits)
}
