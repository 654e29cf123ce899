//! One connection's running `play`s, for protocol 1.1's `cancel` and streamed
//! output: which ids can still be cancelled, and the channel their printed
//! lines reach the session by.

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

use circle_executor::{Cancel, LineSink, Offer, OutputSink};
use circle_protocol::method;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Lines of one connection's streamed plays that may wait for the session to
/// write them. Past this the script threads wait (see `Offer::Full`): a
/// client that does not read slows down its own scripts, and the server's
/// memory for it stays bounded.
const QUEUED_LINES: usize = 64;

/// The cancels of one connection's plays, by the text of their ids; shared
/// with the plays' [`Registration`]s.
type Running = Rc<RefCell<HashMap<String, Cancel>>>;

/// The plays of one connection that `cancel` can still reach, by id.
#[derive(Default)]
pub(crate) struct Plays {
    /// Created with the first play: a connection that never plays holds no
    /// registry.
    running: OnceCell<Running>,
    /// Created with the first streamed play: most connections never stream.
    lines: Option<mpsc::Sender<String>>,
    /// The channel's reading end until the session takes it.
    unclaimed_lines: Option<mpsc::Receiver<String>>,
}

impl Plays {
    /// Registers the play with request id `id` (raw JSON) and returns what
    /// stops it; the play stays cancellable until the returned guard drops.
    /// A second play with the same id replaces the first in the registry: ids
    /// are the client's to keep apart.
    pub fn start(&self, id: &RawValue, cancel: &Cancel) -> Registration {
        let key = id_key(id.get()).into_owned();
        let running = self.running.get_or_init(Running::default);
        running.borrow_mut().insert(key.clone(), cancel.clone());
        Registration {
            running: Rc::clone(running),
            key,
            cancel: cancel.clone(),
        }
    }

    /// Cancels the play with request id `id` (any JSON value), if it is still
    /// queued or running: whether there was one.
    pub fn cancel(&self, id: &serde_json::Value) -> bool {
        let Some(running) = self.running.get() else {
            return false;
        };
        let key = id.to_string();
        match running.borrow_mut().remove(&key) {
            Some(cancel) => {
                cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Where the printed lines of the play with request id `id` go: an
    /// `output` notification each, through the connection's line channel;
    /// and the gate that stops them once the play is answered.
    pub fn sink(&mut self, id: &RawValue, metrics: Arc<Metrics>) -> (OutputSink, LineGate) {
        let unclaimed = &mut self.unclaimed_lines;
        let sender = self.lines.get_or_insert_with(|| {
            let (sender, receiver) = mpsc::channel(QUEUED_LINES);
            *unclaimed = Some(receiver);
            sender
        });
        let gate = LineGate::default();
        let sink = OutputSink::new(NotificationSink {
            sender: sender.clone(),
            id: id.to_owned(),
            metrics,
            gate: gate.clone(),
        });
        (sink, gate)
    }

    /// The reading end of the line channel, once the first streamed play
    /// made it: the session writes what comes out of it.
    pub fn take_lines(&mut self) -> Option<mpsc::Receiver<String>> {
        self.unclaimed_lines.take()
    }

    /// Cancels every play still registered: the connection is closing and
    /// nobody will read their answers.
    pub fn cancel_all(&self) -> usize {
        let Some(running) = self.running.get() else {
            return 0;
        };
        let running = std::mem::take(&mut *running.borrow_mut());
        for cancel in running.values() {
            cancel.cancel();
        }
        running.len()
    }
}

/// Keeps one play cancellable by its id; dropped when the play is answered.
pub(crate) struct Registration {
    running: Running,
    key: String,
    cancel: Cancel,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut running = self.running.borrow_mut();
        // Only this play's own entry: a later play may have taken the id.
        if running
            .get(&self.key)
            .is_some_and(|cancel| cancel.same_as(&self.cancel))
        {
            running.remove(&self.key);
        }
        if running.is_empty() {
            // An idle connection keeps no table from its busy past.
            running.shrink_to_fit();
        }
    }
}

/// The text an id is found by: the same for `3` and ` 3`, for `"a"` and
/// `"\u0061"`. Plain numbers and strings without escapes, which is what
/// clients send, are taken as they are.
fn id_key(raw: &str) -> Cow<'_, str> {
    let raw = raw.trim();
    let plain = if raw.starts_with('"') {
        !raw.contains('\\')
    } else {
        !raw.contains(['.', 'e', 'E'])
    };
    if plain {
        return Cow::Borrowed(raw);
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(value) => Cow::Owned(value.to_string()),
        Err(_) => Cow::Borrowed(raw),
    }
}

/// Whether a streamed play's lines may still go out: closed by the play's
/// answer, so no line follows it.
///
/// A cancelled play is answered at once, while its script may still be
/// printing on its script thread until it sees the flag. The session sends
/// the lines already queued before the answer; the lock makes "still open?
/// then queue the line" one step, so a line is either queued before the gate
/// closes (and goes out before the answer) or not at all.
#[derive(Clone, Default)]
pub(crate) struct LineGate(Arc<Mutex<bool>>);

impl LineGate {
    /// No more lines: the play is being answered.
    pub fn close(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
    }
}

/// Turns each printed line into an `output` notification on the
/// connection's line channel.
struct NotificationSink {
    sender: mpsc::Sender<String>,
    /// The play's request id, as the client wrote it.
    id: Box<RawValue>,
    metrics: Arc<Metrics>,
    gate: LineGate,
}

#[derive(Serialize)]
struct Notification<'a> {
    jsonrpc: &'static str,
    method: &'static str,
    params: OutputParams<'a>,
}

