//! User accounts kept in the log the way the real server keeps them, so a node on a `--db`
//! directory remembers created users, disabled flags and new passwords across restarts.
//!
//! Layout (`UserManagementService.cs`, `Data/UserData.cs` @oss-v5.0.12, same in v24.10.0):
//! * `$user-<login>`: `$UserCreated`, then `$UserUpdated` events; the data of the last one is the
//!   account (`{loginName, fullName, salt, hash, disabled, groups}`, `disabled` only when true).
//!   Its metadata restricts `$w`, `$d`, `$mw` to `$admins`.
//! * `$users`: one `$User` event per created account, data = the login name (not JSON).
//! * `$users-password-notifications` (`$maxAge` 1 h): `$PasswordChanged` `{loginName}` after
//!   every change except enable; the server's authentication cache drops the login on it.
//!
//! With `NodeConfig::server_records`, `admin` and `ops` are written to the log at the first start,
//! as the real server does when it first becomes leader. Other accounts from the node
//! configuration (`--user`, and `admin`/`ops` without that option) are *seeds*: used
//! while the log has no `$user-<login>` stream and written to the log the first time they are
//! changed, so `--user` can change a seed's password as long as it was never changed through the
//! API.
//!
//! Authentication goes through the server's credential cache ([`super::credentials`]): a change
//! takes effect when the notification poller drops the cached login, about 1 s later, as on the
//! real server. The write order of a change follows the profile (the server's `UserManagementService.cs` at each tag): v5 and
//! v20 write `$PasswordChanged` before `$UserUpdated`, 21.10 and later the reverse.

use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::acl::{self, Principal, ADMINS_ROLE};
use super::credentials::{CredentialCache, Lookup};
use super::{
    AppendResult, DeleteResult, EventRead, ProposedEvent, ReaderVersion, Store, StoreError,
    StreamRead, DELETED_STREAM, EXPECTED_ANY, MAX_PAGE_SIZE,
};
use crate::config::{Profile, User};

pub const USERS_STREAM: &str = "$users";
pub const USER_STREAM_PREFIX: &str = "$user-";
pub const PASSWORD_NOTIFICATIONS_STREAM: &str = "$users-password-notifications";
pub const USER_EVENT_TYPE: &str = "$User";
pub const USER_CREATED: &str = "$UserCreated";
pub const USER_UPDATED: &str = "$UserUpdated";
pub const PASSWORD_CHANGED: &str = "$PasswordChanged";

/// Rounds of [`hash_password`]; enough to make the hash not a plain checksum, cheap enough to run
/// on every request (a cache hit hashes too).
const HASH_ROUNDS: u32 = 64;

/// The stream holding `login`'s account.
pub fn user_stream(login: &str) -> String {
    format!("{USER_STREAM_PREFIX}{login}")
}

/// The event data of `$UserCreated` / `$UserUpdated` (`Data/UserData.cs`, serialized with
/// `DefaultValueHandling.Ignore`, hence no `disabled: false`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserData {
    pub login_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    pub salt: String,
    pub hash: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    #[serde(default)]
    pub groups: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What the user-management endpoints show of an account (no hash, no salt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    pub login_name: String,
    pub full_name: Option<String>,
    pub groups: Vec<String>,
    pub disabled: bool,
    /// Time of the last account event, 100 ns ticks; `None` for a seed not yet in the log.
    pub updated: Option<i64>,
}

/// Result of a user-management command (`UserManagementMessage.Error`); I/O failures are
/// [`StoreError`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOutcome {
    Done,
    NotFound,
    /// Create of an existing login with another password, or a write that lost a race.
    Conflict,
    /// Change-password with a wrong current password.
    Unauthorized,
}

/// A salted, iterated 128-bit hash, base64. Not cryptographic: the workspace has no crypto crate
/// and the dev node only needs the log to hold no plaintext (the real server stores an
/// `Rfc2898DeriveBytes` hash and salt, `Rfc2898PasswordHashAlgorithm.cs`).
pub fn hash_password(password: &str, salt: &str) -> String {
    let mut lanes = [0xcbf2_9ce4_8422_2325u64, 0x8422_2325_cbf2_9ce4u64];
    for round in 0..HASH_ROUNDS {
        for (i, lane) in lanes.iter_mut().enumerate() {
            let tail = [i as u8];
            let bytes = salt
                .bytes()
                .chain([0])
                .chain(password.bytes())
                .chain(round.to_le_bytes())
                .chain(tail);
            for b in bytes {
                *lane ^= u64::from(b);
                *lane = lane.wrapping_mul(0x0000_0100_0000_01b3);
            }
            *lane = mix(*lane);
        }
    }
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&lanes[0].to_le_bytes());
    out[8..].copy_from_slice(&lanes[1].to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(out)
}

