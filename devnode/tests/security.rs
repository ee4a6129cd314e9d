//! Security modes per profile (research `real-server-behaviour.md` §2): secure mode over TLS,
//! `--insecure` with the passthrough semantics, plaintext with authentication on v5 and v26, and
//! the refusal to start a v20–v25 node with neither a certificate nor `--insecure`.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};

use common::*;
use devnode::{Node, NodeConfig, Profile, SecurityError};
use reqwest::Method;
use serde_json::json;

const REFUSAL: &str = "A certificate is required unless insecure mode (--insecure) is set.";

#[tokio::test]
async fn insecure_runs_every_request_as_system() {
    for profile in [Profile::V20, Profile::V21_10, Profile::V25, Profile::V26] {
        let node = Node::start(NodeConfig::memory().profile(profile).insecure())
            .await
            .unwrap();
        assert!(node.url().starts_with("http://"), "{profile}");
        let anon = Api::new(&node.url()).anonymous();

        // No user management at all.
        assert_eq!(anon.get("/users").await.status, 404, "{profile}");
        assert_eq!(anon.get("/users/admin").await.status, 404, "{profile}");
        let admin = anon.as_user("admin", "changeit");
        assert_eq!(admin.get("/users/").await.status, 404, "{profile}");

        // Anonymous writes and reads `$all`, even a stream whose ACL names only `$admins`.
        let r = anon
            .append("anon", None, &json!([event(&new_id(), "t", json!({}))]))
            .await;
        assert_eq!(r.status, 201, "{profile}");
        let r = anon
            .send(
                Method::POST,
                "/streams/anon/metadata",
                &[
                    ("Content-Type", "application/json"),
                    ("ES-EventId", &new_id()),
                ],
                Some(br#"{"$acl":{"$r":"$admins","$w":"$admins"}}"#.to_vec()),
            )
            .await;
        assert_eq!(r.status, 201, "{profile}");
        assert_eq!(anon.get("/streams/anon").await.status, 200, "{profile}");
        let all = anon.get("/streams/$all/head/backward/20").await;
        assert_eq!(all.status, 200, "{profile}");
        assert!(
            all.json()["entries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["title"] == "0@anon"),
            "{profile}: {}",
            all.json()
        );

        // Credentials are ignored, wrong ones included.
        let wrong = anon.as_user("admin", "wrong");
        assert_eq!(wrong.get("/streams/anon").await.status, 200, "{profile}");

        let info = anon.get("/info").await.json();
        assert_eq!(info["authentication"]["type"], "insecure", "{profile}");
        assert_eq!(info["features"]["userManagement"], false, "{profile}");
        node.stop().await;
    }
}

/// Accounts from an external provider (LDAPS, OAuth): the users authenticate and ACLs bind
/// them, but the node serves no `/users`, so no account can be disabled through it.
#[tokio::test]
async fn external_users_authenticate_without_user_management() {
    let node = Node::start(
        NodeConfig::memory()
            .user(devnode::User::new("app", "changeit", &[]))
            .external_users(),
    )
    .await
    .unwrap();
    let anon = Api::new(&node.url()).anonymous();
    let admin = anon.as_user("admin", "changeit");
    assert_eq!(admin.get("/users/app").await.status, 404);
    assert_eq!(admin.get("/users/$current").await.status, 404);
    let info = anon.get("/info").await.json();
    assert_eq!(info["features"]["userManagement"], false);
    assert_ne!(info["authentication"]["type"], "insecure");

    let body = json!([event(&new_id(), "t", json!({}))]);
    assert_eq!(anon.append("s", None, &body).await.status, 401);
    let app = anon.as_user("app", "changeit");
    assert_eq!(app.append("s", None, &body).await.status, 201);
    assert_eq!(
        anon.as_user("app", "wrong")
            .append("s", None, &body)
            .await
            .status,
        401
    );
    // ACLs bind the external user as any other.
    assert_eq!(app.get("/streams/$all/head/backward/1").await.status, 401);
    node.stop().await;
}

#[tokio::test]
async fn tls_mode_authenticates() {
    let (node, admin) = start(Profile::V25).await;
    assert!(node.is_tls());
    assert!(node.url().starts_with("https://127.0.0.1:"));
    let anon = admin.anonymous();
    let ev = json!([event(&new_id(), "t", json!({}))]);
    assert_eq!(anon.append("s", None, &ev).await.status, 401);
    let wrong = admin.as_user("admin", "wrong");
    assert_eq!(wrong.append("s", None, &ev).await.status, 401);
    let r = admin.append("s", None, &ev).await;
    assert_eq!(r.status, 201);
    // Links name the scheme the node serves.
    assert!(
        r.header("location")
            .unwrap()
            .starts_with("https://127.0.0.1:"),
        "{:?}",
        r.header("location")
    );
    assert_eq!(
        admin
            .get_with("/users/admin", &[("Accept", "application/json")])
            .await
            .status,
        200
    );
    let info = admin.get("/info").await.json();
    assert_eq!(info["authentication"]["type"], "internal");
    assert_eq!(info["features"]["userManagement"], true);

    // No plaintext on the TLS port.
    let plain = Api::new(&node.url().replacen("https://", "http://", 1));
    let r = plain.http.get(format!("{}/info", plain.base)).send().await;
    assert!(
        r.as_ref().map_or(true, |r| !r.status().is_success()),
        "{r:?}"
    );
    node.stop().await;
}

#[tokio::test]
async fn v20_to_v25_refuse_plaintext_without_insecure() {
    for profile in [Profile::V20, Profile::V21_10, Profile::V25] {
        let err = Node::start(NodeConfig::memory().profile(profile))
            .await
            .err()
            .unwrap_or_else(|| panic!("{profile}: started without a certificate"));
        assert!(
            matches!(
                err,
                devnode::Error::Security(SecurityError::CertificateRequired)
            ),
            "{profile}: {err:?}"
        );
        assert_eq!(err.to_string(), REFUSAL, "{profile}");

        // `--disable-tls` is 26.2's.
        let err = Node::start(NodeConfig::memory().profile(profile).disable_tls())
            .await
            .err()
            .unwrap_or_else(|| panic!("{profile}: started with --disable-tls"));
        assert!(err.to_string().contains("--disable-tls"), "{err}");
    }
    // Event Store 5 has neither TLS on HTTP nor --insecure.
    let err = Node::start(NodeConfig::memory().profile(Profile::V5).insecure())
        .await
        .err()
        .expect("v5 has no --insecure");
    assert!(err.to_string().contains("--insecure"), "{err}");
}

#[tokio::test]
async fn v26_and_v5_serve_plaintext_with_authentication() {
    for cfg in [
        NodeConfig::memory(),
        NodeConfig::memory().disable_tls(),
        NodeConfig::memory().profile(Profile::V5),
    ] {
        let profile = cfg.profile;
        let node = Node::start(cfg).await.unwrap();
        assert!(node.url().starts_with("http://"), "{profile}");
        let admin = Api::new(&node.url());
        let ev = json!([event(&new_id(), "t", json!({}))]);
        assert_eq!(admin.anonymous().append("s", None, &ev).await.status, 401);
        assert_eq!(admin.append("s", None, &ev).await.status, 201, "{profile}");
        assert_eq!(
            admin
                .get_with("/users/admin", &[("Accept", "application/json")])
                .await
                .status,
            200,
            "{profile}"
        );
        node.stop().await;
    }
}

/// The binary: `--profile v25` alone refuses to start with the real message; `--dev-certs DIR`
/// writes a CA and a node certificate a client accepts.
#[tokio::test]
async fn cli_refuses_plaintext_v25_and_serves_dev_certs() {
    let out = Command::new(env!("CARGO_BIN_EXE_devnode"))
        .args(["--http", "127.0.0.1:0", "--profile", "v25"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(REFUSAL), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_devnode"))
            .args(["--http", "127.0.0.1:0", "--profile", "v25", "--dev-certs"])
            .arg(&certs)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The node prints its URL once it listens.
    let stdout = child.0.stdout.take().unwrap();
    let url = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map(Result::unwrap)
            .find_map(|l| {
                l.strip_prefix("devnode listening on ")
                    .map(|r| r.split_whitespace().next().unwrap().to_owned())
            })
    })
    .await
    .unwrap();
    let url = url.expect("the node says where it listens");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    for f in ["ca.crt", "node.crt", "node.key"] {
        assert!(certs.join(f).is_file(), "{f}");
    }
    // A client that trusts only the written CA.
    let pem = std::fs::read(certs.join("ca.crt")).unwrap();
    let ca = rustls_pemfile::certs(&mut &pem[..])
        .next()
        .unwrap()
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    for host in [url.clone(), url.replacen("127.0.0.1", "localhost", 1)] {
        let r = client
            .get(format!("{host}/info"))
            .basic_auth("admin", Some("changeit"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
}

/// Stops the spawned node however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
