//! One error type for everything that talks to a cloud.
//!
//! Every variant knows whether waiting and retrying can fix it
//! ([`CloudError::is_transient`]) and carries a stable CamelCase
//! [`CloudError::reason`] that controllers put in condition reasons. Messages
//! carry the cloud's own words when it gave any, and never a secret: the
//! variants are built from cloud answers and from our own text, never from
//! credentials.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};

/// Longest cloud message kept in an error (HTML error pages can be long).
const MAX_MESSAGE_CHARS: usize = 600;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CloudError {
    /// The clouds.yaml (or cacert) cannot be used: unknown or missing key,
    /// unknown cloud name, malformed YAML or PEM.
    #[error("invalid cloud configuration: {message}")]
    Config { message: String },

    /// The service catalog has no endpoint for a service in the wanted
    /// region/interface (typically a wrong `region_name`).
    #[error("endpoint not found: {message}")]
    EndpointNotFound {
        service: &'static str,
        message: String,
    },

    /// The identity service refused the credentials (wrong password, unknown
    /// user or project, revoked application credential, bad SCP key).
    /// `retry_after` is how long cloudvol waits before it tries the same
    /// credentials again (the login backoff); changed credentials are tried
    /// at once.
    #[error(
        "the cloud refused the credentials{}: {message}",
        fmt_retry_after(retry_after)
    )]
    InvalidCredentials {
        message: String,
        retry_after: Option<Duration>,
    },

    /// A service refused a freshly issued token (after one refresh).
    #[error("unauthorized: {message}")]
    Unauthorized { message: String },

    #[error("forbidden: {message}")]
    Forbidden { message: String },

    #[error("not found: {message}")]
    NotFound { message: String },

    /// 409: the resource changed under us or already exists (e.g. a duplicate
    /// image member). Observing again resolves it.
    #[error("conflict: {message}")]
    Conflict { message: String },

    #[error("bad request: {message}")]
    BadRequest { message: String },

    /// 413 without `Retry-After`: Cinder's answer when a quota is exhausted.
    #[error("quota exceeded: {message}")]
    QuotaExceeded { message: String },

    /// 429 (or 413 with `Retry-After`) that outlived the retries.
    #[error("rate limited{}: {message}", fmt_retry_after(retry_after))]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },

    /// 5xx: the cloud is down or overloaded.
    #[error(
        "cloud unavailable (HTTP {status}){}: {message}",
        fmt_retry_after(retry_after)
    )]
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
        message: String,
    },

    /// Any other HTTP error status.
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },

    /// No answer: connection refused or reset, timeout, dropped response.
    /// For a POST this may mean the cloud acted without telling us.
    #[error("cloud unreachable: {message}")]
    Transport { message: String },

    /// TLS failed with `host`: its certificate is not trusted (unknown CA, a
    /// `cacert` of another CA), not valid for the host name, expired, or the
    /// server does not speak TLS (an `https://` URL on a plain-HTTP port).
    /// Retrying cannot fix it; the message says what to change.
    #[error("TLS failure: {message}")]
    TlsFailure { host: String, message: String },

    /// `host` does not resolve (DNS): a wrong URL, or a name only another
    /// network knows.
    #[error("host not found: {message}")]
    HostNotFound { host: String, message: String },

    /// This process is not (or no longer) the leader: cloud writes are
    /// fenced off and the request was not sent.
    #[error("not the leader: {message}")]
    NotLeader { message: String },

    /// The cloud answered something we cannot read.
    #[error("unexpected answer from the cloud: {message}")]
    Decode { message: String },

    /// The provider does not offer this operation (e.g. block storage on SCP).
    #[error("unsupported: {message}")]
    Unsupported { message: String },

    /// Not an answer of the cloud: the tenant's inventory has not looked at the resource since
    /// the object changed (or since a write whose outcome is unknown). Its next round is due,
    /// and reconciles the object again once it has looked; the reconcile is put back meanwhile,
    /// without holding a slot (docs/design.md §3).
    #[error("waiting for the inventory: {message}")]
    Unobserved { message: String },
}

