//! The local checkpoint: how far the secondary is known to hold the primary's `$all`.
//!
//! The file is the only truth about where replication resumes, so it is written the way a database
//! writes its control file:
//!
//! * a versioned binary envelope (magic, format version, payload length, payload, crc32c of all of
//!   it), so a torn or flipped file is detected, never half-read;
//! * replaced atomically: a temporary file in the same directory, `fsync`, `rename` over the old
//!   one, `fsync` of the directory, so after a crash the file is either the old or the new version;
//! * a leftover temporary file (a crash between write and rename) is deleted on open: the stable
//!   file is the only truth.
//!
//! The payload records the source position, the primary's identity (so a checkpoint taken against
//! one primary is never applied to another) and the epoch. It is JSON inside the checked envelope so
//! that later versions can add fields and still read old files.
//!
//! A process that writes the checkpoint (`run`, `checkpoint recover`) first takes [`Lock`], an
//! exclusive OS lock on `<path>.lock`, for its whole lifetime: two replicators on one checkpoint
//! would replay each other's deletes over newer data. Readers (`status`, `verify`) do not lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::position::{Epoch, Position};

/// `STBYCKPT`: identifies the file type before anything else is trusted.
const MAGIC: [u8; 8] = *b"STBYCKPT";
/// Version of the envelope and payload layout written by this build.
const FORMAT_VERSION: u32 = 1;
/// magic + version + payload length.
const HEADER_LEN: usize = 8 + 4 + 4;
/// A checkpoint payload is a few hundred bytes; anything far larger is corruption.
const MAX_PAYLOAD: u32 = 1 << 20;

/// What identifies the primary's database, independent of the URL used to reach it (a cluster can
/// be reached through several addresses; a restored or rebuilt primary is a different database).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PrimaryId(pub String);

impl std::fmt::Display for PrimaryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One persisted checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Resume point in the primary's `$all`: every event before it has been acknowledged by the
    /// secondary. Only ever a page boundary handed out by the server (contract §3.6).
    pub position: Position,
    /// The primary this position belongs to.
    pub primary: PrimaryId,
    /// The replication epoch the writer ran under; a promotion bumps it on the secondary.
    pub epoch: Epoch,
}

/// Failures of the checkpoint store. None is transient: a replicator that cannot trust or write its
/// checkpoint must stop rather than guess.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("checkpoint {path}: {source}; check that the directory exists and is writable")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "checkpoint {path} is corrupt ({reason}); it will not be used. Move it away and recover the \
         position explicitly (the secondary keeps a copy), or start over into an empty secondary"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "checkpoint {path} has format version {found}, this build reads up to {FORMAT_VERSION}; \
         run the standby version that wrote it"
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error(
        "the checkpoint {path} is in use by another standby process ({}; it holds the lock {lock}). \
         Two replicators must never write one secondary: stop that process first (e.g. `kill {}` or \
         `systemctl stop standby`), or give this one its own checkpoint.path",
        holder_text(*pid, *holder),
        pid.map_or_else(|| "PID".to_owned(), |p| p.to_string())
    )]
    Locked {
        path: PathBuf,
        lock: PathBuf,
        /// The holder's pid, from the lock file (`None` when it has not written it yet).
        pid: Option<u32>,
        holder: Option<Uuid>,
    },
}

fn holder_text(pid: Option<u32>, holder: Option<Uuid>) -> String {
    match (pid, holder) {
        (Some(pid), Some(holder)) => format!("pid {pid}, holder {holder}"),
        (Some(pid), None) => format!("pid {pid}"),
        _ => "its pid is not yet written".to_owned(),
    }
}

impl Error {
    /// Always false: see the type's documentation.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// The checkpoint file and the last value known to be in it.
#[derive(Debug)]
pub struct CheckpointStore {
    path: PathBuf,
    last: Option<Checkpoint>,
}

impl CheckpointStore {
    /// Opens the store at `path`, deleting a leftover temporary file, and returns the persisted
    /// checkpoint if there is one. A missing file is `Ok(None)`: a first start.
    ///
    /// # Errors
    /// [`Error::Corrupt`] or [`Error::UnsupportedVersion`] when the file exists but cannot be
    /// trusted; [`Error::Io`] when it cannot be read.
    pub fn open(path: impl Into<PathBuf>) -> Result<(Self, Option<Checkpoint>), Error> {
        let path = path.into();
        let tmp = tmp_path(&path);
        match fs::remove_file(&tmp) {
            Ok(()) => {
                tracing::warn!(path = %tmp.display(), "removed a leftover temporary checkpoint")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Io {
                    path: tmp,
                    source: e,
                })
            }
        }
        let last = match fs::read(&path) {
            Ok(bytes) => Some(decode(&path, &bytes)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::Io { path, source: e }),
        };
        Ok((
            Self {
                path,
                last: last.clone(),
            },
            last,
        ))
    }

