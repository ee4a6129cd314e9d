//! `standby verify-backup` as an operator runs it: a sound directory exits 0 at every level, each
//! kind of damage exits 6 with a line naming the damaged file, bad input exits 2.
//!
//! The directories are built by the `layout` crate's own test generator (shared by path, so the
//! two test suites check the same layouts): chunks written record by record, a merged scavenge,
//! an open chunk, checkpoints and an index with merged PTables.

#[path = "../layout/tests/common/mod.rs"]
mod fixture;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use fixture::{make_writable, standard, Fixture};
use layout::checkpoint::{self, CheckpointKind};
use layout::chunk::ChunkWriter;

const DAMAGED: i32 = 6;
const USAGE: i32 = 2;

fn verify_backup(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_standby"))
        .arg("verify-backup")
        .args(args)
        .env("STANDBY_LOG", "warn")
        .output()
        .unwrap()
}

fn run(f: &Fixture, level: &str) -> Output {
    verify_backup(&["--dir", f.db.to_str().unwrap(), "--level", level])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Exit 6, and an error line that names `file` and says what to do (the part in parentheses).
fn assert_damaged(o: &Output, file: &str) {
    let out = stdout(o);
    assert_eq!(o.status.code(), Some(DAMAGED), "{out}\n{}", stderr(o));
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("error:") && l.contains(file))
        .unwrap_or_else(|| panic!("no error line about {file}:\n{out}"));
    assert!(line.ends_with(')'), "no action in {line:?}");
    assert!(out.contains("DAMAGED"), "{out}");
}

fn flip(path: &Path, offset: u64) {
    make_writable(path);
    let mut b = fs::read(path).unwrap();
    b[offset as usize] ^= 0x10;
    fs::write(path, b).unwrap();
}

#[test]
fn a_sound_directory_passes_at_every_level() {
    let f = standard();
    for level in ["quick", "full", "deep"] {
        let o = run(&f, level);
        assert_eq!(o.status.code(), Some(0), "{level}: {}", stdout(&o));
        assert!(
            stdout(&o).contains("sound: no damage found"),
            "{}",
            stdout(&o)
        );
    }
    let o = verify_backup(&["--dir", f.db.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["sound"], true);
    assert_eq!(json["level"], "full");
    assert!(json["bytes_hashed"].as_u64().unwrap() > 0);
    assert_eq!(json["findings"].as_array().unwrap().len(), 0);
}

#[test]
fn the_deep_level_prints_the_index_decision() {
    let f = standard();
    let o = verify_backup(&["--dir", f.db.to_str().unwrap(), "--level", "deep", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["index_outcome"]["outcome"], "reused", "{json:#}");
    assert!(!json["predictions"].as_array().unwrap().is_empty());
}

#[test]
fn a_bit_flip_in_a_completed_chunk_exits_6_naming_the_chunk() {
    let f = standard();
    let chunk = &f.chunks[0];
    flip(chunk, fs::metadata(chunk).unwrap().len() / 2);
    // Only the MD5 sees damage in the middle of the records.
    assert_eq!(run(&f, "quick").status.code(), Some(0));
    assert_damaged(&run(&f, "full"), &file_name(chunk));
}

#[test]
fn a_bit_flip_in_a_ptable_exits_6_naming_it() {
    let f = standard();
    let table = &f.ptables[0];
    flip(table, 128 + 30);
    assert_damaged(&run(&f, "full"), &file_name(table));
}

#[test]
fn a_bit_flip_in_indexmap_exits_6_naming_it() {
    let f = standard();
    let map = f.index().join("indexmap");
    flip(&map, 40);
    assert_damaged(&run(&f, "full"), "index/indexmap");
}

#[test]
fn truncated_and_empty_checkpoints_exit_6_naming_them() {
    for (kind, len) in [(CheckpointKind::Writer, 0), (CheckpointKind::Chaser, 4)] {
        let f = standard();
        let p = kind.path(&f.db, &f.index());
        let mut b = fs::read(&p).unwrap();
        b.truncate(len);
        fs::write(&p, b).unwrap();
        assert_damaged(&run(&f, "quick"), kind.file_name());
    }
}

#[test]
fn a_chaser_ahead_of_the_writer_exits_6() {
    let f = standard();
    checkpoint::write(
        &CheckpointKind::Chaser.path(&f.db, &f.index()),
        f.writer + 100,
    )
    .unwrap();
    assert_damaged(&run(&f, "quick"), "chaser.chk");
}

#[test]
fn a_missing_middle_chunk_exits_6_naming_it() {
    let f = standard();
    let victim = &f.chunks[2];
    fs::remove_file(victim).unwrap();
    assert_damaged(&run(&f, "quick"), &file_name(victim));
}

#[test]
fn an_extra_chunk_past_the_writer_exits_6_naming_it() {
    let f = standard();
    let last = (f.writer / f.chunk_size as i64) as u32;
    let extra = ChunkWriter::create_new(&f.db, last + 2, f.chunk_size).unwrap();
    let name = file_name(extra.path());
    drop(extra);
    assert_damaged(&run(&f, "quick"), &name);
}

#[test]
fn json_findings_name_the_file_the_kind_and_the_action() {
    let f = standard();
    fs::remove_file(&f.chunks[2]).unwrap();
    let o = verify_backup(&["--dir", f.db.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(DAMAGED));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["sound"], false);
    let finding = &json["findings"][0];
    assert_eq!(finding["severity"], "error");
    assert_eq!(finding["kind"], "chunk_missing");
    assert_eq!(finding["file"], file_name(&f.chunks[2]));
    assert!(!finding["action"].as_str().unwrap().is_empty());
}

#[test]
fn a_missing_directory_or_a_file_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let o = verify_backup(&["--dir", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(USAGE));
    assert!(stderr(&o).contains("no such directory"), "{}", stderr(&o));
    assert!(stderr(&o).contains("nope"));

    let file = dir.path().join("writer.chk");
    fs::write(&file, [0u8; 8]).unwrap();
    let o = verify_backup(&["--dir", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(USAGE));
    assert!(stderr(&o).contains("is not a directory"), "{}", stderr(&o));

    let o = verify_backup(&[
        "--dir",
        dir.path().to_str().unwrap(),
        "--index",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(USAGE));
    assert!(stdout(&o).is_empty());
}

#[test]
fn a_repository_is_refused_as_not_available_yet() {
    let o = verify_backup(&["--repo", "/tmp/repo"]);
    assert_eq!(o.status.code(), Some(USAGE));
    assert!(stderr(&o).contains("not available yet"), "{}", stderr(&o));
}
