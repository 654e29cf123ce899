//! The plain HTTP side of both listeners: `/health`, `/metrics`, the web
//! root, `426` for `/ws` without an upgrade, the redirect to HTTPS, and the
//! headers every response carries.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use actix_http::body::BoxBody;
use actix_service::ServiceFactory;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{App, HttpRequest, HttpResponse, web};
use futures_util::future::{self, Either};

use crate::listen::Listener;
use crate::state::ServerState;
use crate::upgrade::WEBSOCKET_PATH;

/// What the HTTP side of one listener adds to every response.
#[derive(Clone, Debug)]
pub(crate) struct HttpPolicy {
    /// `Strict-Transport-Security`, on the TLS listener only: on plain HTTP
    /// the header is meaningless (RFC 6797 §7.2).
    hsts: Option<HeaderValue>,
    /// On the plain listener with both running and the redirect asked for:
    /// the TLS listener's port, where every plain request is sent instead.
    redirect_to_port: Option<u16>,
}

impl HttpPolicy {
    /// The policy of `listener`: `hsts` on TLS, the redirect to
    /// `https_port` (when set) on plain HTTP.
    pub fn for_listener(listener: Listener, hsts: &HeaderValue, https_port: Option<u16>) -> Self {
        match listener {
            Listener::Tls => HttpPolicy {
                hsts: Some(hsts.clone()),
                redirect_to_port: None,
            },
            Listener::Plain => HttpPolicy {
                hsts: None,
                redirect_to_port: https_port,
            },
        }
    }
}

/// The actix-web application of one listener: the routes and the policy.
pub(crate) fn app(
    shared: Arc<ServerState>,
    policy: HttpPolicy,
    web_root: Option<PathBuf>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::from(shared))
        .wrap_fn(move |request, service| apply(&policy, request, service))
        .route(WEBSOCKET_PATH, web::get().to(upgrade_required))
        .route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics))
        .route(
            "/.well-known/acme-challenge/{token}",
            web::get().to(acme_challenge),
        )
        .configure(|app| {
            if let Some(root) = &web_root {
                app.service(actix_files::Files::new("/", root).index_file("index.html"));
            }
        })
}

/// Redirects, or serves and adds the policy's headers.
fn apply<S>(
    policy: &HttpPolicy,
    request: ServiceRequest,
    service: &S,
) -> impl Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>> + use<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>,
    S::Future: 'static,
{
    let acme_challenge = request.path().starts_with(ACME_CHALLENGE_PREFIX);
    if let Some(port) = policy.redirect_to_port.filter(|_| !acme_challenge) {
        let location = https_location(request.request(), port);
        let redirect = HttpResponse::PermanentRedirect()
            .insert_header((header::LOCATION, location))
            .finish();
        return Either::Left(future::ready(Ok(request.into_response(redirect))));
    }
    let response = service.call(request);
    let hsts = policy.hsts.clone();
    Either::Right(async move {
        let mut response = response.await?;
        let headers = response.headers_mut();
        if let Some(hsts) = hsts {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts);
        }
        // Static files and JSON are served as what they are, never framed by
        // another site, and leak no URL in a Referer.
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        Ok(response)
    })
}

/// `GET /ws` without `Upgrade: websocket`: plain HTTP gets no session.
async fn upgrade_required() -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::UPGRADE_REQUIRED)
        .insert_header((header::UPGRADE, "websocket"))
        .insert_header((header::CONNECTION, "Upgrade"))
        .body("this endpoint speaks WebSocket only")
}

/// `https://HOST:PORT/PATH?QUERY` for a plain-HTTP request.
fn https_location(request: &HttpRequest, https_port: u16) -> String {
    let info = request.connection_info();
    let host = info.host();
    // Drop the plain port from the Host header; keep IPv6 brackets intact.
    let hostname = match host.rsplit_once(':') {
        Some((name, port))
            if !name.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
                && !name.ends_with(':') =>
        {
            name
        }
        _ => host,
    };
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    format!("https://{hostname}:{https_port}{path}")
}

/// Where HTTP-01 challenges are asked (RFC 8555 §8.3); never redirected.
const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// `GET /.well-known/acme-challenge/{token}`: the key authorization of an
/// HTTP-01 challenge being answered (the CA asks on the plain listener); 404
/// otherwise.
async fn acme_challenge(shared: web::Data<ServerState>, token: web::Path<String>) -> HttpResponse {
    let answer = shared
        .acme_challenges
        .as_ref()
        .and_then(|challenges| challenges.http_answer(&token));
    match answer {
        Some(key_authorization) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(key_authorization),
        None => HttpResponse::NotFound().finish(),
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(shared: web::Data<ServerState>) -> HttpResponse {
    let expires_in = shared
        .tls
        .as_ref()
        .and_then(|tls| tls.certificate())
        .map(|certificate| certificate.expires_in());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(
            shared
                .metrics
                .render(expires_in, shared.executor.queue_depth()),
        )
}

/// `GET /health`: a small JSON body for load balancers; `503` from the
/// start of a drain or stop (protocol 1.1), so a balancer stops sending new
/// clients while the connections still open finish.
async fn health(shared: web::Data<ServerState>) -> HttpResponse {
    let status = if *shared.shutdown.borrow() {
        "stopping"
    } else if shared.draining.load(std::sync::atomic::Ordering::Relaxed) {
        "draining"
    } else {
        "ok"
    };
    let mut response = if status == "ok" {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response.json(serde_json::json!({
        "status": status,
        "circle": shared.circle.name,
        "connections": shared.connections.open(),
        "executor_queue": shared.executor.queue_depth(),
    }))
}
