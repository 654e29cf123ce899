//! The protocol end to end over real sockets: authentication, every error
//! code, pipelining, batches, limits and shutdown.

mod common;

use std::time::Duration;

use circle_executor::ScriptLimits;
use circle_server::{ServerConfig, ServerLimits};
use common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn auth_server() -> TestServer {
    TestServer::start(ServerConfig {
        enable_auth: true,
        ..tls_config()
    })
}

#[tokio::test]
async fn sign_in_by_public_key_then_play_sees_the_caller() {
    let server = auth_server();
    let mut ws = connect_wss(server.wss_addr()).await;
    let me = key(7);

    let refused = call(&mut ws, 1, "play", json!({"script": "1"})).await;
    assert_eq!(error_code(&refused), -32002, "{refused}");

    let signed_in = sign_in(&mut ws, &me).await;
    assert_eq!(signed_in["result"]["authenticated"], true, "{signed_in}");
    assert_eq!(
        signed_in["result"]["pubkey"],
        me.public_key().to_compressed_hex()
    );
    assert_eq!(
        signed_in["result"]["address"],
        me.public_key().address().to_checksum_string()
    );

    let played = call(&mut ws, 3, "play", json!({"script": "CALLER_PUBLIC_KEY"})).await;
    assert_eq!(
        played["result"]["output"],
        me.public_key().to_compressed_hex(),
        "{played}"
    );
    let whoami = call(&mut ws, 4, "whoami", json!({})).await;
    assert_eq!(whoami["result"]["authenticated"], true);
    assert_eq!(
        whoami["result"]["pubkey"],
        me.public_key().to_compressed_hex()
    );
    assert_eq!(
        whoami["result"]["circle"]["public_key"],
        server.handle.circle_public_key()
    );
    server.stop().await;
}

#[tokio::test]
async fn challenge_is_a_sign_in_with_ethereum_message_for_this_circle() {
    let server = TestServer::start(ServerConfig {
        circle_name: "demo \"quoted\" ✓".into(),
        ..tls_config()
    });
    let mut ws = connect_wss(server.wss_addr()).await;
    let me = key(9);
    let address = me.public_key().address().to_checksum_string();
    let answer = call(
        &mut ws,
        1,
        "fetch_nonce",
        json!({"address": address.to_lowercase()}),
    )
    .await;
    let result = &answer["result"];
    let message = result["message"].as_str().expect("message");
    let challenge = circle_protocol::SignInChallenge::parse(message).expect("challenge parses");
    assert_eq!(challenge.address, address);
    assert_eq!(challenge.nonce, result["nonce"].as_str().expect("nonce"));
    assert!(circle_protocol::is_valid_nonce(&challenge.nonce));
    assert_eq!(challenge.circle_name, "demo \"quoted\" ✓");
    assert_eq!(
        challenge.circle_public_key,
        server.handle.circle_public_key()
    );
    assert_eq!(
        challenge.domain,
        format!("localhost:{}", server.wss_addr().port())
    );
    assert_eq!(
        challenge.uri,
        format!("wss://localhost:{}/ws", server.wss_addr().port())
    );
    assert_eq!(
        challenge.expiration_time,
        result["expires_at"].as_u64().expect("expires_at")
    );
    assert!(challenge.expiration_time > challenge.issued_at);
    assert!(message.starts_with(&format!(
        "localhost:{} wants you to sign in with your Ethereum account:\n{address}\n",
        server.wss_addr().port()
    )));

    // Signing by address works too, and v may be 0/1 instead of 27/28.
    let mut signature = me.sign_personal_message(message);
    signature.0[64] -= 27;
    let ok = call(
        &mut ws,
        2,
        "authenticate",
        json!({"signature": signature.to_hex(), "address": address}),
    )
    .await;
    assert_eq!(ok["result"]["authenticated"], true, "{ok}");
    server.stop().await;
}

#[tokio::test]
async fn uncompressed_public_key_signs_in_too() {
    let server = auth_server();
    let mut ws = connect_wss(server.wss_addr()).await;
    let me = key(11);
    let challenge = call(
        &mut ws,
        1,
        "fetch_nonce",
        json!({"pubkey": format!("0x{}", me.public_key().to_uncompressed_hex())}),
    )
    .await;
    let signature =
        me.sign_personal_message(challenge["result"]["message"].as_str().expect("message"));
    let ok = call(
        &mut ws,
        2,
        "authenticate",
        json!({"signature": signature.to_hex()}),
    )
    .await;
    assert_eq!(
        ok["result"]["pubkey"],
        me.public_key().to_compressed_hex(),
        "{ok}"
    );
    server.stop().await;
}

