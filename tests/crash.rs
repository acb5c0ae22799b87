//! The crash-point × fault matrix (docs/crash-safety.md): every cloud write cloudvol makes, under
//! every way such a write goes wrong, against the real API server and the emulator.
//!
//! A case is one write (a row of [`ROWS`]) under one fault (a row of [`FAULTS`]); the table at
//! the bottom ([`matrix!`]) lists the cases, one test each, named `<write>::<fault>`
//! (`cargo test --test crash volume_create::crash`). Adding a write is a row in [`ROWS`], its
//! arms in [`Write`], and a line in the table.
//!
//! Every case runs the same script:
//!
//! 1. its own namespace, emulator and in-process operator; decoys: a volume and an image of the
//!    same names as the test's, in the same tenant, that cloudvol neither made nor imported;
//! 2. the state just before the write (for an extend, a Ready Volume);
//! 3. one fault rule on exactly that request, then what makes cloudvol write (the spec change,
//!    the create, the delete);
//! 4. for the crash fault: the cloud acts and holds its answer; once the emulator has counted
//!    the call and its store shows the write done, the operator is aborted (between the call and
//!    its status write) and a new one is started;
//! 5. the object ends `Ready` (or gone, for a deletion), and the emulator's own records prove
//!    the rest: the rule was used up (the fault fired), the request count (the call happened;
//!    a POST, which cannot be repeated safely, exactly once per time the cloud acted), exactly
//!    one resource per object and none cloudvol did not ask for;
//! 6. everything is deleted: nothing is left in the cloud but the decoys, exactly as they were.

mod support;

use std::time::Duration;

use cloudvol::api::{ImageShare, Volume, VolumeImage};
use kube::ResourceExt;
use serde_json::{Value, json};

use support::harness::{DEADLINE, DEMO_TENANT, Harness, PARTNER_TENANT, SECRET, volume_manifest};
use support::wait_for;

/// A tenant that exists only as a member ID (Glance does not check member IDs).
const OTHER_TENANT: &str = "0a1b2c3d4e5f40718293a4b5c6d7e8f9";

/// How long the emulator holds the answer of the crash fault: the operator is stopped well
/// within it.
const HOLD: Duration = Duration::from_secs(20);

// --- the faults -----------------------------------------------------------------------------

/// One way a write goes wrong, as a rule of the emulator's admin API (`POST /_admin/faults`).
struct Fault {
    name: &'static str,
    /// The answer's status.
    status: Option<u16>,
    /// The connection is closed without an answer.
    drop_connection: bool,
    /// The cloud does the work first (the fault is applied to its answer).
    after_action: bool,
    /// The operator is stopped while the answer is held, and a new one started.
    crash: bool,
}

const FAULTS: &[Fault] = &[
    // Before the call: the cloud does nothing.
    Fault {
        name: "before_500",
        status: Some(500),
        drop_connection: false,
        after_action: false,
        crash: false,
    },
    Fault {
        name: "before_503",
        status: Some(503),
        drop_connection: false,
        after_action: false,
        crash: false,
    },
    Fault {
        name: "before_drop",
        status: None,
        drop_connection: true,
        after_action: false,
        crash: false,
    },
    // The answer lost after the cloud acted.
    Fault {
        name: "lost_answer",
        status: None,
        drop_connection: true,
        after_action: true,
        crash: false,
    },
    // An error answer after the cloud acted.
    Fault {
        name: "after_500",
        status: Some(500),
        drop_connection: false,
        after_action: true,
        crash: false,
    },
    Fault {
        name: "after_503",
        status: Some(503),
        drop_connection: false,
        after_action: true,
        crash: false,
    },
    // The operator stopped between the call and its status write.
    Fault {
        name: "crash",
        status: None,
        drop_connection: false,
        after_action: true,
        crash: true,
    },
];

impl Fault {
    fn named(name: &str) -> &'static Fault {
        FAULTS
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no fault {name} in FAULTS"))
    }

    /// The admin API rule for the request `method` to paths matching `path`.
    fn rule(&self, method: &str, path: &str) -> Value {
        let mut rule = json!({
            "method": method, "path": path, "count": 1,
            "after_action": self.after_action, "drop_connection": self.drop_connection,
        });
        if let Some(status) = self.status {
            rule["status"] = json!(status);
        }
        if self.crash {
            // Delay only: the real answer comes after HOLD, by which time the operator that
            // asked is gone.
            rule["delay_ms"] = json!(HOLD.as_millis() as u64);
        }
        rule
    }
}

// --- the writes -----------------------------------------------------------------------------

