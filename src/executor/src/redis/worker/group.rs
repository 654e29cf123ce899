//! The worker's place in the circle's consumer group: joining it at start, recreating
//! it after Redis lost it, and leaving it tidily at the end.

use ::redis::streams::StreamPendingCountReply;

use super::{Worker, WorkerError};
use crate::redis::CONSUMER_GROUP;
use crate::redis::connection::ensure_group;

impl Worker {
    /// Registers this worker in the consumer group at once, so `XINFO CONSUMERS` lists it
    /// from its start (Redis would otherwise add it only when it is first handed a job).
    pub(super) async fn join_group(&self) -> Result<(), WorkerError> {
        let (mut redis, generation) = self.redis().await?;
        let joined = self
            .consumer_command("CREATECONSUMER")
            .query_async::<()>(&mut redis)
            .await;
        if let Err(err) = joined {
            self.commands.report(generation, &err).await;
            return Err(WorkerError::Group(err));
        }
        Ok(())
    }

    pub(super) async fn recreate_group(&self) -> Result<(), WorkerError> {
        let (mut redis, generation) = self.redis().await?;
        if let Err(err) = ensure_group(&mut redis, &self.jobs_key).await {
            self.commands.report(generation, &err).await;
            return Err(WorkerError::Group(err));
        }
        self.join_group().await
    }

    /// Removes this worker's consumer from the group when it holds no job (removing a
    /// consumer drops its pending jobs, so never otherwise), so stopped workers do not pile
    /// up in `XINFO CONSUMERS`. Best effort.
    pub(super) async fn leave_group(&self) {
        let Ok((mut redis, _)) = self.redis().await else {
            return;
        };
        let pending = ::redis::cmd("XPENDING")
            .arg(&self.jobs_key)
            .arg(CONSUMER_GROUP)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(&self.config.name)
            .query_async::<StreamPendingCountReply>(&mut redis)
            .await;
        if pending.is_ok_and(|pending| pending.ids.is_empty()) {
            let _ = self
                .consumer_command("DELCONSUMER")
                .query_async::<()>(&mut redis)
                .await;
        }
    }
}
