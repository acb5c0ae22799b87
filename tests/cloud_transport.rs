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
async fn a_post_answered_503_once_is_not_resent_and_carries_retry_after() {
    let cloud = start().await;
    let bs = cloud.connector.block_storage(&cloud.creds("nhn")).unwrap();
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    // A proxy that forwarded the create and then answered 503: the volume
    // exists, and resending would make a second one.
    cloud
        .fault(json!({"method": "POST", "path": "/block-storage/*/volumes", "status": 503, "retry_after": 7, "after_action": true, "count": 1}))
        .await;
    let err = bs
        .create_volume(&CreateVolume {
            size: 1,
            name: Some("once".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(cloud.count(CREATE).await, 1, "the POST was sent once");
    assert!(
        matches!(err, CloudError::Unavailable { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)), "{err:?}");
    let found = bs
        .list_volumes(&VolumeQuery {
            name: Some("once".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "one volume, for the adopt logic to find");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_answered_429_without_retry_after_goes_back_with_a_backoff() {
    let cloud = start().await;
    let bs = cloud.connector.block_storage(&cloud.creds("nhn")).unwrap();
    cloud
        .fault(json!({"method": "POST", "path": "/block-storage/*", "status": 429, "count": 2}))
        .await;
    let err = bs
        .create_volume(&CreateVolume {
            size: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(cloud.count(CREATE).await, 1);
    assert!(matches!(err, CloudError::RateLimited { .. }), "{err:?}");
    let wait = err.retry_after().expect("a wait for the caller");
    assert!(
        wait > Duration::ZERO && wait <= RetryPolicy::fast().max_backoff,
        "{wait:?}"
    );
    // The identity login is a POST too, but marked idempotent: retried.
    let fresh = support_cloud::connector();
    cloud
        .fault(json!({"method": "POST", "path": "/identity/*", "status": 503, "count": 1}))
        .await;
    fresh
        .block_storage(&cloud.creds("nhn"))
        .unwrap()
        .list_volumes(&VolumeQuery::default())
        .await
        .unwrap();
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
                max_total_wait: Duration::from_secs(1),
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
    assert_eq!(err.reason(), "CloudUnreachable");
    assert!(err.is_transient());
    assert_eq!(seen.lock().unwrap().len(), 3, "connect errors are retried");
}

/// A connector whose retries may sleep `total` in all.
fn connector_sleeping_at_most(total: Duration) -> Connector {
    Connector::new(
        CloudHttp::new(TransportConfig {
            retry: RetryPolicy {
                max_attempts: 5,
                initial_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(3),
                max_total_wait: total,
            },
            ..support_cloud::fast_transport()
        })
        .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn one_call_sleeps_no_longer_than_its_budget() {
    assert_eq!(
        RetryPolicy::default().max_total_wait,
        Duration::from_secs(2)
    );
    let cloud = start().await;
    let connector = connector_sleeping_at_most(Duration::from_millis(250));
    let bs = connector.block_storage(&cloud.creds("nhn")).unwrap();
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    // Backoffs of 100-200 ms then 200-400 ms: the first fits in 250 ms, the
    // first two never do. So: two attempts, and the second backoff goes back.
    cloud
        .fault(json!({"method": "GET", "path": "/block-storage/*", "status": 503, "count": 10}))
        .await;
    let started = Instant::now();
    let err = bs.list_volumes(&VolumeQuery::default()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(cloud.count(LIST).await, 1 + 2);
    assert!(matches!(err, CloudError::Unavailable { .. }), "{err:?}");
    let wait = err.retry_after().expect("the backoff is handed back");
    assert!(
        wait >= Duration::from_millis(200) && wait <= Duration::from_millis(400),
        "{wait:?}"
    );

    // A Retry-After beyond the budget is not slept at all.
    cloud.admin_post("/_admin/reset", json!({})).await;
    cloud
        .fault(json!({"method": "GET", "path": "/block-storage/*", "status": 429, "retry_after": 1, "count": 1}))
        .await;
    let started = Instant::now();
    let err = connector
        .block_storage(&cloud.creds("v3-project-id"))
        .unwrap()
        .list_volumes(&VolumeQuery::default())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)), "{err:?}");
    assert_eq!(
        cloud.count("GET /block-storage/v3/{tenant}/volumes").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_stays_transient() {
    let cloud = start().await;
    let connector = Connector::new(
        CloudHttp::new(TransportConfig {
            request_timeout: Duration::from_millis(300),
            retry: RetryPolicy {
                max_attempts: 2,
                ..RetryPolicy::fast()
            },
            ..support_cloud::fast_transport()
        })
        .unwrap(),
    );
    let bs = connector.block_storage(&cloud.creds("nhn")).unwrap();
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    cloud
        .fault(json!({"method": "GET", "path": "/block-storage/*", "delay_ms": 2000, "count": 2}))
        .await;
    let err = bs.list_volumes(&VolumeQuery::default()).await.unwrap_err();
    assert!(matches!(err, CloudError::Transport { .. }), "{err:?}");
    assert_eq!(err.reason(), "CloudUnreachable");
    assert!(err.is_transient());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_write_fence_stops_writes_before_they_are_sent() {
    let cloud = start().await;
    let connector = support_cloud::connector();
    let (lease, leading) = tokio::sync::watch::channel(false);
    connector.http().set_write_fence_watch(leading);
    let bs = connector.block_storage(&cloud.creds("nhn")).unwrap();
    let image = connector.image(&cloud.creds("nhn")).unwrap();
    let image_id = cloud
        .admin_image(support_cloud::DEMO_TENANT, "fenced")
        .await;

    // Reads (and the login they need) still work while fenced.
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    assert_eq!(cloud.count("POST /identity/v2.0/tokens").await, 1);
    let err = bs
        .create_volume(&CreateVolume {
            size: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::NotLeader { .. }), "{err:?}");
    assert_eq!(err.reason(), "NotLeader");
    assert!(err.is_transient());
    assert!(err.message().contains("POST"), "{err}");
    let err = image.delete_image(&image_id).await.unwrap_err();
    assert_eq!(err.reason(), "NotLeader");
    let err = image.add_tag(&image_id, "t").await.unwrap_err();
    assert_eq!(err.reason(), "NotLeader");
    let counts = cloud.request_counts().await;
    assert!(
        counts
            .keys()
            .all(|k| k.starts_with("GET ") || k == "POST /identity/v2.0/tokens"),
        "only reads and the login reached the cloud: {counts:?}"
    );

    // Leading again: writes go out.
    lease.send(true).unwrap();
    bs.create_volume(&CreateVolume {
        size: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(cloud.count(CREATE).await, 1);

    // A plain function works too, and is asked before each attempt.
    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = open.clone();
    connector.http().set_write_fence(Arc::new(move || {
        flag.load(std::sync::atomic::Ordering::SeqCst)
    }));
    let err = image.delete_image(&image_id).await.unwrap_err();
    assert_eq!(err.reason(), "NotLeader");
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    image.delete_image(&image_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tight_rate_limit_reports_its_waits_per_host() {
    use cloudvol::cloud::{RateLimit, RequestObserver};
    struct Waits(Mutex<Vec<(String, Duration)>>);
    impl RequestObserver for Waits {
        fn observe(&self, _: &RequestRecord<'_>) {}
        fn observe_rate_limit_wait(&self, host: &str, waited: Duration) {
            self.0.lock().unwrap().push((host.to_string(), waited));
        }
    }
    let cloud = start().await;
    let connector = Connector::new(
        CloudHttp::new(TransportConfig {
            rate_limit: Some(RateLimit {
                per_second: 20.0,
                burst: 1.0,
            }),
            ..support_cloud::fast_transport()
        })
        .unwrap(),
    );
    let waits = Arc::new(Waits(Mutex::new(Vec::new())));
    connector.http().set_request_observer(waits.clone());
    let bs = connector.block_storage(&cloud.creds("nhn")).unwrap();
    for _ in 0..4 {
        bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    }
    // 5 requests (a login and 4 lists) through a bucket of one at 20/s.
    let waits = waits.0.lock().unwrap().clone();
    assert!(waits.len() >= 3, "{waits:?}");
    assert!(
        waits.iter().all(|(host, _)| host == "127.0.0.1"),
        "{waits:?}"
    );
    let total: Duration = waits.iter().map(|(_, w)| *w).sum();
    assert!(total >= Duration::from_millis(100), "{waits:?}");
    // An observer that is only a closure still compiles and sees attempts.
    let seen = recorder(&connector);
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// The cloud `nhn` of the support clouds.yaml, with another auth_url and CA.
fn creds_at(auth_url: &str, cacert: Option<&[u8]>) -> CloudCredentials {
    let yaml = format!(
        "clouds:\n  c:\n    auth_type: v2password\n    auth:\n      auth_url: {auth_url}\n      tenant_id: {}\n      username: demo\n      password: demo-password\n",
        support_cloud::DEMO_TENANT
    );
    CloudCredentials::from_clouds_yaml(yaml.as_bytes(), "c", cacert).unwrap()
}

async fn login_error(connector: &Connector, creds: &CloudCredentials) -> CloudError {
    connector
        .block_storage(creds)
        .unwrap()
        .list_volumes(&VolumeQuery::default())
        .await
        .unwrap_err()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_failures_need_a_person_and_are_not_retried() {
    let good = support_cloud::tls::start("IP:127.0.0.1");
    let connector = support_cloud::connector();
    let seen = recorder(&connector);

    // No cacert: the test CA is unknown.
    let err = login_error(&connector, &creds_at(&good.url(), None)).await;
    assert!(matches!(err, CloudError::TlsFailure { .. }), "{err:?}");
    assert_eq!(err.reason(), "TLSFailure");
    assert!(!err.is_transient());
    assert!(err.message().contains("127.0.0.1"), "{err}");
    assert!(err.message().contains("cacert"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 1, "not retried");

    // A cacert of another CA.
    let err = login_error(&connector, &creds_at(&good.url(), Some(&good.other_ca_pem))).await;
    assert_eq!(err.reason(), "TLSFailure", "{err:?}");

    // The right CA: TLS works. s_server answers no token request: give it a
    // second, and the failure is then a timeout, not TLS.
    let patient = Connector::new(
        CloudHttp::new(TransportConfig {
            request_timeout: Duration::from_secs(1),
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::fast()
            },
            ..support_cloud::fast_transport()
        })
        .unwrap(),
    );
    let err = login_error(&patient, &creds_at(&good.url(), Some(&good.ca_pem))).await;
    assert!(
        matches!(err.reason(), "CloudUnreachable" | "CloudProtocolError"),
        "{err:?}"
    );

    // A certificate for another name.
    let wrong_name = support_cloud::tls::start("DNS:wrong.example");
    let err = login_error(
        &connector,
        &creds_at(&wrong_name.url(), Some(&wrong_name.ca_pem)),
    )
    .await;
    assert_eq!(err.reason(), "TLSFailure", "{err:?}");
    assert!(err.message().contains("host name"), "{err}");

    // https:// to a plain-HTTP server.
    let cloud = start().await;
    let plain = cloud.base.replace("http://", "https://");
    let err = login_error(
        &connector,
        &creds_at(&format!("{plain}/identity/v2.0"), None),
    )
    .await;
    assert_eq!(err.reason(), "TLSFailure", "{err:?}");
    assert!(err.message().contains("plain-HTTP"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_that_does_not_resolve_is_host_not_found() {
    let connector = support_cloud::connector();
    let seen = recorder(&connector);
    let err = login_error(
        &connector,
        &creds_at("https://identity.cloudvol-test.invalid/v2.0", None),
    )
    .await;
    assert!(matches!(err, CloudError::HostNotFound { .. }), "{err:?}");
    assert_eq!(err.reason(), "HostNotFound");
    assert!(!err.is_transient());
    assert!(
        err.message().contains("identity.cloudvol-test.invalid"),
        "{err}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "not retried");

    // Names that do resolve still work through the same resolver.
    let cloud = start().await;
    let by_name = cloud.base.replace("127.0.0.1", "localhost");
    connector
        .block_storage(&creds_at(&format!("{by_name}/identity/v2.0"), None))
        .unwrap()
        .endpoint()
        .await
        .unwrap();
}

use support_cloud::scripted::{self, Reply};

/// A scripted cloud whose volume list answers `first` once, then 200.
async fn list_answering_once(
    first: impl Fn() -> Reply + Send + Sync + 'static,
) -> scripted::Scripted {
    let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
    scripted::serve(move |req| {
        if let Some(reply) = scripted::identity(req) {
            return reply;
        }
        if !served.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return first();
        }
        Reply::json(200, json!({"volumes": []}))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_retry_after_values_are_cut_to_ten_minutes_or_ignored() {
    for huge in [
        "99999999999999999999999999",
        "1e300",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        let cloud = list_answering_once(move || {
            Reply::json(
                503,
                json!({"serviceUnavailable": {"code": 503, "message": "busy"}}),
            )
            .header("retry-after", huge)
        })
        .await;
        let started = Instant::now();
        let err = support_cloud::connector()
            .block_storage(&scripted::creds(&cloud, "nhn"))
            .unwrap()
            .list_volumes(&VolumeQuery::default())
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{huge}: not slept"
        );
        assert_eq!(
            err.retry_after(),
            Some(cloudvol::cloud::error::MAX_RETRY_AFTER),
            "{huge}: {err:?}"
        );
        assert_eq!(
            cloudvol::cloud::error::MAX_RETRY_AFTER,
            Duration::from_secs(600)
        );
    }
    // Refused values: the transport backs off on its own and retries.
    for refused in ["-5", "NaN", "soon", "Mon, 99 Foo 2015 99:99:99 GMT"] {
        let cloud = list_answering_once(move || {
            Reply::json(429, json!({"overLimit": {"code": 429, "message": "slow"}}))
                .header("retry-after", refused)
        })
        .await;
        support_cloud::connector()
            .block_storage(&scripted::creds(&cloud, "nhn"))
            .unwrap()
            .list_volumes(&VolumeQuery::default())
            .await
            .unwrap_or_else(|e| panic!("{refused}: {e}"));
        assert_eq!(cloud.count("GET", "/volumes"), 2, "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_larger_than_the_limit_is_refused_not_read() {
    let cloud = list_answering_once(|| Reply {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: vec![b' '; cloudvol::cloud::transport::MAX_ANSWER_BYTES + 1],
    })
    .await;
    let err = support_cloud::connector()
        .block_storage(&scripted::creds(&cloud, "nhn"))
        .unwrap()
        .list_volumes(&VolumeQuery::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "CloudProtocolError", "{err:?}");
    assert!(err.message().contains("larger than 32 MiB"), "{err}");
}