/// Which objects a write belongs to; each family starts from the same world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// A Volume `data`.
    Volume,
    /// A Ready Volume `data`, and a VolumeImage `golden` made from it.
    Image,
    /// An image `golden` put straight into the cloud (private), and an ImageShare `share` of it
    /// by `imageID`.
    Share,
}

/// The writes cloudvol makes. Each one's data is its row in [`ROWS`]; how a case reaches it and
/// what the cloud looks like once it is done are the arms of the methods below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Write {
    VolumeCreate,
    /// The create again, after the volume cloudvol made was deleted outside it.
    VolumeRecreate,
    VolumeExtend,
    VolumeUpdate,
    VolumeDelete,
    Upload,
    /// The upload again, after the image cloudvol made was deleted outside it.
    ImageRecreate,
    ImagePatch,
    /// A change to a protected image: first the unprotect, then the change with the protection.
    ProtectedPatch,
    ImageDelete,
    /// The deletion of a protected image the spec unprotects: first the unprotect.
    ProtectedDelete,
    VisibilitySet,
    MemberAdd,
    MemberAccept,
    /// A member dropped from `spec.members`, removed while the object lives.
    MemberUnlist,
    /// The member removed by the deletion of the ImageShare.
    MemberRemove,
    VisibilityRestore,
}

/// One row of the matrix.
struct Row {
    name: &'static str,
    write: Write,
    family: Family,
    /// The request, as the emulator's fault rules and request counts name it.
    method: &'static str,
    route: &'static str,
    /// A POST: the transport never resends it, and a second one would do the work twice. So
    /// the cloud must get it exactly once per time the cloud acted on it.
    once: bool,
    /// The write is part of the object's deletion: the case ends with the object gone.
    deletes: bool,
}

const VOLUMES: &str = "/block-storage/v2/{tenant}/volumes";
const VOLUME: &str = "/block-storage/v2/{tenant}/volumes/{volume_id}";
const ACTION: &str = "/block-storage/v2/{tenant}/volumes/{volume_id}/action";
const IMAGE: &str = "/image/v2/images/{image_id}";
const MEMBERS: &str = "/image/v2/images/{image_id}/members";
const MEMBER: &str = "/image/v2/images/{image_id}/members/{member_id}";

const ROWS: &[Row] = &[
    Row {
        name: "volume_create",
        write: Write::VolumeCreate,
        family: Family::Volume,
        method: "POST",
        route: VOLUMES,
        once: true,
        deletes: false,
    },
    Row {
        name: "volume_recreate",
        write: Write::VolumeRecreate,
        family: Family::Volume,
        method: "POST",
        route: VOLUMES,
        once: true,
        deletes: false,
    },
    Row {
        name: "volume_extend",
        write: Write::VolumeExtend,
        family: Family::Volume,
        method: "POST",
        route: ACTION,
        once: true,
        deletes: false,
    },
    Row {
        name: "volume_update",
        write: Write::VolumeUpdate,
        family: Family::Volume,
        method: "PUT",
        route: VOLUME,
        once: false,
        deletes: false,
    },
    Row {
        name: "volume_delete",
        write: Write::VolumeDelete,
        family: Family::Volume,
        method: "DELETE",
        route: VOLUME,
        once: false,
        deletes: true,
    },
    Row {
        name: "upload",
        write: Write::Upload,
        family: Family::Image,
        method: "POST",
        route: ACTION,
        once: true,
        deletes: false,
    },
    Row {
        name: "image_recreate",
        write: Write::ImageRecreate,
        family: Family::Image,
        method: "POST",
        route: ACTION,
        once: true,
        deletes: false,
    },
    Row {
        name: "image_patch",
        write: Write::ImagePatch,
        family: Family::Image,
        method: "PATCH",
        route: IMAGE,
        once: false,
        deletes: false,
    },
    Row {
        name: "protected_patch",
        write: Write::ProtectedPatch,
        family: Family::Image,
        method: "PATCH",
        route: IMAGE,
        once: false,
        deletes: false,
    },
    Row {
        name: "image_delete",
        write: Write::ImageDelete,
        family: Family::Image,
        method: "DELETE",
        route: IMAGE,
        once: false,
        deletes: true,
    },
    Row {
        name: "protected_delete",
        write: Write::ProtectedDelete,
        family: Family::Image,
        method: "PATCH",
        route: IMAGE,
        once: false,
        deletes: true,
    },
    Row {
        name: "visibility_set",
        write: Write::VisibilitySet,
        family: Family::Share,
        method: "PATCH",
        route: IMAGE,
        once: false,
        deletes: false,
    },
    Row {
        name: "member_add",
        write: Write::MemberAdd,
        family: Family::Share,
        method: "POST",
        route: MEMBERS,
        once: true,
        deletes: false,
    },
    Row {
        name: "member_accept",
        write: Write::MemberAccept,
        family: Family::Share,
        method: "PUT",
        route: MEMBER,
        once: false,
        deletes: false,
    },
    Row {
        name: "member_unlist",
        write: Write::MemberUnlist,
        family: Family::Share,
        method: "DELETE",
        route: MEMBER,
        once: false,
        deletes: false,
    },
    Row {
        name: "member_remove",
        write: Write::MemberRemove,
        family: Family::Share,
        method: "DELETE",
        route: MEMBER,
        once: false,
        deletes: true,
    },
    Row {
        name: "visibility_restore",
        write: Write::VisibilityRestore,
        family: Family::Share,
        method: "PATCH",
        route: IMAGE,
        once: false,
        deletes: true,
    },
];