/// splitmix64's finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn new_salt() -> String {
    base64::engine::general_purpose::STANDARD.encode(Uuid::new_v4().as_bytes())
}

impl UserData {
    fn new(login: &str, full_name: Option<String>, groups: Vec<String>, password: &str) -> Self {
        let salt = new_salt();
        UserData {
            login_name: login.to_owned(),
            full_name,
            hash: hash_password(password, &salt),
            salt,
            disabled: false,
            groups,
        }
    }

    pub fn verify(&self, password: &str) -> bool {
        hash_password(password, &self.salt) == self.hash
    }

    fn set_password(&mut self, password: &str) {
        self.salt = new_salt();
        self.hash = hash_password(password, &self.salt);
    }
}

/// An account as found in the log.
enum Stored {
    /// No `$user-<login>` stream was ever written: a seed may stand in.
    Never,
    /// Deleted through the API (soft-deleted stream) or unreadable.
    Gone,
    Present {
        data: UserData,
        timestamp: i64,
        last: i64,
    },
}

/// All accounts of a node: the log plus the configured seeds. Cheap to share behind the app state.
pub struct UserRegistry {
    store: Arc<Store>,
    seeds: Vec<User>,
    /// Serialises commands so each one's read-then-write sees no interleaved change.
    commands: Mutex<()>,
    cache: Arc<CredentialCache>,
    /// v5 and v20 write the notification before the account (the ordering race of §1.4).
    notify_first: bool,
    /// v20+: the login `admin` is an admin by name.
    admin_by_name: bool,
}

impl UserRegistry {
    pub fn new(store: Arc<Store>, seeds: Vec<User>, profile: Profile) -> Self {
        UserRegistry {
            store,
            seeds,
            commands: Mutex::new(()),
            cache: Arc::new(CredentialCache::default()),
            notify_first: matches!(profile, Profile::V5 | Profile::V20),
            admin_by_name: profile != Profile::V5,
        }
    }

    /// Writes the accounts the real server creates when it first becomes leader
    /// (`UserManagementService.CreateAdminUser`, `CreateOperationsUser`): `admin` and `ops`, when
    /// configured and not yet in the log. Other configured users stay seeds until first changed.
    pub fn write_default_accounts(&self) -> Result<(), StoreError> {
        let _one_command_at_a_time = self.lock();
        for login in ["admin", "ops"] {
            if self.seed(login).is_some() {
                self.materialize(login)?;
            }
        }
        Ok(())
    }

    /// The credential cache, shared with its poller.
    pub fn cache(&self) -> &Arc<CredentialCache> {
        &self.cache
    }

    fn stored(&self, login: &str) -> Stored {
        let stream = user_stream(login);
        match self.store.last_event_number(&stream) {
            -1 => return Stored::Never,
            DELETED_STREAM => return Stored::Gone,
            _ => {}
        }
        match self.store.read_event(&stream, None, false) {
            EventRead::Ok { event, .. } => {
                let rec = event.original();
                match serde_json::from_slice::<UserData>(&rec.data) {
                    Ok(data) => Stored::Present {
                        data,
                        timestamp: rec.timestamp,
                        last: rec.number,
                    },
                    Err(e) => {
                        tracing::warn!(login, error = %e, "unreadable account event; treating the user as missing");
                        Stored::Gone
                    }
                }
            }
            _ => Stored::Gone,
        }
    }

    fn seed(&self, login: &str) -> Option<&User> {
        self.seeds.iter().find(|u| u.login == login)
    }

