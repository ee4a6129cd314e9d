//! The credential cache of the real server's internal authentication, and the poller that empties
//! it, so a disable, password reset or group change takes effect as late as it does there.
//!
//! Followed (the server's `InternalAuthenticationProvider.cs`, `PasswordChangeNotificationReader.cs`):
//! * `src/KurrentDB.Core/Authentication/InternalAuthentication/InternalAuthenticationProvider.cs`
//!   (v5: `src/EventStore.Core/Authentication/InternalAuthenticationProvider.cs`): an LRU of
//!   `ESConsts.CachedPrincipalCount` = 1000 principals (`Settings/ESConsts.cs`), filled by every
//!   successful authentication, without expiry. A hit re-checks only the password against the
//!   cached hash, never the `disabled` flag or the groups; a wrong password on a hit is refused
//!   (so a new password is refused until the entry goes). Failures are not cached.
//! * `src/KurrentDB.Core/Services/Transport/Http/Authentication/PasswordChangeNotificationReader.cs`:
//!   reads `$users-password-notifications` forward and drops the login of each `$PasswordChanged`;
//!   at the end of the stream (or when it does not exist) it waits 1 s, after a read error 10 s.
//!
//! Deviation: an entry whose account read started before an eviction of any login is not stored,
//! which closes a narrow residual race not confirmed on the server (a read issued before
//! the `$UserUpdated` commit that completes after the notification). The v5/v20 ordering race
//! (notification written before the account) stays: it follows from the write order alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::acl::Principal;
use super::users::{PASSWORD_CHANGED, PASSWORD_NOTIFICATIONS_STREAM};
use super::{ReaderVersion, Store, StreamRead, MAX_PAGE_SIZE};

/// `ESConsts.CachedPrincipalCount`.
pub const CACHED_PRINCIPALS: usize = 1000;
/// The poller's wait at the end of the notification stream (`PasswordChangeNotificationReader`).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The poller's wait after a failed read.
pub const POLL_BACKOFF: Duration = Duration::from_secs(10);

struct Cached {
    salt: String,
    hash: String,
    principal: Principal,
    used: u64,
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, Cached>,
    clock: u64,
    /// Bumped by every eviction; a fill that began under an older value is dropped.
    generation: u64,
}

/// What the cache says about a login and password.
pub enum Lookup {
    Miss,
    Hit(Principal),
    /// Cached with another password: refused without reading the account.
    WrongPassword,
}

/// Authenticated principals by login (see the module docs).
pub struct CredentialCache {
    entries: Mutex<Entries>,
    capacity: usize,
    poll: PollControl,
}

/// The test switches of the poller and its progress.
struct PollControl {
    held: AtomicBool,
    interval_ms: AtomicU64,
    /// Polls started so far.
    started: AtomicU64,
    /// The number of the last poll completed (polls are numbered from 1 as they start).
    completed: watch::Sender<u64>,
    /// Wakes a sleeping poller when the switches change.
    changed: tokio::sync::Notify,
}

impl Default for CredentialCache {
    fn default() -> Self {
        CredentialCache::new(CACHED_PRINCIPALS)
    }
}

