//! Persistent Bloom filters: the stream-existence filter (`stream-existence/streamExistenceFilter.dat`,
//! 21.10+) and the optional `<ptable>.bloomfilter` next to each PTable. Follows
//! `src/KurrentDB.Core/DataStructures/ProbabilisticFilter/` (`Header.cs`, `BloomFilterAccessor.cs`
//! for the file size and `Verify`, `BloomFilterIntegrity.cs` for the per-line hash,
//! `FileStreamPersistence.cs` for the header checks) and `Index/Hashes/XXHashUnsafe.cs`.
//!
//! The file is a sequence of 64-byte lines. The first holds the header (`u8 version = 1`, at 4 an
//! `i32` count of rebuilds after corruption, at 8 the `i64` number of bits); every other line is
//! 60 bytes of filter bits and a 4-byte hash of them (the server's XXHash variant, seed
//! `0xc58f1a7b`). An all-zero line is valid (nothing set yet); an all-ones line is one the server
//! found corrupt and made safe. At start the server tolerates up to 5% bad lines and rebuilds the
//! filter above that, or when the size does not match: slow, but nothing is lost.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::hash::IO_BUFFER;

pub const CACHE_LINE: usize = 64;
const HASH_SIZE: usize = 4;
const BITS_PER_LINE: usize = CACHE_LINE - HASH_SIZE;
pub const BLOOM_VERSION: u8 = 1;
/// `BloomFilterIntegrity` hasher seed.
const LINE_HASH_SEED: u32 = 0xc58f_1a7b;
/// `PersistentBloomFilter` verifies with this threshold: more bad lines and the filter is rebuilt.
pub const REBUILD_THRESHOLD_PERCENT: f64 = 5.0;
/// `BloomFilterAccessor.MinSizeKB`/`MaxSizeKB`, in bytes of filter.
pub const MIN_LOGICAL_SIZE: u64 = 10_000;
pub const MAX_LOGICAL_SIZE: u64 = 4_000_000_000;
pub const STREAM_EXISTENCE_DIR: &str = "stream-existence";
pub const STREAM_EXISTENCE_DAT: &str = "streamExistenceFilter.dat";

/// The file size the server expects for a filter of `num_bits` (`BloomFilterAccessor` ctor:
/// the byte of the last bit, rounded down to a line, plus one line).
pub fn file_size_for(num_bits: u64) -> u64 {
    let byte = num_bits / 8;
    let in_file = byte + byte / BITS_PER_LINE as u64 * HASH_SIZE as u64 + CACHE_LINE as u64;
    in_file / CACHE_LINE as u64 * CACHE_LINE as u64 + CACHE_LINE as u64
}

/// What verifying a filter file found, counted as the server counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BloomCheck {
    pub version: u8,
    pub corruption_rebuild_count: i32,
    pub num_bits: i64,
    pub file_len: u64,
    /// Lines including the header line (the server divides by this).
    pub lines: u64,
    /// Lines whose hash is wrong and cannot be explained by one bit set after the hash was
    /// computed, plus lines already made safe (all ones).
    pub bad_lines: u64,
}

impl BloomCheck {
    /// Whether the server will throw the filter away and rebuild it at start.
    pub fn server_rebuilds(&self) -> bool {
        self.bad_lines as f64 / self.lines.max(1) as f64 * 100.0 > REBUILD_THRESHOLD_PERCENT
    }
}

/// Reads a filter's header and checks every line's hash, streaming.
///
/// # Errors
/// I/O failures, or a [`Error::Format`] for a header the server refuses (wrong version, size not
/// what the header implies): the server rebuilds such a filter.
pub fn verify_filter(path: &Path) -> Result<BloomCheck> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut r = BufReader::with_capacity(IO_BUFFER, file);
    let mut line = [0u8; CACHE_LINE];
    r.read_exact(&mut line).map_err(|_| {
        Error::format(
            path,
            format!("{file_len} bytes is shorter than the header line"),
        )
    })?;
    if line[0] != BLOOM_VERSION {
        return Err(Error::format(
            path,
            format!(
                "filter version {} (the server reads {BLOOM_VERSION})",
                line[0]
            ),
        ));
    }
    let corruption_rebuild_count = i32::from_le_bytes(line[4..8].try_into().expect("4"));
    let num_bits = i64::from_le_bytes(line[8..16].try_into().expect("8"));
    let logical = num_bits / 8;
    if num_bits <= 0 || (logical as u64) < MIN_LOGICAL_SIZE || logical as u64 > MAX_LOGICAL_SIZE {
        return Err(Error::format(
            path,
            format!("header says {num_bits} bits, outside the sizes the server accepts"),
        ));
    }
    let expected = file_size_for(num_bits as u64);
    if file_len != expected {
        return Err(Error::format(
            path,
            format!("{file_len} bytes; a filter of {num_bits} bits is {expected}"),
        ));
    }
    let lines = file_len / CACHE_LINE as u64;
    let mut bad_lines = 0;
    for _ in 1..lines {
        r.read_exact(&mut line).map_err(|e| Error::io(path, e))?;
        if !line_is_valid(&line) {
            bad_lines += 1;
        }
    }
    Ok(BloomCheck {
        version: BLOOM_VERSION,
        corruption_rebuild_count,
        num_bits,
        file_len,
        lines,
        bad_lines,
    })
}

