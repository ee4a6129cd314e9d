//! Stream metadata (`$$s` streams, contract §5.6) and the system settings stream `$settings`
//! (default ACLs, contract §8).
//!
//! Both keep the JSON document as sent by the server so unknown and custom keys survive a
//! read-modify-write, and add typed accessors for the keys the replicator acts on.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::position::StreamRevision;

/// Metadata key: truncate-before event number.
pub const TRUNCATE_BEFORE: &str = "$tb";
/// Metadata key: maximum number of events kept.
pub const MAX_COUNT: &str = "$maxCount";
/// Metadata key: maximum event age in seconds.
pub const MAX_AGE: &str = "$maxAge";
/// Metadata key: `Cache-Control` max-age of head pages in seconds.
pub const CACHE_CONTROL: &str = "$cacheControl";
/// Metadata key: access control list.
pub const ACL: &str = "$acl";

/// The metadata document of a stream, as returned by `GET /streams/{s}/metadata` with
/// `Accept: application/json`.
///
/// A stream without metadata reads as `{}` (contract §4.5). Metadata written as non-JSON comes back
/// as a JSON string; the accessors then return `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamMetadata(Value);

impl StreamMetadata {
    /// Wraps a JSON document.
    pub fn new(document: Value) -> StreamMetadata {
        StreamMetadata(document)
    }

    /// The soft-delete document `{"$tb":9223372036854775807}` the server writes for a soft delete
    /// (contract §5.7).
    pub fn soft_deleted() -> StreamMetadata {
        StreamMetadata(serde_json::json!({ TRUNCATE_BEFORE: i64::MAX }))
    }

    /// The whole document.
    pub fn as_json(&self) -> &Value {
        &self.0
    }

    /// Consumes the wrapper.
    pub fn into_json(self) -> Value {
        self.0
    }

    /// Whether the stream has no metadata (`{}`).
    pub fn is_empty(&self) -> bool {
        self.0.as_object().is_some_and(serde_json::Map::is_empty)
    }

    /// `$tb`: events before this number are hidden.
    pub fn truncate_before(&self) -> Option<StreamRevision> {
        self.0
            .get(TRUNCATE_BEFORE)?
            .as_u64()
            .and_then(StreamRevision::new)
    }

    /// Whether `$tb` is `i64::MAX`, i.e. the stream is soft-deleted (contract §5.7).
    pub fn is_soft_deleted(&self) -> bool {
        self.truncate_before() == Some(StreamRevision::TOMBSTONE)
    }

    /// `$maxCount`.
    pub fn max_count(&self) -> Option<u64> {
        self.0.get(MAX_COUNT)?.as_u64()
    }

    /// `$maxAge` in seconds.
    pub fn max_age_seconds(&self) -> Option<u64> {
        self.0.get(MAX_AGE)?.as_u64()
    }

    /// `$acl`, if present and well-formed.
    pub fn acl(&self) -> Option<Acl> {
        serde_json::from_value(self.0.get(ACL)?.clone()).ok()
    }
}

/// Roles granted one right: the server accepts a single string or an array (contract §8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Roles {
    /// `"$admins"`.
    One(String),
    /// `["$admins", "ops"]`.
    Many(Vec<String>),
}

impl Roles {
    /// The role/user names, whichever form was used.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Roles::One(name) => vec![name.as_str()],
            Roles::Many(names) => names.iter().map(String::as_str).collect(),
        }
    }
}

/// An access control list: one role list per right (`$r`, `$w`, `$d`, `$mr`, `$mw`). A missing
/// right falls back to `$settings`, then to the built-in default (contract §8).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Acl {
    /// Read.
    #[serde(rename = "$r", default, skip_serializing_if = "Option::is_none")]
    pub read: Option<Roles>,
    /// Write.
    #[serde(rename = "$w", default, skip_serializing_if = "Option::is_none")]
    pub write: Option<Roles>,
    /// Delete.
    #[serde(rename = "$d", default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<Roles>,
    /// Metadata read.
    #[serde(rename = "$mr", default, skip_serializing_if = "Option::is_none")]
    pub meta_read: Option<Roles>,
    /// Metadata write.
    #[serde(rename = "$mw", default, skip_serializing_if = "Option::is_none")]
    pub meta_write: Option<Roles>,
}

