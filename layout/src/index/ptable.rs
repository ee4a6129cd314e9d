//! PTables: the immutable, sorted files of the stream index. Follows
//! `src/KurrentDB.Core/Index/PTable.cs` (versions, entry sizes, the open-time checks),
//! `PTableHeader.cs`, `PTableFooter.cs`, `IndexEntry.cs` (entry field order) and
//! `PTableConstruction.cs` (midpoints, footer, MD5).
//!
//! ```text
//! header (128): [0] = 1 (PTable), [1] = version (2, 3 or 4; 1 is no longer read), zeros
//! entries (24 bytes from V3: i64 version | u64 stream hash | i64 log position), sorted
//!         from the largest (stream, version, position) to the smallest
//! V4: midpoints (24 bytes each: i64 version | u64 stream hash | i64 entry index)
//! V4: footer (128): [0] = 1, [1] = version, [2..6] = u32 midpoint count, zeros
//! MD5 (16) of every byte before it
//! ```

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::error::{Error, Result};
use crate::hash::{md5_range, IO_BUFFER};

/// `FileType.PTableFile`.
pub const PTABLE_FILE_TYPE: u8 = 1;
pub const PTABLE_HEADER_SIZE: u64 = 128;
/// Present from version 4 only.
pub const PTABLE_FOOTER_SIZE: u64 = 128;
pub const PTABLE_MD5_SIZE: u64 = 16;
/// The version current servers write.
pub const PTABLE_VERSION_4: u8 = 4;
/// `ESConsts`/`TableIndex` default `IndexCacheDepth`: how deep the midpoint cache goes.
pub const DEFAULT_CACHE_DEPTH: u32 = 16;

/// Bytes per entry by version (`PTable.IndexEntryV*Size`).
pub fn entry_size(version: u8) -> Option<u64> {
    match version {
        1 => Some(16),
        2 => Some(20),
        3 | 4 => Some(24),
        _ => None,
    }
}

/// One index entry: stream hash, event number, log position of the event's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexEntry {
    pub stream: u64,
    pub version: i64,
    pub position: i64,
}

impl IndexEntry {
    fn encode(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..16].copy_from_slice(&self.stream.to_le_bytes());
        b[16..].copy_from_slice(&self.position.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Self {
        IndexEntry {
            version: i64::from_le_bytes(b[..8].try_into().expect("8")),
            stream: u64::from_le_bytes(b[8..16].try_into().expect("8")),
            position: i64::from_le_bytes(b[16..24].try_into().expect("8")),
        }
    }
}

/// What the header, footer and size of a PTable say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PTableInfo {
    pub version: u8,
    pub file_len: u64,
    pub entry_count: u64,
    pub midpoint_count: u64,
}

/// An opened PTable whose header, footer and size passed the server's open-time checks.
#[derive(Debug)]
pub struct PTableFile {
    path: PathBuf,
    file: File,
    pub info: PTableInfo,
}

