//! Talking to clouds: NHN Cloud (Keystone v2.0, Cinder v2, Glance v2), any
//! OpenStack (Keystone v3, Cinder v3, Glance v2) and Samsung Cloud Platform
//! (signed image API). Knows no Kubernetes and no CRD type.

pub mod credentials;
pub mod error;
pub mod model;

pub use credentials::CloudCredentials;
pub use error::CloudError;
