//! How a cloud state bears on an object, written once for every kind: which volume and image
//! states are usable, which the cloud leaves by itself, and which need a person; and the
//! condition reason each state gives (its name in CamelCase).

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::cloud::model::{ImageStatus, VolumeStatus};

use super::conditions::Health;
use super::reasons::Reason;

/// How a cloud state bears on the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusClass {
    /// The resource can be used.
    Usable,
    /// The cloud is working on it and will finish by itself.
    Transitional,
    /// A person must act: an error state, a pending transfer, a state cloudvol does not know.
    NeedsPerson,
}

/// The volume states the cloud leaves by itself (NHN's Block Storage API lists the 20 states; docs/sources.md).
pub const VOLUME_TRANSITIONAL: &[VolumeStatus] = &[
    VolumeStatus::Creating,
    VolumeStatus::Attaching,
    VolumeStatus::Detaching,
    VolumeStatus::Maintenance,
    VolumeStatus::Deleting,
    VolumeStatus::BackingUp,
    VolumeStatus::RestoringBackup,
    VolumeStatus::Downloading,
    VolumeStatus::Uploading,
    VolumeStatus::Retyping,
    VolumeStatus::Extending,
];

/// Classifies a volume state. Unknown strings need a person: guessing could delete data.
pub fn volume_class(status: &VolumeStatus) -> StatusClass {
    use VolumeStatus::*;
    match status {
        Available | InUse | Reserved => StatusClass::Usable,
        transitional if VOLUME_TRANSITIONAL.contains(transitional) => StatusClass::Transitional,
        _ => StatusClass::NeedsPerson,
    }
}

/// Classifies an image state (NHN's Image API lists six, docs/sources.md; Glance adds a few).
pub fn image_class(status: &ImageStatus) -> StatusClass {
    use ImageStatus::*;
    match status {
        Active => StatusClass::Usable,
        Queued | Saving | Uploading | Importing => StatusClass::Transitional,
        Killed | Deleted | PendingDelete | Deactivated | Unknown(_) => StatusClass::NeedsPerson,
    }
}

/// The condition reason of a volume state: `in-use` → `InUse`, `error_backing-up` →
/// `ErrorBackingUp`, or `UnknownStatus`.
pub fn volume_reason(status: &VolumeStatus) -> String {
    match status {
        VolumeStatus::Unknown(_) => UNKNOWN_STATUS.to_string(),
        known => camel_case(known.as_str()),
    }
}

