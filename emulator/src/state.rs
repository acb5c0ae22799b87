//! The in-memory cloud: volumes, snapshots, images, tokens, fault rules and
//! request counts, all behind one mutex (see [`crate::app::App`]).
//!
//! Asynchronous transitions are computed lazily: each one is an [`Event`]
//! with a due time in a heap, and every access to the state first applies
//! the events that are due ([`State::advance`]). Each resource carries a
//! generation; an event only applies if the resource's generation is still
//! the one it was scheduled under, so forcing a state (which bumps the
//! generation) cancels every pending transition of that resource at once.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use chrono::{DateTime, Utc};

use crate::fault::FaultRule;

#[derive(Debug, Clone)]
pub struct Volume {
    pub id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub size: u64,
    pub status: String,
    pub volume_type: String,
    pub availability_zone: String,
    pub snapshot_id: Option<String>,
    pub source_volid: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub attachments: Vec<Attachment>,
    pub encryption: Option<Encryption>,
    pub bootable: bool,
    pub multiattach: bool,
    /// What Cinder copies from the image a volume was made from
    /// (`volume_image_metadata`), once the image is downloaded.
    pub image_metadata: Option<BTreeMap<String, String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    /// Creation order; the tie-breaker for equal `created_at`.
    pub seq: u64,
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub id: String,
    pub server_id: String,
    pub device: String,
    pub attached_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    pub skm_key_id: String,
    pub skm_key_version: u64,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub id: String,
    pub volume_id: String,
    pub tenant_id: String,
    pub name: Option<String>,
    pub size: u64,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub id: String,
    pub owner: String,
    pub name: Option<String>,
    pub status: String,
    pub visibility: String,
    pub protected: bool,
    pub container_format: Option<String>,
    pub disk_format: Option<String>,
    pub min_disk: u64,
    pub min_ram: u64,
    pub size: Option<u64>,
    pub virtual_size: Option<u64>,
    pub checksum: Option<String>,
    pub os_hash_value: Option<String>,
    pub tags: Vec<String>,
    /// Custom properties (`os_type`, `os_distro`, anything else); Glance
    /// shows them at the top level of the image.
    pub properties: BTreeMap<String, String>,
    pub data: Option<Bytes>,
    pub members: BTreeMap<String, Member>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub seq: u64,
    pub generation: u64,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub member_id: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub id: String,
    pub tenant_id: String,
    pub user_id: String,
    /// Keystone v3 auth methods used (`password`, `application_credential`);
    /// empty for NHN v2.0 tokens.
    pub methods: Vec<String>,
    pub application_credential: Option<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub expires: Instant,
}

/// What a due event does to its resource.
#[derive(Debug, Clone)]
pub enum Change {
    VolumeStatus(&'static str),
    VolumeGone,
    VolumeExtended {
        new_size: u64,
    },
    VolumeAttached {
        attachment: Attachment,
    },
    VolumeDetached {
        server_id: Option<String>,
    },
    /// An upload finished: back to `in-use` if attached, else `available`.
    VolumeUploadDone,
    /// The image of a volume made from one is copied: `available`, bootable,
    /// with the image's metadata.
    VolumeDownloaded {
        image_metadata: BTreeMap<String, String>,
    },
    /// A retype ended: back to the status it started from (`available` or
    /// `in-use`), with the new type, or the old one when the retype was given
    /// up (`None`).
    VolumeRetyped {
        previous_status: &'static str,
        volume_type: Option<String>,
    },
    ImageStatus(&'static str),
    /// An upload from a volume finished: `active`, with a size and hashes.
    ImageActivated {
        size: u64,
    },
    ImageGone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Volume(String),
    Image(String),
}

#[derive(Debug)]
struct Event {
    at: Instant,
    seq: u64,
    target: Target,
    generation: u64,
    change: Change,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub volumes: HashMap<String, Volume>,
    pub snapshots: HashMap<String, Snapshot>,
    pub images: HashMap<String, Image>,
    pub tokens: HashMap<String, Token>,
    pub faults: Vec<FaultRule>,
    pub counts: BTreeMap<String, u64>,
    events: BinaryHeap<Reverse<Event>>,
    seq: u64,
}

/// Where a volume comes back to after an upload or a detach:
/// `in-use` while attached, else `available`.
fn settled_status(v: &Volume) -> &'static str {
    if v.attachments.is_empty() {
        "available"
    } else {
        "in-use"
    }
}

/// The wall-clock time of a monotonic instant (for events applied late).
pub fn wall_time(at: Instant, now: Instant) -> DateTime<Utc> {
    let ago = now.saturating_duration_since(at);
    Utc::now() - chrono::Duration::from_std(ago).unwrap_or_default()
}

impl State {
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Forget every resource, token, fault rule, count and pending event.
    pub fn reset(&mut self) {
        *self = State::default();
    }

    /// Schedule `change` on `target` after `delay`, under the target's
    /// current generation.
    pub fn schedule(&mut self, target: Target, delay: Duration, change: Change) {
        let generation = match &target {
            Target::Volume(id) => self.volumes.get(id).map(|v| v.generation),
            Target::Image(id) => self.images.get(id).map(|i| i.generation),
        };
        let Some(generation) = generation else {
            return;
        };
        let seq = self.next_seq();
        self.events.push(Reverse(Event {
            at: Instant::now() + delay,
            seq,
            target,
            generation,
            change,
        }));
    }

