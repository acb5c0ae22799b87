//! The credentials Secret: read once per reconcile from the object's own namespace and parsed
//! into cloud credentials, and guarded by a finalizer while any object still needs it to
//! delete its cloud resource.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::{CloudCredentialsRef, ImageShare, Volume, VolumeImage};
use crate::cloud::CloudCredentials;
use crate::controller::conditions::{Health, State};
use crate::controller::reasons::Reason;
use crate::controller::{CloudKind, Error};

/// The key holding the OpenStack-style `clouds.yaml`.
pub const CLOUDS_YAML_KEY: &str = "clouds.yaml";
/// The optional key holding a PEM CA bundle for the cloud's endpoints.
pub const CACERT_KEY: &str = "cacert";
/// Set on a credentials Secret while objects that use it may still need to delete their cloud
/// resources, so that `kubectl delete -f dir/` cannot strand them.
pub const SECRET_FINALIZER: &str = "cloudvol.dev/credentials-in-use";
/// The label a guarded Secret carries too, so that the Secrets an object may have guarded
/// before its spec changed can be found.
pub const IN_USE_LABEL: &str = "cloudvol.dev/credentials-in-use";

/// Why the cloud cannot be reached with an object's credentials: a Stalled health naming the
/// Secret and the key (or the cloud's refusal of them), or an API error to retry.
pub enum LoadError {
    Stalled(Health),
    Api(Error),
}

/// The credentials of one Secret, with the Secret as it was read (for its guard).
pub struct Loaded {
    pub credentials: CloudCredentials,
    pub secret: Secret,
}

/// Reads the Secret `reference` names in `namespace` and parses its clouds.yaml.
pub async fn load(
    client: &Client,
    namespace: &str,
    reference: &CloudCredentialsRef,
) -> Result<Loaded, LoadError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let name = &reference.secret_name;
    let secret = match secrets.get_opt(name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(LoadError::Stalled(Health::stalled(
                Reason::SecretNotFound,
                format!(
                    "the credentials Secret {namespace}/{name} does not exist; create it with a \
                     {CLOUDS_YAML_KEY} key"
                ),
            )));
        }
        Err(err) => return Err(LoadError::Api(err.into())),
    };
    let data = secret.data.clone().unwrap_or_default();
    let Some(yaml) = data.get(CLOUDS_YAML_KEY) else {
        let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
        keys.sort_unstable();
        return Err(LoadError::Stalled(Health::stalled(
            Reason::InvalidCloudConfig,
            format!(
                "the Secret {namespace}/{name} has no key {CLOUDS_YAML_KEY} (it has: {}); put the \
                 clouds.yaml under that key",
                if keys.is_empty() {
                    "none".to_string()
                } else {
                    keys.join(", ")
                }
            ),
        )));
    };
    let cacert = data.get(CACERT_KEY).map(|b| b.0.as_slice());
    let credentials = CloudCredentials::from_clouds_yaml(&yaml.0, &reference.cloud_name, cacert)
        .map_err(|err| {
            LoadError::Stalled(Health::derived(
                State::Stalled,
                err.reason(),
                format!(
                    "the Secret {namespace}/{name}, key {CLOUDS_YAML_KEY}, cloud {:?}: {}",
                    reference.cloud_name,
                    err.message()
                ),
            ))
        })?;
    Ok(Loaded {
        credentials,
        secret,
    })
}

/// Puts the credentials finalizer on the Secret as [`load`] read it, if it is not there yet.
pub async fn guard(client: &Client, secret: &Secret) -> Result<(), Error> {
    if secret.finalizers().iter().any(|f| f == SECRET_FINALIZER)
        || secret.metadata.deletion_timestamp.is_some()
    {
        return Ok(());
    }
    let secrets: Api<Secret> =
        Api::namespaced(client.clone(), &secret.namespace().unwrap_or_default());
    let mut finalizers = secret.finalizers().to_vec();
    finalizers.push(SECRET_FINALIZER.to_string());
    set_finalizers(&secrets, secret, finalizers, Some("true")).await
}

/// After `object`'s spec changed (another Secret, or `deletionPolicy: Orphan`): releases the
/// guarded Secrets of its namespace that nothing needs any more, so that a Secret is let go
/// when the last object stops referencing it, not only when one is deleted.
pub async fn sweep<K: CloudKind>(client: &Client, object: &K) -> Result<(), Error> {
    let namespace = object.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let guarded = secrets
        .list_metadata(&ListParams::default().labels(IN_USE_LABEL))
        .await?;
    let still_needed = object
        .needs_cloud_to_delete()
        .then(|| object.common().credentials.secret_name.as_str());
    for secret in guarded.items {
        let name = secret.name_any();
        if Some(name.as_str()) != still_needed {
            release_if_unused(client, &namespace, &name, "").await?;
        }
    }
    Ok(())
}

