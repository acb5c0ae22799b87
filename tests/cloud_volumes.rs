//! Block storage against the emulator, in NHN's v2 dialect and Cinder v3.

mod support_cloud;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cloudvol::cloud::model::{
    CreateVolume, ImageStatus, NhnEncryptionRequest, UpdateVolume, UploadToImage, Visibility,
    Volume, VolumeQuery, VolumeStatus,
};
use cloudvol::cloud::{BlockStorage, CloudError};
use serde_json::json;
use support_cloud::{Cloud, eventually, start};

const WAIT: Duration = Duration::from_secs(10);

async fn wait_status(bs: &Arc<dyn BlockStorage>, id: &str, want: VolumeStatus) -> Volume {
    eventually(&format!("volume {id} {want}"), WAIT, || async {
        let v = bs.show_volume(id).await.expect("show volume");
        (v.status == want).then_some(v)
    })
    .await
}

async fn volume_lifecycle(cloud: &Cloud, name: &str) {
    let creds = cloud.creds(name);
    let bs = cloud.connector.block_storage(&creds).unwrap();
    let image = cloud.connector.image(&creds).unwrap();
    let mark = BTreeMap::from([("cloudvol.dev/uid".to_string(), format!("uid-{name}"))]);

    let created = bs
        .create_volume(&CreateVolume {
            size: 1,
            name: Some(format!("data-{name}")),
            description: Some("made by a test".into()),
            metadata: mark.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.size, 1);
    assert_eq!(created.metadata, mark);
    let vol = wait_status(&bs, &created.id, VolumeStatus::Available).await;
    assert_eq!(vol.name.as_deref(), Some(format!("data-{name}").as_str()));

    // Another volume without the mark, so the filter has something to skip.
    let other = bs
        .create_volume(&CreateVolume {
            size: 1,
            ..Default::default()
        })
        .await
        .unwrap();

    // Crash-safety marks are found by metadata.
    let found = bs
        .list_volumes_detail(&VolumeQuery {
            metadata: mark.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(),
        vec![created.id.as_str()]
    );
    let by_name = bs
        .list_volumes(&VolumeQuery {
            name: Some(format!("data-{name}")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_name.len(), 1);
    assert_eq!(by_name[0].id, created.id);
    let available = bs
        .list_volumes_detail(&VolumeQuery {
            status: Some(VolumeStatus::Available),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(available.iter().any(|v| v.id == other.id));

    // Update name, description and (the whole) metadata.
    let mut new_meta = mark.clone();
    new_meta.insert("purpose".into(), "test".into());
    let updated = bs
        .update_volume(
            &created.id,
            &UpdateVolume {
                name: Some(format!("renamed-{name}")),
                description: Some("changed".into()),
                metadata: Some(new_meta.clone()),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        updated.name.as_deref(),
        Some(format!("renamed-{name}").as_str())
    );
    assert_eq!(updated.description.as_deref(), Some("changed"));
    assert_eq!(
        bs.show_volume(&created.id).await.unwrap().metadata,
        new_meta
    );

    // Extend.
    bs.extend_volume(&created.id, 3).await.unwrap();
    eventually("extended", WAIT, || async {
        let v = bs.show_volume(&created.id).await.unwrap();
        (v.size == 3 && v.status == VolumeStatus::Available).then_some(())
    })
    .await;

    // Upload to an image, shared and protected.
    let mut upload = UploadToImage::new(format!("image-of-{name}"));
    upload.disk_format = Some("qcow2".into());
    upload.container_format = Some("bare".into());
    upload.visibility = Some("shared".into());
    upload.protected = Some(true);
    let uploaded = bs.upload_to_image(&created.id, &upload).await.unwrap();
    assert!(!uploaded.image_id.is_empty());
    assert_eq!(uploaded.status, VolumeStatus::Uploading);
    wait_status(&bs, &created.id, VolumeStatus::Available).await;
    let img = eventually("image active", WAIT, || async {
        let i = image.show_image(&uploaded.image_id).await.unwrap();
        (i.status == ImageStatus::Active).then_some(i)
    })
    .await;
    assert_eq!(
        img.name.as_deref(),
        Some(format!("image-of-{name}").as_str())
    );
    assert_eq!(img.visibility, Visibility::Shared);
    assert!(img.protected);

    // Delete both volumes.
    for id in [&created.id, &other.id] {
        bs.delete_volume(id).await.unwrap();
        eventually("volume gone", WAIT, || async {
            match bs.show_volume(id).await {
                Err(e) if e.is_not_found() => Some(()),
                Ok(_) => None,
                Err(e) => panic!("{e}"),
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nhn_v2_volume_lifecycle() {
    let cloud = start().await;
    volume_lifecycle(&cloud, "nhn").await;
    let counts = cloud.request_counts().await;
    assert!(counts.contains_key("POST /block-storage/v2/{tenant}/volumes/{volume_id}/action"));
}

#[tokio::test(flavor = "multi_thread")]
async fn openstack_v3_volume_lifecycle() {
    let cloud = start().await;
    volume_lifecycle(&cloud, "v3-project-id").await;
    let counts = cloud.request_counts().await;
    assert!(counts.contains_key("POST /block-storage/v3/{tenant}/volumes/{volume_id}/action"));
    assert!(!counts.keys().any(|k| k.contains("/block-storage/v2/")));
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_follow_every_page() {
    let cloud = start().await;
    let bs = cloud.connector.block_storage(&cloud.creds("nhn")).unwrap();
    let mut ids = Vec::new();
    for i in 0..7 {
        let v = bs
            .create_volume(&CreateVolume {
                size: 1,
                name: Some(format!("page-{i}")),
                ..Default::default()
            })
            .await
            .unwrap();
        ids.push(v.id);
    }
    let query = VolumeQuery {
        limit: Some(2),
        ..Default::default()
    };
    let mut listed: Vec<String> = bs
        .list_volumes_detail(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.id)
        .collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);
    assert_eq!(
        cloud
            .count("GET /block-storage/v2/{tenant}/volumes/detail")
            .await,
        4,
        "7 volumes in pages of 2"
    );
    let summaries = bs.list_volumes(&query).await.unwrap();
    assert_eq!(summaries.len(), 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn nhn_encryption_is_an_nhn_extension() {
    let cloud = start().await;
    let req = CreateVolume {
        size: 1,
        nhn_encryption: Some(NhnEncryptionRequest {
            skm_appkey: "appkey".into(),
            skm_key_id: "key-1".into(),
        }),
        ..Default::default()
    };
    let v3 = cloud
        .connector
        .block_storage(&cloud.creds("v3-project-id"))
        .unwrap();
    let err = v3.create_volume(&req).await.unwrap_err();
    assert!(matches!(err, CloudError::Unsupported { .. }), "{err:?}");

    let nhn = cloud.connector.block_storage(&cloud.creds("nhn")).unwrap();
    let vol = nhn.create_volume(&req).await.unwrap();
    let vol = wait_status(&nhn, &vol.id, VolumeStatus::Available).await;
    assert!(vol.encrypted || vol.nhn_encryption.is_some(), "{vol:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attached_volume_is_refused_deletion_with_the_clouds_message() {
    let cloud = start().await;
    let bs = cloud.connector.block_storage(&cloud.creds("nhn")).unwrap();
    let vol = bs
        .create_volume(&CreateVolume {
            size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    wait_status(&bs, &vol.id, VolumeStatus::Available).await;
    cloud
        .admin_post(
            &format!("/_admin/volumes/{}/attach", vol.id),
            json!({"server_id": "3f2a0000-0000-0000-0000-000000000001"}),
        )
        .await;
    let attached = wait_status(&bs, &vol.id, VolumeStatus::InUse).await;
    assert_eq!(
        attached.attached_servers(),
        vec!["3f2a0000-0000-0000-0000-000000000001"]
    );
    let err = bs.delete_volume(&vol.id).await.unwrap_err();
    assert!(matches!(err, CloudError::BadRequest { .. }), "{err:?}");
    assert!(err.message().contains("Invalid volume"), "{err}");
    assert_eq!(err.reason(), "CloudBadRequest");

    // Uploading an attached volume needs force.
    let err = bs
        .upload_to_image(&vol.id, &UploadToImage::new("no-force"))
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::BadRequest { .. }), "{err:?}");
    let mut forced = UploadToImage::new("forced");
    forced.force = true;
    bs.upload_to_image(&vol.id, &forced).await.unwrap();
    wait_status(&bs, &vol.id, VolumeStatus::InUse).await;

    // Forced states read back, a state the seeds do not list as Unknown.
    for (forced, want) in [
        ("error_extending", VolumeStatus::ErrorExtending),
        ("frozen", VolumeStatus::Unknown("frozen".into())),
    ] {
        cloud
            .admin_post(
                &format!("/_admin/volumes/{}/state", vol.id),
                json!({"status": forced}),
            )
            .await;
        assert_eq!(bs.show_volume(&vol.id).await.unwrap().status, want);
    }
}

use support_cloud::scripted::{self, Reply};

fn scripted_volume(id: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut v =
        json!({"id": id, "size": 1, "status": "creating", "metadata": {}, "attachments": []});
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn retype_is_os_retype_with_the_migration_policy_on_v2_and_v3() {
    use cloudvol::cloud::model::MigrationPolicy;
    let cloud = scripted::serve(|req| {
        scripted::identity(req).unwrap_or_else(|| Reply::json(202, json!(null)))
    })
    .await;
    let connector = support_cloud::connector();
    for (name, version, policy) in [
        ("nhn", "v2", MigrationPolicy::Never),
        ("v3", "v3", MigrationPolicy::OnDemand),
    ] {
        connector
            .block_storage(&scripted::creds(&cloud, name))
            .unwrap()
            .retype_volume("vol-1", "General SSD", policy)
            .await
            .unwrap();
        let sent = cloud.requests().pop().unwrap();
        assert_eq!(sent.method, "POST");
        assert_eq!(
            sent.path,
            format!("/{version}/{}/volumes/vol-1/action", scripted::TENANT)
        );
        assert_eq!(
            sent.body,
            json!({"os-retype": {"new_type": "General SSD", "migration_policy": policy.as_str()}})
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_from_an_image_sends_image_ref_and_shows_its_image() {
    let cloud = scripted::serve(|req| {
        if let Some(reply) = scripted::identity(req) {
            return reply;
        }
        let meta = json!({"volume_image_metadata": {"image_id": "img-1", "image_name": "cirros", "min_disk": "1"}});
        match req.method.as_str() {
            "POST" => Reply::json(202, json!({"volume": scripted_volume("vol-1", meta)})),
            _ => Reply::json(200, json!({"volume": scripted_volume("vol-1", meta)})),
        }
    })
    .await;
    let connector = support_cloud::connector();
    for name in ["nhn", "v3"] {
        let bs = connector
            .block_storage(&scripted::creds(&cloud, name))
            .unwrap();
        let created = bs
            .create_volume(&CreateVolume {
                size: 1,
                image_ref: Some("img-1".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let sent = cloud.requests().pop().unwrap();
        assert_eq!(sent.body["volume"]["imageRef"], "img-1", "{name}");
        assert!(sent.body["volume"].get("image_ref").is_none());
        assert_eq!(created.source_image_id(), Some("img-1"));
        let shown = bs.show_volume("vol-1").await.unwrap();
        let meta = shown.volume_image_metadata.unwrap();
        assert_eq!(meta.image_name.as_deref(), Some("cirros"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_sends_protected_and_v3_sends_the_microversion_it_needs() {
    let cloud = scripted::serve(|req| {
        scripted::identity(req).unwrap_or_else(|| {
            Reply::json(
                202,
                json!({"os-volume_upload_image": {"image_id": "img-9", "status": "uploading"}}),
            )
        })
    })
    .await;
    let connector = support_cloud::connector();
    for (name, microversion) in [("nhn", None), ("v3", Some("volume 3.1"))] {
        let mut upload = UploadToImage::new("from-volume");
        upload.protected = Some(true);
        upload.visibility = Some("private".into());
        connector
            .block_storage(&scripted::creds(&cloud, name))
            .unwrap()
            .upload_to_image("vol-1", &upload)
            .await
            .unwrap();
        let sent = cloud.requests().pop().unwrap();
        let body = &sent.body["os-volume_upload_image"];
        assert_eq!(body["protected"], true, "{name}");
        assert_eq!(body["visibility"], "private", "{name}");
        assert_eq!(sent.header("openstack-api-version"), microversion, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_looping_next_link_is_an_error_not_an_endless_or_short_list() {
    let cloud = scripted::serve(|req| {
        if let Some(reply) = scripted::identity(req) {
            return reply;
        }
        // Every page links to marker a, page one included.
        Reply::json(
            200,
            json!({"volumes": [scripted_volume("a", json!({}))], "volumes_links": [
                {"rel": "next", "href": format!("{}/v2/t/volumes/detail?limit=1&marker=a", req.base)}
            ]}),
        )
    })
    .await;
    let bs = support_cloud::connector()
        .block_storage(&scripted::creds(&cloud, "nhn"))
        .unwrap();
    let err = bs
        .list_volumes_detail(&VolumeQuery::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "CloudProtocolError", "{err:?}");
    assert!(err.message().contains("loop"), "{err}");
    assert_eq!(cloud.count("GET", "/volumes/detail"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_next_link_to_another_host_is_followed_on_our_endpoint() {
    let cloud = scripted::serve(|req| {
        if let Some(reply) = scripted::identity(req) {
            return reply;
        }
        if req.query.contains("marker=a") {
            return Reply::json(200, json!({"volumes": [scripted_volume("b", json!({}))]}));
        }
        // A link to a host that must never see our token.
        Reply::json(
            200,
            json!({"volumes": [scripted_volume("a", json!({}))], "volumes_links": [
                {"rel": "next", "href": "http://203.0.113.9:8776/v2/t/volumes/detail?marker=a"}
            ]}),
        )
    })
    .await;
    let bs = support_cloud::connector()
        .block_storage(&scripted::creds(&cloud, "nhn"))
        .unwrap();
    let ids: Vec<String> = bs
        .list_volumes_detail(&VolumeQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(ids, vec!["a", "b"]);
    let pages: Vec<_> = cloud
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/volumes/detail"))
        .collect();
    assert_eq!(pages.len(), 2);
    assert_eq!(
        pages[1].path,
        format!("/v2/{}/volumes/detail", scripted::TENANT)
    );
    assert_eq!(pages[1].query, "marker=a");
}
