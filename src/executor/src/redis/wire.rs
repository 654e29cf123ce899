//! How jobs and answers are written into Redis stream entries, and read back.
//!
//! Plain stream fields rather than one serialized blob: entries stay readable with
//! `redis-cli XRANGE`, and the crate needs no serialization library. Every job entry
//! carries a format version so a worker can refuse (with an answer, not silence) a job
//! written by a newer server it does not understand.
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
//! `status` is `ok` (payload: the output), `script`, `unavailable`, `overloaded`,
//! `no_answer` (payload: the message), `limit` (payload: `{limit kind}:{message}`) or
//! `deadline` (empty payload). A reply entry of another version, or without one, is not
//! read: each of its answers that can be found resolves its caller as unavailable.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::redis::Value;

use crate::{ExecutorError, ScriptContext, ScriptOutput};

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
}

mod status {
    pub const OK: &str = "ok";
    pub const SCRIPT: &str = "script";
    pub const LIMIT: &str = "limit";
    pub const DEADLINE: &str = "deadline";
    pub const UNAVAILABLE: &str = "unavailable";
    pub const OVERLOADED: &str = "overloaded";
    pub const NO_ANSWER: &str = "no_answer";
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

/// The header fields of a version-2 job entry for the reply stream `reply_to`, in `XADD`
/// order; the `jobs` field ([`JOBS_FIELD`], the jobs written by [`encode_job`]) follows.
pub(crate) fn job_entry_header(reply_to: &str) -> [(&'static str, &str); 2] {
    [
        (field::VERSION, FORMAT_VERSION),
        (field::REPLY_TO, reply_to),
    ]
}

/// The name of the field holding a version-2 entry's jobs.
pub(crate) const JOBS_FIELD: &str = field::JOBS;

/// Appends one job, as a line of a version-2 entry's `jobs` field, to `out`.
pub(crate) fn encode_job(
    out: &mut Vec<u8>,
    job_id: u64,
    deadline_unix_ms: u64,
    context: &ScriptContext,
    script: &str,
) {
    out.reserve(
        64 + context.circle_name.len()
            + context.circle_public_key.len()
            + context.caller_public_key.len()
            + script.len(),
    );
    push_number(out, job_id);
    out.push(b' ');
    push_number(out, deadline_unix_ms);
    for text in [
        context.circle_name.as_str(),
        &context.circle_public_key,
        &context.caller_public_key,
    ] {
        out.push(b' ');
        push_sized(out, text.as_bytes());
    }
    out.push(b' ');
    push_sized(out, script.as_bytes());
    out.push(b'\n');
}

/// `n` in decimal, through `itoa` rather than `core::fmt` (which costs more than the
/// rest of a job's encoding).
fn push_number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `{len}:{bytes}`.
fn push_sized(out: &mut Vec<u8>, bytes: &[u8]) {
    push_number(out, bytes.len() as u64);
    out.push(b':');
    out.extend_from_slice(bytes);
}

/// A reader of the lines of version-2 `jobs` and `answers` fields. `None` from any method
/// means the frame is broken: nothing after it in the field can be trusted.
struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Lines<'a> {
    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The bytes up to the next space (which is consumed).
    fn word(&mut self) -> Option<&'a [u8]> {
        let end = self.rest.iter().position(|&b| b == b' ')?;
        let word = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Some(word)
    }

    /// `{len}:{bytes}`, followed by `end` (consumed).
    fn sized(&mut self, end: u8) -> Option<&'a [u8]> {
        let colon = self.rest.iter().take(21).position(|&b| b == b':')?;
        let len = usize::try_from(parse_number(&self.rest[..colon])?).ok()?;
        let after = &self.rest[colon + 1..];
        if after.get(len) != Some(&end) {
            return None;
        }
        self.rest = &after[len + 1..];
        Some(&after[..len])
    }
}

/// A decimal number of at most 20 digits (`None`: anything else, or too large).
pub(crate) fn parse_number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &digit| {
        if digit.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        } else {
            None
        }
    })
}

