//! The one condition builder: a reconcile's conclusion becomes the three kstatus conditions
//! (docs/design.md §2), written deterministically.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::condition_type::{READY, RECONCILING, STALLED};
use crate::controller::reasons::Reason;

/// What a reconcile concluded about an object. Exactly one of the three kstatus conditions is
/// `True`, and it carries the reason and message. Two healths are equal when their conditions
/// would be: the wait a cloud asked for is not part of the state.
#[derive(Clone, Debug)]
pub enum Health {
    /// The cloud resource exists, matches the spec and is usable.
    Ready { reason: String, message: String },
    /// Work is in flight and will finish without human help; not before `retry_after`, when
    /// the cloud said so (`Retry-After`).
    Reconciling {
        reason: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Progress needs a person.
    Stalled { reason: String, message: String },
}

/// Which of the three kstatus conditions is `True`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Ready,
    Reconciling,
    Stalled,
}

impl Health {
    pub fn ready(reason: Reason, message: impl Into<String>) -> Self {
        Health::derived(State::Ready, reason, message)
    }

    pub fn reconciling(reason: Reason, message: impl Into<String>) -> Self {
        Health::derived(State::Reconciling, reason, message)
    }

    pub fn stalled(reason: Reason, message: impl Into<String>) -> Self {
        Health::derived(State::Stalled, reason, message)
    }

    /// A health whose reason is derived rather than chosen by a rule: the CamelCase name of a
    /// cloud state, or a cloud error's reason. Rules use [`Health::ready`],
    /// [`Health::reconciling`] and [`Health::stalled`] with a [`Reason`].
    pub fn derived(state: State, reason: impl Into<String>, message: impl Into<String>) -> Self {
        let (reason, message) = (reason.into(), message.into());
        match state {
            State::Ready => Health::Ready { reason, message },
            State::Reconciling => Health::Reconciling {
                reason,
                message,
                retry_after: None,
            },
            State::Stalled => Health::Stalled { reason, message },
        }
    }

    /// The same health, asking not to look again before `wait`.
    pub fn retry_after(self, wait: Option<Duration>) -> Self {
        match self {
            Health::Reconciling {
                reason, message, ..
            } => Health::Reconciling {
                reason,
                message,
                retry_after: wait,
            },
            other => other,
        }
    }

    /// The same health with another message.
    pub fn with_message(self, message: impl Into<String>) -> Self {
        let message = message.into();
        match self {
            Health::Ready { reason, .. } => Health::Ready { reason, message },
            Health::Reconciling {
                reason,
                retry_after,
                ..
            } => Health::Reconciling {
                reason,
                message,
                retry_after,
            },
            Health::Stalled { reason, .. } => Health::Stalled { reason, message },
        }
    }

    /// How long the cloud asked to wait before the next look, if it did.
    pub fn wait(&self) -> Option<Duration> {
        match self {
            Health::Reconciling { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Health::Ready { reason, .. }
            | Health::Reconciling { reason, .. }
            | Health::Stalled { reason, .. } => reason,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Health::Ready { message, .. }
            | Health::Reconciling { message, .. }
            | Health::Stalled { message, .. } => message,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Health::Ready { .. } => 0,
            Health::Reconciling { .. } => 1,
            Health::Stalled { .. } => 2,
        }
    }

    /// The type of the condition that is `True` for this health.
    pub fn condition_type(&self) -> &'static str {
        match self {
            Health::Ready { .. } => READY,
            Health::Reconciling { .. } => RECONCILING,
            Health::Stalled { .. } => STALLED,
        }
    }

    /// The message as a condition carries it (cut to [`MAX_MESSAGE`]).
    pub fn condition_message(&self) -> String {
        truncate(self.message(), MAX_MESSAGE)
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, Health::Ready { .. })
    }

    pub fn is_stalled(&self) -> bool {
        matches!(self, Health::Stalled { .. })
    }

    pub fn is_reconciling(&self) -> bool {
        matches!(self, Health::Reconciling { .. })
    }

    /// The three conditions as (type, status, reason, message), in a fixed order. The
    /// `False` ones repeat the reason so that `kubectl get -o wide` tells the story from any
    /// column; only the `True` one carries the message.
    fn wanted(&self) -> [(&'static str, &'static str, &str, &str); 3] {
        let (reason, message) = (self.reason(), self.message());
        let status = |on: bool| if on { "True" } else { "False" };
        [
            (READY, status(self.is_ready()), reason, message),
            (
                RECONCILING,
                status(self.is_reconciling()),
                reason,
                if self.is_reconciling() { message } else { "" },
            ),
            (
                STALLED,
                status(self.is_stalled()),
                reason,
                if self.is_stalled() { message } else { "" },
            ),
        ]
    }
}

impl PartialEq for Health {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind()
            && self.reason() == other.reason()
            && self.message() == other.message()
    }
}

impl Eq for Health {}

