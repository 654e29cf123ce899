//! Turning rhai's errors into [`ExecutorError`]s.
//!
//! The point is to tell "your script is wrong" (`Script`, -32003) apart from "your script
//! was stopped by a limit" (`Limit`, -32004), and for limits to say which one and its
//! configured value, so a script author knows what to change.

use rhai::{EvalAltResult, LexError, ParseError, ParseErrorType, Position};

use super::display;
use crate::{ExecutorError, LimitKind, ScriptLimits};

/// Error messages are cut to the output limit, but never below this, so that even the
/// strictest output limit leaves a readable message.
const MIN_MESSAGE_BYTES: usize = 1024;

/// `err`'s message, cut to [`ScriptLimits::max_output_bytes`] (at least
/// [`MIN_MESSAGE_BYTES`]). A thrown value is part of the message (`throw x` gives "Runtime
/// error: x"), and a script can throw an array whose text is far larger than its memory
/// (see [`display`]): the message is written through a bounded buffer, never in full.
fn script_message(err: &EvalAltResult, limits: &ScriptLimits) -> ExecutorError {
    let cap = limits.max_output_bytes.max(MIN_MESSAGE_BYTES);
    ExecutorError::Script(display::display_cut(err, cap))
}

/// ` (line L, position P)` when rhai knows where, else nothing.
fn at(pos: Position) -> String {
    if pos.is_none() {
        String::new()
    } else {
        format!(" ({pos})")
    }
}

/// The `Limit` error for `limit`, naming its configured value and where it was hit.
pub(crate) fn limit_error(limit: LimitKind, limits: &ScriptLimits, pos: Position) -> ExecutorError {
    let what = match limit {
        LimitKind::Operations => format!(
            "script exceeded the operation limit ({} operations)",
            limits.max_operations
        ),
        LimitKind::WallTime => format!(
            "script exceeded the wall-time limit ({} ms)",
            limits.max_run_time.as_millis()
        ),
        LimitKind::CallDepth => format!(
            "script exceeded the call-depth limit ({} nested function calls)",
            limits.max_call_depth
        ),
        LimitKind::StringSize => format!(
            "script exceeded the string size limit ({} bytes)",
            limits.max_string_size
        ),
        LimitKind::ArraySize => format!(
            "script exceeded the array size limit ({} elements)",
            limits.max_array_size
        ),
        LimitKind::MapSize => format!(
            "script exceeded the object map size limit ({} properties)",
            limits.max_map_size
        ),
        LimitKind::OutputSize => format!(
            "script exceeded the output size limit ({} bytes)",
            limits.max_output_bytes
        ),
        LimitKind::ScriptSize => format!(
            "script exceeded the script size limit ({} bytes)",
            limits.max_script_bytes
        ),
        LimitKind::ExpressionDepth => format!(
            "script exceeded the expression depth limit ({} levels)",
            limits.max_expr_depth
        ),
        LimitKind::Memory => format!(
            "script exceeded the memory limit ({} bytes)",
            limits.max_memory_bytes
        ),
        // The store reports its refusals with their own message (`StoreLimits::refusal`);
        // this is only a fallback naming the kind.
        store_limit => format!("the store refused the play's writes ({store_limit})"),
    };
    ExecutorError::Limit {
        limit,
        message: format!("{what}{}", at(pos)),
    }
}

/// Which data-size limit rhai's description of the oversized thing refers to.
///
/// Rhai reports these as free text (`"Length of string"`, `"Size of array/BLOB"`,
/// `"Size of object map"`, `"Size of array literal"`, `"Number of properties in object
/// map literal"`), so match on the noun rather than the whole sentence.
fn data_limit_kind(what: &str) -> Option<LimitKind> {
    let what = what.to_ascii_lowercase();
    if what.contains("string") {
        Some(LimitKind::StringSize)
    } else if what.contains("array") || what.contains("blob") {
        Some(LimitKind::ArraySize)
    } else if what.contains("map") {
        Some(LimitKind::MapSize)
    } else {
        None
    }
}

/// Maps a compile-time error.
pub(crate) fn from_parse_error(err: &ParseError, limits: &ScriptLimits) -> ExecutorError {
    let pos = err.position();
    match err.err_type() {
        ParseErrorType::ExprTooDeep => limit_error(LimitKind::ExpressionDepth, limits, pos),
        ParseErrorType::BadInput(LexError::StringTooLong(_)) => {
            limit_error(LimitKind::StringSize, limits, pos)
        }
        ParseErrorType::LiteralTooLarge(what, _) => match data_limit_kind(what) {
            Some(kind) => limit_error(kind, limits, pos),
            None => ExecutorError::Script(format!("syntax error: {err}")),
        },
        _ => ExecutorError::Script(format!("syntax error: {err}")),
    }
}

/// Maps a run-time error. Terminations by the sandbox's own callbacks (wall time, memory,
/// output size) are not seen here: the sandbox records why it stopped a script and reports that.
pub(crate) fn from_eval_error(err: &EvalAltResult, limits: &ScriptLimits) -> ExecutorError {
    // A limit hit inside a function call arrives wrapped in `ErrorInFunctionCall`; the
    // innermost error says what actually happened.
    match err.unwrap_inner() {
        EvalAltResult::ErrorTooManyOperations(pos) => {
            limit_error(LimitKind::Operations, limits, *pos)
        }
        EvalAltResult::ErrorStackOverflow(pos) => limit_error(LimitKind::CallDepth, limits, *pos),
        EvalAltResult::ErrorDataTooLarge(what, pos) => match data_limit_kind(what) {
            Some(kind) => limit_error(kind, limits, *pos),
            None => script_message(err, limits),
        },
        EvalAltResult::ErrorParsing(parse_type, pos) => {
            from_parse_error(&ParseError(Box::new(parse_type.clone()), *pos), limits)
        }
        // Includes `ErrorTerminated` without a recorded reason, which only our callbacks
        // raise and which they always record: answer rather than guess a limit.
        _ => script_message(err, limits),
    }
}
