//! Job entries: a server writes its queued jobs as lines of one `jobs` field
//! ([`encode_job`]); a worker reads each job on its own ([`read_job_entry`]), so one it
//! cannot read is refused alone and the others of its entry still run.

use std::sync::Arc;

use super::frame::{Lines, parse_number, push_number, push_sized};
use super::{FORMAT_VERSION, JobEntry, MalformedJob, WireJob, field};
use crate::ScriptContext;

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
        let Some(frame) = Frame::read(&mut lines) else {
            jobs.push(Err(MalformedJob {
                job_id: None,
                reply_to: reply_to.cloned(),
                reason: "the job entry is cut short or garbled".into(),
            }));
            return;
        };
        jobs.push(decode_job(&frame, reply_to, &mut previous_context));
    }
}

/// One job line, cut into its parts but not yet checked.
struct Frame<'a> {
    job_id: &'a [u8],
    deadline: &'a [u8],
    circle_name: &'a [u8],
    circle_public_key: &'a [u8],
    caller_public_key: &'a [u8],
    script: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The next line of `lines` (`None`: a broken frame).
    fn read(lines: &mut Lines<'a>) -> Option<Self> {
        Some(Frame {
            job_id: lines.word()?,
            deadline: lines.word()?,
            circle_name: lines.sized(b' ')?,
            circle_public_key: lines.sized(b' ')?,
            caller_public_key: lines.sized(b' ')?,
            script: lines.sized(b'\n')?,
        })
    }
}

/// Checks and copies one job; `previous_context` is the context of the job before it in
/// the field, reused when this one's is the same.
fn decode_job(
    frame: &Frame<'_>,
    reply_to: Option<&Arc<str>>,
    previous_context: &mut Option<Arc<ScriptContext>>,
) -> Result<WireJob, MalformedJob> {
    let job_id = String::from_utf8_lossy(frame.job_id).into_owned();
    let malformed = |reason: &str| MalformedJob {
        job_id: Some(job_id.clone()),
        reply_to: reply_to.cloned(),
        reason: reason.to_owned(),
    };
    let Some(reply_to) = reply_to else {
        return Err(malformed("the job entry has no reply stream"));
    };
    let Some(deadline_unix_ms) = parse_number(frame.deadline) else {
        return Err(malformed("the job's deadline is not a number"));
    };
    let (Ok(script), Some(context)) = (
        std::str::from_utf8(frame.script),
        context_of(frame, previous_context),
    ) else {
        return Err(malformed("the job is not UTF-8 text"));
    };
    Ok(WireJob {
        job_id,
        reply_to: Arc::clone(reply_to),
        deadline_unix_ms,
        script: script.to_owned(),
        context,
        stream: false,
    })
}

/// The context of the job in `frame`: `previous`'s when it is the same (one server's jobs
/// for one caller, or for callers who are not signed in), otherwise a new one, which
/// becomes `previous`. `None`: a text that is not UTF-8.
fn context_of(
    frame: &Frame<'_>,
    previous: &mut Option<Arc<ScriptContext>>,
) -> Option<Arc<ScriptContext>> {
    let same_as_previous = previous.as_ref().filter(|context| {
        context.circle_name.as_bytes() == frame.circle_name
            && context.circle_public_key.as_bytes() == frame.circle_public_key
            && context.caller_public_key.as_bytes() == frame.caller_public_key
    });
    if let Some(context) = same_as_previous {
        return Some(Arc::clone(context));
    }
    let text = |bytes| std::str::from_utf8(bytes).ok().map(str::to_owned);
    let context = Arc::new(ScriptContext {
        circle_name: text(frame.circle_name)?,
        circle_public_key: text(frame.circle_public_key)?,
        caller_public_key: text(frame.caller_public_key)?,
    });
    *previous = Some(Arc::clone(&context));
    Some(context)
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
    let mut streaming: Option<&[u8]> = None;
    for (name, value) in fields {
        if name == field::REPLY_TO.as_bytes() {
            reply_to = std::str::from_utf8(value).ok().map(Arc::<str>::from);
        } else if name == field::JOBS.as_bytes() {
            decode_jobs(value, reply_to.as_ref(), &mut jobs);
        } else if name == field::STREAM.as_bytes() {
            streaming = Some(value);
        }
    }
    // Only entries with a streamed job carry the field: plain ones skip this.
    if let Some(streaming) = streaming {
        for job in jobs.iter_mut().flatten() {
            job.stream = super::control::lists_job(streaming, &job.job_id);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::wire::test_support::pairs;

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
            stream: false,
        }
    }

    /// A version-2 entry as the dispatcher writes it.
    fn v2_entry(jobs: &[WireJob]) -> Vec<(&'static str, Vec<u8>)> {
        let mut fields: Vec<(&'static str, Vec<u8>)> = job_entry_header(&jobs[0].reply_to)
            .iter()
            .map(|(name, value)| (*name, value.as_bytes().to_vec()))
            .collect();
        let mut streaming = Vec::new();
        for job in jobs.iter().filter(|job| job.stream) {
            crate::redis::wire::push_streaming_job(&mut streaming, job.job_id.parse().unwrap());
        }
        if !streaming.is_empty() {
            fields.push((crate::redis::wire::STREAM_FIELD, streaming));
        }
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
        signed_in.stream = true;
        let jobs = [job("1", "1"), signed_in, job("5", "1")];
        let read: Vec<WireJob> = read_job_entry(b"8-0", &mut pairs(&v2_entry(&jobs)))
            .jobs
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(read, jobs);
        assert_eq!(read[1].context.caller_public_key, "03cafe");
        assert!(read[1].stream && !read[0].stream && !read[2].stream);
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
}
