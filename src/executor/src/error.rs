//! What can go wrong when a script is run, and the JSON-RPC code each failure maps to.

use std::fmt;

use circle_protocol::codes;

/// Which limit stopped a script: a sandbox limit, or a store limit refusing its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitKind {
    /// [`ScriptLimits::max_operations`](crate::ScriptLimits::max_operations).
    Operations,
    /// [`ScriptLimits::max_run_time`](crate::ScriptLimits::max_run_time), or the caller's
    /// own deadline (see [`ExecutorError::DeadlineExceeded`]).
    WallTime,
    /// [`ScriptLimits::max_call_depth`](crate::ScriptLimits::max_call_depth).
    CallDepth,
    /// [`ScriptLimits::max_string_size`](crate::ScriptLimits::max_string_size).
    StringSize,
    /// [`ScriptLimits::max_array_size`](crate::ScriptLimits::max_array_size).
    ArraySize,
    /// [`ScriptLimits::max_map_size`](crate::ScriptLimits::max_map_size).
    MapSize,
    /// [`ScriptLimits::max_output_bytes`](crate::ScriptLimits::max_output_bytes).
    OutputSize,
    /// [`ScriptLimits::max_script_bytes`](crate::ScriptLimits::max_script_bytes).
    ScriptSize,
    /// [`ScriptLimits::max_expr_depth`](crate::ScriptLimits::max_expr_depth).
    ExpressionDepth,
    /// [`ScriptLimits::max_memory_bytes`](crate::ScriptLimits::max_memory_bytes).
    Memory,
    /// [`StoreLimits::max_key_bytes`](crate::store::StoreLimits::max_key_bytes).
    StoreKeySize,
    /// [`StoreLimits::max_value_bytes`](crate::store::StoreLimits::max_value_bytes).
    StoreValueSize,
    /// [`StoreLimits::max_keys_per_caller`](crate::store::StoreLimits::max_keys_per_caller).
    StoreKeys,
    /// [`StoreLimits::max_circle_bytes`](crate::store::StoreLimits::max_circle_bytes).
    StoreBytes,
}

impl LimitKind {
    /// A short, stable, lower-case name for logs and metrics labels (`"operations"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Operations => "operations",
            LimitKind::WallTime => "wall_time",
            LimitKind::CallDepth => "call_depth",
            LimitKind::StringSize => "string_size",
            LimitKind::ArraySize => "array_size",
            LimitKind::MapSize => "map_size",
            LimitKind::OutputSize => "output_size",
            LimitKind::ScriptSize => "script_size",
            LimitKind::ExpressionDepth => "expression_depth",
            LimitKind::Memory => "memory",
            LimitKind::StoreKeySize => "store_key_size",
            LimitKind::StoreValueSize => "store_value_size",
            LimitKind::StoreKeys => "store_keys",
            LimitKind::StoreBytes => "store_bytes",
        }
    }
}

impl std::str::FromStr for LimitKind {
    type Err = UnknownLimitKind;

    /// The inverse of [`LimitKind::as_str`], for kinds sent between processes (a remote
    /// worker names the limit that stopped a script).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "operations" => LimitKind::Operations,
            "wall_time" => LimitKind::WallTime,
            "call_depth" => LimitKind::CallDepth,
            "string_size" => LimitKind::StringSize,
            "array_size" => LimitKind::ArraySize,
            "map_size" => LimitKind::MapSize,
            "output_size" => LimitKind::OutputSize,
            "script_size" => LimitKind::ScriptSize,
            "expression_depth" => LimitKind::ExpressionDepth,
            "memory" => LimitKind::Memory,
            "store_key_size" => LimitKind::StoreKeySize,
            "store_value_size" => LimitKind::StoreValueSize,
            "store_keys" => LimitKind::StoreKeys,
            "store_bytes" => LimitKind::StoreBytes,
            _ => return Err(UnknownLimitKind(name.to_owned())),
        })
    }
}