    /// The principal for Basic credentials, `None` for an unknown login, a wrong password or a
    /// disabled account (`InternalAuthenticationProvider`: all three are the same 401). A cached
    /// principal is answered without reading the account; only successes are cached.
    pub fn authenticate(&self, login: &str, password: &str) -> Option<Principal> {
        match self.cache.lookup(login, password) {
            Lookup::Hit(p) => return Some(p),
            Lookup::WrongPassword => return None,
            Lookup::Miss => {}
        }
        let generation = self.cache.generation();
        let (groups, salt, hash) = match self.stored(login) {
            Stored::Present { data, .. } => {
                if data.disabled || !data.verify(password) {
                    return None;
                }
                (data.groups, data.salt, data.hash)
            }
            Stored::Never => {
                let seed = self.seed(login)?;
                if seed.password != password {
                    return None;
                }
                let salt = new_salt();
                let hash = hash_password(&seed.password, &salt);
                (seed.groups.clone(), salt, hash)
            }
            Stored::Gone => return None,
        };
        let principal = Principal {
            login: login.to_owned(),
            groups,
            admin_by_name: self.admin_by_name && login == "admin",
        };
        self.cache.fill(generation, salt, hash, principal.clone());
        Some(principal)
    }

    /// One account, `None` when unknown or deleted.
    pub fn get(&self, login: &str) -> Option<UserView> {
        match self.stored(login) {
            Stored::Present {
                data, timestamp, ..
            } => Some(UserView {
                login_name: login.to_owned(),
                full_name: data.full_name,
                groups: data.groups,
                disabled: data.disabled,
                updated: Some(timestamp),
            }),
            Stored::Never => self.seed(login).map(|s| UserView {
                login_name: s.login.clone(),
                full_name: Some(seed_full_name(&s.login)),
                groups: s.groups.clone(),
                disabled: false,
                updated: None,
            }),
            Stored::Gone => None,
        }
    }

    /// Every existing account, ordered by login (`AllUsersReader` over `$users`, then sorted).
    pub fn list(&self) -> Vec<UserView> {
        let mut logins: Vec<String> = self.seeds.iter().map(|s| s.login.clone()).collect();
        let mut from = 0;
        loop {
            let StreamRead::Ok(slice) = self.store.read_stream_forward(
                USERS_STREAM,
                from,
                MAX_PAGE_SIZE,
                false,
                ReaderVersion::V20Plus,
            ) else {
                break;
            };
            for e in &slice.events {
                logins.push(String::from_utf8_lossy(&e.original().data).into_owned());
            }
            if slice.is_end_of_stream {
                break;
            }
            from += MAX_PAGE_SIZE as i64;
        }
        logins.sort();
        logins.dedup();
        logins.iter().filter_map(|l| self.get(l)).collect()
    }

    /// `UserManagementService.Handle(Create)`: an existing login with the same password is a
    /// success (a retried create), with another password a conflict.
    pub fn create(
        &self,
        login: &str,
        full_name: Option<String>,
        groups: Vec<String>,
        password: &str,
    ) -> Result<UserOutcome, StoreError> {
        let _guard = self.lock();
        match self.stored(login) {
            Stored::Present { data, .. } => {
                return Ok(if data.verify(password) {
                    UserOutcome::Done
                } else {
                    UserOutcome::Conflict
                });
            }
            Stored::Never => {
                if let Some(seed) = self.seed(login) {
                    return Ok(if seed.password == password {
                        UserOutcome::Done
                    } else {
                        UserOutcome::Conflict
                    });
                }
            }
            Stored::Gone => {}
        }
        self.write_new(&UserData::new(login, full_name, groups, password))
    }

    /// Stream ACL, `$UserCreated`, then the `$users` entry, in the server's order.
    fn write_new(&self, data: &UserData) -> Result<UserOutcome, StoreError> {
        let stream = user_stream(&data.login_name);
        let meta_stream = acl::metastream_of(&stream);
        let acl = json!({"$acl": {"$w": ADMINS_ROLE, "$d": ADMINS_ROLE, "$mw": ADMINS_ROLE}});
        self.store.append(
            &meta_stream,
            EXPECTED_ANY,
            vec![event("$metadata", true, acl.to_string())],
        )?;
        // Expected version = the current last number: -1 for a new stream, the hidden last event
        // for a user deleted before (the metadata write above re-created the stream, §5.7).
        let expected = self.store.last_event_number(&stream);
        let r = self
            .store
            .append(&stream, expected, vec![user_event(USER_CREATED, data)])?;
        if !matches!(r, AppendResult::Written { .. }) {
            return Ok(UserOutcome::Conflict);
        }
        self.store.append(
            USERS_STREAM,
            EXPECTED_ANY,
            vec![event(USER_EVENT_TYPE, false, data.login_name.clone())],
        )?;
        Ok(UserOutcome::Done)
    }

