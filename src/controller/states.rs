//! How a cloud state bears on an object, written once for every kind: which volume and image
//! states are usable, which the cloud leaves by itself, and which need a person; and the
//! condition reason each state gives (its name in CamelCase).

use crate::cloud::model::{ImageStatus, VolumeStatus};

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
