//! Replication between nodes that run the system projections, as production nodes do
//! (`--run-projections system --start-standard-projections`, docs/devnode.md "System
//! projections"): the primary's `$all` is full of link events in `$`-streams written behind the
//! log, and the secondary writes its own links for what the replicator applies. Every user event
//! is copied exactly once, no projection record is copied, and verify reports the two sides equal:
//! the secondary's own links are not divergence.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use standby::config::Ordering;
use standby::pipeline::{self, Shared};
use standby::position::Position;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::{admin_client, collect, verify, wait_applied_to_head};

/// Every record of a node's `$all` as (stream, event type, data, event id), links unresolved,
/// read from its store in-process (AtomPub does not embed the data of non-JSON events).
fn all_records(node: &devnode::Node) -> Vec<(String, String, String, Uuid)> {
    let slice = node
        .store()
        .read_all_forward(devnode::store::TfPos::new(0, 0), usize::MAX, false);
    slice
        .events
        .iter()
        .map(|e| {
            let r = e.original();
            (
                r.stream.to_string(),
                r.event_type.to_string(),
                String::from_utf8_lossy(&r.data).into_owned(),
                r.event_id,
            )
        })
        .collect()
}

/// Link targets of the projection streams `$ce-<prefix>` and `$et-OrderPlaced` of one side.
type Records = [(String, String, String, Uuid)];

fn links(records: &Records, prefix: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (stream, ty, data, _) in records {
        if ty == "$>" && (stream == &format!("$ce-{prefix}") || stream == "$et-OrderPlaced") {
            out.entry(stream.clone()).or_default().push(data.clone());
        }
    }
    out
}

async fn replication_between_nodes_running_system_projections(ordering: Ordering) {
    let c = common::start_clusters_with(ordering, |config, _| config.system_projections(), None)
        .await
        .unwrap();
    let primary = admin_client(&c.primary.url());
    let secondary = admin_client(&c.secondary.url());
    let no_cancel = CancellationToken::new();
    standby::demo::workload(&primary, "early", 3_000, 60, 5, &no_cancel, |_| {})
        .await
        .unwrap();
    let shared = Arc::new(Shared::default());
    let stop = CancellationToken::new();
    let run = {
        let (config, shared, stop) = (c.config.clone(), shared.clone(), stop.clone());
        tokio::spawn(async move { pipeline::run(&config, stop, shared).await })
    };
    let live = standby::demo::workload(&primary, "live", 3_000, 60, 7, &no_cancel, |_| {})
        .await
        .unwrap();
    assert!(
        live.links > 0 && live.soft_deletes > 0 && live.hard_deletes > 0,
        "{live:?}"
    );
    // The primary's projections write behind the log: replicate up to a head that holds all of
    // their links, so the replicator has read past every projection record.
    c.primary.projections_caught_up().await;
    wait_applied_to_head(&shared, &primary, &run).await;
    stop.cancel();
    run.await.unwrap().expect("replication stops cleanly");
    c.secondary.projections_caught_up().await;

    // Every user event exactly once on the secondary.
    let (mut on_primary, mut on_secondary) = (Vec::new(), Vec::new());
    collect(&primary, Position::START, None, &mut on_primary).await;
    collect(&secondary, Position::START, None, &mut on_secondary).await;
    let distinct: HashSet<Uuid> = on_secondary.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        on_secondary.len(),
        "a user event was copied twice"
    );
    let mut a = on_primary.clone();
    let mut b = on_secondary.clone();
    a.sort();
    b.sort();
    assert_eq!(
        a.len(),
        b.len(),
        "user events: primary {} secondary {}",
        a.len(),
        b.len()
    );
    assert!(
        a == b,
        "the secondary holds other user events than the primary"
    );

    // No projection record crossed: none of the primary's `$`-stream records is on the secondary.
    let primary_all = all_records(&c.primary);
    let secondary_all = all_records(&c.secondary);
    let secondary_ids: HashSet<Uuid> = secondary_all.iter().map(|r| r.3).collect();
    let copied: Vec<_> = primary_all
        .iter()
        .filter(|r| r.0.starts_with("$ce-") || r.0.starts_with("$et-") || r.0 == "$streams")
        .filter(|r| secondary_ids.contains(&r.3))
        .collect();
    assert!(copied.is_empty(), "projection records copied: {copied:?}");

    // The secondary's own projections indexed what was applied, as the primary's did: the same
    // link targets (event numbers are kept) in the same streams.
    for prefix in ["early", "live"] {
        let p = links(&primary_all, prefix);
        let s = links(&secondary_all, prefix);
        assert!(
            !p.is_empty() && p.values().all(|v| !v.is_empty()),
            "{prefix}: {p:?}"
        );
        for (stream, targets) in &p {
            let mut want = targets.clone();
            let mut got = s.get(stream).cloned().unwrap_or_default();
            want.sort();
            got.sort();
            assert_eq!(want, got, "{stream}: the secondary's links differ");
        }
    }

    // And verify, which reads user streams only, reports equal.
    let report = verify(&c.config).await;
    assert!(report.equal, "{ordering:?}: {report}");
    assert!(report.events_compared > 1_000, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_projections_on_both_sides_in_global_order() {
    replication_between_nodes_running_system_projections(Ordering::Global).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_projections_on_both_sides_in_stream_order() {
    replication_between_nodes_running_system_projections(Ordering::Stream).await;
}
