//! Promotion without split brain, end to end between two in-process dev nodes: the replication
//! user is not in `$admins`, `[secondary.admin]` sets the secondary up and promotes it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use standby::config::{Config, Ordering};
use standby::control::{self, Outcome, PromoteOptions, Role, CONTROL_STREAM};
use standby::demo::{DemoClusters, APPLICATION, REPLICATOR};
use standby::esdb::{self, Client, Embed, EventData, Lookup, PageSize, ReadOptions};
use standby::pipeline::{self, RunError, Shared, Summary};
use standby::position::{ExpectedVersion, Position, StreamRevision};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::{admin_client, client_as, clusters, verify, wait_applied_to_head, write_config_file};

type Run = JoinHandle<Result<Summary, RunError>>;

fn start_run(config: &Config) -> (Arc<Shared>, CancellationToken, Run) {
    let shared = Arc::new(Shared::default());
    let stop = CancellationToken::new();
    let run = {
        let (config, shared, stop) = (config.clone(), shared.clone(), stop.clone());
        tokio::spawn(async move { pipeline::run(&config, stop, shared).await })
    };
    (shared, stop, run)
}

/// Waits for `run` to stop by itself and returns how.
async fn run_outcome(run: Run) -> Result<Summary, RunError> {
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the replicator stops within 60 s")
        .unwrap()
}

