//! What one WebSocket text frame holds: one JSON-RPC object, or a batch.

use serde_json::value::RawValue;

use super::{BadRequest, Id, RpcError};

/// What one WebSocket text frame held, borrowed from it.
#[derive(Debug)]
pub enum Frame<'a> {
    /// The frame's text, to be read as one request (or response). It is not
    /// parsed yet: reading it is the one parse it gets.
    Single(&'a str),
    /// A JSON array: a batch, each element's raw text. May be empty, which
    /// is itself an invalid request.
    Batch(Vec<&'a RawValue>),
}

/// Tells a single object from a batch without building a JSON tree.
///
/// A frame that is not JSON text gets one `-32700` parse error under the
/// id `null` (protocol 1.1: even a broken batch gets one error object, not
/// an array). A single object is checked when it is read
/// ([`Request::parse`](super::Request::parse)).
pub fn parse_frame(text: &str) -> Result<Frame<'_>, BadRequest> {
    check_escapes(text).map_err(|error| not_json(&error))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str::<Vec<&RawValue>>(text)
            .map(Frame::Batch)
            .map_err(|error| not_json(&error));
    }
    Ok(Frame::Single(text))
}

/// The answer to a frame that is not JSON.
pub(super) fn not_json(error: &serde_json::Error) -> BadRequest {
    BadRequest {
        id: Id::Null,
        error: RpcError::parse_error(format!("frame is not valid JSON: {error}")),
    }
}

/// Finds `\u` escapes of surrogates that may not be valid JSON text: ids
/// and params stay raw text, and the parser does not check the escapes
/// inside raw text, so a lone surrogate (`"\ud800"`) would otherwise be
/// noticed only per request, after other requests of the frame had run.
/// Frames without such an escape skip the full parse.
fn check_escapes(text: &str) -> Result<(), serde_json::Error> {
    let bytes = text.as_bytes();
    // Most frames have no backslash at all, and `contains` finds that with
    // `memchr`, several times faster than looking at every window.
    let surrogate_escape = bytes.contains(&b'\\')
        && bytes.windows(4).any(|window| {
            window[0] == b'\\'
                && window[1] == b'u'
                && matches!(window[2], b'd' | b'D')
                && matches!(window[3], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
        });
    if surrogate_escape {
        // Only a full parse into strings checks the escapes.
        serde_json::from_str::<serde_json::Value>(text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes;

    #[test]
    fn frames_are_classified() {
        assert!(matches!(parse_frame("[]").unwrap(), Frame::Batch(v) if v.is_empty()));
        assert!(matches!(parse_frame(" [1, {}]").unwrap(), Frame::Batch(v) if v.len() == 2));
        assert!(matches!(parse_frame("{}").unwrap(), Frame::Single("{}")));
        let broken = parse_frame("[{}, oops]").unwrap_err();
        assert_eq!(
            (broken.id, broken.error.code),
            (Id::Null, codes::PARSE_ERROR)
        );
    }

    #[test]
    fn lone_surrogates_make_the_whole_frame_unreadable() {
        for text in [r#"[{"a":"\udc00"}]"#, r#"{"a":"\uD83D"}"#] {
            let error = parse_frame(text).unwrap_err().error;
            assert_eq!(error.code, codes::PARSE_ERROR, "{text}");
        }
        // A surrogate pair is a valid escape.
        assert!(parse_frame(r#"{"a":"\ud83d\ude00"}"#).is_ok());
    }
}
