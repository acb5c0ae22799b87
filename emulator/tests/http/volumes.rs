use std::time::Duration;

use cloudvol_emulator::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

const SEED_FIELDS: [&str; 24] = [
    "attachments",
    "links",
    "availability_zone",
    "encrypted",
    "os-volume-replication:extended_status",
    "volume_type",
    "snapshot_id",
    "id",
    "size",
    "user_id",
    "os-vol-tenant-attr:tenant_id",
    "metadata",
    "status",
    "description",
    "multiattach",
    "source_volid",
    "consistencygroup_id",
    "name",
    "bootable",
    "created_at",
    "updated_at",
    "os-volume-replication:driver_data",
    "replication_status",
    "id",
];

fn is_cinder_time(s: &Value) -> bool {
    let s = s.as_str().unwrap_or_default();
    // YYYY-MM-DDThh:mm:ss.SSSSSS
    s.len() == 26
        && s.as_bytes()[10] == b'T'
        && s.as_bytes()[19] == b'.'
        && s[20..].bytes().all(|b| b.is_ascii_digit())
}

#[tokio::test(flavor = "multi_thread")]
async fn create_goes_from_creating_to_available_with_the_seeds_fields() {
    let mut config = Config::demo().with_transitions(Duration::ZERO);
    config.transitions.volume_create = Duration::from_millis(150);
    let env = start_with(config).await;
    let token = env.demo().await;
    let a = env
        .post(
            &token,
            &env.volumes(DEMO),
            json!({"volume": {"size": 10, "name": "data", "description": "d",
                "volume_type": "General SSD", "availability_zone": "kr-pub-b",
                "metadata": {"k": "v"}}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let v = &a.body["volume"];
    assert_eq!(v["status"], "creating");
    for f in SEED_FIELDS {
        assert!(v.get(f).is_some(), "missing {f} in {v}");
    }
    assert!(is_cinder_time(&v["created_at"]), "{}", v["created_at"]);
    assert_eq!(v["bootable"], "false");
    assert_eq!(v["os-vol-tenant-attr:tenant_id"], DEMO);
    assert_eq!(v["volume_type"], "General SSD");
    assert_eq!(v["availability_zone"], "kr-pub-b");
    assert_eq!(v["metadata"], json!({"k": "v"}));
    let id = v["id"].as_str().expect("id");
    assert_eq!(
        v["links"][0]["href"],
        format!("{}/block-storage/v2/{DEMO}/volumes/{id}", env.base)
    );
    assert_eq!(v["links"][0]["rel"], "self");
    assert_eq!(v["links"][1]["rel"], "bookmark");

    let ready = env.wait_volume(&token, DEMO, id, "available").await;
    assert_eq!(ready["size"], 10);
    assert!(is_cinder_time(&ready["updated_at"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_volume_shows_nhn_encryption() {
    let env = start().await;
    let token = env.demo().await;
    let id = env
        .create_volume(
            &token,
            DEMO,
            json!({"size": 1, "nhn_encryption": {"skm_appkey": "app", "skm_key_id": "key-1"}}),
        )
        .await;
    let v = env.wait_volume(&token, DEMO, &id, "available").await;
    assert_eq!(v["encrypted"], true);
    assert_eq!(v["nhn_encryption"]["skm_key_id"], "key-1");
    assert_eq!(v["nhn_encryption"]["skm_key_version"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_refuses_sizes_that_are_not_positive_integers() {
    let env = start().await;
    let token = env.demo().await;
    for size in [
        json!(0),
        json!(-1),
        json!("abc"),
        json!(1.5),
        json!(null),
        json!(true),
    ] {
        let a = env
            .post(
                &token,
                &env.volumes(DEMO),
                json!({"volume": {"size": size}}),
            )
            .await;
        assert_cinder_fault(&a, 400, "badRequest");
    }
    let no_volume = env
        .post(&token, &env.volumes(DEMO), json!({"size": 1}))
        .await;
    assert_cinder_fault(&no_volume, 400, "badRequest");
    // A string of digits is a size, as in Cinder.
    let ok = env
        .post(&token, &env.volumes(DEMO), json!({"volume": {"size": "3"}}))
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED);
    assert_eq!(ok.body["volume"]["size"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_sources_are_404_and_a_source_gives_at_least_its_size() {
    let env = start().await;
    let token = env.demo().await;
    let missing = uuid_string();
    let a = env
        .post(
            &token,
            &env.volumes(DEMO),
            json!({"volume": {"size": 1, "source_volid": missing}}),
        )
        .await;
    assert_cinder_fault(&a, 404, "itemNotFound");
    let b = env
        .post(
            &token,
            &env.volumes(DEMO),
            json!({"volume": {"size": 1, "snapshot_id": missing}}),
        )
        .await;
    assert_cinder_fault(&b, 404, "itemNotFound");

    let src = env.create_volume(&token, DEMO, json!({"size": 20})).await;
    let clone = env
        .create_volume(&token, DEMO, json!({"source_volid": src}))
        .await;
    let c = env.wait_volume(&token, DEMO, &clone, "available").await;
    assert_eq!(c["size"], 20);
    assert_eq!(c["source_volid"], json!(src));
    let smaller = env
        .post(
            &token,
            &env.volumes(DEMO),
            json!({"volume": {"size": 5, "source_volid": src}}),
        )
        .await;
    assert_cinder_fault(&smaller, 400, "badRequest");

    // Another tenant's volume is not a source.
    let partner = env.partner().await;
    let theirs = env
        .post(
            &partner,
            &env.volumes(PARTNER),
            json!({"volume": {"source_volid": src}}),
        )
        .await;
    assert_cinder_fault(&theirs, 404, "itemNotFound");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_can_be_created_from_an_admin_snapshot() {
    let env = start().await;
    let token = env.demo().await;
    let src = env.create_volume(&token, DEMO, json!({"size": 8})).await;
    let snap = env
        .admin(
            Method::POST,
            &format!("/_admin/volumes/{src}/snapshots"),
            Some(json!({"name": "s"})),
        )
        .await;
    assert_eq!(snap.status, StatusCode::CREATED);
    let snap_id = snap.body["snapshot"]["id"].as_str().expect("id");
    let v = env
        .create_volume(&token, DEMO, json!({"snapshot_id": snap_id}))
        .await;
    let v = env.wait_volume(&token, DEMO, &v, "available").await;
    assert_eq!(v["snapshot_id"], json!(snap_id));
    assert_eq!(v["size"], 8);
}

fn uuid_string() -> String {
    "00000000-0000-4000-8000-000000000000".to_string()
}

async fn names(env: &Env, token: &str, path: &str) -> (Vec<String>, Value) {
    let a = env.get(token, path).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let names = a.body["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| v["name"].as_str().unwrap_or_default().to_string())
        .collect();
    (names, a.body)
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_pages_sorts_and_filters() {
    let env = start().await;
    let token = env.demo().await;
    for (i, name) in ["c", "a", "e", "b", "d"].iter().enumerate() {
        env.create_volume(
            &token,
            DEMO,
            json!({"size": i + 1, "name": name, "metadata": {"parity": if i % 2 == 0 {"even"} else {"odd"}}}),
        )
        .await;
    }
    // Another tenant's volume never shows.
    let partner = env.partner().await;
    env.create_volume(&partner, PARTNER, json!({"size": 1, "name": "x"}))
        .await;

    let vols = env.volumes(DEMO);
    // Default order: newest first.
    let (all, body) = names(&env, &token, &format!("{vols}/detail")).await;
    assert_eq!(all, ["d", "b", "e", "a", "c"]);
    assert!(body.get("volumes_links").is_none());

    // The summary list has id, links and name only.
    let summary = env.get(&token, &vols).await;
    let first = &summary.body["volumes"][0];
    let mut keys: Vec<&str> = first
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["id", "links", "name"]);

    let (sorted, _) = names(&env, &token, &format!("{vols}/detail?sort=name:asc")).await;
    assert_eq!(sorted, ["a", "b", "c", "d", "e"]);
    let (by_size, _) = names(&env, &token, &format!("{vols}?sort=size:desc")).await;
    assert_eq!(by_size, ["d", "b", "e", "a", "c"]);
    let (old_first, _) = names(&env, &token, &format!("{vols}?sort=created_at:asc")).await;
    assert_eq!(old_first, ["c", "a", "e", "b", "d"]);

    // Pages of two, following volumes_links with the base URL the client used.
    let mut url = format!("{}{vols}/detail?sort=name:asc&limit=2", env.base);
    let mut pages = Vec::new();
    loop {
        let (page, body) = names(&env, &token, &url).await;
        pages.push(page);
        match body["volumes_links"][0]["href"].as_str() {
            Some(next) => {
                assert_eq!(body["volumes_links"][0]["rel"], "next");
                assert!(
                    next.starts_with(&format!("{}{vols}/detail?", env.base)),
                    "{next}"
                );
                url = next.to_string();
            }
            None => break,
        }
        assert!(pages.len() < 10);
    }
    assert_eq!(pages, [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);

    let (offset, _) = names(&env, &token, &format!("{vols}?sort=name:asc&offset=3")).await;
    assert_eq!(offset, ["d", "e"]);

    let (named, _) = names(&env, &token, &format!("{vols}?name=c")).await;
    assert_eq!(named, ["c"]);
    let (even, _) = names(
        &env,
        &token,
        &format!("{vols}?sort=name:asc&metadata=%7B%22parity%22%3A%22even%22%7D"),
    )
    .await;
    assert_eq!(even, ["c", "d", "e"]);
    let (available, _) = names(&env, &token, &format!("{vols}?status=available")).await;
    assert_eq!(available.len(), 5);
    let (creating, _) = names(&env, &token, &format!("{vols}?status=creating")).await;
    assert!(creating.is_empty());

    for bad in [
        "limit=x",
        "limit=-1",
        "offset=x",
        "sort=name:sideways",
        "sort=colour",
    ] {
        let a = env.get(&token, &format!("{vols}?{bad}")).await;
        assert_cinder_fault(&a, 400, "badRequest");
    }
    let unknown_marker = env
        .get(&token, &format!("{vols}?marker={}", uuid_string()))
        .await;
    assert_cinder_fault(&unknown_marker, 404, "itemNotFound");
}

/// Follows every `next` link from `url`; returns the ids in the order seen.
async fn walk_ids(env: &Env, token: &str, url: &str, key: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut next = Some(url.to_string());
    while let Some(url) = next.take() {
        let a = env.get(token, &url).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        for v in a.body[key].as_array().expect("a list") {
            ids.push(v["id"].as_str().expect("id").to_string());
        }
        next = match key {
            "volumes" => a.body["volumes_links"][0]["href"]
                .as_str()
                .map(str::to_string),
            _ => a.body["next"].as_str().map(|n| format!("/image{n}")),
        };
        assert!(ids.len() <= 10_000, "a walk that does not end");
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn paging_through_many_volumes_with_ties_sees_each_once_in_sort_order() {
    let env = start().await;
    let token = env.demo().await;
    // 250 volumes, 5 sizes and 10 names: every sort key ties, so the tie
    // breakers (created_at, then id) decide.
    let mut created = Vec::new();
    for i in 0..250u64 {
        let id = env
            .create_volume(
                &token,
                DEMO,
                json!({"size": 1 + i % 5, "name": format!("n{}", i % 10)}),
            )
            .await;
        created.push((1 + i % 5, format!("n{}", i % 10), id));
    }
    let vols = env.volumes(DEMO);
    // Default: newest first.
    let newest_first: Vec<String> = created.iter().rev().map(|(_, _, id)| id.clone()).collect();
    let ids = walk_ids(&env, &token, &format!("{vols}/detail?limit=40"), "volumes").await;
    assert_eq!(ids, newest_first);
    // size asc, then (the first key's direction) created_at asc.
    let mut by_size = created.clone();
    by_size.sort_by_key(|(size, _, _)| *size);
    let expected: Vec<String> = by_size.iter().map(|(_, _, id)| id.clone()).collect();
    let ids = walk_ids(
        &env,
        &token,
        &format!("{vols}?sort=size:asc&limit=33"),
        "volumes",
    )
    .await;
    assert_eq!(ids, expected);
    // name desc, size asc, then created_at desc (the first key's direction).
    let mut by_name = created.iter().enumerate().collect::<Vec<_>>();
    by_name.sort_by(|(ia, a), (ib, b)| b.1.cmp(&a.1).then(a.0.cmp(&b.0)).then(ib.cmp(ia)));
    let expected: Vec<String> = by_name.iter().map(|(_, (_, _, id))| id.clone()).collect();
    let ids = walk_ids(
        &env,
        &token,
        &format!("{vols}/detail?sort=name:desc,size:asc&limit=7"),
        "volumes",
    )
    .await;
    assert_eq!(ids, expected);
    // A filter keeps its place in every page, and a marker it filters out is unknown.
    let ids = walk_ids(&env, &token, &format!("{vols}?name=n3&limit=4"), "volumes").await;
    let n3: Vec<String> = created
        .iter()
        .rev()
        .filter(|(_, name, _)| name == "n3")
        .map(|(_, _, id)| id.clone())
        .collect();
    assert_eq!(ids, n3);
    let filtered_out = &created[0].2;
    let a = env
        .get(&token, &format!("{vols}?name=n3&marker={filtered_out}"))
        .await;
    assert_cinder_fault(&a, 404, "itemNotFound");
}

#[tokio::test(flavor = "multi_thread")]
async fn update_and_metadata() {
    let env = start().await;
    let token = env.demo().await;
    let id = env
        .create_volume(
            &token,
            DEMO,
            json!({"size": 1, "name": "old", "metadata": {"a": "1"}}),
        )
        .await;
    let path = format!("{}/{id}", env.volumes(DEMO));
    let a = env
        .put(
            &token,
            &path,
            json!({"volume": {"name": "new", "description": "desc", "metadata": {"b": "2"}}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["volume"]["name"], "new");
    assert_eq!(a.body["volume"]["description"], "desc");
    assert_eq!(a.body["volume"]["metadata"], json!({"b": "2"}));

    let merged = env
        .post(
            &token,
            &format!("{path}/metadata"),
            json!({"metadata": {"c": "3"}}),
        )
        .await;
    assert_eq!(merged.body["metadata"], json!({"b": "2", "c": "3"}));
    let replaced = env
        .put(
            &token,
            &format!("{path}/metadata"),
            json!({"metadata": {"d": "4"}}),
        )
        .await;
    assert_eq!(replaced.body["metadata"], json!({"d": "4"}));
    let item = env.get(&token, &format!("{path}/metadata/d")).await;
    assert_eq!(item.body["meta"], json!({"d": "4"}));
    let set = env
        .put(
            &token,
            &format!("{path}/metadata/e"),
            json!({"meta": {"e": "5"}}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let mismatch = env
        .put(
            &token,
            &format!("{path}/metadata/e"),
            json!({"meta": {"f": "6"}}),
        )
        .await;
    assert_cinder_fault(&mismatch, 400, "badRequest");
    let shown = env.volume(&token, DEMO, &id).await;
    assert_eq!(
        shown.body["volume"]["metadata"],
        json!({"d": "4", "e": "5"})
    );
    let gone = env.delete(&token, &format!("{path}/metadata/d")).await;
    assert_eq!(gone.status, StatusCode::OK);
    let missing = env.get(&token, &format!("{path}/metadata/d")).await;
    assert_cinder_fault(&missing, 404, "itemNotFound");
    let bad = env
        .post(
            &token,
            &format!("{path}/metadata"),
            json!({"metadata": {"n": 1}}),
        )
        .await;
    assert_cinder_fault(&bad, 400, "badRequest");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_goes_through_deleting_then_404() {
    let mut config = Config::demo().with_transitions(Duration::ZERO);
    config.transitions.volume_delete = Duration::from_secs(1);
    let env = start_with(config).await;
    let token = env.demo().await;
    let id = env.create_volume(&token, DEMO, json!({"size": 1})).await;
    env.wait_volume(&token, DEMO, &id, "available").await;
    let path = format!("{}/{id}", env.volumes(DEMO));
    let a = env.delete(&token, &path).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(a.bytes.is_empty());
    let during = env.volume(&token, DEMO, &id).await;
    assert_eq!(during.body["volume"]["status"], "deleting");
    eventually("the volume to be gone", || async {
        let a = env.volume(&token, DEMO, &id).await;
        (a.status == StatusCode::NOT_FOUND).then_some(a)
    })
    .await;
    let gone = env.volume(&token, DEMO, &id).await;
    assert_cinder_fault(&gone, 404, "itemNotFound");
    let again = env.delete(&token, &path).await;
    assert_cinder_fault(&again, 404, "itemNotFound");
}

const DELETE_REFUSED: &str = "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots or be disassociated from snapshots after volume transfer.";

#[tokio::test(flavor = "multi_thread")]
async fn delete_is_refused_while_attached_with_snapshots_or_busy() {
    let env = start().await;
    let token = env.demo().await;
    let id = env.create_volume(&token, DEMO, json!({"size": 1})).await;
    env.wait_volume(&token, DEMO, &id, "available").await;
    let path = format!("{}/{id}", env.volumes(DEMO));

    // Attached.
    env.admin(
        Method::POST,
        &format!("/_admin/volumes/{id}/attach"),
        Some(json!({"server_id": "srv-1"})),
    )
    .await;
    env.wait_volume(&token, DEMO, &id, "in-use").await;
    let a = env.delete(&token, &path).await;
    assert_eq!(assert_cinder_fault(&a, 400, "badRequest"), DELETE_REFUSED);
    env.admin(
        Method::POST,
        &format!("/_admin/volumes/{id}/detach"),
        Some(json!({})),
    )
    .await;
    env.wait_volume(&token, DEMO, &id, "available").await;

    // With a snapshot.
    env.admin(
        Method::POST,
        &format!("/_admin/volumes/{id}/snapshots"),
        None,
    )
    .await;
    let b = env.delete(&token, &path).await;
    assert_eq!(assert_cinder_fault(&b, 400, "badRequest"), DELETE_REFUSED);
    env.admin(
        Method::DELETE,
        &format!("/_admin/volumes/{id}/snapshots"),
        None,
    )
    .await;

    // In a status that is not deletable.
    for status in [
        "creating",
        "extending",
        "uploading",
        "error_deleting",
        "in-use",
    ] {
        env.admin(
            Method::POST,
            &format!("/_admin/volumes/{id}/state"),
            Some(json!({"status": status})),
        )
        .await;
        let c = env.delete(&token, &path).await;
        assert_eq!(
            assert_cinder_fault(&c, 400, "badRequest"),
            DELETE_REFUSED,
            "{status}"
        );
    }
    // Deletable from every error state Cinder allows.
    for status in [
        "error",
        "error_restoring",
        "error_extending",
        "error_managing",
    ] {
        let other = env.create_volume(&token, DEMO, json!({"size": 1})).await;
        env.admin(
            Method::POST,
            &format!("/_admin/volumes/{other}/state"),
            Some(json!({"status": status})),
        )
        .await;
        let d = env
            .delete(&token, &format!("{}/{other}", env.volumes(DEMO)))
            .await;
        assert_eq!(d.status, StatusCode::ACCEPTED, "{status}: {}", d.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn extend_only_from_available_and_only_larger() {
    let mut config = Config::demo().with_transitions(Duration::ZERO);
    config.transitions.volume_extend = Duration::from_secs(1);
    let env = start_with(config).await;
    let token = env.demo().await;
    let id = env.create_volume(&token, DEMO, json!({"size": 10})).await;
    env.wait_volume(&token, DEMO, &id, "available").await;

    for bad in [json!(10), json!(5), json!(0), json!("x")] {
        let a = env
            .action(&token, DEMO, &id, json!({"os-extend": {"new_size": bad}}))
            .await;
        assert_cinder_fault(&a, 400, "badRequest");
    }
    let ok = env
        .action(&token, DEMO, &id, json!({"os-extend": {"new_size": 20}}))
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
    let during = env.volume(&token, DEMO, &id).await;
    assert_eq!(during.body["volume"]["status"], "extending");
    assert_eq!(during.body["volume"]["size"], 10);
    let busy = env
        .action(&token, DEMO, &id, json!({"os-extend": {"new_size": 30}}))
        .await;
    let msg = assert_cinder_fault(&busy, 400, "badRequest");
    assert!(msg.contains("must be available to extend"), "{msg}");
    let done = env.wait_volume(&token, DEMO, &id, "available").await;
    assert_eq!(done["size"], 20);

    let missing = env
        .action(
            &token,
            DEMO,
            &uuid_string(),
            json!({"os-extend": {"new_size": 2}}),
        )
        .await;
    assert_cinder_fault(&missing, 404, "itemNotFound");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_malformed_actions_are_400() {
    let env = start().await;
    let token = env.demo().await;
    let id = env.create_volume(&token, DEMO, json!({"size": 1})).await;
    let a = env
        .action(&token, DEMO, &id, json!({"os-teleport": {}}))
        .await;
    assert_cinder_fault(&a, 400, "badRequest");
    let b = env
        .call(
            Method::POST,
            &format!("{}/{id}/action", env.volumes(DEMO)),
            Some(&token),
            None,
            &[],
        )
        .await;
    assert_cinder_fault(&b, 400, "badRequest");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_v3_path_serves_the_same_volumes() {
    let env = start().await;
    let token = env.demo().await;
    let id = env
        .create_volume(&token, DEMO, json!({"size": 1, "name": "v"}))
        .await;
    let a = env
        .get(&token, &format!("/block-storage/v3/{DEMO}/volumes/{id}"))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["volume"]["name"], "v");
    assert_eq!(
        a.body["volume"]["links"][0]["href"],
        format!("{}/block-storage/v3/{DEMO}/volumes/{id}", env.base)
    );
    assert_eq!(a.headers["openstack-api-version"], "volume 3.0");
    let too_new = env
        .call(
            Method::GET,
            &format!("/block-storage/v3/{DEMO}/volumes"),
            Some(&token),
            None,
            &[("OpenStack-API-Version", "volume 3.999")],
        )
        .await;
    assert_cinder_fault(&too_new, 406, "computeFault"); // Cinder has no fault name for 406
}
