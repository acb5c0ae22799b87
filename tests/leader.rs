//! Leader election against the real API server: one writer at a time, a quick hand-over when
//! the leader releases the Lease, and a take-over once a silent leader's Lease expires.

mod support;

use std::time::Duration;

use cloudvol::operator::leader::LeaderElection;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

fn election(client: &kube::Client, namespace: &str, identity: &str) -> LeaderElection {
    let mut election = LeaderElection::new(client.clone(), namespace, "cloudvol-leader", identity);
    election.lease_duration = Duration::from_secs(2);
    election.retry_period = Duration::from_millis(100);
    election
}

async fn holder(client: &kube::Client, namespace: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    leases
        .get_opt("cloudvol-leader")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread")]
async fn only_one_replica_leads_and_a_release_hands_over_at_once() {
    let client = support::client().await;
    let namespace = support::namespace(&client, "leader").await;
    let first = election(&client, &namespace, "replica-a");
    let second = election(&client, &namespace, "replica-b");
    tokio::time::timeout(Duration::from_secs(10), first.acquire())
        .await
        .expect("the first replica leads");
    assert_eq!(
        holder(&client, &namespace).await.as_deref(),
        Some("replica-a")
    );

    // While the leader renews, the other replica waits.
    let renewing = tokio::spawn(async move {
        first.keep().await;
        first
    });
    let waited = tokio::time::timeout(Duration::from_secs(4), second.acquire()).await;
    assert!(
        waited.is_err(),
        "a second replica must not lead while the first renews"
    );
    assert_eq!(
        holder(&client, &namespace).await.as_deref(),
        Some("replica-a")
    );

    // The leader stops renewing and releases: the other takes over without waiting out the
    // lease.
    renewing.abort();
    let _ = renewing.await;
    let first = election(&client, &namespace, "replica-a");
    first.release().await;
    tokio::time::timeout(Duration::from_secs(3), second.acquire())
        .await
        .expect("the second replica takes over after a release");
    assert_eq!(
        holder(&client, &namespace).await.as_deref(),
        Some("replica-b")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_leaders_lease_is_taken_over_once_it_expires() {
    let client = support::client().await;
    let namespace = support::namespace(&client, "leader-expiry").await;
    let first = election(&client, &namespace, "replica-a");
    first.acquire().await;
    // replica-a goes silent (no keep, no release).
    let second = election(&client, &namespace, "replica-b");
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), second.acquire())
        .await
        .expect("the Lease is taken over after it expires");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "not before the Lease expired"
    );
    assert_eq!(
        holder(&client, &namespace).await.as_deref(),
        Some("replica-b")
    );
    // The old leader notices it lost the Lease.
    tokio::time::timeout(Duration::from_secs(5), first.keep())
        .await
        .expect("keep() returns once another replica holds the Lease");
}
