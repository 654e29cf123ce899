//! Reply entries: a worker writes the answers of a batch for one server as lines of one
//! `answers` field ([`encode_answer`]); the server reads them back ([`read_replies`]) and
//! routes each to its caller by job id.

use super::frame::{Lines, push_number};
use super::{FORMAT_VERSION, field, status};
use crate::{ExecutorError, ScriptOutput};

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
        Err(ExecutorError::Cancelled) => (status::CANCELLED, None, ""),
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
    // The names written by `encode_answer`, matched as text so both use `status`.
    match std::str::from_utf8(status).unwrap_or_default() {
        status::OK => Ok(ScriptOutput {
            output: payload.to_owned(),
        }),
        status::SCRIPT => Err(ExecutorError::Script(payload.to_owned())),
        status::LIMIT => match payload
            .split_once(':')
            .and_then(|(kind, message)| Some((kind.parse().ok()?, message)))
        {
            Some((limit, message)) => Err(ExecutorError::Limit {
                limit,
                message: message.to_owned(),
            }),
            None => Err(unreadable("a limit answer without a known limit kind")),
        },
        status::DEADLINE => Err(ExecutorError::DeadlineExceeded),
        status::UNAVAILABLE => Err(ExecutorError::Unavailable(payload.to_owned())),
        status::OVERLOADED => Err(ExecutorError::Overloaded(payload.to_owned())),
        status::NO_ANSWER => Err(ExecutorError::NoAnswer(payload.to_owned())),
        status::CANCELLED => Err(ExecutorError::Cancelled),
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
/// per answer (`None`: an answer without a readable job id, or an entry without a version),
/// after calling `on_line` with the job id and text of each streamed line the entry carries
/// (its `lines` field comes first, so a job's lines come before its answer).
///
/// An answer of a version this server cannot read still resolves its caller (as
/// `Unavailable`) when its job id can be found, so a version mismatch shows as an error,
/// not as a timeout.
pub(crate) fn read_replies<'a>(
    fields: &mut dyn Iterator<Item = (&'a [u8], &'a [u8])>,
    mut on_line: impl FnMut(&'a [u8], &'a str),
    mut each: impl FnMut(Option<(&'a [u8], Result<ScriptOutput, ExecutorError>)>),
) {
    let mut fields = fields.peekable();
    let Some((_, version)) = fields.next_if(|(name, _)| *name == field::VERSION.as_bytes()) else {
        each(None);
        return;
    };
    let known = version == FORMAT_VERSION.as_bytes();
    for (name, value) in fields {
        if name == field::LINES.as_bytes() {
            // Lines are a courtesy (the answer carries them all): a broken or foreign
            // field loses the lines after the break, nothing else.
            if known && !super::control::read_lines(value, &mut on_line) {
                tracing::warn!("ignoring the rest of an unreadable lines field");
            }
            continue;
        }
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

fn unreadable(what: &str) -> ExecutorError {
    ExecutorError::Unavailable(format!(
        "a script worker sent {what}; are servers and workers the same version?"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LimitKind;
    use crate::redis::wire::test_support::pairs;

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
            Err(ExecutorError::Cancelled),
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
        read_replies(
            &mut pairs(&fields),
            |_, _| {},
            |answer| back.push(answer.unwrap()),
        );
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
            read_replies(&mut pairs(&fields), |_, _| {}, |answer| back.push(answer));
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
            read_replies(
                &mut pairs(&fields),
                |_, _| {},
                |answer| {
                    assert!(answer.is_none());
                    count += 1;
                },
            );
            assert_eq!(count, 1);
        }
    }
}