#[derive(Serialize)]
struct OutputParams<'a> {
    id: &'a RawValue,
    line: &'a str,
}

impl LineSink for NotificationSink {
    fn offer(&self, line: &str) -> Offer {
        // Held until the line is queued (never waits for room: `Full` is
        // answered instead), so the gate cannot close in between.
        let closed = self.gate.0.lock().unwrap_or_else(PoisonError::into_inner);
        if *closed {
            return Offer::Closed;
        }
        let permit = match self.sender.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => return Offer::Full,
            Err(mpsc::error::TrySendError::Closed(())) => return Offer::Closed,
        };
        let notification = Notification {
            jsonrpc: "2.0",
            method: method::OUTPUT,
            params: OutputParams { id: &self.id, line },
        };
        match serde_json::to_string(&notification) {
            Ok(text) => {
                permit.send(text);
                self.metrics.line_streamed();
                Offer::Taken
            }
            // Serializing a string and a valid raw id cannot fail; if it
            // did, the answer still carries the line.
            Err(_) => Offer::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_by_value() {
        assert_eq!(id_key("3"), "3");
        assert_eq!(id_key(" 3 "), "3");
        assert_eq!(id_key(r#""\u0061""#), r#""a""#);
        assert_eq!(id_key(r#""a""#), r#""a""#);
        let value: serde_json::Value = serde_json::from_str(r#""a""#).unwrap();
        assert_eq!(value.to_string(), id_key(r#""\u0061""#));
    }

    #[test]
    fn no_line_is_taken_once_the_play_is_answered() {
        let mut plays = Plays::default();
        let id = RawValue::from_string("3".into()).unwrap();
        let (sink, gate) = plays.sink(&id, Arc::default());
        let mut lines = plays.take_lines().expect("the line channel");
        assert_eq!(sink.offer("before"), Offer::Taken);
        gate.close();
        assert_eq!(sink.offer("after"), Offer::Closed);
        assert_eq!(
            lines.try_recv().unwrap(),
            r#"{"jsonrpc":"2.0","method":"output","params":{"id":3,"line":"before"}}"#
        );
        assert!(lines.try_recv().is_err());
    }

    #[test]
    fn a_cancelled_or_answered_play_is_gone_and_a_reused_id_is_kept() {
        let plays = Plays::default();
        let id = RawValue::from_string("7".into()).unwrap();
        let first = Cancel::new();
        let registration = plays.start(&id, &first);
        assert!(plays.cancel(&serde_json::json!(7)));
        assert!(first.is_cancelled());
        assert!(!plays.cancel(&serde_json::json!(7)));
        drop(registration);

        let second = Cancel::new();
        let old = plays.start(&id, &Cancel::new());
        let new = plays.start(&id, &second);
        drop(old);
        assert!(plays.cancel(&serde_json::json!(7)), "the newer play stays");
        assert!(second.is_cancelled());
        drop(new);
        assert_eq!(plays.cancel_all(), 0);
    }
}
