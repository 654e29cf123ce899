//! How jobs and answers are written into Redis stream entries, and read back.
//!
//! Plain stream fields rather than one serialized blob: entries stay readable with
//! `redis-cli XRANGE`, and the crate needs no serialization library. Every job entry
//! carries a format version so a worker can refuse (with an answer, not silence) a job
//! written by a newer server it does not understand.
//!
//! The layouts are described here, in one place; each file of this module does one part:
//!
//! - `job`: job entries, written by servers ([`encode_job`]) and read by workers
//!   ([`read_job_entry`]);
//! - `answer`: reply entries, written by workers ([`encode_answer`]) and read by servers
//!   ([`read_replies`]);
//! - `frame`: the sized lines both are made of, and decimal numbers;
//! - `walk`: finding the entries in what `XREAD`, `XREADGROUP` and `XAUTOCLAIM` answer;
//! - `clock`: deadlines as Unix milliseconds, the time both sides of the wire share.
//!
//! # Job entries
//!
//! Version 2 (written by this crate): one entry carries one or more jobs of one server, all
//! in one field. Per-field costs (Redis parsing an argument, storing it, sending it back;
//! the client library allocating, checking and dropping a value) and per-entry costs
//! dominate the cost of a short script, so a busy server puts everything it has queued
//! into a few entries of three fields each:
//!
//! ```text
//! v          2
//! reply_to   circle:{key}:replies:{server instance}
//! jobs       {job}{job}…
//! ```
//!
//! where each job is one line (the last byte is the line feed), every text sized in bytes:
//!
//! ```text
//! {job id} {deadline ms} {len}:{circle name} {len}:{circle public key} {len}:{caller public key} {len}:{script}\n
//! ```
//!
//! A job id is a decimal number, unique within the reply stream (the server's instance).
//! A job whose content cannot be read (a deadline that is no number, text that is not
//! UTF-8) is refused on its own; only a broken frame (a size that does not fit) loses the
//! jobs after it in the field, and only a server bug writes one.
//!
//! An entry of any other version is refused. Its jobs cannot be found without knowing its
//! layout, so the refusal reaches a caller only when the entry names one job in a `job`
//! field and its reply stream in `reply_to`; otherwise the entry is acknowledged unanswered
//! and its callers time out.
//!
//! # Reply entries
//!
//! One entry per reply stream per batch of a worker:
//!
//! ```text
//! v          2
//! worker     {worker name}
//! answers    {job id} {status} {len}:{payload}\n{job id} {status} {len}:{payload}\n…
//! ```
//!
//! A job entry may carry a `stream` field before `jobs` (`{job id} {job id} …`, each
//! followed by a space): those jobs' printed lines are sent back as they are printed, in a
//! `lines` field of a reply entry (`{job id} {len}:{line}\n` each) that comes before its
//! `answers` field, so a job's lines are always read before its answer.
//!
//! # Cancel entries
//!
//! On the circle's cancel stream (`circle:{key}:cancels`), one entry per batch of cancels
//! of one server: `v` `2`, `reply_to`, and `cancel` holding `{job id} {deadline ms}\n` per
//! cancelled job.
//!
//! # Reply statuses
//!
//! `status` is `ok` (payload: the output), `script`, `unavailable`, `overloaded`,
//! `no_answer` (payload: the message), `limit` (payload: `{limit kind}:{message}`) or
//! `deadline` (empty payload). A reply entry of another version, or without one, is not
//! read: its callers get `-32005` where their job ids can be found.

mod answer;
mod clock;
mod control;
mod frame;
mod job;
mod walk;

use std::sync::Arc;

use crate::ScriptContext;

pub(crate) use answer::{ANSWERS_FIELD, encode_answer, read_replies, reply_header};
pub(crate) use clock::{clocks_now, instant_at, unix_ms_at, unix_now_ms};
pub(crate) use control::{
    CANCEL_FIELD, CancelNotice, LINES_FIELD, STREAM_FIELD, cancel_header, encode_cancel,
    encode_line, push_streaming_job, read_cancels,
};
pub(crate) use frame::parse_number;
pub(crate) use job::{JOBS_FIELD, encode_job, job_entry_header, read_job_entry};
pub(crate) use walk::{for_each_claimed, for_each_entry};

/// The job and reply format of this crate.
pub(crate) const FORMAT_VERSION: &str = "2";

mod field {
    pub const VERSION: &str = "v";
    pub const JOBS: &str = "jobs";
    pub const ANSWERS: &str = "answers";
    /// Names the one job of an entry of another version, so its refusal can be sent.
    pub const JOB_ID: &str = "job";
    pub const REPLY_TO: &str = "reply_to";
    pub const WORKER: &str = "worker";
    /// Job entries: the ids of the jobs whose printed lines are streamed.
    pub const STREAM: &str = "stream";
    /// Reply entries: printed lines of streamed jobs, before the answers.
    pub const LINES: &str = "lines";
    /// Cancel entries: the cancelled jobs.
    pub const CANCEL: &str = "cancel";
}

mod status {
    pub const OK: &str = "ok";
    pub const SCRIPT: &str = "script";
    pub const LIMIT: &str = "limit";
    pub const DEADLINE: &str = "deadline";
    pub const UNAVAILABLE: &str = "unavailable";
    pub const OVERLOADED: &str = "overloaded";
    pub const NO_ANSWER: &str = "no_answer";
    pub const CANCELLED: &str = "cancelled";
}

/// A job as it travels through the circle's job stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireJob {
    /// Unique per reply stream.
    pub job_id: String,
    /// The asking server's reply stream (shared by the jobs of one entry).
    pub reply_to: Arc<str>,
    /// When the caller stops waiting, in Unix milliseconds.
    pub deadline_unix_ms: u64,
    pub script: String,
    /// Shared by the jobs of an entry with the same context (one server's jobs for one
    /// caller, or for callers who are not signed in), so it is built once for them.
    pub context: Arc<ScriptContext>,
    /// The caller wants each printed line as it is printed (listed in the entry's
    /// `stream` field).
    pub stream: bool,
}

/// A job (or a stream entry) that this worker cannot run. What could be read of it is
/// kept so the caller can still be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MalformedJob {
    pub job_id: Option<String>,
    pub reply_to: Option<Arc<str>>,
    pub reason: String,
}

/// One entry of the job stream as a worker read it: never without a job, so that every
/// entry is acknowledged once its jobs are answered. A job that cannot be read does not
/// spoil the others of its entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobEntry {
    /// The stream entry id.
    pub id: String,
    pub jobs: Vec<Result<WireJob, MalformedJob>>,
}

#[cfg(test)]
/// Entries as plain field/value lists, for the tests of this module's parts.
mod test_support {
    /// `fields` as the pairs a reader takes.
    pub(super) fn pairs<'a>(
        fields: &'a [(&'a str, Vec<u8>)],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        fields.iter().map(|(k, v)| (k.as_bytes(), v.as_slice()))
    }
}