/// Reads the jobs of a version-2 `jobs` field, each on its own: one whose content is bad
/// is refused alone; a broken frame refuses the rest of the field at once.
fn decode_jobs(
    value: &[u8],
    reply_to: Option<&Arc<str>>,
    jobs: &mut Vec<Result<WireJob, MalformedJob>>,
) {
    let mut lines = Lines { rest: value };
    let mut previous_context: Option<Arc<ScriptContext>> = None;
    while !lines.is_empty() {
        let frame = (|| {
            let job_id = lines.word()?;
            let deadline = lines.word()?;
            let circle_name = lines.sized(b' ')?;
            let circle_public_key = lines.sized(b' ')?;
            let caller_public_key = lines.sized(b' ')?;
            let script = lines.sized(b'\n')?;
            Some((
                job_id,
                deadline,
                [circle_name, circle_public_key, caller_public_key, script],
            ))
        })();
        let Some((job_id, deadline, texts)) = frame else {
            jobs.push(Err(MalformedJob {
                job_id: None,
                reply_to: reply_to.cloned(),
                reason: "the job entry is cut short or garbled".into(),
            }));
            return;
        };
        let job_id = String::from_utf8_lossy(job_id).into_owned();
        let malformed = |reason: &str| MalformedJob {
            job_id: Some(job_id.clone()),
            reply_to: reply_to.cloned(),
            reason: reason.to_owned(),
        };
        let Some(reply_to) = reply_to else {
            jobs.push(Err(malformed("the job entry has no reply stream")));
            continue;
        };
        let Some(deadline_unix_ms) = parse_number(deadline) else {
            jobs.push(Err(malformed("the job's deadline is not a number")));
            continue;
        };
        let [circle_name, circle_public_key, caller_public_key, script] = texts;
        let Ok(script) = std::str::from_utf8(script) else {
            jobs.push(Err(malformed("the job is not UTF-8 text")));
            continue;
        };
        let same_as_previous = previous_context.as_ref().filter(|context| {
            context.circle_name.as_bytes() == circle_name
                && context.circle_public_key.as_bytes() == circle_public_key
                && context.caller_public_key.as_bytes() == caller_public_key
        });
        let context = match same_as_previous {
            Some(context) => Arc::clone(context),
            None => {
                let text = |bytes| std::str::from_utf8(bytes).map(str::to_owned);
                let (Ok(circle_name), Ok(circle_public_key), Ok(caller_public_key)) = (
                    text(circle_name),
                    text(circle_public_key),
                    text(caller_public_key),
                ) else {
                    jobs.push(Err(malformed("the job is not UTF-8 text")));
                    continue;
                };
                let context = Arc::new(ScriptContext {
                    circle_name,
                    circle_public_key,
                    caller_public_key,
                });
                previous_context = Some(Arc::clone(&context));
                context
            }
        };
        jobs.push(Ok(WireJob {
            job_id,
            reply_to: Arc::clone(reply_to),
            deadline_unix_ms,
            script: script.to_owned(),
            context,
        }));
    }
}

/// Reads one job stream entry from its id and field/value pairs.
pub(crate) fn read_job_entry<'a>(
    id: &[u8],
    fields: &mut dyn Iterator<Item = (&'a [u8], &'a [u8])>,
) -> JobEntry {
    let id = String::from_utf8_lossy(id).into_owned();
    let mut fields = fields.peekable();
    let version = fields
        .next_if(|(name, _)| *name == field::VERSION.as_bytes())
        .map(|(_, value)| value);
    if version != Some(FORMAT_VERSION.as_bytes()) {
        return JobEntry {
            id,
            jobs: vec![Err(refuse_version(version, fields))],
        };
    }
    let mut reply_to = None;
    let mut jobs = Vec::new();
    for (name, value) in fields {
        match name {
            b"reply_to" => {
                reply_to = std::str::from_utf8(value).ok().map(Arc::<str>::from);
            }
            b"jobs" => decode_jobs(value, reply_to.as_ref(), &mut jobs),
            _ => {}
        }
    }
    if jobs.is_empty() {
        jobs.push(Err(MalformedJob {
            job_id: None,
            reply_to,
            reason: "the job entry holds no job".into(),
        }));
    }
    JobEntry { id, jobs }
}

