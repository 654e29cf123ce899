//! What names a session in the log: its connection id, the client's address
//! and, under mutual TLS, the client certificate's subject.
//!
//! A span that lives as long as the connection costs the tracing registry a
//! slot, a table of extensions and the formatted fields: 0.46 KB of every
//! idle connection (bench/PROFILE.md §7). At the default `info` level a
//! session writes a line only when it ends in an unusual way, so the span
//! over its whole task is a `debug` span, there when someone asks for every
//! step of every session; each `info` (or louder) line goes in a span made
//! for it, with the same name and fields. A line reads the same at either
//! level: `session{connection_id=… client=…}: …`.

use std::fmt;
use std::net::IpAddr;

use tracing::{Level, Span};

/// The fields of a session's span, kept so that a span can be made again
/// for each line worth writing.
pub(crate) struct SessionTag {
    connection_id: u64,
    client: Option<IpAddr>,
    subject: Option<Box<str>>,
}

macro_rules! session_span {
    ($level:expr, $tag:expr) => {
        tracing::span!(
            $level,
            "session",
            connection_id = $tag.connection_id,
            client = %Client($tag.client),
            subject = $tag.subject.as_deref()
        )
    };
}

impl SessionTag {
    /// `client` is the address found through trusted proxies; `subject`
    /// the verified client certificate's, under mutual TLS.
    pub fn new(connection_id: u64, client: Option<IpAddr>, subject: Option<&str>) -> Self {
        SessionTag {
            connection_id,
            client,
            subject: subject.map(Box::from),
        }
    }

    /// The span over the session's whole task: `debug`, so a server
    /// logging at `info` keeps none.
    pub fn task_span(&self) -> Span {
        session_span!(Level::DEBUG, self)
    }

    /// The span for one `info` (or louder) line: the task's span when it is
    /// on (it is then the current one), else a span made for this line.
    pub fn line_span(&self) -> Span {
        let current = Span::current();
        if current.is_none() {
            session_span!(Level::INFO, self)
        } else {
            current
        }
    }
}

/// A client address in a log line: the address, or `unknown`.
pub(crate) struct Client(pub Option<IpAddr>);

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::net::Ipv4Addr;
    use std::sync::{Arc, Mutex};

    use tracing::info;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// Logs one `info` line the way a session does, at `level`, and returns
    /// what was written.
    fn line_at(level: Level) -> String {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(captured.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let tag = SessionTag::new(7, Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))), None);
            let task = tag.task_span();
            assert_eq!(task.is_disabled(), level < Level::DEBUG);
            task.in_scope(|| {
                tag.line_span()
                    .in_scope(|| info!(ending = "Idle", "closing connection"))
            });
        });
        let written = captured.0.lock().unwrap().clone();
        String::from_utf8(written).unwrap()
    }

    #[test]
    fn an_info_line_names_the_session_at_info_and_at_debug() {
        for level in [Level::INFO, Level::DEBUG] {
            let line = line_at(level);
            assert!(
                line.contains("session{connection_id=7 client=127.0.0.2}: "),
                "{level}: {line}"
            );
            assert!(
                line.contains("closing connection ending=\"Idle\""),
                "{level}: {line}"
            );
            // Once, not once per span.
            assert_eq!(line.matches("connection_id").count(), 1, "{level}: {line}");
        }
    }

    #[test]
    fn no_span_is_kept_for_a_session_at_info() {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::INFO)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let tag = SessionTag::new(1, None, Some("CN=client"));
            assert!(tag.task_span().is_disabled());
        });
    }
}
