//! Where a job's answer goes: a future's channel, or a function the script
//! thread calls.

use tokio::sync::oneshot;

use crate::{ExecutorError, ScriptJob, ScriptOutput};

/// Where a job's answer goes.
pub(super) enum AnswerTo {
    /// A caller awaiting [`Executor::execute`]'s future.
    Future(oneshot::Sender<Result<ScriptOutput, ExecutorError>>),
    /// A function the script thread calls with the answer (`EmbeddedExecutor::submit`,
    /// used by the Redis worker only).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Call(AnswerFn),
}

impl AnswerTo {
    /// The caller stopped waiting: running the script would be wasted work.
    pub(super) fn is_closed(&self) -> bool {
        match self {
            AnswerTo::Future(sender) => sender.is_closed(),
            AnswerTo::Call(_) => false,
        }
    }

    pub(super) fn send(self, result: Result<ScriptOutput, ExecutorError>) {
        match self {
            // An error means the caller stopped waiting: nothing to do.
            AnswerTo::Future(sender) => drop(sender.send(result)),
            AnswerTo::Call(answer) => answer.call(result),
        }
    }
}

/// A function called exactly once with a job's answer: by the script thread that ran
/// it, or with [`ExecutorError::Unavailable`] when it is dropped unanswered (the
/// executor shut down with the job queued), as a dropped [`Executor::execute`] sender
/// would answer.
pub(crate) struct AnswerFn(Option<BoxedAnswer>);

type BoxedAnswer = Box<dyn FnOnce(Result<ScriptOutput, ExecutorError>) + Send>;

impl AnswerFn {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn new(
        answer: impl FnOnce(Result<ScriptOutput, ExecutorError>) + Send + 'static,
    ) -> Self {
        AnswerFn(Some(Box::new(answer)))
    }

    pub(super) fn call(mut self, result: Result<ScriptOutput, ExecutorError>) {
        if let Some(answer) = self.0.take() {
            answer(result);
        }
    }
}

impl Drop for AnswerFn {
    fn drop(&mut self) {
        if let Some(answer) = self.0.take() {
            answer(Err(ExecutorError::Unavailable(
                "the executor shut down before running the script".into(),
            )));
        }
    }
}

/// One queued job and where its answer goes.
pub(super) struct Task {
    pub(super) job: ScriptJob,
    pub(super) answer_to: AnswerTo,
}
