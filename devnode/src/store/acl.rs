//! Stream metadata, `$settings` and access-control evaluation (contract §5.6, §8).
//!
//! Pure functions over parsed JSON so both the store and any protocol front can use them.

use serde_json::{Map, Value};

/// The five per-stream rights of an ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    Read,
    Write,
    Delete,
    MetaRead,
    MetaWrite,
}

/// One ACL object (`$r`, `$w`, `$d`, `$mr`, `$mw`). `None` = not set (fall back), `Some(vec![])`
/// = set to nobody (only admins, §8: "an empty array (not null) stops the fallback").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    pub read: Option<Vec<String>>,
    pub write: Option<Vec<String>>,
    pub delete: Option<Vec<String>>,
    pub meta_read: Option<Vec<String>>,
    pub meta_write: Option<Vec<String>>,
}

impl Acl {
    fn get(&self, right: Right) -> Option<&Vec<String>> {
        match right {
            Right::Read => self.read.as_ref(),
            Right::Write => self.write.as_ref(),
            Right::Delete => self.delete.as_ref(),
            Right::MetaRead => self.meta_read.as_ref(),
            Right::MetaWrite => self.meta_write.as_ref(),
        }
    }

    /// Parses an ACL object; `None` if it is not an object or a role entry has the wrong type
    /// (the server's parser throws and the whole metadata/settings is ignored).
    pub fn from_json(v: &Value) -> Option<Acl> {
        let obj = v.as_object()?;
        let mut acl = Acl::default();
        for (k, v) in obj {
            let roles = match v {
                Value::Null => None,
                Value::String(s) => Some(vec![s.clone()]),
                Value::Array(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    for i in items {
                        out.push(i.as_str()?.to_owned());
                    }
                    Some(out)
                }
                _ => return None,
            };
            match k.as_str() {
                "$r" => acl.read = roles,
                "$w" => acl.write = roles,
                "$d" => acl.delete = roles,
                "$mr" => acl.meta_read = roles,
                "$mw" => acl.meta_write = roles,
                _ => {}
            }
        }
        Some(acl)
    }
}

/// Parsed stream metadata (the last event of `$$stream`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamMetadata {
    pub max_count: Option<i64>,
    /// Seconds.
    pub max_age: Option<i64>,
    /// Truncate before (`$tb`); `i64::MAX` marks a soft-deleted stream (§5.7).
    pub truncate_before: Option<i64>,
    /// Seconds.
    pub cache_control: Option<i64>,
    pub acl: Option<Acl>,
    /// The whole JSON object, kept so the "undelete" follow-up can preserve custom keys (§5.7).
    pub raw: Map<String, Value>,
}

impl StreamMetadata {
    /// Parses metadata bytes. The server reads metadata only from JSON-flagged, non-empty events and
    /// treats unparsable metadata as empty (`GetStreamMetadataUncached` catches the parse error).
    pub fn parse(is_json: bool, data: &[u8]) -> StreamMetadata {
        if !is_json || data.is_empty() {
            return StreamMetadata::default();
        }
        match serde_json::from_slice::<Value>(data) {
            Ok(Value::Object(map)) => Self::from_map(map).unwrap_or_default(),
            _ => StreamMetadata::default(),
        }
    }

    fn from_map(map: Map<String, Value>) -> Option<StreamMetadata> {
        let int = |k: &str| -> Option<Option<i64>> {
            match map.get(k) {
                None | Some(Value::Null) => Some(None),
                Some(v) => v.as_i64().map(Some),
            }
        };
        let acl = match map.get("$acl") {
            None | Some(Value::Null) => None,
            Some(v) => Some(Acl::from_json(v)?),
        };
        Some(StreamMetadata {
            max_count: int("$maxCount")?,
            max_age: int("$maxAge")?,
            truncate_before: int("$tb")?,
            cache_control: int("$cacheControl")?,
            acl,
            raw: map,
        })
    }

    pub fn is_soft_deleted(&self) -> bool {
        self.truncate_before == Some(i64::MAX)
    }
}

/// System-wide default ACLs from the last `$settings` event (§8).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemSettings {
    pub user_stream_acl: Option<Acl>,
    pub system_stream_acl: Option<Acl>,
}

impl SystemSettings {
    /// `{"$userStreamAcl": {...}, "$systemStreamAcl": {...}}`, other keys skipped; anything
    /// unparsable yields the built-in defaults.
    pub fn parse(data: &[u8]) -> SystemSettings {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(data) else {
            return SystemSettings::default();
        };
        let acl = |k: &str| match map.get(k) {
            None | Some(Value::Null) => Some(None),
            Some(v) => Acl::from_json(v).map(Some),
        };
        match (acl("$userStreamAcl"), acl("$systemStreamAcl")) {
            (Some(u), Some(s)) => SystemSettings {
                user_stream_acl: u,
                system_stream_acl: s,
            },
            _ => SystemSettings::default(),
        }
    }
}

