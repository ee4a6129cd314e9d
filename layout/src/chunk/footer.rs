//! The 128-byte chunk footer and the position map of scavenged chunks. Follows
//! `src/KurrentDB.Core/TransactionLog/Chunks/ChunkFooter.cs` and `TFChunk/PosMap.cs`.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | flags: bit 0 `IsCompleted`, bit 1 `IsMap12Bytes` |
//! | 1 | 4 | `PhysicalDataSize` |
//! | 5 | 8 (4 without bit 1) | `LogicalDataSize` |
//! | 13 (9) | 4 | `MapSize` in bytes |
//! | … | | zero |
//! | 112 | 16 | MD5 of every byte of the file before it |
//!
//! Position map entries (12 bytes): `i32 ActualPos | i64 LogPos`, both relative to the chunk:
//! the physical offset in the data area and the logical offset from the chunk's start position.
//! The deprecated 8-byte form packs `LogPos` in the high and `ActualPos` in the low 32 bits.

use crate::error::DecodeError;

use super::header::{i32_at, i64_at};

pub const FOOTER_SIZE: usize = 128;
pub const CHECKSUM_SIZE: usize = 16;
pub const POS_MAP_ENTRY_SIZE: usize = 12;
pub const POS_MAP_DEPRECATED_ENTRY_SIZE: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkFooter {
    /// Set once the chunk is completed; an open chunk's footer area is all zeros.
    pub is_completed: bool,
    /// Always set by current writers; without it the logical size and map are the old 4/8-byte forms.
    pub is_map_12_bytes: bool,
    /// Bytes of records in the data area.
    pub physical_data_size: i32,
    /// Logical bytes covered; larger than the physical size after a scavenge removed records.
    pub logical_data_size: i64,
    /// Bytes of position map after the data; 0 for chunks that were never scavenged.
    pub map_size: i32,
    pub md5: [u8; 16],
}

impl ChunkFooter {
    /// The footer of a completed chunk, hash still zero (it is computed over these bytes too).
    pub fn completed(physical: u32, logical: u64, map_size: u32) -> Self {
        ChunkFooter {
            is_completed: true,
            is_map_12_bytes: true,
            physical_data_size: physical as i32,
            logical_data_size: logical as i64,
            map_size: map_size as i32,
            md5: [0; 16],
        }
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < FOOTER_SIZE {
            return Err(DecodeError::new(format!(
                "chunk footer needs {FOOTER_SIZE} bytes, got {}",
                b.len()
            )));
        }
        let flags = b[0];
        let is_map_12_bytes = flags & 2 != 0;
        let (logical_data_size, map_at) = if is_map_12_bytes {
            (i64_at(b, 5), 13)
        } else {
            (i32_at(b, 5) as i64, 9)
        };
        let mut md5 = [0u8; 16];
        md5.copy_from_slice(&b[FOOTER_SIZE - CHECKSUM_SIZE..FOOTER_SIZE]);
        Ok(ChunkFooter {
            is_completed: flags & 1 != 0,
            is_map_12_bytes,
            physical_data_size: i32_at(b, 1),
            logical_data_size,
            map_size: i32_at(b, map_at),
            md5,
        })
    }

    pub fn encode(&self) -> [u8; FOOTER_SIZE] {
        let mut b = [0u8; FOOTER_SIZE];
        b[0] = self.is_completed as u8 | (self.is_map_12_bytes as u8) << 1;
        b[1..5].copy_from_slice(&self.physical_data_size.to_le_bytes());
        let map_at = if self.is_map_12_bytes {
            b[5..13].copy_from_slice(&self.logical_data_size.to_le_bytes());
            13
        } else {
            b[5..9].copy_from_slice(&(self.logical_data_size as i32).to_le_bytes());
            9
        };
        b[map_at..map_at + 4].copy_from_slice(&self.map_size.to_le_bytes());
        b[FOOTER_SIZE - CHECKSUM_SIZE..].copy_from_slice(&self.md5);
        b
    }

    /// Bytes per position map entry for this footer's format.
    pub fn pos_map_entry_size(&self) -> usize {
        if self.is_map_12_bytes {
            POS_MAP_ENTRY_SIZE
        } else {
            POS_MAP_DEPRECATED_ENTRY_SIZE
        }
    }

