//! What one sign-in verification costs: recovers the signer of every
//! ethers.js vector in `tests/vectors/eip191.json` over and over, and prints
//! the time per recovery.
//!
//! ```text
//! cargo run --release -p circle_protocol --example recover_cost [-- ROUNDS]
//! ```
//!
//! This is an example rather than a test or a benchmark harness on purpose:
//! a timed test would fail on a loaded machine, and one number from a plain
//! loop is all the README needs. Several rounds are run and the fastest and
//! the median are printed, because the machine may be shared with other
//! work and the slow rounds measure that work, not this code.

use std::hint::black_box;
use std::time::Instant;

use circle_protocol::{Address, Signature, recover_personal_signer};
use serde_json::Value;

/// Recoveries per round, spread evenly over the vectors.
const PER_ROUND: usize = 2_000;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|arg| arg.parse().expect("ROUNDS must be a positive integer"))
        .unwrap_or(15)
        .max(1);

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/eip191.json");
    let text = std::fs::read_to_string(path).expect("the vectors file is readable");
    let json: Value = serde_json::from_str(&text).expect("the vectors file is JSON");
    let cases: Vec<(String, Signature, Address)> = json["vectors"]
        .as_array()
        .expect("a vectors array")
        .iter()
        .map(|v| {
            let field = |name: &str| v[name].as_str().expect("a string field").to_owned();
            (
                field("message"),
                field("signature").parse().expect("a signature"),
                field("address").parse().expect("an address"),
            )
        })
        .collect();

    // Correctness first, and a warm-up (page faults, precomputed tables).
    for (message, signature, address) in &cases {
        let signer = recover_personal_signer(message, signature).expect("the vector recovers");
        assert_eq!(signer.address(), *address, "wrong signer for {message:?}");
    }

    let mut per_recovery = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        for i in 0..PER_ROUND {
            let (message, signature, _) = &cases[i % cases.len()];
            let signer = recover_personal_signer(black_box(message), black_box(signature));
            black_box(signer.expect("the vector recovers"));
        }
        per_recovery.push(start.elapsed().as_nanos() as f64 / PER_ROUND as f64);
    }
    per_recovery.sort_by(f64::total_cmp);
    let fastest = per_recovery[0];
    let median = per_recovery[per_recovery.len() / 2];
    println!(
        "recover_personal_signer: {} vectors, {rounds} rounds of {PER_ROUND}: \
         fastest {fastest:.0} ns/recovery, median {median:.0} ns/recovery",
        cases.len()
    );
}
