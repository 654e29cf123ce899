//! circle-server behind real load balancers on loopback: HAProxy sending
//! PROXY protocol v2 (with `deploy/haproxy.cfg` as it is) and nginx adding
//! `X-Forwarded-For` (with `deploy/nginx-circles.conf`). Clients connect
//! from 127.0.0.2 and 127.0.0.3, so the balancer's own address (127.0.0.1)
//! is never the one a limit or a log line should name.

mod common;
mod processes;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use processes::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT_A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const CLIENT_B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));
const BALANCER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

async fn plays(ws: &mut Ws) {
    let answer = call(ws, 7, "play", json!({"script": "40 + 2"})).await;
    assert_eq!(answer["result"]["output"], "42", "{answer}");
}

#[tokio::test]
async fn haproxy_send_proxy_v2_gives_each_client_its_own_limit_and_log_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server_log = dir.path().join("server.log");
    let (server_process, server) = circle_server(
        &[
            "--drain-seconds",
            "8",
            "--tls",
            "--cert",
            "cert.pem",
            "--key",
            "key.pem",
            "--proxy-protocol",
            "--trusted-proxy",
            "127.0.0.1/32",
            "--max-connections-per-ip",
            "2",
        ],
        &server_log,
    );
    let balancer = SocketAddr::new(BALANCER, free_port());
    let haproxy_log = dir.path().join("haproxy.log");
    let config = repo_root().join("deploy/haproxy.cfg");
    // Both backend entries name the one server, so every connection meets
    // the same per-address cap.
    let _haproxy = spawn_logged(
        "haproxy",
        &["-db", "-f", config.to_str().expect("path")],
        &[
            ("CIRCLE_LB_BIND", balancer.to_string()),
            ("CIRCLE_SERVER_1", server.to_string()),
            ("CIRCLE_SERVER_2", server.to_string()),
            ("CIRCLE_CA_FILE", path_text(dev_cert())),
        ],
        &haproxy_log,
    );
    wait_for_port(balancer, "haproxy").await;

    let mut a1 = websocket_from(CLIENT_A, balancer, true, &[])
        .await
        .expect("first from A");
    let mut a2 = websocket_from(CLIENT_A, balancer, true, &[])
        .await
        .expect("second from A");
    plays(&mut a1).await;
    plays(&mut a2).await;
    // Without the PROXY header every connection would be 127.0.0.1's, and
    // this one the server's third from one address either way.
    assert_eq!(
        websocket_from(CLIENT_A, balancer, true, &[]).await.err(),
        Some(429),
        "a third connection from A is refused"
    );
    let mut b1 = websocket_from(CLIENT_B, balancer, true, &[])
        .await
        .expect("B still connects: the cap is A's, not the balancer's");
    plays(&mut b1).await;
    wait_for_log_line(
        &server_log,
        &[
            "connection refused: too many connections from your address",
            "client=127.0.0.2",
        ],
    )
    .await;
    wait_for_log_line(&server_log, &["websocket connected", "client=127.0.0.3"]).await;

    // Straight to the server, past the balancer: no header, no TLS.
    assert_eq!(
        websocket_from(BALANCER, server, true, &[]).await.err(),
        Some(0),
        "a connection without the PROXY header gets no handshake"
    );
    wait_for_log_line(
        &server_log,
        &["does not start with a PROXY protocol header"],
    )
    .await;

    // A client that is not a trusted proxy may not send a header at all.
    let mut forger = connect_from(CLIENT_A, server).await.expect("tcp");
    forger
        .write_all(b"PROXY TCP4 203.0.113.1 127.0.0.1 40000 443\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), forger.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the forger's connection is closed unanswered: {read:?}"
    );
    wait_for_log_line(&server_log, &["127.0.0.2, which is not a trusted proxy"]).await;

    let server_text = read_log(&server_log);
    assert!(!server_text.contains("client=203.0.113.1"), "{server_text}");
    drop((a1, a2));

    // Draining: on SIGTERM /health answers 503, which HAProxy's checks
    // (HTTPS with their own PROXY header) see as a layer 7 failure, while
    // the connected client is still served; then 1001.
    assert!(
        !read_log(&haproxy_log).contains("is DOWN"),
        "in rotation until the drain"
    );
    let pid = server_process.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    wait_for_log_line(&haproxy_log, &["is DOWN", "Layer7 wrong status", "503"]).await;
    plays(&mut b1).await;
    assert_eq!(recv_close_code(&mut b1).await, Some(1001));
}

