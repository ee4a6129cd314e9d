//! The 128-byte chunk header. Follows `src/KurrentDB.Core/TransactionLog/Chunks/ChunkHeader.cs`
//! (field order, little-endian), `Index/FileType.cs` (type byte 2) and `TFChunk/TFChunk.cs`
//! (`ChunkVersions`: 2 Unaligned, 3 Aligned, 4 Transformed).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | file type, 2 |
//! | 1 | 1 | `MinCompatibleVersion` (the only version byte before 24.6) |
//! | 2 | 4 | `ChunkSize` (data bytes per logical chunk) |
//! | 6 | 4 | `ChunkStartNumber` |
//! | 10 | 4 | `ChunkEndNumber` |
//! | 14 | 4 | `IsScavenged` (0/1) |
//! | 18 | 16 | `ChunkId`, .NET `Guid` byte order |
//! | 34 | 1 | `Version` when ≥ 4, else 0 (then version = byte 1) |
//! | 35 | 1 | `TransformType` when version ≥ 4 (0 identity, 1 AES-GCM) |
//! | 36 | 92 | zero |

use uuid::Uuid;

use crate::error::DecodeError;

pub const HEADER_SIZE: usize = 128;
/// `FileType.ChunkFile`.
pub const CHUNK_FILE_TYPE: u8 = 2;
/// `ChunkVersions.Unaligned`: files not padded to 4096 (written by very old servers).
pub const VERSION_UNALIGNED: u8 = 2;
/// `ChunkVersions.Aligned`: completed files padded to a multiple of 4096.
pub const VERSION_ALIGNED: u8 = 3;
/// `ChunkVersions.Transformed` (24.6+): bytes 34 and 35 carry version and transform.
pub const VERSION_TRANSFORMED: u8 = 4;
/// The newest version a current server writes and reads (`TFChunk.CurrentChunkVersion`).
pub const CURRENT_VERSION: u8 = VERSION_TRANSFORMED;
/// Identity transform: the data area is plain records.
pub const TRANSFORM_IDENTITY: u8 = 0;
/// Encryption at rest: the data area is ciphertext, records cannot be read without the key.
pub const TRANSFORM_ENCRYPTION_AES_GCM: u8 = 1;

/// A decoded chunk header. Fields keep the on-disk integer types so a damaged header can be
/// reported as it is rather than refused; [`ChunkHeader::problems`] says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Format version (byte 34, or byte 1 when byte 34 is 0).
    pub version: u8,
    /// The oldest reader that understands the file (byte 1). 3 for plain chunks written by 24.6+
    /// so that older servers still read them; 4 with a transform.
    pub min_compatible_version: u8,
    /// Logical data bytes per chunk; the same in every file of a database.
    pub chunk_size: i32,
    pub chunk_start_number: i32,
    /// Greater than the start for a scavenged file that merged several chunks.
    pub chunk_end_number: i32,
    pub is_scavenged: bool,
    /// Random per created file; tells two files with the same name apart.
    pub chunk_id: Uuid,
    pub transform_type: u8,
    /// Whether bytes 36..128 (and 34..36 below version 4) are zero, as the writer leaves them.
    pub reserved_zero: bool,
}

