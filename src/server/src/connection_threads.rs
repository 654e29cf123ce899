//! The connection threads. Each runs a single-threaded runtime of its own
//! and accepts from every listener itself, so a connection is served from
//! its first byte on the thread that accepted it.
//!
//! actix-server, which this replaces, accepts on a thread of its own and
//! passes every socket to a worker through a channel: on a busy core that
//! is two more context switches and a wake-up per connection, which cost
//! more CPU than the HTTP upgrade itself (bench/PROFILE.md §6).
//!
//! Every thread registers the same listening sockets with its own event
//! loop; when a connection arrives, the threads that are idle race for it
//! and the losers see `WouldBlock`. A thread busy with other connections
//! simply does not take part, which is the balancing we want.

use std::cell::Cell;
use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_http::error::DispatchError;
use actix_service::boxed::BoxServiceFactory;
use actix_service::{Service, ServiceFactory};
use actix_web::rt::net::TcpStream;
use circle_executor::sandbox::MIN_STACK_BYTES;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot, watch};
use tracing::{error, warn};

use crate::refusal_log::RefusalLog;

/// What a listener does with each accepted connection.
pub(crate) type ConnectionService =
    BoxServiceFactory<(), (TcpStream, SocketAddr), (), DispatchError, ()>;

/// Builds a listener's [`ConnectionService`], once on each connection
/// thread (actix services are not `Send`).
pub(crate) type MakeService = Arc<dyn Fn() -> ConnectionService + Send + Sync>;

/// One listening socket and what its connections get.
pub(crate) struct Listen {
    pub listener: StdListener,
    pub make_service: MakeService,
}

/// When the threads stop accepting and when they end.
pub(crate) struct Lifetime {
    /// Turns `true` when [`ThreadsHandle::stop`] is called: accepting stops
    /// (until then a stopping server still answers `/health` with 503).
    /// Give the same receiver to the HTTP service as its graceful shutdown
    /// signal, so idle keep-alive connections close at the same moment.
    pub finish: watch::Receiver<bool>,
    /// How long connections still being served (a plain HTTP request, a
    /// TLS handshake) get after that.
    pub grace: Duration,
    /// Accept errors (out of descriptors) share the refusals' one line a
    /// second.
    pub refusal_log: Arc<RefusalLog>,
}

/// Ends the connection threads.
#[derive(Clone, Debug)]
pub(crate) struct ThreadsHandle {
    finish: Arc<watch::Sender<bool>>,
    stopped: watch::Receiver<bool>,
}

/// The signal [`Lifetime::finish`] listens to, before the threads exist.
pub(crate) fn finish_signal() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

impl ThreadsHandle {
    /// Lets every thread give its connections in progress their grace,
    /// then end; returns when all have ended. Call it once the sessions
    /// have closed: whatever still runs on a thread after the grace is
    /// dropped with it.
    pub async fn stop(&self) {
        self.finish.send_replace(true);
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }
}

/// Starts `count` connection threads (at least one) serving `listens`.
/// The returned future ends when every thread has ended, with the first
/// thread's error if one could not start its services.
/// `finish` is the sender of `lifetime.finish` (see [`finish_signal`]).
pub(crate) fn start(
    listens: Vec<Listen>,
    count: usize,
    lifetime: Lifetime,
    finish: watch::Sender<bool>,
) -> io::Result<(ThreadsHandle, impl Future<Output = io::Result<()>>)> {
    for listen in &listens {
        listen.listener.set_nonblocking(true)?;
    }
    let finish = Arc::new(finish);
    let (stopped_sender, stopped) = watch::channel(false);
    let lifetime = Arc::new(lifetime);
    let mut ended = Vec::with_capacity(count);
    for index in 0..count.max(1) {
        let own: Vec<(StdListener, MakeService)> = listens
            .iter()
            .map(|listen| Ok((listen.listener.try_clone()?, listen.make_service.clone())))
            .collect::<io::Result<_>>()?;
        let (done, ended_one) = oneshot::channel();
        let lifetime = lifetime.clone();
        std::thread::Builder::new()
            .name(format!("circle-connections-{index}"))
            // Short plays run here (`Executor::run_inline`), and a script's
            // recursion needs the stack a script thread has.
            .stack_size(MIN_STACK_BYTES)
            .spawn(move || {
                let result = actix_web::rt::Runtime::new()
                    .and_then(|runtime| runtime.block_on(serve(own, &lifetime)));
                let _ = done.send(result);
            })?;
        ended.push(ended_one);
    }
    let all_ended = async move {
        let mut first_error = None;
        for ended_one in ended {
            let result = ended_one
                .await
                .unwrap_or_else(|_| Err(io::Error::other("a connection thread panicked")));
            if let Err(error) = result {
                error!(%error, "connection thread failed");
                first_error.get_or_insert(error);
            }
        }
        stopped_sender.send_replace(true);
        first_error.map_or(Ok(()), Err)
    };
    Ok((ThreadsHandle { finish, stopped }, all_ended))
}