async fn fetch_message(ws: &mut Ws, id: i64, who: &circle_protocol::SigningKey) -> String {
    let answer = call(
        ws,
        id,
        "fetch_nonce",
        json!({"pubkey": who.public_key().to_compressed_hex()}),
    )
    .await;
    answer["result"]["message"]
        .as_str()
        .expect("message")
        .to_owned()
}

#[tokio::test]
async fn bad_foreign_reused_and_misplaced_signatures_are_refused() {
    let server = auth_server();
    let mut ws = connect_wss(server.wss_addr()).await;
    let (me, mallory) = (key(1), key(2));

    // Bad signature: garbage, wrong length, and a flipped bit.
    let message = fetch_message(&mut ws, 1, &me).await;
    let refused = call(&mut ws, 2, "authenticate", json!({"signature": "0xnothex"})).await;
    assert_eq!(error_code(&refused), -32001, "{refused}");
    let message2 = fetch_message(&mut ws, 3, &me).await;
    assert_ne!(message, message2, "every challenge has a fresh nonce");
    let mut flipped = me.sign_personal_message(&message2);
    flipped.0[10] ^= 1;
    let refused = call(
        &mut ws,
        4,
        "authenticate",
        json!({"signature": flipped.to_hex()}),
    )
    .await;
    assert_eq!(error_code(&refused), -32001, "{refused}");

    // Foreign key: Mallory signs a challenge issued for my public key.
    let message = fetch_message(&mut ws, 5, &me).await;
    let refused = call(
        &mut ws,
        6,
        "authenticate",
        json!({"signature": mallory.sign_personal_message(&message).to_hex()}),
    )
    .await;
    assert_eq!(error_code(&refused), -32001, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not made by"),
        "{refused}"
    );
    drop(ws);

    // Reused nonce: a good signature works once only.
    let mut ws = connect_wss(server.wss_addr()).await;
    let message = fetch_message(&mut ws, 1, &me).await;
    let signature = me.sign_personal_message(&message).to_hex();
    let ok = call(&mut ws, 2, "authenticate", json!({"signature": signature})).await;
    assert_eq!(ok["result"]["authenticated"], true, "{ok}");
    let replay = call(&mut ws, 3, "authenticate", json!({"signature": signature})).await;
    assert_eq!(error_code(&replay), -32001, "{replay}");

    // Nonce from another connection: signed on A, presented on B.
    let mut a = connect_wss(server.wss_addr()).await;
    let mut b = connect_wss(server.wss_addr()).await;
    let message_a = fetch_message(&mut a, 1, &me).await;
    let _message_b = fetch_message(&mut b, 1, &me).await;
    let stolen = call(
        &mut b,
        2,
        "authenticate",
        json!({"signature": me.sign_personal_message(&message_a).to_hex()}),
    )
    .await;
    assert_eq!(error_code(&stolen), -32001, "{stolen}");
    let mut c = connect_wss(server.wss_addr()).await;
    let never_fetched = call(
        &mut c,
        1,
        "authenticate",
        json!({"signature": me.sign_personal_message(&message_a).to_hex()}),
    )
    .await;
    assert_eq!(error_code(&never_fetched), -32001, "{never_fetched}");

    // A key repeated in authenticate must be the one given to fetch_nonce.
    let mut d = connect_wss(server.wss_addr()).await;
    let message = fetch_message(&mut d, 1, &me).await;
    let mismatch = call(
        &mut d,
        2,
        "authenticate",
        json!({
            "signature": me.sign_personal_message(&message).to_hex(),
            "pubkey": mallory.public_key().to_compressed_hex(),
        }),
    )
    .await;
    assert_eq!(error_code(&mismatch), -32001, "{mismatch}");
    server.stop().await;
}

#[tokio::test]
async fn high_s_signatures_are_refused() {
    let server = auth_server();
    let mut ws = connect_wss(server.wss_addr()).await;
    let me = key(3);
    let message = fetch_message(&mut ws, 1, &me).await;
    let signature = me.sign_personal_message(&message);
    // s' = n - s with v flipped is the same signature in its malleable form.
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36,
        0x41, 0x41,
    ];
    let mut high = signature;
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let diff = N[i] as i16 - signature.0[32 + i] as i16 - borrow;
        high.0[32 + i] = diff.rem_euclid(256) as u8;
        borrow = if diff < 0 { 1 } else { 0 };
    }
    high.0[64] = if signature.0[64] == 27 { 28 } else { 27 };
    let refused = call(
        &mut ws,
        2,
        "authenticate",
        json!({"signature": high.to_hex()}),
    )
    .await;
    assert_eq!(error_code(&refused), -32001, "{refused}");
    server.stop().await;
}

