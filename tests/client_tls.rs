//! `esdb::http::Client` against a dev node in secure mode: the CA written by `devnode --dev-certs`
//! ([`devnode::DevCerts`]) given as the client's `ca_file` is all it takes; without it the node's
//! certificate is not trusted; an insecure node answers everything as `system`.

use devnode::{DevCerts, Node, NodeConfig, Profile};
use reqwest::Url;
use uuid::Uuid;

use standby::esdb::http::Client;
use standby::esdb::{
    ClientConfig, Credentials, Embed, Error, EventData, HeaderFamily, PageSize, ReadOptions,
};
use standby::position::{ExpectedVersion, Position, StreamRevision};

fn client(node: &Node, ca: Option<&DevCerts>, credentials: Option<Credentials>) -> Client {
    let mut config = ClientConfig::new(Url::parse(&node.url()).unwrap());
    config.ca_file = ca.map(DevCerts::ca_file);
    config.credentials = credentials;
    config.header_family = HeaderFamily::Kurrent;
    Client::new(config).unwrap()
}

fn admin() -> Option<Credentials> {
    Some(Credentials::new("admin", "changeit"))
}

#[tokio::test]
async fn client_reads_and_writes_a_tls_dev_node() {
    let dir = tempfile::tempdir().unwrap();
    // What `devnode --dev-certs DIR` writes and serves.
    let certs = DevCerts::ensure(dir.path()).unwrap();
    let node = Node::start(
        NodeConfig::memory()
            .profile(Profile::V25)
            .dev_tls(&certs)
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(node.url().starts_with("https://"));
    let c = client(&node, Some(&certs), admin());

    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let events: Vec<EventData> = ids
        .iter()
        .map(|id| EventData::json(*id, "OrderPlaced", &br#"{"n":1}"#[..]))
        .collect();
    let appended = c
        .append_events("order-1", &events, ExpectedVersion::NoStream)
        .await
        .unwrap();
    assert_eq!(appended.first, Some(StreamRevision::START));
    let body = ReadOptions::embed(Embed::Body);
    let page = c
        .read_stream_forward(
            "order-1",
            StreamRevision::START,
            PageSize::new(10).unwrap(),
            &body,
        )
        .await
        .unwrap()
        .found()
        .expect("stream exists");
    let read: Vec<Uuid> = page
        .entries
        .iter()
        .filter_map(|e| e.as_event().map(|e| e.event_id))
        .collect();
    assert_eq!(read, ids);
    let all = c
        .read_all_forward(Position::START, PageSize::new(20).unwrap(), &body)
        .await
        .unwrap();
    assert!(all
        .entries
        .iter()
        .filter_map(|e| e.as_event())
        .any(|e| e.event_id == ids[0]));
    let info = c.info().await.unwrap();
    assert_eq!(info.authentication.as_deref(), Some("internal"));

    // Secure mode authenticates: anonymous writes are refused.
    let anonymous = client(&node, Some(&certs), None);
    let write = anonymous
        .append_events(
            "order-2",
            &[EventData::json(Uuid::new_v4(), "t", &b"{}"[..])],
            ExpectedVersion::Any,
        )
        .await;
    assert!(
        matches!(&write, Err(Error::Unauthorized { user: None, .. })),
        "{write:?}"
    );

    // Without the CA the node's certificate is not trusted, and nothing is sent.
    let untrusting = client(&node, None, admin());
    let err = untrusting
        .read_all_forward(Position::START, PageSize::new(1).unwrap(), &body)
        .await
        .unwrap_err();
    assert!(
        !matches!(err, Error::Unauthorized { .. }),
        "a TLS failure, not an answer: {err:?}"
    );
    node.stop().await;
}

#[tokio::test]
async fn an_insecure_node_serves_anyone_as_system() {
    let node = Node::start(NodeConfig::memory().profile(Profile::V25).insecure())
        .await
        .unwrap();
    let anonymous = client(&node, None, None);
    anonymous
        .append_events(
            "anon",
            &[EventData::json(Uuid::new_v4(), "t", &b"{}"[..])],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    let all = anonymous
        .read_all_forward(
            Position::START,
            PageSize::new(20).unwrap(),
            &ReadOptions::embed(Embed::Body),
        )
        .await
        .unwrap();
    assert!(!all.entries.is_empty());
    let info = anonymous.info().await.unwrap();
    assert_eq!(info.authentication.as_deref(), Some("insecure"));
    assert_eq!(info.features.and_then(|f| f.user_management), Some(false));
    node.stop().await;
}