impl ChunkHeader {
    /// A header as a current server writes it for a new plain chunk: version 4, minimum 3,
    /// identity transform.
    pub fn new_current(
        chunk_size: u32,
        start: u32,
        end: u32,
        is_scavenged: bool,
        chunk_id: Uuid,
    ) -> Self {
        ChunkHeader {
            version: CURRENT_VERSION,
            min_compatible_version: VERSION_ALIGNED,
            chunk_size: chunk_size as i32,
            chunk_start_number: start as i32,
            chunk_end_number: end as i32,
            is_scavenged,
            chunk_id,
            transform_type: TRANSFORM_IDENTITY,
            reserved_zero: true,
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < HEADER_SIZE {
            return Err(DecodeError::new(format!(
                "chunk header needs {HEADER_SIZE} bytes, the file has {}",
                b.len()
            )));
        }
        if b[0] != CHUNK_FILE_TYPE {
            return Err(DecodeError::new(format!(
                "chunk header file type is {} (a chunk has {CHUNK_FILE_TYPE}, a PTable 1)",
                b[0]
            )));
        }
        let min_compatible_version = b[1];
        let stored_version = b[34];
        let version = if stored_version == 0 {
            min_compatible_version
        } else {
            stored_version
        };
        let transform_type = if version >= VERSION_TRANSFORMED {
            b[35]
        } else {
            TRANSFORM_IDENTITY
        };
        let reserved_from = if version >= VERSION_TRANSFORMED {
            36
        } else {
            35
        };
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[18..34]);
        Ok(ChunkHeader {
            version,
            min_compatible_version,
            chunk_size: i32_at(b, 2),
            chunk_start_number: i32_at(b, 6),
            chunk_end_number: i32_at(b, 10),
            is_scavenged: i32_at(b, 14) > 0,
            chunk_id: Uuid::from_bytes_le(id),
            transform_type,
            reserved_zero: b[reserved_from..HEADER_SIZE].iter().all(|&x| x == 0),
        })
    }

    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0] = CHUNK_FILE_TYPE;
        b[1] = self.min_compatible_version;
        b[2..6].copy_from_slice(&self.chunk_size.to_le_bytes());
        b[6..10].copy_from_slice(&self.chunk_start_number.to_le_bytes());
        b[10..14].copy_from_slice(&self.chunk_end_number.to_le_bytes());
        b[14..18].copy_from_slice(&(self.is_scavenged as i32).to_le_bytes());
        b[18..34].copy_from_slice(&self.chunk_id.to_bytes_le());
        // Older versions never wrote these two bytes; keeping them zero keeps those formats intact.
        if self.version >= VERSION_TRANSFORMED {
            b[34] = self.version;
            b[35] = self.transform_type;
        }
        b
    }

    /// Logical position of the first byte this file covers.
    pub fn start_position(&self) -> i64 {
        self.chunk_start_number as i64 * self.chunk_size as i64
    }

    /// Logical position just past the last byte this file covers.
    pub fn end_position(&self) -> i64 {
        (self.chunk_end_number as i64 + 1) * self.chunk_size as i64
    }

    /// The size a new file of this header is preallocated to:
    /// `Aligned(128 + ChunkSize + 128)` (`TFChunk.CreateNew`, `GetAlignedSize`).
    pub fn preallocated_file_size(&self) -> u64 {
        align_up(
            (HEADER_SIZE + super::FOOTER_SIZE) as u64 + self.chunk_size.max(0) as u64,
            super::ALIGNMENT,
        )
    }

    /// What is wrong with the fields on their own, one sentence each; empty when sound.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.min_compatible_version > CURRENT_VERSION {
            p.push(format!(
                "needs a reader of chunk version {} (the newest known is {CURRENT_VERSION})",
                self.min_compatible_version
            ));
        }
        if self.min_compatible_version < VERSION_UNALIGNED {
            p.push(format!(
                "minimum compatible version {} is not a known chunk version",
                self.min_compatible_version
            ));
        }
        if self.version < self.min_compatible_version {
            p.push(format!(
                "version {} is below its minimum compatible version {}",
                self.version, self.min_compatible_version
            ));
        }
        if self.chunk_size <= 0 {
            p.push(format!("chunk size {} is not positive", self.chunk_size));
        }
        if self.chunk_start_number < 0 || self.chunk_end_number < self.chunk_start_number {
            p.push(format!(
                "chunk range {}..{} is not a valid range",
                self.chunk_start_number, self.chunk_end_number
            ));
        }
        if self.transform_type > TRANSFORM_ENCRYPTION_AES_GCM {
            p.push(format!("unknown transform type {}", self.transform_type));
        }
        if !self.reserved_zero {
            p.push("reserved header bytes are not zero".into());
        }
        p
    }
}

pub(crate) fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