#[tokio::test]
async fn expired_nonce_is_refused() {
    let server = TestServer::start(ServerConfig {
        enable_auth: true,
        limits: ServerLimits {
            nonce_ttl: Duration::from_secs(1),
            ..ServerLimits::default()
        },
        ..tls_config()
    });
    let mut ws = connect_wss(server.wss_addr()).await;
    let me = key(4);
    let message = fetch_message(&mut ws, 1, &me).await;
    // Waiting out the nonce's lifetime is the point of this test.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let refused = call(
        &mut ws,
        2,
        "authenticate",
        json!({"signature": me.sign_personal_message(&message).to_hex()}),
    )
    .await;
    assert_eq!(error_code(&refused), -32001, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("expired"),
        "{refused}"
    );
    server.stop().await;
}

#[tokio::test]
async fn too_many_failed_sign_ins_close_the_connection_with_1008() {
    let server = TestServer::start(ServerConfig {
        enable_auth: true,
        limits: ServerLimits {
            max_failed_auth_attempts: 3,
            ..ServerLimits::default()
        },
        ..tls_config()
    });
    let mut ws = connect_wss(server.wss_addr()).await;
    for id in 1..=3 {
        let refused = call(&mut ws, id, "authenticate", json!({"signature": "0x00"})).await;
        assert_eq!(error_code(&refused), -32001);
    }
    assert_eq!(recv_close_code(&mut ws).await, Some(1008));
    // Others are unaffected.
    let mut other = connect_wss(server.wss_addr()).await;
    assert_eq!(
        sign_in(&mut other, &key(5)).await["result"]["authenticated"],
        true
    );
    server.stop().await;
}