fn fmt_retry_after(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry after {}s)", d.as_secs_f64()),
        None => String::new(),
    }
}

impl CloudError {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        CloudError::Config {
            message: message.into(),
        }
    }

    pub(crate) fn decode(message: impl Into<String>) -> Self {
        CloudError::Decode {
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(message: impl Into<String>) -> Self {
        CloudError::Unsupported {
            message: message.into(),
        }
    }

    /// True when waiting and trying again can succeed without a person.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CloudError::RateLimited { .. }
                | CloudError::Unavailable { .. }
                | CloudError::Transport { .. }
                | CloudError::Conflict { .. }
                | CloudError::NotLeader { .. }
                | CloudError::Unobserved { .. }
        )
    }

    /// Stable CamelCase reason for Kubernetes conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            CloudError::Config { .. } => "InvalidCloudConfig",
            CloudError::EndpointNotFound { .. } => "EndpointNotFound",
            CloudError::InvalidCredentials { .. } => "InvalidCredentials",
            CloudError::Unauthorized { .. } => "AuthenticationFailed",
            CloudError::Forbidden { .. } => "CloudForbidden",
            CloudError::NotFound { .. } => "CloudNotFound",
            CloudError::Conflict { .. } => "CloudConflict",
            CloudError::BadRequest { .. } => "CloudBadRequest",
            CloudError::QuotaExceeded { .. } => "QuotaExceeded",
            CloudError::RateLimited { .. } => "RateLimited",
            CloudError::Unavailable { .. } => "CloudUnavailable",
            CloudError::Http { .. } => "CloudRequestFailed",
            CloudError::Transport { .. } => "CloudUnreachable",
            CloudError::TlsFailure { .. } => "TLSFailure",
            CloudError::HostNotFound { .. } => "HostNotFound",
            CloudError::NotLeader { .. } => "NotLeader",
            CloudError::Decode { .. } => "CloudProtocolError",
            CloudError::Unsupported { .. } => "Unsupported",
            CloudError::Unobserved { .. } => "WaitingForInventory",
        }
    }

    /// The cloud's own message (or ours when the cloud gave none).
    pub fn message(&self) -> &str {
        match self {
            CloudError::Config { message }
            | CloudError::EndpointNotFound { message, .. }
            | CloudError::InvalidCredentials { message, .. }
            | CloudError::Unauthorized { message }
            | CloudError::Forbidden { message }
            | CloudError::NotFound { message }
            | CloudError::Conflict { message }
            | CloudError::BadRequest { message }
            | CloudError::QuotaExceeded { message }
            | CloudError::RateLimited { message, .. }
            | CloudError::Unavailable { message, .. }
            | CloudError::Http { message, .. }
            | CloudError::Transport { message }
            | CloudError::TlsFailure { message, .. }
            | CloudError::HostNotFound { message, .. }
            | CloudError::NotLeader { message }
            | CloudError::Decode { message }
            | CloudError::Unsupported { message }
            | CloudError::Unobserved { message } => message,
        }
    }

    /// How long to wait before trying again, when known: the cloud's
    /// `Retry-After`, the transport's backoff when it handed a retry back
    /// instead of sleeping, or the login backoff of refused credentials.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CloudError::RateLimited { retry_after, .. }
            | CloudError::Unavailable { retry_after, .. }
            | CloudError::InvalidCredentials { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Fills in `retry_after` where the kind carries one and has none yet.
    pub(crate) fn or_retry_after(mut self, wait: Option<Duration>) -> Self {
        if let CloudError::RateLimited { retry_after, .. }
        | CloudError::Unavailable { retry_after, .. }
        | CloudError::InvalidCredentials { retry_after, .. } = &mut self
            && retry_after.is_none()
        {
            *retry_after = wait;
        }
        self
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, CloudError::NotFound { .. })
    }

    /// Maps an error answer (status, headers, body) to an error kind, with
    /// the message taken from the body's Cinder fault, Glance/Keystone error
    /// JSON, or webob text/HTML page.
    pub fn from_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> CloudError {
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let message = error_message(status, content_type, body);
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        match status.as_u16() {
            400 | 422 => CloudError::BadRequest { message },
            401 => CloudError::Unauthorized { message },
            403 => CloudError::Forbidden { message },
            404 => CloudError::NotFound { message },
            409 => CloudError::Conflict { message },
            413 if retry_after.is_none() => CloudError::QuotaExceeded { message },
            413 | 429 => CloudError::RateLimited {
                retry_after,
                message,
            },
            s @ 500..=599 => CloudError::Unavailable {
                status: s,
                retry_after,
                message,
            },
            s => CloudError::Http { status: s, message },
        }
    }

    /// Maps a failed attempt to `host`: TLS and DNS failures need a person
    /// (`TlsFailure`, `HostNotFound`); a refused connection, a reset or a
    /// timeout is `Transport` (transient).
    pub(crate) fn from_reqwest(err: &reqwest::Error, host: &str) -> CloudError {
        if err.is_decode() {
            return CloudError::decode(describe_reqwest(err));
        }
        if let Some(tls) = find_cause::<rustls::Error>(err) {
            return CloudError::TlsFailure {
                host: host.to_string(),
                message: format!("{host}: {}{}", describe_reqwest(err), tls_hint(tls)),
            };
        }
        if let Some(dns) = find_cause::<super::transport::DnsFailure>(err) {
            let message = format!("{host}: {}", describe_reqwest(err));
            return if dns.temporary {
                CloudError::Transport { message }
            } else {
                CloudError::HostNotFound {
                    host: host.to_string(),
                    message: format!("{message} (check the host name in the URL)"),
                }
            };
        }
        CloudError::Transport {
            message: describe_reqwest(err),
        }
    }
}

