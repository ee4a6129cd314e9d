//! User management over HTTP (`/users`): statuses and bodies of `UsersController`, disabled
//! accounts refused at authentication once the credential poll has dropped them from the cache,
//! persistence in `$user-<login>` streams across restarts.

mod common;

use common::*;
use std::time::Duration;

use devnode::store::EventRead;
use devnode::{Node, NodeConfig, Profile, User};
use reqwest::Method;
use serde_json::{json, Value};

const JSON: &str = "application/json";

async fn post_json(api: &Api, path: &str, body: Value) -> Resp {
    api.send(
        Method::POST,
        path,
        &[("Content-Type", JSON)],
        Some(serde_json::to_vec(&body).unwrap()),
    )
    .await
}

async fn create(api: &Api, login: &str, password: &str, groups: &[&str]) -> Resp {
    post_json(
        api,
        "/users/",
        json!({"loginName": login, "fullName": "Repl User", "groups": groups, "password": password}),
    )
    .await
}

async fn command(api: &Api, login: &str, cmd: &str) -> Resp {
    api.send(
        Method::POST,
        &format!("/users/{login}/command/{cmd}"),
        &[],
        None,
    )
    .await
}

/// A request that needs an authenticated user on every profile: reading a user stream.
async fn read_status(api: &Api) -> u16 {
    api.get("/streams/orders").await.status.as_u16()
}

async fn seed_stream(api: &Api) {
    let r = api
        .append("orders", None, &json!([event(&new_id(), "t", json!({}))]))
        .await;
    assert_eq!(r.status, 201);
}

#[tokio::test]
async fn create_get_and_duplicate() {
    let (node, api) = start(Profile::V25).await;
    let r = create(&api, "repl", "pw1", &["replicators"]).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("location").as_deref(),
        Some(format!("{}/users/repl", node.url()).as_str())
    );
    assert_eq!(
        r.json(),
        json!({"loginName": "repl", "success": true, "error": "Success"})
    );

    let r = api.get_with("/users/repl", &[("Accept", JSON)]).await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let body = r.json();
    assert_eq!(body["success"], true);
    assert_eq!(body["error"], "Success");
    let data = &body["data"];
    assert_eq!(data["loginName"], "repl");
    assert_eq!(data["fullName"], "Repl User");
    assert_eq!(data["groups"], json!(["replicators"]));
    assert_eq!(data["disabled"], false);
    assert_eq!(data["dateLastUpdated"], Value::Null);
    let rels: Vec<&str> = data["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["rel"].as_str().unwrap())
        .collect();
    assert_eq!(
        rels,
        [
            "reset-password",
            "change-password",
            "edit",
            "delete",
            "disable"
        ]
    );

    // Same login and password again: the retried create succeeds; another password conflicts.
    assert_eq!(create(&api, "repl", "pw1", &[]).await.status, 201);
    let r = create(&api, "repl", "other", &[]).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"], "Conflict");
    assert_eq!(r.json()["success"], false);
    // So do the built-in accounts.
    assert_eq!(create(&api, "admin", "nope", &[]).await.status, 409);

    let list = api.get_with("/users", &[("Accept", JSON)]).await;
    assert_eq!(list.status, 200);
    let logins: Vec<String> = list.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["loginName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(logins, ["admin", "ops", "repl"]);

    // The account is in the log, without the password.
    let stored = api
        .get_with("/streams/%24user-repl/0", &[("Accept", JSON)])
        .await;
    assert_eq!(stored.status, 200);
    let text = String::from_utf8(stored.body.clone()).unwrap();
    assert!(text.contains("\"hash\""), "{text}");
    assert!(!text.contains("pw1"), "{text}");
    node.stop().await;
}

/// Waits (bounded) for a credential poll that started after the call: every user change answered
/// before is then in force, as on the real server about 1 s after the change.
async fn poll(node: &Node) {
    tokio::time::timeout(Duration::from_secs(30), node.credential_poll())
        .await
        .expect("a credential poll within 30 s");
}

#[tokio::test]
async fn disable_refuses_after_the_credential_poll_and_enable_restores_it() {
    let (node, api) = start(Profile::V25).await;
    seed_stream(&api).await;
    assert_eq!(create(&api, "repl", "pw", &["$admins"]).await.status, 201);
    let repl = api.as_user("repl", "pw");
    assert_eq!(read_status(&repl).await, 200);

    let r = command(&api, "repl", "disable").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"loginName": "repl", "success": true, "error": "Success"})
    );
    // Once the poll has dropped the cached login: the same 401 as a wrong password (v20+:
    // `X-Basic` challenge).
    poll(&node).await;
    let refused = repl.get("/streams/orders").await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("www-authenticate").as_deref(),
        Some("X-Basic realm=\"ESDB\"")
    );
    let wrong = api.as_user("repl", "bad").get("/streams/orders").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.header("www-authenticate"),
        refused.header("www-authenticate")
    );
    assert_eq!(read_status(&api).await, 200, "admins are unaffected");
    let data = api
        .get_with("/users/repl", &[("Accept", JSON)])
        .await
        .json()["data"]
        .clone();
    assert_eq!(data["disabled"], true);
    assert_eq!(data["links"][4]["rel"], "enable");

    assert_eq!(command(&api, "repl", "enable").await.status, 200);
    assert_eq!(read_status(&repl).await, 200);
    node.stop().await;
}

