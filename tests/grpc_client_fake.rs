//! The gRPC client's connection behaviour against scripted in-process nodes (tonic servers on
//! the `proto` crate's stubs, loopback only): gossip discovery by node preference, following
//! "not leader" to the named leader with `requires-leader` on writes, the plaintext credentials
//! rule, deadlines, and the mapping of a wrong-expected-version reply.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{stream, Stream};
use proto::event_store::client as shared;
use proto::event_store::client::gossip::gossip_server::{Gossip, GossipServer};
use proto::event_store::client::gossip::{
    member_info::VNodeState, ClusterInfo, EndPoint, MemberInfo,
};
use proto::event_store::client::streams::streams_server::{Streams, StreamsServer};
use proto::event_store::client::streams::{
    append_req, append_resp, delete_resp, AppendReq, AppendResp, BatchAppendReq, BatchAppendResp,
    DeleteReq, DeleteResp, ReadReq, ReadResp, TombstoneReq, TombstoneResp,
};
use standby::esdb::grpc::{Client, ConnectionSettings};
use standby::esdb::{Credentials, Error, EventData};
use standby::position::{CurrentVersion, ExpectedVersion, StreamRevision};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

/// What a scripted node saw of one call.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    method: &'static str,
    authorization: Option<String>,
    requires_leader: bool,
}

#[derive(Clone, Default)]
struct Script {
    /// Answer appends with "not leader", naming this port on 127.0.0.1.
    not_leader_to: Option<u16>,
    /// Refuse calls without an `authorization` header.
    require_auth: bool,
    /// Answer appends with wrong expected version, the stream at this revision.
    wrong_version_at: Option<u64>,
    /// Delay deletes by this much.
    slow_delete: Option<Duration>,
    /// The cluster this node reports through gossip: (state, port).
    members: Vec<(VNodeState, u16)>,
}

