//! Latency histograms and error counts, kept per connection (no sharing on
//! the hot path) and merged at the end.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Latencies in nanoseconds, 1 ns .. 100 s, three significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Fixed, valid bounds: this cannot fail.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Counted errors by kind (`rpc_error_-32029`, `wrong_result`, `connect_...`).
#[derive(Clone, Debug, Default)]
pub struct Errors(pub BTreeMap<String, u64>);

impl Errors {
    pub fn add(&mut self, label: impl Into<String>, n: u64) {
        if n > 0 {
            *self.0.entry(label.into()).or_insert(0) += n;
        }
    }

    pub fn merge(&mut self, other: &Errors) {
        for (label, n) in &other.0 {
            self.add(label.clone(), *n);
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn to_json(&self) -> Value {
        json!(self.0)
    }
}

/// p50/p90/p99/p99.9/max in microseconds.
pub fn latency_json(hist: &Histogram<u64>) -> Value {
    let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
    if hist.is_empty() {
        return Value::Null;
    }
    json!({
        "p50": us(hist.value_at_quantile(0.50)),
        "p90": us(hist.value_at_quantile(0.90)),
        "p99": us(hist.value_at_quantile(0.99)),
        "p999": us(hist.value_at_quantile(0.999)),
        "max": us(hist.max()),
        "mean": us(hist.mean() as u64),
    })
}

/// Rounds for the summary line.
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}
