//! The verifier against generated layouts: sound ones give no findings at any level, and every
//! fault of the matrix is found and names the damaged file.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{build, make_writable, standard, Fixture, Spec};
use layout::checkpoint::{self, CheckpointKind};
use layout::chunk::{ChunkFile, ChunkName, ChunkWriter};
use layout::verify::{
    verify_dir, FindingKind, IndexOutcome, Level, Options, Report, Severity, TruncateSource,
};
use proptest::prelude::*;

fn verify(f: &Fixture, level: Level) -> Report {
    verify_dir(&f.db, &Options::new(level)).unwrap()
}

fn rel(f: &Fixture, p: &Path) -> PathBuf {
    p.strip_prefix(&f.db).unwrap().to_path_buf()
}

/// Asserts an error finding about `file` exists, and returns its kinds.
fn assert_error_about(report: &Report, file: &Path) -> Vec<FindingKind> {
    let kinds: Vec<_> = report
        .for_file(file)
        .filter(|x| x.severity == Severity::Error)
        .map(|x| x.kind)
        .collect();
    assert!(
        !kinds.is_empty(),
        "no error about {}; findings: {:#?}",
        file.display(),
        report.findings
    );
    assert!(!report.is_sound());
    kinds
}

fn flip(path: &Path, offset: u64, bit: u8) {
    make_writable(path);
    let mut b = fs::read(path).unwrap();
    b[offset as usize] ^= 1 << bit;
    fs::write(path, b).unwrap();
}