/// The refusal of an entry of a version this worker does not know (`None`: no version),
/// addressed to the job its `job` and `reply_to` fields name, if they do.
fn refuse_version<'a>(
    version: Option<&[u8]>,
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> MalformedJob {
    let (mut job_id, mut reply_to) = (None, None);
    for (name, value) in fields {
        let slot = if name == field::JOB_ID.as_bytes() {
            &mut job_id
        } else if name == field::REPLY_TO.as_bytes() {
            &mut reply_to
        } else {
            continue;
        };
        *slot = std::str::from_utf8(value).ok();
    }
    let reason = match version {
        Some(other) => format!(
            "job format version {:?} is not understood by this worker (it reads version {FORMAT_VERSION}); upgrade the worker",
            String::from_utf8_lossy(other)
        ),
        None => "the job has no format version".into(),
    };
    MalformedJob {
        job_id: job_id.map(str::to_owned),
        reply_to: reply_to.map(Arc::<str>::from),
        reason,
    }
}

/// Appends the answer to job `job_id`, as a line of a version-2 reply entry's `answers`
/// field, to `out`.
pub(crate) fn encode_answer(
    out: &mut Vec<u8>,
    job_id: &str,
    result: &Result<ScriptOutput, ExecutorError>,
) {
    let (status, limit, text): (&str, Option<&str>, &str) = match result {
        Ok(output) => (status::OK, None, &output.output),
        Err(ExecutorError::Script(message)) => (status::SCRIPT, None, message),
        Err(ExecutorError::Limit { limit, message }) => {
            (status::LIMIT, Some(limit.as_str()), message)
        }
        Err(ExecutorError::DeadlineExceeded) => (status::DEADLINE, None, ""),
        Err(ExecutorError::Unavailable(message)) => (status::UNAVAILABLE, None, message),
        Err(ExecutorError::Overloaded(message)) => (status::OVERLOADED, None, message),
        Err(ExecutorError::NoAnswer(message)) => (status::NO_ANSWER, None, message),
    };
    let payload_len = limit.map_or(0, |kind| kind.len() + 1) + text.len();
    out.reserve(job_id.len() + status.len() + payload_len + 26);
    out.extend_from_slice(job_id.as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.as_bytes());
    out.push(b' ');
    push_number(out, payload_len as u64);
    out.push(b':');
    if let Some(kind) = limit {
        out.extend_from_slice(kind.as_bytes());
        out.push(b':');
    }
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
}

/// Reads a status and payload written by [`encode_answer`].
fn decode_result(status: &[u8], payload: &[u8]) -> Result<ScriptOutput, ExecutorError> {
    let Ok(payload) = std::str::from_utf8(payload) else {
        return Err(unreadable("an answer that is not UTF-8 text"));
    };
    match status {
        b"ok" => Ok(ScriptOutput {
            output: payload.to_owned(),
        }),
        b"script" => Err(ExecutorError::Script(payload.to_owned())),
        b"limit" => match payload
            .split_once(':')
            .and_then(|(kind, message)| Some((kind.parse().ok()?, message)))
        {
            Some((limit, message)) => Err(ExecutorError::Limit {
                limit,
                message: message.to_owned(),
            }),
            None => Err(unreadable("a limit answer without a known limit kind")),
        },
        b"deadline" => Err(ExecutorError::DeadlineExceeded),
        b"unavailable" => Err(ExecutorError::Unavailable(payload.to_owned())),
        b"overloaded" => Err(ExecutorError::Overloaded(payload.to_owned())),
        b"no_answer" => Err(ExecutorError::NoAnswer(payload.to_owned())),
        _ => Err(unreadable("an answer with an unknown status")),
    }
}

