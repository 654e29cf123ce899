//! Counters for `GET /metrics`, in the Prometheus text format.
//!
//! Plain atomics with a fixed set of labels: every method and error code of
//! the protocol is known in advance, so nothing a client sends can grow the
//! label set (an unknown method is counted as `other`).

use crate::listen::Listener;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use circle_protocol::{codes, method};

const METHODS: [&str; 6] = [
    method::FETCH_NONCE,
    method::AUTHENTICATE,
    method::PLAY,
    method::WHOAMI,
    method::CANCEL,
    "other",
];

const ERROR_CODES: [i32; 13] = [
    codes::PARSE_ERROR,
    codes::INVALID_REQUEST,
    codes::METHOD_NOT_FOUND,
    codes::INVALID_PARAMS,
    codes::INTERNAL_ERROR,
    codes::AUTHENTICATION_FAILED,
    codes::AUTHENTICATION_REQUIRED,
    codes::SCRIPT_ERROR,
    codes::SCRIPT_LIMIT,
    codes::EXECUTOR_UNAVAILABLE,
    codes::SCRIPT_CANCELLED,
    codes::TOO_MANY_REQUESTS,
    0, // any other code
];

/// Upper bounds of the script latency histogram, in seconds.
const SCRIPT_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0,
];

/// Which limit turned a client away, or held its connection back
/// (`RequestRate` and `InFlight` pace a connection rather than refuse).
#[derive(Clone, Copy, Debug)]
pub(crate) enum LimitHit {
    Connections = 0,
    ConnectionsPerIp,
    Origin,
    RequestRate,
    InFlight,
    MessageSize,
    FailedSignIns,
    Idle,
}

const LIMIT_NAMES: [&str; 8] = [
    "connections",
    "connections_per_ip",
    "origin",
    "request_rate",
    "in_flight",
    "message_size",
    "failed_sign_ins",
    "idle",
];

#[derive(Default)]
pub(crate) struct Metrics {
    connections_open: [AtomicU64; 2],
    connections_total: [AtomicU64; 2],
    tls_handshakes: AtomicU64,
    acme_orders: AtomicU64,
    acme_issued: AtomicU64,
    acme_failures: AtomicU64,
    auth_success: AtomicU64,
    auth_failure: AtomicU64,
    requests: [AtomicU64; METHODS.len()],
    errors: [[AtomicU64; ERROR_CODES.len()]; METHODS.len()],
    script_buckets: [AtomicU64; SCRIPT_BUCKETS.len()],
    script_count: AtomicU64,
    script_micros: AtomicU64,
    limit_hits: [AtomicU64; LIMIT_NAMES.len()],
    /// `play`s stopped by `cancel` or by their connection closing.
    scripts_cancelled: AtomicU64,
    /// Lines sent as `output` notifications.
    lines_streamed: AtomicU64,
}

fn method_index(method: &str) -> usize {
    METHODS
        .iter()
        .position(|known| *known == method)
        .unwrap_or(METHODS.len() - 1)
}

fn code_index(code: i32) -> usize {
    ERROR_CODES
        .iter()
        .position(|known| *known == code)
        .unwrap_or(ERROR_CODES.len() - 1)
}

