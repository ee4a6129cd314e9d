//! `--layout chunks`: the dev node keeps its log in the server's layout. Events and their `$all`
//! positions survive a restart and a SIGKILL, the directory passes the offline verifier at the
//! full level, positions jump over the unused tail of each chunk, and `truncate.chk` is obeyed
//! at start.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use common::*;
use devnode::store::{ProposedEvent, Store, TfPos};
use devnode::Storage;
use layout::checkpoint::{self, CheckpointKind};
use layout::verify::{verify_dir, Level, Options};
use serde_json::json;
use uuid::Uuid;

const CHUNK: u32 = 16 * 1024;

fn storage(dir: &Path) -> Storage {
    Storage::Chunks {
        dir: dir.to_path_buf(),
        chunk_size: CHUNK,
    }
}

fn ev(i: usize) -> ProposedEvent {
    ProposedEvent {
        event_id: Uuid::from_u128(i as u128 + 1),
        event_type: "Happened".into(),
        is_json: true,
        data: Bytes::from(format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(300))),
        metadata: Bytes::new(),
    }
}

/// Writes `n` events over 5 streams, one append each.
fn fill(store: &Store, from: usize, n: usize) {
    for i in from..from + n {
        let r = store
            .append(&format!("s-{}", i % 5), -2, vec![ev(i)])
            .unwrap();
        assert!(
            matches!(r, devnode::store::AppendResult::Written { .. }),
            "{r:?}"
        );
    }
}

/// Every event of `$all` as (position, event id).
fn all(store: &Store) -> Vec<(i64, Uuid)> {
    let slice = store.read_all_forward(TfPos::new(0, 0), 100_000, false);
    slice
        .events
        .iter()
        .map(|e| {
            let r = e.original();
            (r.pos as i64, r.event_id)
        })
        .collect()
}

#[test]
fn events_and_positions_survive_a_restart_and_the_layout_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&storage(dir.path()), false).unwrap();
    fill(&store, 0, 400);
    let before = all(&store);
    assert_eq!(before.len(), 400);
    // Several chunks, and positions skip the unused tail of each completed chunk.
    assert!(store.end() > 4 * CHUNK as u64);
    let jumps = before
        .windows(2)
        .filter(|w| w[1].0 % CHUNK as i64 == 0 && w[0].0 / CHUNK as i64 != w[1].0 / CHUNK as i64)
        .count();
    assert!(jumps >= 4, "{jumps}");
    drop(store);

    let report = verify_dir(dir.path(), &Options::new(Level::Full)).unwrap();
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert!(report.chunks_checked >= 5);
    // The index behind the chaser was written and merged (1,000-entry memtables are not
    // reached by 400 events, so the map may hold no table yet; it must still be sound).
    assert!(dir.path().join("index/indexmap").exists());

    let store = Store::open(&storage(dir.path()), false).unwrap();
    assert_eq!(all(&store), before);
    // Appends continue at the writer with the right event numbers.
    let r = store.append("s-0", 79, vec![ev(10_000)]).unwrap();
    assert!(
        matches!(r, devnode::store::AppendResult::Written { .. }),
        "{r:?}"
    );
    assert_eq!(all(&store).len(), 401);
}

#[test]
fn ptables_are_written_and_merged_behind_the_chaser() {
    let dir = tempfile::tempdir().unwrap();
    let big = 64 * 1024 * 1024;
    let store = Store::open(
        &Storage::Chunks {
            dir: dir.path().to_path_buf(),
            chunk_size: big,
        },
        false,
    )
    .unwrap();
    fill(&store, 0, 4_200);
    let chaser = checkpoint::read(&dir.path().join("chaser.chk"))
        .unwrap()
        .unwrap()
        .value;
    let writer = checkpoint::read(&dir.path().join("writer.chk"))
        .unwrap()
        .unwrap()
        .value;
    assert!(chaser < writer, "the chaser lags: {chaser} vs {writer}");
    let map = layout::index::IndexMap::read(&dir.path().join("index/indexmap")).unwrap();
    assert!(map.hash_matches());
    // Four 1,000-entry tables were merged into one of level 1.
    assert!(map.map.tables.iter().any(|t| t.level == 1), "{:?}", map.map);
    assert!(map.map.commit_checkpoint < chaser);
    let report = verify_dir(dir.path(), &Options::new(Level::Deep)).unwrap();
    assert!(report.is_sound(), "{:#?}", report.findings);
    drop(store);
}