/// The header fields of a version-2 reply entry written by worker `worker`, in `XADD`
/// order; the `answers` field ([`ANSWERS_FIELD`], written by [`encode_answer`]) follows.
pub(crate) fn reply_header(worker: &str) -> [(&'static str, &str); 2] {
    [(field::VERSION, FORMAT_VERSION), (field::WORKER, worker)]
}

/// The name of the field holding a version-2 reply entry's answers.
pub(crate) const ANSWERS_FIELD: &str = field::ANSWERS;

/// Reads every answer of one reply entry and calls `each` with the job id and the result
/// per answer (`None`: an answer without a readable job id, or an entry without a version).
///
/// An answer of a version this server cannot read still resolves its caller (as
/// `Unavailable`) when its job id can be found, so a version mismatch shows as an error,
/// not as a timeout.
pub(crate) fn read_replies<'a>(
    fields: &mut dyn Iterator<Item = (&'a [u8], &'a [u8])>,
    mut each: impl FnMut(Option<(&'a [u8], Result<ScriptOutput, ExecutorError>)>),
) {
    let mut fields = fields.peekable();
    let Some((_, version)) = fields.next_if(|(name, _)| *name == field::VERSION.as_bytes()) else {
        each(None);
        return;
    };
    let known = version == FORMAT_VERSION.as_bytes();
    for (name, value) in fields {
        if name != field::ANSWERS.as_bytes() {
            continue;
        }
        let mut lines = Lines { rest: value };
        while !lines.is_empty() {
            let Some((job_id, status, payload)) =
                (|| Some((lines.word()?, lines.word()?, lines.sized(b'\n')?)))()
            else {
                // A broken frame: the answers after it cannot be found.
                each(None);
                break;
            };
            let result = if known {
                decode_result(status, payload)
            } else {
                Err(unreadable(
                    "an answer in a format this server does not know",
                ))
            };
            each(Some((job_id, result)));
        }
    }
}

/// Calls `each` with the id and the field/value pairs of every entry of an `XREAD` or
/// `XREADGROUP` reply (RESP2 arrays or RESP3 maps), straight from the reply: no map, no
/// copy per entry. Returns the id of the last entry seen.
pub(crate) fn for_each_entry<'a>(
    reply: &'a Value,
    mut each: impl FnMut(&'a [u8], &mut dyn Iterator<Item = (&'a [u8], &'a [u8])>),
) -> Option<&'a [u8]> {
    let mut last = None;
    let mut walk = |entries: &'a Value| {
        if let Some(id) = for_each_listed_entry(entries, &mut each) {
            last = Some(id);
        }
    };
    match reply {
        Value::Array(streams) => {
            for stream in streams {
                if let Value::Array(pair) = stream
                    && let [_, entries] = pair.as_slice()
                {
                    walk(entries);
                }
            }
        }
        Value::Map(streams) => {
            for (_, entries) in streams {
                walk(entries);
            }
        }
        _ => {}
    }
    last
}

/// What `XAUTOCLAIM` answered: calls `each` per claimed entry, and returns the cursor for
/// the next call and how many claimed entries had been deleted from the stream.
pub(crate) fn for_each_claimed<'a>(
    reply: &'a Value,
    mut each: impl FnMut(&'a [u8], &mut dyn Iterator<Item = (&'a [u8], &'a [u8])>),
) -> Option<(String, usize)> {
    let Value::Array(parts) = reply else {
        return None;
    };
    let cursor = std::str::from_utf8(bytes(parts.first()?)?).ok()?.to_owned();
    if let Some(entries) = parts.get(1) {
        for_each_listed_entry(entries, &mut each);
    }
    let deleted = match parts.get(2) {
        Some(Value::Array(ids)) => ids.len(),
        _ => 0,
    };
    Some((cursor, deleted))
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

/// Walks a list of `[id, [field, value, …]]` entries; returns the last id.
fn for_each_listed_entry<'a>(
    entries: &'a Value,
    each: &mut impl FnMut(&'a [u8], &mut dyn Iterator<Item = (&'a [u8], &'a [u8])>),
) -> Option<&'a [u8]> {
    let Value::Array(entries) = entries else {
        return None;
    };
    let mut last = None;
    for entry in entries {
        // Redis 6.2's XAUTOCLAIM lists a deleted entry as nil; skip anything but an entry.
        let Value::Array(parts) = entry else { continue };
        let [id, fields] = parts.as_slice() else {
            continue;
        };
        let Some(id) = bytes(id) else { continue };
        let fields: &[Value] = match fields {
            Value::Array(fields) => fields,
            _ => &[],
        };
        let mut pairs = fields
            .chunks_exact(2)
            .filter_map(|pair| Some((bytes(&pair[0])?, bytes(&pair[1])?)));
        each(id, &mut pairs);
        last = Some(id);
    }
    last
}

fn unreadable(what: &str) -> ExecutorError {
    ExecutorError::Unavailable(format!(
        "a script worker sent {what}; are servers and workers the same version?"
    ))
}

