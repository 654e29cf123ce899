//! What travels beside jobs and answers for protocol 1.1: cancel notices (servers to
//! workers, on the circle's cancel stream) and printed lines of streamed jobs (workers to
//! servers, in a `lines` field of a reply entry, before its `answers`).
//!
//! Both are written only for jobs that ask for them: an entry of plain jobs carries none of
//! this, so the fast path pays nothing.

use std::sync::Arc;

use super::frame::{Lines, parse_number, push_number, push_sized};
use super::{FORMAT_VERSION, field};

/// The name of the field of a job entry listing the ids of its jobs that stream their
/// lines (`{job id} {job id} …`, each followed by a space). Absent when none does.
pub(crate) const STREAM_FIELD: &str = field::STREAM;

/// The name of the field of a reply entry holding printed lines (`{job id} {len}:{line}\n`
/// each), written before the `answers` field so a job's lines are read before its answer.
pub(crate) const LINES_FIELD: &str = field::LINES;

/// The name of the field of a cancel entry holding its notices.
pub(crate) const CANCEL_FIELD: &str = field::CANCEL;

/// Appends job `job_id` to the value of a [`STREAM_FIELD`].
pub(crate) fn push_streaming_job(out: &mut Vec<u8>, job_id: u64) {
    push_number(out, job_id);
    out.push(b' ');
}

/// Whether the job `job_id` is listed in the value of a [`STREAM_FIELD`].
pub(crate) fn lists_job(streaming: &[u8], job_id: &str) -> bool {
    streaming
        .split(|&byte| byte == b' ')
        .any(|listed| !listed.is_empty() && listed == job_id.as_bytes())
}

/// Appends one printed line of job `job_id` to the value of a [`LINES_FIELD`].
pub(crate) fn encode_line(out: &mut Vec<u8>, job_id: &str, line: &str) {
    out.extend_from_slice(job_id.as_bytes());
    out.push(b' ');
    push_sized(out, line.as_bytes());
    out.push(b'\n');
}

/// Calls `each` with the job id and text of every line of a [`LINES_FIELD`] value, in
/// order. `false`: a broken frame (or a line that is not UTF-8) stopped the reading.
pub(crate) fn read_lines<'a>(value: &'a [u8], mut each: impl FnMut(&'a [u8], &'a str)) -> bool {
    let mut lines = Lines { rest: value };
    while !lines.is_empty() {
        let Some((job_id, line)) = (|| Some((lines.word()?, lines.sized(b'\n')?)))() else {
            return false;
        };
        let Ok(line) = std::str::from_utf8(line) else {
            return false;
        };
        each(job_id, line);
    }
    true
}

/// The header fields of a cancel entry for jobs of the reply stream `reply_to`, in `XADD`
/// order; the [`CANCEL_FIELD`] (written by [`encode_cancel`]) follows.
pub(crate) fn cancel_header(reply_to: &str) -> [(&'static str, &str); 2] {
    [
        (field::VERSION, FORMAT_VERSION),
        (field::REPLY_TO, reply_to),
    ]
}

/// Appends the notice that job `job_id` (whose caller waits until `deadline_unix_ms`) is
/// cancelled to the value of a [`CANCEL_FIELD`].
pub(crate) fn encode_cancel(out: &mut Vec<u8>, job_id: u64, deadline_unix_ms: u64) {
    push_number(out, job_id);
    out.push(b' ');
    push_number(out, deadline_unix_ms);
    out.push(b'\n');
}

/// One cancelled job, as a worker reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CancelNotice {
    /// The reply stream of the server that asked for the job.
    pub reply_to: Arc<str>,
    /// The job's id within that reply stream.
    pub job_id: u64,
    /// When its caller stopped waiting anyway: the notice is forgotten after that.
    pub deadline_unix_ms: u64,
}

/// Reads the notices of one cancel entry. An entry of another version, or a broken one,
/// gives what could be read before the break (a lost notice only lets a cancelled script
/// run on: its caller has its answer already).
pub(crate) fn read_cancels<'a>(
    fields: &mut dyn Iterator<Item = (&'a [u8], &'a [u8])>,
    mut each: impl FnMut(CancelNotice),
) {
    let mut fields = fields.peekable();
    if fields
        .next_if(|(name, value)| {
            *name == field::VERSION.as_bytes() && *value == FORMAT_VERSION.as_bytes()
        })
        .is_none()
    {
        return;
    }
    let mut reply_to: Option<Arc<str>> = None;
    for (name, value) in fields {
        if name == field::REPLY_TO.as_bytes() {
            reply_to = std::str::from_utf8(value).ok().map(Arc::from);
        } else if name == field::CANCEL.as_bytes() {
            let Some(reply_to) = &reply_to else { return };
            let mut lines = Lines { rest: value };
            while !lines.is_empty() {
                let Some((job_id, deadline)) = (|| {
                    let job_id = parse_number(lines.word()?)?;
                    let end = lines.rest.iter().position(|&byte| byte == b'\n')?;
                    let deadline = parse_number(&lines.rest[..end])?;
                    lines.rest = &lines.rest[end + 1..];
                    Some((job_id, deadline))
                })() else {
                    return;
                };
                each(CancelNotice {
                    reply_to: Arc::clone(reply_to),
                    job_id,
                    deadline_unix_ms: deadline,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::wire::test_support::pairs;

    #[test]
    fn lines_round_trip_with_any_byte() {
        let mut value = Vec::new();
        encode_line(&mut value, "7", "a b\nc");
        encode_line(&mut value, "8", "");
        let mut back = Vec::new();
        assert!(read_lines(&value, |id, line| back.push((id.to_vec(), line))));
        assert_eq!(
            back,
            [(b"7".to_vec(), "a b\nc"), (b"8".to_vec(), "")],
            "in order, every byte kept"
        );
        assert!(!read_lines(b"7 9:short\n", |_, _| {}));
    }

    #[test]
    fn cancels_round_trip_and_a_foreign_version_is_ignored() {
        let mut value = Vec::new();
        encode_cancel(&mut value, 3, 1_000);
        encode_cancel(&mut value, 12, 2_000);
        let mut fields: Vec<(&str, Vec<u8>)> = cancel_header("r")
            .iter()
            .map(|(name, text)| (*name, text.as_bytes().to_vec()))
            .collect();
        fields.push((CANCEL_FIELD, value));
        let mut back = Vec::new();
        read_cancels(&mut pairs(&fields), |notice| back.push(notice));
        assert_eq!(back.len(), 2);
        assert_eq!(&*back[1].reply_to, "r");
        assert_eq!((back[1].job_id, back[1].deadline_unix_ms), (12, 2_000));
        fields[0].1 = b"9".to_vec();
        read_cancels(&mut pairs(&fields), |_| panic!("another version"));
    }

    #[test]
    fn the_stream_field_lists_whole_ids() {
        let mut value = Vec::new();
        push_streaming_job(&mut value, 12);
        push_streaming_job(&mut value, 3);
        assert!(lists_job(&value, "3"));
        assert!(lists_job(&value, "12"));
        assert!(!lists_job(&value, "1"));
        assert!(!lists_job(&value, ""));
    }
}
