//! Streaming MD5 over file ranges with one fixed buffer, so verifying a file of any size uses
//! the same small amount of memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use md5::{Digest, Md5};

use crate::error::{Error, Result};

/// Read size for hashing and record walking: large enough for full disk throughput, small enough
/// that several verifications at once stay far below the 64 MiB budget.
pub const IO_BUFFER: usize = 1 << 20;

/// MD5 of `len` bytes of `file` from `start`.
pub fn md5_range(file: &mut File, path: &Path, start: u64, len: u64) -> Result<[u8; 16]> {
    let mut md5 = Md5::new();
    feed_range(&mut md5, file, path, start, len)?;
    Ok(md5.finalize().into())
}

/// Feeds `len` bytes of `file` from `start` into `md5`. Fails with a format error when the file
/// is shorter than that.
pub fn feed_range(md5: &mut Md5, file: &mut File, path: &Path, start: u64, len: u64) -> Result<()> {
    file.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; IO_BUFFER.min(len as usize).max(1)];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = file
            .read(&mut buf[..want])
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Err(Error::format(
                path,
                format!("file ends {left} bytes before the hashed range does"),
            ));
        }
        md5.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

/// Upper-case hex, as the server prints hashes in `indexmap`.
pub fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}
