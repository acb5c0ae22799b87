//! Samsung Cloud Platform request signing.
//!
//! The signature is `base64(HMAC-SHA256(secret_key, METHOD + URL +
//! timestamp_ms + access_key + account_id + "Openapi"))`, URL being the full
//! request URL with its query, exactly as sent.

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use sha2::Sha256;

use crate::cloud::credentials::ScpAuth;
use crate::cloud::error::CloudError;

pub(crate) const CLIENT_TYPE: &str = "Openapi";
pub(crate) const API_VERSION: &str = "virtualserver 1.0";

pub(crate) fn signature(
    secret_key: &str,
    method: &str,
    url: &str,
    timestamp_ms: &str,
    access_key: &str,
    account_id: &str,
) -> Result<String, CloudError> {
    // HMAC takes keys of any length: this error is for completeness.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key.as_bytes())
        .map_err(|_| CloudError::config("SCP secret_key cannot key HMAC-SHA256"))?;
    for part in [
        method,
        url,
        timestamp_ms,
        access_key,
        account_id,
        CLIENT_TYPE,
    ] {
        mac.update(part.as_bytes());
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `Scp-*` headers for one request at `timestamp_ms`.
pub(crate) fn signed_headers(
    auth: &ScpAuth,
    method: &Method,
    url: &Url,
    timestamp_ms: i64,
) -> Result<HeaderMap, CloudError> {
    let timestamp = timestamp_ms.to_string();
    let sig = signature(
        auth.secret_key.expose(),
        method.as_str(),
        url.as_str(),
        &timestamp,
        &auth.access_key,
        &auth.account_id,
    )?;
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| -> Result<(), CloudError> {
        let value = HeaderValue::from_str(value).map_err(|_| {
            CloudError::config(format!("SCP header {name} would not be valid HTTP"))
        })?;
        headers.insert(HeaderName::from_static(name), value);
        Ok(())
    };
    put("scp-accesskey", &auth.access_key)?;
    put("scp-signature", &sig)?;
    put("scp-timestamp", &timestamp)?;
    put("scp-clienttype", CLIENT_TYPE)?;
    put("scp-accountid", &auth.account_id)?;
    put("scp-api-version", API_VERSION)?;
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::credentials::SecretString;

    /// Computed independently with Python's hmac module:
    ///
    /// ```text
    /// python3 -c "
    /// import hmac,hashlib,base64
    /// msg='GET'+'https://virtualserver.example.com/v1/images/70a599e0-31e7-49b7-b260-868f441e862b?size=20&page=0'+'1605290625682'+'demo-access-key'+'demo-account'+'Openapi'
    /// print(base64.b64encode(hmac.new(b'demo-secret-key', msg.encode(), hashlib.sha256).digest()).decode())"
    /// ```
    const PYTHON_VECTOR: &str = "jijmkYk+e2NSY8OzR0J5WqKGKxhdoU9vCdPETh0xUNg=";

    #[test]
    fn signature_matches_an_independent_computation() {
        let url = "https://virtualserver.example.com/v1/images/70a599e0-31e7-49b7-b260-868f441e862b?size=20&page=0";
        assert_eq!(
            signature(
                "demo-secret-key",
                "GET",
                url,
                "1605290625682",
                "demo-access-key",
                "demo-account"
            )
            .unwrap(),
            PYTHON_VECTOR
        );
    }

    #[test]
    fn headers_carry_the_signature_of_the_full_url() {
        let auth = ScpAuth {
            access_key: "demo-access-key".into(),
            secret_key: SecretString::new("demo-secret-key"),
            account_id: "demo-account".into(),
        };
        let url = Url::parse(
            "https://virtualserver.example.com/v1/images/70a599e0-31e7-49b7-b260-868f441e862b?size=20&page=0",
        )
        .unwrap();
        let h = signed_headers(&auth, &Method::GET, &url, 1605290625682).unwrap();
        assert_eq!(h["Scp-Signature"], PYTHON_VECTOR);
        assert_eq!(h["Scp-AccessKey"], "demo-access-key");
        assert_eq!(h["Scp-Timestamp"], "1605290625682");
        assert_eq!(h["Scp-ClientType"], "Openapi");
        assert_eq!(h["Scp-AccountId"], "demo-account");
        assert_eq!(h["Scp-Api-Version"], "virtualserver 1.0");
        assert!(!format!("{h:?}").contains("demo-secret-key"));
    }
}
