//! Starting and stopping the emulator, and serving connections.
//!
//! Connections are served by hand with hyper (not `axum::serve`) so that a
//! fault rule can drop one: each connection's task watches a [`ConnKill`]
//! that the request carries in its extensions, and when it fires the task
//! drops the connection, which closes the socket without an HTTP answer.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

use crate::app::{App, ConnKill, Shared};
use crate::config::Config;
use crate::http::{ApiError, Dialect};
use crate::{admin, block_storage, identity, image, scp};

/// A running emulator.
pub struct Emulator {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Emulator {
    /// `http://IP:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting connections and close the open ones.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Bind `listen` and serve the emulator on it from a task of the current
/// runtime.
pub async fn start(config: Config, listen: SocketAddr) -> io::Result<Emulator> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = Arc::new(App::new(config, format!("http://{addr}")));
    let router = router(app);
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, router, rx));
    Ok(Emulator {
        addr,
        shutdown: Some(tx),
        task,
    })
}

/// Every route; the cloud APIs are counted and subject to fault rules, the
/// admin API is neither.
pub fn router(app: Shared) -> Router {
    let public = Router::new()
        .merge(identity::routes())
        .merge(block_storage::routes())
        .merge(image::routes())
        .merge(scp::routes())
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(
            app.clone(),
            admin::count_and_fault,
        ));
    public.merge(admin::routes()).with_state(app)
}

async fn no_route(req: Request) -> Response {
    let path = req.uri().path();
    ApiError::new(
        Dialect::of_path(path),
        StatusCode::NOT_FOUND,
        format!("The resource could not be found: {} {path}", req.method()),
    )
    .into_response()
}

async fn accept_loop(listener: TcpListener, router: Router, mut shutdown: oneshot::Receiver<()>) {
    let mut conns = JoinSet::new();
    // A dropped `Emulator` leaves the server running; only `shutdown` stops it.
    let mut shutdown_open = true;
    loop {
        tokio::select! {
            res = &mut shutdown, if shutdown_open => {
                if res.is_ok() {
                    break;
                }
                shutdown_open = false;
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    conns.spawn(serve_connection(stream, router.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            },
        }
    }
    conns.shutdown().await;
}

async fn serve_connection(stream: TcpStream, router: Router) {
    let _ = stream.set_nodelay(true);
    let notify = Arc::new(Notify::new());
    let kill = ConnKill::new(notify.clone());
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(kill.clone());
        router.clone().oneshot(req.map(Body::new))
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        res = conn => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        // Dropping `conn` closes the socket: the client sees EOF, no answer.
        _ = notify.notified() => {}
    }
}
