//! The ACL documents of the fence, as pure functions of the settings found (contract §8).
//!
//! Event Store resolves each right separately: stream `$acl` → `$settings` → built-in default
//! (`$all` for user streams). ACLs grant, they never deny, and `$admins` bypass them. So:
//!
//! * **fenced** (a secondary): `$w`, `$d`, `$mw` of user streams = the replication user and
//!   `$admins`; `$r`, `$mr` stay what they were, so applications keep reading;
//! * **closed** (during promotion, and an old primary): `$w`, `$d`, `$mw` = `$admins` only;
//! * **opened** (a promoted secondary): the configured `promotion.write_roles`, or the rights the
//!   secondary had before setup fenced it.
//!
//! Everything in the settings document other than `$userStreamAcl` is kept as it was.

use serde_json::Value;

use crate::esdb::{Acl, Roles, SystemSettings};

/// The role that means "anyone" (contract §8).
pub const ANYONE: &str = "$all";
/// The administrators' group; it bypasses ACLs.
pub const ADMINS: &str = "$admins";

/// A user as an ACL sees it.
#[derive(Debug, Clone, Copy)]
pub struct Principal<'a> {
    pub login: &'a str,
    pub groups: &'a [String],
}

/// The user-stream ACL in force under `settings`, with every right resolved (missing rights fall
/// back to the built-in default, `$all`).
pub fn user_acl(settings: Option<&SystemSettings>) -> Acl {
    let acl = settings.and_then(SystemSettings::user_stream_acl);
    let acl = acl.unwrap_or_default();
    let or_anyone = |r: Option<Roles>| Some(r.unwrap_or_else(|| Roles::One(ANYONE.into())));
    Acl {
        read: or_anyone(acl.read),
        write: or_anyone(acl.write),
        delete: or_anyone(acl.delete),
        meta_read: or_anyone(acl.meta_read),
        meta_write: or_anyone(acl.meta_write),
    }
}

/// Whether `roles` grant the right to `who` (not counting the `$admins` bypass).
pub fn grants(roles: Option<&Roles>, who: Principal<'_>) -> bool {
    roles.is_some_and(|roles| {
        roles
            .names()
            .iter()
            .any(|r| *r == ANYONE || *r == who.login || who.groups.iter().any(|g| g == r))
    })
}

/// Whether `acl` lets `who` change user streams (write, delete or write metadata).
pub fn admits_writer(acl: &Acl, who: Principal<'_>) -> bool {
    [&acl.write, &acl.delete, &acl.meta_write]
        .into_iter()
        .any(|r| grants(r.as_ref(), who))
}

fn with_writers(before: Option<&SystemSettings>, writers: Roles) -> SystemSettings {
    let resolved = user_acl(before);
    let acl = Acl {
        read: resolved.read,
        write: Some(writers.clone()),
        delete: Some(writers.clone()),
        meta_read: resolved.meta_read,
        meta_write: Some(writers),
    };
    let mut document = match before.map(SystemSettings::as_json) {
        Some(Value::Object(map)) => map.clone(),
        _ => serde_json::Map::new(),
    };
    document.insert(
        "$userStreamAcl".into(),
        serde_json::to_value(&acl).unwrap_or(Value::Null),
    );
    SystemSettings::new(Value::Object(document))
}

/// The secondary's settings while it is a standby: only `replicator` and `$admins` change user
/// streams.
pub fn fenced(before: Option<&SystemSettings>, replicator: &str) -> SystemSettings {
    with_writers(
        before,
        Roles::Many(vec![replicator.to_owned(), ADMINS.to_owned()]),
    )
}

/// Only `$admins` change user streams: the secondary between revocation and opening, and an old
/// primary fenced by `switchover` or `promote --fence-primary`.
pub fn closed(before: Option<&SystemSettings>) -> SystemSettings {
    with_writers(before, Roles::Many(vec![ADMINS.to_owned()]))
}

/// The settings a promoted secondary opens with: `write_roles` if configured, else the writers
/// of `before` (the settings found before setup).
pub fn opened(before: Option<&SystemSettings>, write_roles: Option<&[String]>) -> SystemSettings {
    let writers = match write_roles {
        Some(roles) => Roles::Many(roles.to_vec()),
        None => {
            // Put back exactly what was there: no `$userStreamAcl` at all means the default.
            return before
                .cloned()
                .unwrap_or_else(|| SystemSettings::new(Value::Object(serde_json::Map::new())));
        }
    };
    with_writers(before, writers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn who<'a>(login: &'a str, groups: &'a [String]) -> Principal<'a> {
        Principal { login, groups }
    }

    #[test]
    fn the_fence_admits_only_the_replicator_and_keeps_reads() {
        let before = SystemSettings::new(json!({
            "$userStreamAcl": {"$r": ["readers"], "$w": "$all"},
            "$systemStreamAcl": {"$r": "$admins"},
            "other": 1
        }));
        let fenced = fenced(Some(&before), "replicator");
        let acl = user_acl(Some(&fenced));
        assert!(admits_writer(&acl, who("replicator", &[])));
        assert!(!admits_writer(&acl, who("app", &["writers".into()])));
        assert_eq!(acl.read, Some(Roles::Many(vec!["readers".into()])));
        // Unset rights are written out as the default they resolved to.
        assert_eq!(acl.meta_read, Some(Roles::One("$all".into())));
        assert_eq!(
            fenced.as_json()["$systemStreamAcl"],
            json!({"$r": "$admins"})
        );
        assert_eq!(fenced.as_json()["other"], json!(1));
    }

    #[test]
    fn closed_admits_no_one_but_admins() {
        let acl = user_acl(Some(&closed(None)));
        assert!(!admits_writer(&acl, who("replicator", &[])));
        assert!(!admits_writer(&acl, who("anyone", &["$ops".into()])));
        assert!(grants(acl.read.as_ref(), who("anyone", &[])));
    }

    #[test]
    fn opening_restores_the_old_writers_or_the_configured_ones() {
        // No settings before: the default, which admits everyone (the replicator included).
        let open = opened(None, None);
        assert!(admits_writer(
            &user_acl(Some(&open)),
            who("replicator", &[])
        ));
        let before = SystemSettings::new(json!({"$userStreamAcl": {"$w": ["apps"]}}));
        let open = opened(Some(&before), None);
        assert_eq!(open, before);
        let roles = vec!["apps".to_owned(), "$admins".to_owned()];
        let open = user_acl(Some(&opened(None, Some(&roles))));
        assert!(!admits_writer(&open, who("replicator", &[])));
        assert!(admits_writer(&open, who("app", &["apps".into()])));
        // A replicator in a group that may write is re-admitted: the caller must see it.
        assert!(admits_writer(&open, who("replicator", &["apps".into()])));
    }
}