/// Takes the credentials finalizer off the Secret when no object other than `done_uid` still
/// needs it. Objects mark themselves done (see [`CloudKind::done_with_cloud`]) before calling
/// this, so of two objects finishing together at least one sees the other done.
pub async fn release_if_unused(
    client: &Client,
    namespace: &str,
    secret_name: &str,
    done_uid: &str,
) -> Result<(), Error> {
    if needed_by_another(client, namespace, secret_name, done_uid).await? {
        return Ok(());
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(secret) = secrets.get_opt(secret_name).await? else {
        return Ok(());
    };
    if !secret.finalizers().iter().any(|f| f == SECRET_FINALIZER) {
        return Ok(());
    }
    let finalizers = secret
        .finalizers()
        .iter()
        .filter(|f| *f != SECRET_FINALIZER)
        .cloned()
        .collect();
    set_finalizers(&secrets, &secret, finalizers, None).await
}

/// Whether an object in `namespace`, other than `done_uid`, references `secret_name` and may
/// still need it to delete something. Read from the API server, not a cache, so that of two
/// objects finishing together at least one sees the other done; page by page, stopping at the
/// first object that needs it, so that a deletion of thousands of objects that share one
/// Secret reads one small page per object, not every object each time.
async fn needed_by_another(
    client: &Client,
    namespace: &str,
    secret_name: &str,
    done_uid: &str,
) -> Result<bool, Error> {
    Ok(
        any_needing::<Volume>(client, namespace, secret_name, done_uid).await?
            || any_needing::<VolumeImage>(client, namespace, secret_name, done_uid).await?
            || any_needing::<ImageShare>(client, namespace, secret_name, done_uid).await?,
    )
}

/// How many objects a page of [`needed_by_another`] reads.
const NEEDING_PAGE: u32 = 20;

async fn any_needing<K: CloudKind>(
    client: &Client,
    namespace: &str,
    secret_name: &str,
    done_uid: &str,
) -> Result<bool, Error> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut params = ListParams::default().limit(NEEDING_PAGE);
    loop {
        let page = api.list(&params).await?;
        let needs = page.items.iter().any(|o| {
            o.uid().as_deref() != Some(done_uid)
                && o.credentials_refs()
                    .iter()
                    .any(|r| r.secret_name == secret_name)
                && o.needs_cloud_to_delete()
                && !o.done_with_cloud()
        });
        if needs {
            return Ok(true);
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            // The next page, from the same snapshot as the first.
            Some(token) => params = params.continue_token(&token),
            None => return Ok(false),
        }
    }
}

async fn set_finalizers(
    secrets: &Api<Secret>,
    secret: &Secret,
    finalizers: Vec<String>,
    label: Option<&str>,
) -> Result<(), Error> {
    // The resourceVersion makes this a compare-and-swap: a concurrent change gets 409 and
    // the reconcile retries with fresh data. A null label removes it.
    let patch = json!({
        "metadata": {
            "resourceVersion": secret.resource_version(),
            "finalizers": finalizers,
            "labels": {IN_USE_LABEL: label},
        }
    });
    secrets
        .patch(
            &secret.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// What to do about a credentials problem with this reason, if it is one.
fn advice(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "InvalidCredentials" => {
            "the identity service refused them: fix the user, the password (on NHN Cloud, the API \
             password) or the project; cloudvol tries the same credentials again with backoff, and \
             changed ones at once"
        }
        "AuthenticationFailed" => {
            "the service refused a fresh token: check the user's roles in the project"
        }
        "EndpointNotFound" => {
            "check region_name and interface against the cloud's service catalog (cloudvol cloud \
             check prints it)"
        }
        "Unsupported" => "use credentials of a cloud that offers this",
        "TLSFailure" => {
            "put the CA that signed the endpoint's certificate in the Secret's cacert key, or fix \
             the URL's host or scheme"
        }
        "HostNotFound" => "fix the host name in auth_url or in the endpoint override",
        _ => return None,
    })
}

/// `health`, with the Secret, its key and its cloud named when it is about credentials, and
/// what to do. Messages that name the Secret already are left as they are.
pub fn explain(health: Health, namespace: &str, reference: &CloudCredentialsRef) -> Health {
    let Some(advice) = advice(health.reason()) else {
        return health;
    };
    if health.message().contains("Secret ") {
        return health;
    }
    let message = format!(
        "{}. The credentials are in Secret {namespace}/{}, key {CLOUDS_YAML_KEY}, cloud {:?}: \
         {advice}",
        health.message(),
        reference.secret_name,
        reference.cloud_name
    );
    health.with_message(message)
}

/// Reasons that say the credentials cannot be used at all.
pub fn is_credentials_problem(reason: &str) -> bool {
    advice(reason).is_some() || matches!(reason, "SecretNotFound" | "InvalidCloudConfig")
}