/// Who is asking. `None` principal = anonymous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub login: String,
    pub groups: Vec<String>,
    /// v20+: the login `admin` is an administrator whatever its groups
    /// (`WellKnownAssertions.Admin` matches the name `admin` or the role `$admins`,
    /// `src/KurrentDB.Core/Authorization/WellKnownAssertions.cs`); v5 knows roles only.
    pub admin_by_name: bool,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.admin_by_name || self.groups.iter().any(|g| g == ADMINS_ROLE)
    }
}

pub const ALL_ROLE: &str = "$all";
pub const ADMINS_ROLE: &str = "$admins";
/// `SystemRoles.Operations`: may scavenge (and shut down) without being an admin.
pub const OPS_ROLE: &str = "$ops";

/// Names starting with `$` are system streams (§6).
pub fn is_system_stream(stream: &str) -> bool {
    stream.starts_with('$')
}

/// `$$x` is the metastream of `x`.
pub fn is_metastream(stream: &str) -> bool {
    stream.starts_with("$$")
}

pub fn metastream_of(stream: &str) -> String {
    format!("$${stream}")
}

pub fn original_of_metastream(stream: &str) -> &str {
    stream.strip_prefix("$$").unwrap_or(stream)
}

/// The role list in force for `right` on a stream: stream `$acl` → `$settings` → built-in
/// default, resolved per right (§8: `acl.WriteRoles ?? sysAcl.WriteRoles ?? defAcl.WriteRoles`).
pub fn effective_roles(
    stream: &str,
    stream_acl: Option<&Acl>,
    settings: &SystemSettings,
    right: Right,
) -> Vec<String> {
    if let Some(r) = stream_acl.and_then(|a| a.get(right)) {
        return r.clone();
    }
    let sys = if is_system_stream(stream) {
        settings.system_stream_acl.as_ref()
    } else {
        settings.user_stream_acl.as_ref()
    };
    if let Some(r) = sys.and_then(|a| a.get(right)) {
        return r.clone();
    }
    // SystemSettings.Default: user streams open to everyone, system streams to admins.
    if is_system_stream(stream) {
        vec![ADMINS_ROLE.to_owned()]
    } else {
        vec![ALL_ROLE.to_owned()]
    }
}

/// Role check: `$all` admits anyone (also anonymous), then admins pass, then the login name or
/// any group must be listed (v5 adds the login to the principal's roles; v20+ matches name claims).
pub fn roles_allow(roles: &[String], principal: Option<&Principal>) -> bool {
    if roles.iter().any(|r| r == ALL_ROLE) {
        return true;
    }
    let Some(p) = principal else { return false };
    if p.is_admin() {
        return true;
    }
    roles
        .iter()
        .any(|r| *r == p.login || p.groups.iter().any(|g| g == r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(groups: &[&str]) -> Principal {
        Principal {
            login: "bob".into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            admin_by_name: false,
        }
    }

    #[test]
    fn defaults() {
        let s = SystemSettings::default();
        assert_eq!(
            effective_roles("orders", None, &s, Right::Write),
            vec!["$all"]
        );
        assert_eq!(
            effective_roles("$stats", None, &s, Right::Read),
            vec!["$admins"]
        );
        assert!(roles_allow(&["$all".into()], None));
        assert!(!roles_allow(&["$admins".into()], Some(&user(&[]))));
        assert!(roles_allow(&["$admins".into()], Some(&user(&["$admins"]))));
        assert!(roles_allow(&["bob".into()], Some(&user(&[]))));
    }

    #[test]
    fn per_right_fallback() {
        let settings = SystemSettings::parse(
            br#"{"$userStreamAcl":{"$r":"$all","$w":["$ops"]},"$systemStreamAcl":{"$r":"$admins"}}"#,
        );
        let acl = Acl::from_json(&serde_json::json!({"$r": ["reader"]})).unwrap();
        assert_eq!(
            effective_roles("s", Some(&acl), &settings, Right::Read),
            vec!["reader"]
        );
        assert_eq!(
            effective_roles("s", Some(&acl), &settings, Right::Write),
            vec!["$ops"]
        );
        assert_eq!(
            effective_roles("s", Some(&acl), &settings, Right::Delete),
            vec!["$all"]
        );
        let empty = Acl::from_json(&serde_json::json!({"$w": []})).unwrap();
        assert!(effective_roles("s", Some(&empty), &settings, Right::Write).is_empty());
    }

    #[test]
    fn metadata_parse() {
        let m = StreamMetadata::parse(true, br#"{"$tb":9223372036854775807,"x":1}"#);
        assert!(m.is_soft_deleted());
        assert_eq!(m.raw.get("x"), Some(&serde_json::json!(1)));
        assert_eq!(
            StreamMetadata::parse(false, b"{\"$tb\":1}"),
            StreamMetadata::default()
        );
        assert_eq!(
            StreamMetadata::parse(true, b"{\"$maxCount\":\"x\"}"),
            StreamMetadata::default()
        );
    }
}