/// The first cause of type `T` in an error's chain, looking inside
/// `io::Error`s too (whose `source()` skips the error they wrap, which is
/// where TLS errors sit, often two `io::Error`s deep).
fn find_cause<T: std::error::Error + 'static>(err: &reqwest::Error) -> Option<&T> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = next {
        let mut layer = cause;
        loop {
            if let Some(found) = layer.downcast_ref::<T>() {
                return Some(found);
            }
            match layer
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
            {
                Some(inner) => layer = inner,
                None => break,
            }
        }
        next = cause.source();
    }
    None
}

/// What to change, by the kind of TLS failure.
fn tls_hint(err: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match err {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            " (the server's certificate is not signed by a CA cloudvol trusts: put the CA's PEM \
             bundle in the credentials Secret under `cacert`)"
        }
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => {
            " (the server's certificate is not valid for the host name in the URL: use a name \
             the certificate lists)"
        }
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => " (the server's certificate has expired or is not valid yet; check the clocks)",
        rustls::Error::InvalidMessage(_) => {
            " (the server did not answer in TLS: is the URL https:// for a plain-HTTP port?)"
        }
        _ => "",
    }
}

/// reqwest's Display stops at the outermost layer ("error sending request
/// for url (...)"); the cause chain says what actually happened.
fn describe_reqwest(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Extracts a person-readable message from an error body.
pub(crate) fn error_message(status: StatusCode, content_type: &str, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text)
        && let Some(message) = json_error_message(&value)
    {
        return truncate(&message);
    }
    let looks_html = content_type.contains("html") || text.starts_with('<');
    let plain = if looks_html {
        html_to_text(text)
    } else {
        collapse_whitespace(text)
    };
    let plain = strip_status_line(&plain, status);
    if plain.is_empty() {
        return status
            .canonical_reason()
            .map(|r| format!("{} {r}", status.as_u16()))
            .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    }
    truncate(&plain)
}

