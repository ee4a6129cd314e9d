//! Node-wide faults and the records a real node writes on its own (research of the server's
//! `AuthenticationMiddleware`, `EpochManager`, `UserManagementService`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use devnode::{Node, NodeConfig, Storage};
use serde_json::json;

/// A node that is not ready answers 503 with `Retry-After` over HTTP and UNAVAILABLE over gRPC,
/// then serves again by itself.
#[tokio::test]
async fn a_node_that_is_not_ready_answers_503_then_recovers() {
    let node = Node::start(NodeConfig::memory()).await.unwrap();
    let api = Api::new(&node.url()).as_user("admin", "changeit");
    let grpc = common::grpc::Grpc::connect(&node).await;
    node.not_ready_for(Duration::from_millis(500));

    let r = api.get("/streams/$all/head/backward/1").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after").as_deref(), Some("5"));
    let body = json!([event(&new_id(), "t", json!({}))]);
    assert_eq!(
        api.append("s", None, &body).await.status,
        503,
        "nothing written"
    );
    let status = grpc
        .append(
            "s",
            proto::event_store::client::streams::append_req::options::ExpectedStreamRevision::Any(
                (),
            ),
            Vec::new(),
        )
        .await
        .expect_err("not ready");
    assert_eq!(status.code(), tonic::Code::Unavailable);

    // Bounded: the fault ends by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = api.get("/streams/$all/head/backward/1").await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(Instant::now() < deadline, "still not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The append refused while not ready wrote nothing.
    assert_eq!(api.get("/streams/s").await.status, 404);
    node.stop().await;
}

/// Added latency delays every answer.
#[tokio::test]
async fn a_slow_node_answers_after_its_latency() {
    let node = Node::start(NodeConfig::memory()).await.unwrap();
    let api = Api::new(&node.url()).as_user("admin", "changeit");
    node.set_latency(Duration::from_millis(150));
    let started = Instant::now();
    assert_eq!(api.get("/info").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    node.set_latency(Duration::ZERO);
    node.stop().await;
}

/// By default the default accounts are in the log from the first start, and every start appends
/// an `$epoch-information` event whose previous epoch is the last one; without server records the
/// log holds only what clients wrote.
#[tokio::test]
async fn server_records_fill_the_log_at_every_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = || NodeConfig::on_disk(dir.path().to_path_buf());
    assert!(matches!(config().storage, Storage::Dir(_)));
    let node = Node::start(config()).await.unwrap();
    let api = Api::new(&node.url()).as_user("admin", "changeit");
    let first = api.get("/streams/$epoch-information/0?embed=body").await;
    assert_eq!(first.status, 200);
    let all = api.get("/streams/$all/head/backward/20").await.json();
    let titles: Vec<String> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["title"].as_str().unwrap().to_owned())
        .collect();
    for expected in [
        "0@$user-admin",
        "0@$user-ops",
        "0@$users",
        "0@$epoch-information",
    ] {
        assert!(
            titles.iter().any(|t| t == expected),
            "{expected} in {titles:?}"
        );
    }
    node.stop().await;

    let node = Node::start(config()).await.unwrap();
    let api = Api::new(&node.url()).as_user("admin", "changeit");
    let get = |n: u32| {
        let api = api.clone();
        async move {
            api.get_with(
                &format!("/streams/$epoch-information/{n}"),
                &[("Accept", "application/json")],
            )
            .await
            .json()
        }
    };
    let (e0, e1) = (get(0).await, get(1).await);
    assert_eq!(e0["epochNumber"], 0);
    assert_eq!(e1["epochNumber"], 1);
    assert_eq!(e1["prevEpochPosition"], e0["epochPosition"]);
    // The accounts were written once.
    assert_eq!(api.get("/streams/$user-admin/1").await.status, 404);
    node.stop().await;

    let node = Node::start(NodeConfig::memory().server_records(false))
        .await
        .unwrap();
    assert_eq!(node.store().end(), 0, "an empty log");
    node.stop().await;
}