/// Milliseconds since the Unix epoch now.
pub(crate) fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Both clocks read once: this process's monotonic now and Unix milliseconds now, for
/// [`unix_ms_at`].
pub(crate) fn clocks_now() -> (Instant, u64) {
    (Instant::now(), unix_now_ms())
}

/// `deadline` (a monotonic instant of this process) as Unix milliseconds, for another
/// machine to read, by `clocks` ([`clocks_now`]; read once for a batch of deadlines).
pub(crate) fn unix_ms_at(deadline: Instant, clocks: (Instant, u64)) -> u64 {
    let (now, unix_now_ms) = clocks;
    let remaining = deadline.saturating_duration_since(now);
    let remaining_ms = u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX);
    unix_now_ms.saturating_add(remaining_ms)
}

/// The instant of this process at Unix milliseconds `unix_ms` (now, if that has passed),
/// by `clocks` ([`clocks_now`]; read once for a batch of deadlines).
pub(crate) fn instant_at(unix_ms: u64, clocks: (Instant, u64)) -> Instant {
    let (now, unix_now_ms) = clocks;
    let remaining = Duration::from_millis(unix_ms.saturating_sub(unix_now_ms));
    now.checked_add(remaining)
        // Only a deadline centuries away overflows; a day is as good as forever here.
        .unwrap_or_else(|| now + Duration::from_secs(24 * 60 * 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LimitKind;

    fn pairs<'a>(fields: &'a [(&'a str, Vec<u8>)]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        fields.iter().map(|(k, v)| (k.as_bytes(), v.as_slice()))
    }

    fn read(fields: &[(&str, Vec<u8>)]) -> JobEntry {
        read_job_entry(b"7-0", &mut pairs(fields))
    }

    fn job(job_id: &str, script: &str) -> WireJob {
        WireJob {
            job_id: job_id.into(),
            reply_to: "circle:k:replies:abc".into(),
            deadline_unix_ms: 1_700_000_000_123,
            script: script.into(),
            context: Arc::new(ScriptContext {
                circle_name: "a garden: 2 words".into(),
                circle_public_key: "02ab".into(),
                caller_public_key: String::new(),
            }),
        }
    }

    /// A version-2 entry as the dispatcher writes it.
    fn v2_entry(jobs: &[WireJob]) -> Vec<(&'static str, Vec<u8>)> {
        let mut fields: Vec<(&'static str, Vec<u8>)> = job_entry_header(&jobs[0].reply_to)
            .iter()
            .map(|(name, value)| (*name, value.as_bytes().to_vec()))
            .collect();
        let mut encoded = Vec::new();
        for job in jobs {
            let id = job.job_id.parse().expect("numeric job id");
            encode_job(
                &mut encoded,
                id,
                job.deadline_unix_ms,
                &job.context,
                &job.script,
            );
        }
        fields.push((JOBS_FIELD, encoded));
        fields
    }

    #[test]
    fn an_entry_carries_several_jobs() {
        let jobs = [
            job("1", "print(\"hé\"); 40 + 2"),
            job("2", ""),
            job("3", "let s = \"1: 2 \"; s"),
        ];
        let entry = read(&v2_entry(&jobs));
        assert_eq!(entry.id, "7-0");
        let read: Vec<WireJob> = entry.jobs.into_iter().map(Result::unwrap).collect();
        assert_eq!(read, jobs);
        // One context for the jobs that share it, built once.
        assert!(Arc::ptr_eq(&read[0].context, &read[2].context));

        let mut signed_in = job("4", "1");
        signed_in.context = Arc::new(ScriptContext {
            caller_public_key: "03cafe".into(),
            ..(*signed_in.context).clone()
        });
        let jobs = [job("1", "1"), signed_in, job("5", "1")];
        let read: Vec<WireJob> = read_job_entry(b"8-0", &mut pairs(&v2_entry(&jobs)))
            .jobs
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(read, jobs);
        assert_eq!(read[1].context.caller_public_key, "03cafe");
    }

    #[test]
    fn one_bad_job_does_not_spoil_its_entry() {
        let good = |id: &str| {
            let mut line = Vec::new();
            let job = job(id, id);
            encode_job(&mut line, id.parse().unwrap(), 9, &job.context, &job.script);
            line
        };
        let bad_jobs: [&[u8]; 3] = [
            b"2 soon 0: 0: 0: 1:x\n",
            b"2 12 1:\xff 0: 0: 1:x\n",
            b"2 12 0: 0: 0: 1:\xff\n",
        ];
        for bad in bad_jobs {
            let mut fields = v2_entry(&[job("1", "1")]);
            fields[2].1 = [good("1"), bad.to_vec(), good("3")].concat();
            let entry = read(&fields);
            assert_eq!(entry.jobs.len(), 3, "{bad:?}");
            assert_eq!(entry.jobs[0].as_ref().unwrap().script, "1");
            let err = entry.jobs[1].as_ref().unwrap_err();
            assert_eq!(err.job_id.as_deref(), Some("2"));
            assert_eq!(err.reply_to.as_deref(), Some("circle:k:replies:abc"));
            assert_eq!(entry.jobs[2].as_ref().unwrap().script, "3");
        }
        // A broken frame: what came before it is kept, the rest is one refusal.
        for broken in [
            &b"2 12 99:x 0: 0: 1:x\n"[..],
            b"2 12 0: 0: 0: 1:xy\n",
            b"2 12",
        ] {
            let mut fields = v2_entry(&[job("1", "1")]);
            fields[2].1 = [good("1"), broken.to_vec(), good("3")].concat();
            let entry = read(&fields);
            assert_eq!(entry.jobs.len(), 2, "{broken:?}");
            assert!(entry.jobs[0].is_ok());
            let err = entry.jobs[1].as_ref().unwrap_err();
            assert_eq!(err.job_id, None);
            assert!(err.reason.contains("garbled"), "{}", err.reason);
        }
    }

    #[test]
    fn an_entry_without_a_reply_stream_or_jobs_is_still_one_item() {
        let mut fields = v2_entry(&[job("1", "1")]);
        fields.remove(1);
        let entry = read(&fields);
        let bad = entry.jobs[0].as_ref().unwrap_err();
        assert_eq!(bad.job_id.as_deref(), Some("1"));
        assert_eq!(bad.reply_to, None);

        let entry = read(&v2_entry(&[job("1", "1")])[..2]);
        assert_eq!(entry.jobs.len(), 1);
        assert!(entry.jobs[0].is_err());
    }

    #[test]
    fn a_job_of_another_version_is_refused_with_its_reply_address() {
        let fields: Vec<(&str, Vec<u8>)> = vec![
            (field::VERSION, b"9".to_vec()),
            (field::JOB_ID, b"abc-1".to_vec()),
            (field::REPLY_TO, b"circle:k:replies:abc".to_vec()),
        ];
        let entry = read(&fields);
        let err = entry.jobs[0].as_ref().unwrap_err();
        assert_eq!(err.job_id.as_deref(), Some("abc-1"));
        assert_eq!(err.reply_to.as_deref(), Some("circle:k:replies:abc"));
        assert!(err.reason.contains("version"), "{}", err.reason);
    }

    fn all_results() -> Vec<Result<ScriptOutput, ExecutorError>> {
        vec![
            Ok(ScriptOutput {
                output: "hi\n42: yes".into(),
            }),
            Ok(ScriptOutput {
                output: String::new(),
            }),
            Err(ExecutorError::Script("bad at line 1: x".into())),
            Err(ExecutorError::Limit {
                limit: LimitKind::Operations,
                message: "too many: 5".into(),
            }),
            Err(ExecutorError::DeadlineExceeded),
            Err(ExecutorError::Unavailable("down".into())),
            Err(ExecutorError::Overloaded("busy".into())),
            Err(ExecutorError::NoAnswer("late".into())),
        ]
    }

    #[test]
    fn every_answer_round_trips() {
        let results = all_results();
        let mut fields: Vec<(&str, Vec<u8>)> = reply_header("w")
            .iter()
            .map(|(name, value)| (*name, value.as_bytes().to_vec()))
            .collect();
        let mut answers = Vec::new();
        for (n, result) in results.iter().enumerate() {
            encode_answer(&mut answers, &n.to_string(), result);
        }
        fields.push((ANSWERS_FIELD, answers));
        let mut back = Vec::new();
        read_replies(&mut pairs(&fields), |answer| back.push(answer.unwrap()));
        assert_eq!(back.len(), results.len());
        for (n, ((id, got), sent)) in back.iter().zip(&results).enumerate() {
            assert_eq!(*id, n.to_string().as_bytes());
            assert_eq!(format!("{got:?}"), format!("{sent:?}"));
        }
    }

    #[test]
    fn an_unreadable_answer_still_reaches_its_caller() {
        let v2: Vec<(&str, Vec<u8>)> = vec![
            (field::VERSION, b"2".to_vec()),
            (ANSWERS_FIELD, b"j-2 teleported 0:\n".to_vec()),
        ];
        let v9: Vec<(&str, Vec<u8>)> = vec![
            (field::VERSION, b"9".to_vec()),
            (ANSWERS_FIELD, b"j-2 ok 1:1\n".to_vec()),
        ];
        for fields in [v2, v9] {
            let mut back = Vec::new();
            read_replies(&mut pairs(&fields), |answer| back.push(answer));
            let (id, result) = back[0].as_ref().unwrap();
            assert_eq!(*id, b"j-2");
            assert_eq!(result.as_ref().unwrap_err().code(), -32005);
        }
        for fields in [
            vec![(field::WORKER, b"w".to_vec())],
            vec![
                (field::VERSION, b"2".to_vec()),
                (ANSWERS_FIELD, b"1 ok 5:1\n".to_vec()),
            ],
        ] {
            let mut count = 0;
            read_replies(&mut pairs(&fields), |answer| {
                assert!(answer.is_none());
                count += 1;
            });
            assert_eq!(count, 1);
        }
    }

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn entry_value(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn xread_replies_are_walked_without_maps() {
        let entries = Value::Array(vec![
            entry_value("1-0", &["v", "2", "worker", "w", "answers", "a ok 1:1\n"]),
            entry_value(
                "2-0",
                &["v", "2", "worker", "w", "answers", "b script 3:bad\n"],
            ),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("k"), entries.clone()])]);
        let resp3 = Value::Map(vec![(bulk("k"), entries)]);
        for reply in [resp2, resp3] {
            let mut seen = Vec::new();
            let last = for_each_entry(&reply, |id, fields| {
                read_replies(fields, |answer| {
                    let (job, result) = answer.unwrap();
                    seen.push((id.to_vec(), job.to_vec(), format!("{result:?}")));
                });
            });
            assert_eq!(last, Some(&b"2-0"[..]));
            assert_eq!(seen.len(), 2);
            assert_eq!(seen[0].0, b"1-0");
            assert_eq!(seen[0].1, b"a");
            assert!(seen[0].2.contains("\"1\""), "{seen:?}");
            assert_eq!(seen[1].1, b"b");
        }
        assert_eq!(for_each_entry(&Value::Nil, |_, _| panic!()), None);
    }

    #[test]
    fn xautoclaim_replies_are_walked() {
        let reply = Value::Array(vec![
            bulk("5-0"),
            Value::Array(vec![
                entry_value(
                    "3-0",
                    &["v", "2", "reply_to", "r", "jobs", "1 0 0: 0: 0: 1:1\n"],
                ),
                Value::Nil,
            ]),
            Value::Array(vec![bulk("4-0")]),
        ]);
        let mut entries = Vec::new();
        let (cursor, deleted) = for_each_claimed(&reply, |id, fields| {
            entries.push(read_job_entry(id, fields));
        })
        .unwrap();
        assert_eq!(cursor, "5-0");
        assert_eq!(deleted, 1);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].id, "3-0");
        assert_eq!(entries[0].jobs[0].as_ref().unwrap().script, "1");
        assert!(for_each_claimed(&Value::Nil, |_, _| panic!()).is_none());
    }

    #[test]
    fn deadlines_cross_as_wall_clock_time() {
        let in_two_seconds = Instant::now() + Duration::from_secs(2);
        let unix = unix_ms_at(in_two_seconds, clocks_now());
        let now = unix_now_ms();
        assert!(
            (now + 1_900..=now + 2_100).contains(&unix),
            "{unix} vs {now}"
        );
        let back = instant_at(unix, clocks_now());
        let diff = back
            .saturating_duration_since(in_two_seconds)
            .max(in_two_seconds.saturating_duration_since(back));
        assert!(diff < Duration::from_millis(50), "{diff:?}");
        assert!(instant_at(0, clocks_now()) <= Instant::now());
    }
}