    /// The account as it is in the log, writing a never-changed seed there first.
    fn materialize(&self, login: &str) -> Result<Option<(UserData, i64)>, StoreError> {
        match self.stored(login) {
            Stored::Present { data, last, .. } => Ok(Some((data, last))),
            Stored::Gone => Ok(None),
            Stored::Never => {
                let Some(seed) = self.seed(login) else {
                    return Ok(None);
                };
                let data = UserData::new(
                    login,
                    Some(seed_full_name(login)),
                    seed.groups.clone(),
                    &seed.password,
                );
                if self.write_new(&data)? != UserOutcome::Done {
                    return Ok(None);
                }
                let last = self.store.last_event_number(&user_stream(login));
                Ok(Some((data, last)))
            }
        }
    }

    /// Read, change, write `$UserUpdated` (`ReadUpdateWriteReply`); `notify` also writes the
    /// `$PasswordChanged` notification, as the server does for everything but enable: before the
    /// account in v5/v20 (`src/EventStore.Core/Services/UserManagement/UserManagementService.cs`
    /// @oss-v5.0.12 lines 263–274), after it from 21.10.2 on (upstream commit `7e61c241a`).
    fn update_with(
        &self,
        login: &str,
        notify: bool,
        change: impl FnOnce(&mut UserData) -> bool,
    ) -> Result<UserOutcome, StoreError> {
        let _guard = self.lock();
        let Some((mut data, last)) = self.materialize(login)? else {
            return Ok(UserOutcome::NotFound);
        };
        if !change(&mut data) {
            return Ok(UserOutcome::Unauthorized);
        }
        if notify && self.notify_first {
            self.notify_password_changed(login)?;
        }
        let r = self.store.append(
            &user_stream(login),
            last,
            vec![user_event(USER_UPDATED, &data)],
        )?;
        if !matches!(r, AppendResult::Written { .. }) {
            return Ok(UserOutcome::Conflict);
        }
        if notify && !self.notify_first {
            self.notify_password_changed(login)?;
        }
        Ok(UserOutcome::Done)
    }

    /// `PUT /users/{login}`: new full name and groups.
    pub fn update(
        &self,
        login: &str,
        full_name: Option<String>,
        groups: Vec<String>,
    ) -> Result<UserOutcome, StoreError> {
        self.update_with(login, true, |d| {
            d.full_name = full_name;
            d.groups = groups;
            true
        })
    }

    pub fn set_disabled(&self, login: &str, disabled: bool) -> Result<UserOutcome, StoreError> {
        self.update_with(login, disabled, |d| {
            d.disabled = disabled;
            true
        })
    }

    pub fn reset_password(&self, login: &str, new: &str) -> Result<UserOutcome, StoreError> {
        self.update_with(login, true, |d| {
            d.set_password(new);
            true
        })
    }

    /// [`UserOutcome::Unauthorized`] when `current` is wrong.
    pub fn change_password(
        &self,
        login: &str,
        current: &str,
        new: &str,
    ) -> Result<UserOutcome, StoreError> {
        self.update_with(login, true, |d| {
            if !d.verify(current) {
                return false;
            }
            d.set_password(new);
            true
        })
    }

    /// Soft-deletes `$user-<login>` at its last number, then notifies.
    pub fn delete(&self, login: &str) -> Result<UserOutcome, StoreError> {
        let _guard = self.lock();
        let Some((_, last)) = self.materialize(login)? else {
            return Ok(UserOutcome::NotFound);
        };
        match self.store.delete(&user_stream(login), last, false, false)? {
            DeleteResult::Deleted => {}
            _ => return Ok(UserOutcome::Conflict),
        }
        self.notify_password_changed(login)?;
        Ok(UserOutcome::Done)
    }