/// `deploy/nginx-circles.conf` with this test's ports and certificate, in
/// a minimal nginx main configuration.
fn nginx_config(dir: &std::path::Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let site = std::fs::read_to_string(repo_root().join("deploy/nginx-circles.conf"))
        .expect("deploy/nginx-circles.conf");
    let cert = path_text(dev_cert());
    let key = path_text(dev_key());
    let site = site
        .replace("listen 443 ssl;", &format!("listen {listen} ssl;"))
        .replace("server 127.0.0.1:8080;", &format!("server {upstream};"))
        .replace(
            "/etc/letsencrypt/live/circles.example.com/fullchain.pem",
            &cert,
        )
        .replace(
            "/etc/letsencrypt/live/circles.example.com/privkey.pem",
            &key,
        );
    assert!(site.contains(&listen.to_string()) && site.contains(&cert));
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/nginx-error.log info;\nevents {{ worker_connections 64; }}\n\
         http {{\naccess_log off;\nclient_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\nuwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n{site}\n}}\n"
    )
}

#[tokio::test]
async fn nginx_x_forwarded_for_is_believed_from_the_trusted_proxy_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server_log = dir.path().join("server.log");
    let (_server, server) = circle_server(
        &[
            "--trusted-proxy",
            "127.0.0.1/32",
            "--max-connections-per-ip",
            "2",
        ],
        &server_log,
    );
    let proxy = SocketAddr::new(BALANCER, free_port());
    let config = dir.path().join("nginx.conf");
    std::fs::write(&config, nginx_config(dir.path(), proxy, server)).expect("nginx.conf");
    let nginx_log = dir.path().join("nginx.log");
    let _nginx = spawn_logged(
        "nginx",
        &[
            "-p",
            dir.path().to_str().expect("path"),
            "-c",
            config.to_str().expect("path"),
        ],
        &[],
        &nginx_log,
    );
    wait_for_port(proxy, "nginx").await;

    // Each of A's connections claims to be someone else; nginx appends the
    // truth, and the server takes the right-most untrusted address.
    let mut a1 = websocket_from(CLIENT_A, proxy, true, &[("x-forwarded-for", "203.0.113.1")])
        .await
        .expect("first from A");
    let mut a2 = websocket_from(CLIENT_A, proxy, true, &[("x-forwarded-for", "203.0.113.2")])
        .await
        .expect("second from A");
    plays(&mut a1).await;
    plays(&mut a2).await;
    assert_eq!(
        websocket_from(CLIENT_A, proxy, true, &[("x-forwarded-for", "203.0.113.3")])
            .await
            .err(),
        Some(429),
        "a third connection from A is refused, whatever it claims"
    );
    let mut b1 = websocket_from(CLIENT_B, proxy, true, &[])
        .await
        .expect("B still connects");
    plays(&mut b1).await;

    // Straight to the server from A, which is no trusted proxy: its
    // X-Forwarded-For is ignored, so it is A's third connection.
    assert_eq!(
        websocket_from(
            CLIENT_A,
            server,
            false,
            &[("x-forwarded-for", "198.51.100.7")]
        )
        .await
        .err(),
        Some(429),
        "a forged X-Forwarded-For from an untrusted peer changes nothing"
    );
    wait_for_log_line(
        &server_log,
        &[
            "connection refused: too many connections from your address",
            "client=127.0.0.2",
        ],
    )
    .await;
    wait_for_log_line(&server_log, &["websocket connected", "client=127.0.0.3"]).await;
    drop((a1, a2, b1));
    let server_text = read_log(&server_log);
    for forged in ["203.0.113", "198.51.100.7", "client=127.0.0.1"] {
        assert!(!server_text.contains(forged), "{forged} in:\n{server_text}");
    }
}