/// Understands the error JSON shapes of the clouds we speak to:
/// - Cinder/Nova faults: `{"itemNotFound": {"code": 404, "message": "..."}}`
/// - Keystone: `{"error": {"code": 401, "title": "Unauthorized", "message": "..."}}`
/// - Glance (and SCP): `{"code": 404, "title": "Not Found", "message": "..."}`
/// - `{"errors": [{"title": .., "detail": ..}]}` and `{"message": ..}` variants.
fn json_error_message(value: &serde_json::Value) -> Option<String> {
    let obj = value.as_object()?;
    if let Some(message) = text_field(obj, &["message", "detail", "description", "title"]) {
        return Some(message);
    }
    if let Some(errors) = obj.get("errors").and_then(|e| e.as_array())
        && let Some(first) = errors.first().and_then(|e| e.as_object())
        && let Some(message) = text_field(first, &["message", "detail", "title"])
    {
        return Some(message);
    }
    // Fault wrapper: exactly one key whose value holds the message.
    if obj.len() == 1
        && let Some((name, inner)) = obj.iter().next()
        && let Some(inner) = inner.as_object()
    {
        let message = text_field(inner, &["message", "detail", "title"])?;
        // Keystone's wrapper is called "error"; Cinder's fault names
        // (itemNotFound, badRequest, ...) are worth keeping for the reader.
        return Some(if name == "error" {
            message
        } else {
            format!("{name}: {message}")
        });
    }
    None
}

fn text_field(obj: &serde_json::Map<String, serde_json::Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| {
        obj.get(*k)
            .and_then(|v| v.as_str())
            .map(strip_line_breaks)
            .filter(|s| !s.is_empty())
    })
}

/// webob answers `<html><head><title>404 Not Found</title></head><body><h1>404
/// Not Found</h1>No image found with ID x<br /><br /></body></html>`: keep the
/// body text, drop the title, which repeats the status line.
fn html_to_text(html: &str) -> String {
    let body = match (html.find("<body"), html.rfind("</body>")) {
        (Some(start), Some(end)) => html.get(start..end).unwrap_or(html),
        _ => html,
    };
    let mut out = String::with_capacity(body.len());
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    collapse_whitespace(&out)
}

/// webob's plain text starts with the status line ("404 Not Found"); drop it
/// when something follows.
fn strip_status_line(text: &str, status: StatusCode) -> String {
    if let Some(reason) = status.canonical_reason() {
        let prefix = format!("{} {reason}", status.as_u16());
        if let Some(rest) = text.strip_prefix(&prefix) {
            let rest = rest.trim_start_matches([' ', ':', '.']).trim();
            if !rest.is_empty() {
                return rest.to_string();
            }
        }
    }
    text.to_string()
}

/// Glance's JSON messages carry webob's HTML line breaks ("... cannot be deleted.<br /><br />");
/// people should read the sentence. Only those tags go: a message may well hold a `<`.
fn strip_line_breaks(text: &str) -> String {
    let mut text = text.to_string();
    for tag in ["<br />", "<br/>", "<br>", "<p>", "</p>"] {
        text = text.replace(tag, " ");
    }
    collapse_whitespace(&text)
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(text: &str) -> String {
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text.to_string();
    }
    let mut out: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    out.push('…');
    out
}

/// The longest wait a `Retry-After` is believed for (10 minutes): a cloud
/// that asks for longer, in seconds or with a far-future date, gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10 * 60);

