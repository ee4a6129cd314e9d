//! Chunk files written record by record and read back: positions, framing, completion, MD5,
//! reopening after a restart, scavenged versions with their position maps.

mod common;

use std::fs;

use layout::chunk::{Appended, ChunkFile, ChunkName, ChunkWriter, ALIGNMENT};
use layout::record::{frame, LogRecord, PrepareFlags, PrepareRecord};
use md5::{Digest, Md5};
use uuid::Uuid;

fn event(pos: i64, n: u128, size: usize) -> LogRecord {
    LogRecord::Prepare(PrepareRecord {
        version: 1,
        log_position: pos,
        flags: PrepareFlags::SINGLE_WRITE | PrepareFlags::IS_COMMITTED,
        transaction_position: pos,
        transaction_offset: 0,
        expected_version: -1,
        stream: "s".into(),
        event_id: Uuid::from_u128(n + 1),
        correlation_id: Uuid::from_u128(n + 100),
        timestamp_ticks: 1,
        event_type: "T".into(),
        data: vec![7; size],
        metadata: vec![],
    })
}

fn read_all(path: &std::path::Path) -> Vec<(u64, LogRecord)> {
    let mut cf = ChunkFile::open(path).unwrap();
    let end = if cf.is_completed() {
        cf.footer.physical_data_size as u64
    } else {
        panic!("use records() with the writer position")
    };
    cf.records(end)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.physical_offset, LogRecord::decode(&r.body).unwrap())
        })
        .collect()
}

/// A completed chunk with one record, laid out by hand from `TFChunk.WriteFooter` and
/// `IdentityChunkWriteTransform.CompleteData`: header, framed record, zeros up to 4096 − 128,
/// footer (completed | 12-byte map, physical = logical = record, map 0), MD5 of all before it.
#[test]
fn golden_completed_4_kib_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let id: Uuid = "00112233-4455-6677-8899-aabbccddeeff".parse().unwrap();
    let mut w = ChunkWriter::create_new_with_id(dir.path(), 0, 4096, id).unwrap();
    let rec = event(0, 0, 10);
    assert!(matches!(
        w.append(&rec).unwrap(),
        Appended::Written { position: 0, .. }
    ));
    let done = w.complete().unwrap();
    let file = fs::read(&done.path).unwrap();

    let framed = frame(&rec.encode());
    let mut want = Vec::new();
    want.extend_from_slice(&[2, 3, 0, 0x10, 0, 0]); // type, min version, chunk size 4096
    want.extend_from_slice(&[0; 12]); // start 0, end 0, not scavenged
    want.extend_from_slice(&id.to_bytes_le());
    want.extend_from_slice(&[4, 0]);
    want.resize(128, 0);
    want.extend_from_slice(&framed);
    want.resize(4096 - 128, 0);
    let n = framed.len() as u8;
    let mut footer = vec![3, n, 0, 0, 0, n, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    footer.resize(112, 0);
    want.extend_from_slice(&footer);
    let hash = Md5::digest(&want);
    want.extend_from_slice(&hash);
    assert_eq!(file.len(), 4096);
    assert_eq!(file, want);
    assert!(fs::metadata(&done.path).unwrap().permissions().readonly());
}

#[test]
fn records_round_trip_with_their_positions_and_chunks_fill_as_the_servers_do() {
    let dir = tempfile::tempdir().unwrap();
    let cs = 5000;
    let mut w = ChunkWriter::create_new(dir.path(), 0, cs).unwrap();
    let mut written = vec![];
    let mut chunk_starts = vec![0i64];
    for n in 0..40u128 {
        let rec = event(w.next_position(), n, 300);
        match w.append(&rec).unwrap() {
            Appended::Written {
                position,
                next_position,
            } => {
                assert_eq!(next_position - position, rec.encode().len() as i64 + 8);
                written.push((0, rec));
            }
            Appended::ChunkFull => {
                let number = w.header().chunk_start_number as u32 + 1;
                let done = w.complete().unwrap();
                assert_eq!(done.file_size % ALIGNMENT, 0);
                assert!(done.footer.physical_data_size as u32 <= cs);
                w = ChunkWriter::create_new(dir.path(), number, cs).unwrap();
                // The next record goes to the next chunk's start: positions are not dense.
                assert_eq!(w.next_position(), number as i64 * cs as i64);
                chunk_starts.push(w.next_position());
                let rec = event(w.next_position(), n, 300);
                assert!(matches!(w.append(&rec).unwrap(), Appended::Written { .. }));
                written.push((0, rec));
            }
        }
    }
    assert!(chunk_starts.len() >= 3);
    w.flush().unwrap();
    let writer = w.next_position();
    let open = w.path().to_path_buf();
    drop(w);

    // Completed chunks read back with the same records at start + physical offset.
    let mut read = vec![];
    for (i, start) in chunk_starts.iter().enumerate().take(chunk_starts.len() - 1) {
        let path = dir.path().join(ChunkName::new(i as u32, 0).to_string());
        let mut cf = ChunkFile::open(&path).unwrap();
        assert!(cf.completed_size_problems().is_empty());
        assert!(cf.md5_matches().unwrap());
        for (off, rec) in read_all(&path) {
            assert_eq!(rec.log_position(), start + off as i64);
            read.push(rec);
        }
    }
    // The open chunk: preallocated, blank footer, records up to the writer.
    let mut cf = ChunkFile::open(&open).unwrap();
    assert!(!cf.is_completed() && cf.footer_blank);
    assert_eq!(cf.file_len(), cf.header.preallocated_file_size());
    let start = cf.header.start_position();
    for r in cf.records((writer - start) as u64).unwrap() {
        read.push(LogRecord::decode(&r.unwrap().body).unwrap());
    }
    let want: Vec<_> = written.into_iter().map(|(_, r)| r).collect();
    assert_eq!(read, want);
}

