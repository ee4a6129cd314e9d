//! Benchmark of `standby verify-backup` (the release binary, as a child process):
//!
//! - `--level full` throughput on data in the page cache, in MB/s of wall time and per CPU
//!   second (the verifier hashes on one thread, so the second is the figure per core);
//! - `--level quick` time per 1,000 chunks;
//! - the peak RSS of the verifier (`ru_maxrss` of the children).
//!
//! `cargo bench --bench verify_backup [-- GIB]` (default 2 GiB of 256 MiB chunks). The layouts
//! are written with the `layout` crate into a temporary directory; figures go to stdout and are
//! recorded in docs/benchmarks.md.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use layout::checkpoint::{self, CheckpointKind};
use layout::chunk::{Appended, ChunkWriter, DEFAULT_CHUNK_SIZE};
use layout::index::IndexMap;
use layout::record::{LogRecord, PrepareFlags, PrepareRecord};
use uuid::Uuid;

const RUNS: usize = 3;

fn event(pos: i64, n: u64, size: usize) -> LogRecord {
    LogRecord::Prepare(PrepareRecord {
        version: 1,
        log_position: pos,
        flags: PrepareFlags::SINGLE_WRITE | PrepareFlags::IS_COMMITTED | PrepareFlags::IS_JSON,
        transaction_position: pos,
        transaction_offset: 0,
        expected_version: n as i64 - 1,
        stream: format!("bench-{}", n % 100),
        event_id: Uuid::from_u128(n as u128 + 1),
        correlation_id: Uuid::from_u128(n as u128 + 1),
        timestamp_ticks: 638_000_000_000_000_000 + n as i64,
        event_type: "Happened".into(),
        data: vec![b'x'; size],
        metadata: vec![],
    })
}

/// Writes `completed` full chunks of `chunk_size` and one open chunk with a few records, with
/// consistent checkpoints and an empty index: a sound directory.
fn build(db: &Path, chunk_size: u32, completed: u32, event_size: usize) {
    std::fs::create_dir_all(db.join("index")).unwrap();
    let mut w = ChunkWriter::create_new(db, 0, chunk_size).unwrap();
    let mut n = 0u64;
    let mut open_records = 0;
    loop {
        let rec = event(w.next_position(), n, event_size);
        match w.append(&rec).unwrap() {
            Appended::Written { .. } => {
                n += 1;
                if w.header().chunk_start_number as u32 == completed {
                    open_records += 1;
                    if open_records == 3 {
                        break;
                    }
                }
            }
            Appended::ChunkFull => {
                let next = w.header().chunk_start_number as u32 + 1;
                let full = std::mem::replace(
                    &mut w,
                    ChunkWriter::create_new(db, next, chunk_size).unwrap(),
                );
                full.complete().unwrap();
            }
        }
    }
    w.flush().unwrap();
    let writer = w.next_position();
    drop(w);
    IndexMap::empty().write(&db.join("index")).unwrap();
    let index = db.join("index");
    for (kind, value) in [
        (CheckpointKind::Writer, writer),
        (CheckpointKind::Chaser, writer),
        (CheckpointKind::Epoch, -1),
        (CheckpointKind::Truncate, -1),
        (CheckpointKind::Proposal, -1),
    ] {
        checkpoint::write(&kind.path(db, &index), value).unwrap();
    }
}

struct Run {
    wall: Duration,
    cpu: Duration,
    bytes_hashed: u64,
    chunks_checked: u64,
}

fn children_usage() -> libc::rusage {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into the pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0);
    usage
}

fn cpu_of(u: &libc::rusage) -> Duration {
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

fn verify(db: &Path, level: &str) -> Run {
    let before = cpu_of(&children_usage());
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["verify-backup", "--json", "--level", level, "--dir"])
        .arg(db)
        .output()
        .unwrap();
    let wall = started.elapsed();
    let cpu = cpu_of(&children_usage()) - before;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Run {
        wall,
        cpu,
        bytes_hashed: json["bytes_hashed"].as_u64().unwrap(),
        chunks_checked: json["chunks_checked"].as_u64().unwrap(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let gib: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2);
    let tmp = tempfile::tempdir().unwrap();

    let big = tmp.path().join("full");
    let completed = gib * 4;
    eprintln!("writing {completed} chunks of 256 MiB");
    build(&big, DEFAULT_CHUNK_SIZE, completed, 64 * 1024);
    verify(&big, "full"); // warm the page cache
    let runs: Vec<Run> = (0..RUNS).map(|_| verify(&big, "full")).collect();
    let mb = runs[0].bytes_hashed as f64 / 1e6;
    let wall = median(runs.iter().map(|r| mb / r.wall.as_secs_f64()).collect());
    let per_cpu = median(runs.iter().map(|r| mb / r.cpu.as_secs_f64()).collect());

    let many = tmp.path().join("quick");
    eprintln!("writing 1,000 chunks of 64 KiB");
    build(&many, 64 * 1024, 999, 1000);
    verify(&many, "quick");
    let quick: Vec<Run> = (0..RUNS).map(|_| verify(&many, "quick")).collect();
    assert_eq!(quick[0].chunks_checked, 1000);
    let quick_ms = median(quick.iter().map(|r| r.wall.as_secs_f64() * 1e3).collect());

    let peak_mib = children_usage().ru_maxrss as f64 / 1024.0;
    println!("full: {mb:.0} MB hashed; {wall:.0} MB/s wall, {per_cpu:.0} MB/s per CPU second (median of {RUNS})");
    println!("quick: {quick_ms:.1} ms per 1,000 chunks (median of {RUNS})");
    println!("peak RSS of verify-backup: {peak_mib:.1} MiB");
}