/// The conditions to write for `health` at `generation`. A condition whose status does not
/// change keeps its `lastTransitionTime`; if nothing changes at all the result equals
/// `existing`, so the status write can be skipped. Conditions of other types are kept.
pub fn conditions_for(
    existing: &[Condition],
    health: &Health,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = health
        .wanted()
        .iter()
        .map(|(kind, status, reason, message)| {
            let previous = existing.iter().find(|c| c.type_ == *kind);
            let last_transition_time = match previous {
                Some(c) if c.status == *status => c.last_transition_time.clone(),
                _ => Time(now),
            };
            Condition {
                type_: (*kind).to_string(),
                status: (*status).to_string(),
                reason: (*reason).to_string(),
                message: truncate(message, MAX_MESSAGE),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect();
    out.extend(
        existing
            .iter()
            .filter(|c| ![READY, RECONCILING, STALLED].contains(&c.type_.as_str()))
            .cloned(),
    );
    out
}

/// Reads the health back from conditions that cloudvol wrote.
pub fn health_of(conditions: &[Condition]) -> Option<Health> {
    let find = |kind: &str| conditions.iter().find(|c| c.type_ == kind);
    let on = |kind: &str| find(kind).filter(|c| c.status == "True");
    if let Some(c) = on(STALLED) {
        let (reason, message) = reason_message(c);
        return Some(Health::Stalled { reason, message });
    }
    if let Some(c) = on(RECONCILING) {
        let (reason, message) = reason_message(c);
        return Some(Health::Reconciling {
            reason,
            message,
            retry_after: None,
        });
    }
    let c = find(READY)?;
    let (reason, message) = reason_message(c);
    (c.status == "True").then_some(Health::Ready { reason, message })
}

fn reason_message(c: &Condition) -> (String, String) {
    (c.reason.clone(), c.message.clone())
}

/// The longest condition message, in bytes.
pub const MAX_MESSAGE: usize = 1024;

/// Kubernetes caps condition messages at 32 KiB; ours stay short so `kubectl` output stays
/// readable, cutting on a character boundary.
fn truncate(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_string();
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn get<'a>(conditions: &'a [Condition], kind: &str) -> &'a Condition {
        conditions.iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn exactly_one_condition_is_true_and_it_carries_the_message() {
        let cases = [
            (Health::ready(Reason::Shared, "ok"), READY),
            (Health::reconciling(Reason::Creating, "wait"), RECONCILING),
            (Health::stalled(Reason::VolumeInUse, "detach it"), STALLED),
        ];
        for (health, true_type) in cases {
            let conditions = conditions_for(&[], &health, Some(3), at(100));
            assert_eq!(conditions.len(), 3);
            for c in &conditions {
                assert_eq!(c.status == "True", c.type_ == true_type, "{health:?} {c:?}");
                assert_eq!(c.reason, health.reason());
                assert_eq!(c.observed_generation, Some(3));
            }
            assert_eq!(get(&conditions, true_type).message, health.message());
            assert_eq!(health_of(&conditions), Some(health.clone()));
        }
    }

    #[test]
    fn the_wait_a_cloud_asks_for_rides_along_but_is_not_state() {
        let err = crate::cloud::CloudError::RateLimited {
            message: "slow down".into(),
            retry_after: Some(std::time::Duration::from_secs(120)),
        };
        let health = crate::controller::cloud_error_health("creating", &err);
        assert_eq!(health.wait(), Some(std::time::Duration::from_secs(120)));
        assert!(health.is_reconciling());
        assert_eq!(
            health,
            health.clone().retry_after(None),
            "equal as conditions"
        );
    }

    #[test]
    fn an_unchanged_observation_changes_nothing() {
        let health = Health::reconciling(Reason::Creating, "the cloud is creating the volume");
        let first = conditions_for(&[], &health, Some(1), at(100));
        let second = conditions_for(&first, &health, Some(1), at(200));
        assert_eq!(first, second);
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let first = conditions_for(
            &[],
            &Health::reconciling(Reason::Creating, "a"),
            Some(1),
            at(100),
        );
        // Same statuses, new reason: times stay.
        let second = conditions_for(
            &first,
            &Health::reconciling(Reason::Extending, "b"),
            Some(2),
            at(200),
        );
        assert_eq!(get(&second, READY).last_transition_time, Time(at(100)));
        assert_eq!(get(&second, RECONCILING).reason, "Extending");
        assert_eq!(get(&second, READY).observed_generation, Some(2));
        // Ready flips: Ready and Reconciling move, Stalled (still False) stays.
        let third = conditions_for(
            &second,
            &Health::ready(Reason::Shared, ""),
            Some(2),
            at(300),
        );
        assert_eq!(get(&third, READY).last_transition_time, Time(at(300)));
        assert_eq!(get(&third, RECONCILING).last_transition_time, Time(at(300)));
        assert_eq!(get(&third, STALLED).last_transition_time, Time(at(100)));
    }

    #[test]
    fn foreign_conditions_are_kept() {
        let foreign = Condition {
            type_: "example.com/Audited".into(),
            status: "True".into(),
            reason: "Done".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(at(5)),
        };
        let out = conditions_for(
            std::slice::from_ref(&foreign),
            &Health::ready(Reason::Shared, ""),
            None,
            at(9),
        );
        assert!(out.contains(&foreign));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let message = "가".repeat(600);
        let out = conditions_for(
            &[],
            &Health::stalled(Reason::InvalidSpec, message),
            None,
            at(1),
        );
        let ready = get(&out, READY);
        assert!(ready.message.len() <= 1024 + "…".len());
        assert!(ready.message.ends_with('…'));
    }
}
