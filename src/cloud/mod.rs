//! Talking to clouds: NHN Cloud (Keystone v2.0, Cinder v2, Glance v2), any
//! OpenStack (Keystone v3, Cinder v3, Glance v2) and Samsung Cloud Platform
//! (signed image API). Knows no Kubernetes and no CRD type.
//!
//! From a Secret's bytes to service clients:
//!
//! ```no_run
//! # async fn demo(yaml: &[u8]) -> Result<(), cloudvol::cloud::CloudError> {
//! use cloudvol::cloud::{CloudCredentials, CloudHttp, Connector, TransportConfig};
//! use cloudvol::cloud::model::VolumeQuery;
//!
//! let connector = Connector::new(CloudHttp::new(TransportConfig::default())?); // once
//! let creds = CloudCredentials::from_clouds_yaml(yaml, "nhn", None)?;
//! let volumes = connector.block_storage(&creds)?; // Arc<dyn BlockStorage>
//! let images = connector.image(&creds)?; // Arc<dyn Image>
//! let all = volumes.list_volumes_detail(&VolumeQuery::default()).await?;
//! # let _ = (all, images); Ok(()) }
//! ```
//!
//! Building a client makes no network call; the first request logs in.
//! Tokens are cached per credentials (shared by every client built from the
//! same credentials), renewed before they expire, and renewed once more when
//! a service answers 401. A refused login is remembered per credentials:
//! further logins with them fail at once, without a request, for a backoff
//! ([`LoginBackoff`], 5 s doubling to 10 min), while changed credentials are
//! tried at once.
//!
//! The transport ([`transport`]) sends a non-idempotent request once, bounds
//! the time one call sleeps between retries, and consults a write fence that
//! the operator ties to its leader Lease ([`CloudHttp::set_write_fence`]).
//! Everything a cloud sends (durations, dates, links, sizes) is bounded
//! before it is used.
//!
//! Errors are one [`CloudError`]: [`CloudError::is_transient`] says whether
//! to requeue with backoff (`Reconciling`) or to stop for a person
//! (`Stalled`), [`CloudError::reason`] is the condition reason,
//! [`CloudError::message`] the cloud's own words, and
//! [`CloudError::retry_after`] how long to wait before trying again (the
//! cloud's `Retry-After`, a backoff the transport handed back, or the login
//! backoff). A [`CloudError::Transport`] or a 429/503 from a create means the
//! cloud may have acted: look for the resource by its mark before creating
//! again.

mod auth;
pub mod check;
mod cinder;
mod connector;
pub mod credentials;
pub mod error;
mod glance;
pub mod model;
mod pagination;
mod scp_image;
mod service;
mod session;
pub mod transport;

pub use auth::backoff::{Clock, LoginBackoff};
pub use connector::Connector;
pub use credentials::CloudCredentials;
pub use error::CloudError;
pub use service::{BlockStorage, CloudFuture, Image};
pub use transport::{
    CloudHttp, RateLimit, RequestObserver, RequestRecord, RetryPolicy, Service, TransportConfig,
    WriteFence,
};