    /// Reads the checkpoint at `path` without opening the store: no leftover temporary file is
    /// removed, so it is safe while a replicator owns the file (`status` uses it). A missing file
    /// is `Ok(None)`.
    ///
    /// # Errors
    /// As [`CheckpointStore::open`].
    pub fn read(path: &Path) -> Result<Option<Checkpoint>, Error> {
        match fs::read(path) {
            Ok(bytes) => decode(path, &bytes).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io {
                path: path.to_path_buf(),
                source: e,
            }),
        }
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint last read or written.
    pub fn last(&self) -> Option<&Checkpoint> {
        self.last.as_ref()
    }

    /// Durably replaces the checkpoint. Returns `false` without touching the disk when `cp` equals
    /// what is already persisted.
    ///
    /// # Errors
    /// [`Error::Io`]; the previous file is then still intact.
    pub fn store(&mut self, cp: &Checkpoint) -> Result<bool, Error> {
        if self.last.as_ref() == Some(cp) {
            return Ok(false);
        }
        let bytes = encode(cp);
        let io_err = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        write_atomically(&self.path, &bytes).map_err(io_err)?;
        self.last = Some(cp.clone());
        Ok(true)
    }
}

/// What the lock file says about the process that holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LockContent {
    pid: u32,
    /// The holder id of the process (its lease holder id on the secondary).
    holder: Uuid,
    /// Holders of this lock before it, newest first: all of them have exited, since their lock
    /// was released. Kept so that a process killed before it wrote its lease does not hide the
    /// lease holder before it.
    #[serde(default)]
    earlier: Vec<Uuid>,
}

/// How many earlier holders the lock file remembers.
const EARLIER_KEPT: usize = 16;

/// The exclusive lock on `<checkpoint path>.lock`, held until dropped (or the process exits,
/// however it exits: the OS releases it).
///
/// The file says who holds it (pid and holder id) so that a refused second process can name it,
/// and so that the next holder knows which holder ids are dead: every process that held this
/// lock before has exited, so a lease on the secondary in one of their names is free to take.
#[derive(Debug)]
pub struct Lock {
    /// Keeps the lock: closing the file releases it.
    _file: File,
    dead: Vec<Uuid>,
}

impl Lock {
    /// Takes the lock beside `checkpoint` for `holder`, without waiting, and writes this process's
    /// pid and `holder` into it.
    ///
    /// # Errors
    /// [`Error::Locked`] naming the holder's pid when another process (or another open of the file
    /// in this process) holds it; [`Error::Io`] when the file cannot be created or written.
    pub fn acquire(checkpoint: &Path, holder: Uuid) -> Result<Lock, Error> {
        let path = lock_path(checkpoint);
        let io_err = |source| Error::Io {
            path: path.clone(),
            source,
        };
        // Never truncate on open: the content belongs to whoever holds the lock.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        let previous = read_lock_content(&mut file);
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: checkpoint.to_path_buf(),
                    lock: path.clone(),
                    pid: previous.as_ref().map(|c| c.pid),
                    holder: previous.map(|c| c.holder),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(e)),
        }
        // Read again under the lock: the holder may have written between the read and the lock.
        let previous = read_lock_content(&mut file);
        let dead: Vec<Uuid> = previous
            .map(|c| std::iter::once(c.holder).chain(c.earlier).collect())
            .unwrap_or_default();
        let content = LockContent {
            pid: std::process::id(),
            holder,
            earlier: dead.iter().copied().take(EARLIER_KEPT).collect(),
        };
        let bytes = serde_json::to_vec(&content).expect("lock content serialises");
        (|| {
            use std::io::Seek;
            file.set_len(0)?;
            file.seek(io::SeekFrom::Start(0))?;
            file.write_all(&bytes)?;
            file.sync_all()
        })()
        .map_err(io_err)?;
        Ok(Lock { _file: file, dead })
    }

    /// Holder ids of the processes that held this lock before (all exited), newest first.
    pub fn dead_holders(&self) -> &[Uuid] {
        &self.dead
    }
}

/// `<checkpoint>.lock`.
pub fn lock_path(checkpoint: &Path) -> PathBuf {
    let mut name = checkpoint
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    checkpoint.with_file_name(name)
}

