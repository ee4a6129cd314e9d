//! Builds database directories the way a node leaves them: chunks written record by record,
//! completed when full, scavenged (some merged) into new versions, checkpoints, and an index of
//! PTables with merges. Everything here goes through the crate's writers.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use layout::checkpoint::{self, CheckpointKind};
use layout::chunk::{Appended, ChunkName, ChunkWriter};
use layout::index::bloom::{self, STREAM_EXISTENCE_DAT, STREAM_EXISTENCE_DIR};
use layout::index::{write_ptable, IndexEntry, IndexMap, IndexMapEntry};
use layout::record::{
    LogRecord, PrepareFlags, PrepareRecord, SystemRecord, SYSTEM_RECORD_EPOCH,
    SYSTEM_SERIALIZATION_JSON,
};
use uuid::Uuid;

/// Knobs of a generated layout; the property tests draw them at random.
#[derive(Debug, Clone)]
pub struct Spec {
    pub chunk_size: u32,
    /// Data sizes of the events to write, in order.
    pub events: Vec<usize>,
    /// Scavenges as (first completed chunk, how many to merge, keep-every-nth record).
    pub scavenges: Vec<(usize, usize, usize)>,
    /// Keep old versions next to the new ones (the server deletes them at open).
    pub keep_old_versions: bool,
    /// Which recorded post-position becomes the chaser (modulo their count).
    pub chaser_pick: usize,
    /// PTable sizes written at level 0; the first `merge` of them are merged into level 1.
    pub ptables: Vec<usize>,
    pub merge: usize,
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub writer: i64,
    pub chaser: i64,
    pub chunk_size: u32,
    /// Latest chunk files in order, the open one last.
    pub chunks: Vec<PathBuf>,
    pub ptables: Vec<PathBuf>,
}

impl Fixture {
    pub fn index(&self) -> PathBuf {
        self.db.join("index")
    }
}

fn event(pos: i64, n: usize, size: usize) -> LogRecord {
    LogRecord::Prepare(PrepareRecord {
        version: 1,
        log_position: pos,
        flags: PrepareFlags::SINGLE_WRITE | PrepareFlags::IS_COMMITTED | PrepareFlags::IS_JSON,
        transaction_position: pos,
        transaction_offset: 0,
        expected_version: n as i64 - 1,
        stream: format!("stream-{}", n % 7),
        event_id: Uuid::from_u128(n as u128 + 1),
        correlation_id: Uuid::from_u128(n as u128 + 1_000_000),
        timestamp_ticks: 638_000_000_000_000_000 + n as i64,
        event_type: "Happened".into(),
        data: vec![b'x'; size],
        metadata: vec![],
    })
}

fn epoch(pos: i64) -> LogRecord {
    LogRecord::System(SystemRecord {
        log_position: pos,
        timestamp_ticks: 638_000_000_000_000_000,
        system_record_type: SYSTEM_RECORD_EPOCH,
        serialization: SYSTEM_SERIALIZATION_JSON,
        reserved: 0,
        data: br#"{"epochPosition":0,"epochNumber":0}"#.to_vec(),
    })
}

/// Writes `rec`, moving to a new chunk when it does not fit. Returns its post-position.
fn append(
    db: &Path,
    w: &mut ChunkWriter,
    done: &mut Vec<(u32, Vec<LogRecord>)>,
    open: &mut Vec<LogRecord>,
    make: impl Fn(i64) -> LogRecord,
) -> i64 {
    loop {
        let rec = make(w.next_position());
        match w.append(&rec).unwrap() {
            Appended::Written { next_position, .. } => {
                open.push(rec);
                return next_position;
            }
            Appended::ChunkFull => {
                let n = w.header().chunk_start_number as u32;
                let cs = w.header().chunk_size as u32;
                let full = std::mem::replace(w, ChunkWriter::create_new(db, n + 1, cs).unwrap());
                full.complete().unwrap();
                done.push((n, std::mem::take(open)));
            }
        }
    }
}

pub fn make_writable(p: &Path) {
    let mut perms = fs::metadata(p).unwrap().permissions();
    perms.set_mode(0o644);
    fs::set_permissions(p, perms).unwrap();
}