/// One thread's life: accept until told to finish, then give the
/// connections in progress their grace.
async fn serve(listens: Vec<(StdListener, MakeService)>, lifetime: &Lifetime) -> io::Result<()> {
    let in_progress = InProgress::default();
    let mut accepting = Vec::with_capacity(listens.len());
    for (listener, make_service) in listens {
        let listener = TcpListener::from_std(listener)?;
        let service = make_service()
            .new_service(())
            .await
            .map_err(|()| io::Error::other("a listener's connection service did not start"))?;
        accepting.push(actix_web::rt::spawn(accept_loop(
            listener,
            service,
            lifetime.finish.clone(),
            lifetime.refusal_log.clone(),
            in_progress.clone(),
        )));
    }
    for task in accepting {
        let _ = task.await;
    }
    let _ = tokio::time::timeout(lifetime.grace, in_progress.none_left()).await;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    service: <ConnectionService as ServiceFactory<(TcpStream, SocketAddr)>>::Service,
    mut stop: watch::Receiver<bool>,
    refusal_log: Arc<RefusalLog>,
    in_progress: InProgress,
) {
    loop {
        // The TLS acceptor caps the handshakes in progress on each thread:
        // past the cap, new connections wait in the kernel's queue.
        if poll_fn(|cx| service.poll_ready(cx)).await.is_err() {
            error!("a listener's connection service failed; this thread stops accepting");
            return;
        }
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let counted = in_progress.enter();
                let connection = service.call((stream, peer));
                actix_web::rt::spawn(async move {
                    // Errors (a failed handshake, a bad PROXY header) were
                    // logged where they happened; the connection is closed.
                    let _ = connection.await;
                    drop(counted);
                });
            }
            Err(error) if is_per_connection(&error) => {}
            Err(error) => {
                // Out of descriptors or memory: accepting again at once
                // would spin. The waiting connections stay queued.
                if let Some(also_refused) = refusal_log.should_log() {
                    warn!(%error, also_refused, "cannot accept connections; retrying in 100 ms");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Errors that concern one connection only (it was reset before it was
/// accepted): the next `accept` is fine.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Connections on this thread whose service has not finished: TLS
/// handshakes, HTTP requests, upgrades (a WebSocket session, once spawned,
/// is counted by the server's connection count instead).
#[derive(Clone, Default)]
struct InProgress(Rc<(Cell<usize>, Notify)>);

impl InProgress {
    fn enter(&self) -> InProgressGuard {
        self.0.0.set(self.0.0.get() + 1);
        InProgressGuard(self.clone())
    }

    async fn none_left(&self) {
        while self.0.0.get() > 0 {
            self.0.1.notified().await;
        }
    }
}

struct InProgressGuard(InProgress);

impl Drop for InProgressGuard {
    fn drop(&mut self) {
        let count = &self.0.0.0;
        count.set(count.get() - 1);
        if count.get() == 0 {
            self.0.0.1.notify_waiters();
        }
    }
}
