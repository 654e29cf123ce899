//! Starting a circle server: check the configuration, load what it names,
//! bind the listeners, and run.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::Request;
use actix_http::h1::Codec;
use actix_service::{fn_service, map_config};
use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::AppConfig;
use actix_web::http::header::HeaderValue;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::acme::{self, AcmeCache, AcmeCertResolver, AcmeConfig, AcmeManager, Challenges};
use crate::circle::CircleIdentity;
use crate::config::ServerConfig;
use crate::connection_threads::{self, Lifetime, Listen, MakeService};
use crate::error::ServerError;
use crate::handle::ServerHandle;
use crate::http::{self, HttpPolicy};
use crate::listen::{Listener, bind_error, bind_listeners, http_service, local_addr};
use crate::proxy::{Front, plain_stack, tls_stack};
use crate::refusal_log::RefusalLog;
use crate::script_executor::start_executor;
use crate::state::ServerState;
use crate::tls::{
    ClientIdentity, TlsOptions, TlsReloader, acme_server_tls, load_tls, watch_certificate_expiry,
};
use crate::transport::Wire;
use crate::upgrade::Upgrader;

/// Starts a circle server on the current tokio runtime.
///
/// Binds every listener before returning, so a bad port, a bad certificate
/// or a bad key fails here with a typed error, and the bound addresses are
/// known at once (port `0` works). The returned task ends when the server
/// stops.
pub fn spawn_circle_server(
    config: ServerConfig,
) -> Result<(JoinHandle<io::Result<()>>, ServerHandle), ServerError> {
    if let Some(root) = &config.web_root
        && !root.is_dir()
    {
        return Err(ServerError::InvalidConfig(format!(
            "web_root {} is not a folder",
            root.display()
        )));
    }
    let hsts_text = format!(
        "max-age={}; includeSubDomains",
        config.hsts_max_age.as_secs()
    );
    let hsts = HeaderValue::from_str(&hsts_text)
        .map_err(|e| ServerError::InvalidConfig(format!("hsts_max_age: {e}")))?;
    let circle = CircleIdentity::from_config(&config)?;
    let tls = load_tls(&config)?;
    let acme = prepare_acme(&config)?;
    let executor = start_executor(&config)?;

    let (rustls_config, tls_reloader) = match (tls, &acme) {
        (Some(loaded), _) => (Some(loaded.config), Some(loaded.reloader)),
        (None, Some(acme)) => (
            Some(acme.rustls_config.clone()),
            Some(acme.reloader.clone()),
        ),
        (None, None) => (None, None),
    };
    let (plain_listener, tls_listener) = bind_listeners(&config)?;
    let ws_addr = plain_listener.as_ref().map(local_addr).transpose()?;
    let wss_addr = tls_listener.as_ref().map(local_addr).transpose()?;

    let (shutdown_sender, shutdown) = watch::channel(false);
    let mut shared = ServerState::new(&config, circle, executor, tls_reloader.clone(), shutdown);
    shared.acme_challenges = acme.as_ref().map(|acme| acme.challenges.clone());
    let shared = Arc::new(shared);

    // Only meaningful with both listeners: the redirect points at the TLS one.
    let https_port = wss_addr
        .filter(|_| config.redirect_http_to_https && ws_addr.is_some())
        .map(|a| a.port());
    let make_app = {
        let shared = shared.clone();
        let web_root = config.web_root.clone();
        move |listener: Listener| {
            let policy = HttpPolicy::for_listener(listener, &hsts, https_port);
            http::app(shared.clone(), policy, web_root.clone())
        }
    };
    let connection_ids = Arc::new(AtomicU64::new(1));
    let refusal_log = Arc::new(RefusalLog::new());
    if config.proxy_protocol && config.trusted_proxies.is_empty() {
        warn!(
            "proxy_protocol without trusted_proxies: any peer that reaches the port can claim any client address"
        );
    }
    let front = Front {
        proxy_protocol: config.proxy_protocol,
        trusted: shared.trusted_proxies.clone(),
        header_timeout: config.limits.tls_handshake_timeout,
        refusal_log: refusal_log.clone(),
    };
    let upgrader = {
        let shared = shared.clone();
        let refusal_log = refusal_log.clone();
        move |listener: Listener, local_addr| {
            Rc::new(Upgrader {
                shared: shared.clone(),
                listener,
                local_addr,
                hsts: (listener == Listener::Tls).then(|| hsts_text.clone()),
                connection_ids: connection_ids.clone(),
                refusal_log: refusal_log.clone(),
                last_origin: RefCell::default(),
            })
        }
    };
    // Connection threads accept until the sessions have closed (a stopping
    // server still answers `/health` with 503); then idle keep-alive HTTP
    // connections close too.
    let (finish, finishing) = connection_threads::finish_signal();
    let mut listens = Vec::new();
    if let (Some(listener), Some(addr)) = (plain_listener, ws_addr) {
        let make_app = make_app.clone();
        let upgrader = upgrader.clone();
        let finishing = finishing.clone();
        let front = front.clone();
        let make_service: MakeService = Arc::new(move || {
            let upgrader = upgrader(Listener::Plain, addr);
            let http = http_service(addr, &finishing)
                .upgrade(fn_service(
                    move |(request, framed): (Request, Framed<Wire, Codec>)| {
                        let upgrader = upgrader.clone();
                        async move {
                            upgrader.serve(request, framed).await;
                            Ok::<_, actix_web::Error>(())
                        }
                    },
                ))
                .finish(map_config(make_app(Listener::Plain), |()| {
                    AppConfig::default()
                }));
            plain_stack(front.clone(), http)
        });
        listens.push(Listen {
            listener,
            make_service,
        });
    }
    if let (Some(listener), Some(addr), Some(rustls_config)) =
        (tls_listener, wss_addr, rustls_config)
    {
        let handshake_timeout = config.limits.tls_handshake_timeout;
        let handshake_metrics = shared.metrics.clone();
        let finishing = finishing.clone();
        let make_service: MakeService = Arc::new(move || {
            let upgrader = upgrader(Listener::Tls, addr);
            let handshake_metrics = handshake_metrics.clone();
            let http = http_service(addr, &finishing)
                .on_connect_ext(move |tls: &TlsStream<Wire>, extensions| {
                    handshake_metrics.tls_handshake();
                    if let Some(identity) = ClientIdentity::of(tls.get_ref().1) {
                        extensions.insert(identity);
                    }
                })
                .upgrade(fn_service(
                    move |(request, framed): (Request, Framed<TlsStream<Wire>, Codec>)| {
                        let upgrader = upgrader.clone();
                        async move {
                            upgrader.serve(request, framed).await;
                            Ok::<_, actix_web::Error>(())
                        }
                    },
                ))
                .finish(map_config(make_app(Listener::Tls), |()| {
                    AppConfig::default()
                }));
            tls_stack(
                front.clone(),
                rustls_config.clone(),
                handshake_timeout,
                http,
            )
        });
        listens.push(Listen {
            listener,
            make_service,
        });
    }
    let thread_count = match config.connection_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let lifetime = Lifetime {
        finish: finishing,
        // As long as the sessions get, and a little more for the HTTP
        // requests that started last.
        grace: config.limits.shutdown_grace + Duration::from_secs(2),
        refusal_log,
    };
    let (threads, server) = connection_threads::start(listens, thread_count, lifetime, finish)
        .map_err(|source| bind_error(ws_addr.or(wss_addr), source))?;
    if let Some(reloader) = &tls_reloader {
        tokio::spawn(watch_certificate_expiry(
            reloader.clone(),
            shared.shutdown.clone(),
        ));
    }
    let acme_manager = acme.map(|acme| {
        let manager = Arc::new(AcmeManager {
            config: acme.config,
            cache: acme.cache,
            challenges: acme.challenges,
            reloader: acme.reloader,
            metrics: shared.metrics.clone(),
            http_listener: ws_addr.is_some(),
            renew_now: tokio::sync::Notify::new(),
        });
        match manager.load_cached() {
            Ok(true) => {}
            Ok(false) => info!(domains = ?manager.config.domains, "no cached ACME certificate: ordering one; TLS handshakes fail until it arrives"),
            Err(error) => warn!(%error, "the cached ACME certificate is unusable: ordering a new one"),
        }
        tokio::spawn(acme::run(manager.clone(), shared.shutdown.clone()));
        manager
    });
    let handle = ServerHandle {
        acme: acme_manager,
        threads,
        shutdown: Arc::new(shutdown_sender),
        ws_addr,
        wss_addr,
        shared: shared.clone(),
        tls: tls_reloader,
    };

    info!(circle = %shared.circle.name, public_key = %shared.circle.public_key, auth = config.enable_auth, "circle server starting");
    if let Some(addr) = ws_addr {
        info!("listening on ws://{addr}/ws");
    }
    if let Some(addr) = wss_addr {
        info!("listening on wss://{addr}/ws");
    }
    Ok((tokio::spawn(server), handle))
}

