//! Submitting: the one task that writes queued jobs to the job stream, as few entries and
//! pipelines as possible, and measures the stream's length on the way.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::state::Dispatch;
use super::{MAX_BATCH, MAX_ENTRY_BYTES, MAX_JOBS_PER_ENTRY, QUEUE_LENGTH_SAMPLE, Submission};
use crate::ExecutorError;
use crate::redis::connection::{SharedConnection, is_connection_error};
use crate::redis::wire;

/// Takes queued jobs in batches and `XADD`s each batch in one pipeline, as few entries as
/// [`MAX_JOBS_PER_ENTRY`] and [`MAX_ENTRY_BYTES`] allow. A batch is whatever was queued
/// while the previous pipeline was in flight: no timer holds a job back to wait for others.
///
/// The job stream's length is measured with a batch at most every [`QUEUE_LENGTH_SAMPLE`];
/// a batch that went unmeasured is followed by a lone `XLEN` once that interval is over,
/// so the measure never lags the last submission by more than it.
pub(super) async fn submit_loop(
    dispatch: Arc<Dispatch>,
    mut queue: mpsc::Receiver<Submission>,
    connection: Arc<SharedConnection>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut last_measure: Option<Instant> = None;
    let mut measure_owed = false;
    // The stream's length is counted in entries; the jobs per entry written since the last
    // measure turn it into jobs.
    let mut sizes = EntrySizes::default();
    loop {
        let due = last_measure.map_or_else(Instant::now, |at| at + QUEUE_LENGTH_SAMPLE);
        let received = tokio::select! {
            received = queue.recv_many(&mut batch, MAX_BATCH) => received,
            () = tokio::time::sleep_until(due.into()), if measure_owed => {
                measure_owed = false;
                last_measure = Some(Instant::now());
                measure_queue(&dispatch, &connection, &mut sizes).await;
                continue;
            }
        };
        if received == 0 {
            return;
        }
        // A caller that gave up while its job sat here needs no job in Redis.
        {
            let waiting = dispatch.waiting();
            batch.retain(|submission| waiting.contains_key(&submission.sequence));
        }
        if !batch.is_empty() {
            let measure = last_measure.is_none_or(|at| at.elapsed() >= QUEUE_LENGTH_SAMPLE);
            if measure {
                last_measure = Some(Instant::now());
            }
            measure_owed = !measure;
            submit_batch(&dispatch, &connection, &batch, measure, &mut sizes).await;
        }
        batch.clear();
    }
}

/// Measures the job stream's length (best effort: a failure keeps the previous measure,
/// which stops counting once it is old).
async fn measure_queue(dispatch: &Dispatch, connection: &SharedConnection, sizes: &mut EntrySizes) {
    let jobs_per_entry = sizes.take_jobs_per_entry();
    let Ok((mut redis, generation)) = connection.get().await else {
        return;
    };
    match ::redis::cmd("XLEN")
        .arg(&dispatch.jobs_key)
        .query_async::<usize>(&mut redis)
        .await
    {
        Ok(entries) => dispatch.record_queued_jobs(entries.saturating_mul(jobs_per_entry)),
        Err(err) => connection.report(generation, &err).await,
    }
}

/// Jobs and entries written since the job stream's length was last measured.
#[derive(Debug, Default)]
struct EntrySizes {
    jobs: usize,
    entries: usize,
    /// The average of the previous interval, kept for an interval without writes.
    last: usize,
}

impl EntrySizes {
    fn add(&mut self, jobs: usize, entries: usize) {
        self.jobs += jobs;
        self.entries += entries;
    }

    /// Jobs per entry written since the last call (at least 1), to turn a stream length
    /// into jobs. An average over the interval rather than the latest batch: the stream
    /// holds the entries of the whole interval, and the batch sizes of one interval vary
    /// widely (one job after a pause, hundreds after a burst).
    fn take_jobs_per_entry(&mut self) -> usize {
        if self.entries > 0 {
            self.last = self.jobs.div_ceil(self.entries);
        }
        *self = EntrySizes {
            last: self.last.max(1),
            ..EntrySizes::default()
        };
        self.last
    }
}

/// Splits `batch` into runs of jobs that share one entry: at most [`MAX_JOBS_PER_ENTRY`]
/// jobs, and no more bytes than [`MAX_ENTRY_BYTES`] unless a single job is larger.
fn entries_of(batch: &[Submission]) -> impl Iterator<Item = &[Submission]> {
    let mut rest = batch;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut len = 0;
        for submission in rest.iter().take(MAX_JOBS_PER_ENTRY) {
            bytes += submission.size();
            if len > 0 && bytes > MAX_ENTRY_BYTES {
                break;
            }
            len += 1;
        }
        let (entry, after) = rest.split_at(len);
        rest = after;
        Some(entry)
    })
}