impl Metrics {
    pub fn connection_opened(&self, listener: Listener) {
        self.connections_open[listener as usize].fetch_add(1, Ordering::Relaxed);
        self.connections_total[listener as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self, listener: Listener) {
        self.connections_open[listener as usize].fetch_sub(1, Ordering::Relaxed);
    }

    pub fn tls_handshake(&self) {
        self.tls_handshakes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn acme_order(&self) {
        self.acme_orders.fetch_add(1, Ordering::Relaxed);
    }

    pub fn acme_issued(&self) {
        self.acme_issued.fetch_add(1, Ordering::Relaxed);
    }

    pub fn acme_failure(&self) {
        self.acme_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn request(&self, method: &str) {
        self.requests[method_index(method)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self, method: &str, code: i32) {
        self.errors[method_index(method)][code_index(code)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn sign_in(&self, succeeded: bool) {
        let counter = if succeeded {
            &self.auth_success
        } else {
            &self.auth_failure
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn script_finished(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(bucket) = SCRIPT_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.script_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.script_count.fetch_add(1, Ordering::Relaxed);
        self.script_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn limit_hit(&self, limit: LimitHit) {
        self.limit_hits[limit as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn script_cancelled(&self) {
        self.scripts_cancelled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn line_streamed(&self) {
        self.lines_streamed.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every metric; `certificate_expires_in` and `queue_depth` are
    /// read fresh by the caller.
    pub fn render(&self, certificate_expires_in: Option<Duration>, queue_depth: usize) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = Exposition(String::with_capacity(4096));
        let listeners = ["ws", "wss"];

        if let Some(left) = certificate_expires_in {
            out.family(
                "circle_tls_certificate_expiry_seconds",
                "gauge",
                "Seconds until the serving certificate expires.",
            );
            out.sample("circle_tls_certificate_expiry_seconds", "", left.as_secs());
        }
        out.family(
            "circle_connections_open",
            "gauge",
            "WebSocket connections open now, by listener.",
        );
        for (i, listener) in listeners.iter().enumerate() {
            out.sample(
                "circle_connections_open",
                &format!("listener=\"{listener}\""),
                get(&self.connections_open[i]),
            );
        }
        out.family(
            "circle_connections_total",
            "counter",
            "WebSocket connections accepted, by listener.",
        );
        for (i, listener) in listeners.iter().enumerate() {
            out.sample(
                "circle_connections_total",
                &format!("listener=\"{listener}\""),
                get(&self.connections_total[i]),
            );
        }
        out.family(
            "circle_scripts_cancelled_total",
            "counter",
            "Scripts stopped by cancel or by their connection closing, queued or running.",
        );
        out.sample(
            "circle_scripts_cancelled_total",
            "",
            get(&self.scripts_cancelled),
        );
        out.family(
            "circle_output_lines_streamed_total",
            "counter",
            "Printed lines sent as output notifications of streamed plays.",
        );
        out.sample(
            "circle_output_lines_streamed_total",
            "",
            get(&self.lines_streamed),
        );
        out.family(
            "circle_tls_handshakes_total",
            "counter",
            "Completed TLS handshakes.",
        );
        out.sample("circle_tls_handshakes_total", "", get(&self.tls_handshakes));
        for (name, help, counter) in [
            (
                "circle_acme_orders_total",
                "ACME orders placed.",
                &self.acme_orders,
            ),
            (
                "circle_acme_certificates_total",
                "Certificates obtained over ACME.",
                &self.acme_issued,
            ),
            (
                "circle_acme_failures_total",
                "Failed ACME attempts (each is retried).",
                &self.acme_failures,
            ),
        ] {
            out.family(name, "counter", help);
            out.sample(name, "", get(counter));
        }
        out.family(
            "circle_auth_total",
            "counter",
            "Sign-in attempts by result.",
        );
        out.sample(
            "circle_auth_total",
            "result=\"success\"",
            get(&self.auth_success),
        );
        out.sample(
            "circle_auth_total",
            "result=\"failure\"",
            get(&self.auth_failure),
        );
        out.family(
            "circle_requests_total",
            "counter",
            "JSON-RPC requests by method.",
        );
        for (i, method) in METHODS.iter().enumerate() {
            out.sample(
                "circle_requests_total",
                &format!("method=\"{method}\""),
                get(&self.requests[i]),
            );
        }
        out.family(
            "circle_errors_total",
            "counter",
            "JSON-RPC error answers by method and code (0: other codes).",
        );
        for (i, method) in METHODS.iter().enumerate() {
            for (j, code) in ERROR_CODES.iter().enumerate() {
                let count = get(&self.errors[i][j]);
                if count > 0 {
                    out.sample(
                        "circle_errors_total",
                        &format!("method=\"{method}\",code=\"{code}\""),
                        count,
                    );
                }
            }
        }
        out.family(
            "circle_script_duration_seconds",
            "histogram",
            "Time from handing a script to the executor to its answer.",
        );
        let mut cumulative = 0;
        for (i, bound) in SCRIPT_BUCKETS.iter().enumerate() {
            cumulative += get(&self.script_buckets[i]);
            out.sample(
                "circle_script_duration_seconds_bucket",
                &format!("le=\"{bound}\""),
                cumulative,
            );
        }
        let count = get(&self.script_count);
        out.sample(
            "circle_script_duration_seconds_bucket",
            "le=\"+Inf\"",
            count,
        );
        out.sample(
            "circle_script_duration_seconds_sum",
            "",
            get(&self.script_micros) as f64 / 1e6,
        );
        out.sample("circle_script_duration_seconds_count", "", count);
        out.family(
            "circle_executor_queue_depth",
            "gauge",
            "Scripts waiting for an executor thread.",
        );
        out.sample("circle_executor_queue_depth", "", queue_depth);
        out.family(
            "circle_limit_hits_total",
            "counter",
            "Times a limit turned a request or connection away, or (request_rate, in_flight) held a connection back.",
        );
        for (i, limit) in LIMIT_NAMES.iter().enumerate() {
            out.sample(
                "circle_limit_hits_total",
                &format!("limit=\"{limit}\""),
                get(&self.limit_hits[i]),
            );
        }
        out.0
    }
}

/// The Prometheus text format, written line by line.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = if labels.is_empty() {
            writeln!(self.0, "{name} {value}")
        } else {
            writeln!(self.0, "{name}{{{labels}}} {value}")
        };
    }
}