impl Row {
    fn named(name: &str) -> &'static Row {
        ROWS.iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no write {name} in ROWS"))
    }
}

// --- one case's world -----------------------------------------------------------------------

/// What a case made before the write, and the decoys as they were first seen.
struct World {
    h: Harness,
    /// Cloud resources cloudvol did not make, as the emulator showed them: (what, id, view).
    decoys: Vec<(&'static str, String, Value)>,
    /// The image the ImageShare shares (share rows): not cloudvol's, so it stays.
    target: Option<String>,
}

const MEMBER_CREDENTIALS: &str = "partner";

fn image_manifest() -> Value {
    image_manifest_with(json!({}))
}

/// The VolumeImage `golden`, with these fields added to its `spec.resource`.
fn image_manifest_with(resource: Value) -> Value {
    let mut manifest = json!({
        "apiVersion": "cloudvol.dev/v1alpha1",
        "kind": "VolumeImage",
        "metadata": {"name": "golden"},
        "spec": {
            "cloudCredentialsRef": {"secretName": SECRET, "cloudName": "demo"},
            "resource": {"name": "golden", "volumeRef": {"name": "data"}},
        },
    });
    if let (Some(target), Some(extra)) = (
        manifest["spec"]["resource"].as_object_mut(),
        resource.as_object(),
    ) {
        target.extend(extra.clone());
    }
    manifest
}

fn share_manifest(image_id: &str, members: Value) -> Value {
    json!({
        "apiVersion": "cloudvol.dev/v1alpha1",
        "kind": "ImageShare",
        "metadata": {"name": "share"},
        "spec": {
            "cloudCredentialsRef": {"secretName": SECRET, "cloudName": "demo"},
            "imageID": image_id,
            "members": members,
        },
    })
}

/// The partner tenant, accepted by cloudvol with its own credentials.
fn partner() -> Value {
    json!({"tenantID": PARTNER_TENANT,
           "memberCredentialsRef": {"secretName": SECRET, "cloudName": MEMBER_CREDENTIALS}})
}

/// A tenant that only gets the share (no credentials: it stays pending).
fn other() -> Value {
    json!({"tenantID": OTHER_TENANT})
}

/// Makes the operator look at an object now, after a change behind its back, rather than at its
/// next resync.
async fn look_now<K>(h: &Harness, name: &str)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let stamp = format!("{:?}", std::time::SystemTime::now());
    h.patch::<K>(
        name,
        json!({"metadata": {"annotations": {"example.com/look": stamp}}}),
    )
    .await;
}

fn id_in_status<K: serde::Serialize>(object: &K) -> Option<String> {
    serde_json::to_value(object).ok()?["status"]["id"]
        .as_str()
        .map(str::to_string)
}

/// Members as (tenant, status), sorted.
fn members_of(image: &Value) -> Vec<(String, String)> {
    let mut members = support::harness::members_from_json(&image["members"]);
    members.sort();
    members
}

