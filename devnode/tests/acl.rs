//! Authentication and ACLs (§2.1, §8): per-right fallback, `$settings`, admin bypass, 401 styles.

mod common;

use common::*;
use devnode::{Node, NodeConfig, Profile, User};
use reqwest::Method;
use serde_json::json;

async fn node_with_users(profile: Profile) -> (Node, Api) {
    let cfg = secure(
        NodeConfig::memory()
            .profile(profile)
            .user(User::new("alice", "pw", &["readers"]))
            .user(User::new("bob", "pw", &[])),
    );
    let node = Node::start(cfg).await.unwrap();
    let api = Api::new(&node.url());
    (node, api)
}

#[tokio::test]
async fn stream_acl_per_right_with_fallback() {
    let (node, api) = node_with_users(Profile::V20).await;
    let alice = api.as_user("alice", "pw");
    let bob = api.as_user("bob", "pw");
    api.append("doc", None, &json!([event(&new_id(), "t", json!({}))]))
        .await;
    // Only `$r` restricted: `$w` still falls back to the default (`$all`).
    let r = api
        .send(
            Method::POST,
            "/streams/doc/metadata",
            &[
                ("Content-Type", "application/json"),
                ("ES-EventId", &new_id()),
            ],
            Some(br#"{"$acl":{"$r":["readers"]}}"#.to_vec()),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(alice.get("/streams/doc").await.status, 200);
    let denied = bob.get("/streams/doc").await;
    assert_eq!(denied.status, 401);
    assert!(denied.body.is_empty());
    assert!(
        denied.header("www-authenticate").is_none(),
        "v20+: bare 401"
    );
    assert_eq!(
        bob.append("doc", None, &json!([event(&new_id(), "t", json!({}))]))
            .await
            .status,
        201
    );
    // Admins bypass.
    assert_eq!(api.get("/streams/doc").await.status, 200);
    // v20 lets anonymous requests reach the ACL check (`$all` write allowed by default).
    let anon = api.anonymous();
    assert_eq!(
        anon.append("open", None, &json!([event(&new_id(), "t", json!({}))]))
            .await
            .status,
        201
    );
    assert_eq!(anon.get("/streams/doc").await.status, 401);
    // Wrong password → 401 with X-Basic challenge.
    let bad = api.as_user("alice", "nope").get("/streams/open").await;
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.header("www-authenticate").unwrap(),
        "X-Basic realm=\"ESDB\""
    );
    node.stop().await;
}

#[tokio::test]
async fn settings_apply_from_the_next_request() {
    let (node, api) = node_with_users(Profile::V21_10).await;
    let bob = api.as_user("bob", "pw");
    assert_eq!(
        bob.append("u1", None, &json!([event(&new_id(), "t", json!({}))]))
            .await
            .status,
        201
    );
    // System streams are admin-only by default.
    assert_eq!(bob.get("/streams/%24settings").await.status, 401);
    let settings = json!([{
        "eventId": new_id(),
        "eventType": "update-default-acl",
        "data": {
            "$userStreamAcl": { "$r": "$all", "$w": ["$admins", "alice"], "$d": "$admins", "$mr": "$admins", "$mw": "$admins" },
            "$systemStreamAcl": { "$r": "$admins", "$w": "$admins" }
        }
    }]);
    let r = api.append("$settings", None, &settings).await;
    assert_eq!(r.status, 201);
    assert!(r
        .header("location")
        .unwrap()
        .ends_with("/streams/%24settings/0"));
    assert_eq!(
        bob.append("u1", None, &json!([event(&new_id(), "t", json!({}))]))
            .await
            .status,
        401
    );
    let alice = api.as_user("alice", "pw");
    assert_eq!(
        alice
            .append("u1", None, &json!([event(&new_id(), "t", json!({}))]))
            .await
            .status,
        201
    );
    assert_eq!(bob.get("/streams/u1").await.status, 200);
    assert_eq!(bob.get("/streams/u1/metadata").await.status, 401);
    // A stream `$acl` entry wins over `$settings`; an empty list leaves only admins.
    api.send(
        Method::POST,
        "/streams/u1/metadata",
        &[
            ("Content-Type", "application/json"),
            ("ES-EventId", &new_id()),
        ],
        Some(br#"{"$acl":{"$w":"bob","$r":[]}}"#.to_vec()),
    )
    .await;
    assert_eq!(
        bob.append("u1", None, &json!([event(&new_id(), "t", json!({}))]))
            .await
            .status,
        201
    );
    assert_eq!(alice.get("/streams/u1").await.status, 401);
    assert_eq!(api.get("/streams/u1").await.status, 200);
    node.stop().await;
}

#[tokio::test]
async fn anonymous_refused_in_v5_and_v25() {
    for profile in [Profile::V5, Profile::V25] {
        let (node, api) = node_with_users(profile).await;
        let anon = api.anonymous();
        let r = anon
            .append("open", None, &json!([event(&new_id(), "t", json!({}))]))
            .await;
        assert_eq!(r.status, 401, "{profile}");
        if profile == Profile::V5 {
            // 5.0.2+: `BasicCustom` (contract §8), and no content type from the first-level
            // check's `ReplyStatus`.
            assert_eq!(
                r.header("www-authenticate").unwrap(),
                "BasicCustom realm=\"ES\""
            );
            assert_eq!(r.header("content-type").as_deref(), Some(""));
        } else {
            assert!(r.header("www-authenticate").is_none());
        }
        // Node endpoints stay anonymous.
        assert_eq!(anon.get_with("/info", &[]).await.status, 200);
        assert_eq!(anon.get_with("/ping", &[]).await.status, 200);
        assert_eq!(anon.get_with("/gossip", &[]).await.status, 200);
        node.stop().await;
    }
}

#[tokio::test]
async fn node_endpoints() {
    let (node, api) = start(Profile::V20).await;
    api.append("g", None, &json!([event(&new_id(), "t", json!({}))]))
        .await;
    let info = api.get_with("/info", &[]).await.json();
    assert_eq!(info["features"]["atomPub"], true);
    assert_eq!(info["features"]["userManagement"], true);
    assert_eq!(info["state"], "leader");
    let g = api.get_with("/gossip", &[]).await.json();
    let m = &g["members"][0];
    assert_eq!(m["state"], "Leader");
    assert_eq!(m["writerCheckpoint"], json!(node.store().end()));
    assert_eq!(
        m["lastCommitPosition"],
        json!(node.store().last_commit_position())
    );
    assert_eq!(m["httpEndPointPort"], json!(node.addr().port()));
    assert_eq!(api.get_with("/health/live", &[]).await.status, 204);
    assert_eq!(
        api.send(Method::POST, "/health/live", &[], None)
            .await
            .status,
        405
    );
    node.stop().await;
    let (node, api) = start(Profile::V5).await;
    let info = api.get_with("/info", &[]).await.json();
    assert!(info.get("features").is_none());
    assert_eq!(api.get_with("/health/live", &[]).await.status, 404);
    node.stop().await;
}
