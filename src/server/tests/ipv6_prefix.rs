//! Per-client limits count an IPv6 client by its /64 (protocol-neutral,
//! but what a server on the internet needs: one host has a whole /64).
//!
//! Loopback has one IPv6 address (`::1`), so this test gives itself more:
//! it runs again inside a private network namespace of its own (`unshare
//! --net`, root only), where it puts a few addresses of two /64s on that
//! namespace's `lo`. Nothing leaves the namespace, and the machine's own
//! network is untouched.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use circle_server::{ServerConfig, ServerLimits, spawn_circle_server};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Error as WsError;

const INSIDE: &str = "CIRCLE_TEST_IN_NETNS";
const SERVER: &str = "fd00:c1c1:0:1::1";
/// Three addresses of the server's /64 and one of the next /64.
const SAME_64: [&str; 3] = ["fd00:c1c1:0:1::2", "fd00:c1c1:0:1::3", "fd00:c1c1:0:1::4"];
const OTHER_64: &str = "fd00:c1c1:0:2::2";

#[test]
fn two_ipv6_addresses_of_one_64_share_one_per_client_budget() {
    if std::env::var_os(INSIDE).is_none() {
        run_inside_a_network_namespace("two_ipv6_addresses_of_one_64_share_one_per_client_budget");
        return;
    }
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(per_client_budget_is_per_64());
}

async fn per_client_budget_is_per_64() {
    let (task, handle) = spawn_circle_server(ServerConfig {
        host: SERVER.into(),
        port: 0,
        connection_threads: 1,
        script_threads: 1,
        limits: ServerLimits {
            max_connections_per_ip: 2,
            ..ServerLimits::default()
        },
        ..ServerConfig::default()
    })
    .expect("server starts on an IPv6 address");
    let server = handle.ws_addr().expect("plain listener");

    let first = connect_from(SAME_64[0], server)
        .await
        .expect("first of the /64");
    let second = connect_from(SAME_64[1], server)
        .await
        .expect("second of the /64");
    match connect_from(SAME_64[2], server).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 429),
        Err(other) => panic!("expected HTTP 429, got {other}"),
        Ok(_) => panic!("a third address of the same /64 got past a cap of 2"),
    }
    let other = connect_from(OTHER_64, server)
        .await
        .expect("another /64 has its own budget");

    // A slot freed in the /64 is a slot for any of its addresses.
    drop(first);
    let mut retried = None;
    for _ in 0..100 {
        if let Ok(ws) = connect_from(SAME_64[2], server).await {
            retried = Some(ws);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        retried.is_some(),
        "the freed slot went to the /64's third address"
    );
    drop((second, other, retried));
    handle.stop().await;
    task.await
        .expect("server task")
        .expect("server ran cleanly");
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket from `source` (a local address of the namespace) to `server`.
async fn connect_from(source: &str, server: SocketAddr) -> Result<Ws, WsError> {
    let source: IpAddr = source.parse().expect("address");
    let socket = TcpSocket::new_v6()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let tcp = socket.connect(server).await?;
    let url = format!("ws://[{}]:{}/ws", server.ip(), server.port());
    tokio_tungstenite::client_async(url, tcp)
        .await
        .map(|(ws, _)| ws)
}

/// Runs this test binary's test `name` again in a new network namespace
/// with the test addresses on its loopback interface.
fn run_inside_a_network_namespace(name: &str) {
    let exe = std::env::current_exe().expect("test binary");
    let mut setup = String::from("set -e; ip link set lo up;");
    for address in [SERVER, SAME_64[0], SAME_64[1], SAME_64[2], OTHER_64] {
        setup.push_str(&format!(" ip -6 addr add {address}/64 dev lo nodad;"));
    }
    setup.push_str(r#" exec "$0" --exact "$1" --nocapture --test-threads 1"#);
    let status = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", &setup])
        .arg(&exe)
        .arg(name)
        .env(INSIDE, "1")
        .status()
        .expect("unshare runs (util-linux)");
    assert!(
        status.success(),
        "the test inside its network namespace failed (it needs root, `unshare` and `ip`): {status}"
    );
}