    /// True when every byte of the footer area is zero: the footer of an open chunk.
    pub fn is_blank(raw: &[u8]) -> bool {
        raw.iter().all(|&b| b == 0)
    }
}

/// One position map entry: where a record that survived a scavenge now lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosMapEntry {
    /// Logical offset of the record from the chunk's start position (never changes).
    pub log_pos: i64,
    /// Physical offset of the record's length prefix in the data area.
    pub actual_pos: i32,
}

impl PosMapEntry {
    pub fn encode(&self) -> [u8; POS_MAP_ENTRY_SIZE] {
        let mut b = [0u8; POS_MAP_ENTRY_SIZE];
        b[..4].copy_from_slice(&self.actual_pos.to_le_bytes());
        b[4..].copy_from_slice(&self.log_pos.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Self {
        PosMapEntry {
            actual_pos: i32_at(b, 0),
            log_pos: i64_at(b, 4),
        }
    }

    /// The pre-12-byte form (`PosMap.FromOldFormat`).
    pub fn decode_deprecated(b: &[u8]) -> Self {
        let v = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        PosMapEntry {
            log_pos: (v >> 32) as i32 as i64,
            actual_pos: (v & 0xFFFF_FFFF) as u32 as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `new ChunkFooter(isCompleted: true, isMap12Bytes: true, physical: 0x1234,
    /// logical: 0x0102030405, mapSize: 24, hash)` formatted per `ChunkFooter.Format`.
    #[test]
    fn golden_footer() {
        let mut want = [0u8; 128];
        want[..17].copy_from_slice(&[
            0x03, // completed | 12-byte map
            0x34, 0x12, 0, 0, // physical
            0x05, 0x04, 0x03, 0x02, 0x01, 0, 0, 0, // logical, i64
            24, 0, 0, 0, // map size
        ]);
        want[112..].copy_from_slice(&[0xAB; 16]);
        let mut f = ChunkFooter::completed(0x1234, 0x01_0203_0405, 24);
        f.md5 = [0xAB; 16];
        assert_eq!(f.encode(), want);
        assert_eq!(ChunkFooter::decode(&want).unwrap(), f);
    }

    #[test]
    fn old_footer_has_4_byte_logical_size() {
        let mut b = [0u8; 128];
        b[..13].copy_from_slice(&[0x01, 10, 0, 0, 0, 20, 0, 0, 0, 16, 0, 0, 0]);
        let f = ChunkFooter::decode(&b).unwrap();
        assert!(f.is_completed && !f.is_map_12_bytes);
        assert_eq!(
            (f.physical_data_size, f.logical_data_size, f.map_size),
            (10, 20, 16)
        );
        assert_eq!(f.pos_map_entry_size(), 8);
        assert_eq!(f.encode(), b);
    }

    /// `PosMap.Format`: ActualPos (i32) first, then LogPos (i64).
    #[test]
    fn golden_pos_map_entry() {
        let e = PosMapEntry {
            log_pos: 0x0A0B,
            actual_pos: 0x10,
        };
        assert_eq!(e.encode(), [0x10, 0, 0, 0, 0x0B, 0x0A, 0, 0, 0, 0, 0, 0]);
        let old = 0x0000_0A0B_0000_0010u64.to_le_bytes();
        assert_eq!(PosMapEntry::decode_deprecated(&old), e);
    }

    proptest! {
        #[test]
        fn round_trips(done: bool, phys: i32, logical: i64, map: i32, md5: [u8; 16]) {
            let f = ChunkFooter { is_completed: done, is_map_12_bytes: true,
                physical_data_size: phys, logical_data_size: logical, map_size: map, md5 };
            prop_assert_eq!(ChunkFooter::decode(&f.encode()).unwrap(), f);
        }

        #[test]
        fn pos_map_round_trips(log_pos: i64, actual_pos: i32) {
            let e = PosMapEntry { log_pos, actual_pos };
            prop_assert_eq!(PosMapEntry::decode(&e.encode()), e);
        }
    }
}
