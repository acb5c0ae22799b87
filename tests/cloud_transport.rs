//! Retries, rate limits and dropped connections against the emulator.

mod support_cloud;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudvol::cloud::model::{CreateVolume, VolumeQuery};
use cloudvol::cloud::{
    CloudCredentials, CloudError, CloudHttp, Connector, RequestRecord, RetryPolicy, TransportConfig,
};
use serde_json::json;
use support_cloud::start;

const LIST: &str = "GET /block-storage/v2/{tenant}/volumes";
const CREATE: &str = "POST /block-storage/v2/{tenant}/volumes";

/// What the observer saw: ("<service> <method>", status, attempt).
type Seen = Arc<Mutex<Vec<(String, Option<u16>, u32)>>>;

fn recorder(connector: &Connector) -> Seen {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    connector
        .http()
        .set_request_observer(Arc::new(move |r: &RequestRecord<'_>| {
            sink.lock()
                .unwrap()
                .push((format!("{} {}", r.service, r.method), r.status, r.attempt));
        }));
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn a_503_with_retry_after_is_waited_out() {
    let cloud = start().await;
    let bs = cloud.connector.block_storage(&cloud.creds("nhn")).unwrap();
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    cloud
        .fault(json!({"method": "GET", "path": "/block-storage/*", "status": 503, "retry_after": 1, "count": 1}))
        .await;
    let started = Instant::now();
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After: 1 was honoured ({:?})",
        started.elapsed()
    );
    assert_eq!(cloud.count(LIST).await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_429_is_retried_until_it_passes() {
    let cloud = start().await;
    let seen = recorder(&cloud.connector);
    let bs = cloud.connector.block_storage(&cloud.creds("nhn")).unwrap();
    cloud
        .fault(json!({"method": "GET", "path": "/block-storage/*", "status": 429, "count": 3}))
        .await;
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    assert_eq!(cloud.count(LIST).await, 4, "3 x 429 then success");
    let seen = seen.lock().unwrap();
    let list_attempts: Vec<_> = seen
        .iter()
        .filter(|(what, _, _)| what == "block-storage GET")
        .map(|(_, status, attempt)| (*status, *attempt))
        .collect();
    assert_eq!(
        list_attempts,
        vec![
            (Some(429), 1),
            (Some(429), 2),
            (Some(429), 3),
            (Some(200), 4)
        ]
    );
    assert!(
        seen.iter()
            .any(|(what, status, _)| what == "identity POST" && *status == Some(200))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn posts_are_retried_on_429_since_the_cloud_did_nothing() {
    let cloud = start().await;
    let bs = cloud.connector.block_storage(&cloud.creds("nhn")).unwrap();
    cloud
        .fault(json!({"method": "POST", "path": "/block-storage/*", "status": 429, "count": 2}))
        .await;
    bs.create_volume(&CreateVolume {
        size: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(cloud.count(CREATE).await, 3);
    assert_eq!(
        bs.list_volumes(&VolumeQuery::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn endless_429_ends_in_rate_limited_after_the_attempts() {
    let cloud = start().await;
    let bs = cloud.connector.block_storage(&cloud.creds("nhn")).unwrap();
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    cloud
        .fault(json!({"method": "GET", "path": "/block-storage/*", "status": 429, "count": 50}))
        .await;
    let err = bs.list_volumes(&VolumeQuery::default()).await.unwrap_err();
    assert!(matches!(err, CloudError::RateLimited { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(
        cloud.count(LIST).await,
        1 + RetryPolicy::fast().max_attempts as u64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_beyond_the_longest_wait_is_handed_to_the_caller() {
    let cloud = start().await;
    let bs = cloud.connector.block_storage(&cloud.creds("nhn")).unwrap();
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    cloud
        .fault(json!({"method": "GET", "path": "/block-storage/*", "status": 429, "retry_after": 120, "count": 1}))
        .await;
    let started = Instant::now();
    let err = bs.list_volumes(&VolumeQuery::default()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)), "{err:?}");
    assert_eq!(err.reason(), "RateLimited");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quota_413_is_not_retried() {
    let cloud = start().await;
    let bs = cloud.connector.block_storage(&cloud.creds("nhn")).unwrap();
    cloud
        .fault(json!({"method": "POST", "path": "/block-storage/*", "status": 413, "count": 1}))
        .await;
    let err = bs
        .create_volume(&CreateVolume {
            size: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::QuotaExceeded { .. }), "{err:?}");
    assert_eq!(cloud.count(CREATE).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_post_answer_is_a_transport_error_and_not_resent() {
    let cloud = start().await;
    let bs = cloud.connector.block_storage(&cloud.creds("nhn")).unwrap();
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    cloud
        .fault(json!({"method": "POST", "path": "/block-storage/*/volumes", "drop_connection": true, "after_action": true, "count": 1}))
        .await;
    let err = bs
        .create_volume(&CreateVolume {
            size: 1,
            name: Some("lost-answer".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::Transport { .. }), "{err:?}");
    assert_eq!(err.reason(), "CloudUnreachable");
    assert!(err.is_transient());
    assert_eq!(cloud.count(CREATE).await, 1, "the POST was not resent");
    // The cloud acted: the volume exists, for the adopt logic to find.
    let found = bs
        .list_volumes(&VolumeQuery {
            name: Some("lost-answer".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_get_answer_is_retried() {
    let cloud = start().await;
    let bs = cloud.connector.block_storage(&cloud.creds("nhn")).unwrap();
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    cloud
        .fault(json!({"method": "GET", "path": "/block-storage/*", "drop_connection": true, "count": 1}))
        .await;
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    assert_eq!(cloud.count(LIST).await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cloud_that_is_down_is_unreachable() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let yaml = support_cloud::clouds_yaml(&format!("http://127.0.0.1:{port}"));
    let creds: CloudCredentials = support_cloud::creds(&yaml, "nhn");
    let connector = Connector::new(
        CloudHttp::new(TransportConfig {
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(10),
            },
            ..support_cloud::fast_transport()
        })
        .unwrap(),
    );
    let seen = recorder(&connector);
    let err = connector
        .block_storage(&creds)
        .unwrap()
        .list_volumes(&VolumeQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::Transport { .. }), "{err:?}");
    assert_eq!(seen.lock().unwrap().len(), 3, "connect errors are retried");
}
