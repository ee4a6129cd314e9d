//! Chunk file names: `chunk-XXXXXX.YYYYYY`, where X is the first logical chunk the file covers and
//! Y its version (0 as written, +1 for each scavenge that rewrites it). Follows
//! `src/KurrentDB.Core/TransactionLog/FileNamingStrategy/VersionedPatternFileNamingStrategy.cs`
//! (pattern `^chunk-\d{6}\.\d{6}$`, format `chunk-{X:000000}.{Y:000000}`).

use std::fmt;
use std::str::FromStr;

use crate::error::DecodeError;

/// The name of a chunk file: first chunk number and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkName {
    /// First logical chunk covered (the header's `ChunkStartNumber`).
    pub number: u32,
    /// Scavenge generation: 0 as written by the writer, higher for rewritten versions.
    pub version: u32,
}

/// The server only recognises six digits on each side; wider numbers are not chunk files to it.
const MAX_SIX_DIGITS: u32 = 999_999;

impl ChunkName {
    pub fn new(number: u32, version: u32) -> Self {
        ChunkName { number, version }
    }

    /// Parses a file name (not a path). `None` for anything the server would not take for a chunk.
    pub fn parse(file_name: &str) -> Option<Self> {
        let rest = file_name.strip_prefix("chunk-")?;
        let (x, y) = rest.split_once('.')?;
        Some(ChunkName {
            number: six_digits(x)?,
            version: six_digits(y)?,
        })
    }
}

fn six_digits(s: &str) -> Option<u32> {
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for ChunkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_assert!(self.number <= MAX_SIX_DIGITS && self.version <= MAX_SIX_DIGITS);
        write!(f, "chunk-{:06}.{:06}", self.number, self.version)
    }
}

impl FromStr for ChunkName {
    type Err = DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChunkName::parse(s).ok_or_else(|| DecodeError::new(format!("not a chunk file name: {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_formats_the_servers_names() {
        let n = ChunkName::parse("chunk-000033.000030").unwrap();
        assert_eq!(n, ChunkName::new(33, 30));
        assert_eq!(n.to_string(), "chunk-000033.000030");
        assert_eq!(ChunkName::new(0, 0).to_string(), "chunk-000000.000000");
    }

    #[test]
    fn rejects_what_the_server_ignores() {
        for bad in [
            "chunk-0.0",
            "chunk-000001.00000",
            "chunk-000001.0000001",
            "chk-000001.000000",
            "chunk-000001.000000.tmp",
            "chunk-00000a.000000",
            "chunk-+00001.000000",
            "chunk000001.000000",
        ] {
            assert_eq!(ChunkName::parse(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(number in 0u32..=MAX_SIX_DIGITS, version in 0u32..=MAX_SIX_DIGITS) {
            let n = ChunkName::new(number, version);
            prop_assert_eq!(ChunkName::parse(&n.to_string()), Some(n));
        }

        #[test]
        fn never_panics(s in ".{0,24}") {
            let _ = ChunkName::parse(&s);
        }

        #[test]
        fn name_order_is_number_then_version(a in 0u32..1000, b in 0u32..1000, c in 0u32..1000, d in 0u32..1000) {
            let (x, y) = (ChunkName::new(a, b), ChunkName::new(c, d));
            prop_assert_eq!(x.cmp(&y), x.to_string().cmp(&y.to_string()));
        }
    }
}