/// The lock file's content; `None` when empty or not ours (never trusted beyond naming).
fn read_lock_content(file: &mut File) -> Option<LockContent> {
    use std::io::{Read, Seek};
    let mut text = String::new();
    file.seek(io::SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Serialises a checkpoint into the checked envelope.
fn encode(cp: &Checkpoint) -> Vec<u8> {
    let payload = serde_json::to_vec(cp).expect("a checkpoint always serialises");
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + 4);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Validates the envelope and parses the payload. Never panics on any input.
fn decode(path: &Path, bytes: &[u8]) -> Result<Checkpoint, Error> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < HEADER_LEN + 4 {
        return Err(corrupt(format!(
            "{} bytes, shorter than any checkpoint",
            bytes.len()
        )));
    }
    if bytes[..8] != MAGIC {
        return Err(corrupt("not a standby checkpoint file (bad magic)".into()));
    }
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let version = word(8);
    let len = word(12);
    if len > MAX_PAYLOAD || HEADER_LEN + len as usize + 4 != bytes.len() {
        return Err(corrupt(format!(
            "length field {len} does not match the file size {}",
            bytes.len()
        )));
    }
    let body_end = HEADER_LEN + len as usize;
    let stored_crc = word(body_end);
    if crc32c::crc32c(&bytes[..body_end]) != stored_crc {
        return Err(corrupt("checksum mismatch".into()));
    }
    // Checked after the checksum: a flipped byte in the version field is corruption, not a
    // newer format.
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
        });
    }
    serde_json::from_slice(&bytes[HEADER_LEN..body_end])
        .map_err(|e| corrupt(format!("payload: {e}")))
}

/// tmp in the same directory → write → fsync → rename → fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Makes the rename itself durable: without it a power loss can bring back the old name.
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(commit: u64) -> Checkpoint {
        Checkpoint {
            position: Position::new(commit, 0).unwrap(),
            primary: PrimaryId("primary-db-1".into()),
            epoch: Epoch::new(1),
        }
    }

    #[test]
    fn round_trips_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("standby.checkpoint");
        let (mut store, none) = CheckpointStore::open(&path).unwrap();
        assert_eq!(none, None);
        assert!(store.store(&cp(4096)).unwrap());
        drop(store);
        let (_, got) = CheckpointStore::open(&path).unwrap();
        assert_eq!(got, Some(cp(4096)));
    }

    #[test]
    fn unchanged_checkpoint_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        let (mut store, _) = CheckpointStore::open(&path).unwrap();
        assert!(store.store(&cp(1)).unwrap());
        fs::remove_file(&path).unwrap(); // a rewrite would recreate it
        assert!(!store.store(&cp(1)).unwrap());
        assert!(!path.exists());
        assert!(store.store(&cp(2)).unwrap());
        assert!(path.exists());
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        let good = encode(&cp(123_456));
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            fs::write(&path, &bad).unwrap();
            let err = CheckpointStore::open(&path).expect_err("flipped byte accepted");
            assert!(matches!(err, Error::Corrupt { .. }), "byte {i}: {err}");
        }
    }

    #[test]
    fn truncated_file_is_corrupt_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        let good = encode(&cp(7));
        for len in [0, 1, HEADER_LEN, good.len() - 1] {
            fs::write(&path, &good[..len]).unwrap();
            assert!(
                matches!(CheckpointStore::open(&path), Err(Error::Corrupt { .. })),
                "len {len}"
            );
        }
    }

    #[test]
    fn leftover_tmp_is_removed_and_the_stable_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        let (mut store, _) = CheckpointStore::open(&path).unwrap();
        store.store(&cp(10)).unwrap();
        // A crash after writing the temporary file but before the rename.
        fs::write(tmp_path(&path), encode(&cp(99))).unwrap();
        let (_, got) = CheckpointStore::open(&path).unwrap();
        assert_eq!(got, Some(cp(10)));
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn newer_format_version_is_refused_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        let mut bytes = encode(&cp(5));
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        let end = bytes.len() - 4;
        let crc = crc32c::crc32c(&bytes[..end]);
        bytes[end..].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        match CheckpointStore::open(&path) {
            Err(Error::UnsupportedVersion { found: 2, .. }) => {}
            other => panic!("expected UnsupportedVersion, got {other:?}"),
        }
    }

    #[test]
    fn a_second_lock_is_refused_naming_the_pid_and_the_first_holder_is_dead_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        let lock = Lock::acquire(&path, first).unwrap();
        assert!(lock.dead_holders().is_empty());
        // flock locks belong to the open file: a second open in this process conflicts too.
        match Lock::acquire(&path, second) {
            Err(Error::Locked { pid, holder, .. }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(holder, Some(first));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        let message = Lock::acquire(&path, second).unwrap_err().to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(lock);
        let lock = Lock::acquire(&path, second).unwrap();
        assert_eq!(lock.dead_holders(), &[first]);
        drop(lock);
        let third = Uuid::new_v4();
        let lock = Lock::acquire(&path, third).unwrap();
        assert_eq!(lock.dead_holders(), &[second, first]);
    }

    #[test]
    fn decode_never_panics_on_garbage() {
        let path = Path::new("x");
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = decode(path, &bytes);
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&bytes);
            let _ = decode(path, &framed);
        }
    }
}
