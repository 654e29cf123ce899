//! `jsonrpsee-wss`: the strongest off-the-shelf Rust JSON-RPC WebSocket
//! server (jsonrpsee 0.26), with a `play` method (and a `whoami`) returning
//! a fixed result, behind the same rustls configuration as circle-server.
//!
//! jsonrpsee has no TLS of its own: connections are accepted here, TLS is
//! finished with tokio-rustls, and the stream is handed to jsonrpsee's tower
//! service, as its documentation shows for custom transports.

use anyhow::Result;
use circle_bench::peer::{PeerArgs, accept};
use clap::Parser;
use jsonrpsee::server::{Server, ServerConfig, serve_with_graceful_shutdown, stop_channel};
use jsonrpsee::types::{ErrorObjectOwned, ResponsePayload};
use jsonrpsee::RpcModule;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct PlayParams {
    #[allow(dead_code)]
    script: String,
}

#[derive(Serialize, Clone)]
struct PlayResult {
    output: &'static str,
}

#[derive(Serialize, Clone)]
struct CircleInfo {
    name: &'static str,
    public_key: &'static str,
}

#[derive(Serialize, Clone)]
struct WhoamiResult {
    authenticated: bool,
    pubkey: Option<&'static str>,
    circle: CircleInfo,
}

fn main() -> Result<()> {
    let args = PeerArgs::parse();
    let runtime = args.runtime()?;
    runtime.block_on(serve(args))
}

fn methods() -> Result<RpcModule<()>> {
    let mut module = RpcModule::new(());
    module.register_method("play", |params, _, _| {
        // Parse the params as a real method would, then answer the fixed result.
        let _: PlayParams = params.parse()?;
        Ok::<_, ErrorObjectOwned>(PlayResult { output: "42" })
    })?;
    module.register_method("whoami", |_, _, _| {
        ResponsePayload::success(WhoamiResult {
            authenticated: false,
            pubkey: None,
            circle: CircleInfo {
                name: "circle",
                public_key: "02a9f27bd4b2e1b03e0a1c9d3ea9d1c03b3c6d1e4f6a7b8c9d0e1f2a3b4c5d6e7f",
            },
        })
    })?;
    Ok(module)
}

async fn serve(args: PeerArgs) -> Result<()> {
    let tls = args.tls()?;
    let (listener, _) = args.bind()?;
    let methods = methods()?;
    let (stop_handle, _server_handle) = stop_channel();
    // Room for the idle-connection test; everything else stays at
    // jsonrpsee's defaults, as a user would run it.
    let config = ServerConfig::builder()
        .max_connections(100_000)
        .set_first_request_timeout(None)
        .build();
    let service_builder = Server::builder().set_config(config).to_service_builder();
    loop {
        let tcp = accept(&listener).await;
        let service = service_builder.clone().build(methods.clone(), stop_handle.clone());
        let stop = stop_handle.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = match tls {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => serve_with_graceful_shutdown(stream, service, stop.shutdown()).await,
                    Err(_) => return,
                },
                None => serve_with_graceful_shutdown(tcp, service, stop.shutdown()).await,
            };
        });
    }
}
