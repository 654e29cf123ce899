//! `echo-wss`: the practical limit of the stack. tokio + tokio-rustls +
//! tokio-tungstenite; parses each JSON-RPC request and answers a fixed
//! result, nothing else. A 4 KiB WebSocket read buffer (tungstenite's
//! default of 128 KiB costs about 150 KB per idle connection).

use anyhow::Result;
use circle_bench::peer::{PeerArgs, accept, fixed_result};
use clap::Parser;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

fn main() -> Result<()> {
    let args = PeerArgs::parse();
    let runtime = args.runtime()?;
    runtime.block_on(serve(args))
}

async fn serve(args: PeerArgs) -> Result<()> {
    let tls = args.tls()?;
    let (listener, _) = args.bind()?;
    loop {
        let tcp = accept(&listener).await;
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        connection(stream).await;
                    }
                }
                None => connection(tcp).await,
            }
        });
    }
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096)
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(ws_config())).await else {
        return;
    };
    // Answer everything that is already readable, then flush once: pipelined
    // requests get their answers in as few writes as possible.
    while let Some(first) = ws.next().await {
        let mut next = Some(Some(first));
        while let Some(Some(message)) = next {
            match message {
                Ok(Message::Text(text)) => {
                    if let Some(answer) = answer(text.as_str())
                        && ws.feed(Message::text(answer)).await.is_err()
                    {
                        return;
                    }
                }
                Ok(Message::Binary(_)) => {
                    let error = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"binary frames are not supported"}}"#;
                    if ws.feed(Message::text(error)).await.is_err() {
                        return;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => {
                    // Sends the close reply tungstenite has queued.
                    let _ = ws.flush().await;
                    return;
                }
                // tungstenite queues the pong itself.
                Ok(_) => {}
            }
            next = ws.next().now_or_never();
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    #[allow(dead_code)]
    params: Option<&'a RawValue>,
}

/// The answer to one request; `None` for a notification.
fn answer(text: &str) -> Option<String> {
    match serde_json::from_str::<Request<'_>>(text) {
        Ok(request) => {
            let id = request.id?;
            let result = fixed_result(&request.method);
            let mut out = String::with_capacity(40 + id.get().len() + result.len());
            out.push_str(r#"{"jsonrpc":"2.0","id":"#);
            out.push_str(id.get());
            out.push_str(r#","result":"#);
            out.push_str(result);
            out.push('}');
            Some(out)
        }
        Err(_) => Some(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#.to_owned()),
    }
}
