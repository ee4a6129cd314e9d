//! The `indexmap` file: which PTables make up the index and how far the log is indexed. Follows
//! `src/KurrentDB.Core/Index/IndexMap.cs` (`SaveToFile`, `FromFile`, `ReadAndCheckHash`) and
//! `Index/TableIndex.cs` `Initialize` for what makes the server discard it.
//!
//! ```text
//! 0123456789ABCDEF0123456789ABCDEF   MD5 of every byte from offset 32 (this line's newline on)
//! 2                                  version
//! 1234/1200                          prepare checkpoint / commit checkpoint
//! 2147483647                         maximum auto-merge level (version > 1)
//! 0,0,<guid>                         level,position,PTable file name — one line per PTable
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use uuid::Uuid;

use crate::chunk::sync_dir;
use crate::error::{DecodeError, Error, Result};
use crate::hash::hex_upper;

pub const INDEXMAP_FILE_NAME: &str = "indexmap";
/// `IndexMap.IndexMapVersion`.
pub const INDEXMAP_VERSION: i32 = 2;
/// Characters of the hash line before its newline.
const HASH_CHARS: usize = 32;
/// An indexmap lists one short line per PTable; anything near this size is not one.
const MAX_INDEXMAP_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexMapEntry {
    /// 0 holds the newest, smallest tables; merges move them up.
    pub level: u32,
    /// Order within the level, from 0 without gaps.
    pub position: u32,
    /// The PTable's file name in the index directory (a GUID).
    pub file_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexMap {
    pub version: i32,
    /// Position of the last prepare indexed; -1 when empty.
    pub prepare_checkpoint: i64,
    /// Position of the last commit indexed; -1 when empty. Must be below `chaser.chk`, or the
    /// server discards the whole index at start and rebuilds it.
    pub commit_checkpoint: i64,
    /// Present from version 2; the server rebuilds when it is lower than its configured level.
    pub max_auto_merge_level: Option<i32>,
    pub tables: Vec<IndexMapEntry>,
}

/// A parsed `indexmap` with the stored and the recomputed hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedIndexMap {
    pub map: IndexMap,
    pub stored_hash: [u8; 16],
    pub actual_hash: [u8; 16],
}

impl ParsedIndexMap {
    pub fn hash_matches(&self) -> bool {
        self.stored_hash == self.actual_hash
    }
}

impl IndexMap {
    /// An index with no tables, as a fresh node has.
    pub fn empty() -> Self {
        IndexMap {
            version: INDEXMAP_VERSION,
            prepare_checkpoint: -1,
            commit_checkpoint: -1,
            max_auto_merge_level: Some(i32::MAX),
            tables: Vec::new(),
        }
    }

    /// Parses the text and recomputes its hash. A wrong hash is not an error here (see
    /// [`ParsedIndexMap::hash_matches`]); text the server cannot read is.
    pub fn parse(bytes: &[u8]) -> Result<ParsedIndexMap, DecodeError> {
        if bytes.is_empty() {
            return Err(DecodeError::new("indexmap is empty"));
        }
        let actual_hash: [u8; 16] = Md5::digest(bytes.get(HASH_CHARS..).unwrap_or(&[])).into();
        let text = std::str::from_utf8(bytes)
            .map_err(|_| DecodeError::new("indexmap is not UTF-8 text"))?;
        let mut lines = lines(text);
        let hash_line = lines.next().unwrap_or("");
        if hash_line.len() != HASH_CHARS
            || !hash_line
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        {
            return Err(DecodeError::new(format!(
                "first line is not 32 upper-case hex digits: {hash_line:?}"
            )));
        }
        let mut stored_hash = [0u8; 16];
        for (i, h) in stored_hash.iter_mut().enumerate() {
            *h = u8::from_str_radix(&hash_line[2 * i..2 * i + 2], 16).expect("hex checked");
        }
        let version: i32 = parse_line(lines.next(), "version")?;
        let cps = lines
            .next()
            .ok_or_else(|| DecodeError::new("checkpoints line missing"))?;
        let (p, c) = cps
            .split_once('/')
            .ok_or_else(|| DecodeError::new(format!("checkpoints line {cps:?} is not P/C")))?;
        let prepare_checkpoint: i64 = parse_line(Some(p), "prepare checkpoint")?;
        let commit_checkpoint: i64 = parse_line(Some(c), "commit checkpoint")?;
        if prepare_checkpoint < -1 || commit_checkpoint < -1 {
            return Err(DecodeError::new(format!(
                "checkpoints {prepare_checkpoint}/{commit_checkpoint} are below -1"
            )));
        }
        let max_auto_merge_level = if version > 1 {
            Some(parse_line(lines.next(), "maximum auto-merge level")?)
        } else {
            None
        };
        let mut tables = Vec::new();
        for line in lines {
            let mut parts = line.splitn(3, ',');
            let (Some(l), Some(pos), Some(f)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(DecodeError::new(format!(
                    "PTable line {line:?} is not level,position,file"
                )));
            };
            tables.push(IndexMapEntry {
                level: parse_line(Some(l), "PTable level")?,
                position: parse_line(Some(pos), "PTable position")?,
                file_name: f.to_string(),
            });
        }
        Ok(ParsedIndexMap {
            map: IndexMap {
                version,
                prepare_checkpoint,
                commit_checkpoint,
                max_auto_merge_level,
                tables,
            },
            stored_hash,
            actual_hash,
        })
    }

