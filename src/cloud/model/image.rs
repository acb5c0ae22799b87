//! Image (Glance v2 as NHN serves it, SCP's image show) models.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{cloud_status, lenient_bool, lenient_u64, null_as_default};

cloud_status! {
    /// Image states (NHN's Image API, docs/sources.md, plus Glance's deactivated/uploading/importing).
    ImageStatus {
        Queued => "queued",
        Saving => "saving",
        Active => "active",
        Killed => "killed",
        Deleted => "deleted",
        PendingDelete => "pending_delete",
        Deactivated => "deactivated",
        Uploading => "uploading",
        Importing => "importing",
    }
}

cloud_status! {
    Visibility {
        Public => "public",
        Private => "private",
        Shared => "shared",
        Community => "community",
    }
}

cloud_status! {
    /// An image member's answer to a share.
    MemberStatus {
        Pending => "pending",
        Accepted => "accepted",
        Rejected => "rejected",
    }
}

/// Top-level keys of an image that are HTTP plumbing, not properties.
const PLUMBING: &[&str] = &["self", "file", "schema"];

/// One image. Keys that are not named fields (`os_type`, `os_distro`,
/// user properties, SCP's `scp_*`) are kept in `properties`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: ImageStatus,
    #[serde(default)]
    pub visibility: Visibility,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub protected: bool,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub disk_format: Option<String>,
    #[serde(default)]
    pub container_format: Option<String>,
    /// Bytes.
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub virtual_size: Option<u64>,
    /// Smallest disk that can hold the image, in GiB (Glance's `min_disk`;
    /// 0 when unset or unreadable).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub min_disk: u64,
    /// Smallest RAM to boot it, in MiB (Glance's `min_ram`; 0 when unset or
    /// unreadable).
    #[serde(default, deserialize_with = "lenient_u64")]
    pub min_ram: u64,
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(flatten)]
    pub properties: BTreeMap<String, serde_json::Value>,
}

impl Image {
    /// Drops the plumbing keys that `flatten` collected.
    pub(crate) fn tidy(mut self) -> Self {
        for key in PLUMBING {
            self.properties.remove(*key);
        }
        self
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// Filters of an image list. Like volumes, the simple filters are checked
/// again on what comes back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageQuery {
    pub name: Option<String>,
    pub owner: Option<String>,
    pub status: Option<ImageStatus>,
    pub visibility: Option<Visibility>,
    /// With `visibility: shared`: images shared with us in this state.
    pub member_status: Option<MemberStatus>,
    /// Every tag must be present.
    pub tags: Vec<String>,
    pub sort_key: Option<String>,
    /// `asc` or `desc`.
    pub sort_dir: Option<String>,
    /// Page size; the list still returns every page.
    pub limit: Option<u32>,
}

impl ImageQuery {
    pub fn matches(&self, i: &Image) -> bool {
        self.name
            .as_ref()
            .is_none_or(|n| i.name.as_ref() == Some(n))
            && self
                .owner
                .as_ref()
                .is_none_or(|o| i.owner.as_ref() == Some(o))
            && self.status.as_ref().is_none_or(|s| &i.status == s)
            && self.visibility.as_ref().is_none_or(|v| &i.visibility == v)
            && self.tags.iter().all(|t| i.has_tag(t))
    }

    pub(crate) fn to_query(&self) -> Vec<(String, String)> {
        let mut q = Vec::new();
        let mut push = |k: &str, v: &str| q.push((k.to_string(), v.to_string()));
        if let Some(v) = &self.name {
            push("name", v);
        }
        if let Some(v) = &self.owner {
            push("owner", v);
        }
        if let Some(v) = &self.status {
            push("status", v.as_str());
        }
        if let Some(v) = &self.visibility {
            push("visibility", v.as_str());
        }
        if let Some(v) = &self.member_status {
            push("member_status", v.as_str());
        }
        for t in &self.tags {
            push("tag", t);
        }
        if let Some(v) = &self.sort_key {
            push("sort_key", v);
        }
        if let Some(v) = &self.sort_dir {
            push("sort_dir", v);
        }
        if let Some(v) = self.limit {
            push("limit", &v.to_string());
        }
        q
    }
}

/// One JSON-patch operation (`application/openstack-images-v2.1-json-patch`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum PatchOp {
    Add {
        path: String,
        value: serde_json::Value,
    },
    Replace {
        path: String,
        value: serde_json::Value,
    },
    Remove {
        path: String,
    },
}

impl PatchOp {
    /// `path` is the property name, with or without the leading `/`.
    pub fn add(path: &str, value: impl Into<serde_json::Value>) -> Self {
        PatchOp::Add {
            path: slash(path),
            value: value.into(),
        }
    }

    pub fn replace(path: &str, value: impl Into<serde_json::Value>) -> Self {
        PatchOp::Replace {
            path: slash(path),
            value: value.into(),
        }
    }

    pub fn remove(path: &str) -> Self {
        PatchOp::Remove { path: slash(path) }
    }
}

