//! Crash safety of the real binary: `standby run` is killed with SIGKILL at 20 moments of a
//! 100k-event replication while the primary takes writes, and restarted each time (alternating
//! both orderings). The workload is dense in what a replay can get wrong: soft deletes, metadata
//! writes that undelete, appends that recreate, tombstones and capped (`$maxCount`) streams.
//! After each kill the persisted checkpoint is never ahead of what the secondary holds; at the
//! end both sides are equal and no event was applied twice.

mod common;

use std::collections::HashSet;
use std::process::Stdio;

use standby::checkpoint::CheckpointStore;
use standby::config::Ordering;
use standby::position::Position;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::{admin_client, clusters, collect, verify, write_config_file};

const EVENTS: u64 = 100_000;
const KILLS: u32 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_twenty_moments_loses_and_duplicates_nothing() {
    let c = clusters(Ordering::Global).await;
    let config_path = write_config_file(&c);
    let primary = admin_client(&c.config.primary.url);
    let secondary = admin_client(&c.config.secondary.url);
    let writes = {
        let primary = primary.clone();
        tokio::spawn(async move {
            standby::demo::workload_with(
                &primary,
                "crash",
                EVENTS,
                500,
                99,
                standby::demo::Mix::CHURN,
                &CancellationToken::new(),
                |_| {},
            )
            .await
        })
    };
    let spawn = |ordering: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_standby"))
            .args(["run", "--config"])
            .arg(&config_path)
            .env("STANDBY_REPLICATION_ORDERING", ordering)
            .env("STANDBY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("standby starts")
    };

    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut primary_ids = Vec::new();
    let mut primary_at = Position::START;
    let mut secondary_ids = Vec::new();
    let mut secondary_at = Position::START;
    let mut last_checkpoint = Position::START;
    for kill in 0..KILLS {
        let mut child = spawn(if kill % 2 == 0 { "global" } else { "stream" });
        // Kill once the secondary has taken a random number of new bytes of log since the start.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let start = standby::demo::primary_head(&secondary).await.unwrap();
        let target = start.commit() + 1 + rng % 400_000;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("standby exited on its own ({status}) before kill {kill}");
            }
            let head = standby::demo::primary_head(&secondary).await.unwrap();
            if head.commit() >= target || writes.is_finished() && head.commit() > start.commit() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();

        // The persisted checkpoint never runs ahead of the secondary.
        let (_, cp) = CheckpointStore::open(&c.config.checkpoint.path)
            .expect("the checkpoint survives SIGKILL");
        let position = cp.map_or(Position::START, |cp| cp.position);
        assert!(
            position >= last_checkpoint,
            "the checkpoint never moves back"
        );
        last_checkpoint = position;
        primary_at = collect(&primary, primary_at, Some(position), &mut primary_ids).await;
        secondary_at = collect(&secondary, secondary_at, None, &mut secondary_ids).await;
        let held: HashSet<Uuid> = secondary_ids.iter().copied().collect();
        let missing = primary_ids.iter().filter(|id| !held.contains(id)).count();
        assert_eq!(missing, 0, "kill {kill}: {missing} events before the checkpoint {position} are not on the secondary");
    }
    let stats = writes.await.unwrap().expect("the workload completes");
    assert!(
        stats.soft_deletes > 1000
            && stats.undeletes > 500
            && stats.recreations > 500
            && stats.hard_deletes >= 20
            && stats.capped > 500,
        "a dense workload: {stats:?}"
    );

    // A last run catches up and stops cleanly on SIGTERM.
    let mut child = spawn("global");
    let head = standby::demo::primary_head(&primary).await.unwrap();
    loop {
        // `read`, not `open`: opening the store would remove the live replicator's temporary file.
        let cp = CheckpointStore::read(&c.config.checkpoint.path).unwrap();
        if cp.is_some_and(|cp| cp.position.commit() >= head.commit()) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "standby exited before catching up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pid = child.id().unwrap();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");

    let report = verify(&c.config).await;
    assert!(report.equal, "{report}");
    let mut all_primary = Vec::new();
    collect(&primary, Position::START, None, &mut all_primary).await;
    let mut all_secondary = Vec::new();
    collect(&secondary, Position::START, None, &mut all_secondary).await;
    let unique: HashSet<Uuid> = all_secondary.iter().copied().collect();
    assert_eq!(
        unique.len(),
        all_secondary.len(),
        "no event was applied twice"
    );
    assert_eq!(
        all_secondary.len(),
        all_primary.len(),
        "every user event is on the secondary exactly once"
    );
    assert!(all_primary.len() as u64 >= stats.events);
}