    /// The file's bytes as the server writes them (with `\n` line ends, as on Linux), hash
    /// included.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::new();
        s.push_str(&"0".repeat(HASH_CHARS));
        s.push('\n');
        s.push_str(&format!("{}\n", self.version));
        s.push_str(&format!(
            "{}/{}\n",
            self.prepare_checkpoint, self.commit_checkpoint
        ));
        if let Some(l) = self.max_auto_merge_level {
            s.push_str(&format!("{l}\n"));
        }
        let mut tables = self.tables.clone();
        tables.sort_by_key(|t| (t.level, t.position));
        for t in &tables {
            s.push_str(&format!("{},{},{}\n", t.level, t.position, t.file_name));
        }
        let mut b = s.into_bytes();
        let hash = Md5::digest(&b[HASH_CHARS..]);
        b[..HASH_CHARS].copy_from_slice(hex_upper(&hash).as_bytes());
        b
    }

    /// What the server would refuse in the structure (empty when sound): positions within a
    /// level that are not 0, 1, 2… without gaps or repeats, and tables listed with negative
    /// checkpoints.
    pub fn structure_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.tables.is_empty() && (self.prepare_checkpoint < 0 || self.commit_checkpoint < 0) {
            p.push(format!(
                "lists {} PTables but its checkpoints are {}/{}",
                self.tables.len(),
                self.prepare_checkpoint,
                self.commit_checkpoint
            ));
        }
        let mut seen: Vec<(u32, u32)> = self.tables.iter().map(|t| (t.level, t.position)).collect();
        seen.sort_unstable();
        for w in seen.windows(2) {
            if w[0] == w[1] {
                p.push(format!(
                    "level,position {},{} is listed twice",
                    w[0].0, w[0].1
                ));
            }
        }
        seen.dedup();
        let mut expected = (u32::MAX, 0u32);
        for (level, pos) in seen {
            if level != expected.0 {
                expected = (level, 0);
            }
            if pos != expected.1 {
                p.push(format!(
                    "level {level} misses position {} (not contiguous)",
                    expected.1
                ));
            }
            expected.1 = pos + 1;
        }
        if self.version < 1 || self.version > INDEXMAP_VERSION {
            p.push(format!("unknown indexmap version {}", self.version));
        }
        p
    }

    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<ParsedIndexMap> {
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut b = Vec::new();
        f.take(MAX_INDEXMAP_BYTES)
            .read_to_end(&mut b)
            .map_err(|e| Error::io(path, e))?;
        IndexMap::parse(&b).map_err(|e| e.at(path))
    }

    /// Writes `indexmap` in `index_dir` through `indexmap.<guid>.indexmap.tmp`, synced, then
    /// renamed over the old one (the server deletes and moves; a rename is never half done).
    pub fn write(&self, index_dir: &Path) -> Result<PathBuf> {
        let target = index_dir.join(INDEXMAP_FILE_NAME);
        let tmp = index_dir.join(format!(
            "{INDEXMAP_FILE_NAME}.{}.indexmap.tmp",
            Uuid::new_v4()
        ));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&self.encode())
            .map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))?;
        sync_dir(index_dir)?;
        Ok(target)
    }
}

/// Lines as .NET `TextReader.ReadLine` splits them: on `\n`, `\r\n` or `\r`, no empty last line.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.find(['\n', '\r']).unwrap_or(rest.len());
        let line = &rest[..end];
        let mut next = end;
        if rest[next..].starts_with("\r\n") {
            next += 2;
        } else if next < rest.len() {
            next += 1;
        }
        rest = &rest[next..];
        Some(line)
    })
}

