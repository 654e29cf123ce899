//! Signing in through a [`Signer`] over WSS with a real server: a signer
//! that delegates to another task (as a KMS client does), a signer whose
//! signature is by another key (refused before sending), a signer that never
//! answers (a deadline, not a hang), and a reconnect that signs in again
//! through the signer.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use circle_client_ws::circle_protocol::{Address, SigningKey};
use circle_client_ws::{
    CircleWsClientError, ReconnectPolicy, SignFuture, Signer, SignerError, TlsBackend,
};
use circle_server::ServerConfig;
use support::*;
use tokio::sync::{mpsc, oneshot};

/// A request to the key-holding task: the message, and where to answer.
type SignRequest = (
    String,
    oneshot::Sender<circle_client_ws::circle_protocol::Signature>,
);

/// Stands for a KMS client: the key lives in another task, reached through
/// a channel, and the signer knows only its address.
struct DelegatingSigner {
    address: Address,
    requests: mpsc::Sender<SignRequest>,
}

impl DelegatingSigner {
    /// Starts the task that holds `key` and signs for whoever asks; returns
    /// the signer and a count of the signatures made.
    fn spawn(key: SigningKey, claimed: Address) -> (DelegatingSigner, Arc<AtomicUsize>) {
        let (requests, mut incoming) = mpsc::channel::<SignRequest>(4);
        let signed = Arc::new(AtomicUsize::new(0));
        let count = signed.clone();
        tokio::spawn(async move {
            while let Some((message, reply)) = incoming.recv().await {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = reply.send(key.sign_personal_message(&message));
            }
        });
        (
            DelegatingSigner {
                address: claimed,
                requests,
            },
            signed,
        )
    }
}

impl Signer for DelegatingSigner {
    fn address(&self) -> Address {
        self.address
    }

    fn sign_message<'a>(&'a self, message: &'a str) -> SignFuture<'a> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let unreachable = || SignerError::Failed {
                code: None,
                message: "the key service is gone".into(),
            };
            self.requests
                .send((message.to_owned(), reply))
                .await
                .map_err(|_| unreachable())?;
            answer.await.map_err(|_| unreachable())
        })
    }
}

/// A signer that never answers, as a wallet whose user walked away.
struct SilentSigner(Address);

impl Signer for SilentSigner {
    fn address(&self) -> Address {
        self.0
    }

    fn sign_message<'a>(&'a self, _message: &'a str) -> SignFuture<'a> {
        Box::pin(std::future::pending())
    }
}

fn key(hex: &str) -> SigningKey {
    SigningKey::from_hex(hex).expect("test key")
}