impl PTableFile {
    /// Opens a PTable and applies the checks `PTable`'s constructor makes before any hash: type
    /// byte, supported version (2–4), footer type and version matching the header, a whole number
    /// of entries, and a plausible midpoint count.
    ///
    /// # Errors
    /// I/O failures, or a [`Error::Format`] saying which check failed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut head = [0u8; 2];
        file.read_exact(&mut head)
            .map_err(|_| Error::format(path, format!("{len} bytes is too short for a PTable")))?;
        if head[0] != PTABLE_FILE_TYPE {
            return Err(Error::format(
                path,
                format!("file type byte is {} (a PTable has 1)", head[0]),
            ));
        }
        let version = head[1];
        if version == 1 {
            return Err(Error::format(
                path,
                "a V1 PTable, which servers from 24.10 no longer read",
            ));
        }
        let Some(entry) = entry_size(version) else {
            return Err(Error::format(
                path,
                format!("unknown PTable version {version}"),
            ));
        };
        let footer = if version >= PTABLE_VERSION_4 {
            PTABLE_FOOTER_SIZE
        } else {
            0
        };
        if len < PTABLE_HEADER_SIZE + footer + PTABLE_MD5_SIZE {
            return Err(Error::format(
                path,
                format!("{len} bytes is too short for a version-{version} PTable"),
            ));
        }
        let mut midpoint_count = 0u64;
        if version >= PTABLE_VERSION_4 {
            let mut f = [0u8; 6];
            file.seek(SeekFrom::Start(len - PTABLE_MD5_SIZE - footer))
                .map_err(|e| Error::io(path, e))?;
            file.read_exact(&mut f).map_err(|e| Error::io(path, e))?;
            if f[0] != PTABLE_FILE_TYPE || f[1] != version {
                return Err(Error::format(
                    path,
                    format!(
                        "footer says type {} version {}, header type 1 version {version}",
                        f[0], f[1]
                    ),
                ));
            }
            midpoint_count = u32::from_le_bytes(f[2..6].try_into().expect("4")) as u64;
        }
        let entries_bytes = (len - PTABLE_HEADER_SIZE - footer - PTABLE_MD5_SIZE)
            .checked_sub(midpoint_count * entry)
            .ok_or_else(|| {
                Error::format(
                    path,
                    format!("{midpoint_count} midpoints do not fit in {len} bytes"),
                )
            })?;
        if entries_bytes % entry != 0 {
            return Err(Error::format(
                path,
                format!("{entries_bytes} bytes of entries is not a multiple of {entry}"),
            ));
        }
        let entry_count = entries_bytes / entry;
        if version >= PTABLE_VERSION_4 && entry_count > 0 && midpoint_count == 1 {
            return Err(Error::format(
                path,
                "1 midpoint cached; the server needs 0 or at least 2",
            ));
        }
        if entry_count >= 2 && midpoint_count > entry_count {
            return Err(Error::format(
                path,
                format!("{midpoint_count} midpoints for {entry_count} entries"),
            ));
        }
        Ok(PTableFile {
            path: path.to_path_buf(),
            file,
            info: PTableInfo {
                version,
                file_len: len,
                entry_count,
                midpoint_count,
            },
        })
    }

    /// Recomputes the MD5 of every byte before the last 16 and compares it with them, streaming.
    pub fn md5_matches(&mut self) -> Result<bool> {
        let len = self.info.file_len;
        let actual = md5_range(&mut self.file, &self.path, 0, len - PTABLE_MD5_SIZE)?;
        let mut stored = [0u8; 16];
        self.file
            .seek(SeekFrom::Start(len - PTABLE_MD5_SIZE))
            .map_err(|e| Error::io(&self.path, e))?;
        self.file
            .read_exact(&mut stored)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(actual == stored)
    }

    /// Streams the entries of a V3/V4 table in file order (largest first).
    pub fn entries(&mut self) -> Result<impl Iterator<Item = Result<IndexEntry>> + '_> {
        if self.info.version < 3 {
            return Err(Error::format(
                &self.path,
                "only 24-byte (V3, V4) entries are read",
            ));
        }
        self.file
            .seek(SeekFrom::Start(PTABLE_HEADER_SIZE))
            .map_err(|e| Error::io(&self.path, e))?;
        let mut r = BufReader::with_capacity(IO_BUFFER, &self.file);
        let path = &self.path;
        Ok((0..self.info.entry_count).map(move |_| {
            let mut b = [0u8; 24];
            r.read_exact(&mut b).map_err(|e| Error::io(path, e))?;
            Ok(IndexEntry::decode(&b))
        }))
    }
}

/// How many midpoints the server caches for `n` entries (`GetRequiredMidpointCount`).
pub fn required_midpoint_count(n: u64, cache_depth: u32) -> u64 {
    match n {
        0 => 0,
        1 => 2,
        _ => {
            let depth = depth_for(n * 24, cache_depth);
            (1u64 << depth).min(n).max(2)
        }
    }
}

/// `PTableConstruction.GetDepth`.
fn depth_for(entries_bytes: u64, min_depth: u32) -> u32 {
    let min_depth = min_depth.min(28);
    if (2u64 << 28) * 4096 < entries_bytes {
        return 28;
    }
    for i in (min_depth..=27).rev() {
        if (2u64 << i) * 4096 < entries_bytes {
            return i + 1;
        }
    }
    min_depth
}