fn parse_line<T: std::str::FromStr>(line: Option<&str>, what: &str) -> Result<T, DecodeError> {
    let line = line.ok_or_else(|| DecodeError::new(format!("{what} line missing")))?;
    line.trim()
        .parse()
        .map_err(|_| DecodeError::new(format!("{what} {line:?} is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> IndexMap {
        IndexMap {
            version: 2,
            prepare_checkpoint: 1234,
            commit_checkpoint: 1200,
            max_auto_merge_level: Some(i32::MAX),
            tables: vec![
                IndexMapEntry {
                    level: 0,
                    position: 0,
                    file_name: "a".into(),
                },
                IndexMapEntry {
                    level: 1,
                    position: 0,
                    file_name: "b".into(),
                },
            ],
        }
    }

    /// The text of `IndexMap.SaveToFile` for a known map; its hash, MD5 of the bytes from offset
    /// 32 ("\n2\n1234/1200\n2147483647\n0,0,a\n1,0,b\n"), computed independently with `md5sum`.
    #[test]
    fn golden_indexmap() {
        let b = sample().encode();
        let text = String::from_utf8(b.clone()).unwrap();
        assert_eq!(
            text,
            "82217128A23173BAAABF87642F61FFB4\n2\n1234/1200\n2147483647\n0,0,a\n1,0,b\n"
        );
        let parsed = IndexMap::parse(&b).unwrap();
        assert!(parsed.hash_matches());
        assert_eq!(parsed.map, sample());
    }

    #[test]
    fn reads_windows_line_ends_and_version_1() {
        let body = "\r\n1\r\n5/4\r\n0,0,x\r\n";
        let hash = hex_upper(&Md5::digest(body.as_bytes()));
        let parsed = IndexMap::parse(format!("{hash}{body}").as_bytes()).unwrap();
        assert!(parsed.hash_matches());
        assert_eq!(parsed.map.version, 1);
        assert_eq!(parsed.map.max_auto_merge_level, None);
        assert_eq!(parsed.map.tables[0].file_name, "x");
    }

    #[test]
    fn a_changed_byte_breaks_the_hash_and_bad_text_is_an_error() {
        let mut b = sample().encode();
        let i = b.len() - 2;
        b[i] = b'c';
        assert!(!IndexMap::parse(&b).unwrap().hash_matches());
        let mut b = sample().encode();
        b[3] = b'a'; // lower case is refused by ReadAndCheckHash
        assert!(IndexMap::parse(&b).is_err());
        assert!(IndexMap::parse(b"").is_err());
        assert!(IndexMap::parse(b"0123").is_err());
    }

    #[test]
    fn structure_rules() {
        let mut m = sample();
        assert!(m.structure_problems().is_empty());
        m.tables[1].position = 1;
        assert!(m.structure_problems()[0].contains("misses position 0"));
        m.tables[1] = m.tables[0].clone();
        assert!(m.structure_problems()[0].contains("twice"));
        let mut m = sample();
        m.commit_checkpoint = -1;
        assert_eq!(m.structure_problems().len(), 1);
        assert!(IndexMap::empty().structure_problems().is_empty());
    }

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        sample().write(dir.path()).unwrap();
        sample().write(dir.path()).unwrap();
        let parsed = IndexMap::read(&dir.path().join("indexmap")).unwrap();
        assert!(parsed.hash_matches());
        assert_eq!(parsed.map, sample());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    proptest! {
        #[test]
        fn round_trips(p in -1i64..1 << 40, c in -1i64..1 << 40, levels in proptest::collection::vec(0u32..4, 0..10)) {
            let mut m = IndexMap::empty();
            m.prepare_checkpoint = p;
            m.commit_checkpoint = c;
            let mut next = [0u32; 4];
            for l in levels {
                m.tables.push(IndexMapEntry { level: l, position: next[l as usize], file_name: Uuid::from_u128(l as u128 * 100 + next[l as usize] as u128).to_string() });
                next[l as usize] += 1;
            }
            m.tables.sort_by_key(|t| (t.level, t.position));
            let parsed = IndexMap::parse(&m.encode()).unwrap();
            prop_assert!(parsed.hash_matches());
            prop_assert_eq!(parsed.map, m);
        }

        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = IndexMap::parse(&b);
        }
    }
}