#[tokio::test]
async fn reset_and_change_password() {
    let (node, api) = start(Profile::V25).await;
    seed_stream(&api).await;
    assert_eq!(create(&api, "repl", "old", &[]).await.status, 201);
    let r = post_json(
        &api,
        "/users/repl/command/reset-password",
        json!({"newPassword": "new"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(read_status(&api.as_user("repl", "old")).await, 401);
    let repl = api.as_user("repl", "new");
    assert_eq!(read_status(&repl).await, 200);

    // Change-password: the owner with the right current password; a wrong one is the service's
    // 401 with a body.
    let r = post_json(
        &repl,
        "/users/repl/command/change-password",
        json!({"currentPassword": "wrong", "newPassword": "x"}),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "Unauthorized");
    let r = post_json(
        &repl,
        "/users/repl/command/change-password",
        json!({"currentPassword": "new", "newPassword": "newer"}),
    )
    .await;
    assert_eq!(r.status, 200);
    // The cached hash is the old one until the poll drops it: the new password is refused.
    poll(&node).await;
    assert_eq!(read_status(&api.as_user("repl", "newer")).await, 200);

    // The server notifies its credential caches through this stream.
    let notes = api.get("/streams/%24users-password-notifications").await;
    assert_eq!(notes.status, 200);
    assert_eq!(notes.json()["entries"].as_array().unwrap().len(), 2);
    node.stop().await;
}

#[tokio::test]
async fn unknown_logins_and_bad_requests() {
    let (node, api) = start(Profile::V25).await;
    let r = api.get_with("/users/ghost", &[("Accept", JSON)]).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        json!({"data": null, "success": false, "error": "NotFound"})
    );
    for cmd in ["enable", "disable"] {
        let r = command(&api, "ghost", cmd).await;
        assert_eq!(r.status, 404, "{cmd}");
        assert_eq!(r.json()["error"], "NotFound");
    }
    let r = post_json(
        &api,
        "/users/ghost/command/reset-password",
        json!({"newPassword": "x"}),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        api.send(Method::DELETE, "/users/ghost", &[], None)
            .await
            .status,
        404
    );
    // JSON only; an incomplete body is refused.
    let r = api
        .send(
            Method::POST,
            "/users",
            &[("Content-Type", "text/plain")],
            Some(b"x".to_vec()),
        )
        .await;
    assert_eq!(r.status, 415);
    assert_eq!(
        post_json(&api, "/users", json!({"loginName": "x"}))
            .await
            .status,
        400
    );
    assert_eq!(
        api.send(Method::PATCH, "/users/admin", &[], None)
            .await
            .status,
        405
    );
    node.stop().await;
}

#[tokio::test]
async fn only_admins_manage_users() {
    let (node, api) = start(Profile::V25).await;
    assert_eq!(create(&api, "bob", "pw", &["staff"]).await.status, 201);
    let bob = api.as_user("bob", "pw");
    let ops = api.as_user("ops", "changeit");
    for caller in [&bob, &ops, &api.anonymous()] {
        let r = create(caller, "eve", "pw", &[]).await;
        assert_eq!(r.status, 401);
        assert!(r.body.is_empty(), "refused before the handler");
        assert_eq!(command(caller, "admin", "disable").await.status, 401);
        assert_eq!(
            caller.get_with("/users", &[("Accept", JSON)]).await.status,
            401
        );
        assert_eq!(
            caller
                .get_with("/users/admin", &[("Accept", JSON)])
                .await
                .status,
            401
        );
        let r = post_json(
            caller,
            "/users/admin/command/reset-password",
            json!({"newPassword": "x"}),
        )
        .await;
        assert_eq!(r.status, 401);
    }
    // v20+: a user may read their own account and see `$current`.
    assert_eq!(
        bob.get_with("/users/bob", &[("Accept", JSON)]).await.status,
        200
    );
    let me = bob.get_with("/users/%24current", &[("Accept", JSON)]).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["data"]["loginName"], "bob");
    assert!(me.json()["data"]["dateLastUpdated"].is_string());
    node.stop().await;
}

#[tokio::test]
async fn v5_style() {
    let (node, api) = start(Profile::V5).await;
    assert_eq!(create(&api, "bob", "pw", &[]).await.status, 201);
    let bob = api.as_user("bob", "pw");
    // 5.0.12: reading any account needs `$admins`, even one's own; every 401 has a challenge.
    let r = bob.get_with("/users/bob", &[("Accept", JSON)]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("BasicCustom realm=\"ES\"")
    );
    // Nulls are omitted.
    let r = api.get_with("/users/ghost", &[("Accept", JSON)]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), json!({"success": false, "error": "NotFound"}));
    let data = api.get_with("/users/bob", &[("Accept", JSON)]).await.json()["data"].clone();
    assert!(data.get("dateLastUpdated").is_none());
    node.stop().await;
}