fn tags_of(image: &Value) -> Vec<String> {
    image["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl World {
    /// A namespace, an emulator and the operator; the decoys; the family's starting point.
    async fn new(row: &Row) -> World {
        let h = Harness::new(&format!("crash-{}", row.name.replace('_', "-"))).await;
        let mut world = World {
            h,
            decoys: Vec::new(),
            target: None,
        };
        // Same names as the test's own resources, same tenant, not made by cloudvol.
        let volume = world.h.create_cloud_volume("data", 1).await;
        let image = world
            .h
            .admin_post(
                "images",
                json!({"owner": DEMO_TENANT, "name": "golden", "visibility": "private"}),
            )
            .await;
        let image = image["id"].as_str().expect("an image id").to_string();
        if row.family == Family::Share {
            // A shared one with a member, and the image to share: private, not cloudvol's.
            let shared = world
                .h
                .admin_post(
                    "images",
                    json!({"owner": DEMO_TENANT, "name": "golden", "visibility": "shared"}),
                )
                .await;
            let shared = shared["id"].as_str().expect("an image id").to_string();
            world.h.add_cloud_member(&shared, PARTNER_TENANT).await;
            world.snapshot("image", &shared).await;
            let target = world
                .h
                .admin_post(
                    "images",
                    json!({"owner": DEMO_TENANT, "name": "golden", "visibility": "private"}),
                )
                .await;
            world.target = Some(target["id"].as_str().expect("an image id").to_string());
        }
        world.snapshot("volume", &volume).await;
        world.snapshot("image", &image).await;
        if row.family == Family::Image {
            world.ready_volume().await;
        }
        world
    }

    async fn snapshot(&mut self, what: &'static str, id: &str) {
        let view = self
            .view(what, id)
            .await
            .unwrap_or_else(|| panic!("decoy {what} {id} exists"));
        self.decoys.push((what, id.to_string(), view));
    }

    /// The emulator's view of a volume or image (`None`: it does not exist).
    async fn view(&self, what: &str, id: &str) -> Option<Value> {
        match what {
            "volume" => self.h.cloud_volume(id).await,
            _ => self.image(id).await,
        }
    }

    async fn image(&self, id: &str) -> Option<Value> {
        self.h
            .cloud_images()
            .await
            .into_iter()
            .find(|i| i["id"] == id)
    }

    fn is_decoy(&self, id: &Value) -> bool {
        self.decoys
            .iter()
            .any(|(_, d, _)| id.as_str() == Some(d.as_str()))
    }

    /// Volumes in the cloud that are not decoys.
    async fn volumes(&self) -> Vec<Value> {
        let volumes = self.h.cloud_volumes().await;
        volumes
            .into_iter()
            .filter(|v| !self.is_decoy(&v["id"]))
            .collect()
    }

    /// Images in the cloud that are neither decoys nor the image to share.
    async fn images(&self) -> Vec<Value> {
        let images = self.h.cloud_images().await;
        images
            .into_iter()
            .filter(|i| !self.is_decoy(&i["id"]))
            .filter(|i| self.target.as_deref().is_none_or(|t| i["id"] != t))
            .collect()
    }

    async fn target_image(&self) -> Value {
        let id = self.target.as_deref().expect("a share row has an image");
        self.image(id).await.expect("the image to share exists")
    }

    async fn ready_volume(&self) -> Volume {
        self.h
            .create::<Volume>(volume_manifest(
                "data",
                "demo",
                json!({"resource": {"size": 1}}),
            ))
            .await;
        self.h
            .wait_condition::<Volume>("data", "Ready", "True", None)
            .await
    }

    async fn ready_image(&self, resource: Value) -> VolumeImage {
        self.h
            .create::<VolumeImage>(image_manifest_with(resource))
            .await;
        self.h
            .wait_condition::<VolumeImage>("golden", "Ready", "True", None)
            .await
    }

    async fn ready_share(&self, members: Value) -> ImageShare {
        let target = self.target.as_deref().expect("a share row has an image");
        self.h
            .create::<ImageShare>(share_manifest(target, members))
            .await;
        self.h
            .wait_condition::<ImageShare>("share", "Ready", "True", None)
            .await
    }

    fn volume_id(&self, volume: &Volume) -> String {
        id_in_status(volume).expect("a Ready Volume has status.id")
    }

    async fn object_volume(&self) -> Option<Volume> {
        self.h.api::<Volume>().get_opt("data").await.ok().flatten()
    }

    async fn object_image(&self) -> Option<VolumeImage> {
        self.h
            .api::<VolumeImage>()
            .get_opt("golden")
            .await
            .ok()
            .flatten()
    }

    /// The cloud volume of Volume `data`, as the emulator shows it.
    async fn data_volume(&self) -> Option<Value> {
        let volume = self.object_volume().await?;
        self.h.cloud_volume(&id_in_status(&volume)?).await
    }

    /// The cloud image of VolumeImage `golden`, as the emulator shows it.
    async fn golden_image(&self) -> Option<Value> {
        let image = self.object_image().await?;
        self.image(&id_in_status(&image)?).await
    }

    /// Deletes every object of the test and waits until they are gone: shares, then images,
    /// then volumes, as a person would.
    async fn delete_everything(&self) {
        async fn all<K>(h: &Harness)
        where
            K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
                + Clone
                + serde::de::DeserializeOwned
                + std::fmt::Debug,
        {
            let names: Vec<String> = h
                .api::<K>()
                .list(&Default::default())
                .await
                .expect("a list")
                .items
                .iter()
                .map(|o| o.name_any())
                .collect();
            for name in &names {
                h.delete::<K>(name).await;
            }
            for name in &names {
                h.wait_gone::<K>(name).await;
            }
        }
        all::<ImageShare>(&self.h).await;
        // A protected image is never deleted: the spec unprotects it first, as a person would.
        let images = self.h.api::<VolumeImage>().list(&Default::default()).await;
        for image in images.expect("a list").items {
            let protected = image.spec.resource.as_ref().and_then(|r| r.protected);
            if protected == Some(true) {
                self.h
                    .patch::<VolumeImage>(
                        &image.name_any(),
                        json!({"spec": {"resource": {"protected": false}}}),
                    )
                    .await;
            }
        }
        all::<VolumeImage>(&self.h).await;
        all::<Volume>(&self.h).await;
    }

    /// Nothing cloudvol made is left, and the decoys are exactly as they were.
    async fn nothing_left(&self) {
        let volumes = self.volumes().await;
        assert!(volumes.is_empty(), "volumes left behind: {volumes:#?}");
        let images = self.images().await;
        assert!(images.is_empty(), "images left behind: {images:#?}");
        if self.target.is_some() {
            let target = self.target_image().await;
            assert_eq!(
                target["visibility"], "private",
                "the shared image's visibility is restored: {target:#}"
            );
            assert!(
                members_of(&target).is_empty(),
                "members left on the shared image: {target:#}"
            );
        }
        self.decoys_untouched().await;
    }

    /// Warning Events on the test's objects, but the ones a recreate is meant to record.
    async fn warnings(&self) -> Vec<(String, String, String)> {
        let api: kube::Api<k8s_openapi::api::core::v1::Event> = self.h.api();
        let events = api.list(&Default::default()).await.expect("the Events");
        events
            .items
            .into_iter()
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .filter(|e| {
                !matches!(
                    e.reason.as_deref(),
                    Some("VolumeDisappeared" | "ImageDisappeared")
                )
            })
            .map(|e| {
                (
                    e.involved_object.name.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect()
    }

    async fn decoys_untouched(&self) {
        for (what, id, before) in &self.decoys {
            let now = self.view(what, id).await;
            assert_eq!(
                now.as_ref(),
                Some(before),
                "decoy {what} {id}, which cloudvol neither made nor imported, was touched"
            );
        }
    }
}

impl Write {
    /// The world just before the write.
    async fn prepare(self, w: &World) {
        match self {
            Write::VolumeCreate | Write::Upload => {}
            Write::VolumeRecreate => {
                let volume = w.ready_volume().await;
                w.h.delete_cloud_volume(&w.volume_id(&volume)).await;
            }
            Write::VolumeExtend | Write::VolumeUpdate | Write::VolumeDelete => {
                w.ready_volume().await;
            }
            Write::ImageRecreate => {
                let image = w.ready_image(json!({})).await;
                w.h.delete_cloud_image(&id_in_status(&image).expect("an id"))
                    .await;
            }
            Write::ImagePatch | Write::ImageDelete => {
                w.ready_image(json!({})).await;
            }
            Write::ProtectedPatch => {
                w.ready_image(json!({"protected": true})).await;
            }
            Write::ProtectedDelete => {
                // Paused, the spec unprotects and the object is deleted: cloudvol's first
                // write, once the pause is lifted, is the deletion's unprotect.
                w.ready_image(json!({"protected": true})).await;
                w.h.patch::<VolumeImage>(
                    "golden",
                    json!({"metadata": {"annotations": {"cloudvol.dev/paused": "true"}}}),
                )
                .await;
                w.h.patch::<VolumeImage>(
                    "golden",
                    json!({"spec": {"resource": {"protected": false}}}),
                )
                .await;
                w.h.wait_condition::<VolumeImage>("golden", "Stalled", "True", Some("Paused"))
                    .await;
                w.h.delete::<VolumeImage>("golden").await;
                w.h.wait_object::<VolumeImage>("golden", "its deletion paused", |o| {
                    o.status.as_ref().is_some_and(|s| {
                        s.conditions
                            .iter()
                            .any(|c| c.reason == "Paused" && c.message.contains("delete"))
                    })
                })
                .await;
            }
            Write::VisibilitySet | Write::MemberAdd | Write::MemberAccept => {}
            Write::MemberRemove | Write::VisibilityRestore => {
                w.ready_share(json!([partner()])).await;
            }
            Write::MemberUnlist => {
                w.ready_share(json!([partner(), other()])).await;
            }
        }
    }

    /// The path glob of the request, for the fault rule: exactly this write's request.
    async fn path(self, w: &World) -> String {
        let target = || w.target.clone().expect("a share row has an image");
        match self {
            Write::VolumeCreate | Write::VolumeRecreate => "/block-storage/*/volumes".into(),
            Write::VolumeExtend => {
                let volume = w.object_volume().await.expect("Volume data");
                format!("/block-storage/*/volumes/{}/action", w.volume_id(&volume))
            }
            Write::VolumeUpdate | Write::VolumeDelete => {
                let volume = w.object_volume().await.expect("Volume data");
                format!("/block-storage/*/volumes/{}", w.volume_id(&volume))
            }
            Write::Upload | Write::ImageRecreate => {
                let volume = w.object_volume().await.expect("Volume data");
                format!("/block-storage/*/volumes/{}/action", w.volume_id(&volume))
            }
            Write::ImagePatch
            | Write::ImageDelete
            | Write::ProtectedPatch
            | Write::ProtectedDelete => {
                let image = w.object_image().await.expect("VolumeImage golden");
                format!("/image/v2/images/{}", id_in_status(&image).expect("an id"))
            }
            Write::VisibilitySet | Write::VisibilityRestore => {
                format!("/image/v2/images/{}", target())
            }
            Write::MemberAdd => format!("/image/v2/images/{}/members", target()),
            Write::MemberAccept | Write::MemberRemove => {
                format!("/image/v2/images/{}/members/{PARTNER_TENANT}", target())
            }
            Write::MemberUnlist => {
                format!("/image/v2/images/{}/members/{OTHER_TENANT}", target())
            }
        }
    }

    /// What makes cloudvol make the write.
    async fn trigger(self, w: &World) {
        let h = &w.h;
        match self {
            Write::VolumeCreate => {
                h.create::<Volume>(volume_manifest(
                    "data",
                    "demo",
                    json!({"resource": {"size": 1}}),
                ))
                .await;
            }
            Write::VolumeRecreate => look_now::<Volume>(h, "data").await,
            Write::ImageRecreate => look_now::<VolumeImage>(h, "golden").await,
            Write::VolumeExtend => {
                h.patch::<Volume>("data", json!({"spec": {"resource": {"size": 2}}}))
                    .await;
            }
            Write::VolumeUpdate => {
                h.patch::<Volume>(
                    "data",
                    json!({"spec": {"resource": {"description": "updated"}}}),
                )
                .await;
            }
            Write::VolumeDelete => h.delete::<Volume>("data").await,
            Write::Upload => {
                h.create::<VolumeImage>(image_manifest()).await;
            }
            Write::ImagePatch | Write::ProtectedPatch => {
                h.patch::<VolumeImage>("golden", json!({"spec": {"resource": {"tags": ["base"]}}}))
                    .await;
            }
            Write::ProtectedDelete => {
                h.patch::<VolumeImage>(
                    "golden",
                    json!({"metadata": {"annotations": {"cloudvol.dev/paused": null}}}),
                )
                .await;
            }
            Write::ImageDelete => h.delete::<VolumeImage>("golden").await,
            Write::VisibilitySet | Write::MemberAdd | Write::MemberAccept => {
                let target = w.target.as_deref().expect("a share row has an image");
                h.create::<ImageShare>(share_manifest(target, json!([partner()])))
                    .await;
            }
            Write::MemberUnlist => {
                h.patch::<ImageShare>("share", json!({"spec": {"members": [partner()]}}))
                    .await;
            }
            Write::MemberRemove | Write::VisibilityRestore => {
                h.delete::<ImageShare>("share").await;
            }
        }
    }

    /// The emulator's store shows the write done.
    async fn acted(self, w: &World) -> bool {
        match self {
            Write::VolumeCreate | Write::VolumeRecreate => !w.volumes().await.is_empty(),
            Write::VolumeExtend => w
                .data_volume()
                .await
                .is_some_and(|v| v["status"] == "extending" || v["size"] == 2),
            Write::VolumeUpdate => w
                .data_volume()
                .await
                .is_some_and(|v| v["description"] == "updated"),
            Write::VolumeDelete => w.volumes().await.iter().all(|v| v["status"] == "deleting"),
            Write::Upload | Write::ImageRecreate => !w.images().await.is_empty(),
            Write::ImagePatch => w
                .golden_image()
                .await
                .is_some_and(|i| tags_of(&i).iter().any(|t| t == "base")),
            Write::ImageDelete => w.images().await.is_empty(),
            Write::ProtectedPatch | Write::ProtectedDelete => {
                w.images().await.iter().all(|i| i["protected"] == false)
            }
            Write::VisibilitySet => w.target_image().await["visibility"] == "shared",
            Write::MemberAdd => members_of(&w.target_image().await)
                .iter()
                .any(|(t, _)| t == PARTNER_TENANT),
            Write::MemberAccept => members_of(&w.target_image().await)
                .contains(&(PARTNER_TENANT.into(), "accepted".into())),
            Write::MemberUnlist => !members_of(&w.target_image().await)
                .iter()
                .any(|(t, _)| t == OTHER_TENANT),
            Write::MemberRemove => !members_of(&w.target_image().await)
                .iter()
                .any(|(t, _)| t == PARTNER_TENANT),
            Write::VisibilityRestore => w.target_image().await["visibility"] == "private",
        }
    }

    /// Waits for the end the spec asks for, and checks the cloud reached it: exactly one
    /// resource per object, in the state asked for; for a deletion, the object gone and its
    /// resource with it.
    async fn settled(self, row: &Row, w: &World) {
        let h = &w.h;
        // A recreate leaves the object Ready as it was until cloudvol looks: wait for its
        // status.id to name a resource that exists again.
        match self {
            Write::VolumeRecreate => {
                wait_for(DEADLINE, "status.id to name a volume again", || async {
                    w.data_volume().await.map(drop)
                })
                .await;
            }
            Write::ImageRecreate => {
                wait_for(DEADLINE, "status.id to name an image again", || async {
                    w.golden_image().await.map(drop)
                })
                .await;
            }
            _ => {}
        }
        if row.deletes {
            match row.family {
                Family::Volume => h.wait_gone::<Volume>("data").await,
                Family::Image => h.wait_gone::<VolumeImage>("golden").await,
                Family::Share => h.wait_gone::<ImageShare>("share").await,
            }
        } else {
            match row.family {
                Family::Volume => {
                    h.wait_condition::<Volume>("data", "Ready", "True", None)
                        .await;
                }
                Family::Image => {
                    h.wait_condition::<VolumeImage>("golden", "Ready", "True", None)
                        .await;
                }
                Family::Share => {
                    h.wait_condition::<ImageShare>("share", "Ready", "True", None)
                        .await;
                }
            }
        }
        match row.family {
            Family::Volume => {
                let volumes = w.volumes().await;
                match w.object_volume().await {
                    None => assert!(volumes.is_empty(), "the volume is deleted: {volumes:#?}"),
                    Some(object) => {
                        assert_eq!(volumes.len(), 1, "exactly one volume: {volumes:#?}");
                        let uid = object.uid().expect("a uid");
                        assert_eq!(volumes[0]["id"], w.volume_id(&object).as_str());
                        assert_eq!(volumes[0]["metadata"]["cloudvol.dev/uid"], uid.as_str());
                    }
                }
            }
            Family::Image => {
                let images = w.images().await;
                match w.object_image().await {
                    None => assert!(images.is_empty(), "the image is deleted: {images:#?}"),
                    Some(object) => {
                        assert_eq!(images.len(), 1, "exactly one image: {images:#?}");
                        let mark = format!("cloudvol-uid:{}", object.uid().expect("a uid"));
                        assert_eq!(images[0]["id"], id_in_status(&object).expect("an id"));
                        assert_eq!(images[0]["name"], "golden");
                        assert!(
                            tags_of(&images[0]).contains(&mark),
                            "the image carries the mark: {:#}",
                            images[0]
                        );
                    }
                }
                let volumes = w.volumes().await;
                assert_eq!(volumes.len(), 1, "only the source volume: {volumes:#?}");
            }
            Family::Share => {
                let images = w.images().await;
                assert!(images.is_empty(), "no image was made: {images:#?}");
                let target = w.target_image().await;
                let want: Vec<(String, String)> = if row.deletes {
                    Vec::new()
                } else {
                    vec![(PARTNER_TENANT.into(), "accepted".into())]
                };
                assert_eq!(members_of(&target), want, "the members: {target:#}");
                let visibility = if row.deletes { "private" } else { "shared" };
                assert_eq!(target["visibility"], visibility, "{target:#}");
            }
        }
        match self {
            Write::VolumeExtend => {
                let volume = w.data_volume().await.expect("the volume");
                assert_eq!(volume["size"], 2, "{volume:#}");
            }
            Write::VolumeUpdate => {
                let volume = w.data_volume().await.expect("the volume");
                assert_eq!(volume["description"], "updated", "{volume:#}");
            }
            Write::ImagePatch => {
                let image = w.golden_image().await.expect("the image");
                assert!(tags_of(&image).contains(&"base".into()), "{image:#}");
            }
            Write::ProtectedPatch => {
                let image = w.golden_image().await.expect("the image");
                assert!(tags_of(&image).contains(&"base".into()), "{image:#}");
                assert_eq!(image["protected"], true, "protected again: {image:#}");
            }
            _ => {}
        }
    }
}

// --- one case -------------------------------------------------------------------------------

async fn case(write: &str, fault: &str) {
    let row = Row::named(write);
    let fault = Fault::named(fault);
    let mut w = World::new(row).await;
    row.write.prepare(&w).await;
    let path = row.write.path(&w).await;
    let route = format!("{} {}", row.method, row.route);
    let before = w.h.request_count(&route).await;
    let warned_before = w.warnings().await;
    w.h.add_fault(fault.rule(row.method, &path)).await;
    row.write.trigger(&w).await;

    if fault.crash {
        let held = wait_for(
            DEADLINE,
            &format!("{} {path} to reach the cloud and act", row.method),
            || async {
                (w.h.faults_left().await.is_empty() && row.write.acted(&w).await)
                    .then(std::time::Instant::now)
            },
        )
        .await;
        w.h.kill_operator().await;
        let stopped_after = held.elapsed();
        assert!(
            stopped_after < HOLD,
            "the operator must stop while the cloud holds its answer ({stopped_after:?})"
        );
        w.h.start_operator().await;
    }

    row.write.settled(row, &w).await;

    // The emulator's own records: the rule was used (the fault fired), and the calls made.
    let left = w.h.faults_left().await;
    assert!(left.is_empty(), "the fault never fired: {left:?}");
    let calls = w.h.request_count(&route).await - before;
    let acted_on_fault = fault.after_action;
    if row.once {
        // The faulted call, and one more only if the cloud did nothing on it.
        let want = if acted_on_fault { 1 } else { 2 };
        assert_eq!(
            calls, want,
            "{route}: the cloud got {calls} calls; a POST must reach it once per time it acts"
        );
    } else {
        let least = if acted_on_fault { 1 } else { 2 };
        assert!(
            calls >= least,
            "{route}: {calls} calls, expected at least {least}"
        );
    }

    // A fault that passes by itself is never a person's problem: no object went Stalled on
    // the way (a Stalled state records a Warning Event), whatever it says now.
    let mut warnings = w.warnings().await;
    warnings.retain(|e| !warned_before.contains(e));
    assert!(
        warnings.is_empty(),
        "a transient fault made an object Stalled ({route}: {calls} calls): {warnings:#?}"
    );

    w.delete_everything().await;
    w.nothing_left().await;
    let mut warnings = w.warnings().await;
    warnings.retain(|e| !warned_before.contains(e));
    assert!(
        warnings.is_empty(),
        "an object went Stalled while everything was deleted: {warnings:#?}"
    );
    w.h.kill_operator().await;
}

/// The matrix: a module per write, a test per fault. A case that fails on today's code carries
/// `#[ignore = "fails: <the bug>"]`, and docs/crash-safety.md names it.
macro_rules! matrix {
    ($($write:ident => [$($(#[$meta:meta])* $fault:ident),* $(,)?],)*) => {$(
        mod $write {
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread")]
                async fn $fault() {
                    super::case(stringify!($write), stringify!($fault)).await;
                }
            )*
        }
    )*};
}

matrix! {
    volume_create => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    volume_recreate => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    volume_extend => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    volume_update => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    volume_delete => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    upload => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    image_recreate => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    image_patch => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    protected_patch => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    image_delete => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    protected_delete => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    visibility_set => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    member_add => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    member_accept => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    member_unlist => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    member_remove => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
    visibility_restore => [before_500, before_503, before_drop, lost_answer, after_500, after_503, crash],
}

/// Every row and every fault is in the table above, once per pair: a row added to [`ROWS`]
/// without its line, or a fault without its column, fails here.
#[test]
fn the_matrix_covers_every_write_and_fault() {
    let source = include_str!("crash.rs");
    let table = source
        .split("matrix! {\n")
        .nth(1)
        .and_then(|t| t.split("\n}\n").next())
        .expect("the matrix table");
    for row in ROWS {
        let line = table
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} =>", row.name)))
            .unwrap_or_else(|| panic!("write {} has no line in the matrix", row.name));
        for fault in FAULTS {
            assert!(
                line.contains(&format!(" {},", fault.name))
                    || line.contains(&format!("[{},", fault.name))
                    || line.contains(&format!(" {}]", fault.name)),
                "case {}::{} is missing from the matrix",
                row.name,
                fault.name
            );
        }
    }
}
