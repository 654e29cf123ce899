//! How jobs and answers are written into Redis stream entries, and read back.
//!
//! Plain stream fields rather than one serialized blob: entries stay readable with
//! `redis-cli XRANGE`, and the crate needs no serialization library. Every job carries a
//! format version so a worker can refuse (with an answer, not silence) a job written by a
//! newer server it does not understand.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::redis::Value;
use ::redis::streams::StreamId;

use crate::{ExecutorError, ScriptContext, ScriptOutput};

/// The job format this crate writes and reads.
pub(crate) const FORMAT_VERSION: &str = "1";

mod field {
    pub const VERSION: &str = "v";
    pub const JOB_ID: &str = "job";
    pub const REPLY_TO: &str = "reply_to";
    pub const DEADLINE_MS: &str = "deadline_ms";
    pub const SCRIPT: &str = "script";
    pub const CIRCLE_NAME: &str = "circle_name";
    pub const CIRCLE_PUBLIC_KEY: &str = "circle_public_key";
    pub const CALLER_PUBLIC_KEY: &str = "caller_public_key";
    pub const STATUS: &str = "status";
    pub const OUTPUT: &str = "output";
    pub const MESSAGE: &str = "message";
    pub const LIMIT: &str = "limit";
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
    /// Unique per job: the server's instance id and a sequence number.
    pub job_id: String,
    /// The asking server's reply stream.
    pub reply_to: String,
    /// When the caller stops waiting, in Unix milliseconds.
    pub deadline_unix_ms: u64,
    pub script: String,
    pub context: ScriptContext,
}

/// A stream entry that is not a job this worker can run. What could be read of it is kept
/// so the caller can still be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MalformedJob {
    pub job_id: Option<String>,
    pub reply_to: Option<String>,
    pub reason: String,
}

impl WireJob {
    /// The entry's fields, in `XADD` order.
    pub fn fields(&self) -> [(&'static str, String); 8] {
        [
            (field::VERSION, FORMAT_VERSION.to_owned()),
            (field::JOB_ID, self.job_id.clone()),
            (field::REPLY_TO, self.reply_to.clone()),
            (field::DEADLINE_MS, self.deadline_unix_ms.to_string()),
            (field::CIRCLE_NAME, self.context.circle_name.clone()),
            (
                field::CIRCLE_PUBLIC_KEY,
                self.context.circle_public_key.clone(),
            ),
            (
                field::CALLER_PUBLIC_KEY,
                self.context.caller_public_key.clone(),
            ),
            (field::SCRIPT, self.script.clone()),
        ]
    }

    /// Reads a job from a stream entry written by [`WireJob::fields`].
    pub fn from_entry(entry: &StreamId) -> Result<WireJob, MalformedJob> {
        let text = |name: &str| entry.get::<String>(name);
        let job_id = text(field::JOB_ID);
        let reply_to = text(field::REPLY_TO);
        let malformed = |reason: String| MalformedJob {
            job_id: job_id.clone(),
            reply_to: reply_to.clone(),
            reason,
        };
        match text(field::VERSION).as_deref() {
            Some(FORMAT_VERSION) => {}
            Some(other) => {
                return Err(malformed(format!(
                    "job format version {other:?} is not understood by this worker (it reads version {FORMAT_VERSION}); upgrade the worker"
                )));
            }
            None => return Err(malformed("the job has no format version".into())),
        }
        let required = |name: &str| {
            text(name).ok_or_else(|| malformed(format!("the job has no text field {name:?}")))
        };
        let deadline_text = required(field::DEADLINE_MS)?;
        let deadline_unix_ms = deadline_text
            .parse::<u64>()
            .map_err(|_| malformed(format!("bad deadline {deadline_text:?}")))?;
        Ok(WireJob {
            job_id: required(field::JOB_ID)?,
            reply_to: required(field::REPLY_TO)?,
            deadline_unix_ms,
            script: required(field::SCRIPT)?,
            context: ScriptContext {
                circle_name: required(field::CIRCLE_NAME)?,
                circle_public_key: required(field::CIRCLE_PUBLIC_KEY)?,
                caller_public_key: required(field::CALLER_PUBLIC_KEY)?,
            },
        })
    }
}

/// The fields of the answer to job `job_id`, written by worker `worker`.
pub(crate) fn reply_fields(
    job_id: &str,
    result: &Result<ScriptOutput, ExecutorError>,
    worker: &str,
) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        (field::JOB_ID, job_id.to_owned()),
        (field::WORKER, worker.to_owned()),
    ];
    match result {
        Ok(output) => {
            fields.push((field::STATUS, status::OK.into()));
            fields.push((field::OUTPUT, output.output.clone()));
        }
        Err(error) => {
            let (status, message) = match error {
                ExecutorError::Script(message) => (status::SCRIPT, message.clone()),
                ExecutorError::Limit { limit, message } => {
                    fields.push((field::LIMIT, limit.as_str().into()));
                    (status::LIMIT, message.clone())
                }
                ExecutorError::DeadlineExceeded => (status::DEADLINE, String::new()),
                ExecutorError::Unavailable(message) => (status::UNAVAILABLE, message.clone()),
                ExecutorError::Overloaded(message) => (status::OVERLOADED, message.clone()),
                ExecutorError::NoAnswer(message) => (status::NO_ANSWER, message.clone()),
            };
            fields.push((field::STATUS, status.into()));
            fields.push((field::MESSAGE, message));
        }
    }
    fields
}