#[tokio::test]
async fn accounts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(NodeConfig::on_disk(dir.path())).await.unwrap();
    let api = Api::new(&node.url());
    seed_stream(&api).await;
    assert_eq!(create(&api, "repl", "pw", &[]).await.status, 201);
    assert_eq!(create(&api, "keep", "pw", &[]).await.status, 201);
    assert_eq!(command(&api, "repl", "disable").await.status, 200);
    // A built-in account changed through the API is written to the log too.
    let r = post_json(
        &api,
        "/users/ops/command/reset-password",
        json!({"newPassword": "s3cret"}),
    )
    .await;
    assert_eq!(r.status, 200);
    node.stop().await;

    let node = Node::start(NodeConfig::on_disk(dir.path())).await.unwrap();
    let api = Api::new(&node.url());
    assert_eq!(read_status(&api.as_user("repl", "pw")).await, 401);
    assert_eq!(read_status(&api.as_user("keep", "pw")).await, 200);
    assert_eq!(read_status(&api.as_user("ops", "changeit")).await, 401);
    assert_eq!(read_status(&api.as_user("ops", "s3cret")).await, 200);
    assert_eq!(
        api.get_with("/users/repl", &[("Accept", JSON)])
            .await
            .json()["data"]["disabled"],
        true
    );
    assert_eq!(command(&api, "repl", "enable").await.status, 200);
    assert_eq!(read_status(&api.as_user("repl", "pw")).await, 200);
    node.stop().await;
}