/// A name that is not one of [`LimitKind::as_str`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown limit kind {0:?}")]
pub struct UnknownLimitKind(pub String);

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a script produced no output.
///
/// The `Display` text is meant for the JSON-RPC error `message`: it is written for the
/// script's author and never contains host details.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The script failed to parse or raised a runtime error; the message says what and
    /// where (line and position). Code `-32003`.
    #[error("{0}")]
    Script(String),
    /// The script was stopped by a sandbox limit; the message names the limit and its
    /// configured value. Code `-32004`.
    #[error("{message}")]
    Limit {
        /// Which limit stopped the script.
        limit: LimitKind,
        /// Human-readable explanation naming the limit and its value.
        message: String,
    },
    /// The executor cannot run scripts (shut down, broken, or an internal fault).
    /// Code `-32005`.
    #[error("script executor unavailable: {0}")]
    Unavailable(String),
    /// The executor's queue is full; the job was refused at once, never queued.
    /// Code `-32029`.
    #[error("too many requests: {0}")]
    Overloaded(String),
    /// The caller's deadline passed before the script could start. Code `-32004`
    /// (its limit kind is [`LimitKind::WallTime`]).
    #[error("the request's deadline passed before the script could start")]
    DeadlineExceeded,
    /// The job was handed to remote workers, but no answer came back before the caller's
    /// deadline: no worker is running for the circle, all are busy, or the one running the
    /// script stopped and no other finished it in time. The message says how long the
    /// caller waited. Only a remote executor (Redis) gives this. Code `-32005`: the caller
    /// cannot fix it by changing the script.
    #[error("no script worker answered in time: {0}")]
    NoAnswer(String),
    /// The caller cancelled the job ([`Cancel`](crate::Cancel)) before it finished:
    /// it was not started, or stopped where it was. Code `-32006`.
    #[error("the script was cancelled")]
    Cancelled,
}

impl ExecutorError {
    /// The JSON-RPC error code for this failure (one of [`circle_protocol::codes`]).
    pub fn code(&self) -> i32 {
        match self {
            ExecutorError::Script(_) => codes::SCRIPT_ERROR,
            ExecutorError::Limit { .. } | ExecutorError::DeadlineExceeded => codes::SCRIPT_LIMIT,
            ExecutorError::Unavailable(_) | ExecutorError::NoAnswer(_) => {
                codes::EXECUTOR_UNAVAILABLE
            }
            ExecutorError::Overloaded(_) => codes::TOO_MANY_REQUESTS,
            ExecutorError::Cancelled => codes::SCRIPT_CANCELLED,
        }
    }

    /// The limit that stopped the script, if a limit did.
    pub fn limit_kind(&self) -> Option<LimitKind> {
        match self {
            ExecutorError::Limit { limit, .. } => Some(*limit),
            ExecutorError::DeadlineExceeded => Some(LimitKind::WallTime),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_protocol() {
        assert_eq!(ExecutorError::Script("x".into()).code(), -32003);
        let limit = ExecutorError::Limit {
            limit: LimitKind::Operations,
            message: "m".into(),
        };
        assert_eq!(limit.code(), -32004);
        assert_eq!(limit.limit_kind(), Some(LimitKind::Operations));
        assert_eq!(ExecutorError::DeadlineExceeded.code(), -32004);
        assert_eq!(
            ExecutorError::DeadlineExceeded.limit_kind(),
            Some(LimitKind::WallTime)
        );
        assert_eq!(ExecutorError::Unavailable("x".into()).code(), -32005);
        assert_eq!(ExecutorError::Overloaded("x".into()).code(), -32029);
        assert_eq!(ExecutorError::NoAnswer("x".into()).code(), -32005);
        assert_eq!(ExecutorError::Cancelled.code(), -32006);
    }

    #[test]
    fn limit_kind_names_round_trip() {
        let all = [
            LimitKind::Operations,
            LimitKind::WallTime,
            LimitKind::CallDepth,
            LimitKind::StringSize,
            LimitKind::ArraySize,
            LimitKind::MapSize,
            LimitKind::OutputSize,
            LimitKind::ScriptSize,
            LimitKind::ExpressionDepth,
            LimitKind::Memory,
            LimitKind::StoreKeySize,
            LimitKind::StoreValueSize,
            LimitKind::StoreKeys,
            LimitKind::StoreBytes,
        ];
        for kind in all {
            assert_eq!(kind.as_str().parse::<LimitKind>(), Ok(kind));
        }
        assert_eq!("memory".parse::<LimitKind>(), Ok(LimitKind::Memory));
        assert!("heap".parse::<LimitKind>().is_err());
    }
}