/// `PTableConstruction.GetMidpointIndex`.
fn midpoint_index(k: u64, n: u64, m: u64) -> u64 {
    if k == 0 {
        0
    } else if k == m - 1 {
        n - 1
    } else {
        let (q, r) = ((n - 1) / (m - 1), (n - 1) % (m - 1));
        k * q + k * r / (m - 1)
    }
}

/// Writes a version-4 PTable of `entries` to `path` (sorted here, largest first) with the
/// midpoints the server caches at `cache_depth`, the footer and the MD5. The file is written,
/// synced and then made read-only, as the server leaves PTables.
pub fn write_ptable(
    path: &Path,
    mut entries: Vec<IndexEntry>,
    cache_depth: u32,
) -> Result<PTableInfo> {
    entries.sort_unstable_by(|a, b| b.cmp(a));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let mut out = BufWriter::with_capacity(1 << 16, file);
    let mut md5 = Md5::new();
    let mut put = |out: &mut BufWriter<File>, b: &[u8]| -> Result<()> {
        md5.update(b);
        out.write_all(b).map_err(|e| Error::io(path, e))
    };
    let mut header = [0u8; PTABLE_HEADER_SIZE as usize];
    header[0] = PTABLE_FILE_TYPE;
    header[1] = PTABLE_VERSION_4;
    put(&mut out, &header)?;
    for e in &entries {
        put(&mut out, &e.encode())?;
    }
    let n = entries.len() as u64;
    let m = required_midpoint_count(n, cache_depth);
    for k in 0..m {
        let idx = if n == 1 { 0 } else { midpoint_index(k, n, m) };
        let e = entries[idx as usize];
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&e.version.to_le_bytes());
        b[8..16].copy_from_slice(&e.stream.to_le_bytes());
        b[16..].copy_from_slice(&(idx as i64).to_le_bytes());
        put(&mut out, &b)?;
    }
    let mut footer = [0u8; PTABLE_FOOTER_SIZE as usize];
    footer[0] = PTABLE_FILE_TYPE;
    footer[1] = PTABLE_VERSION_4;
    footer[2..6].copy_from_slice(&(m as u32).to_le_bytes());
    put(&mut out, &footer)?;
    let hash: [u8; 16] = md5.finalize().into();
    out.write_all(&hash).map_err(|e| Error::io(path, e))?;
    out.flush().map_err(|e| Error::io(path, e))?;
    let file = out.get_ref();
    file.sync_all().map_err(|e| Error::io(path, e))?;
    let mut perms = file
        .metadata()
        .map_err(|e| Error::io(path, e))?
        .permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(path, perms).map_err(|e| Error::io(path, e))?;
    Ok(PTableInfo {
        version: PTABLE_VERSION_4,
        file_len: PTABLE_HEADER_SIZE + (n + m) * 24 + PTABLE_FOOTER_SIZE + PTABLE_MD5_SIZE,
        entry_count: n,
        midpoint_count: m,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e(stream: u64, version: i64, position: i64) -> IndexEntry {
        IndexEntry {
            stream,
            version,
            position,
        }
    }

    /// A 3-entry V4 PTable, laid out by hand from `PTableConstruction` (`AppendRecordTo` copies
    /// `IndexEntry.Bytes`: version, stream, position; `WriteMidpointsTo`; `PTableFooter`): with
    /// cache depth 16 every entry of a small table is a midpoint.
    #[test]
    fn golden_three_entry_ptable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let info = write_ptable(&path, vec![e(1, 0, 100), e(2, 0, 200), e(2, 1, 300)], 16).unwrap();
        assert_eq!((info.entry_count, info.midpoint_count), (3, 3));
        let b = std::fs::read(&path).unwrap();
        assert_eq!(b.len(), 128 + 3 * 24 + 3 * 24 + 128 + 16);
        let mut want = vec![0u8; 128];
        want[0] = 1;
        want[1] = 4;
        for (v, s, p) in [(1i64, 2u64, 300i64), (0, 2, 200), (0, 1, 100)] {
            want.extend_from_slice(&v.to_le_bytes());
            want.extend_from_slice(&s.to_le_bytes());
            want.extend_from_slice(&p.to_le_bytes());
        }
        for (v, s, i) in [(1i64, 2u64, 0i64), (0, 2, 1), (0, 1, 2)] {
            want.extend_from_slice(&v.to_le_bytes());
            want.extend_from_slice(&s.to_le_bytes());
            want.extend_from_slice(&i.to_le_bytes());
        }
        let mut footer = [0u8; 128];
        footer[..6].copy_from_slice(&[1, 4, 3, 0, 0, 0]);
        want.extend_from_slice(&footer);
        let hash = Md5::digest(&want);
        want.extend_from_slice(&hash);
        assert_eq!(b, want);

        let mut t = PTableFile::open(&path).unwrap();
        assert_eq!(t.info, info);
        assert!(t.md5_matches().unwrap());
        let read: Vec<_> = t.entries().unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(read, vec![e(2, 1, 300), e(2, 0, 200), e(1, 0, 100)]);
    }

    #[test]
    fn midpoint_counts_follow_the_server() {
        assert_eq!(required_midpoint_count(0, 16), 0);
        assert_eq!(required_midpoint_count(1, 16), 2);
        assert_eq!(required_midpoint_count(5, 16), 5);
        // 2^16 midpoints once there are more entries than that at depth 16.
        assert_eq!(required_midpoint_count(1 << 20, 16), 1 << 16);
        assert_eq!(midpoint_index(0, 10, 4), 0);
        assert_eq!(midpoint_index(1, 10, 4), 3);
        assert_eq!(midpoint_index(3, 10, 4), 9);
    }

    #[test]
    fn single_entry_and_empty_tables() {
        let dir = tempfile::tempdir().unwrap();
        for (name, entries, mids) in [("one", vec![e(9, 0, 1)], 2), ("none", vec![], 0)] {
            let p = dir.path().join(name);
            write_ptable(&p, entries, 16).unwrap();
            let mut t = PTableFile::open(&p).unwrap();
            assert_eq!(t.info.midpoint_count, mids);
            assert!(t.md5_matches().unwrap());
        }
    }

    #[test]
    fn refuses_what_the_server_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let mut b = vec![0u8; 128 + 24 + 128 + 16];
        b[0] = 2;
        std::fs::write(&p, &b).unwrap();
        assert!(PTableFile::open(&p)
            .unwrap_err()
            .to_string()
            .contains("type"));
        b[0] = 1;
        b[1] = 1;
        std::fs::write(&p, &b).unwrap();
        assert!(PTableFile::open(&p).unwrap_err().to_string().contains("V1"));
        b[1] = 4;
        b[128 + 24] = 1;
        b[128 + 24 + 1] = 3;
        std::fs::write(&p, &b).unwrap();
        assert!(PTableFile::open(&p)
            .unwrap_err()
            .to_string()
            .contains("footer"));
        b[128 + 24 + 1] = 4;
        b.insert(128, 0);
        std::fs::write(&p, &b).unwrap();
        assert!(PTableFile::open(&p)
            .unwrap_err()
            .to_string()
            .contains("multiple"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn round_trips(mut entries in proptest::collection::vec((0u64..50, 0i64..50, 0i64..1 << 30), 0..200)) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("t");
            let es: Vec<_> = entries.drain(..).map(|(s, v, p)| e(s, v, p)).collect();
            let info = write_ptable(&p, es.clone(), 16).unwrap();
            let mut t = PTableFile::open(&p).unwrap();
            prop_assert_eq!(&t.info, &info);
            prop_assert!(t.md5_matches().unwrap());
            let mut want = es;
            want.sort_unstable_by(|a, b| b.cmp(a));
            let read: Vec<_> = t.entries().unwrap().map(|r| r.unwrap()).collect();
            prop_assert_eq!(read, want);
        }
    }
}
