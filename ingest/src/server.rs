//! The HTTP server loop: accepts connections up to a limit, gives each
//! client a deadline for its request headers (a slow client cannot hold a
//! connection open by trickling bytes), and on shutdown stops accepting and
//! lets open connections finish within a grace period.
//!
//! With [`Tls`], each connection is HTTPS: its handshake gets the same
//! deadline as request headers, and uses the certificate in force when the
//! connection was accepted (see [`crate::tls`]).
//!
//! The client's address is never read: nothing about it is logged or stored.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::tls::Tls;

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub grace: Duration,
}

/// Serves `router` on `listener` until `stop` is cancelled; over HTTPS
/// when `tls` is given.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    tls: Option<Arc<Tls>>,
    stop: CancellationToken,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _client_address_never_used)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        // Taken now, so that shutdown also waits for a handshake under way.
        let watcher = graceful.watcher();
        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
        tokio::spawn(async move {
            match acceptor {
                None => serve(stream, router, limits, watcher).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                        Ok(Ok(stream)) => serve(stream, router, limits, watcher).await,
                        Ok(Err(error)) => tracing::debug!(%error, "tls handshake failed"),
                        Err(_) => tracing::debug!("tls handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("no longer accepting connections; draining");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.grace) => {
            tracing::warn!(grace = ?limits.grace, "connections still open after the grace period; closing");
        }
    }
}

/// Serves HTTP/1.1 on one connection until it ends.
async fn serve<I>(io: I, router: Router, limits: ServerLimits, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, "connection ended with an error");
    }
}