#[test]
fn truncate_chk_drops_the_records_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&storage(dir.path()), false).unwrap();
    fill(&store, 0, 300);
    let before = all(&store);
    drop(store);
    // Truncate inside a completed chunk: the later chunks go, that one is reopened.
    let cut = before[150].0;
    checkpoint::write(&dir.path().join(CheckpointKind::Truncate.file_name()), cut).unwrap();

    let store = Store::open(&storage(dir.path()), false).unwrap();
    assert_eq!(all(&store), before[..150].to_vec());
    assert_eq!(store.end(), cut as u64);
    let read = |k: CheckpointKind| {
        checkpoint::read(&dir.path().join(k.file_name()))
            .unwrap()
            .unwrap()
            .value
    };
    assert_eq!(read(CheckpointKind::Truncate), -1);
    assert_eq!(read(CheckpointKind::Writer), cut);
    assert!(read(CheckpointKind::Chaser) <= cut);
    // Writing goes on from the truncation point, and the result is a sound layout.
    fill(&store, 1_000, 50);
    assert_eq!(all(&store)[150].0, cut);
    drop(store);
    let report = verify_dir(dir.path(), &Options::new(Level::Full)).unwrap();
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
}

/// Kills the child (SIGKILL) when dropped, so a failing test leaves no process behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `devnode` process on `dir` whose log holds only the test's writes (a restart would add the
/// node's own `$epoch-information`; the test compares the storage before and after).
fn spawn(dir: &Path) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_devnode"))
        .args([
            "--http",
            "127.0.0.1:0",
            "--no-server-records",
            "--layout",
            "chunks",
            "--chunk-size",
        ])
        .arg(CHUNK.to_string())
        .arg("--db")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn devnode");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read banner");
    let url = line.split_whitespace().nth(3).expect("url").to_owned();
    (Proc(child), url)
}

/// Event ids of `$all`, and the resume position after each event (one page per event), as
/// paths: the host part changes with the port.
async fn all_ids(api: &Api) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut url =
        "/streams/%24all/00000000000000000000000000000000/forward/1?embed=rich".to_owned();
    loop {
        let feed: serde_json::Value = api.get(&url).await.json();
        let Some(e) = feed["entries"].as_array().unwrap().first().cloned() else {
            break;
        };
        let next = link(&feed, "previous").unwrap();
        let path = next.rsplit_once("/streams/").unwrap().1.to_owned();
        out.push((e["eventId"].as_str().unwrap().to_owned(), path));
        url = format!("{next}?embed=rich");
    }
    out
}

#[tokio::test]
async fn sigkill_and_restart_keep_events_and_positions() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn(dir.path());
    let api = Api::new(&url);
    for i in 0..120 {
        let body = json!([event(
            &new_id(),
            "t",
            json!({ "i": i, "pad": "y".repeat(400) })
        )]);
        let r = api.append("durable", Some(i - 1), &body).await;
        assert_eq!(r.status, 201);
    }
    let before = all_ids(&api).await;
    assert_eq!(before.len(), 120);
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let (_child, url) = spawn(dir.path());
    let api = Api::new(&url);
    assert_eq!(all_ids(&api).await, before);
    let r = api
        .append(
            "durable",
            Some(119),
            &json!([event(&new_id(), "t", json!({}))]),
        )
        .await;
    assert_eq!(r.status, 201);
}
