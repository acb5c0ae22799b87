//! Block storage (Cinder v2 in NHN's dialect, Cinder v3) models.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{absent_when_malformed, cloud_status, lenient_bool, lenient_string, null_as_default};

cloud_status! {
    /// The 20 volume states of NHN's Block Storage API (docs/sources.md).
    VolumeStatus {
        Creating => "creating",
        Available => "available",
        Attaching => "attaching",
        Detaching => "detaching",
        InUse => "in-use",
        /// Root volume of a terminated instance.
        Reserved => "reserved",
        /// Being moved to another host.
        Maintenance => "maintenance",
        Deleting => "deleting",
        AwaitingTransfer => "awaiting-transfer",
        Error => "error",
        ErrorDeleting => "error_deleting",
        BackingUp => "backing-up",
        RestoringBackup => "restoring-backup",
        ErrorBackingUp => "error_backing-up",
        ErrorRestoring => "error_restoring",
        ErrorExtending => "error_extending",
        /// Downloading the image it is created from.
        Downloading => "downloading",
        /// Uploading itself to an image.
        Uploading => "uploading",
        Retyping => "retyping",
        Extending => "extending",
    }
}

/// Where a volume is attached.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(default)]
    pub server_id: Option<String>,
    #[serde(default)]
    pub attachment_id: Option<String>,
    #[serde(default)]
    pub volume_id: Option<String>,
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub host_name: Option<String>,
    #[serde(default)]
    pub attached_at: Option<String>,
}

/// NHN's encryption details (Secure Key Manager key) of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NhnEncryption {
    #[serde(default)]
    pub skm_key_version: Option<i64>,
    #[serde(default)]
    pub skm_key_id: Option<String>,
}

/// The image a volume was created from, as Cinder copies it onto the
/// volume (`volume_image_metadata`; its values are strings).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VolumeImageMetadata {
    #[serde(default, deserialize_with = "lenient_string")]
    pub image_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub image_name: Option<String>,
    /// Every other key (`checksum`, `disk_format`, `min_disk`, `size`, the
    /// image's properties), as the cloud sent it.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// One volume as the detail list and show return it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// GiB.
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub status: VolumeStatus,
    #[serde(default)]
    pub volume_type: Option<String>,
    #[serde(default)]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub snapshot_id: Option<String>,
    #[serde(default)]
    pub source_volid: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attachments: Vec<Attachment>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub encrypted: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub bootable: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub multiattach: bool,
    /// As the cloud wrote it (`YYYY-MM-DDThh:mm:ss.SSSSSS`, no zone, UTC).
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default, rename = "os-vol-tenant-attr:tenant_id")]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub nhn_encryption: Option<NhnEncryption>,
    /// Present when the volume was created from an image (and the cloud
    /// says so); absent when malformed.
    #[serde(
        default,
        deserialize_with = "absent_when_malformed",
        skip_serializing_if = "Option::is_none"
    )]
    pub volume_image_metadata: Option<VolumeImageMetadata>,
}

impl Volume {
    /// The id of the image the volume was created from, when the cloud
    /// says.
    pub fn source_image_id(&self) -> Option<&str> {
        self.volume_image_metadata
            .as_ref()
            .and_then(|m| m.image_id.as_deref())
    }

    /// Servers the volume is attached to.
    pub fn attached_servers(&self) -> Vec<&str> {
        self.attachments
            .iter()
            .filter_map(|a| a.server_id.as_deref())
            .collect()
    }
}

/// An entry of the plain (non-detail) volume list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VolumeSummary {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// Filters of a volume list. Filters go to the cloud; the detail list also
/// re-checks them on what comes back, so that a cloud that ignores a filter
/// never makes the operator adopt the wrong volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeQuery {
    pub name: Option<String>,
    pub status: Option<VolumeStatus>,
    /// Every pair must be present (Cinder's `metadata={"k":"v"}` filter).
    pub metadata: BTreeMap<String, String>,
    /// `<key>[:<direction>]`, e.g. `created_at:desc`.
    pub sort: Option<String>,
    /// Page size; the list still returns every page.
    pub limit: Option<u32>,
}

impl VolumeQuery {
    pub fn matches(&self, v: &Volume) -> bool {
        self.name
            .as_ref()
            .is_none_or(|n| v.name.as_ref() == Some(n))
            && self.status.as_ref().is_none_or(|s| &v.status == s)
            && self
                .metadata
                .iter()
                .all(|(k, val)| v.metadata.get(k) == Some(val))
    }
}

