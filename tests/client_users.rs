//! The user-management calls of `esdb::http::Client` against an in-process dev node: the promotion
//! path (disable the replication user so it cannot authenticate) and every error answer.

mod common;

use devnode::{Node, NodeConfig, Profile};

use standby::esdb::http::Client;
use standby::esdb::{
    Credentials, Error, Lookup, NewUser, PageSize, Password, ReadOptions, UserDetails,
};
use standby::position::StreamRevision;

async fn node(profile: Profile) -> Node {
    Node::start(common::secure(NodeConfig::memory().profile(profile)))
        .await
        .expect("dev node starts")
}

fn client(node: &Node, user: &str, password: &str) -> Client {
    let config = common::client_config(node).with_credentials(Credentials::new(user, password));
    Client::new(config).unwrap()
}

fn admin(node: &Node) -> Client {
    client(node, "admin", "changeit")
}

/// Any authenticated request: a read of a stream that does not exist is 404 → `NotFound`, a
/// refused login is 401 → `Unauthorized`.
async fn can_authenticate(c: &Client) -> bool {
    match c
        .read_stream_forward(
            "nothing-here",
            StreamRevision::START,
            PageSize::new(1).unwrap(),
            &ReadOptions::default(),
        )
        .await
    {
        Ok(_) => true,
        Err(Error::Unauthorized { .. }) => false,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

/// Waits (bounded) until a credential poll that started after the call has run.
async fn credential_poll(node: &Node) {
    tokio::time::timeout(std::time::Duration::from_secs(30), node.credential_poll())
        .await
        .expect("a credential poll within 30 s");
}

#[tokio::test]
async fn create_get_disable_enable_reset() {
    for profile in [Profile::V5, Profile::V20, Profile::V21_10, Profile::V25] {
        let node = node(profile).await;
        let admin = admin(&node);
        let password = Password::new("repl-pw");
        let user = NewUser {
            login_name: "repl",
            full_name: "Replicator",
            groups: &["$admins"],
            password: &password,
        };
        admin.create_user(&user).await.unwrap();
        // Same login and password again: the server treats it as a retry.
        admin.create_user(&user).await.unwrap();
        assert_eq!(
            admin.get_user("repl").await.unwrap().found(),
            Some(UserDetails {
                login_name: "repl".into(),
                full_name: "Replicator".into(),
                groups: vec!["$admins".into()],
                disabled: false,
            }),
            "{profile}"
        );

        let repl = client(&node, "repl", "repl-pw");
        assert!(can_authenticate(&repl).await, "{profile}");
        admin.disable_user("repl").await.unwrap();
        // The server drops cached credentials at its next notification poll (about 1 s).
        credential_poll(&node).await;
        assert!(!can_authenticate(&repl).await, "{profile}: disabled");
        assert!(can_authenticate(&admin).await);
        let details = admin.get_user("repl").await.unwrap().found().unwrap();
        assert!(details.disabled);
        admin.disable_user("repl").await.unwrap();

        admin.enable_user("repl").await.unwrap();
        assert!(can_authenticate(&repl).await, "{profile}: enabled again");

        admin
            .reset_password("repl", &Password::new("next-pw"))
            .await
            .unwrap();
        credential_poll(&node).await;
        assert!(!can_authenticate(&repl).await, "{profile}: old password");
        assert!(can_authenticate(&client(&node, "repl", "next-pw")).await);
        node.stop().await;
    }
}

#[tokio::test]
async fn unknown_login_conflict_and_refusals() {
    let node = node(Profile::V25).await;
    let admin = admin(&node);
    assert!(matches!(
        admin.get_user("ghost").await.unwrap(),
        Lookup::NotFound
    ));
    for result in [
        admin.disable_user("ghost").await,
        admin.enable_user("ghost").await,
        admin.reset_password("ghost", &Password::new("x")).await,
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        assert!(!err.is_transient());
    }

    let taken = Password::new("xq-taken-7");
    let err = admin
        .create_user(&NewUser {
            login_name: "ops",
            full_name: "",
            groups: &[],
            password: &taken,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert!(!err.is_transient());
    assert!(
        !err.to_string().contains("xq-taken-7"),
        "no password in errors"
    );

    // `$ops` is not enough, and wrong admin credentials are permanent 401s.
    for caller in [
        client(&node, "ops", "changeit"),
        client(&node, "admin", "nope"),
    ] {
        let err = caller.disable_user("admin").await.unwrap_err();
        assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
        assert!(!err.is_transient());
        assert!(matches!(
            caller.get_user("admin").await.unwrap_err(),
            Error::Unauthorized { .. }
        ));
        let secret = Password::new("pw");
        let err = caller
            .create_user(&NewUser {
                login_name: "eve",
                full_name: "Eve",
                groups: &[],
                password: &secret,
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
        assert!(!err.to_string().contains("changeit"));
    }
    assert!(matches!(
        admin.get_user("eve").await.unwrap(),
        Lookup::NotFound
    ));
    node.stop().await;
}

#[tokio::test]
async fn a_login_with_reserved_characters_round_trips() {
    let node = node(Profile::V25).await;
    let admin = admin(&node);
    let password = Password::new("pw");
    admin
        .create_user(&NewUser {
            login_name: "repl user@site/1",
            full_name: "Odd",
            groups: &[],
            password: &password,
        })
        .await
        .unwrap();
    admin.disable_user("repl user@site/1").await.unwrap();
    let details = admin
        .get_user("repl user@site/1")
        .await
        .unwrap()
        .found()
        .unwrap();
    assert_eq!(details.login_name, "repl user@site/1");
    assert!(details.disabled);
    node.stop().await;
}