impl CredentialCache {
    pub fn new(capacity: usize) -> Self {
        CredentialCache {
            entries: Mutex::new(Entries::default()),
            capacity: capacity.max(1),
            poll: PollControl {
                held: AtomicBool::new(false),
                interval_ms: AtomicU64::new(POLL_INTERVAL.as_millis() as u64),
                started: AtomicU64::new(0),
                completed: watch::channel(0).0,
                changed: tokio::sync::Notify::new(),
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `AuthenticateCached`.
    pub fn lookup(&self, login: &str, password: &str) -> Lookup {
        let mut e = self.lock();
        e.clock += 1;
        let now = e.clock;
        let Some(c) = e.map.get_mut(login) else {
            return Lookup::Miss;
        };
        c.used = now;
        if super::users::hash_password(password, &c.salt) == c.hash {
            Lookup::Hit(c.principal.clone())
        } else {
            Lookup::WrongPassword
        }
    }

    /// The value to hand back to [`CredentialCache::fill`] after reading the account.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// `CachePassword`: stores a successful authentication, evicting the least recently used
    /// entry when full.
    pub fn fill(&self, generation: u64, salt: String, hash: String, principal: Principal) {
        let mut e = self.lock();
        if e.generation != generation {
            return;
        }
        if !e.map.contains_key(&principal.login) && e.map.len() >= self.capacity {
            let oldest = e
                .map
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                e.map.remove(&k);
            }
        }
        e.clock += 1;
        let used = e.clock;
        e.map.insert(
            principal.login.clone(),
            Cached {
                salt,
                hash,
                principal,
                used,
            },
        );
    }

    /// `Handle(ResetPasswordCache)`.
    pub fn evict(&self, login: &str) {
        let mut e = self.lock();
        e.generation += 1;
        e.map.remove(login);
    }

    /// Drops everything (a node restart).
    pub fn clear(&self) {
        let mut e = self.lock();
        e.generation += 1;
        e.map.clear();
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Holds (`true`) or releases the poller: while held, no notification is read and cached
    /// principals stay in force, as on a server whose notification reads keep failing.
    pub fn hold_poll(&self, hold: bool) {
        self.poll.held.store(hold, Ordering::SeqCst);
        self.poll.changed.notify_one();
    }

    /// The wait between polls at the end of the stream (the server's 1 s).
    pub fn set_poll_interval(&self, interval: Duration) {
        self.poll
            .interval_ms
            .store(interval.as_millis() as u64, Ordering::SeqCst);
        self.poll.changed.notify_one();
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.poll.interval_ms.load(Ordering::SeqCst))
    }

    /// Returns once a poll that started after this call has completed: every notification
    /// written before the call has then taken effect. Never returns while the poll is held.
    pub async fn poll_completed(&self) {
        let after = self.poll.started.load(Ordering::SeqCst);
        let mut rx = self.poll.completed.subscribe();
        // The sender lives as long as `self`; an error cannot happen while we borrow it.
        let _ = rx.wait_for(|done| *done > after).await;
    }

    /// Runs `PasswordChangeNotificationReader` until `stop`: starts at the current end of the
    /// stream (the cache is empty at start, so earlier notifications have nothing to drop).
    pub async fn run_poller(self: Arc<Self>, store: Arc<Store>, stop: CancellationToken) {
        let mut next = store
            .last_event_number(PASSWORD_NOTIFICATIONS_STREAM)
            .max(-1)
            + 1;
        loop {
            if self.poll.held.load(Ordering::SeqCst) {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = self.poll.changed.notified() => continue,
                    // Re-check the switch now and then even if a wake-up was missed.
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
            let number = self.poll.started.fetch_add(1, Ordering::SeqCst) + 1;
            let wait = match self.read_notifications(&store, &mut next) {
                Ok(()) => self.interval(),
                Err(()) => POLL_BACKOFF,
            };
            self.poll.completed.send_replace(number);
            let deadline = tokio::time::Instant::now() + wait;
            // Sleep the interval, but wake early when the switches change (a shorter interval).
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = self.poll.changed.notified() => {
                        let shorter = tokio::time::Instant::now() + self.interval();
                        if shorter < deadline || self.poll.held.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Reads every notification from `next` on (pages of 100 in the server; here the store's
    /// page) and evicts their logins.
    fn read_notifications(&self, store: &Store, next: &mut i64) -> Result<(), ()> {
        // Bounded: each page advances `next`; the stream cannot grow faster than we read it in
        // practice, and the bound stops a pathological loop.
        for _ in 0..10_000 {
            let slice = match store.read_stream_forward(
                PASSWORD_NOTIFICATIONS_STREAM,
                *next,
                MAX_PAGE_SIZE,
                false,
                ReaderVersion::V20Plus,
            ) {
                StreamRead::Ok(slice) => slice,
                StreamRead::NoStream => return Ok(()),
                StreamRead::Deleted => return Err(()),
            };
            for e in &slice.events {
                let rec = e.original();
                *next = (*next).max(rec.number + 1);
                if &*rec.event_type != PASSWORD_CHANGED {
                    continue;
                }
                match serde_json::from_slice::<serde_json::Value>(&rec.data) {
                    Ok(v) => match v.get("loginName").and_then(|l| l.as_str()) {
                        Some(login) => self.evict(login),
                        None => tracing::warn!("password notification without loginName"),
                    },
                    Err(e) => tracing::warn!(error = %e, "unreadable password notification"),
                }
            }
            if slice.is_end_of_stream {
                return Ok(());
            }
            if slice.events.is_empty() {
                // A page emptied by `$maxAge`: skip it.
                *next += MAX_PAGE_SIZE as i64;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(login: &str) -> Principal {
        Principal {
            login: login.into(),
            groups: Vec::new(),
            admin_by_name: false,
        }
    }

    fn fill(c: &CredentialCache, login: &str, password: &str) {
        let salt = "s".to_owned();
        let hash = super::super::users::hash_password(password, &salt);
        c.fill(c.generation(), salt, hash, principal(login));
    }

    #[test]
    fn hit_miss_wrong_password_and_lru_eviction() {
        let c = CredentialCache::new(2);
        assert!(matches!(c.lookup("a", "pw"), Lookup::Miss));
        fill(&c, "a", "pw");
        assert!(matches!(c.lookup("a", "pw"), Lookup::Hit(_)));
        assert!(matches!(c.lookup("a", "other"), Lookup::WrongPassword));
        fill(&c, "b", "pw");
        // `a` was used last: `b` is the least recently used and goes when `c` arrives.
        assert!(matches!(c.lookup("a", "pw"), Lookup::Hit(_)));
        fill(&c, "c", "pw");
        assert_eq!(c.len(), 2);
        assert!(matches!(c.lookup("b", "pw"), Lookup::Miss));
        c.evict("a");
        assert!(matches!(c.lookup("a", "pw"), Lookup::Miss));
    }

    #[test]
    fn a_fill_that_began_before_an_eviction_is_dropped() {
        let c = CredentialCache::new(10);
        let generation = c.generation();
        c.evict("x");
        c.fill(generation, "s".into(), "h".into(), principal("a"));
        assert!(c.is_empty());
    }
}
