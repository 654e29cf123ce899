//! Abandoned jobs: taking over the entries a dead worker left pending (`XAUTOCLAIM`), and
//! renewing the ones this worker holds (`XCLAIM … JUSTID`) so they never look abandoned.

use ::redis::Value;
use ::redis::streams::StreamPendingCountReply;
use std::sync::Arc;

use super::{Worker, WorkerError};
use crate::redis::CONSUMER_GROUP;
use crate::redis::connection::is_missing_group;
use crate::redis::wire::{self, JobEntry};

impl Worker {
    /// Takes over up to `count` job entries that other workers left unanswered for longer
    /// than `claim_idle`, each with how many times it has now been delivered.
    pub(super) async fn claim_abandoned(
        &self,
        cursor: &mut String,
        count: usize,
    ) -> Result<Vec<(JobEntry, usize)>, WorkerError> {
        let (mut redis, generation) = self.redis().await?;
        let claimed = ::redis::cmd("XAUTOCLAIM")
            .arg(&self.jobs_key)
            .arg(CONSUMER_GROUP)
            .arg(&self.config.name)
            .arg(self.config.claim_idle.as_millis().to_string())
            .arg(&*cursor)
            .arg("COUNT")
            .arg(count)
            .query_async::<Value>(&mut redis)
            .await;
        let reply = match claimed {
            Ok(reply) => reply,
            Err(err) => {
                self.commands.report(generation, &err).await;
                if is_missing_group(&err) {
                    *cursor = "0-0".to_owned();
                }
                return Err(WorkerError::Claim(err));
            }
        };
        let mut entries = Vec::new();
        let Some((next, deleted)) = wire::for_each_claimed(&reply, |id, fields| {
            entries.push(wire::read_job_entry(id, fields));
        }) else {
            return Err(WorkerError::ClaimReply(format!("{reply:?}")));
        };
        *cursor = next;
        if deleted > 0 {
            tracing::warn!(
                count = deleted,
                "abandoned jobs were trimmed from the stream (MAXLEN) before another worker took them over; their callers time out"
            );
        }
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // XAUTOCLAIM does not say how often an entry was delivered; XPENDING does.
        let mut pipeline = ::redis::pipe();
        for entry in &entries {
            pipeline
                .cmd("XPENDING")
                .arg(&self.jobs_key)
                .arg(CONSUMER_GROUP)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let counts = match pipeline
            .query_async::<Vec<StreamPendingCountReply>>(&mut redis)
            .await
        {
            Ok(counts) => counts,
            Err(err) => {
                self.commands.report(generation, &err).await;
                tracing::debug!(error = %err, "cannot read delivery counts; counting each as a first take-over");
                Vec::new()
            }
        };
        tracing::warn!(
            worker = %self.config.name,
            entries = entries.len(),
            jobs = entries.iter().map(|entry| entry.jobs.len()).sum::<usize>(),
            "taking over jobs abandoned by a worker that stopped answering"
        );
        Ok(entries
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                let deliveries = counts
                    .get(index)
                    .and_then(|reply| reply.ids.first())
                    .map_or(2, |pending| pending.times_delivered);
                (entry, deliveries)
            })
            .collect())
    }

    /// Keeps the jobs this worker runs from looking abandoned: `XCLAIM … JUSTID` to itself
    /// resets their idle time without counting a delivery.
    pub(super) async fn renew_loop(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.config.claim_idle / 3);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let running: Vec<String> = self.in_flight().keys().cloned().collect();
            if running.is_empty() {
                continue;
            }
            let Ok((mut redis, generation)) = self.redis().await else {
                continue;
            };
            let renewed = ::redis::cmd("XCLAIM")
                .arg(&self.jobs_key)
                .arg(CONSUMER_GROUP)
                .arg(&self.config.name)
                .arg(0)
                .arg(&running)
                .arg("JUSTID")
                .query_async::<()>(&mut redis)
                .await;
            if let Err(err) = renewed {
                tracing::debug!(error = %err, "renewing running jobs failed");
                self.commands.report(generation, &err).await;
            }
        }
    }
}
