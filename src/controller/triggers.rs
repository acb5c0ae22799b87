//! Reconciling an object from outside its watch: the inventories (its cloud resource changed)
//! and the fair shares (a slot of its cloud scope came free) send `(kind, namespace, name)`
//! here, and each kind's controller takes them through kube-runtime's `reconcile_on`.

use std::sync::Mutex;

use tokio::sync::mpsc;

/// An object to reconcile.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

struct Subscriber {
    kind: String,
    namespace: Option<String>,
    sender: mpsc::UnboundedSender<(String, String)>,
}

/// The controllers that take triggers, by kind and namespace.
#[derive(Default)]
pub struct Triggers {
    subscribers: Mutex<Vec<Subscriber>>,
}

impl Triggers {
    /// The objects of `kind` (in `namespace`, or every namespace) to reconcile, as
    /// (namespace, name).
    pub fn subscribe(
        &self,
        kind: &str,
        namespace: Option<String>,
    ) -> mpsc::UnboundedReceiver<(String, String)> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock().push(Subscriber {
            kind: kind.to_string(),
            namespace,
            sender,
        });
        receiver
    }

    /// Asks the controllers of `target`'s kind and namespace to reconcile it; returns how many
    /// took it (0 when none runs).
    pub fn fire(&self, target: &Target) -> u64 {
        let mut subscribers = self.lock();
        subscribers.retain(|s| !s.sender.is_closed());
        let mut taken = 0;
        for subscriber in subscribers.iter().filter(|s| {
            s.kind == target.kind
                && s.namespace
                    .as_ref()
                    .is_none_or(|namespace| *namespace == target.namespace)
        }) {
            if subscriber
                .sender
                .send((target.namespace.clone(), target.name.clone()))
                .is_ok()
            {
                taken += 1;
            }
        }
        taken
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: &str, namespace: &str, name: &str) -> Target {
        Target {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_trigger_reaches_the_controllers_of_its_kind_and_namespace() {
        let triggers = Triggers::default();
        let mut all = triggers.subscribe("Volume", None);
        let mut team_a = triggers.subscribe("Volume", Some("a".into()));
        let mut images = triggers.subscribe("VolumeImage", None);
        assert_eq!(triggers.fire(&target("Volume", "b", "data")), 1);
        assert_eq!(triggers.fire(&target("Volume", "a", "data")), 2);
        assert_eq!(all.try_recv().unwrap(), ("b".into(), "data".into()));
        assert_eq!(all.try_recv().unwrap(), ("a".into(), "data".into()));
        assert_eq!(team_a.try_recv().unwrap(), ("a".into(), "data".into()));
        assert!(images.try_recv().is_err());
        drop(all);
        drop(team_a);
        assert_eq!(
            triggers.fire(&target("Volume", "a", "data")),
            0,
            "controllers that stopped are forgotten"
        );
    }
}