/// Parses a `Retry-After` value: delay seconds (integer or decimal, cut to
/// [`MAX_RETRY_AFTER`], however many digits) or an HTTP date (a date in the
/// past means "now", a far-future one is cut to [`MAX_RETRY_AFTER`]).
/// Negative, infinite, not-a-number and unreadable values are refused
/// (`None`): the caller then backs off on its own.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time".
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    if let Ok(secs) = value.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        let capped = secs.min(MAX_RETRY_AFTER.as_secs_f64());
        return Some(Duration::try_from_secs_f64(capped).unwrap_or(MAX_RETRY_AFTER));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = date.with_timezone(&chrono::Utc).signed_duration_since(now);
    Some(
        delta
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

#[cfg(test)]
mod tests {

    fn json_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        headers
    }

    #[test]
    fn glance_json_messages_lose_webobs_line_breaks_but_keep_other_text() {
        let body = r#"{"code": "403 Forbidden", "title": "Forbidden", "message": "Image x is protected and cannot be deleted.<br /><br />\n\n\n"}"#;
        let err =
            CloudError::from_response(StatusCode::FORBIDDEN, &json_headers(), body.as_bytes());
        assert_eq!(err.message(), "Image x is protected and cannot be deleted.");
        let body = r#"{"badRequest": {"code": 400, "message": "size must be < 10"}}"#;
        let err =
            CloudError::from_response(StatusCode::BAD_REQUEST, &json_headers(), body.as_bytes());
        assert!(
            err.message().ends_with("size must be < 10"),
            "{}",
            err.message()
        );
    }

    use super::*;
    use reqwest::header::HeaderValue;

    fn answer(status: u16, content_type: &str, body: &str) -> CloudError {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        CloudError::from_response(
            StatusCode::from_u16(status).unwrap(),
            &headers,
            body.as_bytes(),
        )
    }

    #[test]
    fn cinder_fault_bodies_map_to_kinds_with_the_cloud_message() {
        let e = answer(
            400,
            "application/json",
            r#"{"badRequest": {"code": 400, "message": "Invalid volume: Volume status must be available or error."}}"#,
        );
        assert_eq!(
            e,
            CloudError::BadRequest {
                message: "badRequest: Invalid volume: Volume status must be available or error."
                    .into()
            }
        );
        assert_eq!(e.reason(), "CloudBadRequest");
        assert!(!e.is_transient());

        let e = answer(
            404,
            "application/json",
            r#"{"itemNotFound": {"message": "Volume 42 could not be found.", "code": 404}}"#,
        );
        assert!(e.is_not_found());
        assert_eq!(e.message(), "itemNotFound: Volume 42 could not be found.");
        assert_eq!(e.reason(), "CloudNotFound");

        let e = answer(
            403,
            "application/json",
            r#"{"forbidden": {"code": 403, "message": "Policy doesn't allow volume:delete."}}"#,
        );
        assert!(matches!(e, CloudError::Forbidden { .. }));
        assert_eq!(e.reason(), "CloudForbidden");

        let e = answer(
            409,
            "application/json",
            r#"{"conflictingRequest": {"code": 409, "message": "busy"}}"#,
        );
        assert!(matches!(e, CloudError::Conflict { .. }));
        assert!(e.is_transient());

        let e = answer(
            413,
            "application/json",
            r#"{"overLimit": {"code": 413, "message": "VolumeSizeExceedsAvailableQuota: Requested volume exceeds allowed gigabytes quota."}}"#,
        );
        assert!(matches!(e, CloudError::QuotaExceeded { .. }), "{e:?}");
        assert!(e.message().contains("quota"));

        let e = answer(
            401,
            "application/json",
            r#"{"unauthorized": {"code": 401, "message": "The request you have made requires authentication."}}"#,
        );
        assert!(matches!(e, CloudError::Unauthorized { .. }));
        assert_eq!(e.reason(), "AuthenticationFailed");
    }

    #[test]
    fn glance_and_keystone_error_bodies_are_read() {
        let e = answer(
            404,
            "application/json",
            r#"{"code": 404, "title": "Not Found", "message": "No image found with ID abc"}"#,
        );
        assert_eq!(e.message(), "No image found with ID abc");

        let e = answer(
            401,
            "application/json",
            r#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}"#,
        );
        assert_eq!(
            e.message(),
            "The request you have made requires authentication."
        );

        let html = "<html>\n <head>\n  <title>403 Forbidden</title>\n </head>\n <body>\n  <h1>403 Forbidden</h1>\n  Image 1 is protected and cannot be deleted.<br /><br />\n\n\n\n </body>\n</html>";
        let e = answer(403, "text/html; charset=UTF-8", html);
        assert_eq!(e.message(), "Image 1 is protected and cannot be deleted.");

        let e = answer(
            409,
            "text/plain",
            "409 Conflict\n\nThe request could not be completed due to a conflict with the current state of the resource.\n\n   ",
        );
        assert_eq!(
            e.message(),
            "The request could not be completed due to a conflict with the current state of the resource."
        );
    }

    #[test]
    fn empty_bodies_fall_back_to_the_status_line() {
        let e = answer(503, "text/plain", "");
        assert_eq!(
            e,
            CloudError::Unavailable {
                status: 503,
                retry_after: None,
                message: "503 Service Unavailable".into()
            }
        );
        assert!(e.is_transient());
        assert_eq!(e.reason(), "CloudUnavailable");
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let e = CloudError::from_response(StatusCode::TOO_MANY_REQUESTS, &headers, b"slow down");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(e.reason(), "RateLimited");
        assert!(e.is_transient());
        // 413 with Retry-After is Cinder's rate limiter, not a quota.
        let e = CloudError::from_response(StatusCode::PAYLOAD_TOO_LARGE, &headers, b"{}");
        assert!(matches!(e, CloudError::RateLimited { .. }));
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn hostile_retry_after_values_are_cut_or_refused_never_a_panic() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        for huge in [
            "601",
            "86400",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999999999999999999999999",
            "1e300",
            "1.7976931348623157e308",
            "600.0001",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "Wed, 21 Oct 2015 07:37:01 GMT",
        ] {
            assert_eq!(
                parse_retry_after(huge, now),
                Some(MAX_RETRY_AFTER),
                "{huge}"
            );
        }
        for refused in [
            "-1",
            "-0.5",
            "-99999999999999999999999",
            "inf",
            "-inf",
            "infinity",
            "NaN",
            "1e400",
            "12s",
            "0x10",
            "Wed, 32 Oct 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 25:28:00 GMT",
            "yesterday",
            "\u{0}",
            " , ",
        ] {
            assert_eq!(parse_retry_after(refused, now), None, "{refused}");
        }
        assert_eq!(
            parse_retry_after("0.000000001", now),
            Some(Duration::from_nanos(1))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Mon, 01 Jan 0001 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        // Every answer stays within the documented maximum.
        for value in ["600", "599.999", "Wed, 21 Oct 2015 07:37:00 GMT"] {
            let wait = parse_retry_after(value, now).unwrap();
            assert!(wait <= MAX_RETRY_AFTER, "{value}: {wait:?}");
        }
    }

    #[test]
    fn every_kind_has_a_camel_case_reason() {
        let kinds = [
            CloudError::config("x"),
            CloudError::EndpointNotFound {
                service: "image",
                message: "x".into(),
            },
            CloudError::InvalidCredentials {
                message: "x".into(),
                retry_after: None,
            },
            CloudError::Transport {
                message: "x".into(),
            },
            CloudError::TlsFailure {
                host: "h".into(),
                message: "x".into(),
            },
            CloudError::HostNotFound {
                host: "h".into(),
                message: "x".into(),
            },
            CloudError::NotLeader {
                message: "x".into(),
            },
            CloudError::decode("x"),
            CloudError::unsupported("x"),
            CloudError::Http {
                status: 418,
                message: "x".into(),
            },
        ];
        for k in kinds {
            let r = k.reason();
            assert!(r.chars().next().unwrap().is_ascii_uppercase(), "{r}");
            assert!(r.chars().all(|c| c.is_ascii_alphanumeric()), "{r}");
        }
    }

    #[test]
    fn long_messages_are_truncated() {
        let body = "x".repeat(5000);
        let e = answer(500, "text/plain", &body);
        assert!(e.message().chars().count() <= MAX_MESSAGE_CHARS + 1);
    }
}