/// Reads an answer written by [`reply_fields`] from its field/value pairs: the job id and
/// the result for its caller. Works on the raw values, without building a map per entry.
///
/// An answer this server cannot read still resolves its caller (as `Unavailable`) when the
/// job id is readable, so a version mismatch shows as an error, not as a timeout.
pub(crate) fn read_reply<'a>(
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Option<(String, Result<ScriptOutput, ExecutorError>)> {
    let (mut job_id, mut status, mut output, mut message, mut limit) =
        (None, None, None, None, None);
    for (name, value) in fields {
        let slot = match name {
            b"job" => &mut job_id,
            b"status" => &mut status,
            b"output" => &mut output,
            b"message" => &mut message,
            b"limit" => &mut limit,
            _ => continue,
        };
        *slot = std::str::from_utf8(value).ok();
    }
    let job_id = job_id?.to_owned();
    let message = message.unwrap_or_default().to_owned();
    let result = match status {
        Some(status::OK) => match output {
            Some(output) => Ok(ScriptOutput {
                output: output.to_owned(),
            }),
            None => Err(unreadable("an ok answer without output")),
        },
        Some(status::SCRIPT) => Err(ExecutorError::Script(message)),
        Some(status::LIMIT) => match limit.map(str::parse) {
            Some(Ok(limit)) => Err(ExecutorError::Limit { limit, message }),
            _ => Err(unreadable("a limit answer without a known limit kind")),
        },
        Some(status::DEADLINE) => Err(ExecutorError::DeadlineExceeded),
        Some(status::UNAVAILABLE) => Err(ExecutorError::Unavailable(message)),
        Some(status::OVERLOADED) => Err(ExecutorError::Overloaded(message)),
        Some(status::NO_ANSWER) => Err(ExecutorError::NoAnswer(message)),
        Some(_) | None => Err(unreadable("an answer with an unknown status")),
    };
    Some((job_id, result))
}

/// Reads every answer of one reply entry: a worker writes the answers of one batch for
/// one server as one entry, each answer's fields ([`reply_fields`]) after the previous
/// one's, each starting with its job id. Calls `each` per answer (`None`: unreadable).
pub(crate) fn read_replies<'a>(
    fields: &mut dyn Iterator<Item = (&'a [u8], &'a [u8])>,
    mut each: impl FnMut(Option<(String, Result<ScriptOutput, ExecutorError>)>),
) {
    let mut fields = fields.peekable();
    while let Some(first) = fields.next() {
        let rest =
            std::iter::from_fn(|| fields.next_if(|(name, _)| *name != field::JOB_ID.as_bytes()));
        each(read_reply(std::iter::once(first).chain(rest)));
    }
}

