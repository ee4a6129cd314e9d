//! Shared helpers for the HTTP-level tests: a small reqwest wrapper against a node on 127.0.0.1:0.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

pub mod grpc;

use devnode::{DevCerts, Node, NodeConfig, Profile};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const ATOM: &str = "application/vnd.eventstore.atom+json";
pub const EVENTS: &str = "application/vnd.eventstore.events+json";

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
    /// Link `relation` of a feed body.
    pub fn link(&self, relation: &str) -> Option<String> {
        link(&self.json(), relation)
    }
}

pub fn link(feed: &Value, relation: &str) -> Option<String> {
    feed["links"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .map(|l| l["uri"].as_str().unwrap().to_owned())
}

/// A client bound to one node, with optional credentials.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub creds: Option<(String, String)>,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.to_owned(),
            // Trusts the test binary's development CA, so the same client reads plaintext and
            // secure nodes.
            http: reqwest::Client::builder()
                .use_preconfigured_tls(client_tls())
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            creds: Some(("admin".into(), "changeit".into())),
        }
    }

    pub fn as_user(&self, login: &str, password: &str) -> Api {
        Api {
            creds: Some((login.into(), password.into())),
            ..self.clone()
        }
    }

    pub fn anonymous(&self) -> Api {
        Api {
            creds: None,
            ..self.clone()
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path)
        };
        let mut rb = self.http.request(method, url);
        if let Some((u, p)) = &self.creds {
            rb = rb.basic_auth(u, Some(p));
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let r = rb.send().await.expect("request failed");
        Resp {
            status: r.status(),
            headers: r.headers().clone(),
            body: r.bytes().await.unwrap().to_vec(),
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, &[("Accept", ATOM)], None)
            .await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(Method::GET, path, headers, None).await
    }

    pub async fn append(&self, stream: &str, expected: Option<i64>, events: &Value) -> Resp {
        let ev = expected.map(|e| e.to_string());
        let mut headers = vec![("Content-Type", EVENTS)];
        if let Some(e) = &ev {
            headers.push(("ES-ExpectedVersion", e.as_str()));
        }
        self.send(
            Method::POST,
            &format!("/streams/{stream}"),
            &headers,
            Some(serde_json::to_vec(events).unwrap()),
        )
        .await
    }

    pub async fn delete(&self, stream: &str, hard: bool) -> Resp {
        let h = if hard { "true" } else { "false" };
        self.send(
            Method::DELETE,
            &format!("/streams/{stream}"),
            &[("ES-HardDelete", h)],
            None,
        )
        .await
    }
}

pub fn event(id: &str, ty: &str, data: Value) -> Value {
    serde_json::json!({ "eventId": id, "eventType": ty, "data": data })
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The development certificates of this test binary (under cargo's target tmp directory, one
/// directory per test binary, kept between runs).
pub fn dev_certs() -> &'static DevCerts {
    static CERTS: OnceLock<DevCerts> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("devnode-dev-certs")
            .join(env!("CARGO_CRATE_NAME"));
        DevCerts::ensure(dir).expect("development certificates")
    })
}

/// A rustls client configuration trusting [`dev_certs`]' CA.
pub fn client_tls() -> rustls::ClientConfig {
    let pem = std::fs::read(dev_certs().ca_file()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// `cfg` as the real server of its profile can run with authentication: v20–v25 (which serve
/// plaintext only with `--insecure`) in secure mode with [`dev_certs`]; v5 and v26 unchanged
/// (plaintext with authentication).
pub fn secure(cfg: NodeConfig) -> NodeConfig {
    if cfg.profile.couples_tls_and_auth() {
        cfg.dev_tls(dev_certs()).unwrap()
    } else {
        cfg
    }
}

/// As [`start`], with a log that holds only what the test writes (no server records): for tests
/// of the feed's position arithmetic, which start at position 0.
pub async fn start_empty(profile: Profile) -> (Node, Api) {
    let node = Node::start(secure(
        NodeConfig::memory().profile(profile).server_records(false),
    ))
    .await
    .unwrap();
    let api = Api::new(&node.url());
    (node, api)
}

/// A node of `profile` with authentication (see [`secure`]) and an admin client for it.
pub async fn start(profile: Profile) -> (Node, Api) {
    let node = Node::start(secure(NodeConfig::memory().profile(profile)))
        .await
        .unwrap();
    let api = Api::new(&node.url());
    (node, api)
}