/// `BloomFilterIntegrity.ValidateHash` without the repair.
fn line_is_valid(line: &[u8; CACHE_LINE]) -> bool {
    if line.iter().all(|&b| b == 0xFF) {
        return false;
    }
    if line.iter().all(|&b| b == 0) {
        return true;
    }
    let stored = u32::from_le_bytes(line[BITS_PER_LINE..].try_into().expect("4"));
    let mut bits: [u8; BITS_PER_LINE] = line[..BITS_PER_LINE].try_into().expect("60");
    if xxhash(&bits, LINE_HASH_SEED) == stored {
        return true;
    }
    // A flush between setting a bit and updating the hash leaves the hash of the line without
    // that bit; the server accepts such a line (`CanRehash`).
    for i in 0..BITS_PER_LINE {
        for bit in 0..8 {
            if bits[i] & (1 << bit) != 0 {
                bits[i] &= !(1 << bit);
                let ok = xxhash(&bits, LINE_HASH_SEED) == stored;
                bits[i] |= 1 << bit;
                if ok {
                    return true;
                }
            }
        }
    }
    false
}

/// Creates a filter file of `logical_size` bytes of bits with `set_bits` set and every line's
/// hash written, as `PersistentBloomFilter` leaves it. The bit positions are the filter's own
/// (what an item hashes to is the caller's business).
pub fn create_filter(path: &Path, logical_size: u64, set_bits: &[u64]) -> Result<()> {
    if !(MIN_LOGICAL_SIZE..=MAX_LOGICAL_SIZE).contains(&logical_size) {
        return Err(Error::Misuse(format!(
            "filter size {logical_size} out of range"
        )));
    }
    let num_bits = logical_size * 8;
    let size = file_size_for(num_bits);
    let mut lines = vec![[0u8; CACHE_LINE]; (size / CACHE_LINE as u64) as usize];
    lines[0][0] = BLOOM_VERSION;
    lines[0][8..16].copy_from_slice(&(num_bits as i64).to_le_bytes());
    let mut touched = Vec::new();
    for &bit in set_bits {
        let bit = bit % num_bits;
        let byte = bit / 8;
        let line = 1 + (byte / BITS_PER_LINE as u64) as usize;
        lines[line][(byte % BITS_PER_LINE as u64) as usize] |= 1 << (bit % 8);
        touched.push(line);
    }
    for l in touched {
        let h = xxhash(&lines[l][..BITS_PER_LINE], LINE_HASH_SEED);
        lines[l][BITS_PER_LINE..].copy_from_slice(&h.to_le_bytes());
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    for l in &lines {
        f.write_all(l).map_err(|e| Error::io(path, e))?;
    }
    f.sync_all().map_err(|e| Error::io(path, e))
}

const P1: u32 = 2_654_435_761;
const P2: u32 = 2_246_822_519;
const P3: u32 = 3_266_489_917;
const P4: u32 = 668_265_263;
const P5: u32 = 0x1656_67b1;

/// The server's XXHash variant (`Index/Hashes/XXHashUnsafe.cs`). It differs from reference
/// XXH32: the four lanes start from chained seeds, and the tail is always the last 16 bytes.
pub fn xxhash(data: &[u8], seed: u32) -> u32 {
    let len = data.len();
    let word = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().expect("4"));
    if len < 16 {
        let mut idx = seed.wrapping_add(P1);
        let mut crc = P5;
        let mut p = 0;
        while len >= 4 && p < len - 4 {
            crc = crc.wrapping_add(word(p)).wrapping_add(idx);
            idx = idx.wrapping_add(1);
            crc = crc.wrapping_add(crc.rotate_left(17).wrapping_mul(P4));
            crc = crc.wrapping_mul(P1);
            p += 4;
        }
        while p < len {
            crc = crc.wrapping_add(data[p] as u32).wrapping_add(idx);
            idx = idx.wrapping_add(1);
            crc = crc.wrapping_mul(P1);
            p += 1;
        }
        crc = crc.wrapping_add(len as u32);
        crc ^= crc >> 15;
        crc = crc.wrapping_mul(P2);
        crc ^= crc >> 13;
        crc = crc.wrapping_mul(P3);
        crc ^= crc >> 16;
        return crc;
    }
    let mut v = [0u32; 4];
    v[0] = seed.wrapping_add(P1);
    v[1] = v[0].wrapping_mul(P2).wrapping_add(len as u32);
    v[2] = v[1].wrapping_mul(P3);
    v[3] = v[2].wrapping_mul(P4);
    let rot = [13, 11, 17, 19];
    let limit = len - 16;
    let mut p = 0;
    while p < limit {
        for (lane, r) in rot.iter().enumerate() {
            v[lane] = v[lane].wrapping_add(v[lane].rotate_left(*r));
            v[lane] = v[lane].wrapping_mul(P1);
            v[lane] = v[lane].wrapping_add(word(p));
            p += 4;
        }
    }
    let rot2 = [17, 19, 13, 11];
    let rot3 = [11, 17, 19, 13];
    for lane in 0..4 {
        v[lane] = v[lane].wrapping_add(v[lane].rotate_left(rot2[lane]));
        v[lane] = v[lane].wrapping_mul(P1);
        v[lane] = v[lane].wrapping_add(word(limit + 4 * lane));
        v[lane] = v[lane].wrapping_mul(P2);
        v[lane] = v[lane].wrapping_add(v[lane].rotate_left(rot3[lane]));
        v[lane] = v[lane].wrapping_mul(P3);
    }
    let mut crc = v[0]
        .wrapping_add(v[1].rotate_left(3))
        .wrapping_add(v[2].rotate_left(6))
        .wrapping_add(v[3].rotate_left(9));
    crc ^= crc >> 11;
    crc = crc.wrapping_add(P4.wrapping_add(len as u32).wrapping_mul(P1));
    crc ^= crc >> 15;
    crc = crc.wrapping_mul(P2);
    crc ^= crc >> 13;
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SMHasher verification value the server's own test expects of `XXHashUnsafe`
    /// (`KurrentDB.Core.Tests/Hashes/xxhash_hash_should.cs`, `SMHasher.VerificationTest`): hash
    /// the keys {}, {0}, {0,1}… {0..254} with seed 256 − length, then the 1024 bytes of hashes
    /// with seed 0.
    #[test]
    fn golden_smhasher_verification_value() {
        let key: Vec<u8> = (0..=255u8).collect();
        let mut hashes = Vec::with_capacity(1024);
        for i in 0..256usize {
            hashes.extend_from_slice(&xxhash(&key[..i], 256 - i as u32).to_le_bytes());
        }
        assert_eq!(xxhash(&hashes, 0), 0x56D2_49B1);
    }

    /// 256,000,000 bytes (the default stream-existence filter): lines of 60 bits-bytes.
    #[test]
    fn file_size_of_the_default_filter() {
        let bits = 256_000_000u64 * 8;
        let byte = 256_000_000u64;
        let want = (byte + byte / 60 * 4 + 64) / 64 * 64 + 64;
        assert_eq!(file_size_for(bits), want);
        assert_eq!(file_size_for(10_000 * 8) % 64, 0);
    }

    #[test]
    fn created_filters_verify_and_damage_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.dat");
        create_filter(&p, 10_000, &[1, 2, 3, 500, 70_000, 79_999]).unwrap();
        let c = verify_filter(&p).unwrap();
        assert_eq!(c.bad_lines, 0);
        assert_eq!(c.lines, file_size_for(80_000) / 64);
        assert!(!c.server_rebuilds());

        // One flipped bit in a line with data and its hash no longer matches. A set bit whose
        // hash was never written is accepted, as the server accepts it.
        let mut b = std::fs::read(&p).unwrap();
        b[64] ^= 0b0100_0000; // line 1 holds bits 1, 2, 3: a new bit, hash unchanged
        std::fs::write(&p, &b).unwrap();
        assert_eq!(verify_filter(&p).unwrap().bad_lines, 0);
        b[64 + 61] ^= 1; // damage the stored hash itself
        std::fs::write(&p, &b).unwrap();
        assert_eq!(verify_filter(&p).unwrap().bad_lines, 1);

        // Beyond 5% of lines bad: the server rebuilds.
        let lines = b.len() / 64;
        for l in 1..lines / 10 {
            b[l * 64..l * 64 + 64].fill(0xFF);
        }
        std::fs::write(&p, &b).unwrap();
        assert!(verify_filter(&p).unwrap().server_rebuilds());

        b.truncate(b.len() - 64);
        std::fs::write(&p, &b).unwrap();
        assert!(verify_filter(&p).unwrap_err().is_format());
    }
}