/// Calls `each` with the id and the field/value pairs of every entry of an `XREAD` reply
/// (RESP2 arrays or RESP3 maps), straight from the reply: no map, no copy per entry.
/// Returns the id of the last entry seen.
pub(crate) fn for_each_entry<'a>(
    reply: &'a Value,
    mut each: impl FnMut(&'a [u8], &mut dyn Iterator<Item = (&'a [u8], &'a [u8])>),
) -> Option<&'a [u8]> {
    fn bytes(value: &Value) -> Option<&[u8]> {
        match value {
            Value::BulkString(bytes) => Some(bytes),
            Value::SimpleString(text) => Some(text.as_bytes()),
            _ => None,
        }
    }
    let streams: Vec<&Value> = match reply {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|stream| match stream {
                Value::Array(pair) if pair.len() == 2 => Some(&pair[1]),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    let mut last = None;
    for entries in streams {
        let Value::Array(entries) = entries else {
            continue;
        };
        for entry in entries {
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

/// `deadline` (a monotonic instant of this process) as Unix milliseconds, for another
/// machine to read.
pub(crate) fn unix_ms_at(deadline: Instant) -> u64 {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let remaining_ms = u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX);
    unix_now_ms().saturating_add(remaining_ms)
}

/// The instant of this process at Unix milliseconds `unix_ms` (now, if that has passed).
pub(crate) fn instant_at(unix_ms: u64) -> Instant {
    let remaining = Duration::from_millis(unix_ms.saturating_sub(unix_now_ms()));
    Instant::now()
        .checked_add(remaining)
        // Only a deadline centuries away overflows; a day is as good as forever here.
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(24 * 60 * 60))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::LimitKind;

    fn entry(fields: &[(&str, String)]) -> StreamId {
        StreamId {
            id: "1-0".into(),
            map: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::BulkString(v.clone().into_bytes())))
                .collect::<HashMap<_, _>>(),
            ..StreamId::default()
        }
    }

    fn pairs<'a>(fields: &'a [(&'a str, String)]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        fields.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes()))
    }

    fn job() -> WireJob {
        WireJob {
            job_id: "abc-1".into(),
            reply_to: "circle:k:replies:abc".into(),
            deadline_unix_ms: 1_700_000_000_123,
            script: "print(\"hé\"); 40 + 2".into(),
            context: ScriptContext {
                circle_name: "garden".into(),
                circle_public_key: "02ab".into(),
                caller_public_key: String::new(),
            },
        }
    }

    #[test]
    fn jobs_round_trip() {
        let job = job();
        assert_eq!(WireJob::from_entry(&entry(&job.fields())), Ok(job));
    }

    #[test]
    fn a_job_of_another_version_is_refused_with_its_reply_address() {
        let mut fields = job().fields().to_vec();
        fields[0].1 = "2".into();
        let err = WireJob::from_entry(&entry(&fields)).unwrap_err();
        assert_eq!(err.job_id.as_deref(), Some("abc-1"));
        assert_eq!(err.reply_to.as_deref(), Some("circle:k:replies:abc"));
        assert!(err.reason.contains("version"), "{}", err.reason);

        let fields: Vec<_> = job()
            .fields()
            .into_iter()
            .filter(|(name, _)| *name != field::SCRIPT)
            .collect();
        let err = WireJob::from_entry(&entry(&fields)).unwrap_err();
        assert!(err.reason.contains("script"), "{}", err.reason);
    }

    #[test]
    fn every_answer_round_trips() {
        let results = [
            Ok(ScriptOutput {
                output: "hi\n42".into(),
            }),
            Ok(ScriptOutput {
                output: String::new(),
            }),
            Err(ExecutorError::Script("bad at line 1".into())),
            Err(ExecutorError::Limit {
                limit: LimitKind::Operations,
                message: "too many".into(),
            }),
            Err(ExecutorError::DeadlineExceeded),
            Err(ExecutorError::Unavailable("down".into())),
            Err(ExecutorError::Overloaded("busy".into())),
            Err(ExecutorError::NoAnswer("late".into())),
        ];
        for result in results {
            let (id, back) = read_reply(pairs(&reply_fields("j-1", &result, "w"))).unwrap();
            assert_eq!(id, "j-1");
            assert_eq!(format!("{back:?}"), format!("{result:?}"));
        }
    }

    #[test]
    fn an_unreadable_answer_still_reaches_its_caller() {
        let (id, result) = read_reply(pairs(&[
            (field::JOB_ID, "j-2".into()),
            (field::STATUS, "teleported".into()),
        ]))
        .unwrap();
        assert_eq!(id, "j-2");
        assert_eq!(result.unwrap_err().code(), -32005);
        assert!(read_reply(pairs(&[(field::STATUS, "ok".into())])).is_none());
    }

    #[test]
    fn xread_replies_are_walked_without_maps() {
        let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        let entry = |id: &str, fields: &[&str]| {
            Value::Array(vec![
                bulk(id),
                Value::Array(fields.iter().map(|f| bulk(f)).collect()),
            ])
        };
        let entries = Value::Array(vec![
            entry("1-0", &["job", "a", "status", "ok", "output", "1"]),
            entry("2-0", &["job", "b", "status", "script", "message", "bad"]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("k"), entries.clone()])]);
        let resp3 = Value::Map(vec![(bulk("k"), entries)]);
        for reply in [resp2, resp3] {
            let mut seen = Vec::new();
            let last = for_each_entry(&reply, |id, fields| {
                let (job, result) = read_reply(fields).unwrap();
                seen.push((
                    String::from_utf8(id.to_vec()).unwrap(),
                    job,
                    format!("{result:?}"),
                ));
            });
            assert_eq!(last, Some(&b"2-0"[..]));
            assert_eq!(seen.len(), 2);
            assert_eq!(seen[0].1, "a");
            assert!(seen[0].2.contains("\"1\""), "{seen:?}");
            assert_eq!(seen[1].1, "b");
        }
        assert_eq!(for_each_entry(&Value::Nil, |_, _| panic!()), None);
    }

    #[test]
    fn an_entry_carries_several_answers() {
        let results = [
            Ok(ScriptOutput { output: "1".into() }),
            Err(ExecutorError::Limit {
                limit: LimitKind::Operations,
                message: "too many".into(),
            }),
            Err(ExecutorError::DeadlineExceeded),
            Ok(ScriptOutput {
                output: String::new(),
            }),
        ];
        let mut fields = Vec::new();
        for (n, result) in results.iter().enumerate() {
            fields.extend(reply_fields(&format!("j-{n}"), result, "w"));
        }
        let mut back = Vec::new();
        read_replies(&mut pairs(&fields), |answer| back.push(answer.unwrap()));
        assert_eq!(back.len(), results.len());
        for (n, ((id, got), sent)) in back.iter().zip(&results).enumerate() {
            assert_eq!(id, &format!("j-{n}"));
            assert_eq!(format!("{got:?}"), format!("{sent:?}"));
        }
        let mut count = 0;
        read_replies(&mut pairs(&[(field::STATUS, "ok".into())]), |answer| {
            assert!(answer.is_none());
            count += 1;
        });
        assert_eq!(count, 1);
    }

    #[test]
    fn deadlines_cross_as_wall_clock_time() {
        let in_two_seconds = Instant::now() + Duration::from_secs(2);
        let unix = unix_ms_at(in_two_seconds);
        let now = unix_now_ms();
        assert!(
            (now + 1_900..=now + 2_100).contains(&unix),
            "{unix} vs {now}"
        );
        let back = instant_at(unix);
        let diff = back
            .saturating_duration_since(in_two_seconds)
            .max(in_two_seconds.saturating_duration_since(back));
        assert!(diff < Duration::from_millis(50), "{diff:?}");
        assert!(instant_at(0) <= Instant::now());
    }
}
