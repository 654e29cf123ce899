//! A door for the fuzzers in `fuzz/`: the JSON-RPC router of one
//! connection, without sockets. Not part of the supported API.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use circle_executor::{EmbeddedConfig, EmbeddedExecutor, ScriptLimits};
use tokio::sync::watch;

use crate::auth::ChallengeOrigin;
use crate::batch::Handled;
use crate::circle::CircleIdentity;
use crate::config::{ServerConfig, ServerLimits};
use crate::listen::Listener;
use crate::router::{self, Answer, ConnectionState};
use crate::state::ServerState;

/// One connection's router, fed frames directly.
pub struct RouterHarness {
    shared: ServerState,
    conn: ConnectionState,
    _shutdown: watch::Sender<bool>,
}

impl RouterHarness {
    /// A router with authentication on and a small real script executor.
    pub fn new() -> std::io::Result<Self> {
        let (shutdown_sender, shutdown) = watch::channel(false);
        let executor = EmbeddedExecutor::new(EmbeddedConfig {
            threads: 1,
            queue_capacity: 8,
            limits: ScriptLimits {
                max_operations: 10_000,
                max_run_time: Duration::from_millis(50),
                ..ScriptLimits::default()
            },
            ..EmbeddedConfig::default()
        })?;
        let circle = CircleIdentity {
            name: "fuzz".to_owned(),
            public_key: "024e3b81af9c2234cad09d679ce6035ed1392347ce64ce405f5dcd36228a25de6e"
                .to_owned(),
        };
        let config = ServerConfig {
            enable_auth: true,
            limits: ServerLimits {
                max_connections: 1,
                max_connections_per_ip: 1,
                ..ServerLimits::default()
            },
            ..ServerConfig::default()
        };
        let shared = ServerState::new(&config, circle, Arc::new(executor), None, shutdown);
        let origin = Rc::new(ChallengeOrigin {
            domain: "localhost".to_owned(),
            uri: "wss://localhost/ws".to_owned(),
        });
        let conn = ConnectionState::new(&shared, origin, Listener::Tls, None);
        Ok(RouterHarness {
            shared,
            conn,
            _shutdown: shutdown_sender,
        })
    }

    /// Handles one text frame; returns the immediate answer. Answers that
    /// wait on a script are dropped unawaited (the script still runs), and
    /// so is a batch that would wait at the connection's gate.
    pub fn handle_text(&mut self, text: &str) -> Option<String> {
        match router::handle_text(&self.shared, &mut self.conn, text) {
            Handled::Done(Answer::Now(answer)) => answer,
            Handled::Done(Answer::Later(_)) | Handled::Waiting(_) => None,
        }
    }
}