    /// `ConfigureStreamAndWriteEvents`: `$maxAge` 1 h on first use, then the notification.
    fn notify_password_changed(&self, login: &str) -> Result<(), StoreError> {
        let meta_stream = acl::metastream_of(PASSWORD_NOTIFICATIONS_STREAM);
        if self.store.last_event_number(&meta_stream) < 0 {
            self.store.append(
                &meta_stream,
                EXPECTED_ANY,
                vec![event(
                    "$metadata",
                    true,
                    json!({"$maxAge": 3600}).to_string(),
                )],
            )?;
        }
        self.store.append(
            PASSWORD_NOTIFICATIONS_STREAM,
            EXPECTED_ANY,
            vec![event(
                PASSWORD_CHANGED,
                true,
                json!({ "loginName": login }).to_string(),
            )],
        )?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.commands.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Full names of the built-in accounts (`CreateAdminUser`, `CreateOperationsUser`); other seeds
/// use their login.
fn seed_full_name(login: &str) -> String {
    match login {
        "admin" => "Event Store Administrator".to_owned(),
        "ops" => "Event Store Operations".to_owned(),
        other => other.to_owned(),
    }
}

fn event(event_type: &str, is_json: bool, data: String) -> ProposedEvent {
    ProposedEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        is_json,
        data: Bytes::from(data),
        metadata: Bytes::new(),
    }
}

fn user_event(event_type: &str, data: &UserData) -> ProposedEvent {
    let json = serde_json::to_string(data).unwrap_or_default();
    event(event_type, true, json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{default_users, Storage};

    fn registry() -> (Arc<Store>, UserRegistry) {
        let store = Arc::new(Store::open(&Storage::Memory, false).unwrap());
        let users = UserRegistry::new(store.clone(), default_users(), Profile::V25);
        (store, users)
    }

    #[test]
    fn hash_is_salted_and_deterministic() {
        assert_eq!(hash_password("pw", "s1"), hash_password("pw", "s1"));
        assert_ne!(hash_password("pw", "s1"), hash_password("pw", "s2"));
        assert_ne!(hash_password("pw", "s1"), hash_password("pW", "s1"));
        // The salt and password are separated, so moving bytes between them changes the hash.
        assert_ne!(hash_password("bc", "a"), hash_password("c", "ab"));
    }

    #[test]
    fn seeds_stay_out_of_the_log_until_changed() {
        let (store, users) = registry();
        assert!(users.authenticate("admin", "changeit").is_some());
        assert_eq!(store.record_count(), 0);
        assert_eq!(users.set_disabled("ops", true).unwrap(), UserOutcome::Done);
        assert!(users.authenticate("ops", "changeit").is_none());
        // ACL metadata, `$UserCreated`, `$User`, notification metadata + event, `$UserUpdated`.
        assert_eq!(store.record_count(), 6);
        assert_eq!(store.last_event_number("$user-ops"), 1);
        let EventRead::Ok { event, .. } = store.read_event("$user-ops", None, false) else {
            panic!("no account event");
        };
        let rec = event.original();
        assert_eq!(&*rec.event_type, USER_UPDATED);
        let text = String::from_utf8(rec.data.to_vec()).unwrap();
        assert!(text.contains("\"disabled\":true"), "{text}");
        assert!(!text.contains("changeit"), "no plaintext password: {text}");
    }

    #[test]
    fn create_conflict_and_delete() {
        let (_, users) = registry();
        let groups = vec!["repl".to_owned()];
        assert_eq!(
            users.create("r", None, groups.clone(), "pw").unwrap(),
            UserOutcome::Done
        );
        assert_eq!(
            users.create("r", None, groups.clone(), "pw").unwrap(),
            UserOutcome::Done
        );
        assert_eq!(
            users.create("r", None, groups.clone(), "other").unwrap(),
            UserOutcome::Conflict
        );
        assert_eq!(
            users.change_password("r", "wrong", "x").unwrap(),
            UserOutcome::Unauthorized
        );
        assert_eq!(users.delete("r").unwrap(), UserOutcome::Done);
        assert!(users.get("r").is_none());
        assert!(users.authenticate("r", "pw").is_none());
        assert_eq!(users.delete("r").unwrap(), UserOutcome::NotFound);
        // Re-created after a delete: a fresh account, visible again.
        assert_eq!(
            users.create("r", None, groups, "new").unwrap(),
            UserOutcome::Done
        );
        assert!(users.authenticate("r", "new").is_some());
        let logins: Vec<_> = users.list().into_iter().map(|u| u.login_name).collect();
        assert_eq!(logins, ["admin", "ops", "r"]);
    }

    #[test]
    fn a_deleted_seed_does_not_come_back() {
        let (_, users) = registry();
        assert_eq!(users.delete("ops").unwrap(), UserOutcome::Done);
        assert!(users.authenticate("ops", "changeit").is_none());
        assert!(users.get("ops").is_none());
    }
}
