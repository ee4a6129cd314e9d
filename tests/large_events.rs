//! Large events over a slow link: the primary is reached through the in-repo proxy with a
//! bandwidth cap, so a full page of large events takes longer to arrive than the client's
//! request timeout. Replication must still complete (contract §3.5 pages; engine review 14).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use standby::bench::proxy::Proxy;
use standby::config::Ordering;
use standby::esdb::EventData;
use standby::pipeline::{self, Shared};
use standby::position::ExpectedVersion;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::{admin_client, clusters};

/// 100 JSON events of 200 KB: one page of 20 MB.
const EVENTS: usize = 100;
const EVENT_BYTES: usize = 200 * 1024;
/// 8 MB/s: the page takes about 2.5 s to arrive, longer than the 1 s request timeout.
const LINK_BYTES_PER_SECOND: u64 = 8_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_slower_to_download_than_the_request_timeout_still_replicates() {
    let mut c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    let filler = "x".repeat(EVENT_BYTES);
    for batch in 0..EVENTS / 5 {
        let events: Vec<EventData> = (0..5)
            .map(|i| {
                EventData::json(
                    Uuid::new_v4(),
                    "Large",
                    Bytes::from(format!(r#"{{"i":{},"fill":"{filler}"}}"#, batch * 5 + i)),
                )
            })
            .collect();
        primary
            .append_events(
                &format!("large-{}", batch % 4),
                &events,
                ExpectedVersion::Any,
            )
            .await
            .unwrap();
    }
    let head = standby::demo::primary_head(&primary).await.unwrap();

    let proxy = Proxy::start_capped(
        c.primary.addr(),
        Duration::ZERO,
        Some(LINK_BYTES_PER_SECOND),
    )
    .await
    .unwrap();
    c.config.primary.url = proxy.url();
    c.config.primary.request_timeout_secs = 1;

    let shared = Arc::new(Shared::default());
    let stop = CancellationToken::new();
    let run = {
        let (config, shared, stop) = (c.config.clone(), shared.clone(), stop.clone());
        tokio::spawn(async move { pipeline::run(&config, stop, shared).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = shared.snapshot();
        if p.positions
            .applied
            .is_some_and(|a| a.commit() >= head.commit())
        {
            break;
        }
        assert!(!run.is_finished(), "replication stopped: {p:?}");
        assert!(
            Instant::now() < deadline,
            "not caught up after 60 s (pages keep timing out?): {} retries, {p:?}",
            p.retries
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(shared.snapshot().events_written >= EVENTS as u64);
    stop.cancel();
    run.await.unwrap().expect("clean stop");
    proxy.stop().await;
}
