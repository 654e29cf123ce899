//! `CirclePlay`: a streamed `play` for JavaScript, from
//! `CircleClient.playStream(script, onLine)`: `onLine` is called with each
//! printed line as it comes, `done` settles with the answer, `cancel()`
//! stops the script on the server.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::StreamExt;
use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::error::{CircleError, to_js_error};
use crate::{CircleWsClient, PlayCanceller, PlayEvent};

/// How far a play has got, as `cancel()` finds it.
#[derive(Default)]
enum Progress {
    /// `play` not sent yet: a `cancel()` now is remembered.
    #[default]
    Starting,
    /// `cancel()` came before the play was sent: it is cancelled at once.
    CancelAsked,
    /// Running: how to cancel it.
    Running(PlayCanceller),
    /// Answered: nothing left to cancel.
    Over,
}

/// A streamed script run: `await play.done` for the answer (rejected with
/// a `CircleError` of `kind` `"Cancelled"`, `code` -32006, after
/// `cancel()`), `await play.cancel()` to stop it.
#[wasm_bindgen]
pub struct CirclePlay {
    progress: Rc<RefCell<Progress>>,
    done: Promise,
}

#[wasm_bindgen]
impl CirclePlay {
    /// Settles when the script ends: resolves to `{output, tail,
    /// droppedLines}` (`output` the whole output as `play` returns it,
    /// `tail` what the `onLine` calls did not show: the script's value),
    /// or rejects with a `CircleError`.
    #[wasm_bindgen(getter, unchecked_return_type = "Promise<CirclePlayDone>")]
    pub fn done(&self) -> Promise {
        self.done.clone()
    }

    /// Asks the server to stop the script; resolves to `true` when it was
    /// still running (`done` then rejects with `kind` `"Cancelled"`),
    /// `false` when it had already ended.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn cancel(&self) -> Promise {
        let progress = self.progress.clone();
        future_to_promise(async move {
            let canceller = {
                let mut progress = progress.borrow_mut();
                match &*progress {
                    Progress::Running(canceller) => canceller.clone(),
                    Progress::Starting => {
                        *progress = Progress::CancelAsked;
                        return Ok(JsValue::TRUE);
                    }
                    Progress::CancelAsked => return Ok(JsValue::TRUE),
                    Progress::Over => return Ok(JsValue::FALSE),
                }
            };
            let cancelled = canceller.cancel().await.map_err(to_js_error)?;
            Ok(JsValue::from_bool(cancelled))
        })
    }
}

/// Starts `script` streaming; `on_line` gets each printed line.
pub(crate) fn start(client: CircleWsClient, script: String, on_line: Function) -> CirclePlay {
    let progress = Rc::new(RefCell::new(Progress::default()));
    let shared = progress.clone();
    let done = future_to_promise(async move {
        let outcome = run(client, script, on_line, &shared).await;
        *shared.borrow_mut() = Progress::Over;
        outcome
    });
    CirclePlay { progress, done }
}

async fn run(
    client: CircleWsClient,
    script: String,
    on_line: Function,
    progress: &RefCell<Progress>,
) -> Result<JsValue, JsValue> {
    let mut stream = client.play_stream(script).await.map_err(to_js_error)?;
    let cancel_asked = matches!(*progress.borrow(), Progress::CancelAsked);
    *progress.borrow_mut() = Progress::Running(stream.canceller());
    if cancel_asked {
        // Asked before the play was sent: cancel it now, and let the
        // stream end with the server's -32006 like any other cancel.
        stream.cancel().await.map_err(to_js_error)?;
    }
    while let Some(item) = stream.next().await {
        match item.map_err(to_js_error)? {
            PlayEvent::Line(line) => {
                // A throwing callback must not stop the stream: the script
                // runs on regardless, and its answer still comes.
                if let Err(error) = on_line.call1(&JsValue::NULL, &JsValue::from_str(&line)) {
                    web_sys_log(&error);
                }
            }
            PlayEvent::Done(done) => {
                let result = Object::new();
                Reflect::set(&result, &"output".into(), &done.output.into())?;
                Reflect::set(&result, &"tail".into(), &done.tail.into())?;
                Reflect::set(
                    &result,
                    &"droppedLines".into(),
                    // Line counts stay far below 2^53.
                    &JsValue::from_f64(done.dropped_lines as f64),
                )?;
                return Ok(result.into());
            }
        }
    }
    Err(CircleError {
        code: None,
        kind: "Protocol",
        message: "the stream ended without an answer".into(),
    }
    .into_js())
}

/// Reports an exception thrown by the page's `onLine` on the console.
fn web_sys_log(error: &JsValue) {
    #[wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_namespace = console, js_name = error)]
        fn console_error(message: &str, error: &JsValue);
    }
    console_error("circle: onLine threw", error);
}