    /// Apply every event due at `now`, in due order.
    pub fn advance(&mut self, now: Instant) {
        while let Some(Reverse(ev)) = self.events.peek() {
            if ev.at > now {
                break;
            }
            let Some(Reverse(ev)) = self.events.pop() else {
                break;
            };
            let when = wall_time(ev.at, now);
            self.apply(ev, when);
        }
    }

    fn apply(&mut self, ev: Event, when: DateTime<Utc>) {
        match ev.target {
            Target::Volume(id) => {
                let Some(v) = self.volumes.get_mut(&id) else {
                    return;
                };
                if v.generation != ev.generation {
                    return;
                }
                v.updated_at = Some(when);
                match ev.change {
                    Change::VolumeStatus(s) => v.status = s.to_string(),
                    Change::VolumeGone => {
                        self.volumes.remove(&id);
                        self.snapshots.retain(|_, s| s.volume_id != id);
                    }
                    Change::VolumeExtended { new_size } => {
                        v.size = new_size;
                        v.status = "available".to_string();
                    }
                    Change::VolumeAttached { attachment } => {
                        v.attachments.push(attachment);
                        v.status = "in-use".to_string();
                    }
                    Change::VolumeDetached { server_id } => {
                        match server_id {
                            Some(s) => v.attachments.retain(|a| a.server_id != s),
                            None => v.attachments.clear(),
                        }
                        v.status = settled_status(v).to_string();
                    }
                    Change::VolumeUploadDone => v.status = settled_status(v).to_string(),
                    Change::VolumeDownloaded { image_metadata } => {
                        v.status = "available".to_string();
                        v.bootable = true;
                        v.image_metadata = Some(image_metadata);
                    }
                    Change::VolumeRetyped {
                        previous_status,
                        volume_type,
                    } => {
                        v.status = previous_status.to_string();
                        if let Some(t) = volume_type {
                            v.volume_type = t;
                        }
                    }
                    Change::ImageStatus(_) | Change::ImageActivated { .. } | Change::ImageGone => {}
                }
            }
            Target::Image(id) => {
                let Some(img) = self.images.get_mut(&id) else {
                    return;
                };
                if img.generation != ev.generation {
                    return;
                }
                img.updated_at = when;
                match ev.change {
                    Change::ImageStatus(s) => img.status = s.to_string(),
                    Change::ImageActivated { size } => {
                        let seed = format!("{}:{size}", img.id);
                        img.status = "active".to_string();
                        img.size = Some(size);
                        img.virtual_size = Some(size);
                        img.checksum = Some(crate::digest::md5_hex(seed.as_bytes()));
                        img.os_hash_value = Some(crate::digest::sha512_hex(seed.as_bytes()));
                    }
                    Change::ImageGone => {
                        self.images.remove(&id);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Drop pending transitions of a resource (its next events are stale).
    pub fn cancel(&mut self, target: &Target) {
        match target {
            Target::Volume(id) => {
                if let Some(v) = self.volumes.get_mut(id) {
                    v.generation += 1;
                }
            }
            Target::Image(id) => {
                if let Some(i) = self.images.get_mut(id) {
                    i.generation += 1;
                }
            }
        }
    }

    /// Forget tokens that have expired.
    pub fn purge_tokens(&mut self, now: Instant) {
        if self.tokens.len() > 1024 {
            self.tokens.retain(|_, t| t.expires > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(id: &str) -> Volume {
        Volume {
            id: id.to_string(),
            tenant_id: "t".to_string(),
            user_id: "u".to_string(),
            name: None,
            description: None,
            size: 1,
            status: "creating".to_string(),
            volume_type: "General HDD".to_string(),
            availability_zone: "kr-pub-a".to_string(),
            snapshot_id: None,
            source_volid: None,
            metadata: BTreeMap::new(),
            attachments: vec![],
            encryption: None,
            bootable: false,
            multiattach: false,
            image_metadata: None,
            created_at: Utc::now(),
            updated_at: None,
            seq: 1,
            generation: 0,
        }
    }

    #[test]
    fn a_due_event_applies_and_a_later_one_waits() {
        let mut s = State::default();
        s.volumes.insert("v".into(), volume("v"));
        s.schedule(
            Target::Volume("v".into()),
            Duration::ZERO,
            Change::VolumeStatus("available"),
        );
        s.schedule(
            Target::Volume("v".into()),
            Duration::from_secs(3600),
            Change::VolumeGone,
        );
        s.advance(Instant::now());
        assert_eq!(s.volumes["v"].status, "available");
        assert!(s.volumes["v"].updated_at.is_some());
    }

    #[test]
    fn cancelling_makes_pending_events_stale() {
        let mut s = State::default();
        s.volumes.insert("v".into(), volume("v"));
        s.schedule(
            Target::Volume("v".into()),
            Duration::ZERO,
            Change::VolumeStatus("available"),
        );
        s.cancel(&Target::Volume("v".into()));
        s.advance(Instant::now());
        assert_eq!(s.volumes["v"].status, "creating");
    }
}
