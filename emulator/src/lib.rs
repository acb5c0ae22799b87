//! `cloudvol-emulator`: an in-memory stand-in for NHN Cloud (Keystone v2.0,
//! block storage v2, image v2), OpenStack (Keystone v3) and Samsung Cloud
//! Platform's signed image API, with an admin API for attaching volumes,
//! forcing states, injecting faults and counting requests.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! let config = cloudvol_emulator::Config::demo().with_transitions(Duration::ZERO);
//! let emulator = cloudvol_emulator::start(config, "127.0.0.1:0".parse().unwrap()).await?;
//! println!("{}", emulator.base_url());
//! emulator.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! It shares no code with the operator's cloud client: it is an independent
//! reading of the API documents in docs/sources.md.

mod admin;
mod app;
mod block_storage;
mod config;
mod digest;
mod fault;
mod http;
mod identity;
mod image;
mod listing;
mod scp;
mod server;
mod state;

pub use config::{
    AppCredential, Config, ConfigError, DEFAULT_SCP_CLOCK_SKEW, DEFAULT_TOKEN_LIFETIME,
    DEFAULT_TRANSITION, ScpConfig, TenantConfig, Transitions, UserConfig,
};
pub use scp::signature as scp_signature;
pub use server::{Emulator, start};
