//! The ImageShare rules, as pure functions from the spec, what the cloud reported and what the
//! status recorded to the next single write. No I/O here: every rule is a row in a table test.
//!
//! Sharing an image takes three steps by two tenants (NHN's Image API, docs/sources.md): the owner sets the visibility
//! to `shared`, the owner adds each tenant as a member, and each member tenant accepts with its
//! own token. A reconcile makes at most one of those writes; the status records what this object
//! did (the members it added, the visibility it changed) before it does it, so that deleting the
//! object undoes exactly that and nothing else (docs/design.md §4, §5).

use crate::api::condition_type::STALLED;
use crate::api::{ObservedMember, ShareMember, VolumeImage};
use crate::cloud::CloudError;
use crate::cloud::model::{Image, ImageStatus, Member, MemberStatus, Visibility};
use crate::controller::conditions::Health;
use crate::controller::reasons::Reason;
use crate::controller::states::{StatusClass, image_class};
use crate::controller::{CloudKind, cloud_error_health, paused, ready_at_generation};

/// `status.members[].status` of a listed tenant that is not (yet) a member of the image.
pub const ABSENT: &str = "absent";

/// The one cloud write a reconcile makes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// JSON-patch `replace /visibility shared`, by the owner. `status.previousVisibility` is
    /// recorded first.
    SetVisibility,
    /// `POST /members` for this tenant, by the owner. `addedByThisObject` is recorded first.
    AddMember(String),
    /// `PUT /members/{tenant}` `accepted`, with the member tenant's own credentials (the
    /// owner's token gets 403).
    AcceptAs(String),
    /// `DELETE /members/{tenant}`, by the owner: only members this object added.
    RemoveMember(String),
    /// JSON-patch `/visibility` back to what it was before this object shared the image.
    RestoreVisibility(Visibility),
}

impl Write {
    /// The condition reason while the write is under way, and the Event's once it is made.
    pub fn reason(&self) -> Reason {
        match self {
            Write::SetVisibility => Reason::SettingVisibility,
            Write::AddMember(_) => Reason::AddingMember,
            Write::AcceptAs(_) => Reason::AcceptingShare,
            Write::RemoveMember(_) => Reason::RemovingMember,
            Write::RestoreVisibility(_) => Reason::RestoringVisibility,
        }
    }

    /// What the write does, for messages and Events.
    pub fn describe(&self, image_id: &str) -> String {
        match self {
            Write::SetVisibility => format!("set the visibility of image {image_id} to shared"),
            Write::AddMember(t) => format!("add tenant {t} as a member of image {image_id}"),
            Write::AcceptAs(t) => {
                format!("accept the share of image {image_id} as tenant {t}, with its credentials")
            }
            Write::RemoveMember(t) => {
                format!("remove tenant {t} (which this ImageShare added) from image {image_id}")
            }
            Write::RestoreVisibility(v) => {
                format!("restore the visibility of image {image_id} to {v}")
            }
        }
    }
}

/// What to do next, and the health to report meanwhile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The write to make now, if any (never while paused or unmanaged).
    pub write: Option<Write>,
    pub health: Health,
}

/// What the object asks for.
pub struct Wanted<'a> {
    /// `spec.members`.
    pub members: &'a [ShareMember],
    /// Listed tenants another ImageShare of the same image owns, with that ImageShare's name
    /// (see [`claims`]): this object neither adds nor removes them.
    pub claimed: &'a [(String, String)],
    /// `managementPolicy: managed`; `unmanaged` observes only.
    pub managed: bool,
    /// The `cloudvol.dev/paused` annotation is set.
    pub paused: bool,
}

/// What the owner's credentials saw, and what the status recorded.
pub struct Observed<'a> {
    pub image: &'a Image,
    /// The tenant the owner's credentials act as, when the cloud says.
    pub project_id: Option<&'a str>,
    /// The image's members as the owner lists them (empty unless the image is `shared`).
    pub members: &'a [Member],
    /// `status.members`: which tenants this object added.
    pub recorded: &'a [ObservedMember],
    /// `status.previousVisibility`: set when this object changed the visibility.
    pub previous_visibility: Option<&'a str>,
}

impl Observed<'_> {
    fn member(&self, tenant: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.member_id == tenant)
    }

    fn added_by_this_object(&self, tenant: &str) -> bool {
        added_by_this_object(self.recorded, tenant)
    }
}

fn added_by_this_object(recorded: &[ObservedMember], tenant: &str) -> bool {
    recorded
        .iter()
        .any(|m| m.tenant_id == tenant && m.added_by_this_object)
}

// --- the image -------------------------------------------------------------------------------

/// The health the image's status alone implies; `None` when it is `active`.
pub fn image_health(image: &Image) -> Option<Health> {
    let status = image.status.as_str();
    match image_class(&image.status) {
        StatusClass::Usable => None,
        StatusClass::Transitional => Some(Health::reconciling(
            Reason::ImageNotActive,
            format!(
                "image {} is {status}; cloudvol shares it once it is active",
                image.id
            ),
        )),
        StatusClass::NeedsPerson => Some(Health::stalled(
            Reason::ImageUnusable,
            format!(
                "image {} is {status:?} and cannot be shared; make a new image (or fix this one \
                 in the cloud) and share that",
                image.id
            ),
        )),
    }
}

/// The image could not be read. A 404 means the ID is wrong, or the image belongs to a tenant
/// that has not shared it with the credentials' tenant: both need a person.
pub fn image_unreadable(image_id: &str, err: &CloudError) -> Health {
    match err {
        CloudError::NotFound { message } => Health::stalled(
            Reason::ImageNotFound,
            format!(
                "the cloud cannot find image {image_id} for the credentials in \
                 cloudCredentialsRef: {message}. Check the image ID, and that the credentials are \
                 the image owner's"
            ),
        ),
        other => cloud_error_health("cannot read the image", other),
    }
}

