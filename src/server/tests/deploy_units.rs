//! The systemd units in `deploy/` pass `systemd-analyze verify` (with
//! `ExecStart` pointed at the binaries just built) and keep their
//! hardening.

mod common;
mod processes;

use std::process::Command;

use common::repo_root;
use processes::worker_binary;

#[test]
fn the_service_units_verify_and_stay_hardened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = env!("CARGO_BIN_EXE_circle-server");
    let worker = worker_binary().to_string_lossy().into_owned();
    let mut units = Vec::new();
    for (unit, binary) in [
        ("circle-server.service", server),
        ("circle-worker.service", worker.as_str()),
    ] {
        let text = std::fs::read_to_string(repo_root().join("deploy").join(unit)).expect(unit);
        for directive in [
            "User=circles",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=",
            "LimitNOFILE=",
            "EnvironmentFile=",
        ] {
            assert!(text.contains(directive), "{unit} has {directive}");
        }
        let bin_name = unit.trim_end_matches(".service");
        let local = text.replace(&format!("/usr/local/bin/{bin_name}"), binary);
        assert_ne!(local, text, "{unit} starts /usr/local/bin/{bin_name}");
        let path = dir.path().join(unit);
        std::fs::write(&path, local).expect("write unit");
        units.push(path);
    }
    let server_unit = std::fs::read_to_string(&units[0]).expect("unit");
    assert!(server_unit.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE"));
    assert!(server_unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));

    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify: {stderr}");
    // Warnings about the units themselves (unknown or misspelt directives).
    assert!(
        !stderr.contains("circle-"),
        "systemd-analyze has something to say about the units:\n{stderr}"
    );
}
