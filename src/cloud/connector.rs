//! The entry point for controllers: built once per process, the
//! [`Connector`] hands out `Arc<dyn BlockStorage>` / `Arc<dyn Image>` for
//! credentials, sharing sessions and tokens between callers that use the
//! same credentials. It is the only module that knows both the session and
//! the service implementations, so that neither imports the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::auth::TokenSlot;
use super::auth::backoff::{Clock, LoginBackoff, LoginGate};
use super::cinder::Cinder;
use super::credentials::{Auth, CloudCredentials};
use super::error::CloudError;
use super::glance::Glance;
use super::scp_image::ScpImage;
use super::service::{BlockStorage, Image};
use super::session::Session;
use super::transport::CloudHttp;

/// Hands out service clients for credentials; build one per process.
pub struct Connector {
    http: CloudHttp,
    tokens: Mutex<HashMap<String, Arc<TokenSlot>>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Refused credentials, shared by every session (see `auth::backoff`).
    gate: Arc<LoginGate>,
}

impl Connector {
    /// A connector with the default login backoff (5 s doubling to 10 min).
    pub fn new(http: CloudHttp) -> Self {
        Connector {
            http,
            tokens: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            gate: Arc::new(LoginGate::system(LoginBackoff::default())),
        }
    }

    /// Replaces the backoff of refused credentials. Call it before handing
    /// out clients: refusals remembered so far are forgotten.
    pub fn with_login_backoff(self, backoff: LoginBackoff) -> Self {
        let clock = self.gate.clock().clone();
        self.with_gate(LoginGate::new(backoff, clock))
    }

    /// Replaces the clock of the login backoff (tests move time by hand).
    /// Call it before handing out clients.
    pub fn with_clock(self, clock: Clock) -> Self {
        let backoff = self.gate.backoff().clone();
        self.with_gate(LoginGate::new(backoff, clock))
    }

    fn with_gate(mut self, gate: LoginGate) -> Self {
        self.gate = Arc::new(gate);
        // Sessions hold the gate they were opened with.
        self.sessions
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self
    }

    pub fn http(&self) -> &CloudHttp {
        &self.http
    }

    pub(crate) fn session(&self, creds: &CloudCredentials) -> Result<Arc<Session>, CloudError> {
        let key = creds.session_key();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(session) = sessions.get(&key) {
            return Ok(session.clone());
        }
        let client =
            self.http
                .client_for(&creds.cloud_name, creds.cacert.as_ref(), creds.verify)?;
        let tokens = match creds.auth {
            Auth::Scp(_) => None,
            _ => {
                let mut slots = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
                Some(
                    slots
                        .entry(creds.token_cache_key())
                        .or_insert_with(|| Arc::new(TokenSlot::default()))
                        .clone(),
                )
            }
        };
        let session = Arc::new(Session::new(
            self.http.clone(),
            client,
            creds.clone(),
            tokens,
            self.gate.clone(),
        ));
        sessions.insert(key, session.clone());
        Ok(session)
    }

    /// Block storage for these credentials: Cinder v2 in NHN's dialect for
    /// `v2password`, Cinder v3 for Keystone v3; `Unsupported` for SCP.
    /// No network call happens until the first request.
    pub fn block_storage(
        &self,
        creds: &CloudCredentials,
    ) -> Result<Arc<dyn BlockStorage>, CloudError> {
        let session = self.session(creds)?;
        match session.block_storage_dialect() {
            Some(dialect) => Ok(Arc::new(Cinder::new(session, dialect))),
            None => Err(CloudError::unsupported(format!(
                "cloud `{}` uses auth_type scp: cloudvol manages SCP images only, not SCP block storage",
                creds.cloud_name
            ))),
        }
    }

    /// The image service for these credentials: Glance v2 (NHN and
    /// OpenStack), or SCP's image API.
    pub fn image(&self, creds: &CloudCredentials) -> Result<Arc<dyn Image>, CloudError> {
        let session = self.session(creds)?;
        Ok(match creds.auth {
            Auth::Scp(_) => Arc::new(ScpImage::new(session)),
            _ => Arc::new(Glance::new(session)),
        })
    }
}