/// The owner refused a visibility change. NHN Cloud refuses every change to a protected image,
/// visibility included; say so, with the cloud's words.
pub fn visibility_refused(image: &Image, err: &CloudError) -> Health {
    match err {
        CloudError::Forbidden { message } if image.protected => Health::stalled(
            Reason::ImageProtected,
            format!(
                "the cloud refused to change the visibility of image {}: {message}. The image is \
                 protected, and NHN Cloud allows no change to a protected image: set \
                 spec.resource.visibility: shared on its VolumeImage (which lifts the protection \
                 for the change and restores it), or unprotect the image",
                image.id
            ),
        ),
        other => cloud_error_health(
            &format!(
                "the cloud refused to change the visibility of image {}",
                image.id
            ),
            other,
        ),
    }
}

/// The member credentials authenticate as another tenant than the member they are for: the
/// acceptance would fail (404), so say what is wrong instead.
pub fn member_credentials_mismatch(tenant: &str, project: Option<&str>) -> Option<Health> {
    let project = project?;
    (project != tenant).then(|| {
        Health::stalled(
            Reason::MemberCredentialsMismatch,
            format!(
                "the memberCredentialsRef of member {tenant} authenticates as tenant {project}; \
                 only the member tenant itself can accept a share, so give credentials of tenant \
                 {tenant}"
            ),
        )
    })
}

/// Neither or both of `imageRef` and `imageID` (the API server refuses it).
pub fn no_image_given() -> Health {
    Health::stalled(
        Reason::InvalidSpec,
        "give exactly one image: imageRef or imageID",
    )
}

/// What this ImageShare did to image `old` is undone; it shares `new` now.
pub fn moved(old: &str, new: &str) -> Health {
    Health::reconciling(
        Reason::AddingMember,
        format!(
            "the members this ImageShare added to image {old} are removed; sharing image {new}"
        ),
    )
}

// --- imageRef --------------------------------------------------------------------------------

/// The image ID a `VolumeImage` offers, or the health to report while there is none.
pub fn image_from_ref(name: &str, volume_image: Option<&VolumeImage>) -> Result<String, Health> {
    let Some(vi) = volume_image else {
        return Err(Health::reconciling(
            Reason::WaitingForImage,
            format!(
                "VolumeImage {name} does not exist yet; cloudvol shares its image once it is Ready"
            ),
        ));
    };
    if vi.metadata.deletion_timestamp.is_some() {
        return Err(Health::stalled(
            Reason::ImageDeleting,
            format!(
                "VolumeImage {name} is being deleted, and it waits for the ImageShares that \
                 reference it; delete this ImageShare too"
            ),
        ));
    }
    let stalled = vi.conditions().iter().find(|c| {
        c.type_ == STALLED && c.status == "True" && c.observed_generation == vi.metadata.generation
    });
    if let Some(stalled) = stalled {
        return Err(Health::stalled(
            Reason::ImageStalled,
            format!(
                "VolumeImage {name} is stalled ({}): {}",
                stalled.reason, stalled.message
            ),
        ));
    }
    match vi.status.as_ref().and_then(|s| s.id.clone()) {
        Some(id) if ready_at_generation(vi) => Ok(id),
        _ => Err(Health::reconciling(
            Reason::WaitingForImage,
            format!("VolumeImage {name} is not Ready yet; cloudvol shares its image once it is"),
        )),
    }
}

// --- apply -----------------------------------------------------------------------------------

/// Compares the spec with the image and its members and picks the next step. Members another
/// ImageShare owns are left to it; once everything else is done, that is `Stalled`,
/// `MemberClaimed`, naming the owner.
pub fn decide(wanted: &Wanted<'_>, observed: &Observed<'_>) -> Decision {
    let own: Vec<ShareMember> = wanted
        .members
        .iter()
        .filter(|m| !wanted.claimed.iter().any(|(t, _)| *t == m.tenant_id))
        .cloned()
        .collect();
    let decision = decide_own(
        &Wanted {
            members: &own,
            ..*wanted
        },
        observed,
    );
    if decision.write.is_some() || !decision.health.is_ready() || wanted.claimed.is_empty() {
        return decision;
    }
    let claims: Vec<String> = wanted
        .claimed
        .iter()
        .map(|(tenant, owner)| format!("tenant {tenant} by ImageShare {owner}"))
        .collect();
    Decision {
        write: None,
        health: Health::stalled(
            Reason::MemberClaimed,
            format!(
                "another ImageShare of image {} owns a member this one lists ({}); one member has \
                 one owner, so this ImageShare neither adds nor removes it: remove it from \
                 spec.members here, or from the other ImageShare",
                observed.image.id,
                claims.join(", ")
            ),
        ),
    }
}

/// Which of this ImageShare's listed tenants another ImageShare of the same image owns: the one
/// that recorded adding it, or, when both or neither did, the older one (by creation time, then
/// name). `others` are the other ImageShares of the namespace.
pub fn claims(
    me: &ShareView<'_>,
    image_id: &str,
    others: &[ShareView<'_>],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for member in me.listed {
        let tenant = member.tenant_id.as_str();
        let i_added = added_by_this_object(me.recorded, tenant);
        let owner = others.iter().find(|other| {
            other.name != me.name
                && other.image_id == Some(image_id)
                && other.listed.iter().any(|m| m.tenant_id == tenant)
                && match (i_added, added_by_this_object(other.recorded, tenant)) {
                    (true, false) => false,
                    (false, true) => true,
                    // Creation times are RFC 3339 in UTC: text order is time order.
                    _ => (other.created, other.name) < (me.created, me.name),
                }
        });
        if let Some(other) = owner {
            out.push((tenant.to_string(), other.name.to_string()));
        }
    }
    out
}

