//! The one face of a node (`esdb::Client`) on both wires against a dev node: positions handed out
//! by either wire resume reads on either wire with nothing lost and nothing repeated.

mod common;

use standby::esdb::{Client, Embed, EventData, PageSize, ReadOptions, Wire};
use standby::position::{ExpectedVersion, Position};
use uuid::Uuid;

use common::{client_as, WIRES};

fn on(node: &devnode::Node, wire: Wire) -> Client {
    let address = match wire {
        Wire::Http => node.url(),
        Wire::Grpc => node.grpc_url(),
    };
    client_as(&address, ("admin", "changeit"))
}

async fn append(client: &Client, stream: &str, n: u64) -> Vec<Uuid> {
    let events: Vec<EventData> = (0..n)
        .map(|i| EventData::json(Uuid::new_v4(), "T", format!(r#"{{"i":{i}}}"#)))
        .collect();
    client
        .append_events(stream, &events, ExpectedVersion::Any)
        .await
        .unwrap();
    events.iter().map(|e| e.event_id).collect()
}

/// The user events of `$all` after `from`, read a page of `size` at a time through `client`.
async fn ids_after(client: &Client, mut from: Position, size: u16) -> Vec<Uuid> {
    let mut ids = Vec::new();
    let size = PageSize::new(size).unwrap();
    loop {
        let page = client
            .read_all_forward(from, size, &ReadOptions::embed(Embed::Rich))
            .await
            .unwrap();
        ids.extend(
            page.entries
                .iter()
                .filter_map(|e| e.as_event())
                .filter(|e| !e.stream.starts_with('$'))
                .map(|e| e.event_id),
        );
        match page.next {
            Some(next) if !page.is_end => from = next,
            _ => return ids,
        }
    }
}

#[tokio::test]
async fn the_head_of_either_wire_resumes_before_the_next_event() {
    let node = devnode::Node::start(devnode::NodeConfig::memory())
        .await
        .unwrap();
    for wire in WIRES {
        let client = on(&node, wire);
        append(&client, "before", 3).await;
        let head = client.head().await.unwrap();
        let written = append(&client, &format!("after-{wire}"), 2).await;
        for reader in WIRES {
            assert_eq!(
                ids_after(&on(&node, reader), head, 500).await,
                written,
                "head {head} from {wire}, read over {reader}"
            );
        }
    }
}

#[tokio::test]
async fn page_ends_of_either_wire_resume_on_the_other() {
    let node = devnode::Node::start(devnode::NodeConfig::memory())
        .await
        .unwrap();
    let writer = on(&node, Wire::Grpc);
    let mut all = Vec::new();
    for s in 0..5 {
        all.extend(append(&writer, &format!("s-{s}"), 3).await);
    }
    for first in WIRES {
        for second in WIRES {
            // Read 4 records over `first` from the start, then the rest over `second`.
            let page = on(&node, first)
                .read_all_forward(
                    Position::START,
                    PageSize::new(4).unwrap(),
                    &ReadOptions::embed(Embed::Rich),
                )
                .await
                .unwrap();
            let mut ids: Vec<Uuid> = page
                .entries
                .iter()
                .filter_map(|e| e.as_event())
                .filter(|e| !e.stream.starts_with('$'))
                .map(|e| e.event_id)
                .collect();
            ids.extend(ids_after(&on(&node, second), page.next.unwrap(), 3).await);
            assert_eq!(ids, all, "{first} then {second}");
        }
    }
}