/// The event type the server docs use for `$settings` writes.
pub const SETTINGS_EVENT_TYPE: &str = "update-default-acl";

/// The system settings: the data of the last event of `$settings`, whatever its type (contract §8).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SystemSettings(Value);

impl SystemSettings {
    /// Wraps a JSON document.
    pub fn new(document: Value) -> SystemSettings {
        SystemSettings(document)
    }

    /// Builds the document from the two default ACLs.
    pub fn from_acls(user_streams: Option<Acl>, system_streams: Option<Acl>) -> SystemSettings {
        let mut document = serde_json::Map::new();
        if let Some(acl) = user_streams {
            document.insert("$userStreamAcl".into(), acl_json(&acl));
        }
        if let Some(acl) = system_streams {
            document.insert("$systemStreamAcl".into(), acl_json(&acl));
        }
        SystemSettings(Value::Object(document))
    }

    /// The whole document (other keys are preserved but ignored by the server).
    pub fn as_json(&self) -> &Value {
        &self.0
    }

    /// `$userStreamAcl`: defaults for streams not starting with `$`.
    pub fn user_stream_acl(&self) -> Option<Acl> {
        serde_json::from_value(self.0.get("$userStreamAcl")?.clone()).ok()
    }

    /// `$systemStreamAcl`: defaults for `$` streams.
    pub fn system_stream_acl(&self) -> Option<Acl> {
        serde_json::from_value(self.0.get("$systemStreamAcl")?.clone()).ok()
    }
}

fn acl_json(acl: &Acl) -> Value {
    // Serializing a struct of strings and string vectors cannot fail.
    serde_json::to_value(acl).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_delete_document() {
        let meta = StreamMetadata::soft_deleted();
        assert!(meta.is_soft_deleted());
        assert_eq!(
            serde_json::to_string(meta.as_json()).unwrap(),
            r#"{"$tb":9223372036854775807}"#
        );
        assert!(!StreamMetadata::new(serde_json::json!({})).is_soft_deleted());
        assert!(StreamMetadata::new(serde_json::json!({})).is_empty());
    }

    #[test]
    fn metadata_accessors() {
        let meta = StreamMetadata::new(serde_json::json!({
            "$maxCount": 5, "$maxAge": 60, "$tb": 3,
            "$acl": {"$r": "$all", "$w": ["a", "b"]}, "custom": true
        }));
        assert_eq!(meta.max_count(), Some(5));
        assert_eq!(meta.max_age_seconds(), Some(60));
        assert_eq!(meta.truncate_before(), StreamRevision::new(3));
        let acl = meta.acl().unwrap();
        assert_eq!(acl.read.unwrap().names(), vec!["$all"]);
        assert_eq!(acl.write.unwrap().names(), vec!["a", "b"]);
        assert_eq!(acl.delete, None);
        // Non-JSON metadata comes back as a JSON string.
        let text = StreamMetadata::new(Value::String("x".into()));
        assert_eq!(text.truncate_before(), None);
        assert!(!text.is_empty());
    }

    #[test]
    fn settings_round_trip() {
        let settings = SystemSettings::from_acls(
            Some(Acl {
                read: Some(Roles::Many(vec!["$admins".into(), "ops".into()])),
                ..Acl::default()
            }),
            Some(Acl {
                write: Some(Roles::One("$admins".into())),
                ..Acl::default()
            }),
        );
        assert_eq!(
            serde_json::to_string(settings.as_json()).unwrap(),
            r#"{"$userStreamAcl":{"$r":["$admins","ops"]},"$systemStreamAcl":{"$w":"$admins"}}"#
        );
        assert_eq!(
            settings.system_stream_acl().unwrap().write,
            Some(Roles::One("$admins".into()))
        );
    }
}