/// What [`claims`] reads of one ImageShare.
pub struct ShareView<'a> {
    pub name: &'a str,
    /// `metadata.creationTimestamp`, RFC 3339.
    pub created: Option<&'a str>,
    /// `spec.members`.
    pub listed: &'a [ShareMember],
    /// `status.members`.
    pub recorded: &'a [ObservedMember],
    /// The image it shares (`status.id`, else `spec.imageID`).
    pub image_id: Option<&'a str>,
}

fn decide_own(wanted: &Wanted<'_>, observed: &Observed<'_>) -> Decision {
    let image = observed.image;
    if let Some(health) = image_health(image) {
        return Decision {
            write: None,
            health,
        };
    }
    if !wanted.managed {
        return observe_only(wanted, observed);
    }
    if let (Some(owner), Some(project)) = (image.owner.as_deref(), observed.project_id)
        && owner != project
    {
        return Decision {
            write: None,
            health: Health::stalled(
                Reason::NotImageOwner,
                format!(
                    "image {} belongs to tenant {owner}, but cloudCredentialsRef authenticates as \
                     tenant {project}; only the owner can share an image, so give the owner's \
                     credentials",
                    image.id
                ),
            ),
        };
    }
    match &image.visibility {
        Visibility::Shared => {}
        Visibility::Private => return with_write(wanted, image, Write::SetVisibility),
        other => {
            return Decision {
                write: None,
                health: Health::stalled(
                    Reason::VisibilityConflict,
                    format!(
                        "image {} is {other}: members apply only to shared images, and cloudvol \
                         does not narrow a {other} image to shared; make it shared yourself if \
                         that is what you mean",
                        image.id
                    ),
                ),
            };
        }
    }
    if let Some(write) = next_write(wanted, observed) {
        return with_write(wanted, image, write);
    }
    Decision {
        write: None,
        health: settled_health(wanted, observed),
    }
}

/// Members first (in spec order), then acceptances, then removals.
fn next_write(wanted: &Wanted<'_>, observed: &Observed<'_>) -> Option<Write> {
    if let Some(missing) = wanted
        .members
        .iter()
        .find(|m| observed.member(&m.tenant_id).is_none())
    {
        return Some(Write::AddMember(missing.tenant_id.clone()));
    }
    if let Some(to_accept) = wanted.members.iter().find(|m| {
        m.member_credentials_ref.is_some()
            && observed
                .member(&m.tenant_id)
                .is_some_and(|c| c.status == MemberStatus::Pending)
    }) {
        return Some(Write::AcceptAs(to_accept.tenant_id.clone()));
    }
    observed
        .members
        .iter()
        .find(|m| {
            !wanted.members.iter().any(|w| w.tenant_id == m.member_id)
                && observed.added_by_this_object(&m.member_id)
        })
        .map(|m| Write::RemoveMember(m.member_id.clone()))
}

fn with_write(wanted: &Wanted<'_>, image: &Image, write: Write) -> Decision {
    let what = write.describe(&image.id);
    if wanted.paused {
        return Decision {
            write: None,
            health: paused(&what),
        };
    }
    Decision {
        health: Health::reconciling(
            write.reason(),
            format!("cloudvol is asking the cloud to {what}"),
        ),
        write: Some(write),
    }
}

/// `managementPolicy: unmanaged`: report what is there, never write.
fn observe_only(wanted: &Wanted<'_>, observed: &Observed<'_>) -> Decision {
    let image = observed.image;
    let health = if image.visibility != Visibility::Shared {
        Health::stalled(
            Reason::NotShared,
            format!(
                "image {} is {}, not shared; this ImageShare is unmanaged, so cloudvol does not \
                 change it",
                image.id, image.visibility
            ),
        )
    } else {
        let missing: Vec<&str> = wanted
            .members
            .iter()
            .filter(|m| observed.member(&m.tenant_id).is_none())
            .map(|m| m.tenant_id.as_str())
            .collect();
        if missing.is_empty() {
            settled_health(wanted, observed)
        } else {
            Health::stalled(
                Reason::MemberMissing,
                format!(
                    "{} not a member of image {}; this ImageShare is unmanaged, so cloudvol does \
                     not add members: add them in the cloud",
                    tenants(&missing, "is", "are"),
                    image.id
                ),
            )
        }
    };
    Decision {
        write: None,
        health,
    }
}