pub fn build(spec: &Spec) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let index = db.join("index");
    fs::create_dir_all(index.join(STREAM_EXISTENCE_DIR)).unwrap();
    let cs = spec.chunk_size;

    let mut w = ChunkWriter::create_new(&db, 0, cs).unwrap();
    let mut done: Vec<(u32, Vec<LogRecord>)> = Vec::new();
    let mut open = Vec::new();
    let mut posts = vec![0i64];
    posts.push(append(&db, &mut w, &mut done, &mut open, epoch));
    for (n, &size) in spec.events.iter().enumerate() {
        posts.push(append(&db, &mut w, &mut done, &mut open, |p| {
            event(p, n, size)
        }));
    }
    w.flush().unwrap();
    let writer = w.next_position();
    let open_path = w.path().to_path_buf();
    drop(w);

    // Scavenges over completed chunks: new versions, some merged, in ranges that never overlap.
    let mut latest: Vec<(u32, u32, PathBuf)> = done
        .iter()
        .map(|(n, _)| (*n, *n, db.join(ChunkName::new(*n, 0).to_string())))
        .collect();
    let mut next_free = 0usize;
    for &(first, count, keep_every) in &spec.scavenges {
        let first = next_free.max(first % (done.len().max(1)));
        if first >= done.len() {
            break;
        }
        let last = (first + count.max(1) - 1).min(done.len() - 1);
        next_free = last + 1;
        let mut sw = ChunkWriter::create_scavenged(&db, first as u32, last as u32, cs).unwrap();
        'fill: for (_, recs) in &done[first..=last] {
            for (i, r) in recs.iter().enumerate() {
                if i % keep_every.max(1) == 0 {
                    if let Appended::ChunkFull = sw.append(r).unwrap() {
                        break 'fill;
                    }
                }
            }
        }
        let version = 1;
        let (start, _, _) = latest
            .iter()
            .find(|l| l.0 == first as u32)
            .cloned()
            .unwrap();
        let done_chunk = sw.complete_scavenged(version).unwrap();
        let covered: Vec<_> = latest
            .iter()
            .filter(|l| l.0 >= start && l.0 <= last as u32)
            .cloned()
            .collect();
        if !spec.keep_old_versions {
            for (_, _, p) in &covered {
                fs::remove_file(p).unwrap();
            }
        }
        latest.retain(|l| !(l.0 >= start && l.0 <= last as u32));
        latest.push((first as u32, last as u32, done_chunk.path));
        latest.sort();
    }
    let mut chunks: Vec<PathBuf> = latest.into_iter().map(|l| l.2).collect();
    chunks.push(open_path);

    let chaser = posts[spec.chaser_pick % posts.len()];

    // Index: PTables of entries below the chaser; the first `merge` level-0 tables merged.
    let mut map = IndexMap::empty();
    let mut ptables = Vec::new();
    let indexed: Vec<i64> = posts.iter().copied().filter(|&p| p < chaser).collect();
    if !indexed.is_empty() && !spec.ptables.is_empty() {
        let commit = *indexed.last().unwrap();
        map.prepare_checkpoint = commit;
        map.commit_checkpoint = commit;
        let mut level0 = Vec::new();
        for (t, &size) in spec.ptables.iter().enumerate() {
            let entries: Vec<IndexEntry> = (0..size)
                .map(|i| IndexEntry {
                    stream: (t * 31 + i) as u64 % 5,
                    version: i as i64,
                    position: indexed[i % indexed.len()],
                })
                .collect();
            level0.push(entries);
        }
        let merge = spec.merge.min(level0.len());
        let mut levels: Vec<Vec<Vec<IndexEntry>>> = vec![level0.split_off(merge), vec![]];
        if merge >= 2 {
            // A merge writes one new table from the old ones and drops them.
            levels[1].push(level0.concat());
        } else {
            levels[0].splice(0..0, level0);
        }
        for (level, tables) in levels.into_iter().enumerate() {
            for (position, entries) in tables.into_iter().enumerate() {
                let name = Uuid::new_v4().to_string();
                write_ptable(&index.join(&name), entries, 16).unwrap();
                ptables.push(index.join(&name));
                map.tables.push(IndexMapEntry {
                    level: level as u32,
                    position: position as u32,
                    file_name: name,
                });
            }
        }
    }
    map.write(&index).unwrap();
    bloom::create_filter(
        &index.join(STREAM_EXISTENCE_DIR).join(STREAM_EXISTENCE_DAT),
        10_000,
        &posts.iter().map(|&p| p as u64 * 7919).collect::<Vec<_>>(),
    )
    .unwrap();

    let cp = |k: CheckpointKind, v: i64| checkpoint::write(&k.path(&db, &index), v).unwrap();
    cp(CheckpointKind::Writer, writer);
    cp(CheckpointKind::Chaser, chaser);
    cp(CheckpointKind::Epoch, 0);
    cp(CheckpointKind::Truncate, -1);
    cp(CheckpointKind::Proposal, 3);
    cp(CheckpointKind::StreamExistenceFilter, chaser);

    Fixture {
        dir,
        db,
        writer,
        chaser,
        chunk_size: cs,
        chunks,
        ptables,
    }
}

/// A fixed layout with every feature: five completed chunks, chunks 1–2 merged by a scavenge,
/// an open chunk, a chaser in a completed chunk, two merged PTables and one at level 0.
pub fn standard() -> Fixture {
    build(&Spec {
        chunk_size: 8192,
        events: vec![700; 60],
        scavenges: vec![(1, 2, 2)],
        keep_old_versions: false,
        chaser_pick: 40,
        ptables: vec![10, 20, 5],
        merge: 2,
    })
}