pub(crate) fn align_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GUID: &str = "00112233-4455-6677-8899-aabbccddeeff";

    /// `new ChunkHeader(version: 4, minCompatibleVersion: 3, chunkSize: 256 MiB, start: 0, end: 0,
    /// isScavenged: false, chunkId, TransformType.Identity).Format(...)`, derived by hand from
    /// `ChunkHeader.cs` `Format`: type, min version, three i32 LE, IsScavenged as i32, Guid in .NET
    /// order (first three groups reversed), then Version and TransformType because Version ≥ 4.
    #[test]
    fn golden_v4_header() {
        let mut want = [0u8; 128];
        want[..36].copy_from_slice(&[
            0x02, 0x03, // chunk file, MinCompatibleVersion 3
            0x00, 0x00, 0x00, 0x10, // ChunkSize 0x1000_0000
            0, 0, 0, 0, // start 0
            0, 0, 0, 0, // end 0
            0, 0, 0, 0, // not scavenged
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, // Guid, .NET order
            0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, //
            0x04, 0x00, // Version 4, identity
        ]);
        let h = ChunkHeader::new_current(256 << 20, 0, 0, false, GUID.parse().unwrap());
        assert_eq!(h.encode(), want);
        assert_eq!(ChunkHeader::decode(&want).unwrap(), h);
        assert_eq!(h.preallocated_file_size(), 268_439_552);
    }

    /// A v5.0-era (version 3) scavenged, merged header: byte 34 zero, so version = byte 1 and the
    /// transform byte is not read (`ChunkHeader(ReadOnlySpan<byte>)`).
    #[test]
    fn golden_v3_merged_header() {
        let mut b = [0u8; 128];
        b[..18].copy_from_slice(&[
            0x02, 0x03, 0x00, 0x00, 0x01, 0x00, 0x21, 0, 0, 0, 0x24, 0, 0, 0, 1, 0, 0, 0,
        ]);
        let h = ChunkHeader::decode(&b).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.chunk_size, 65536);
        assert_eq!((h.chunk_start_number, h.chunk_end_number), (33, 36));
        assert!(h.is_scavenged);
        assert_eq!(h.start_position(), 33 * 65536);
        assert_eq!(h.end_position(), 37 * 65536);
        assert!(h.problems().is_empty());
        assert_eq!(h.encode(), b);
    }

    #[test]
    fn a_fresh_10000_byte_chunk_is_12288_bytes() {
        // when_opening_chunked_transaction_file_db_without_previous_files.cs
        let h = ChunkHeader::new_current(10_000, 0, 0, false, Uuid::nil());
        assert_eq!(h.preallocated_file_size(), 12_288);
    }

    #[test]
    fn refuses_a_ptable_or_short_input() {
        let mut b = [0u8; 128];
        b[0] = 1;
        assert!(ChunkHeader::decode(&b).is_err());
        assert!(ChunkHeader::decode(&[2u8; 10]).is_err());
    }

    #[test]
    fn reports_bad_fields() {
        let mut h = ChunkHeader::new_current(4096, 3, 2, true, Uuid::nil());
        h.min_compatible_version = 9;
        let p = h.problems();
        assert!(p.iter().any(|s| s.contains("range")), "{p:?}");
        assert!(p.iter().any(|s| s.contains("version 9")), "{p:?}");
        let mut raw = ChunkHeader::new_current(4096, 0, 0, false, Uuid::nil()).encode();
        raw[100] = 1;
        assert!(!ChunkHeader::decode(&raw).unwrap().reserved_zero);
    }

    proptest! {
        #[test]
        fn round_trips(size in 1i32.., start in 0i32..1_000_000, extra in 0i32..100, scav: bool,
                       id: [u8; 16], v4: bool, transform in 0u8..2) {
            let h = ChunkHeader {
                version: if v4 { 4 } else { 3 },
                min_compatible_version: 3,
                chunk_size: size,
                chunk_start_number: start,
                chunk_end_number: start + extra,
                is_scavenged: scav,
                chunk_id: Uuid::from_bytes(id),
                transform_type: if v4 { transform } else { 0 },
                reserved_zero: true,
            };
            prop_assert_eq!(ChunkHeader::decode(&h.encode()).unwrap(), h);
        }

        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ChunkHeader::decode(&b).map(|h| h.problems());
        }
    }
}
