//! The clouds' own models, typed on the seeds' fields.
//!
//! Reading is lenient on purpose: unknown fields are ignored, absent or null
//! optional fields are fine, and a status string the seeds do not list
//! becomes `Unknown(String)` rather than a parse failure, so that a cloud
//! that grows a new state never breaks a reconcile.

mod image;
mod volume;

pub use image::*;
pub use volume::*;

/// Declares a status enum read from and written as the cloud's strings, with
/// `Unknown(String)` for anything else. `as_str()` round-trips.
macro_rules! cloud_status {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A string the seeds do not list, kept as the cloud sent it.
            Unknown(String),
        }

        impl $name {
            /// Every status the seeds list (not `Unknown`).
            pub const KNOWN: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Unknown(s) => s,
                }
            }

            pub fn parse(s: &str) -> Self {
                match s {
                    $($text => $name::$variant,)+
                    other => $name::Unknown(other.to_string()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <Option<String> as serde::Deserialize>::deserialize(d)?;
                Ok($name::parse(s.as_deref().unwrap_or("")))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::Unknown(String::new())
            }
        }
    };
}
pub(crate) use cloud_status;

/// `null` reads as the type's default (Glance sends `"tags": null` at times).
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

/// A boolean that Cinder sometimes sends as the string "true"/"false"
/// (`bootable`), sometimes as a JSON boolean.
pub(crate) fn lenient_bool<'de, D>(d: D) -> Result<bool, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let v = <Option<serde_json::Value> as serde::Deserialize>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::Bool(b)) => b,
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        _ => false,
    })
}

/// A count the cloud may send as a number or a string of digits (Cinder's
/// `volume_image_metadata` writes `"min_disk": "0"`): anything else, a
/// negative or fractional number included, reads as 0 rather than failing
/// the whole answer.
pub(crate) fn lenient_u64<'de, D>(d: D) -> Result<u64, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let v = <Option<serde_json::Value> as serde::Deserialize>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    })
}

/// An optional string the cloud may send as a number; other shapes read as
/// absent.
pub(crate) fn lenient_string<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let v = <Option<serde_json::Value> as serde::Deserialize>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// A nested object read when it has the expected shape, and absent when
/// it does not: an odd extra field never fails the resource it is part of.
pub(crate) fn absent_when_malformed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = <Option<serde_json::Value> as serde::Deserialize>::deserialize(d)?;
    Ok(v.and_then(|v| serde_json::from_value(v).ok()))
}