async fn wait_events_written(shared: &Shared, at_least: u64, run: &Run) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while shared.snapshot().events_written < at_least {
        assert!(!run.is_finished(), "replication stopped early");
        assert!(std::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replicates a small workload to the head, stops `run` cleanly.
async fn replicated(c: &DemoClusters, events: u64) {
    let primary = admin_client(&c.config.primary.url);
    let (shared, stop, run) = start_run(&c.config);
    standby::demo::workload(
        &primary,
        "pre",
        events,
        20,
        3,
        &CancellationToken::new(),
        |_| {},
    )
    .await
    .unwrap();
    wait_applied_to_head(&shared, &primary, &run).await;
    stop.cancel();
    run.await.unwrap().expect("clean stop");
}

fn forced(reason: &str) -> PromoteOptions {
    PromoteOptions {
        force: true,
        reason: Some(reason.into()),
        ..PromoteOptions::default()
    }
}

/// Every record of the secondary's `$all` after `from`.
async fn records_after(secondary: &Client, from: Position) -> Vec<String> {
    let page = secondary
        .read_all_forward(from, PageSize::MAX, &ReadOptions::embed(Embed::None))
        .await
        .unwrap();
    page.entries
        .iter()
        .map(|e| format!("{}@{}", e.revision(), e.stream()))
        .collect()
}

async fn control_records(secondary: &Client) -> Vec<control::EpochRecord> {
    let Lookup::Found(page) = secondary
        .read_stream_forward(
            CONTROL_STREAM,
            StreamRevision::START,
            PageSize::MAX,
            &ReadOptions::embed(Embed::Body),
        )
        .await
        .unwrap()
    else {
        return Vec::new();
    };
    page.entries
        .iter()
        .map(|e| serde_json::from_slice(e.as_event().unwrap().data.as_ref().unwrap()).unwrap())
        .collect()
}

/// The acknowledged `(stream, event id)`s of a load and the error that ended it.
type Load = (Vec<(String, Uuid)>, Option<esdb::Error>);

/// A steady load on the primary: batches of 10 events over 50 streams every 5 ms (at most
/// 2,000 events/s), until `stop` fires or an append fails. Returns the acknowledged event ids and
/// the error that ended it.
fn steady_load(
    primary: &Client,
    prefix: &'static str,
    stop: CancellationToken,
) -> JoinHandle<Load> {
    let primary = primary.clone();
    tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for batch in 0u64.. {
            if stop.is_cancelled() || batch > 100_000 {
                return (acknowledged, None);
            }
            let stream = format!("{prefix}-{}", batch % 50);
            let events: Vec<EventData> = (0..10).flat_map(|i| one_event(batch * 10 + i)).collect();
            match primary
                .append_events(&stream, &events, ExpectedVersion::Any)
                .await
            {
                Ok(_) => acknowledged.extend(events.iter().map(|e| (stream.clone(), e.event_id))),
                Err(e) => return (acknowledged, Some(e)),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (acknowledged, None)
    })
}

fn one_event(i: u64) -> Vec<EventData> {
    vec![EventData::json(
        Uuid::new_v4(),
        "Written",
        Bytes::from(format!(r#"{{"i":{i}}}"#)),
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_under_load_fences_the_running_replicator() {
    let c = clusters(Ordering::Stream).await;
    let primary = admin_client(&c.config.primary.url);
    let secondary = admin_client(&c.config.secondary.url);
    let (shared, _stop, run) = start_run(&c.config);
    let load_stop = CancellationToken::new();
    let load = steady_load(&primary, "load", load_stop.clone());
    wait_events_written(&shared, 2_000, &run).await;
    assert!(!load.is_finished(), "the load must still run at promotion");

    let report = control::promote(&c.config, &forced("drill under load"))
        .await
        .expect("promote");
    let promoted_at = standby::demo::primary_head(&secondary).await.unwrap();
    assert_eq!(report.outcome, Outcome::Promoted);
    assert_eq!(report.record.role, Role::Primary);
    assert!(report.primary_reachable);

    // The replicator meets the fence and stops with exit code 3, naming the promotion.
    let err = run_outcome(run)
        .await
        .expect_err("the replicator must stop");
    assert_eq!(err.exit_code(), standby::exit::REFUSED, "{err}");
    assert!(err.to_string().contains("epoch 2"), "{err}");
    assert!(err.to_string().contains("drill under load"), "{err}");
    load_stop.cancel();
    let _ = load.await;

    // Nothing reached the secondary after promote returned: no replicated event, no checkpoint
    // copy, nothing.
    assert_eq!(
        records_after(&secondary, promoted_at).await,
        Vec::<String>::new()
    );
    // The replication user cannot even authenticate.
    let replicator = client_as(&c.config.secondary.url, REPLICATOR);
    assert!(matches!(
        replicator
            .append_events("fenced", &one_event(0), ExpectedVersion::Any)
            .await,
        Err(e) if e.is_access_denied()
    ));
    // The loss bound is what the primary holds beyond the secondary.
    assert!(report.record.data_loss.unwrap().events.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_promotions_write_one_epoch_and_open_the_secondary_to_applications() {
    let c = clusters(Ordering::Global).await;
    replicated(&c, 500).await;
    let secondary = admin_client(&c.config.secondary.url);
    let app = client_as(&c.config.secondary.url, APPLICATION);

    // A standby refuses application writes.
    let refused = app
        .append_events("app-stream", &one_event(1), ExpectedVersion::Any)
        .await;
    assert!(
        matches!(&refused, Err(e) if e.is_access_denied()),
        "{refused:?}"
    );

    let (first, second) = (forced("first"), forced("second"));
    let (a, b) = tokio::join!(
        control::promote(&c.config, &first),
        control::promote(&c.config, &second)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut outcomes = [a.outcome, b.outcome];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outcomes, [Outcome::AlreadyPromoted, Outcome::Promoted]);
    assert_eq!(a.record.epoch, b.record.epoch, "both report the same epoch");
    let records = control_records(&secondary).await;
    assert_eq!(
        records
            .iter()
            .map(|r| (r.epoch.get(), r.role))
            .collect::<Vec<_>>(),
        vec![(1, Role::Secondary), (2, Role::Primary)]
    );

    // The application writes now.
    app.append_events("app-stream", &one_event(2), ExpectedVersion::Any)
        .await
        .expect("a promoted secondary accepts application writes");

    // Re-running reports the promotion and changes nothing.
    let head = standby::demo::primary_head(&secondary).await.unwrap();
    let again = control::promote(&c.config, &forced("third")).await.unwrap();
    assert_eq!(again.outcome, Outcome::AlreadyPromoted);
    assert_eq!(again.record.epoch.get(), 2);
    assert_eq!(records_after(&secondary, head).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_refuses_while_the_primary_answers_and_a_dry_run_changes_nothing() {
    let c = clusters(Ordering::Global).await;
    replicated(&c, 300).await;
    let secondary = admin_client(&c.config.secondary.url);
    let head = standby::demo::primary_head(&secondary).await.unwrap();

    let err = control::promote(&c.config, &PromoteOptions::default())
        .await
        .expect_err("the primary answers");
    assert_eq!(err.exit_code(), standby::exit::REFUSED);
    assert!(err.to_string().contains("switchover"), "{err}");

    let dry = control::promote(
        &c.config,
        &PromoteOptions {
            dry_run: true,
            ..forced("dry")
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.outcome, Outcome::DryRun);
    assert_eq!(dry.record.data_loss.unwrap().events, Some(0));

    // --max-lag: refused when more would be lost.
    let primary = admin_client(&c.config.primary.url);
    for i in 0..3 {
        primary
            .append_events("late", &one_event(i), ExpectedVersion::Any)
            .await
            .unwrap();
    }
    let err = control::promote(
        &c.config,
        &PromoteOptions {
            max_lag: Some(2),
            ..PromoteOptions::default()
        },
    )
    .await
    .expect_err("3 events > --max-lag 2");
    assert!(err.to_string().contains("max-lag"), "{err}");

    assert_eq!(records_after(&secondary, head).await, Vec::<String>::new());
    let records = control_records(&secondary).await;
    assert_eq!(records.len(), 1, "still only epoch 1");
    let replicator = client_as(&c.config.secondary.url, REPLICATOR);
    replicator
        .read_stream_metadata("late")
        .await
        .expect("the replication user is still enabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_under_load_loses_nothing() {
    let c = clusters(Ordering::Stream).await;
    let (shared, _stop, run) = start_run(&c.config);
    // Applications write as a user outside $admins: admins bypass the fence (contract §8).
    let app = client_as(&c.config.primary.url, APPLICATION);
    let load = steady_load(&app, "switch", CancellationToken::new());
    wait_events_written(&shared, 2_000, &run).await;
    assert!(!load.is_finished(), "the load must still run at switchover");

    let report = match control::switchover(
        &c.config,
        Duration::from_secs(120),
        None,
        &CancellationToken::new(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => panic!(
            "switchover: {e}; replicator: {:?}",
            run.is_finished().then(|| shared.snapshot())
        ),
    };
    assert_eq!(report.outcome, Outcome::Promoted);
    assert_eq!(
        report.record.data_loss.as_ref().unwrap().events,
        Some(0),
        "{report}"
    );
    assert!(report.primary_settings_before.is_some());

    // The fenced primary refuses the load's next append; everything it acknowledged before is on
    // the secondary.
    let (acknowledged, error) = load.await.unwrap();
    assert!(
        matches!(&error, Some(e) if e.is_access_denied()),
        "{error:?}"
    );
    let secondary = admin_client(&c.config.secondary.url);
    let mut on_secondary = std::collections::HashSet::new();
    for stream in acknowledged
        .iter()
        .map(|(s, _)| s)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let mut from = StreamRevision::START;
        loop {
            let Lookup::Found(page) = secondary
                .read_stream_forward(
                    stream,
                    from,
                    PageSize::MAX,
                    &ReadOptions::embed(Embed::Rich),
                )
                .await
                .unwrap()
            else {
                break;
            };
            on_secondary.extend(
                page.entries
                    .iter()
                    .filter_map(|e| e.as_event().map(|e| e.event_id)),
            );
            match page.next {
                Some(next) if !page.entries.is_empty() => from = next,
                _ => break,
            }
        }
    }
    for (stream, id) in &acknowledged {
        assert!(
            on_secondary.contains(id),
            "acknowledged {id} of {stream} is missing"
        );
    }
    let err = run_outcome(run).await.expect_err("the replicator stops");
    assert_eq!(err.exit_code(), standby::exit::REFUSED, "{err}");
    let report = verify(&c.config).await;
    assert!(report.equal, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_promotion_reports_the_real_loss_and_divergence_exports_the_orphaned_tail() {
    let c = clusters(Ordering::Global).await;
    replicated(&c, 1_000).await;
    let primary = admin_client(&c.config.primary.url);
    // 37 events the secondary never sees: some in replicated streams, some in new ones.
    let mut orphaned = Vec::new();
    for i in 0..37u64 {
        let events = one_event(i);
        orphaned.push(events[0].event_id);
        let stream = if i % 2 == 0 {
            "pre-1".to_owned()
        } else {
            format!("orphan-{}", i % 5)
        };
        primary
            .append_events(&stream, &events, ExpectedVersion::Any)
            .await
            .unwrap();
    }

    let report = control::promote(&c.config, &forced("primary lost"))
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Promoted);
    let loss = report.record.data_loss.clone().unwrap();
    assert_eq!(loss.events, Some(37), "{report}");
    assert!(report.to_string().contains("37 events"), "{report}");

    // `run` against the promoted secondary: exit 3 with the promotion's details.
    let err = pipeline::run(&c.config, CancellationToken::new(), Arc::default())
        .await
        .expect_err("run must refuse a promoted secondary");
    assert_eq!(err.exit_code(), standby::exit::REFUSED);
    let text = err.to_string();
    assert!(
        text.contains("epoch 2") && text.contains("primary lost"),
        "{text}"
    );

    // Writes that reach the old primary afterwards are orphaned too.
    for i in 100..105u64 {
        let events = one_event(i);
        orphaned.push(events[0].event_id);
        primary
            .append_events("after-promotion", &events, ExpectedVersion::Any)
            .await
            .unwrap();
    }
    let out = c.dir.path().join("orphaned.jsonl");
    let export = control::divergence::export(&c.config, &out).await.unwrap();
    assert_eq!(export.events, 42);
    let text = std::fs::read_to_string(&out).unwrap();
    let exported: Vec<Uuid> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["data_encoding"], "json");
            v["event_id"].as_str().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(
        exported, orphaned,
        "exactly the orphaned events, in the primary's order"
    );
    // The binary drives the same export (exit 0), and a refusal is exit 3.
    let config = write_config_file(&c);
    let out2 = c.dir.path().join("again.jsonl");
    let divergence = tokio::process::Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["divergence", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out2)
        .output()
        .await
        .unwrap();
    assert!(divergence.status.success(), "{divergence:?}");
    assert!(String::from_utf8_lossy(&divergence.stdout).contains("exported 42 events"));
    assert_eq!(std::fs::read_to_string(&out2).unwrap(), text);
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("promoted at epoch 2"));
}

/// The export after applications wrote on the promoted secondary: orphaned events whose numbers
/// were reused there are still exported, a user link record is exported as the link (its own
/// `n@stream` data, not its target's), and an event hidden on the old primary says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn divergence_exports_orphans_whose_numbers_were_reused_links_as_links_and_marks_hidden_data()
{
    let c = clusters(Ordering::Global).await;
    replicated(&c, 1_000).await;
    let primary = admin_client(&c.config.primary.url);
    let mut orphaned = Vec::new();
    for i in 0..3u64 {
        let events = one_event(i);
        orphaned.push(events[0].event_id);
        primary
            .append_events("pre-1", &events, ExpectedVersion::Any)
            .await
            .unwrap();
    }
    let link = EventData::binary(Uuid::new_v4(), "$>", "0@pre-1");
    orphaned.push(link.event_id);
    primary
        .append_events("orphan-links", &[link], ExpectedVersion::Any)
        .await
        .unwrap();
    let hidden = one_event(50);
    orphaned.push(hidden[0].event_id);
    primary
        .append_events("orphan-hidden", &hidden, ExpectedVersion::Any)
        .await
        .unwrap();
    primary
        .delete_stream(
            "orphan-hidden",
            ExpectedVersion::Any,
            esdb::DeleteMode::Soft,
        )
        .await
        .unwrap();

    let report = control::promote(&c.config, &forced("primary lost"))
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Promoted);
    assert_eq!(report.record.data_loss.unwrap().events, Some(5));
    // An application writes on the promoted secondary: it reuses the number of the first orphan.
    let secondary = admin_client(&c.config.secondary.url);
    secondary
        .append_events("pre-1", &one_event(99), ExpectedVersion::Any)
        .await
        .unwrap();

    let out = c.dir.path().join("orphaned.jsonl");
    let export = control::divergence::export(&c.config, &out).await.unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exported: Vec<Uuid> = lines
        .iter()
        .map(|v| v["event_id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        exported, orphaned,
        "every orphaned event, reused numbers included, in the primary's order"
    );
    assert_eq!(export.events, 5);
    let link = &lines[3];
    assert_eq!(link["event_type"], "$>", "{link}");
    assert_eq!(
        (&link["data_encoding"], &link["data"]),
        (&"text".into(), &"0@pre-1".into()),
        "the link record itself, not its target: {link}"
    );
    let hidden = &lines[4];
    assert_eq!(hidden["data_encoding"], "unavailable", "{hidden}");
    assert!(hidden["data"].is_null(), "{hidden}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_primary_makes_the_old_primary_read_only_for_applications() {
    let c = clusters(Ordering::Global).await;
    replicated(&c, 200).await;
    let app_on_primary = client_as(&c.config.primary.url, APPLICATION);
    app_on_primary
        .append_events("app-before", &one_event(1), ExpectedVersion::Any)
        .await
        .expect("the primary takes application writes before promotion");

    let report = control::promote(
        &c.config,
        &PromoteOptions {
            fence_primary: true,
            ..forced("move away")
        },
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, Outcome::Promoted);
    assert_eq!(report.record.data_loss.as_ref().unwrap().events, Some(1));
    assert!(report.primary_settings_before.is_some(), "{report}");

    let refused = app_on_primary
        .append_events("app-after", &one_event(2), ExpectedVersion::Any)
        .await;
    assert!(
        matches!(&refused, Err(e) if e.is_access_denied()),
        "{refused:?}"
    );
    // Reads still work on the old primary, and the new primary takes the writes.
    app_on_primary
        .read_stream_metadata("app-before")
        .await
        .expect("applications keep reading the old primary");
    client_as(&c.config.secondary.url, APPLICATION)
        .append_events("app-after", &one_event(3), ExpectedVersion::Any)
        .await
        .expect("the new primary takes application writes");
}

/// Engine review §11: the epoch record is written, but its answer is lost (500 "Write timeout"
/// after the commit). The same record is sent again and answered as already written, so the
/// promotion completes and is reported as such, instead of "nothing was promoted" over a
/// secondary that holds the epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_whose_answer_was_lost_is_retried_as_the_same_record() {
    let c = clusters(Ordering::Global).await;
    replicated(&c, 100).await;
    let secondary = admin_client(&c.config.secondary.url);
    c.secondary
        .time_out_writes_after_commit(control::CONTROL_STREAM, 1);
    let report = control::promote(&c.config, &forced("answer lost"))
        .await
        .expect("the promotion completes");
    assert_eq!(report.outcome, Outcome::Promoted);
    let records = control_records(&secondary).await;
    let promotions = records.iter().filter(|r| r.role == Role::Primary).count();
    assert_eq!(promotions, 1, "one epoch record, not two: {records:?}");
}

/// Engine review §6: the old primary was unreachable at promotion, so it could not be fenced;
/// when it comes back, `promote --fence-primary` run again fences it (and says so), instead of
/// reporting "already promoted" and leaving it writable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_primary_can_be_run_again_for_an_old_primary_that_comes_back() {
    let mut c = clusters(Ordering::Global).await;
    replicated(&c, 100).await;
    let addr = c.primary.addr();
    let stopped = std::mem::replace(
        &mut c.primary,
        devnode::Node::start(devnode::NodeConfig::memory())
            .await
            .unwrap(),
    );
    stopped.stop().await;
    let options = PromoteOptions {
        fence_primary: true,
        ..forced("primary lost")
    };
    let report = control::promote(&c.config, &options).await.unwrap();
    assert_eq!(report.outcome, Outcome::Promoted);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("could not fence")),
        "{report}"
    );

    // The old primary comes back, writable.
    let restarted = devnode::Node::start(
        standby::demo::node_config(&c.dir.path().join("primary"), false).http(addr),
    )
    .await
    .unwrap();
    std::mem::replace(&mut c.primary, restarted).stop().await;
    let app_on_primary = client_as(&c.config.primary.url, APPLICATION);
    app_on_primary
        .append_events("comeback", &one_event(1), ExpectedVersion::Any)
        .await
        .expect("the old primary is writable again");

    let again = control::promote(&c.config, &options).await.unwrap();
    assert_eq!(again.outcome, Outcome::AlreadyPromoted);
    assert!(
        again
            .steps
            .iter()
            .any(|s| s.contains("fenced the old primary")),
        "{again}"
    );
    let refused = app_on_primary
        .append_events("comeback", &one_event(2), ExpectedVersion::Any)
        .await;
    assert!(
        matches!(&refused, Err(e) if e.is_access_denied()),
        "{refused:?}"
    );
}

/// Engine review §7: `switchover` interrupted while it waits for the drain — by SIGINT, then by
/// SIGKILL — and run again. SIGINT puts the primary's original `$settings` back at once; after
/// SIGKILL the fence stays, and the re-run (which cannot drain: `run` is down) removes it and
/// restores the original. Never a fenced primary reported as open, never the fence kept as the
/// "original".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_switchover_leaves_the_primary_with_its_original_settings() {
    let c = clusters(Ordering::Global).await;
    replicated(&c, 50).await;
    let primary = admin_client(&c.config.primary.url);
    let original = esdb::SystemSettings::new(serde_json::json!({
        "$userStreamAcl": {"$r": "$all", "$w": ["app", "$admins"], "$d": "$admins", "$mr": "$all", "$mw": "$admins"},
        "note": "kept by the operator"
    }));
    primary
        .write_settings(&original, Uuid::new_v4(), None, ExpectedVersion::Any)
        .await
        .unwrap();
    // A write the secondary does not have: with `run` down, the drain never completes.
    client_as(&c.config.primary.url, APPLICATION)
        .append_events("late", &one_event(1), ExpectedVersion::Any)
        .await
        .unwrap();
    let config_file = write_config_file(&c);
    let switchover = |timeout: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_standby"))
            .args(["switchover", "--timeout", timeout, "--config"])
            .arg(&config_file)
            .env("STANDBY_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let fenced = |settings: &Option<esdb::SystemSettings>| {
        settings
            .as_ref()
            .is_some_and(|s| s.as_json().get(control::promote::FENCED_FROM_KEY).is_some())
    };

    for signal in ["-INT", "-KILL"] {
        let child = switchover("120");
        let pid = child.id().unwrap().to_string();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !fenced(&primary.read_settings().await.unwrap()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the primary was never fenced"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sent = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("switchover ends after the signal")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if signal == "-INT" {
            assert_eq!(out.status.code(), Some(3), "{stderr}");
            assert!(stderr.contains("interrupted"), "{stderr}");
            assert_eq!(
                primary.read_settings().await.unwrap(),
                Some(original.clone())
            );
        } else {
            assert!(
                fenced(&primary.read_settings().await.unwrap()),
                "SIGKILL leaves the fence"
            );
        }
    }

    // The re-run after SIGKILL cannot drain either: it removes the fence it finds, restoring the
    // original recorded in it, and says so only because it read it back.
    let out = switchover("1").wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("fence was removed"), "{stderr}");
    assert_eq!(primary.read_settings().await.unwrap(), Some(original));
    client_as(&c.config.primary.url, APPLICATION)
        .append_events("late", &one_event(2), ExpectedVersion::Any)
        .await
        .expect("applications write to the primary again");
}

/// Engine review §7, the last step: `switchover` killed (SIGKILL) after the drain, while its
/// promotion waits for the fence proof, leaves the primary fenced and the secondary closed with
/// the replication user disabled, so `run` can drain no more. The re-run sees the secondary
/// already holds the fenced primary's tail and finishes the promotion: nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_killed_while_promoting_is_finished_by_a_rerun() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    let secondary = admin_client(&c.config.secondary.url);
    replicated(&c, 50).await;
    let (_shared, stop_run, run) = start_run(&c.config);
    // The credential cache keeps the replication user: the promotion's fence proof waits.
    c.secondary.hold_credential_poll(true);
    let settings_before = secondary.read_settings().await.unwrap();
    let config_file = write_config_file(&c);
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["switchover", "--timeout", "60", "--config"])
        .arg(&config_file)
        .env("STANDBY_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap().to_string();
    // The promotion waits for its fence proof once the replication user is disabled and the
    // secondary's $settings are closed.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Lookup::Found(user) = secondary.get_user(REPLICATOR.0).await.unwrap() {
            if user.disabled && secondary.read_settings().await.unwrap() != settings_before {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the switchover never began promoting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = child.wait_with_output().await;
    stop_run.cancel();
    let _ = run.await;
    assert!(control_records(&secondary)
        .await
        .iter()
        .all(|r| r.role != Role::Primary));
    c.secondary.hold_credential_poll(false);

    let report = control::switchover(
        &c.config,
        Duration::from_secs(10),
        Some("rerun".into()),
        &CancellationToken::new(),
    )
    .await
    .expect("the re-run finishes the switchover");
    assert_eq!(report.outcome, Outcome::Promoted, "{report}");
    assert!(
        report
            .steps
            .iter()
            .any(|s| s.starts_with("resumed an interrupted switchover")),
        "{report}"
    );
    assert!(
        report
            .steps
            .iter()
            .any(|s| s.contains("holds every event the primary acknowledged")),
        "{report}"
    );
    let verified = verify(&c.config).await;
    assert!(verified.equal, "nothing lost: {verified}");
    // The old primary stays fenced; the new one takes application writes.
    assert!(matches!(
        client_as(&c.config.primary.url, APPLICATION)
            .append_events("late", &one_event(3), ExpectedVersion::Any)
            .await,
        Err(e) if e.is_access_denied()
    ));
    client_as(&c.config.secondary.url, APPLICATION)
        .append_events("late", &one_event(4), ExpectedVersion::Any)
        .await
        .expect("the promoted secondary takes application writes");
    let _ = primary;
}

/// One request of a zombie replicator: when it was sent, and whether it was refused (401), written,
/// or failed otherwise.
#[derive(Debug)]
struct ZombieRequest {
    sent: std::time::Instant,
    event_id: Uuid,
    outcome: Result<(), String>,
    refused: bool,
}

const ZOMBIE_STREAM: &str = "zombie";

/// A replicator that was not stopped: appends with the replication user's credentials every
/// 10 ms to a user stream whose own `$acl` admits it (as an ACL copied from the primary would), so
/// only the disabled account, not the closed `$settings`, can stop it.
async fn zombie(c: &DemoClusters, stop: CancellationToken) -> JoinHandle<Vec<ZombieRequest>> {
    let admin = admin_client(&c.config.secondary.url);
    admin
        .write_stream_metadata(
            ZOMBIE_STREAM,
            Uuid::new_v4(),
            Bytes::from(format!(r#"{{"$acl":{{"$w":"{}"}}}}"#, REPLICATOR.0)),
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    let replicator = client_as(&c.config.secondary.url, REPLICATOR);
    tokio::spawn(async move {
        let mut sent = Vec::new();
        for i in 0..100_000u64 {
            if stop.is_cancelled() {
                break;
            }
            let events = one_event(i);
            let at = std::time::Instant::now();
            let result = replicator
                .append_events(ZOMBIE_STREAM, &events, ExpectedVersion::Any)
                .await;
            sent.push(ZombieRequest {
                sent: at,
                event_id: events[0].event_id,
                refused: matches!(&result, Err(e) if e.is_access_denied()),
                outcome: result.map(|_| ()).map_err(|e| e.to_string()),
            });
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sent
    })
}

/// Waits (bounded) until the zombie has written `n` events.
async fn zombie_writing(secondary: &Client, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Lookup::Found(page) = secondary
            .read_stream_forward(
                ZOMBIE_STREAM,
                StreamRevision::START,
                PageSize::MAX,
                &ReadOptions::embed(Embed::None),
            )
            .await
            .unwrap()
        {
            if page.entries.len() >= n {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the zombie never wrote"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every record of the secondary's `$all` as `(stream, event id)`, oldest first.
async fn all_records(secondary: &Client) -> Vec<(String, Option<Uuid>)> {
    let mut out = Vec::new();
    let mut from = Position::START;
    for _ in 0..10_000 {
        let page = secondary
            .read_all_forward(from, PageSize::MAX, &ReadOptions::embed(Embed::Rich))
            .await
            .unwrap();
        out.extend(page.entries.iter().map(|e| {
            (
                e.stream().to_owned(),
                e.as_event().map(|event| event.event_id),
            )
        }));
        match page.next {
            Some(next) if !page.entries.is_empty() && !page.is_end => from = next,
            _ => return out,
        }
    }
    panic!("$all did not end");
}

/// No zombie event lies after the promotion's epoch record in `$all`; returns how many lie
/// before it.
async fn assert_no_zombie_after_the_epoch(secondary: &Client) -> usize {
    let records = all_records(secondary).await;
    let epoch = records
        .iter()
        .rposition(|(stream, _)| stream == CONTROL_STREAM)
        .expect("an epoch record");
    let after: Vec<_> = records[epoch + 1..]
        .iter()
        .filter(|(stream, _)| stream == ZOMBIE_STREAM)
        .collect();
    assert!(after.is_empty(), "zombie events after the epoch: {after:?}");
    records[..epoch]
        .iter()
        .filter(|(stream, _)| stream == ZOMBIE_STREAM)
        .count()
}

/// Every zombie request sent after `promote` returned was refused with 401.
fn assert_refused_after(requests: &[ZombieRequest], returned: std::time::Instant) {
    let late: Vec<_> = requests.iter().filter(|r| r.sent > returned).collect();
    assert!(!late.is_empty(), "the zombie kept sending after promote");
    let accepted: Vec<_> = late.iter().filter(|r| !r.refused).collect();
    assert!(
        accepted.is_empty(),
        "requests sent after promote returned and not refused: {accepted:?}"
    );
}

async fn zombie_promotion(c: &DemoClusters) {
    let secondary = admin_client(&c.config.secondary.url);
    let stop = CancellationToken::new();
    let zombie = zombie(c, stop.clone()).await;
    zombie_writing(&secondary, 5).await;

    let report = control::promote(&c.config, &forced("zombie drill"))
        .await
        .expect("promote");
    let returned = std::time::Instant::now();
    assert_eq!(report.outcome, Outcome::Promoted);
    assert!(
        report
            .steps
            .iter()
            .any(|s| s == "fence proven: the replication user is refused on 1 node"),
        "{report}"
    );
    // Let the zombie send for a while after the return, then stop it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < returned + Duration::from_millis(300) {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let requests = zombie.await.unwrap();

    assert_refused_after(&requests, returned);
    let before = assert_no_zombie_after_the_epoch(&secondary).await;
    let written = requests.iter().filter(|r| r.outcome.is_ok()).count();
    assert!(before >= 5, "the zombie wrote before the promotion");
    assert_eq!(
        before, written,
        "every acknowledged zombie write lies before the epoch"
    );
    let on_log: std::collections::HashSet<Uuid> = all_records(&secondary)
        .await
        .into_iter()
        .filter_map(|(_, id)| id)
        .collect();
    for r in requests.iter().filter(|r| r.outcome.is_ok()) {
        assert!(on_log.contains(&r.event_id));
    }
}

/// A replicator that keeps writing with its cached credentials while `promote` runs: `promote`
/// returns only once the secondary refuses it, so nothing it sends lands after the epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_proves_the_fence_against_a_zombie_replicator() {
    let c = clusters(Ordering::Global).await;
    replicated(&c, 100).await;
    zombie_promotion(&c).await;
}

/// The same with the server's notification poll slowed to 10 s (as after read errors): promote
/// waits for it instead of returning with a leak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_waits_for_a_slow_credential_poll() {
    let c = clusters(Ordering::Global).await;
    replicated(&c, 100).await;
    c.secondary
        .set_credential_poll_interval(Duration::from_secs(10));
    // The poll due now runs; the next one 10 s later.
    tokio::time::timeout(Duration::from_secs(30), c.secondary.credential_poll())
        .await
        .expect("a credential poll");
    zombie_promotion(&c).await;
}

/// With the poll held the secondary never drops the cached replication user: promote exits 3
/// after `promotion.fence_timeout_secs` and promotes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_refuses_when_the_replication_user_stays_cached() {
    let mut c = clusters(Ordering::Global).await;
    replicated(&c, 100).await;
    c.config.promotion.fence_timeout_secs = 3;
    let secondary = admin_client(&c.config.secondary.url);
    let stop = CancellationToken::new();
    let zombie = zombie(&c, stop.clone()).await;
    zombie_writing(&secondary, 5).await;
    c.secondary.hold_credential_poll(true);

    let err = control::promote(&c.config, &forced("held"))
        .await
        .expect_err("the fence cannot be proven");
    assert_eq!(err.exit_code(), standby::exit::REFUSED, "{err}");
    let text = err.to_string();
    assert!(text.contains("Nothing was promoted"), "{text}");
    assert!(text.contains("restart"), "{text}");
    let records = control_records(&secondary).await;
    assert!(
        records.iter().all(|r| r.role != Role::Primary),
        "no epoch of role primary: {records:?}"
    );
    // The secondary stays closed to applications.
    let app = client_as(&c.config.secondary.url, APPLICATION);
    assert!(matches!(
        app.append_events("app-stream", &one_event(1), ExpectedVersion::Any)
            .await,
        Err(e) if e.is_access_denied()
    ));
    stop.cancel();
    let requests = zombie.await.unwrap();
    assert!(
        requests.iter().any(|r| r.outcome.is_ok()),
        "the zombie wrote while cached"
    );

    // Once the poll runs, the same command proves the fence and promotes.
    c.secondary.hold_credential_poll(false);
    let report = control::promote(&c.config, &forced("released"))
        .await
        .expect("promote");
    assert_eq!(report.outcome, Outcome::Promoted);
    assert_no_zombie_after_the_epoch(&secondary).await;
}

/// Both clusters in secure mode (TLS, v25 profile, the development CA), as v20–v26.1 servers
/// run with authentication.
async fn tls_clusters() -> DemoClusters {
    let certs = common::dev_certs();
    common::start_clusters_with(
        Ordering::Global,
        |config, _| {
            config
                .profile(devnode::Profile::V25)
                .dev_tls(certs)
                .unwrap()
        },
        Some(certs.ca_file()),
    )
    .await
    .unwrap()
}

/// The zombie drill over TLS with the default credential cache: nothing the zombie sends lands
/// after the epoch, and everything sent after `promote` returned is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_proves_the_fence_against_a_zombie_replicator_over_tls() {
    let c = tls_clusters().await;
    assert!(c.secondary.url().starts_with("https://"));
    replicated(&c, 100).await;
    zombie_promotion(&c).await;
}

/// An insecure secondary runs every request as `system`: no fence binds the replication user.
/// `promote` refuses it (exit 3, nothing promoted); with `--unfenced` it promotes and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_refuses_an_insecure_secondary_unless_told_it_is_unfenced() {
    let c = common::start_clusters_with(
        Ordering::Global,
        |config, secondary| {
            if secondary {
                config.profile(devnode::Profile::V25).insecure()
            } else {
                config
            }
        },
        None,
    )
    .await
    .unwrap();
    let mut c = c;
    // `run` refuses an insecure secondary unless told to replicate into it anyway.
    admin_client(&c.config.primary.url)
        .append_events("first", &one_event(0), ExpectedVersion::Any)
        .await
        .unwrap();
    let (_, _, run) = start_run(&c.config);
    let err = run_outcome(run).await.expect_err("refused");
    assert_eq!(err.exit_code(), standby::exit::REFUSED, "{err}");
    assert!(
        err.to_string().contains("promotion.allow_unfenced"),
        "{err}"
    );
    c.config.promotion.allow_unfenced = true;
    replicated(&c, 50).await;
    let secondary = admin_client(&c.config.secondary.url);

    let err = control::promote(&c.config, &forced("insecure"))
        .await
        .expect_err("an insecure secondary cannot be fenced");
    assert_eq!(err.exit_code(), standby::exit::REFUSED, "{err}");
    let text = err.to_string();
    assert!(text.contains("insecure"), "{text}");
    assert!(text.contains("--unfenced"), "{text}");
    assert!(text.contains("Nothing was promoted"), "{text}");
    assert!(control_records(&secondary)
        .await
        .iter()
        .all(|r| r.role != Role::Primary));

    let report = control::promote(
        &c.config,
        &PromoteOptions {
            unfenced: true,
            ..forced("insecure, replicator stopped")
        },
    )
    .await
    .expect("promote --unfenced");
    assert_eq!(report.outcome, Outcome::Promoted);
    assert_eq!(report.fence, control::Fence::Unfenced);
    let printed = report.to_string();
    assert!(printed.contains("UNFENCED"), "{printed}");
    assert!(
        !printed.contains("fence proven"),
        "an unfenced report claims no proof: {printed}"
    );
}

/// Accounts managed outside the secondary (LDAPS, OAuth): the replication user cannot be
/// disabled, so only ACLs keep it out, and a stream `$acl` copied from the primary that names it
/// lets it write after promotion (engine review §5). `promote` refuses without `--unfenced`;
/// with it, the report lists exactly the streams it can still write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_names_the_streams_whose_acl_still_admits_an_external_replication_user() {
    let mut c = common::start_clusters_with(
        Ordering::Global,
        |config, secondary| {
            if secondary {
                config.external_users()
            } else {
                config
            }
        },
        None,
    )
    .await
    .unwrap();
    c.config.promotion.write_roles = Some(vec![APPLICATION.0.to_owned(), "$admins".to_owned()]);
    let primary = admin_client(&c.config.primary.url);
    let acl = format!(r#"{{"$acl":{{"$w":["{}","apps"]}}}}"#, REPLICATOR.0);
    primary
        .write_stream_metadata(
            "orders-1",
            Uuid::new_v4(),
            Bytes::from(acl),
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    replicated(&c, 50).await;

    let err = control::promote(&c.config, &forced("external"))
        .await
        .expect_err("no account to disable");
    assert_eq!(err.exit_code(), standby::exit::REFUSED, "{err}");
    assert!(err.to_string().contains("--unfenced"), "{err}");

    let report = control::promote(
        &c.config,
        &PromoteOptions {
            unfenced: true,
            ..forced("external, replicator stopped")
        },
    )
    .await
    .expect("promote --unfenced");
    assert_eq!(report.outcome, Outcome::Promoted);
    assert_eq!(
        report.fence,
        control::Fence::AclOnly {
            admitting: vec!["orders-1".to_owned()]
        }
    );
    assert!(report.to_string().contains("PARTLY UNFENCED"), "{report}");
    // The report is the truth: the replication user still writes the listed stream, and
    // nothing else.
    let replicator = client_as(&c.config.secondary.url, REPLICATOR);
    replicator
        .append_events("orders-1", &one_event(1), ExpectedVersion::Any)
        .await
        .expect("the listed stream admits the replication user");
    assert!(matches!(
        replicator
            .append_events("other-stream", &one_event(2), ExpectedVersion::Any)
            .await,
        Err(e) if e.is_access_denied()
    ));
}

/// `run` refuses a replication user the fence cannot bind: the login `admin` (an admin by name
/// since v20) and a member of `$admins`. Nothing is written to the secondary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_an_admin_as_the_replication_user() {
    let c = common::start_clusters_with(
        Ordering::Global,
        |config, secondary| {
            if secondary {
                config.user(devnode::User::new(
                    "ops-replicator",
                    "changeit",
                    &["$admins"],
                ))
            } else {
                config
            }
        },
        None,
    )
    .await
    .unwrap();
    admin_client(&c.config.primary.url)
        .append_events("first", &one_event(0), ExpectedVersion::Any)
        .await
        .unwrap();
    for (login, why) in [
        ("admin", "an admin by name"),
        ("ops-replicator", "a member of $admins"),
    ] {
        let mut config = c.config.clone();
        config.secondary.username = Some(login.to_owned());
        config.secondary.password = Some(esdb::Password::new("changeit"));
        let (_, _, run) = start_run(&config);
        let err = run_outcome(run).await.expect_err("refused");
        assert_eq!(err.exit_code(), standby::exit::REFUSED, "{err}");
        let text = err.to_string();
        assert!(text.contains(why), "{text}");
        assert!(text.contains("outside $admins"), "{text}");
        assert!(
            control_records(&admin_client(&c.config.secondary.url))
                .await
                .is_empty(),
            "setup wrote nothing"
        );
    }
}

/// A promotion that stopped before its epoch leaves the secondary closed: `run` does not fence
/// it open for the replicator again behind the operator's back, and `run --takeover` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_leaves_a_secondary_closed_by_a_promotion_alone_unless_taking_over() {
    let c = clusters(Ordering::Global).await;
    replicated(&c, 20).await;
    let secondary = admin_client(&c.config.secondary.url);
    let before = secondary.read_settings().await.unwrap();
    // What promote's first steps write: $settings closed to everyone but $admins.
    let records = control_records(&secondary).await;
    let original = records[0]
        .settings_before
        .clone()
        .map(standby::esdb::SystemSettings::new);
    secondary
        .write_settings(
            &control::acl::closed(original.as_ref()),
            Uuid::new_v4(),
            None,
            ExpectedVersion::Any,
        )
        .await
        .unwrap();

    let (_, _, run) = start_run(&c.config);
    let err = run_outcome(run).await.expect_err("refused");
    assert_eq!(err.exit_code(), standby::exit::REFUSED, "{err}");
    assert!(err.to_string().contains("--takeover"), "{err}");

    let shared = Arc::new(Shared::default());
    let stop = CancellationToken::new();
    let run = {
        let (config, shared, stop) = (c.config.clone(), shared.clone(), stop.clone());
        tokio::spawn(async move {
            let options = pipeline::RunOptions { takeover: true };
            pipeline::run_with(&config, &options, stop, shared).await
        })
    };
    let primary = admin_client(&c.config.primary.url);
    primary
        .append_events("after-takeover", &one_event(7), ExpectedVersion::Any)
        .await
        .unwrap();
    wait_applied_to_head(&shared, &primary, &run).await;
    assert_eq!(secondary.read_settings().await.unwrap(), before);
    stop.cancel();
    run.await.unwrap().expect("clean stop");
}