fn slash(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// A tenant an image is shared with.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Member {
    pub image_id: String,
    pub member_id: String,
    #[serde(default)]
    pub status: MemberStatus,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_unknowns_are_kept() {
        assert_eq!(ImageStatus::KNOWN.len(), 9);
        for s in ImageStatus::KNOWN {
            assert_eq!(&ImageStatus::parse(s.as_str()), s);
        }
        for v in Visibility::KNOWN {
            assert_eq!(&Visibility::parse(v.as_str()), v);
        }
        for m in MemberStatus::KNOWN {
            assert_eq!(&MemberStatus::parse(m.as_str()), m);
        }
        assert_eq!(
            ImageStatus::parse("frozen"),
            ImageStatus::Unknown("frozen".into())
        );
        assert_eq!(ImageStatus::parse("frozen").as_str(), "frozen");
        assert_eq!(Visibility::parse("hidden").as_str(), "hidden");
        assert_eq!(
            serde_json::from_str::<MemberStatus>("\"maybe\"").unwrap(),
            MemberStatus::Unknown("maybe".into())
        );
    }

    #[test]
    fn the_seed_image_example_keeps_extra_keys_as_properties() {
        let json = r#"{
          "container_format": "bare", "min_ram": 0, "updated_at": "2018-12-11T01:01:35Z",
          "login_username": "centos", "file": "/v2/images/1c86/file",
          "owner": "c289b99209ca4e189095cdecebbd092d", "id": "1c868787-6207-4ff2-a1e7-ae1331d6829b",
          "size": 1778843648, "os_distro": "CentOS", "self": "/v2/images/1c86",
          "disk_format": "qcow2", "os_version": "6.10", "schema": "/v2/schemas/image",
          "status": "active", "description": "CentOS 6.10 (2018.10.23)", "tags": [],
          "visibility": "public", "os_architecture": "amd64", "min_disk": 20,
          "virtual_size": null, "name": "CentOS 6.10 (2018.10.23)", "hypervisor_type": "qemu",
          "created_at": "2018-10-23T02:17:43Z", "protected": true,
          "checksum": "f803c5c15bcf9a75935980a900a04584", "os_type": "linux"
        }"#;
        let i = serde_json::from_str::<Image>(json).unwrap().tidy();
        assert_eq!(i.status, ImageStatus::Active);
        assert_eq!(i.visibility, Visibility::Public);
        assert!(i.protected);
        assert_eq!(i.min_disk, 20);
        assert_eq!(i.size, Some(1778843648));
        assert_eq!(i.properties["os_type"], "linux");
        assert_eq!(i.properties["login_username"], "centos");
        assert!(!i.properties.contains_key("self"));
        assert!(!i.properties.contains_key("status"));
    }

    #[test]
    fn min_disk_and_min_ram_are_read_and_never_fail_the_image() {
        let i: Image = serde_json::from_str(r#"{"id":"a","min_disk":40,"min_ram":2048}"#).unwrap();
        assert_eq!((i.min_disk, i.min_ram), (40, 2048));
        assert!(!i.properties.contains_key("min_disk"));
        for odd in [
            r#"{"id":"a","min_disk":null,"min_ram":null}"#,
            r#"{"id":"a","min_disk":-1,"min_ram":1.5}"#,
            r#"{"id":"a","min_disk":"lots","min_ram":[]}"#,
            r#"{"id":"a","min_disk":1e300,"min_ram":{}}"#,
            r#"{"id":"a"}"#,
        ] {
            let i: Image = serde_json::from_str(odd).unwrap_or_else(|e| panic!("{odd}: {e}"));
            assert_eq!((i.min_disk, i.min_ram), (0, 0), "{odd}");
        }
        let i: Image = serde_json::from_str(r#"{"id":"a","min_disk":"20"}"#).unwrap();
        assert_eq!(i.min_disk, 20);
    }

    #[test]
    fn the_scp_image_example_parses() {
        let json = r#"{"checksum":"7538e0fcb56e0e272cfd89eb384d6613","container_format":"bare",
          "created_at":"2025-07-22T09:00:00Z","disk_format":"qcow2","id":"70a599e0-31e7-49b7-b260-868f441e862b",
          "min_disk":100,"min_ram":0,"name":"imagename","os_hidden":false,"owner":"a8f1",
          "protected":false,"scp_image_type":"custom","size":2429747200,"status":"active",
          "updated_at":"2025-07-26T12:00:00Z","virtual_size":17179869184,"visibility":"private",
          "volumes":"[]"}"#;
        let i: Image = serde_json::from_str(json).unwrap();
        assert_eq!(i.visibility, Visibility::Private);
        assert_eq!(i.properties["scp_image_type"], "custom");
        assert!(i.tags.is_empty());
    }

    #[test]
    fn patch_ops_serialize_as_json_patch() {
        let ops = vec![
            PatchOp::replace("visibility", "shared"),
            PatchOp::add("/cloudvol", "x"),
            PatchOp::remove("old"),
        ];
        assert_eq!(
            serde_json::to_value(&ops).unwrap(),
            serde_json::json!([
                {"op": "replace", "path": "/visibility", "value": "shared"},
                {"op": "add", "path": "/cloudvol", "value": "x"},
                {"op": "remove", "path": "/old"}
            ])
        );
    }

    #[test]
    fn member_parses() {
        let m: Member = serde_json::from_str(
            r#"{"created_at":"2013-09-20T19:22:19Z","image_id":"a96b","member_id":"8989","schema":"/v2/schemas/member","status":"pending","updated_at":"2013-09-20T19:25:31Z"}"#,
        )
        .unwrap();
        assert_eq!(m.status, MemberStatus::Pending);
        assert_eq!(m.member_id, "8989");
    }

    #[test]
    fn image_query_builds_glance_parameters() {
        let q = ImageQuery {
            name: Some("n".into()),
            visibility: Some(Visibility::Shared),
            member_status: Some(MemberStatus::Accepted),
            tags: vec!["a".into(), "b".into()],
            limit: Some(5),
            ..Default::default()
        };
        assert_eq!(
            q.to_query(),
            vec![
                ("name".to_string(), "n".to_string()),
                ("visibility".into(), "shared".into()),
                ("member_status".into(), "accepted".into()),
                ("tag".into(), "a".into()),
                ("tag".into(), "b".into()),
                ("limit".into(), "5".into()),
            ]
        );
    }
}