/// What an ACME server starts with: its TLS configuration without a
/// certificate, the reloader the certificates go through, the challenges.
struct AcmeStart {
    config: AcmeConfig,
    rustls_config: rustls::ServerConfig,
    reloader: Arc<TlsReloader>,
    challenges: Arc<Challenges>,
    cache: AcmeCache,
}

fn prepare_acme(config: &ServerConfig) -> Result<Option<AcmeStart>, ServerError> {
    let Some(acme) = &config.acme else {
        return Ok(None);
    };
    if config.cert_path.is_some() || config.key_path.is_some() {
        return Err(ServerError::AcmeWithCertificateFiles);
    }
    if !config.enable_tls {
        return Err(ServerError::InvalidConfig(
            "acme needs enable_tls: the certificate is for the TLS listener".to_owned(),
        ));
    }
    acme.check().map_err(ServerError::InvalidConfig)?;
    let challenges = Arc::new(Challenges::default());
    let options = TlsOptions {
        client_ca_path: config.client_ca_path.clone(),
        client_auth_required: config.client_auth_required,
        ticket_key_file: config.tls_ticket_key_file.clone(),
        ..TlsOptions::default()
    };
    let (rustls_config, reloader) = acme_server_tls(&options, |served| {
        Arc::new(AcmeCertResolver {
            challenges: challenges.clone(),
            served,
        })
    })?;
    let cache = AcmeCache::new(&acme.cache_dir, &acme.directory_url, &acme.domains);
    cache.create()?;
    Ok(Some(AcmeStart {
        config: acme.clone(),
        rustls_config,
        reloader,
        challenges,
        cache,
    }))
}