#[derive(Clone)]
struct FakeNode {
    script: Script,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeNode {
    fn see(&self, method: &'static str, metadata: &MetadataMap) -> Result<(), Status> {
        let authorization = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let refused = self.script.require_auth && authorization.is_none();
        self.seen.lock().unwrap().push(Seen {
            method,
            authorization,
            requires_leader: metadata
                .get("requires-leader")
                .and_then(|v| v.to_str().ok())
                == Some("true"),
        });
        if refused {
            let mut trailers = MetadataMap::new();
            trailers.insert("exception", "access-denied".parse().unwrap());
            return Err(Status::with_metadata(
                tonic::Code::PermissionDenied,
                "Access Denied",
                trailers,
            ));
        }
        Ok(())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Streams for FakeNode {
    type ReadStream = BoxStream<ReadResp>;
    type BatchAppendStream = BoxStream<BatchAppendResp>;

    async fn read(&self, request: Request<ReadReq>) -> Result<Response<Self::ReadStream>, Status> {
        self.see("read", request.metadata())?;
        Ok(Response::new(Box::pin(stream::empty())))
    }

    async fn append(
        &self,
        request: Request<Streaming<AppendReq>>,
    ) -> Result<Response<AppendResp>, Status> {
        self.see("append", request.metadata())?;
        if let Some(port) = self.script.not_leader_to {
            let mut trailers = MetadataMap::new();
            trailers.insert("exception", "not-leader".parse().unwrap());
            trailers.insert("leader-endpoint-host", "127.0.0.1".parse().unwrap());
            trailers.insert("leader-endpoint-port", port.to_string().parse().unwrap());
            return Err(Status::with_metadata(
                tonic::Code::NotFound,
                "Leader info available",
                trailers,
            ));
        }
        let mut messages = request.into_inner();
        let mut events = 0u64;
        while let Some(message) = messages.message().await? {
            if let Some(append_req::Content::ProposedMessage(_)) = message.content {
                events += 1;
            }
        }
        let result = match self.script.wrong_version_at {
            Some(at) => {
                append_resp::Result::WrongExpectedVersion(append_resp::WrongExpectedVersion {
                    current_revision_option: Some(
                        append_resp::wrong_expected_version::CurrentRevisionOption::CurrentRevision(
                            at,
                        ),
                    ),
                    ..Default::default()
                })
            }
            None => append_resp::Result::Success(append_resp::Success {
                current_revision_option: Some(
                    append_resp::success::CurrentRevisionOption::CurrentRevision(events - 1),
                ),
                position_option: Some(append_resp::success::PositionOption::Position(
                    append_resp::Position {
                        commit_position: 100,
                        prepare_position: 100,
                    },
                )),
            }),
        };
        Ok(Response::new(AppendResp {
            result: Some(result),
        }))
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        self.see("delete", request.metadata())?;
        if let Some(delay) = self.script.slow_delete {
            tokio::time::sleep(delay).await;
        }
        Ok(Response::new(DeleteResp {
            position_option: Some(delete_resp::PositionOption::NoPosition(())),
        }))
    }

    async fn tombstone(
        &self,
        request: Request<TombstoneReq>,
    ) -> Result<Response<TombstoneResp>, Status> {
        self.see("tombstone", request.metadata())?;
        Err(Status::unimplemented("not scripted"))
    }

    async fn batch_append(
        &self,
        request: Request<Streaming<BatchAppendReq>>,
    ) -> Result<Response<Self::BatchAppendStream>, Status> {
        self.see("batch_append", request.metadata())?;
        Err(Status::unimplemented("not scripted"))
    }
}

#[tonic::async_trait]
impl Gossip for FakeNode {
    async fn read(&self, request: Request<()>) -> Result<Response<ClusterInfo>, Status> {
        self.see("gossip", request.metadata())?;
        Ok(Response::new(ClusterInfo {
            members: self
                .script
                .members
                .iter()
                .map(|(state, port)| MemberInfo {
                    instance_id: Some(shared::Uuid {
                        value: Some(shared::uuid::Value::String(Uuid::new_v4().to_string())),
                    }),
                    time_stamp: 0,
                    state: *state as i32,
                    is_alive: true,
                    http_end_point: Some(EndPoint {
                        address: "127.0.0.1".into(),
                        port: u32::from(*port),
                    }),
                })
                .collect(),
        }))
    }
}

/// Binds a port first, so that scripts can name each other's ports.
fn bind() -> (tonic::transport::server::TcpIncoming, u16) {
    let incoming =
        tonic::transport::server::TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind a loopback port");
    let port = incoming.local_addr().unwrap().port();
    (incoming, port)
}

fn serve(incoming: tonic::transport::server::TcpIncoming, script: Script) -> FakeNode {
    let node = FakeNode {
        script,
        seen: Arc::default(),
    };
    let server = tonic::transport::Server::builder()
        .add_service(StreamsServer::new(node.clone()))
        .add_service(GossipServer::new(node.clone()))
        .serve_with_incoming(incoming);
    tokio::spawn(server);
    node
}

fn client(connection_string: &str) -> Client {
    Client::new(connection_string.parse::<ConnectionSettings>().unwrap()).unwrap()
}

fn event() -> EventData {
    EventData::json(Uuid::new_v4(), "Tested", r#"{"a":1}"#)
}

#[tokio::test]
async fn follows_not_leader_to_the_named_leader_with_requires_leader() {
    let (leader_incoming, leader_port) = bind();
    let (follower_incoming, follower_port) = bind();
    let leader = serve(leader_incoming, Script::default());
    let follower = serve(
        follower_incoming,
        Script {
            not_leader_to: Some(leader_port),
            ..Script::default()
        },
    );
    let client = client(&format!("kurrentdb://127.0.0.1:{follower_port}?tls=false"));
    let written = client
        .append("s", ExpectedVersion::Any, &[event(), event()])
        .await
        .unwrap();
    assert_eq!(
        written.current,
        CurrentVersion::Revision(StreamRevision::new(1).unwrap())
    );
    assert_eq!(follower.seen().len(), 1);
    assert!(
        follower.seen()[0].requires_leader,
        "writes require the leader"
    );
    assert_eq!(leader.seen().len(), 1);
    assert!(leader.seen()[0].requires_leader);
    // The client stays on the leader: the next call goes straight there.
    client
        .append("s", ExpectedVersion::Any, &[event()])
        .await
        .unwrap();
    assert_eq!(follower.seen().len(), 1);
    assert_eq!(leader.seen().len(), 2);
    // Reads do not require the leader.
    client
        .read_all(
            standby::esdb::grpc::ReadFrom::Start,
            standby::esdb::Direction::Forward,
            10,
            None,
        )
        .await
        .unwrap();
    assert!(!leader.seen()[2].requires_leader);
}

#[tokio::test]
async fn a_follower_that_keeps_redirecting_ends_in_a_transient_not_leader() {
    let (incoming, port) = bind();
    let node = serve(
        incoming,
        Script {
            not_leader_to: Some(port),
            ..Script::default()
        },
    );
    let err = client(&format!("esdb://127.0.0.1:{port}?tls=false"))
        .append("s", ExpectedVersion::Any, &[event()])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotLeader { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(
        node.seen().len(),
        1 + standby::esdb::grpc::client::MAX_REDIRECTS
    );
}

#[tokio::test]
async fn discovery_reads_gossip_and_connects_to_the_leader() {
    let (seed_incoming, seed_port) = bind();
    let (leader_incoming, leader_port) = bind();
    let (follower_incoming, follower_port) = bind();
    let members = vec![
        (VNodeState::Follower, follower_port),
        (VNodeState::Leader, leader_port),
        (VNodeState::Manager, seed_port),
    ];
    let seed = serve(
        seed_incoming,
        Script {
            members: members.clone(),
            ..Script::default()
        },
    );
    let leader = serve(
        leader_incoming,
        Script {
            members,
            ..Script::default()
        },
    );
    let follower = serve(follower_incoming, Script::default());

    let leader_client = client(&format!(
        "kurrentdb+discover://127.0.0.1:{seed_port}?tls=false&discoveryInterval=10"
    ));
    leader_client
        .append("s", ExpectedVersion::Any, &[event()])
        .await
        .unwrap();
    assert_eq!(
        seed.seen().iter().filter(|s| s.method == "gossip").count(),
        1
    );
    assert_eq!(leader.seen().len(), 1);
    assert_eq!(leader.seen()[0].method, "append");

    let follower_client = client(&format!(
        "esdb+discover://127.0.0.1:{seed_port}?tls=false&nodePreference=follower"
    ));
    follower_client
        .delete("s", ExpectedVersion::Any)
        .await
        .unwrap();
    assert_eq!(follower.seen().len(), 1);
    assert!(
        !follower.seen()[0].requires_leader,
        "no leader requirement under a follower preference"
    );

    let gossip = leader_client.gossip().await.unwrap();
    assert_eq!(
        gossip
            .leader()
            .unwrap()
            .http_endpoint
            .as_ref()
            .unwrap()
            .port,
        leader_port
    );
}

#[tokio::test]
async fn discovery_without_a_leader_gives_up_after_max_attempts() {
    let (incoming, port) = bind();
    let seed = serve(
        incoming,
        Script {
            members: vec![(VNodeState::Follower, 1)],
            ..Script::default()
        },
    );
    let err = client(&format!(
        "kurrentdb+discover://127.0.0.1:{port}?tls=false&maxDiscoverAttempts=2&discoveryInterval=1"
    ))
    .append("s", ExpectedVersion::Any, &[event()])
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("nodePreference=leader"), "{err}");
    assert_eq!(seed.seen().len(), 2);
}

#[tokio::test]
async fn plaintext_credentials_go_only_to_a_node_that_asks() {
    let (open_incoming, open_port) = bind();
    let (auth_incoming, auth_port) = bind();
    let open = serve(open_incoming, Script::default());
    let auth = serve(
        auth_incoming,
        Script {
            require_auth: true,
            ..Script::default()
        },
    );
    let credentials = Some(Credentials::new("admin", "changeit"));

    // An insecure node never asks: the password never leaves the process.
    let to_open = Client::from_connection_string(
        &format!("kurrentdb://127.0.0.1:{open_port}?tls=false"),
        credentials.clone(),
    )
    .unwrap();
    to_open
        .append("s", ExpectedVersion::Any, &[event()])
        .await
        .unwrap();
    to_open.delete("s", ExpectedVersion::Any).await.unwrap();
    assert!(
        open.seen().iter().all(|s| s.authorization.is_none()),
        "{:?}",
        open.seen()
    );

    // A --disable-tls node refuses the anonymous call; the client repeats it with Basic
    // credentials and keeps sending them to that node.
    let to_auth = Client::from_connection_string(
        &format!("kurrentdb://admin:changeit@127.0.0.1:{auth_port}?tls=false"),
        None,
    )
    .unwrap();
    to_auth
        .append("s", ExpectedVersion::Any, &[event()])
        .await
        .unwrap();
    to_auth.delete("s", ExpectedVersion::Any).await.unwrap();
    let basic = "Basic YWRtaW46Y2hhbmdlaXQ=".to_owned(); // admin:changeit
    let seen: Vec<Option<String>> = auth.seen().into_iter().map(|s| s.authorization).collect();
    assert_eq!(seen, vec![None, Some(basic.clone()), Some(basic)]);

    // Without credentials the refusal is reported, with the fix.
    let anonymous = client(&format!("kurrentdb://127.0.0.1:{auth_port}?tls=false"));
    let err = anonymous
        .delete("s", ExpectedVersion::Any)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AccessDenied { user: None, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no credentials"), "{err}");
}

#[tokio::test]
async fn deadlines_end_calls_as_transient_timeouts() {
    let (incoming, port) = bind();
    serve(
        incoming,
        Script {
            slow_delete: Some(Duration::from_secs(30)),
            ..Script::default()
        },
    );
    let client = client(&format!(
        "kurrentdb://127.0.0.1:{port}?tls=false&defaultDeadline=200"
    ));
    let err = client.delete("s", ExpectedVersion::Any).await.unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err:?}");
    assert!(err.is_transient());
    let err = client
        .with_deadline(Duration::from_millis(50))
        .delete("s", ExpectedVersion::Any)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("50ms"), "{err}");
}

#[tokio::test]
async fn wrong_expected_version_reply_is_the_usual_error() {
    let (incoming, port) = bind();
    serve(
        incoming,
        Script {
            wrong_version_at: Some(7),
            ..Script::default()
        },
    );
    let err = client(&format!("kurrentdb://127.0.0.1:{port}?tls=false"))
        .append("orders", ExpectedVersion::NoStream, &[event()])
        .await
        .unwrap_err();
    let Error::WrongExpectedVersion {
        stream,
        expected,
        current,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(stream, "orders");
    assert_eq!(*expected, ExpectedVersion::NoStream);
    assert_eq!(
        *current,
        Some(CurrentVersion::Revision(StreamRevision::new(7).unwrap()))
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn an_unreachable_node_is_a_transient_connection_error() {
    let (incoming, port) = bind();
    drop(incoming);
    let err = client(&format!("kurrentdb://127.0.0.1:{port}?tls=false"))
        .delete("s", ExpectedVersion::Any)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        matches!(err, Error::Unreachable { .. } | Error::Unavailable { .. }),
        "{err:?}"
    );
}
