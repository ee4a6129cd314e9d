//! Who may call the gRPC face, per security mode: anonymous is `system` under `--insecure`,
//! refused on a TLS node and on a plaintext node with authentication; wrong credentials are
//! refused everywhere; the v5 profile has no gRPC; Users over the same accounts as `/users`.

mod common;

use common::grpc::*;
use common::*;
use devnode::{Node, NodeConfig, Profile};
use proto::event_store::client::streams::append_req::options::ExpectedStreamRevision as Expected;
use proto::event_store::client::users as u;
use uuid::Uuid;

fn one() -> Vec<proto::event_store::client::streams::append_req::ProposedMessage> {
    vec![proposed(
        Uuid::new_v4(),
        "A",
        "application/json",
        b"{}",
        b"",
    )]
}

#[tokio::test]
async fn an_insecure_node_lets_anonymous_append_as_system() {
    let node = Node::start(NodeConfig::memory().profile(Profile::V25).insecure())
        .await
        .unwrap();
    let grpc = Grpc::connect(&node).await.anonymous();
    grpc.append("open-1", Expected::NoStream(()), one())
        .await
        .unwrap();
    // Even a system stream: every request is `system`.
    grpc.append("$sys-1", Expected::Any(()), one())
        .await
        .unwrap();
    node.stop().await;
}

#[tokio::test]
async fn a_tls_node_refuses_anonymous_and_wrong_credentials() {
    let node = Node::start(secure(NodeConfig::memory().profile(Profile::V25)))
        .await
        .unwrap();
    assert!(node.is_tls());
    let grpc = Grpc::connect(&node).await;
    let err = grpc
        .anonymous()
        .append("tls-1", Expected::Any(()), one())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert_eq!(trailer(&err, "exception").as_deref(), Some("access-denied"));
    let err = grpc
        .as_user("admin", "wrong")
        .append("tls-1", Expected::Any(()), one())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    grpc.append("tls-1", Expected::NoStream(()), one())
        .await
        .unwrap();
    assert_eq!(node.store().last_event_number("tls-1"), 0);
    node.stop().await;
}

#[tokio::test]
async fn a_plaintext_node_with_authentication_refuses_anonymous() {
    let node = Node::start(NodeConfig::memory()).await.unwrap();
    assert!(!node.is_tls());
    let grpc = Grpc::connect(&node).await;
    let err = grpc
        .anonymous()
        .append("auth-1", Expected::Any(()), one())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert_eq!(trailer(&err, "exception").as_deref(), Some("access-denied"));
    // A user who is no admin may write a user stream, but not a system stream.
    let ops = grpc.as_user("ops", "changeit");
    ops.append("auth-1", Expected::Any(()), one())
        .await
        .unwrap();
    let err = ops
        .append("$auth-1", Expected::Any(()), one())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    node.stop().await;
}

#[tokio::test]
async fn the_v5_profile_serves_no_grpc_but_still_http() {
    let node = Node::start(NodeConfig::memory().profile(Profile::V5))
        .await
        .unwrap();
    let grpc = Grpc::connect(&node).await;
    let err = grpc
        .append("v5-1", Expected::Any(()), one())
        .await
        .unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    assert_eq!(node.store().last_event_number("v5-1"), -1);
    let api = Api::new(&node.url());
    assert_eq!(api.get("/streams/$all").await.status, 200);
    node.stop().await;
}

#[tokio::test]
async fn users_are_managed_over_grpc_and_a_disabled_user_cannot_write() {
    let node = Node::start(NodeConfig::memory()).await.unwrap();
    let grpc = Grpc::connect(&node).await;
    let mut users = grpc.users.clone();
    users
        .create(grpc.req(u::CreateReq {
            options: Some(u::create_req::Options {
                login_name: "repl".into(),
                password: "pw".into(),
                full_name: "Replicator".into(),
                groups: vec!["writers".into()],
            }),
        }))
        .await
        .unwrap();
    let repl = grpc.as_user("repl", "pw");
    repl.append("repl-1", Expected::Any(()), one())
        .await
        .unwrap();
    // Only admins manage accounts.
    let err = repl
        .users
        .clone()
        .disable(repl.req(u::DisableReq {
            options: Some(u::disable_req::Options {
                login_name: "repl".into(),
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    users
        .disable(grpc.req(u::DisableReq {
            options: Some(u::disable_req::Options {
                login_name: "repl".into(),
            }),
        }))
        .await
        .unwrap();
    let mut details = users
        .details(grpc.req(u::DetailsReq {
            options: Some(u::details_req::Options {
                login_name: "repl".into(),
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    let d = details
        .message()
        .await
        .unwrap()
        .unwrap()
        .user_details
        .unwrap();
    assert!(d.disabled);
    assert_eq!(d.full_name, "Replicator");
    assert_eq!(d.groups, ["writers"]);
    node.credential_poll().await;
    let err = repl
        .append("repl-1", Expected::Any(()), one())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let err = users
        .enable(grpc.req(u::EnableReq {
            options: Some(u::enable_req::Options {
                login_name: "nobody".into(),
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(
        trailer(&err, "exception").as_deref(),
        Some("user-not-found")
    );
    node.stop().await;
}
