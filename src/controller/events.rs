//! Kubernetes Events (`events.k8s.io/v1`), recorded without a copy of each one in memory.
//!
//! kube-runtime's `Recorder` keeps every Event it published for six minutes, to count repeats
//! as a series, and walks that cache on every publish: at 10,000 objects that is tens of
//! megabytes and a walk of thousands of entries per Event. cloudvol records an Event when an
//! object's state changes (`report.rs`), so repeats are rare by construction; what remains of
//! them (the same Event about the same pair of objects, again and again while nothing changes)
//! is dropped here, remembering only a hash per pair, a bounded number of them.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Client, ResourceExt};

/// A repeat of the last Event about the same objects is dropped for this long.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(600);

/// How many pairs of objects the repeats are remembered for, at most.
const REMEMBERED: usize = 16_384;

/// Publishes Events as one controller instance.
pub struct Events {
    client: Client,
    controller: String,
    instance: String,
    /// Per regarding and related object: the hash of the last Event, and when it was sent.
    last: Mutex<HashMap<u64, (u64, Instant)>>,
}

impl Events {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Events {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Records `event` about `regarding`, unless it repeats the last one about the same
    /// objects within [`REPEAT_WINDOW`].
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        if !self.first(event, regarding, Instant::now()) {
            return Ok(());
        }
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let now = k8s_openapi::jiff::Timestamp::now();
        let record = K8sEvent {
            metadata: ObjectMeta {
                namespace: Some(namespace.clone()),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..K8sEvent::default()
        };
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        match events.create(&PostParams::default(), &record).await {
            Ok(created) => {
                tracing::trace!(event = %created.name_any(), "Event recorded");
                Ok(())
            }
            Err(err) => {
                // Not recorded: the next try may record it.
                self.forget(event, regarding);
                Err(err)
            }
        }
    }

    /// Whether `event` is not a repeat of the last one about the same objects, remembering it.
    fn first(&self, event: &Event, regarding: &ObjectReference, now: Instant) -> bool {
        let (pair, hash) = keys(event, regarding);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((previous, at)) = last.get(&pair)
            && *previous == hash
            && now.duration_since(*at) < REPEAT_WINDOW
        {
            return false;
        }
        if last.len() >= REMEMBERED {
            last.retain(|_, (_, at)| now.duration_since(*at) < REPEAT_WINDOW);
            if last.len() >= REMEMBERED {
                last.clear();
            }
        }
        last.insert(pair, (hash, now));
        true
    }

    fn forget(&self, event: &Event, regarding: &ObjectReference) {
        let (pair, _) = keys(event, regarding);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.remove(&pair);
    }
}

/// The hash of the objects an Event is about, and of what it says.
fn keys(event: &Event, regarding: &ObjectReference) -> (u64, u64) {
    let who = |r: &ObjectReference, h: &mut DefaultHasher| {
        (&r.kind, &r.namespace, &r.name, &r.uid).hash(h);
    };
    let mut pair = DefaultHasher::new();
    who(regarding, &mut pair);
    if let Some(related) = &event.secondary {
        who(related, &mut pair);
    }
    let mut what = DefaultHasher::new();
    (
        matches!(event.type_, EventType::Warning),
        &event.reason,
        &event.note,
        &event.action,
    )
        .hash(&mut what);
    (pair.finish(), what.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("Volume".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectReference::default()
        }
    }

    fn event(reason: &str, secondary: Option<ObjectReference>) -> Event {
        Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(format!("{reason} happened")),
            action: "Reconcile".into(),
            secondary,
        }
    }

    #[tokio::test]
    async fn repeats_are_dropped_and_changes_are_not() {
        let client = Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap()))
            .expect("a client");
        let events = Events::new(client, "cloudvol", None);
        let now = Instant::now();
        let (a, b) = (reference("a"), reference("b"));
        assert!(events.first(&event("Ready", None), &a, now));
        assert!(!events.first(&event("Ready", None), &a, now), "a repeat");
        assert!(
            events.first(&event("Ready", None), &b, now),
            "another object"
        );
        assert!(
            events.first(&event("Reconciling", None), &a, now),
            "a change"
        );
        assert!(events.first(&event("Ready", None), &a, now), "and back");
        let held = event("CredentialsInUse", Some(a.clone()));
        let secret = reference("secret");
        assert!(events.first(&held, &secret, now));
        assert!(
            events.first(&event("CredentialsInUse", Some(b.clone())), &secret, now),
            "about another pair"
        );
        assert!(
            !events.first(&held, &secret, now),
            "a repeat about the same pair"
        );
        assert!(
            events.first(&held, &secret, now + REPEAT_WINDOW),
            "once the window has passed"
        );
        events.forget(&held, &secret);
        assert!(
            events.first(&held, &secret, now + REPEAT_WINDOW),
            "not recorded: try again"
        );
        for n in 0..(REMEMBERED * 2) {
            events.first(&event("Ready", None), &reference(&format!("o{n}")), now);
        }
        assert!(events.last.lock().unwrap().len() <= REMEMBERED, "bounded");
    }
}