#[tokio::test]
async fn every_error_code_a_client_can_cause() {
    let server = TestServer::start(ServerConfig {
        enable_auth: true,
        script_queue_capacity: 1,
        script_limits: ScriptLimits {
            max_operations: 3_000_000,
            ..ScriptLimits::default()
        },
        ..tls_config()
    });
    let mut ws = connect_wss(server.wss_addr()).await;
    let expect = |answer: Value, code: i64| {
        assert_eq!(error_code(&answer), code, "{answer}");
        assert!(
            !answer["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{answer}"
        );
        answer
    };

    send(&mut ws, "{not json").await;
    let parse = expect(recv(&mut ws).await, -32700);
    assert_eq!(parse["id"], Value::Null);
    send(&mut ws, r#"{"jsonrpc":"1.0","id":1,"method":"whoami"}"#).await;
    assert_eq!(expect(recv(&mut ws).await, -32600)["id"], 1);
    send(&mut ws, r#"{"jsonrpc":"2.0","id":2,"method":7}"#).await;
    expect(recv(&mut ws).await, -32600);
    ws.send(Message::binary(b"{}".to_vec()))
        .await
        .expect("send binary");
    expect(recv(&mut ws).await, -32600);
    expect(call(&mut ws, 3, "no_such_method", json!({})).await, -32601);
    expect(
        call(&mut ws, 4, "fetch_nonce", json!({"pubkey": 12})).await,
        -32602,
    );
    expect(
        call(&mut ws, 5, "fetch_nonce", json!({"pubkey": "02zz"})).await,
        -32602,
    );
    expect(call(&mut ws, 6, "fetch_nonce", json!({})).await, -32602);
    expect(call(&mut ws, 7, "play", json!({"script": 5})).await, -32602);
    expect(
        call(&mut ws, 8, "authenticate", json!({"signature": "0x00"})).await,
        -32001,
    );
    expect(
        call(&mut ws, 9, "play", json!({"script": "1"})).await,
        -32002,
    );

    sign_in(&mut ws, &key(6)).await;
    let syntax = expect(
        call(&mut ws, 10, "play", json!({"script": "let x = ;"})).await,
        -32003,
    );
    assert!(
        syntax["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("line 1"),
        "position named: {syntax}"
    );
    expect(
        call(
            &mut ws,
            11,
            "play",
            json!({"script": "undefined_variable + 1"}),
        )
        .await,
        -32003,
    );
    let limit = expect(
        call(&mut ws, 12, "play", json!({"script": "loop {}"})).await,
        -32004,
    );
    assert!(
        limit["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("3000000"),
        "limit named: {limit}"
    );

    // -32029 (a full executor queue): its own test below.

    // After all of that the connection still works.
    assert_eq!(
        call(&mut ws, 30, "play", json!({"script": "40 + 2"})).await["result"]["output"],
        "42"
    );
    server.stop().await;
}

/// -32029 is for a full executor queue (1.1: never for requests in flight).
/// One script thread busy until its time limit, the one place in the queue
/// taken: the third script finds no room. The scripts run until a limit
/// rather than for a number of operations, so how fast this machine runs
/// them does not matter.
#[tokio::test]
async fn a_full_script_queue_refuses_with_32029() {
    let server = TestServer::with_script_threads(
        ServerConfig {
            script_queue_capacity: 1,
            script_limits: ScriptLimits {
                max_run_time: Duration::from_secs(1),
                max_operations: u64::MAX,
                ..ScriptLimits::default()
            },
            ..tls_config()
        },
        1,
    );
    let mut ws = connect_wss(server.wss_addr()).await;
    for id in 20..23 {
        send(
            &mut ws,
            json!({"jsonrpc":"2.0","id":id,"method":"play","params":{"script":"loop {}"}})
                .to_string(),
        )
        .await;
        // Let the script thread take the first job before the next comes.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let first = recv(&mut ws).await;
    assert_eq!(first["id"], 22, "the refusal comes at once: {first}");
    assert_eq!(error_code(&first), -32029, "{first}");
    for id in [20, 21] {
        let answer = recv(&mut ws).await;
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(
            error_code(&answer),
            -32004,
            "stopped by its time limit: {answer}"
        );
    }
    assert_eq!(
        call(&mut ws, 30, "play", json!({"script": "40 + 2"})).await["result"]["output"],
        "42"
    );
    server.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_by_id_out_of_order() {
    let server = TestServer::tls();
    let mut ws = connect_wss(server.wss_addr()).await;
    // A slow script first, then quick ones: the quick ones overtake it.
    send(&mut ws, json!({"jsonrpc":"2.0","id":"slow","method":"play","params":{"script":"let x = 0; for i in 0..200000 { x += 1; } x"}}).to_string()).await;
    for id in 0..20 {
        send(&mut ws, json!({"jsonrpc":"2.0","id":id,"method":"play","params":{"script": format!("{id} * 2")}}).to_string()).await;
    }
    send(&mut ws, r#"{"jsonrpc":"2.0","method":"whoami"}"#).await; // a notification: no answer
    let mut seen = std::collections::HashMap::new();
    let mut order = Vec::new();
    for _ in 0..21 {
        let answer = recv(&mut ws).await;
        order.push(answer["id"].clone());
        seen.insert(answer["id"].to_string(), answer["result"]["output"].clone());
    }
    assert_eq!(seen.len(), 21);
    for id in 0..20 {
        assert_eq!(seen[&id.to_string()], json!((id * 2).to_string()));
    }
    assert_eq!(seen["\"slow\""], "200000");
    assert_ne!(
        order[0],
        json!("slow"),
        "quick requests are not stuck behind a slow one: {order:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn batches_are_answered_as_batches() {
    let server = TestServer::tls_with_limits(ServerLimits {
        max_batch_len: 4,
        ..ServerLimits::default()
    });
    let mut ws = connect_wss(server.wss_addr()).await;
    send(
        &mut ws,
        json!([
            {"jsonrpc":"2.0","id":1,"method":"play","params":{"script":"1 + 1"}},
            {"jsonrpc":"2.0","id":2,"method":"whoami"},
            {"jsonrpc":"2.0","method":"whoami"},
            {"jsonrpc":"2.0","id":3,"method":"nope"}
        ])
        .to_string(),
    )
    .await;
    let batch = recv(&mut ws).await;
    let items = batch.as_array().expect("a batch answer");
    assert_eq!(items.len(), 3, "notifications get no answer: {batch}");
    let by_id = |id: i64| {
        items
            .iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("id {id} in {batch}"))
    };
    assert_eq!(by_id(1)["result"]["output"], "2");
    assert_eq!(by_id(2)["result"]["authenticated"], false);
    assert_eq!(error_code(by_id(3)), -32601);

    send(&mut ws, "[]").await;
    assert_eq!(error_code(&recv(&mut ws).await), -32600);
    send(&mut ws, "[1, 2]").await;
    let invalid = recv(&mut ws).await;
    assert_eq!(invalid.as_array().map(Vec::len), Some(2), "{invalid}");
    send(
        &mut ws,
        json!(vec![json!({"jsonrpc":"2.0","id":1,"method":"whoami"}); 5]).to_string(),
    )
    .await;
    assert_eq!(
        error_code(&recv(&mut ws).await),
        -32600,
        "over the batch limit"
    );
    server.stop().await;
}

#[tokio::test]
async fn oversize_message_closes_only_that_connection_with_1009() {
    let server = TestServer::tls_with_limits(ServerLimits {
        max_message_bytes: 4096,
        ..ServerLimits::default()
    });
    let mut victim = connect_wss(server.wss_addr()).await;
    let mut bystander = connect_wss(server.wss_addr()).await;
    let huge =
        json!({"jsonrpc":"2.0","id":1,"method":"play","params":{"script": "x".repeat(10_000)}})
            .to_string();
    send(&mut victim, huge).await;
    assert_eq!(recv_close_code(&mut victim).await, Some(1009));
    assert_eq!(
        call(&mut bystander, 1, "play", json!({"script": "40 + 2"})).await["result"]["output"],
        "42"
    );
    server.stop().await;
}

#[tokio::test]
async fn runaway_script_is_stopped_while_others_are_served() {
    let server = TestServer::start(ServerConfig {
        script_limits: ScriptLimits {
            max_operations: u64::MAX,
            max_run_time: Duration::from_millis(1500),
            ..ScriptLimits::default()
        },
        ..tls_config()
    });
    let mut runaway = connect_wss(server.wss_addr()).await;
    send(
        &mut runaway,
        json!({"jsonrpc":"2.0","id":1,"method":"play","params":{"script":"loop {}"}}).to_string(),
    )
    .await;
    let mut other = connect_wss(server.wss_addr()).await;
    let started = std::time::Instant::now();
    for id in 0..20 {
        assert_eq!(
            call(&mut other, id, "play", json!({"script": "40 + 2"})).await["result"]["output"],
            "42"
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "others were served while the runaway ran"
    );
    let stopped = recv(&mut runaway).await;
    assert_eq!(error_code(&stopped), -32004, "{stopped}");
    server.stop().await;
}

#[tokio::test]
async fn two_hundred_connections_sign_in_and_play_at_once() {
    let server = TestServer::start(ServerConfig {
        enable_auth: true,
        ..tls_config()
    });
    let addr = server.wss_addr();
    let clients = (0..200u32).map(|n| {
        tokio::spawn(async move {
            let mut ws = connect_wss(addr).await;
            let me = circle_protocol::SigningKey::from_bytes(&{
                let mut secret = [7u8; 32];
                secret[..4].copy_from_slice(&n.to_be_bytes());
                secret
            })
            .expect("key");
            assert_eq!(sign_in(&mut ws, &me).await["result"]["authenticated"], true);
            let answer = call(&mut ws, 3, "play", json!({"script": format!("{n} + 1")})).await;
            assert_eq!(answer["result"]["output"], (n + 1).to_string());
        })
    });
    for client in futures_util::future::join_all(clients).await {
        client.expect("client task");
    }
    server.stop().await;
}

#[tokio::test]
async fn graceful_stop_lets_running_scripts_answer_then_closes_with_1001() {
    let server = TestServer::tls();
    let mut ws = connect_wss(server.wss_addr()).await;
    send(&mut ws, json!({"jsonrpc":"2.0","id":1,"method":"play","params":{"script":"let x = 0; for i in 0..300000 { x += 1; } x"}}).to_string()).await;
    // Make sure the script is running before stopping.
    let whoami = call(&mut ws, 2, "whoami", json!({})).await;
    assert!(whoami["result"].is_object());
    let stopping = tokio::spawn(server.stop());
    let answer = recv(&mut ws).await;
    assert_eq!(answer["result"]["output"], "300000", "{answer}");
    assert_eq!(recv_close_code(&mut ws).await, Some(1001));
    stopping.await.expect("stop completes");
}

#[tokio::test]
async fn oversize_message_in_fragments_also_closes_with_1009() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let server = TestServer::tls_with_limits(ServerLimits {
        max_message_bytes: 4096,
        ..ServerLimits::default()
    });
    let mut ws = connect_wss(server.wss_addr()).await;
    // Each fragment is under the limit; the message they make is not.
    let first = Frame::message("x".repeat(3000), OpCode::Data(Data::Text), false);
    let rest = Frame::message("x".repeat(3000), OpCode::Data(Data::Continue), true);
    ws.send(Message::Frame(first))
        .await
        .expect("first fragment");
    ws.send(Message::Frame(rest)).await.expect("last fragment");
    assert_eq!(recv_close_code(&mut ws).await, Some(1009));
    server.stop().await;
}
