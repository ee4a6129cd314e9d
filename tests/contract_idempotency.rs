//! The idempotency rules that make replication exactly-once (contract §5.5), through our client
//! against an on-disk dev node, across restarts:
//!
//! * a replayed append with an explicit expected version answers 201 with the original location
//!   and writes nothing, before and after a restart (the server checks the stream index);
//! * other event ids at that version answer 400 Wrong expected EventNumber with the current
//!   version;
//! * a replay with expected version Any is deduplicated only while the node's in-memory id cache
//!   holds the ids: after a restart it writes duplicates, as the real server does. This is why the
//!   replicator always appends with an exact expected version.

mod common;

use devnode::{Node, NodeConfig, Profile};
use uuid::Uuid;

use standby::esdb::http::Client;
use standby::esdb::{Credentials, Embed, Error, EventData, Lookup, PageSize, ReadOptions};
use standby::position::{CurrentVersion, ExpectedVersion, StreamRevision};

fn client(node: &Node) -> Client {
    let config =
        common::client_config(node).with_credentials(Credentials::new("admin", "changeit"));
    Client::new(config).unwrap()
}

fn events(n: usize) -> Vec<EventData> {
    (0..n)
        .map(|i| EventData::json(Uuid::new_v4(), "OrderPlaced", format!(r#"{{"n":{i}}}"#)))
        .collect()
}

fn rev(n: u64) -> StreamRevision {
    StreamRevision::new(n).unwrap()
}

/// The event ids of `stream`, in stream order.
async fn ids(client: &Client, stream: &str) -> Vec<Uuid> {
    let page = client
        .read_stream_forward(
            stream,
            StreamRevision::START,
            PageSize::new(100).unwrap(),
            &ReadOptions::embed(Embed::Rich),
        )
        .await
        .unwrap();
    match page {
        Lookup::Found(page) => page
            .entries
            .iter()
            .map(|e| e.as_event().expect("rich entries").event_id)
            .collect(),
        other => panic!("stream {stream}: {other:?}"),
    }
}

async fn restart(node: Node, dir: &std::path::Path, profile: Profile) -> Node {
    let addr = node.addr();
    node.stop().await;
    Node::start(common::secure(
        NodeConfig::on_disk(dir).profile(profile).http(addr),
    ))
    .await
    .expect("dev node restarts on the same directory")
}

#[tokio::test]
async fn strong_idempotency_survives_restarts_and_weak_does_not() {
    for profile in [Profile::V5, Profile::V25] {
        let dir = tempfile::tempdir().unwrap();
        let mut node = Node::start(common::secure(
            NodeConfig::on_disk(dir.path()).profile(profile),
        ))
        .await
        .unwrap();
        let c = client(&node);

        // Three events at expected version NoStream (event 0 is written with N = −1).
        let batch = events(3);
        let first = c
            .append_events("order-1", &batch, ExpectedVersion::NoStream)
            .await
            .unwrap();
        assert_eq!(first.first, Some(rev(0)));
        let written = ids(&c, "order-1").await;
        assert_eq!(
            written,
            batch.iter().map(|e| e.event_id).collect::<Vec<_>>()
        );

        // Replay with the same expected version: 201, original location, nothing written.
        let replay = c
            .append_events("order-1", &batch, ExpectedVersion::NoStream)
            .await
            .expect("a replay is an idempotent success");
        assert_eq!(replay.first, Some(rev(0)), "{profile:?}");
        assert_eq!(
            ids(&c, "order-1").await,
            written,
            "{profile:?}: replay wrote nothing"
        );

        // A partial replay of the tail (events 1 and 2 at expected version 0) is also a no-op.
        let tail = c
            .append_events("order-1", &batch[1..], ExpectedVersion::Exact(rev(0)))
            .await
            .unwrap();
        assert_eq!(tail.first, Some(rev(1)));
        assert_eq!(ids(&c, "order-1").await, written);

        // Other ids at that version: 400 with the current version (2).
        match c
            .append_events("order-1", &events(1), ExpectedVersion::NoStream)
            .await
        {
            Err(Error::WrongExpectedVersion { current, .. }) => {
                assert_eq!(
                    current,
                    Some(CurrentVersion::Revision(rev(2))),
                    "{profile:?}"
                )
            }
            other => panic!("{profile:?}: expected WrongExpectedVersion, got {other:?}"),
        }

        // Weak (Any) replay while the id cache holds the ids: deduplicated.
        let any_batch = events(2);
        c.append_events("order-2", &any_batch, ExpectedVersion::Any)
            .await
            .unwrap();
        c.append_events("order-2", &any_batch, ExpectedVersion::Any)
            .await
            .unwrap();
        assert_eq!(
            ids(&c, "order-2").await.len(),
            2,
            "{profile:?}: cache dedups"
        );

        // Restart: the stream index survives, the id cache does not.
        node = restart(node, dir.path(), profile).await;
        let c = client(&node);
        assert_eq!(
            ids(&c, "order-1").await,
            written,
            "events survive the restart"
        );

        let replay = c
            .append_events("order-1", &batch, ExpectedVersion::NoStream)
            .await
            .expect("strong replay after restart");
        assert_eq!(replay.first, Some(rev(0)));
        assert_eq!(
            ids(&c, "order-1").await,
            written,
            "{profile:?}: strong replay after restart wrote nothing"
        );

        match c
            .append_events("order-1", &events(1), ExpectedVersion::Exact(rev(1)))
            .await
        {
            Err(Error::WrongExpectedVersion { current, .. }) => {
                assert_eq!(current, Some(CurrentVersion::Revision(rev(2))))
            }
            other => panic!("{profile:?}: expected WrongExpectedVersion, got {other:?}"),
        }

        c.append_events("order-2", &any_batch, ExpectedVersion::Any)
            .await
            .expect("an Any append after restart is accepted");
        let after = ids(&c, "order-2").await;
        assert_eq!(
            after.len(),
            4,
            "{profile:?}: a replay with Any after a restart writes duplicates, as the real server does"
        );
        assert_eq!(after[..2], after[2..], "the duplicates carry the same ids");
        node.stop().await;
    }
}

/// Clearing the id cache (what a restart or a leader change does) has the same effect as a
/// restart for weak idempotency and none for strong idempotency.
#[tokio::test]
async fn id_cache_loss_only_affects_weak_idempotency() {
    let node = Node::start(NodeConfig::memory()).await.unwrap();
    let c = client(&node);
    let batch = events(2);
    c.append_events("s", &batch, ExpectedVersion::Any)
        .await
        .unwrap();
    node.clear_idempotency_cache();
    c.append_events("s", &batch, ExpectedVersion::NoStream)
        .await
        .unwrap();
    assert_eq!(
        ids(&c, "s").await.len(),
        2,
        "strong replay after cache loss wrote nothing"
    );
    c.append_events("s", &batch, ExpectedVersion::Any)
        .await
        .unwrap();
    assert_eq!(
        ids(&c, "s").await.len(),
        4,
        "weak replay after cache loss duplicates"
    );
    node.stop().await;
}