fn auth_server() -> TestServer {
    TestServer::tls(&dev_cert(), &dev_key(), true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_in_another_task_signs_in_over_wss() {
    let server = auth_server();
    let url = server.wss_url("localhost");
    for backend in backends() {
        let alice = key(ALICE_KEY);
        let (signer, signed) = DelegatingSigner::spawn(alice.clone(), alice.address());
        let client = client_for(&url, backend, trust_dev_cert())
            .with_signer(signer)
            .build()
            .unwrap();
        client.connect().await.unwrap();
        // The signer knows no public key: the client announces the address.
        assert_eq!(client.public_key(), None);
        assert_eq!(client.address(), Some(alice.address().to_checksum_string()));
        assert!(client.authenticate().await.unwrap(), "{backend}");
        assert_eq!(signed.load(Ordering::SeqCst), 1);
        let caller = client.play("CALLER_PUBLIC_KEY").await.unwrap().output;
        assert_eq!(caller, alice.public_key().to_compressed_hex(), "{backend}");
        client.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_by_another_key_is_refused_before_it_is_sent() {
    let server = auth_server();
    let url = server.wss_url("localhost");
    let alice = key(ALICE_KEY);
    let bob = key(BOB_KEY);
    // Claims Alice's address, signs with Bob's key.
    let (wrong, _) = DelegatingSigner::spawn(bob.clone(), alice.address());
    let client = client_for(&url, TlsBackend::Rustls, trust_dev_cert())
        .build()
        .unwrap();
    client.connect().await.unwrap();
    let wrong = Arc::new(wrong);
    // Six times: had any of these signatures been sent, the server would
    // have closed the connection after the fifth failed sign-in (1008).
    for _ in 0..6 {
        let error = client
            .authenticate_with_signer(ArcSigner(wrong.clone()))
            .await
            .unwrap_err();
        match &error {
            CircleWsClientError::SignatureMismatch {
                expected,
                signed_by,
            } => {
                assert_eq!(*expected, alice.address());
                assert_eq!(*signed_by, bob.address());
            }
            other => panic!("expected SignatureMismatch, got {other:?}"),
        }
        assert!(error.to_string().contains("not sent"), "{error}");
    }
    assert!(client.is_connected());
    assert!(!client.whoami().await.unwrap().authenticated);
    // No signer was kept from the refused attempts.
    assert_eq!(client.address(), None);
    // The same connection still signs in with the right signer.
    let (right, _) = DelegatingSigner::spawn(alice.clone(), alice.address());
    assert!(client.authenticate_with_signer(right).await.unwrap());
    let caller = client.play("CALLER_PUBLIC_KEY").await.unwrap().output;
    assert_eq!(caller, alice.public_key().to_compressed_hex());
    client.disconnect().await;
    server.stop().await;
}

/// Shares one signer between attempts.
struct ArcSigner(Arc<DelegatingSigner>);

impl Signer for ArcSigner {
    fn address(&self) -> Address {
        self.0.address()
    }

    fn sign_message<'a>(&'a self, message: &'a str) -> SignFuture<'a> {
        self.0.sign_message(message)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_that_never_answers_times_out() {
    let server = auth_server();
    let url = server.wss_url("localhost");
    let timeout = Duration::from_millis(300);
    let client = client_for(&url, TlsBackend::Rustls, trust_dev_cert())
        .with_signer(SilentSigner(key(ALICE_KEY).address()))
        .with_sign_timeout(timeout)
        .build()
        .unwrap();
    client.connect().await.unwrap();
    let started = Instant::now();
    let error = client.authenticate().await.unwrap_err();
    assert!(
        matches!(&error, CircleWsClientError::Timeout { operation, after }
            if operation == "sign" && *after == timeout),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // The connection is still there for the next attempt.
    assert!(!client.whoami().await.unwrap().authenticated);
    client.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_signs_in_again_through_the_signer() {
    let first = auth_server();
    let port = first.handle.wss_addr().unwrap().port();
    let url = first.wss_url("localhost");
    let alice = key(ALICE_KEY);
    let (signer, signed) = DelegatingSigner::spawn(alice.clone(), alice.address());
    let client = client_for(&url, TlsBackend::Rustls, trust_dev_cert())
        .with_signer(signer)
        .with_reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
            max_attempts: Some(40),
        })
        .build()
        .unwrap();
    client.connect().await.unwrap();
    assert!(client.authenticate().await.unwrap());
    assert_eq!(signed.load(Ordering::SeqCst), 1);
    first.stop().await;

    let (task, handle) = circle_server::spawn_circle_server(ServerConfig {
        host: "127.0.0.1".into(),
        port,
        enable_tls: true,
        enable_auth: true,
        cert_path: Some(dev_cert().display().to_string()),
        key_path: Some(dev_key().display().to_string()),
        connection_threads: 1,
        script_threads: 1,
        ..Default::default()
    })
    .expect("restart on the same port");
    // Signed in again (through the signer: a second signature) before the
    // client reported itself connected.
    let caller = client.play("CALLER_PUBLIC_KEY").await.unwrap().output;
    assert_eq!(caller, alice.public_key().to_compressed_hex());
    assert_eq!(signed.load(Ordering::SeqCst), 2);
    client.disconnect().await;
    handle.stop().await;
    let _ = task.await;
}
