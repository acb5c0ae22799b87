//! Small HTTP helpers shared by every API: the clouds' error body shapes,
//! query strings, the base URL a client called, timestamps.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};
use serde_json::{Value, json};

/// Which cloud API a request was for; decides the shape of an error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Keystone: `{"error": {"code", "title", "message"}}`.
    Identity,
    /// Cinder: `{"<faultName>": {"code", "message"}}`.
    BlockStorage,
    /// Glance (webob's JSON rendering): `{"code": "403 Forbidden", "title", "message"}`.
    Image,
    /// SCP (assumed): `{"code", "message"}` under `error`.
    Scp,
    /// Admin API and unknown paths.
    Plain,
}

impl Dialect {
    pub fn of_path(path: &str) -> Dialect {
        if path.starts_with("/identity") {
            Dialect::Identity
        } else if path.starts_with("/block-storage") {
            Dialect::BlockStorage
        } else if path.starts_with("/image") {
            Dialect::Image
        } else if path.starts_with("/scp") {
            Dialect::Scp
        } else {
            Dialect::Plain
        }
    }
}

/// An error answer in one of the clouds' shapes.
#[derive(Debug)]
pub struct ApiError {
    pub dialect: Dialect,
    pub status: StatusCode,
    pub message: String,
    pub headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    pub fn new(dialect: Dialect, status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            dialect,
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: header::HeaderName, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(&self) -> Value {
        error_body(self.dialect, self.status, &self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = json_response(self.status, &self.body());
        for (name, value) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                resp.headers_mut().append(name.clone(), v);
            }
        }
        resp
    }
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

/// Cinder's fault name for a status code (cinder/api/openstack/wsgi.py).
pub fn cinder_fault_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 => "overLimit",
        415 => "badMediaType",
        429 => "overLimit",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

pub fn error_body(dialect: Dialect, status: StatusCode, message: &str) -> Value {
    let title = status.canonical_reason().unwrap_or("Error");
    match dialect {
        Dialect::BlockStorage => json!({
            cinder_fault_name(status): {"code": status.as_u16(), "message": message}
        }),
        // Glance renders webob's HTML explanation into the JSON message, markup included.
        Dialect::Image => json!({
            "code": format!("{} {}", status.as_u16(), title),
            "title": title,
            "message": format!("{message}<br /><br />\n\n\n"),
        }),
        Dialect::Identity | Dialect::Plain => json!({
            "error": {"code": status.as_u16(), "title": title, "message": message}
        }),
        Dialect::Scp => json!({
            "error": {"code": status.as_u16(), "message": message}
        }),
    }
}

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    json_bytes(status, serde_json::to_vec(body).unwrap_or_default())
}

/// An already serialized JSON body.
pub fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn ok_json(body: &Value) -> Response {
    json_response(StatusCode::OK, body)
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `http://<Host>`: the base URL the client called, so that links and
/// catalogs point back where the client can reach the emulator.
pub fn base_url(headers: &HeaderMap, fallback: &str) -> String {
    match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) if !host.is_empty() => format!("http://{host}"),
        _ => fallback.to_string(),
    }
}

pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

// ---- query strings ---------------------------------------------------------

/// A decoded query string, in order, keys may repeat.
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let mut out = Vec::new();
        for part in raw.unwrap_or("").split('&') {
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            out.push((percent_decode(k), percent_decode(v)));
        }
        Query(out)
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// This query without `keys`, plus `extra`, encoded.
    pub fn encode_without(&self, keys: &[&str], extra: &[(&str, &str)]) -> String {
        let mut parts: Vec<String> = self
            .0
            .iter()
            .filter(|(k, _)| !keys.contains(&k.as_str()))
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        parts.extend(
            extra
                .iter()
                .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v))),
        );
        parts.join("&")
    }
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- time ------------------------------------------------------------------

/// Cinder's `YYYY-MM-DDThh:mm:ss.SSSSSS` (no zone).
pub fn cinder_time(t: DateTime<Utc>) -> String {
    CinderTime(t).to_string()
}

/// Glance's and NHN Keystone's `YYYY-MM-DDThh:mm:ssZ`.
pub fn glance_time(t: DateTime<Utc>) -> String {
    GlanceTime(t).to_string()
}

/// A timestamp in Cinder's format that serializes without an intermediate
/// `String` (a page of 1000 volumes has thousands of them).
pub struct CinderTime(pub DateTime<Utc>);

impl fmt::Display for CinderTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hand-rolled rather than strftime: listing volumes formats many of these.
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond() % 1_000_000_000 / 1000
        )
    }
}

impl Serialize for CinderTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A timestamp in Glance's format, serialized without an intermediate `String`.
pub struct GlanceTime(pub DateTime<Utc>);

impl fmt::Display for GlanceTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

impl Serialize for GlanceTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Any `Display` value serialized as a JSON string, without an intermediate
/// `String` (e.g. `format_args!` for a link).
pub struct DisplayStr<T>(pub T);

impl<T: fmt::Display> Serialize for DisplayStr<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// Keystone v3's `YYYY-MM-DDThh:mm:ss.SSSSSSZ`.
pub fn keystone_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A boolean in the forms oslo's `bool_from_string(strict=True)` accepts
/// (and JSON booleans). `None` means "not a boolean".
pub fn loose_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "on" | "yes" | "y" | "t" => Some(true),
            "false" | "0" | "off" | "no" | "n" | "f" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trip() {
        let q = Query::parse(Some("name=a+b&tag=x&tag=y%2Fz&marker=m"));
        assert_eq!(q.get("name"), Some("a b"));
        assert_eq!(q.all("tag").collect::<Vec<_>>(), vec!["x", "y/z"]);
        assert_eq!(
            q.encode_without(&["marker"], &[("marker", "n")]),
            "name=a%20b&tag=x&tag=y%2Fz&marker=n"
        );
    }

    #[test]
    fn timestamps_have_each_clouds_format() {
        let t = DateTime::parse_from_rfc3339("2018-12-18T05:43:12.000042Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(cinder_time(t), "2018-12-18T05:43:12.000042");
        assert_eq!(glance_time(t), "2018-12-18T05:43:12Z");
        assert_eq!(keystone_time(t), "2018-12-18T05:43:12.000042Z");
    }

    #[test]
    fn percent_decode_keeps_a_stray_percent() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41"), "A");
    }

    #[test]
    fn error_bodies_have_each_clouds_shape() {
        let b = error_body(Dialect::BlockStorage, StatusCode::CONFLICT, "m");
        assert_eq!(
            b,
            json!({"conflictingRequest": {"code": 409, "message": "m"}})
        );
        let g = error_body(Dialect::Image, StatusCode::FORBIDDEN, "m");
        assert_eq!(
            g,
            json!({"code": "403 Forbidden", "title": "Forbidden", "message": "m<br /><br />\n\n\n"})
        );
    }
}