/// Every listed member is present and nothing is left to write: Ready, unless a member said no.
fn settled_health(wanted: &Wanted<'_>, observed: &Observed<'_>) -> Health {
    let image_id = &observed.image.id;
    let listed: Vec<(&ShareMember, &Member)> = wanted
        .members
        .iter()
        .filter_map(|w| observed.member(&w.tenant_id).map(|m| (w, m)))
        .collect();
    let rejected: Vec<&ShareMember> = listed
        .iter()
        .filter(|(_, m)| m.status == MemberStatus::Rejected)
        .map(|(w, _)| *w)
        .collect();
    if !rejected.is_empty() {
        let names: Vec<&str> = rejected.iter().map(|w| w.tenant_id.as_str()).collect();
        let with_credentials = rejected.iter().any(|w| w.member_credentials_ref.is_some());
        let note = if with_credentials {
            " cloudvol does not turn a rejection back into an acceptance with the member's \
             credentials: a rejection is a person's decision."
        } else {
            ""
        };
        return Health::stalled(
            Reason::MemberRejected,
            format!(
                "{} the share of image {image_id}.{note} Ask the tenant to accept it \
                 (PUT /v2/images/{image_id}/members/<tenant> {{\"status\": \"accepted\"}} with its \
                 own token), or remove it from spec.members",
                tenants(&names, "rejected", "rejected"),
            ),
        );
    }
    let unknown: Vec<String> = listed
        .iter()
        .filter(|(_, m)| matches!(m.status, MemberStatus::Unknown(_)))
        .map(|(w, m)| format!("{} ({:?})", w.tenant_id, m.status.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Health::stalled(
            Reason::UnknownMemberStatus,
            format!(
                "the cloud reports a member status cloudvol does not know for image {image_id}: \
                 {}; check the members in the cloud",
                unknown.join(", ")
            ),
        );
    }
    let accepted = listed
        .iter()
        .filter(|(_, m)| m.status == MemberStatus::Accepted)
        .count();
    let pending = listed.len() - accepted;
    let mut message = format!(
        "image {image_id} is shared with {}; ",
        plural(listed.len(), "member", "members")
    );
    if pending == 0 {
        message.push_str(if accepted == 1 {
            "it accepted"
        } else {
            "all accepted"
        });
    } else {
        message.push_str(&format!(
            "{accepted} accepted, {pending} pending ({})",
            if pending == 1 {
                "the tenant accepts it"
            } else {
                "the tenants accept it"
            }
        ));
    }
    Health::ready(Reason::Shared, message)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn tenants(names: &[&str], verb_one: &str, verb_many: &str) -> String {
    if names.len() == 1 {
        format!("tenant {} {verb_one}", names[0])
    } else {
        format!("tenants {} {verb_many}", names.join(", "))
    }
}

// --- status ----------------------------------------------------------------------------------

/// `status.members`: every listed tenant (as the cloud reports it, or `absent`), then the
/// unlisted members this object added and has not removed yet. `adding` is a tenant about to be
/// added: it is recorded as this object's before the call, so that a crash between the call and
/// the next status write still knows whose member it is.
pub fn observed_members(
    spec: &[ShareMember],
    cloud: &[Member],
    recorded: &[ObservedMember],
    adding: Option<&str>,
) -> Vec<ObservedMember> {
    let entry = |tenant: &str| {
        let added = added_by_this_object(recorded, tenant) || adding == Some(tenant);
        match cloud.iter().find(|m| m.member_id == tenant) {
            Some(m) => ObservedMember {
                tenant_id: tenant.to_string(),
                status: m.status.as_str().to_string(),
                added_by_this_object: added,
                created_at: m.created_at.clone(),
                updated_at: m.updated_at.clone(),
            },
            None => ObservedMember {
                tenant_id: tenant.to_string(),
                status: ABSENT.to_string(),
                added_by_this_object: added,
                created_at: None,
                updated_at: None,
            },
        }
    };
    let mut out: Vec<ObservedMember> = spec.iter().map(|m| entry(&m.tenant_id)).collect();
    out.extend(
        recorded
            .iter()
            .filter(|r| r.added_by_this_object)
            .filter(|r| !spec.iter().any(|m| m.tenant_id == r.tenant_id))
            .filter(|r| cloud.iter().any(|m| m.member_id == r.tenant_id))
            .map(|r| entry(&r.tenant_id)),
    );
    out
}

/// (listed members present, listed members accepted).
pub fn counts(spec: &[ShareMember], cloud: &[Member]) -> (i32, i32) {
    let present: Vec<&Member> = spec
        .iter()
        .filter_map(|w| cloud.iter().find(|m| m.member_id == w.tenant_id))
        .collect();
    let accepted = present
        .iter()
        .filter(|m| m.status == MemberStatus::Accepted)
        .count();
    (present.len() as i32, accepted as i32)
}

// --- deletion --------------------------------------------------------------------------------

/// What deleting the object does next (docs/design.md §4: only what this object did is undone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteStep {
    /// Nothing (more) to undo: remove the finalizer. Says why.
    Done(String),
    /// Make this write, then look again.
    Write(Write, Health),
    /// A rule holds the deletion until a person acts.
    Blocked(Health),
}

/// The deletion rules. `observed` is `None` when the image is gone.
pub fn decide_delete(observed: Option<&Observed<'_>>, is_paused: bool) -> DeleteStep {
    let Some(observed) = observed else {
        return DeleteStep::Done("the image is gone".into());
    };
    let image = observed.image;
    if matches!(
        image.status,
        ImageStatus::Killed | ImageStatus::Deleted | ImageStatus::PendingDelete
    ) {
        return DeleteStep::Done(format!("image {} is {}", image.id, image.status));
    }
    if image.visibility != Visibility::Shared {
        // Members of an image that is not shared are inert, and Glance refuses to touch them.
        return DeleteStep::Done(format!(
            "image {} is {}, no longer shared",
            image.id, image.visibility
        ));
    }
    let ours = observed
        .members
        .iter()
        .find(|m| observed.added_by_this_object(&m.member_id));
    let write = if let Some(member) = ours {
        Write::RemoveMember(member.member_id.clone())
    } else {
        let previous = observed
            .previous_visibility
            .map(Visibility::parse)
            .filter(|v| *v != Visibility::Shared);
        let Some(previous) = previous else {
            return DeleteStep::Done(format!(
                "the members this ImageShare added are removed from image {}; its visibility \
                 was shared before, so it stays shared",
                image.id
            ));
        };
        if !observed.members.is_empty() {
            let others: Vec<&str> = observed
                .members
                .iter()
                .map(|m| m.member_id.as_str())
                .collect();
            return DeleteStep::Done(format!(
                "the members this ImageShare added are removed from image {}; it stays shared \
                 because {} (not added by this ImageShare)",
                image.id,
                tenants(&others, "is still a member", "are still members")
            ));
        }
        Write::RestoreVisibility(previous)
    };
    let what = write.describe(&image.id);
    if is_paused {
        return DeleteStep::Blocked(paused(&what));
    }
    let health = Health::reconciling(
        write.reason(),
        format!("cloudvol is asking the cloud to {what}"),
    );
    DeleteStep::Write(write, health)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CloudCredentialsRef, VolumeImageSpec, VolumeImageStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    const OWNER: &str = "owner0000000000000000000000000000";
    const A: &str = "aaaa0000000000000000000000000000";
    const B: &str = "bbbb0000000000000000000000000000";
    const C: &str = "cccc0000000000000000000000000000";

    fn image(status: &str, visibility: &str) -> Image {
        Image {
            id: "img-1".into(),
            status: ImageStatus::parse(status),
            visibility: Visibility::parse(visibility),
            owner: Some(OWNER.into()),
            ..Default::default()
        }
    }

    fn member(tenant: &str, status: &str) -> Member {
        Member {
            image_id: "img-1".into(),
            member_id: tenant.into(),
            status: MemberStatus::parse(status),
            created_at: Some("2026-01-01T00:00:00Z".into()),
            updated_at: Some("2026-01-02T00:00:00Z".into()),
        }
    }

    /// A listed member; with credentials when `accepts`.
    fn listed(tenant: &str, accepts: bool) -> ShareMember {
        ShareMember {
            tenant_id: tenant.into(),
            member_credentials_ref: accepts.then(|| CloudCredentialsRef {
                secret_name: "cloud".into(),
                cloud_name: "partner".into(),
            }),
        }
    }

    fn ours(tenant: &str) -> ObservedMember {
        ObservedMember {
            tenant_id: tenant.into(),
            status: "pending".into(),
            added_by_this_object: true,
            ..Default::default()
        }
    }

    fn theirs(tenant: &str) -> ObservedMember {
        ObservedMember {
            added_by_this_object: false,
            ..ours(tenant)
        }
    }

    struct Case {
        name: &'static str,
        image: Image,
        spec: Vec<ShareMember>,
        cloud: Vec<Member>,
        recorded: Vec<ObservedMember>,
        managed: bool,
        paused: bool,
        write: Option<Write>,
        reason: &'static str,
    }

    fn case(name: &'static str) -> Case {
        Case {
            name,
            image: image("active", "shared"),
            spec: vec![listed(A, true)],
            cloud: vec![],
            recorded: vec![],
            managed: true,
            paused: false,
            write: None,
            reason: "",
        }
    }

    fn run(c: &Case) -> Decision {
        let wanted = Wanted {
            members: &c.spec,
            claimed: &[],
            managed: c.managed,
            paused: c.paused,
        };
        let observed = Observed {
            image: &c.image,
            project_id: Some(OWNER),
            members: &c.cloud,
            recorded: &c.recorded,
            previous_visibility: None,
        };
        decide(&wanted, &observed)
    }

    /// Every image status Glance can report, and one it does not.
    const IMAGE_TABLE: &[(&str, StatusClass, &str)] = &[
        ("queued", StatusClass::Transitional, "ImageNotActive"),
        ("saving", StatusClass::Transitional, "ImageNotActive"),
        ("active", StatusClass::Usable, "AddingMember"),
        ("killed", StatusClass::NeedsPerson, "ImageUnusable"),
        ("deleted", StatusClass::NeedsPerson, "ImageUnusable"),
        ("pending_delete", StatusClass::NeedsPerson, "ImageUnusable"),
        ("deactivated", StatusClass::NeedsPerson, "ImageUnusable"),
        ("uploading", StatusClass::Transitional, "ImageNotActive"),
        ("importing", StatusClass::Transitional, "ImageNotActive"),
        ("exploding", StatusClass::NeedsPerson, "ImageUnusable"),
    ];

    #[test]
    fn every_image_status_maps_to_one_condition() {
        assert_eq!(IMAGE_TABLE.len(), ImageStatus::KNOWN.len() + 1);
        for (status, class, reason) in IMAGE_TABLE {
            assert_eq!(&image_class(&ImageStatus::parse(status)), class, "{status}");
            let c = Case {
                image: image(status, "shared"),
                ..case("image status")
            };
            let d = run(&c);
            assert_eq!(d.health.reason(), *reason, "{status}: {:?}", d.health);
            match class {
                StatusClass::Usable => assert!(d.write.is_some(), "{status}"),
                StatusClass::Transitional => {
                    assert!(d.health.is_reconciling() && d.write.is_none(), "{status}")
                }
                StatusClass::NeedsPerson => {
                    assert!(d.health.is_stalled() && d.write.is_none(), "{status}");
                    assert!(d.health.message().contains(status), "{status}");
                }
            }
        }
    }

    #[test]
    fn every_member_state_with_and_without_credentials() {
        // (cloud member status or None for absent, has credentials, write, reason)
        let table: &[(Option<&str>, bool, Option<Write>, &str)] = &[
            (None, true, Some(Write::AddMember(A.into())), "AddingMember"),
            (
                None,
                false,
                Some(Write::AddMember(A.into())),
                "AddingMember",
            ),
            (
                Some("pending"),
                true,
                Some(Write::AcceptAs(A.into())),
                "AcceptingShare",
            ),
            (Some("pending"), false, None, "Shared"),
            (Some("accepted"), true, None, "Shared"),
            (Some("accepted"), false, None, "Shared"),
            // A rejection is a person's decision: never overturned, with or without credentials.
            (Some("rejected"), true, None, "MemberRejected"),
            (Some("rejected"), false, None, "MemberRejected"),
            (Some("maybe"), true, None, "UnknownMemberStatus"),
            (Some("maybe"), false, None, "UnknownMemberStatus"),
        ];
        for (status, credentials, write, reason) in table {
            let c = Case {
                spec: vec![listed(A, *credentials)],
                cloud: status.map(|s| member(A, s)).into_iter().collect(),
                ..case("member state")
            };
            let d = run(&c);
            assert_eq!(&d.write, write, "{status:?} credentials={credentials}");
            assert_eq!(
                d.health.reason(),
                *reason,
                "{status:?} credentials={credentials}: {:?}",
                d.health
            );
        }
    }

    #[test]
    fn decide_table() {
        let cases = vec![
            Case {
                image: image("active", "private"),
                write: Some(Write::SetVisibility),
                reason: "SettingVisibility",
                ..case("a private image is made shared first")
            },
            Case {
                image: image("active", "private"),
                paused: true,
                reason: "Paused",
                ..case("paused holds the visibility change")
            },
            Case {
                image: image("active", "public"),
                reason: "VisibilityConflict",
                ..case("a public image is never narrowed")
            },
            Case {
                image: image("active", "community"),
                reason: "VisibilityConflict",
                ..case("a community image is never narrowed")
            },
            Case {
                image: Image {
                    owner: Some(B.into()),
                    ..image("active", "shared")
                },
                reason: "NotImageOwner",
                ..case("another tenant's image")
            },
            Case {
                image: Image {
                    owner: None,
                    ..image("active", "shared")
                },
                write: Some(Write::AddMember(A.into())),
                reason: "AddingMember",
                ..case("an unknown owner is left to the cloud to judge")
            },
            Case {
                spec: vec![listed(A, false), listed(B, false)],
                cloud: vec![member(A, "pending")],
                write: Some(Write::AddMember(B.into())),
                reason: "AddingMember",
                ..case("the missing member is added, the present one kept")
            },
            Case {
                spec: vec![listed(A, true), listed(B, false)],
                cloud: vec![member(A, "pending")],
                write: Some(Write::AddMember(B.into())),
                reason: "AddingMember",
                ..case("adds come before acceptances")
            },
            Case {
                spec: vec![listed(A, false)],
                cloud: vec![member(A, "accepted"), member(B, "pending")],
                recorded: vec![theirs(A), ours(B)],
                write: Some(Write::RemoveMember(B.into())),
                reason: "RemovingMember",
                ..case("an unlisted member this object added is removed")
            },
            Case {
                spec: vec![listed(A, false)],
                cloud: vec![member(A, "accepted"), member(C, "accepted")],
                recorded: vec![theirs(A)],
                reason: "Shared",
                ..case("a member someone else added is never touched")
            },
            Case {
                spec: vec![listed(A, false)],
                cloud: vec![member(A, "accepted"), member(B, "pending")],
                recorded: vec![ours(B)],
                paused: true,
                reason: "Paused",
                ..case("paused holds a removal")
            },
            Case {
                spec: vec![listed(A, false), listed(B, true)],
                cloud: vec![member(A, "rejected"), member(B, "pending")],
                write: Some(Write::AcceptAs(B.into())),
                reason: "AcceptingShare",
                ..case("one rejection does not stop the other members")
            },
            Case {
                spec: vec![listed(A, false)],
                cloud: vec![member(A, "pending")],
                paused: true,
                reason: "Shared",
                ..case("paused with nothing to do is ready")
            },
            Case {
                image: image("active", "private"),
                managed: false,
                reason: "NotShared",
                ..case("unmanaged never shares")
            },
            Case {
                managed: false,
                reason: "MemberMissing",
                ..case("unmanaged never adds")
            },
            Case {
                managed: false,
                cloud: vec![member(A, "pending")],
                reason: "Shared",
                ..case("unmanaged never accepts, and pending is fine")
            },
            Case {
                managed: false,
                cloud: vec![member(A, "rejected")],
                reason: "MemberRejected",
                ..case("unmanaged reports a rejection")
            },
            Case {
                managed: false,
                image: Image {
                    owner: Some(B.into()),
                    ..image("active", "shared")
                },
                cloud: vec![member(A, "accepted")],
                reason: "Shared",
                ..case("unmanaged may observe another tenant's image")
            },
            Case {
                managed: false,
                image: image("saving", "shared"),
                reason: "ImageNotActive",
                ..case("unmanaged waits for the image too")
            },
        ];
        for c in cases {
            let d = run(&c);
            assert_eq!(d.write, c.write, "{}", c.name);
            assert_eq!(d.health.reason(), c.reason, "{}: {:?}", c.name, d.health);
        }
    }

    #[test]
    fn ready_says_who_is_pending_and_who_accepts() {
        let c = Case {
            spec: vec![listed(A, true), listed(B, false)],
            cloud: vec![member(A, "accepted"), member(B, "pending")],
            ..case("ready message")
        };
        let d = run(&c);
        assert!(d.health.is_ready());
        assert_eq!(
            d.health.message(),
            "image img-1 is shared with 2 members; 1 accepted, 1 pending (the tenant accepts it)"
        );
        let c = Case {
            cloud: vec![member(A, "accepted")],
            ..case("ready message")
        };
        assert_eq!(
            run(&c).health.message(),
            "image img-1 is shared with 1 member; it accepted"
        );
    }

    #[test]
    fn a_rejection_names_the_tenant_and_says_it_is_not_overturned() {
        let c = Case {
            cloud: vec![member(A, "rejected")],
            ..case("rejected with credentials")
        };
        let d = run(&c);
        assert!(d.health.is_stalled());
        assert!(d.health.message().contains(A), "{}", d.health.message());
        assert!(
            d.health.message().contains("a person's decision"),
            "{}",
            d.health.message()
        );
    }

    #[test]
    fn status_members_record_intent_and_keep_what_is_left_to_remove() {
        let spec = vec![listed(A, true), listed(B, false)];
        let cloud = vec![member(A, "accepted"), member(C, "pending")];
        let recorded = vec![ours(C)];
        let out = observed_members(&spec, &cloud, &recorded, Some(B));
        let summary: Vec<(&str, &str, bool)> = out
            .iter()
            .map(|m| {
                (
                    m.tenant_id.as_str(),
                    m.status.as_str(),
                    m.added_by_this_object,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (A, "accepted", false),
                (B, ABSENT, true),
                (C, "pending", true)
            ]
        );
        assert_eq!(out[0].created_at.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(out[0].updated_at.as_deref(), Some("2026-01-02T00:00:00Z"));
        // Once the unlisted member is gone from the cloud, its entry goes too.
        let out = observed_members(&spec, &[member(A, "accepted")], &recorded, None);
        assert_eq!(out.len(), 2);
        assert!(!out[1].added_by_this_object, "B's intent was not recorded");
        assert_eq!(counts(&spec, &cloud), (1, 1));
        assert_eq!(
            counts(&spec, &[member(A, "pending"), member(B, "accepted")]),
            (2, 1)
        );
    }

    fn delete(
        visibility: &str,
        cloud: &[Member],
        recorded: &[ObservedMember],
        previous: Option<&str>,
        paused: bool,
    ) -> String {
        let img = image("active", visibility);
        let observed = Observed {
            image: &img,
            project_id: Some(OWNER),
            members: cloud,
            recorded,
            previous_visibility: previous,
        };
        match decide_delete(Some(&observed), paused) {
            DeleteStep::Done(_) => "Done".into(),
            DeleteStep::Write(w, h) => format!("{w:?}:{}", h.reason()),
            DeleteStep::Blocked(h) => format!("Blocked:{}", h.reason()),
        }
    }

    #[test]
    fn delete_table() {
        let a = member(A, "accepted");
        let b = member(B, "pending");
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "our member goes first",
                delete(
                    "shared",
                    &[a.clone(), b.clone()],
                    &[ours(A)],
                    Some("private"),
                    false,
                ),
                "RemoveMember(\"aaaa0000000000000000000000000000\"):RemovingMember",
            ),
            (
                "then the visibility we changed comes back",
                delete("shared", &[], &[ours(A)], Some("private"), false),
                "RestoreVisibility(Private):RestoringVisibility",
            ),
            (
                "but not while someone else's member remains",
                delete(
                    "shared",
                    &[member(B, "pending")],
                    &[ours(A)],
                    Some("private"),
                    false,
                ),
                "Done",
            ),
            (
                "someone else's member is never removed",
                delete("shared", &[member(B, "pending")], &[theirs(B)], None, false),
                "Done",
            ),
            (
                "a visibility we did not change stays",
                delete("shared", &[], &[ours(A)], None, false),
                "Done",
            ),
            (
                "an image no longer shared has nothing to undo",
                delete("private", &[], &[ours(A)], Some("private"), false),
                "Done",
            ),
            (
                "paused holds a removal",
                delete(
                    "shared",
                    &[member(A, "accepted")],
                    &[ours(A)],
                    Some("private"),
                    true,
                ),
                "Blocked:Paused",
            ),
            (
                "paused holds the restore",
                delete("shared", &[], &[], Some("private"), true),
                "Blocked:Paused",
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
        assert_eq!(
            decide_delete(None, false),
            DeleteStep::Done("the image is gone".into())
        );
        for status in ["killed", "deleted", "pending_delete"] {
            let img = image(status, "shared");
            let cloud = [member(A, "pending")];
            let recorded = [ours(A)];
            let observed = Observed {
                image: &img,
                project_id: None,
                members: &cloud,
                recorded: &recorded,
                previous_visibility: Some("private"),
            };
            assert!(
                matches!(decide_delete(Some(&observed), false), DeleteStep::Done(_)),
                "{status}"
            );
        }
    }

    fn volume_image(
        conditions: &[(&str, &str, &str)],
        id: Option<&str>,
        generation: i64,
    ) -> VolumeImage {
        let mut vi = VolumeImage::new(
            "golden",
            VolumeImageSpec {
                cloud_credentials_ref: CloudCredentialsRef::default(),
                management_policy: Default::default(),
                deletion_policy: Default::default(),
                import: None,
                resync_period: None,
                resource: None,
            },
        );
        vi.metadata.generation = Some(2);
        vi.status = Some(VolumeImageStatus {
            id: id.map(str::to_string),
            conditions: conditions
                .iter()
                .map(|(type_, status, reason)| Condition {
                    type_: (*type_).into(),
                    status: (*status).into(),
                    reason: (*reason).into(),
                    message: "m".into(),
                    observed_generation: Some(generation),
                    last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                    ),
                })
                .collect(),
            ..Default::default()
        });
        vi
    }

    #[test]
    fn image_ref_waits_for_a_ready_volume_image_with_an_id() {
        let reason = |r: Result<String, Health>| match r {
            Ok(id) => format!("Ok:{id}"),
            Err(h) => format!(
                "{}:{}",
                if h.is_stalled() {
                    "Stalled"
                } else {
                    "Reconciling"
                },
                h.reason()
            ),
        };
        let ready = [("Ready", "True", "Active"), ("Stalled", "False", "Active")];
        let cases: Vec<(Option<VolumeImage>, &str)> = vec![
            (None, "Reconciling:WaitingForImage"),
            (Some(volume_image(&ready, Some("img-9"), 2)), "Ok:img-9"),
            (
                Some(volume_image(&ready, None, 2)),
                "Reconciling:WaitingForImage",
            ),
            (
                Some(volume_image(&ready, Some("img-9"), 1)),
                "Reconciling:WaitingForImage",
            ),
            (
                Some(volume_image(
                    &[
                        ("Ready", "False", "Saving"),
                        ("Reconciling", "True", "Saving"),
                    ],
                    Some("img-9"),
                    2,
                )),
                "Reconciling:WaitingForImage",
            ),
            (
                Some(volume_image(
                    &[("Ready", "False", "Killed"), ("Stalled", "True", "Killed")],
                    Some("img-9"),
                    2,
                )),
                "Stalled:ImageStalled",
            ),
            (
                Some({
                    let mut vi = volume_image(&ready, Some("img-9"), 2);
                    vi.metadata.deletion_timestamp =
                        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                        ));
                    vi
                }),
                "Stalled:ImageDeleting",
            ),
        ];
        for (vi, want) in cases {
            assert_eq!(
                reason(image_from_ref("golden", vi.as_ref())),
                want,
                "{vi:?}"
            );
        }
    }

    #[test]
    fn refusals_keep_the_clouds_words() {
        let mut img = image("active", "private");
        img.protected = true;
        let forbidden = CloudError::Forbidden {
            message: "Image img-1 is protected".into(),
        };
        let h = visibility_refused(&img, &forbidden);
        assert_eq!(h.reason(), "ImageProtected");
        assert!(h.message().contains("Image img-1 is protected"));
        img.protected = false;
        let h = visibility_refused(&img, &forbidden);
        assert_eq!(h.reason(), "CloudForbidden");
        assert!(h.is_stalled() && h.message().contains("Image img-1 is protected"));

        let h = image_unreadable(
            "img-1",
            &CloudError::NotFound {
                message: "No image found with ID img-1".into(),
            },
        );
        assert_eq!(h.reason(), "ImageNotFound");
        assert!(h.is_stalled() && h.message().contains("No image found with ID img-1"));
        let h = image_unreadable(
            "img-1",
            &CloudError::Unavailable {
                status: 503,
                retry_after: None,
                message: "busy".into(),
            },
        );
        assert!(h.is_reconciling());

        assert_eq!(member_credentials_mismatch(A, Some(A)), None);
        assert_eq!(member_credentials_mismatch(A, None), None);
        assert_eq!(
            member_credentials_mismatch(A, Some(B)).map(|h| h.reason().to_string()),
            Some("MemberCredentialsMismatch".into())
        );
    }

    #[test]
    fn one_member_has_one_owner() {
        let a = [listed(A, false)];
        let ab = [listed(A, false), listed(B, false)];
        let added_a = [ours(A)];
        let view = |name: &'static str,
                    created: &'static str,
                    listed: &'static [ShareMember],
                    recorded: &'static [ObservedMember]| ShareView {
            name,
            created: Some(created),
            listed,
            recorded,
            image_id: Some("img-1"),
        };
        // Leaked to 'static for the table: tests only.
        let leak =
            |m: Vec<ShareMember>| -> &'static [ShareMember] { Box::leak(m.into_boxed_slice()) };
        let leak_o = |m: Vec<ObservedMember>| -> &'static [ObservedMember] {
            Box::leak(m.into_boxed_slice())
        };
        let older = view(
            "older",
            "2026-01-01T00:00:00Z",
            leak(a.to_vec()),
            leak_o(vec![]),
        );
        let newer_ab = view(
            "newer",
            "2026-02-01T00:00:00Z",
            leak(ab.to_vec()),
            leak_o(vec![]),
        );
        // Neither added A yet: the older ImageShare owns it; B is nobody else's.
        assert_eq!(
            claims(&newer_ab, "img-1", std::slice::from_ref(&older)),
            vec![(A.to_string(), "older".to_string())]
        );
        assert!(claims(&older, "img-1", std::slice::from_ref(&newer_ab)).is_empty());
        // The newer one recorded adding A first: it owns it, whatever their ages.
        let newer_added = view(
            "newer",
            "2026-02-01T00:00:00Z",
            leak(ab.to_vec()),
            leak_o(added_a.to_vec()),
        );
        assert!(claims(&newer_added, "img-1", std::slice::from_ref(&older)).is_empty());
        assert_eq!(
            claims(&older, "img-1", std::slice::from_ref(&newer_added)),
            vec![(A.to_string(), "newer".to_string())]
        );
        // Another image is no claim.
        assert!(claims(&newer_ab, "img-2", std::slice::from_ref(&older)).is_empty());

        // decide: the claimed member is left alone; once the rest is done, MemberClaimed.
        let claimed = vec![(A.to_string(), "older".to_string())];
        let img = image("active", "shared");
        let cloud = vec![member(B, "pending")];
        let recorded = vec![ours(B)];
        let wanted = Wanted {
            members: &ab,
            claimed: &claimed,
            managed: true,
            paused: false,
        };
        let observed = Observed {
            image: &img,
            project_id: Some(OWNER),
            members: &cloud,
            recorded: &recorded,
            previous_visibility: None,
        };
        let d = decide(&wanted, &observed);
        assert_eq!(d.write, None, "A is not added by this ImageShare");
        assert_eq!(d.health.reason(), "MemberClaimed");
        assert!(
            d.health.message().contains("by ImageShare older"),
            "{}",
            d.health.message()
        );
    }
}
