//! What every handler shares: the configuration and the one state mutex
//! ([`App`], passed around as [`Shared`]), and the handle that lets a fault
//! rule close the connection a request came on ([`ConnKill`]).
//!
//! It lives apart from `server.rs` so that the route modules depend on it
//! and `server.rs` depends on them, never the other way round.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

use crate::config::Config;
use crate::state::State;

/// The configuration and the in-memory cloud behind one mutex.
pub struct App {
    pub config: Config,
    state: Mutex<State>,
    /// `http://<listen address>`, for requests without a Host header.
    pub fallback_base: String,
}

pub type Shared = Arc<App>;

impl App {
    pub fn new(config: Config, fallback_base: String) -> App {
        App {
            config,
            state: Mutex::new(State::default()),
            fallback_base,
        }
    }

    /// Run `f` on the state after applying every transition that is due.
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.advance(Instant::now());
        f(&mut state)
    }
}

/// Closes the connection a request came on, without an answer. The
/// connection's task (in `server.rs`) inserts one into every request's
/// extensions and drops the connection when it fires.
#[derive(Clone)]
pub struct ConnKill(Arc<Notify>);

impl ConnKill {
    pub fn new(notify: Arc<Notify>) -> ConnKill {
        ConnKill(notify)
    }

    pub fn kill(&self) {
        self.0.notify_one();
    }
}