/// NHN Secure Key Manager key for an encrypted volume (NHN only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NhnEncryptionRequest {
    pub skm_appkey: String,
    pub skm_key_id: String,
}

/// `POST /volumes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CreateVolume {
    /// GiB.
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_volid: Option<String>,
    /// Create from this image.
    #[serde(rename = "imageRef", skip_serializing_if = "Option::is_none")]
    pub image_ref: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// NHN Cloud only; the OpenStack v3 implementation refuses it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nhn_encryption: Option<NhnEncryptionRequest>,
}

/// `PUT /volumes/{id}`: only the given fields change. `metadata`, when
/// given, replaces the volume's whole metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UpdateVolume {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// What Cinder may do when a retype needs the volume on another back end
/// (`os-retype`'s `migration_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MigrationPolicy {
    /// Refuse the retype rather than move the data.
    #[default]
    Never,
    /// Move the data to a back end of the new type when needed.
    OnDemand,
}

impl MigrationPolicy {
    pub fn as_str(&self) -> &'static str {
        match self {
            MigrationPolicy::Never => "never",
            MigrationPolicy::OnDemand => "on-demand",
        }
    }
}

impl std::fmt::Display for MigrationPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `os-volume_upload_image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadToImage {
    pub image_name: String,
    /// Allow uploading an attached (`in-use`) volume.
    pub force: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_format: Option<String>,
    /// `private` or `shared` (NHN extension; Cinder v3 from microversion 3.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
    /// NHN extension; Cinder v3 from microversion 3.1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
}

impl UploadToImage {
    pub fn new(image_name: impl Into<String>) -> Self {
        UploadToImage {
            image_name: image_name.into(),
            force: false,
            disk_format: None,
            container_format: None,
            visibility: None,
            protected: None,
        }
    }
}

/// What the upload answered: the new image's id and the volume's state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct UploadedImage {
    pub image_id: String,
    #[serde(default)]
    pub image_name: Option<String>,
    /// The volume's status (normally `uploading`).
    #[serde(default)]
    pub status: VolumeStatus,
    #[serde(default)]
    pub disk_format: Option<String>,
    #[serde(default)]
    pub container_format: Option<String>,
    /// The volume's id.
    #[serde(default)]
    pub id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_status_round_trips() {
        assert_eq!(VolumeStatus::KNOWN.len(), 20);
        for s in VolumeStatus::KNOWN {
            assert_eq!(&VolumeStatus::parse(s.as_str()), s);
            let json = serde_json::to_string(s).unwrap();
            let back: VolumeStatus = serde_json::from_str(&json).unwrap();
            assert_eq!(&back, s);
        }
        assert_eq!(VolumeStatus::parse("in-use"), VolumeStatus::InUse);
        assert_eq!(
            VolumeStatus::parse("error_backing-up"),
            VolumeStatus::ErrorBackingUp
        );
    }

    #[test]
    fn unknown_statuses_are_kept_not_rejected() {
        let s: VolumeStatus = serde_json::from_str("\"error_managing\"").unwrap();
        assert_eq!(s, VolumeStatus::Unknown("error_managing".into()));
        assert_eq!(s.as_str(), "error_managing");
        let s: VolumeStatus = serde_json::from_str("null").unwrap();
        assert_eq!(s, VolumeStatus::Unknown(String::new()));
    }

    #[test]
    fn the_seed_detail_example_parses() {
        let json = r#"{
          "attachments": [{"server_id": "3f2a", "attachment_id": "a1", "volume_id": "17975e9d", "device": "/dev/vdb", "id": "17975e9d"}],
          "links": [{"href": "https://x/v2/t/volumes/17975e9d", "rel": "self"}],
          "availability_zone": "kr-pub-a",
          "encrypted": false,
          "os-volume-replication:extended_status": null,
          "volume_type": "General HDD",
          "snapshot_id": null,
          "id": "17975e9d-1533-40db-bd02-2072cd2ccb7f",
          "size": 50,
          "user_id": "5e6524d826084188ae549815b3e33380",
          "os-vol-tenant-attr:tenant_id": "6cdebe3eb0094910bc41f1d42ebe4cb7",
          "metadata": {"cloudvol.dev/uid": "u-1"},
          "status": "in-use",
          "description": null,
          "multiattach": false,
          "source_volid": null,
          "consistencygroup_id": null,
          "name": "volume-f4f47065",
          "bootable": "false",
          "created_at": "2018-12-18T05:43:12.000000",
          "replication_status": "disabled",
          "nhn_encryption": {"skm_key_version": 1, "skm_key_id": "k"}
        }"#;
        let v: Volume = serde_json::from_str(json).unwrap();
        assert_eq!(v.status, VolumeStatus::InUse);
        assert_eq!(v.size, 50);
        assert_eq!(
            v.tenant_id.as_deref(),
            Some("6cdebe3eb0094910bc41f1d42ebe4cb7")
        );
        assert_eq!(v.attached_servers(), vec!["3f2a"]);
        assert_eq!(v.attachments[0].device.as_deref(), Some("/dev/vdb"));
        assert!(!v.bootable);
        assert_eq!(v.metadata["cloudvol.dev/uid"], "u-1");
        assert_eq!(v.nhn_encryption.unwrap().skm_key_version, Some(1));
    }

    #[test]
    fn a_minimal_volume_parses() {
        let v: Volume = serde_json::from_str(
            r#"{"id":"x","metadata":null,"attachments":null,"bootable":true}"#,
        )
        .unwrap();
        assert_eq!(v.id, "x");
        assert!(v.bootable);
        assert!(v.metadata.is_empty());
    }

    #[test]
    fn volume_image_metadata_is_read_when_the_cloud_sends_it() {
        let v: Volume = serde_json::from_str(
            r#"{"id":"x","volume_image_metadata":{"image_id":"img-1","image_name":"cirros","min_disk":"0","size":"13267968","os_type":"linux"}}"#,
        )
        .unwrap();
        assert_eq!(v.source_image_id(), Some("img-1"));
        let meta = v.volume_image_metadata.as_ref().unwrap();
        assert_eq!(meta.image_name.as_deref(), Some("cirros"));
        assert_eq!(meta.other["size"], "13267968");
        assert_eq!(meta.other["os_type"], "linux");
        for odd in [
            r#"{"id":"x"}"#,
            r#"{"id":"x","volume_image_metadata":null}"#,
            r#"{"id":"x","volume_image_metadata":"img-1"}"#,
            r#"{"id":"x","volume_image_metadata":[1,2]}"#,
        ] {
            let v: Volume = serde_json::from_str(odd).unwrap_or_else(|e| panic!("{odd}: {e}"));
            assert_eq!(v.source_image_id(), None, "{odd}");
        }
        let v: Volume =
            serde_json::from_str(r#"{"id":"x","volume_image_metadata":{"image_id":42}}"#).unwrap();
        assert_eq!(v.source_image_id(), Some("42"));
        let v: Volume =
            serde_json::from_str(r#"{"id":"x","volume_image_metadata":{"image_id":{}}}"#).unwrap();
        assert_eq!(v.source_image_id(), None);
    }

    #[test]
    fn create_body_sends_image_ref_as_cinder_spells_it() {
        let body = serde_json::to_value(CreateVolume {
            size: 10,
            image_ref: Some("img-1".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(body, serde_json::json!({"size": 10, "imageRef": "img-1"}));
    }

    #[test]
    fn migration_policies_are_cinders_words() {
        assert_eq!(MigrationPolicy::Never.as_str(), "never");
        assert_eq!(MigrationPolicy::OnDemand.as_str(), "on-demand");
        assert_eq!(MigrationPolicy::default(), MigrationPolicy::Never);
    }

    #[test]
    fn upload_body_carries_protected_and_visibility_when_set() {
        let mut req = UploadToImage::new("img");
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"image_name": "img", "force": false})
        );
        req.protected = Some(true);
        req.visibility = Some("shared".into());
        let body = serde_json::to_value(&req).unwrap();
        assert_eq!(body["protected"], true);
        assert_eq!(body["visibility"], "shared");
        req.protected = Some(false);
        assert_eq!(serde_json::to_value(&req).unwrap()["protected"], false);
    }

    #[test]
    fn create_body_omits_what_is_unset() {
        let body = serde_json::to_value(CreateVolume {
            size: 10,
            name: Some("data".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(body, serde_json::json!({"size": 10, "name": "data"}));
    }

    #[test]
    fn query_matches_on_name_status_and_metadata() {
        let mut v = Volume {
            id: "1".into(),
            name: Some("a".into()),
            status: VolumeStatus::Available,
            ..Default::default()
        };
        v.metadata.insert("k".into(), "v".into());
        let mut q = VolumeQuery::default();
        assert!(q.matches(&v));
        q.metadata.insert("k".into(), "v".into());
        assert!(q.matches(&v));
        q.status = Some(VolumeStatus::InUse);
        assert!(!q.matches(&v));
        q.status = None;
        q.metadata.insert("k".into(), "other".into());
        assert!(!q.matches(&v));
    }
}