#[tokio::test]
async fn settings_change_applies_to_the_next_request_of_a_new_user() {
    let (node, api) = start(Profile::V25).await;
    seed_stream(&api).await;
    assert_eq!(create(&api, "bob", "pw", &["staff"]).await.status, 201);
    let bob = api.as_user("bob", "pw");
    assert_eq!(read_status(&bob).await, 200);
    let settings = json!([event(
        &new_id(),
        "update-default-acl",
        json!({"$userStreamAcl": {"$r": "readers"}})
    )]);
    assert_eq!(api.append("$settings", None, &settings).await.status, 201);
    assert_eq!(read_status(&bob).await, 401);
    // Adding bob to the group takes effect at the next credential poll (cached roles before).
    let r = api
        .send(
            Method::PUT,
            "/users/bob",
            &[("Content-Type", JSON)],
            Some(br#"{"fullName":"Bob","groups":["readers"]}"#.to_vec()),
        )
        .await;
    assert_eq!(r.status, 200);
    poll(&node).await;
    assert_eq!(read_status(&bob).await, 200);
    node.stop().await;
}

#[tokio::test]
async fn a_disabled_user_keeps_working_from_the_cache_until_the_poll_drops_it() {
    for profile in [Profile::V5, Profile::V20, Profile::V21_10, Profile::V25] {
        let (node, api) = start(profile).await;
        seed_stream(&api).await;
        assert_eq!(create(&api, "repl", "pw", &[]).await.status, 201);
        let repl = api.as_user("repl", "pw");
        // Authenticated once: cached.
        assert_eq!(read_status(&repl).await, 200, "{profile}");

        node.hold_credential_poll(true);
        assert_eq!(command(&api, "repl", "disable").await.status, 200);
        for _ in 0..5 {
            assert_eq!(
                read_status(&repl).await,
                200,
                "{profile}: cached while held"
            );
        }
        // Failures are never cached successes.
        assert_eq!(read_status(&api.as_user("repl", "bad")).await, 401);
        assert_eq!(read_status(&api.as_user("ghost", "pw")).await, 401);
        // A reset password: the old one still works from the cache, the new one is refused.
        let r = post_json(
            &api,
            "/users/repl/command/reset-password",
            json!({"newPassword": "pw2"}),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(read_status(&repl).await, 200, "{profile}");
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), node.credential_poll())
                .await
                .is_err(),
            "{profile}: no poll runs while held"
        );

        node.hold_credential_poll(false);
        poll(&node).await;
        assert_eq!(
            read_status(&repl).await,
            401,
            "{profile}: dropped by the poll"
        );
        assert_eq!(
            read_status(&api.as_user("repl", "pw2")).await,
            401,
            "disabled"
        );
        // Enable writes no notification and a disabled account was never cached: at once.
        assert_eq!(command(&api, "repl", "enable").await.status, 200);
        assert_eq!(
            read_status(&api.as_user("repl", "pw2")).await,
            200,
            "{profile}"
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn a_slow_poll_delays_the_disable_until_it_runs() {
    let (node, api) = start(Profile::V25).await;
    seed_stream(&api).await;
    assert_eq!(create(&api, "repl", "pw", &[]).await.status, 201);
    let repl = api.as_user("repl", "pw");
    assert_eq!(read_status(&repl).await, 200);
    node.set_credential_poll_interval(Duration::from_secs(3600));
    // The poll due now runs; the next one an hour after it.
    poll(&node).await;
    assert_eq!(command(&api, "repl", "disable").await.status, 200);
    assert_eq!(read_status(&repl).await, 200, "cached until the next poll");
    node.set_credential_poll_interval(Duration::from_millis(10));
    poll(&node).await;
    assert_eq!(read_status(&repl).await, 401);
    node.stop().await;
}

/// §1.4: v5 and v20 write the notification before the account, 21.10.2+ after it.
#[tokio::test]
async fn user_records_are_written_in_the_profile_s_order() {
    for (profile, notification_first) in [
        (Profile::V5, true),
        (Profile::V20, true),
        (Profile::V21_10, false),
        (Profile::V25, false),
    ] {
        let (node, api) = start(profile).await;
        assert_eq!(create(&api, "repl", "pw", &[]).await.status, 201);
        assert_eq!(command(&api, "repl", "disable").await.status, 200);
        let store = node.store();
        let pos = |stream: &str, n: i64| match store.read_event(stream, Some(n), false) {
            EventRead::Ok { event, .. } => event.original().pos,
            _ => panic!("{stream}/{n} missing"),
        };
        let notification = pos("$users-password-notifications", 0);
        let updated = pos("$user-repl", 1);
        assert_eq!(notification < updated, notification_first, "{profile}");
        node.stop().await;
    }
}

/// §3: in v20+ the login `admin` is an administrator by name, whatever its groups.
#[tokio::test]
async fn the_admin_login_is_an_admin_by_name_from_v20_on() {
    // Plain HTTP with authentication exists in v5 and in 26.2 (`--disable-tls`); the rule is the
    // same in every v20+ profile.
    for (profile, admin) in [(Profile::V5, false), (Profile::V26, true)] {
        let cfg = NodeConfig::memory()
            .profile(profile)
            .user(User::new("admin", "changeit", &[]))
            .user(User::new("root", "pw", &["$admins"]));
        let node = Node::start(cfg).await.unwrap();
        let api = Api::new(&node.url()).as_user("admin", "changeit");
        let expected = if admin { 200 } else { 401 };
        let users = api.get_with("/users", &[("Accept", JSON)]).await;
        assert_eq!(users.status, expected, "{profile}: GET /users");
        // System streams are `$admins`-only by default.
        let r = api
            .append(
                "$ops-only",
                None,
                &json!([event(&new_id(), "t", json!({}))]),
            )
            .await;
        let expected = if admin { 201 } else { 401 };
        assert_eq!(r.status, expected, "{profile}: system stream write");
        // Another login without `$admins` stays an ordinary user.
        let root = Api::new(&node.url()).as_user("root", "pw");
        assert_eq!(create(&root, "bob", "pw", &[]).await.status, 201);
        let bob = Api::new(&node.url()).as_user("bob", "pw");
        assert_eq!(
            bob.get_with("/users", &[("Accept", JSON)]).await.status,
            401
        );
        node.stop().await;
    }
}
