//! Images and image sharing against the emulator (Glance v2).

mod support_cloud;

use cloudvol::cloud::CloudError;
use cloudvol::cloud::model::{ImageQuery, MemberStatus, PatchOp, Visibility};
use support_cloud::{DEMO_TENANT, PARTNER_TENANT, start};

#[tokio::test(flavor = "multi_thread")]
async fn image_properties_tags_and_deletion() {
    let cloud = start().await;
    let id = cloud.admin_image(DEMO_TENANT, "base-image").await;
    let image = cloud.connector.image(&cloud.creds("nhn")).unwrap();

    let shown = image.show_image(&id).await.unwrap();
    assert_eq!(shown.owner.as_deref(), Some(DEMO_TENANT));
    assert_eq!(shown.visibility, Visibility::Private);

    let listed = image
        .list_images(&ImageQuery {
            name: Some("base-image".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);

    let patched = image
        .update_image(
            &id,
            &[
                PatchOp::add("cloudvol_owner", "ns/name"),
                PatchOp::replace("name", "renamed-image"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(patched.name.as_deref(), Some("renamed-image"));
    assert_eq!(patched.properties["cloudvol_owner"], "ns/name");
    let patched = image
        .update_image(&id, &[PatchOp::remove("cloudvol_owner")])
        .await
        .unwrap();
    assert!(!patched.properties.contains_key("cloudvol_owner"));

    image.add_tag(&id, "cloudvol.dev/uid=u-1").await.unwrap();
    let tagged = image
        .list_images(&ImageQuery {
            tags: vec!["cloudvol.dev/uid=u-1".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        tagged.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        vec![id.as_str()]
    );
    image.remove_tag(&id, "cloudvol.dev/uid=u-1").await.unwrap();
    assert!(
        !image
            .show_image(&id)
            .await
            .unwrap()
            .has_tag("cloudvol.dev/uid=u-1")
    );

    // Protected images refuse deletion until unprotected.
    image
        .update_image(&id, &[PatchOp::replace("protected", true)])
        .await
        .unwrap();
    let err = image.delete_image(&id).await.unwrap_err();
    assert!(matches!(err, CloudError::Forbidden { .. }), "{err:?}");
    assert_eq!(err.reason(), "CloudForbidden");
    image
        .update_image(&id, &[PatchOp::replace("protected", false)])
        .await
        .unwrap();
    image.delete_image(&id).await.unwrap();
    let err = image.show_image(&id).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sharing_an_image_with_another_tenant() {
    let cloud = start().await;
    let id = cloud.admin_image(DEMO_TENANT, "to-share").await;
    let owner = cloud.connector.image(&cloud.creds("nhn")).unwrap();
    let partner = cloud.connector.image(&cloud.creds("v3-partner")).unwrap();

    // Members only on shared images.
    let err = owner.add_member(&id, PARTNER_TENANT).await.unwrap_err();
    assert!(matches!(err, CloudError::Forbidden { .. }), "{err:?}");

    owner
        .update_image(&id, &[PatchOp::replace("visibility", "shared")])
        .await
        .unwrap();
    let member = owner.add_member(&id, PARTNER_TENANT).await.unwrap();
    assert_eq!(member.status, MemberStatus::Pending);
    assert_eq!(member.image_id, id);
    let err = owner.add_member(&id, PARTNER_TENANT).await.unwrap_err();
    assert!(matches!(err, CloudError::Conflict { .. }), "{err:?}");

    // Only the member answers.
    let err = owner
        .update_member_status(&id, PARTNER_TENANT, MemberStatus::Accepted)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CloudError::Forbidden { .. } | CloudError::NotFound { .. }
        ),
        "{err:?}"
    );
    let accepted = partner
        .update_member_status(&id, PARTNER_TENANT, MemberStatus::Accepted)
        .await
        .unwrap();
    assert_eq!(accepted.status, MemberStatus::Accepted);

    let members = owner.list_members(&id).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].member_id, PARTNER_TENANT);
    assert_eq!(
        owner.show_member(&id, PARTNER_TENANT).await.unwrap().status,
        MemberStatus::Accepted
    );

    let shared_with_partner = partner
        .list_images(&ImageQuery {
            visibility: Some(Visibility::Shared),
            member_status: Some(MemberStatus::Accepted),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(shared_with_partner.iter().any(|i| i.id == id));
    assert_eq!(
        partner.show_image(&id).await.unwrap().owner.as_deref(),
        Some(DEMO_TENANT)
    );

    owner.delete_member(&id, PARTNER_TENANT).await.unwrap();
    assert!(owner.list_members(&id).await.unwrap().is_empty());
    let err = partner.show_image(&id).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn image_lists_follow_next_links() {
    let cloud = start().await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(cloud.admin_image(DEMO_TENANT, &format!("many-{i}")).await);
    }
    let image = cloud
        .connector
        .image(&cloud.creds("v3-project-name"))
        .unwrap();
    // Glance's default page (25) and a small explicit one.
    for limit in [None, Some(7)] {
        let before = cloud.count("GET /image/v2/images").await;
        let mut listed: Vec<String> = image
            .list_images(&ImageQuery {
                owner: Some(DEMO_TENANT.into()),
                limit,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        listed.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(listed, want, "limit {limit:?}");
        let pages = cloud.count("GET /image/v2/images").await - before;
        assert!(pages >= 2, "limit {limit:?}: {pages} pages");
    }
}
