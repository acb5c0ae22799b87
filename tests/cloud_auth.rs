//! Authentication against the emulator: every auth type, token expiry and
//! refresh, refused tokens, wrong credentials, wrong region, tenant isolation.

mod support_cloud;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudvol::cloud::model::{CreateVolume, ImageQuery, VolumeQuery};
use cloudvol::cloud::{CloudCredentials, CloudError, RequestRecord};
use cloudvol_emulator::Config;
use serde_json::json;
use support_cloud::{DEMO_TENANT, PARTNER_TENANT, eventually, start, start_with};

#[tokio::test(flavor = "multi_thread")]
async fn every_token_auth_type_reaches_block_storage_and_images() {
    let cloud = start().await;
    for (name, version) in [
        ("nhn", "v2"),
        ("v3-project-id", "v3"),
        ("v3-project-name", "v3"),
        ("v3-appcred", "v3"),
    ] {
        let creds = cloud.creds(name);
        let bs = cloud.connector.block_storage(&creds).unwrap();
        let endpoint = bs
            .endpoint()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            endpoint,
            format!("{}/block-storage/{version}/{DEMO_TENANT}", cloud.base),
            "{name}"
        );
        bs.list_volumes(&VolumeQuery::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let image = cloud.connector.image(&creds).unwrap();
        assert_eq!(
            image.endpoint().await.unwrap(),
            format!("{}/image", cloud.base)
        );
        assert_eq!(
            image.project_id().await.unwrap().as_deref(),
            Some(DEMO_TENANT),
            "{name}"
        );
        image
            .list_images(&ImageQuery::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(cloud.count("POST /identity/v2.0/tokens").await, 1);
    assert_eq!(cloud.count("POST /identity/v3/auth/tokens").await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn scp_signs_image_requests_and_offers_no_block_storage() {
    let cloud = start().await;
    let demo_image = cloud.admin_image(DEMO_TENANT, "scp-visible").await;
    let creds = cloud.creds("scp");
    let image = cloud.connector.image(&creds).unwrap();
    assert_eq!(image.provider(), "scp");
    let shown = image.show_image(&demo_image).await.unwrap();
    assert_eq!(shown.name.as_deref(), Some("scp-visible"));
    assert_eq!(shown.properties["scp_image_type"], "custom");
    let listed = image.list_images(&ImageQuery::default()).await.unwrap();
    assert!(listed.iter().any(|i| i.id == demo_image));

    // Partner's signature works too, but demo's private image is not theirs.
    let partner = cloud.connector.image(&cloud.creds("scp-partner")).unwrap();
    let err = partner.show_image(&demo_image).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");

    let err = match cloud.connector.block_storage(&creds) {
        Ok(_) => panic!("block storage for SCP"),
        Err(e) => e,
    };
    assert!(matches!(err, CloudError::Unsupported { .. }), "{err:?}");
    assert!(err.message().contains("SCP"), "{err}");

    let err = image.delete_image(&demo_image).await.unwrap_err();
    assert!(matches!(err, CloudError::Unsupported { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_scp_secret_is_invalid_credentials() {
    let cloud = start().await;
    let yaml = support_cloud::clouds_yaml(&cloud.base).replace("demo-secret-key", "wrong-secret");
    let creds = support_cloud::creds(&yaml, "scp");
    let err = cloud
        .connector
        .image(&creds)
        .unwrap()
        .list_images(&ImageQuery::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, CloudError::InvalidCredentials { .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("wrong-secret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn expiring_tokens_are_renewed_transparently() {
    let cloud = start_with(
        Config::demo()
            .with_transitions(Duration::ZERO)
            .with_token_lifetime(Duration::from_secs(2)),
    )
    .await;
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let seen = statuses.clone();
    cloud
        .connector
        .http()
        .set_request_observer(Arc::new(move |r: &RequestRecord<'_>| {
            seen.lock().unwrap().push(r.status);
        }));
    for (name, login) in [
        ("nhn", "POST /identity/v2.0/tokens"),
        ("v3-project-id", "POST /identity/v3/auth/tokens"),
    ] {
        let bs = cloud.connector.block_storage(&cloud.creds(name)).unwrap();
        bs.list_volumes(&VolumeQuery::default()).await.unwrap();
        assert_eq!(cloud.count(login).await, 1, "{name}");
        // Keep calling; every call succeeds and, past the early-refresh
        // point (90% of 2 s), the client has logged in again by itself.
        eventually(&format!("{name} re-login"), Duration::from_secs(10), || {
            let bs = bs.clone();
            let cloud = &cloud;
            async move {
                bs.list_volumes(&VolumeQuery::default())
                    .await
                    .expect("calls keep working across expiry");
                (cloud.count(login).await >= 2).then_some(())
            }
        })
        .await;
    }
    // The renewal came before expiry: no call was ever refused.
    let statuses = statuses.lock().unwrap();
    assert!(statuses.len() >= 6, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == Some(200) || *s == Some(201)),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_is_renewed_once_and_the_call_retried() {
    let cloud = start().await;
    let bs = cloud.connector.block_storage(&cloud.creds("nhn")).unwrap();
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    cloud
        .fault(json!({"method": "GET", "path": "/block-storage/*", "status": 401, "count": 1}))
        .await;
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();
    assert_eq!(cloud.count("POST /identity/v2.0/tokens").await, 2);
    assert_eq!(
        cloud.count("GET /block-storage/v2/{tenant}/volumes").await,
        3
    );

    // Refused twice: the second refusal is the answer.
    cloud
        .fault(json!({"method": "GET", "path": "/block-storage/*", "status": 401, "count": 2}))
        .await;
    let err = bs.list_volumes(&VolumeQuery::default()).await.unwrap_err();
    assert!(matches!(err, CloudError::Unauthorized { .. }), "{err:?}");
    assert_eq!(err.reason(), "AuthenticationFailed");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_callers_share_one_login() {
    let cloud = start().await;
    let bs = cloud
        .connector
        .block_storage(&cloud.creds("v3-appcred"))
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let bs = Arc::clone(&bs);
        tasks.push(tokio::spawn(async move {
            bs.list_volumes(&VolumeQuery::default()).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // A second client for the same credentials shares the token too.
    let again = cloud.connector.image(&cloud.creds("v3-appcred")).unwrap();
    again.list_images(&ImageQuery::default()).await.unwrap();
    assert_eq!(cloud.count("POST /identity/v3/auth/tokens").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_invalid_credentials_with_the_clouds_message() {
    let cloud = start().await;
    let yaml = support_cloud::clouds_yaml(&cloud.base).replace("demo-password", "not-the-password");
    for name in ["nhn", "v3-project-id"] {
        let creds = support_cloud::creds(&yaml, name);
        let err = cloud
            .connector
            .block_storage(&creds)
            .unwrap()
            .list_volumes(&VolumeQuery::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, CloudError::InvalidCredentials { .. }),
            "{name}: {err:?}"
        );
        assert_eq!(err.reason(), "InvalidCredentials");
        assert!(!err.is_transient());
        assert!(err.message().contains("401"), "{err}");
        assert!(!format!("{err} {err:?}").contains("not-the-password"));
    }
    let yaml = support_cloud::clouds_yaml(&cloud.base)
        .replace("demo-appcred-secret", "bad-appcred-secret");
    let err = cloud
        .connector
        .image(&support_cloud::creds(&yaml, "v3-appcred"))
        .unwrap()
        .list_images(&ImageQuery::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, CloudError::InvalidCredentials { .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_region_names_the_regions_the_catalog_offers() {
    let cloud = start().await;
    let yaml =
        support_cloud::clouds_yaml(&cloud.base).replace("region_name: KR1", "region_name: JP1");
    for name in ["nhn", "v3-project-id"] {
        let creds: CloudCredentials = support_cloud::creds(&yaml, name);
        let err = cloud
            .connector
            .block_storage(&creds)
            .unwrap()
            .list_volumes(&VolumeQuery::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, CloudError::EndpointNotFound { .. }),
            "{err:?}"
        );
        assert!(
            err.message().contains("`JP1`") && err.message().contains("KR1"),
            "{err}"
        );
        assert_eq!(err.reason(), "EndpointNotFound");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_cannot_see_another_tenants_volumes() {
    let cloud = start().await;
    let demo = cloud.connector.block_storage(&cloud.creds("nhn")).unwrap();
    let partner = cloud
        .connector
        .block_storage(&cloud.creds("nhn-partner"))
        .unwrap();
    let v3_partner = cloud
        .connector
        .block_storage(&cloud.creds("v3-partner"))
        .unwrap();
    let vol = demo
        .create_volume(&CreateVolume {
            size: 1,
            name: Some("demo-only".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(vol.tenant_id.as_deref().unwrap_or(DEMO_TENANT), DEMO_TENANT);
    assert!(
        demo.list_volumes(&VolumeQuery::default())
            .await
            .unwrap()
            .iter()
            .any(|v| v.id == vol.id)
    );
    for other in [&partner, &v3_partner] {
        assert!(other.endpoint().await.unwrap().ends_with(PARTNER_TENANT));
        let seen = other
            .list_volumes_detail(&VolumeQuery::default())
            .await
            .unwrap();
        assert!(seen.iter().all(|v| v.id != vol.id));
        let err = other.show_volume(&vol.id).await.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        let err = other.delete_volume(&vol.id).await.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
    }
}

const V2_LOGIN: &str = "POST /identity/v2.0/tokens";
const V3_LOGIN: &str = "POST /identity/v3/auth/tokens";

/// `n` concurrent calls, through block-storage and image clients alike.
async fn many_calls(
    connector: &cloudvol::cloud::Connector,
    creds: &CloudCredentials,
    n: usize,
) -> Vec<CloudError> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let bs = connector.block_storage(creds).unwrap();
        let image = connector.image(creds).unwrap();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                bs.list_volumes(&VolumeQuery::default()).await.map(|_| ())
            } else {
                image.project_id().await.map(|_| ())
            }
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            errors.push(e);
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_cost_one_login_per_backoff_step() {
    let cloud = start().await;
    let wrong_yaml =
        support_cloud::clouds_yaml(&cloud.base).replace("demo-password", "not-the-password");
    for (name, login) in [("nhn", V2_LOGIN), ("v3-project-id", V3_LOGIN)] {
        let (clock, time) = support_cloud::manual_clock();
        let connector = support_cloud::connector().with_clock(clock);
        let wrong = support_cloud::creds(&wrong_yaml, name);
        let before = cloud.count(login).await;

        // Step 1: 200 callers, one login request.
        let errors = many_calls(&connector, &wrong, 200).await;
        assert_eq!(errors.len(), 200, "{name}");
        assert_eq!(cloud.count(login).await, before + 1, "{name}: one login");
        for err in &errors {
            assert!(
                matches!(err, CloudError::InvalidCredentials { .. }),
                "{err:?}"
            );
            assert!(!err.is_transient());
            let wait = err.retry_after().expect("the remaining wait");
            assert!(
                wait > Duration::ZERO && wait <= Duration::from_secs(5),
                "{wait:?}"
            );
            assert!(err.message().contains("401"), "{err}");
            assert!(!format!("{err} {err:?}").contains("not-the-password"));
        }

        // Still within the 5 s: no request at all.
        time.fetch_add(4_900, std::sync::atomic::Ordering::SeqCst);
        many_calls(&connector, &wrong, 50).await;
        assert_eq!(cloud.count(login).await, before + 1, "{name}");

        // Step 2, after 5 s: one probe, then 10 s.
        time.fetch_add(100, std::sync::atomic::Ordering::SeqCst);
        let errors = many_calls(&connector, &wrong, 200).await;
        assert_eq!(errors.len(), 200);
        assert_eq!(cloud.count(login).await, before + 2, "{name}: one probe");
        assert!(
            errors
                .iter()
                .any(|e| e.retry_after() == Some(Duration::from_secs(10))),
            "{:?}",
            errors.first()
        );

        // Corrected credentials log in at once, on the same connector.
        let right = cloud.creds(name);
        connector
            .block_storage(&right)
            .unwrap()
            .list_volumes(&VolumeQuery::default())
            .await
            .unwrap();
        assert_eq!(cloud.count(login).await, before + 3, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_successful_login_forgets_earlier_refusals() {
    let cloud = start().await;
    let (clock, time) = support_cloud::manual_clock();
    let connector = support_cloud::connector().with_clock(clock);
    let bs = connector.block_storage(&cloud.creds("nhn")).unwrap();
    cloud
        .fault(json!({"method": "POST", "path": "/identity/*", "status": 401, "count": 1}))
        .await;
    let err = bs.list_volumes(&VolumeQuery::default()).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(5)), "{err:?}");
    time.fetch_add(5_000, std::sync::atomic::Ordering::SeqCst);
    bs.list_volumes(&VolumeQuery::default()).await.unwrap();

    // The token is refused, and so is the login that follows: the first
    // refusal again (5 s), not the second in a row (10 s).
    cloud
        .fault(json!({"method": "GET", "path": "/block-storage/*", "status": 401, "count": 1}))
        .await;
    cloud
        .fault(json!({"method": "POST", "path": "/identity/*", "status": 401, "count": 1}))
        .await;
    let err = bs.list_volumes(&VolumeQuery::default()).await.unwrap_err();
    assert!(
        matches!(err, CloudError::InvalidCredentials { .. }),
        "{err:?}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(5)), "{err:?}");
    assert_eq!(cloud.count(V2_LOGIN).await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_answered_403_is_refused_credentials_too() {
    let cloud = start().await;
    let connector = support_cloud::connector();
    cloud
        .fault(json!({"method": "POST", "path": "/identity/*", "status": 403, "count": 1}))
        .await;
    let bs = connector.block_storage(&cloud.creds("v3-appcred")).unwrap();
    let err = bs.list_volumes(&VolumeQuery::default()).await.unwrap_err();
    assert!(
        matches!(err, CloudError::InvalidCredentials { .. }),
        "{err:?}"
    );
    assert!(err.message().contains("403"), "{err}");
    bs.list_volumes(&VolumeQuery::default()).await.unwrap_err();
    assert_eq!(
        cloud.count(V3_LOGIN).await,
        1,
        "the second call failed fast"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_scp_signature_backs_off_too() {
    let cloud = start().await;
    let (clock, time) = support_cloud::manual_clock();
    let connector = support_cloud::connector()
        .with_login_backoff(cloudvol::cloud::LoginBackoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(4),
        })
        .with_clock(clock);
    let yaml = support_cloud::clouds_yaml(&cloud.base).replace("demo-secret-key", "wrong-secret");
    let wrong = connector
        .image(&support_cloud::creds(&yaml, "scp"))
        .unwrap();
    let err = wrong.list_images(&ImageQuery::default()).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)), "{err:?}");
    for _ in 0..20 {
        let err = wrong.list_images(&ImageQuery::default()).await.unwrap_err();
        assert_eq!(err.reason(), "InvalidCredentials");
    }
    assert_eq!(cloud.count("GET /scp/v1/images").await, 1);
    for step in [2, 4, 4] {
        time.fetch_add(4_000, std::sync::atomic::Ordering::SeqCst);
        let err = wrong.list_images(&ImageQuery::default()).await.unwrap_err();
        assert_eq!(
            err.retry_after(),
            Some(Duration::from_secs(step)),
            "capped at max"
        );
    }
    assert_eq!(cloud.count("GET /scp/v1/images").await, 4);
    // The right key is other credentials: tried at once.
    connector
        .image(&cloud.creds("scp"))
        .unwrap()
        .list_images(&ImageQuery::default())
        .await
        .unwrap();
    assert_eq!(cloud.count("GET /scp/v1/images").await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_token_expiries_neither_panic_nor_make_every_call_log_in() {
    use support_cloud::scripted::{self, Reply};
    for (issued, expires) in [
        (None, "9999-12-31T23:59:59.999999Z"),
        (Some("2024-01-01T00:00:00Z"), "262143-12-31T23:59:59Z"),
        (None, "not a time"),
        (None, ""),
        (None, "1970-01-01T00:00:00Z"),
        (Some("2030-01-01T00:00:00Z"), "2029-01-01T00:00:00Z"),
        (Some("garbage"), "2999-01-01T00:00:00"),
    ] {
        let cloud = scripted::serve(move |req| {
            if req.path == "/identity/v2.0/tokens" {
                return scripted::nhn_token(req, issued, expires);
            }
            Reply::json(200, json!({"volumes": []}))
        })
        .await;
        let bs = support_cloud::connector()
            .block_storage(&scripted::creds(&cloud, "nhn"))
            .unwrap();
        for _ in 0..3 {
            bs.list_volumes(&VolumeQuery::default())
                .await
                .unwrap_or_else(|e| panic!("{expires}: {e}"));
        }
        assert_eq!(cloud.count("POST", "/tokens"), 1, "{issued:?} {expires}");
    }
}