#[test]
fn the_standard_layout_is_sound_at_every_level() {
    let f = standard();
    for level in [Level::Quick, Level::Full, Level::Deep] {
        let r = verify(&f, level);
        assert!(r.findings.is_empty(), "{level:?}: {:#?}", r.findings);
    }
    let r = verify(&f, Level::Full);
    assert!(r.bytes_hashed > 0);
    assert!(r.chunks_checked >= 4);
    // The fixture really has what the matrix needs.
    assert!(f.chunks.len() >= 5);
    assert!(
        ChunkFile::open(&f.chunks[1])
            .unwrap()
            .header
            .chunk_end_number
            > 1
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Random valid layouts: random chunk sizes and events, scavenges with merges, old versions
    /// left or removed, the chaser anywhere, index merges. No findings at the full and deep levels.
    #[test]
    fn random_valid_layouts_have_no_findings(
        chunk_size in prop_oneof![Just(4096u32), Just(6000), Just(8192), Just(20000)],
        events in proptest::collection::vec(0usize..1500, 0..80),
        scavenges in proptest::collection::vec((0usize..8, 1usize..4, 1usize..4), 0..3),
        keep_old_versions: bool,
        chaser_pick: usize,
        ptables in proptest::collection::vec(1usize..40, 0..4),
        merge in 0usize..4,
    ) {
        let f = build(&Spec { chunk_size, events, scavenges, keep_old_versions, chaser_pick, ptables, merge });
        let r = verify(&f, Level::Deep);
        prop_assert!(r.findings.is_empty(), "{:#?}", r.findings);
        prop_assert!(matches!(r.index_outcome, Some(IndexOutcome::Reused { .. }) | Some(IndexOutcome::Built)), "{:?}", r.index_outcome);
    }
}

#[test]
fn single_bit_flips_in_completed_chunks_are_found() {
    let f = standard();
    let completed = &f.chunks[..f.chunks.len() - 1];
    for (i, path) in completed.iter().enumerate() {
        let len = fs::metadata(path).unwrap().len();
        // Header, data, padding, footer fields and the stored hash.
        for offset in [
            3,
            20,
            128 + 37 * i as u64,
            len / 2,
            len - 128,
            len - 120,
            len - 1,
        ] {
            let fx = standard();
            let p = fx.db.join(rel(&f, path));
            flip(&p, offset, (offset % 8) as u8);
            let r = verify(&fx, Level::Full);
            assert_error_about(&r, &rel(&fx, &p));
        }
    }
}

#[test]
fn single_bit_flips_in_ptables_and_indexmap_are_found() {
    let f = standard();
    assert!(!f.ptables.is_empty());
    for (i, p) in f.ptables.iter().enumerate() {
        let len = fs::metadata(p).unwrap().len();
        for offset in [1, 128 + 5 * i as u64, len - 130, len - 16, len - 1] {
            let fx = standard();
            let target = fx.ptables[i].clone();
            flip(&target, offset, 2);
            let r = verify(&fx, Level::Full);
            assert_error_about(&r, &rel(&fx, &target));
        }
    }
    let len = fs::metadata(f.index().join("indexmap")).unwrap().len();
    for offset in 0..len {
        let fx = standard();
        let im = fx.index().join("indexmap");
        flip(&im, offset, (offset % 7) as u8);
        let r = verify(&fx, Level::Full);
        assert_error_about(&r, Path::new("index/indexmap"));
    }
}

#[test]
fn truncated_and_empty_checkpoints_are_found() {
    for kind in [
        CheckpointKind::Writer,
        CheckpointKind::Chaser,
        CheckpointKind::Epoch,
    ] {
        for len in [0usize, 4, 9] {
            let f = standard();
            let p = kind.path(&f.db, &f.index());
            let mut b = fs::read(&p).unwrap();
            b.resize(len, 0);
            fs::write(&p, b).unwrap();
            let r = verify(&f, Level::Quick);
            let kinds = assert_error_about(&r, Path::new(kind.file_name()));
            assert!(
                kinds.contains(&FindingKind::CheckpointMalformed),
                "{kinds:?}"
            );
        }
    }
}

#[test]
fn chaser_or_epoch_ahead_of_writer_is_found() {
    for kind in [CheckpointKind::Chaser, CheckpointKind::Epoch] {
        let f = standard();
        checkpoint::write(&kind.path(&f.db, &f.index()), f.writer + 1).unwrap();
        let r = verify(&f, Level::Quick);
        let kinds = assert_error_about(&r, Path::new(kind.file_name()));
        assert!(kinds.contains(&FindingKind::CheckpointOrder));
    }
}

#[test]
fn a_missing_middle_chunk_is_found() {
    let f = standard();
    let victim = f.chunks[2].clone(); // a chunk after the merged one
    let name = ChunkName::parse(victim.file_name().unwrap().to_str().unwrap()).unwrap();
    fs::remove_file(&victim).unwrap();
    let r = verify(&f, Level::Quick);
    let kinds = assert_error_about(&r, Path::new(&ChunkName::new(name.number, 0).to_string()));
    assert_eq!(kinds, vec![FindingKind::ChunkMissing]);
}

#[test]
fn a_chunk_past_the_writer_is_found_and_blocks_truncation() {
    let f = standard();
    let last = (f.writer / f.chunk_size as i64) as u32;
    let extra = ChunkWriter::create_new(&f.db, last + 1, f.chunk_size).unwrap();
    let extra = extra.path().to_path_buf();
    let r = verify(&f, Level::Quick);
    let kinds = assert_error_about(&r, &rel(&f, &extra));
    assert_eq!(kinds, vec![FindingKind::ChunkBeyondWriter]);

    let mut o = Options::new(Level::Deep);
    o.truncate_source = TruncateSource::Chaser;
    let r = verify_dir(&f.db, &o).unwrap();
    assert!(r.truncation.unwrap().refused.unwrap().contains("excessive"));
}

#[test]
fn overlapping_scavenged_ranges_are_found() {
    let f = standard();
    // chunks[1] is the merged 1..2; a later scavenge output claiming 2..3 overlaps it.
    let w = ChunkWriter::create_scavenged(&f.db, 2, 3, f.chunk_size).unwrap();
    let overlap = w.complete_scavenged(5).unwrap().path;
    let r = verify(&f, Level::Quick);
    let kinds = assert_error_about(&r, &rel(&f, &overlap));
    assert!(kinds.contains(&FindingKind::ChunkOverlap), "{kinds:?}");
}

#[test]
fn an_index_copied_after_the_checkpoints_is_found() {
    let f = standard();
    checkpoint::write(&CheckpointKind::Chaser.path(&f.db, &f.index()), 1).unwrap();
    let r = verify(&f, Level::Deep);
    let kinds = assert_error_about(&r, Path::new("index/indexmap"));
    assert!(kinds.contains(&FindingKind::IndexMapAhead));
    assert!(matches!(
        r.index_outcome,
        Some(IndexOutcome::Rebuilt { .. })
    ));
}

#[test]
fn a_listed_ptable_that_is_missing_is_found() {
    let f = standard();
    fs::remove_file(&f.ptables[0]).unwrap();
    let r = verify(&f, Level::Quick);
    let kinds = assert_error_about(&r, &rel(&f, &f.ptables[0]));
    assert_eq!(kinds, vec![FindingKind::PTableMissing]);
}

#[test]
fn a_historical_open_chunk_is_found() {
    // A chunk before the writer's that was never completed: the server refuses to open the db.
    let f = standard();
    let last = (f.writer / f.chunk_size as i64) as u32;
    checkpoint::write(
        &CheckpointKind::Writer.path(&f.db, &f.index()),
        (last as i64 + 1) * f.chunk_size as i64 + 10,
    )
    .unwrap();
    let r = verify(&f, Level::Quick);
    let kinds = assert_error_about(&r, &rel(&f, f.chunks.last().unwrap()));
    assert!(kinds.contains(&FindingKind::ChunkNotCompleted), "{kinds:?}");
}

#[test]
fn deep_walks_find_damage_in_the_open_chunk_and_a_chaser_off_a_record_boundary() {
    let f = standard();
    // Zeros where the open chunk should hold records up to the writer.
    let open = f.chunks.last().unwrap();
    make_writable(open);
    let mut b = fs::read(open).unwrap();
    b[128..136].fill(0);
    fs::write(open, b).unwrap();
    assert!(
        verify(&f, Level::Full).findings.is_empty(),
        "no checksum covers the open chunk"
    );
    let r = verify(&f, Level::Deep);
    let kinds = assert_error_about(&r, &rel(&f, open));
    assert_eq!(kinds, vec![FindingKind::ChunkRecords]);

    let f = standard();
    checkpoint::write(
        &CheckpointKind::Chaser.path(&f.db, &f.index()),
        f.chaser + 3,
    )
    .unwrap();
    let r = verify(&f, Level::Deep);
    assert!(
        r.findings
            .iter()
            .any(|x| x.kind == FindingKind::ChunkRecords),
        "{:#?}",
        r.findings
    );
}

#[test]
fn deep_predicts_the_restore_truncation_and_the_index_decision() {
    let f = standard();
    let mut o = Options::new(Level::Deep);
    o.truncate_source = TruncateSource::Chaser;
    let r = verify_dir(&f.db, &o).unwrap();
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    let plan = r.truncation.clone().unwrap();
    assert_eq!(plan.refused, None);
    assert_eq!(plan.requested, f.chaser);
    let chaser_chunk = (f.chaser / f.chunk_size as i64) as u32;
    // Every chunk after the chaser's is deleted, largest first; the chaser's is zero-filled.
    assert!(plan.deleted.iter().all(|p| ChunkName::parse(
        p.file_name().unwrap().to_str().unwrap()
    )
    .unwrap()
    .number
        > chaser_chunk));
    assert!(plan.deleted.windows(2).all(|w| w[0] > w[1]));
    assert!(plan.zero_filled.is_some() || f.chaser % f.chunk_size as i64 == 0);
    assert!(matches!(r.index_outcome, Some(IndexOutcome::Reused { to, .. }) if to == f.chaser));
    assert!(r
        .predictions
        .iter()
        .any(|p| p.action.contains("exits with code 0")));

    // A tight MaxTruncation refuses it.
    o.max_truncation = Some(1);
    let r = verify_dir(&f.db, &o).unwrap();
    assert!(r
        .truncation
        .unwrap()
        .refused
        .unwrap()
        .contains("MaxTruncation"));
}

#[test]
fn truncation_into_a_scavenged_chunk_moves_to_its_start() {
    let f = standard();
    let merged = ChunkFile::open(&f.chunks[1]).unwrap().header;
    let inside = merged.start_position() + 100;
    checkpoint::write(&CheckpointKind::Truncate.path(&f.db, &f.index()), inside).unwrap();
    let mut o = Options::new(Level::Deep);
    o.max_truncation = None;
    let r = verify_dir(&f.db, &o).unwrap();
    assert!(r
        .findings
        .iter()
        .all(|x| x.kind == FindingKind::TruncatePending));
    let plan = r.truncation.unwrap();
    assert_eq!(plan.effective, merged.start_position());
    assert!(plan
        .deleted
        .iter()
        .any(|p| p.ends_with(f.chunks[1].file_name().unwrap())));
    assert!(plan.epoch_reset == (0 >= plan.effective));
}