/// Writes `batch` as job entries in one pipeline (plus an `XLEN` when `measure`), and
/// answers every caller of the batch [`ExecutorError::Unavailable`] if Redis does not take
/// it. Adds the entries written to `sizes`.
async fn submit_batch(
    dispatch: &Dispatch,
    connection: &SharedConnection,
    batch: &[Submission],
    measure: bool,
    sizes: &mut EntrySizes,
) {
    let mut pipeline = ::redis::pipe();
    let mut entries = 0;
    let mut encoded = Vec::new();
    let clocks = wire::clocks_now();
    for jobs in entries_of(batch) {
        entries += 1;
        let command = pipeline
            .cmd("XADD")
            .arg(&dispatch.jobs_key)
            .arg("MAXLEN")
            .arg("~")
            // Counted in entries, so never fewer jobs than that: the refusal at
            // `max_queued_jobs` jobs (`queue_is_full`) comes first, and this cap is only
            // the memory bound for servers racing past it.
            .arg(dispatch.config.max_queued_jobs)
            .arg("*");
        for (name, value) in wire::job_entry_header(&dispatch.reply_key) {
            command.arg(name).arg(value);
        }
        // Only an entry with a streamed job carries the list, so plain ones cost nothing.
        if jobs.iter().any(|submission| submission.stream) {
            encoded.clear();
            for submission in jobs.iter().filter(|submission| submission.stream) {
                wire::push_streaming_job(&mut encoded, submission.sequence);
            }
            command.arg(wire::STREAM_FIELD).arg(&encoded);
        }
        encoded.clear();
        for submission in jobs {
            wire::encode_job(
                &mut encoded,
                submission.sequence,
                wire::unix_ms_at(submission.deadline, clocks),
                &submission.context,
                &submission.script,
            );
        }
        command.arg(wire::JOBS_FIELD).arg(&encoded).ignore();
    }
    sizes.add(batch.len(), entries);
    let jobs_per_entry = if measure {
        sizes.take_jobs_per_entry()
    } else {
        1
    };
    if measure {
        pipeline.cmd("XLEN").arg(&dispatch.jobs_key);
    }

    // A connection that broke while idle (Redis restarted) is only noticed when used: give
    // the batch one more try on a fresh connection before failing its callers. At worst a
    // job is then queued twice; the caller still gets one answer.
    let mut last_error = String::new();
    for attempt in 0..2 {
        let (mut redis, generation) = match connection.get().await {
            Ok(connected) => connected,
            Err(reason) => {
                last_error = format!("cannot reach Redis: {reason}");
                break;
            }
        };
        match pipeline.query_async::<Vec<usize>>(&mut redis).await {
            Ok(queued) => {
                match queued.first() {
                    Some(&entries) if measure => {
                        dispatch.record_queued_jobs(entries.saturating_mul(jobs_per_entry));
                    }
                    _ => dispatch.count_submitted(batch.len()),
                }
                return;
            }
            Err(err) => {
                connection.report(generation, &err).await;
                last_error = format!("Redis did not take the script: {err}");
                if !(is_connection_error(&err) && attempt == 0) {
                    break;
                }
            }
        }
    }
    for submission in batch {
        dispatch.answer(
            submission.sequence,
            Err(ExecutorError::Unavailable(last_error.clone())),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::dispatcher::MAX_ENTRY_BYTES;

    #[test]
    fn a_batch_is_split_into_entries_by_count_and_size() {
        let job = |sequence, bytes| Submission {
            sequence,
            deadline: Instant::now(),
            script: "x".repeat(bytes),
            context: Arc::new(crate::ScriptContext::default()),
            stream: false,
        };
        let sizes =
            |batch: &[Submission]| -> Vec<usize> { entries_of(batch).map(<[_]>::len).collect() };
        let many: Vec<_> = (0..150).map(|n| job(n, 10)).collect();
        assert_eq!(sizes(&many), [64, 64, 22]);
        let big = [job(1, 100), job(2, MAX_ENTRY_BYTES), job(3, 10), job(4, 10)];
        assert_eq!(sizes(&big), [1, 1, 2]);
        assert_eq!(sizes(&[]), Vec::<usize>::new());
    }

    #[test]
    fn the_stream_length_is_turned_into_jobs_by_the_average_entry() {
        let mut sizes = EntrySizes::default();
        assert_eq!(sizes.take_jobs_per_entry(), 1);
        sizes.add(256, 4);
        sizes.add(1, 1);
        sizes.add(7, 1);
        assert_eq!(sizes.take_jobs_per_entry(), 44);
        // Nothing written since: the last average still holds.
        assert_eq!(sizes.take_jobs_per_entry(), 44);
        sizes.add(3, 3);
        assert_eq!(sizes.take_jobs_per_entry(), 1);
    }
}