/// The condition reason of an image state: `pending_delete` → `PendingDelete`, or
/// `UnknownStatus`.
pub fn image_reason(status: &ImageStatus) -> String {
    match status {
        ImageStatus::Unknown(_) => UNKNOWN_STATUS.to_string(),
        known => camel_case(known.as_str()),
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// How long a volume may stay in a state that cloudvol's own request started before a person
/// should look: `None` for states cloudvol does not start (attaching, backing up, ...).
pub fn volume_deadline(status: &VolumeStatus) -> Option<Duration> {
    match status {
        VolumeStatus::Creating | VolumeStatus::Extending | VolumeStatus::Deleting => {
            Some(10 * MINUTE)
        }
        VolumeStatus::Uploading | VolumeStatus::Downloading | VolumeStatus::Retyping => {
            Some(60 * MINUTE)
        }
        _ => None,
    }
}

/// How long an image may stay `queued` or `saving` before a person should look.
pub fn image_deadline(status: &ImageStatus) -> Option<Duration> {
    match status {
        ImageStatus::Queued => Some(10 * MINUTE),
        ImageStatus::Saving => Some(60 * MINUTE),
        _ => None,
    }
}

/// When the status of a resource started, as cloudvol records it: kept while the status stays
/// what it was (`previous`), now when it changed.
pub fn status_since(
    previous: Option<(&str, Option<&str>)>,
    status: &str,
    now: Timestamp,
) -> String {
    match previous {
        Some((was, Some(since))) if was == status => since.to_string(),
        _ => now.to_string(),
    }
}

/// `health` unless the resource has been in its transitional `status` since `since` for longer
/// than its deadline (the operator-wide `deadline` if set, else `default`): then `Stalled`,
/// reason `ProgressDeadlineExceeded`. Polling goes on either way, so the object turns Ready by
/// itself if the cloud finishes later.
pub fn past_deadline(
    health: Health,
    what: &str,
    status: &str,
    since: Option<&str>,
    now: Timestamp,
    default: Option<Duration>,
    deadline: Option<Duration>,
) -> Health {
    let Some(limit) = default.map(|d| deadline.unwrap_or(d)) else {
        return health;
    };
    let Some(since) = since.and_then(|s| s.parse::<Timestamp>().ok()) else {
        return health;
    };
    if !health.is_reconciling() {
        return health;
    }
    let Ok(waited) = Duration::try_from(now.duration_since(since)) else {
        return health;
    };
    if waited <= limit {
        return health;
    }
    Health::stalled(
        Reason::ProgressDeadlineExceeded,
        format!(
            "{what} has been {status} for {} (since {since}), longer than its progress deadline \
             of {}; check it in the cloud. cloudvol keeps polling, and the object turns Ready by \
             itself if the cloud finishes",
            minutes(waited),
            minutes(limit)
        ),
    )
}

fn minutes(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h{}m", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// The reason of a state cloudvol does not know.
pub const UNKNOWN_STATUS: &str = "UnknownStatus";

fn camel_case(state: &str) -> String {
    state
        .split(['-', '_'])
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transitional_volume_state_is_a_known_one() {
        for status in VOLUME_TRANSITIONAL {
            assert!(VolumeStatus::KNOWN.contains(status), "{status:?}");
            assert_eq!(volume_class(status), StatusClass::Transitional);
        }
    }

    #[test]
    fn a_transitional_state_past_its_deadline_stalls() {
        let at = |s: i64| Timestamp::from_second(s).unwrap();
        let since = at(0).to_string();
        let waiting = || Health::reconciling(Reason::Creating, "waiting");
        let ten = Some(10 * MINUTE);
        // (what, seconds now, default, operator-wide, reason)
        type Case = (
            &'static str,
            i64,
            Option<Duration>,
            Option<Duration>,
            &'static str,
        );
        let cases: &[Case] = &[
            ("within the deadline", 599, ten, None, "Creating"),
            ("at the deadline", 600, ten, None, "Creating"),
            (
                "past the deadline",
                601,
                ten,
                None,
                "ProgressDeadlineExceeded",
            ),
            (
                "no deadline for this state",
                100_000,
                None,
                Some(MINUTE),
                "Creating",
            ),
            (
                "the operator-wide deadline wins",
                61,
                ten,
                Some(MINUTE),
                "ProgressDeadlineExceeded",
            ),
            (
                "a longer operator-wide deadline",
                601,
                ten,
                Some(20 * MINUTE),
                "Creating",
            ),
            ("a clock that went back", -5, ten, None, "Creating"),
        ];
        for (what, now, default, deadline, reason) in cases {
            let health = past_deadline(
                waiting(),
                "volume v1",
                "creating",
                Some(&since),
                at(*now),
                *default,
                *deadline,
            );
            assert_eq!(health.reason(), *reason, "{what}");
        }
        let stalled = past_deadline(
            waiting(),
            "volume v1",
            "creating",
            Some(&since),
            at(3 * 3600 + 120),
            ten,
            None,
        );
        assert!(stalled.is_stalled());
        assert!(
            stalled
                .message()
                .contains("volume v1 has been creating for 3h2m"),
            "{}",
            stalled.message()
        );
        // Only a Reconciling health can be overdue; no recorded start, no deadline.
        let ready = Health::ready(Reason::Shared, "fine");
        assert_eq!(
            past_deadline(
                ready.clone(),
                "x",
                "creating",
                Some(&since),
                at(9999),
                ten,
                None
            ),
            ready
        );
        assert_eq!(
            past_deadline(waiting(), "x", "creating", None, at(9999), ten, None).reason(),
            "Creating"
        );
    }

    #[test]
    fn a_status_keeps_its_start_until_it_changes() {
        let now = Timestamp::from_second(100).unwrap();
        let then = "2026-01-01T00:00:00Z";
        assert_eq!(
            status_since(Some(("creating", Some(then))), "creating", now),
            then
        );
        assert_eq!(
            status_since(Some(("creating", Some(then))), "available", now),
            now.to_string()
        );
        assert_eq!(status_since(None, "creating", now), now.to_string());
        assert_eq!(
            status_since(Some(("creating", None)), "creating", now),
            now.to_string()
        );
    }

    #[test]
    fn reasons_are_state_names_in_camel_case() {
        let cases = [
            (volume_reason(&VolumeStatus::parse("in-use")), "InUse"),
            (
                volume_reason(&VolumeStatus::parse("error_backing-up")),
                "ErrorBackingUp",
            ),
            (
                volume_reason(&VolumeStatus::parse("exploding")),
                "UnknownStatus",
            ),
            (
                image_reason(&ImageStatus::parse("pending_delete")),
                "PendingDelete",
            ),
            (
                image_reason(&ImageStatus::parse("exploding")),
                "UnknownStatus",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
