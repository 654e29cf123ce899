//! Answering: finished jobs are written to Redis in batches, each batch one transaction
//! that also acknowledges the entries whose last job it answers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::control::StreamedLine;
use super::held::RATE_INTERVAL;
use super::{Answer, Finish, MAX_FINISH_BATCH, Outgoing, Worker, WorkerError};
use crate::redis::CONSUMER_GROUP;
use crate::redis::wire;

impl Worker {
    /// Answers finished jobs in batches: whatever finished while the previous batch was
    /// being written goes in the next one. Each batch is one transaction, so an answer is
    /// never written without its entry being acknowledged (once its last job is answered)
    /// or the other way round. Retries while Redis is away, each job until its caller's
    /// deadline: after that nobody listens, and its entry is left for another worker to
    /// take over and clear.
    ///
    /// Streamed lines travel the same way, so a job's lines are written before its answer
    /// (in the same transaction or an earlier one).
    pub(super) async fn finish_loop(self: Arc<Self>, mut queue: mpsc::UnboundedReceiver<Outgoing>) {
        let mut batch = Vec::with_capacity(MAX_FINISH_BATCH);
        let mut lines: Vec<StreamedLine> = Vec::new();
        let mut received = Vec::with_capacity(MAX_FINISH_BATCH);
        let mut rate_since = Instant::now();
        let mut answered_since = 0;
        loop {
            let room = MAX_FINISH_BATCH
                .saturating_sub(batch.len() + lines.len())
                .max(1);
            if batch.is_empty() && lines.is_empty() {
                if queue.recv_many(&mut received, room).await == 0 {
                    return;
                }
            } else {
                while received.len() < room
                    && let Ok(finish) = queue.try_recv()
                {
                    received.push(finish);
                }
            }
            for outgoing in received.drain(..) {
                match outgoing {
                    Outgoing::Finish(mut finish) => {
                        finish.completes_entry =
                            finish.entry.unfinished.fetch_sub(1, Ordering::AcqRel) == 1;
                        batch.push(finish);
                    }
                    Outgoing::Line(line) => lines.push(line),
                }
            }
            match self.write_answers(&batch, &lines).await {
                Ok(()) => {
                    // Frees their places among the unsent lines.
                    lines.clear();
                    let ran = batch.iter().filter(|finish| finish.ran).count();
                    self.counters
                        .scripts_run
                        .fetch_add(ran as u64, Ordering::Relaxed);
                    {
                        let mut in_flight = self.in_flight();
                        for finish in &batch {
                            if finish.completes_entry {
                                in_flight.remove(&finish.entry.id);
                            }
                        }
                    }
                    answered_since += batch.len();
                    // Frees the jobs' slots.
                    batch.clear();
                    let elapsed = rate_since.elapsed();
                    if elapsed >= RATE_INTERVAL {
                        self.adjust_held(answered_since, elapsed);
                        rate_since = Instant::now();
                        answered_since = 0;
                    }
                }
                Err(failure) => {
                    let now = wire::unix_now_ms();
                    lines.retain(|line| now < line.give_up_at);
                    batch.retain(|finish| {
                        if now < finish.give_up_at {
                            return true;
                        }
                        tracing::warn!(id = %finish.entry.id, reason = %failure, "could not answer a job before its deadline; leaving it pending");
                        self.counters.unanswered.fetch_add(1, Ordering::Relaxed);
                        if finish.completes_entry {
                            // No longer renewed, so another worker takes it over and clears it.
                            self.in_flight().remove(&finish.entry.id);
                        }
                        false
                    });
                    if !batch.is_empty() || !lines.is_empty() {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        }
    }

    /// One transaction for `batch` and `lines`: per reply stream one `XADD` of all its
    /// lines and answers (one entry, lines first) and one `PEXPIRE`; one `HINCRBY` for the scripts run; one
    /// `XACK` and one `XDEL` for the entries whose last job is in the batch.
    ///
    /// Every failure is retried, except Redis refusing one command of a transaction it
    /// ran (`WRONGTYPE`: a reply stream that is not a stream; `NOGROUP`: the group gone in
    /// a Redis restart): retrying those would only write the other answers of the batch
    /// again, so they are logged and the batch counts as written.
    pub(super) async fn write_answers(
        &self,
        batch: &[Finish],
        lines: &[StreamedLine],
    ) -> Result<(), WorkerError> {
        let mut transaction = ::redis::pipe();
        transaction.atomic();
        // The lines and answers for one server share one entry of its reply stream.
        let mut reply_streams: Vec<ForServer<'_>> = Vec::new();
        for line in lines {
            ForServer::of(&mut reply_streams, &line.reply_to)
                .lines
                .push(line);
        }
        for answer in batch.iter().filter_map(|finish| finish.answer.as_ref()) {
            ForServer::of(&mut reply_streams, &answer.reply_to)
                .answers
                .push(answer);
        }
        let ttl_ms = self.config.reply_ttl.as_millis().to_string();
        let mut value = Vec::new();
        for ForServer {
            reply_to,
            lines,
            answers,
        } in reply_streams
        {
            let command = transaction
                .cmd("XADD")
                .arg(reply_to)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.config.max_reply_backlog)
                .arg("*");
            for (name, text) in wire::reply_header(&self.config.name) {
                command.arg(name).arg(text);
            }
            // Before the answers: the server reads a job's lines before its answer.
            if !lines.is_empty() {
                value.clear();
                for line in lines {
                    wire::encode_line(&mut value, &line.job_id, &line.line);
                }
                command.arg(wire::LINES_FIELD).arg(&value);
            }
            if !answers.is_empty() {
                value.clear();
                for answer in answers {
                    wire::encode_answer(&mut value, &answer.job_id, &answer.result);
                }
                command.arg(wire::ANSWERS_FIELD).arg(&value);
            }
            command.ignore();
            transaction
                .cmd("PEXPIRE")
                .arg(reply_to)
                .arg(&ttl_ms)
                .ignore();
        }
        let ran = batch.iter().filter(|finish| finish.ran).count();
        if ran > 0 {
            transaction
                .cmd("HINCRBY")
                .arg(&self.stats_key)
                .arg(&self.config.name)
                .arg(ran)
                .ignore();
        }
        let completed: Vec<&str> = batch
            .iter()
            .filter(|finish| finish.completes_entry)
            .map(|finish| finish.entry.id.as_str())
            .collect();
        if !completed.is_empty() {
            transaction
                .cmd("XACK")
                .arg(&self.jobs_key)
                .arg(CONSUMER_GROUP)
                .arg(&completed)
                .ignore();
            transaction
                .cmd("XDEL")
                .arg(&self.jobs_key)
                .arg(&completed)
                .ignore();
        }

        let (mut redis, generation) = self.redis().await?;
        match transaction.query_async::<()>(&mut redis).await {
            Ok(()) => Ok(()),
            Err(err) => {
                self.commands.report(generation, &err).await;
                if matches!(err.code(), Some("WRONGTYPE" | "NOGROUP")) {
                    tracing::warn!(error = %err, jobs = batch.len(), "Redis refused part of the answers' transaction");
                    Ok(())
                } else {
                    Err(WorkerError::Answer(err))
                }
            }
        }
    }
}

/// What one batch writes to one server's reply stream.
struct ForServer<'a> {
    reply_to: &'a str,
    lines: Vec<&'a StreamedLine>,
    answers: Vec<&'a Answer>,
}

impl<'a> ForServer<'a> {
    /// The part of `streams` for `reply_to`, added if missing.
    fn of<'s>(streams: &'s mut Vec<ForServer<'a>>, reply_to: &'a str) -> &'s mut ForServer<'a> {
        let index = match streams
            .iter()
            .position(|server| server.reply_to == reply_to)
        {
            Some(index) => index,
            None => {
                streams.push(ForServer {
                    reply_to,
                    lines: Vec::new(),
                    answers: Vec::new(),
                });
                streams.len() - 1
            }
        };
        &mut streams[index]
    }
}