#[test]
fn reopening_the_open_chunk_continues_the_same_md5() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ChunkWriter::create_new(dir.path(), 0, 8192).unwrap();
    for n in 0..3 {
        w.append(&event(w.next_position(), n, 100)).unwrap();
    }
    w.flush().unwrap();
    let (path, pos) = (w.path().to_path_buf(), w.next_position());
    drop(w);
    // A restart: bytes past the writer are garbage the next appends overwrite.
    common::make_writable(&path);
    let mut b = fs::read(&path).unwrap();
    b[128 + pos as usize..128 + pos as usize + 50].fill(0xEE);
    fs::write(&path, b).unwrap();

    let mut w = ChunkWriter::reopen(&path, pos as u64).unwrap();
    assert_eq!(w.next_position(), pos);
    w.append(&event(pos, 9, 100)).unwrap();
    let done = w.complete().unwrap();
    let mut cf = ChunkFile::open(&done.path).unwrap();
    assert!(cf.md5_matches().unwrap());
    assert_eq!(read_all(&done.path).len(), 4);
    assert!(
        ChunkWriter::reopen(&done.path, 0).is_err(),
        "a completed chunk is read-only"
    );
}

#[test]
fn scavenged_versions_carry_a_position_map_of_the_kept_records() {
    let dir = tempfile::tempdir().unwrap();
    let cs = 4096;
    let mut sw = ChunkWriter::create_scavenged(dir.path(), 2, 3, cs).unwrap();
    // Kept records from chunks 2 and 3, at their original logical positions.
    let kept = [2 * 4096 + 100, 2 * 4096 + 900, 3 * 4096 + 40];
    for (n, &pos) in kept.iter().enumerate() {
        assert!(matches!(
            sw.append(&event(pos, n as u128, 50)).unwrap(),
            Appended::Written { .. }
        ));
    }
    assert!(
        sw.append(&event(2 * 4096 + 200, 9, 50)).is_err(),
        "positions only increase"
    );
    let done = sw.complete_scavenged(1).unwrap();
    assert!(done.path.ends_with("chunk-000002.000001"));
    let mut cf = ChunkFile::open(&done.path).unwrap();
    assert!(cf.header.is_scavenged && cf.header.chunk_end_number == 3);
    assert!(
        cf.completed_size_problems().is_empty(),
        "{:?}",
        cf.completed_size_problems()
    );
    assert!(cf.md5_matches().unwrap());
    let size = event(0, 0, 50).encode().len() as i32 + 8;
    let map: Vec<_> = cf.pos_map().unwrap().map(|e| e.unwrap()).collect();
    let want: Vec<_> = kept
        .iter()
        .enumerate()
        .map(|(i, &p)| (p - 2 * 4096, i as i32 * size))
        .collect();
    assert_eq!(
        map.iter()
            .map(|e| (e.log_pos, e.actual_pos))
            .collect::<Vec<_>>(),
        want
    );
    // Logical size: the post-position of the last kept record, relative to the chunk.
    assert_eq!(cf.footer.logical_data_size, 4096 + 40 + size as i64);
    assert_eq!(cf.footer.physical_data_size, 3 * size);
}

#[test]
fn framing_damage_is_reported_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ChunkWriter::create_new(dir.path(), 0, 8192).unwrap();
    let mut ends = vec![];
    for n in 0..3 {
        if let Appended::Written { next_position, .. } =
            w.append(&event(w.next_position(), n, 20)).unwrap()
        {
            ends.push(next_position);
        }
    }
    let done = w.complete().unwrap();
    common::make_writable(&done.path);
    let mut b = fs::read(&done.path).unwrap();
    // Break the suffix of the second record.
    b[128 + ends[1] as usize - 1] ^= 0x40;
    fs::write(&done.path, b).unwrap();
    let mut cf = ChunkFile::open(&done.path).unwrap();
    let res: Vec<_> = cf.records(ends[2] as u64).unwrap().collect();
    assert_eq!(res.len(), 2);
    let err = res[1].as_ref().unwrap_err();
    assert_eq!(err.offset, ends[0] as u64);
    assert!(err.what.contains("prefix/suffix"));
}
