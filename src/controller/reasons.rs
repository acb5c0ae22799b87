//! Every condition reason a controller chooses, in one list. Reasons are part of the user
//! contract (docs/design.md §2): stable CamelCase names, each documented in `docs/api.md`, which
//! `tests/docs.rs` checks by iterating [`Reason::ALL`].
//!
//! Two families of reasons are not here, because they are derived rather than chosen: the
//! CamelCase name of a cloud state (`InUse`, `ErrorDeleting`, see [`super::states`]) and the
//! reason of a [`crate::cloud::CloudError`] (`CloudUnavailable`, `InvalidCredentials`, ...).

macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// A condition reason chosen by a rule.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $name,)*
        }

        impl Reason {
            /// Every reason, for the documentation check.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            /// The reason as written in conditions and Events.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)*
                }
            }
        }
    };
}

reasons! {
    // --- every kind ---
    /// A filter import matches several cloud resources; cloudvol never guesses.
    AmbiguousImport,
    /// An import matches nothing, or an unmanaged object has nothing to observe.
    ImportNotFound,
    /// The spec cannot be acted on as written.
    InvalidSpec,
    /// The `cloudvol.dev/paused` annotation holds a write.
    Paused,
    /// The object is finished with the cloud and its finalizer is being removed.
    Finalizing,
    /// A reconcile of the object panicked: a bug in cloudvol.
    InternalError,
    /// The cloud resource stayed in a transitional state longer than its progress deadline.
    ProgressDeadlineExceeded,
    /// The resource in `status.id` does not carry the object's mark: cloudvol does not touch it.
    ForeignResource,
    /// The credentials now act in another tenant or region than the resource lives in.
    CredentialsChanged,
    /// The credentials Secret does not exist.
    SecretNotFound,
    /// The credentials Secret has no usable clouds.yaml.
    InvalidCloudConfig,
    /// cloudvol is changing the cloud resource to match the spec.
    Updating,
    /// cloudvol made the cloud resource and the cloud is finishing it.
    Creating,
    /// The cloud is deleting the resource.
    Deleting,

    // --- Volume ---
    /// The volume is growing to the spec's size.
    Extending,
    /// The spec asks for a smaller size than the volume has.
    SizeMismatch,
    /// A field that cannot change after creation differs between spec and cloud.
    ImmutableFieldMismatch,
    /// An imported volume no longer exists.
    VolumeNotFound,
    /// The volume is attached: deletion waits for the detach.
    VolumeInUse,
    /// The cloud refused the delete (HTTP 400), with its own words.
    DeleteRefused,
    /// The volume is in a state the cloud cannot delete from.
    DeleteBlocked,
    /// The cloud failed to delete the volume several times.
    DeleteFailed,
    /// cloudvol is asking the cloud to change the volume's type.
    Retyping,
    /// The cloud refused to change the volume's type.
    RetypeRefused,
    /// The cloud accepted a change of the volume's type, then gave it up.
    RetypeNotApplied,
    /// The image to make the volume from is not visible to the Volume's credentials, or is
    /// shared with their tenant without being accepted.
    ImageNotAvailable,
    /// `spec.resource.size` is smaller than the image to make the volume from needs.
    VolumeTooSmall,

    // --- VolumeImage ---
    /// The image is being made from the volume.
    Uploading,
    /// The source Volume is not Ready, or its volume is busy.
    WaitingForVolume,
    /// The source volume does not exist in the cloud.
    SourceVolumeNotFound,
    /// The cloud refused the upload request.
    UploadRefused,
    /// An imported image no longer exists, or the image cannot be found.
    ImageNotFound,
    /// The image is protected: the cloud refuses the change or the deletion.
    ImageProtected,
    /// The spec unprotected the image, so that the deletion can proceed.
    Unprotecting,
    /// ImageShares that are being deleted still share the image.
    WaitingForImageShares,
    /// ImageShares that are not being deleted still share the image.
    ReferencedByImageShare,
    /// Volumes are still being made from the image: its deletion waits for them.
    ImageInUse,

    // --- ImageShare ---
    /// The image is shared with every listed member.
    Shared,
    /// The VolumeImage of an ImageShare's `imageRef` (or a Volume's `image.ref`) is not Ready
    /// yet.
    WaitingForImage,
    /// The VolumeImage of an ImageShare's `imageRef` (or a Volume's `image.ref`) is being
    /// deleted.
    ImageDeleting,
    /// The VolumeImage of `imageRef` is Stalled.
    ImageStalled,
    /// The image (to share, or to make a volume from) is still being made.
    ImageNotActive,
    /// The image will never be usable without a person.
    ImageUnusable,
    /// The credentials are not the image owner's.
    NotImageOwner,
    /// The image's visibility is not one cloudvol narrows to shared.
    VisibilityConflict,
    /// An unmanaged ImageShare's image is not shared.
    NotShared,
    /// An unmanaged ImageShare lists a tenant that is not a member.
    MemberMissing,
    /// A member tenant rejected the share.
    MemberRejected,
    /// The cloud reports a member status cloudvol does not know.
    UnknownMemberStatus,
    /// Another ImageShare of the same image owns a member this one lists.
    MemberClaimed,
    /// The member credentials authenticate as another tenant.
    MemberCredentialsMismatch,
    /// cloudvol is setting the image's visibility to shared.
    SettingVisibility,
    /// cloudvol is adding a member tenant.
    AddingMember,
    /// cloudvol is accepting the share with the member's credentials.
    AcceptingShare,
    /// cloudvol is removing a member it added.
    RemovingMember,
    /// cloudvol is restoring the visibility it changed.
    RestoringVisibility,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Reason> for String {
    fn from(reason: Reason) -> String {
        reason.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn reasons_are_unique_camel_case_names() {
        let mut seen = std::collections::BTreeSet::new();
        for reason in Reason::ALL {
            let name = reason.as_str();
            assert!(seen.insert(name), "{name} twice");
            assert!(name.chars().next().is_some_and(|c| c.is_ascii_uppercase()));
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
        }
    }
}
