//! Leader election through a `coordination.k8s.io/v1` Lease, so that a rolling update never
//! runs two writers. The leader renews the Lease; a replica takes it over only once it has
//! expired; a leader that cannot renew within the renew deadline — shorter than the Lease, so
//! that it stops before anyone else may start — stops writing at once (the `leading` channel
//! the cloud layer's write fence follows) and then stops.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use tracing::{info, warn};

/// One replica's view of the Lease.
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews, and a follower retries.
    pub retry_period: Duration,
    /// How long the leader goes on without a successful renewal before it gives up: shorter
    /// than `lease_duration`, so a deposed leader has stopped writing before the Lease expires
    /// for the others. Every renewal call is cut at this deadline too, so a hung call cannot
    /// keep a leader writing.
    pub renew_deadline: Duration,
    /// `true` while this replica holds the Lease: what the cloud layer's write fence reads.
    leading: tokio::sync::watch::Sender<bool>,
}

impl LeaderElection {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElection {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(10),
            leading: tokio::sync::watch::channel(false).0,
        }
    }

    /// A receiver that holds `true` while this replica leads.
    pub fn leading(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        let mut logged = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "became the leader");
                    self.leading.send_replace(true);
                    return;
                }
                Ok(false) if !logged => {
                    info!(lease = %self.name, "another replica leads; waiting for its Lease to expire");
                    logged = true;
                }
                Ok(false) => {}
                Err(err) => warn!(lease = %self.name, error = %err, "cannot read the Lease"),
            }
            tokio::time::sleep(self.retry_period).await;
        }
    }

    /// Renews the Lease for as long as possible; returns when leadership is lost (another
    /// replica took it, or no renewal succeeded within the renew deadline). Writes stop the
    /// moment it is lost: `leading` turns `false` before this returns.
    pub async fn keep(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.retry_period).await;
            let left = self.renew_deadline.saturating_sub(last_renewal.elapsed());
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => last_renewal = tokio::time::Instant::now(),
                Ok(Ok(false)) => {
                    warn!(lease = %self.name, "another replica took the Lease");
                    break;
                }
                Ok(Err(err)) => warn!(lease = %self.name, error = %err, "cannot renew the Lease"),
                Err(_) => warn!(lease = %self.name, "renewing the Lease did not answer in time"),
            }
            if last_renewal.elapsed() >= self.renew_deadline {
                warn!(lease = %self.name, deadline = ?self.renew_deadline, "no renewal within the renew deadline");
                break;
            }
        }
        self.leading.send_replace(false);
    }

    /// Gives the Lease up so that the next replica need not wait for it to expire.
    pub async fn release(&self) {
        // Stop writing first, then let go.
        self.leading.send_replace(false);
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        if let Err(err) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            warn!(lease = %self.name, error = %err, "cannot release the Lease");
        }
    }

    /// Takes or renews the Lease; `Ok(false)` when another replica holds it.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let seconds = self.lease_duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if !mine {
            let held = spec
                .holder_identity
                .as_deref()
                .is_some_and(|h| !h.is_empty());
            let expires = spec
                .renew_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH)
                + SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(seconds).into());
            if held && expires > now {
                return Ok(false);
            }
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        // The resourceVersion from the read makes this a compare-and-swap.
        let name = lease.name_any();
        conflict_is_false(
            self.api
                .replace(&name, &PostParams::default(), &lease)
                .await,
        )
    }
}

fn conflict_is_false(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}
