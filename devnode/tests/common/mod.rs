//! Shared helpers for the HTTP-level tests: a small reqwest wrapper against a node on 127.0.0.1:0.
#![allow(dead_code)]

use devnode::{Node, NodeConfig, Profile};
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
            http: {
                // In a workspace build reqwest also carries standby's `rustls-no-provider`
                // feature, which needs a process-wide provider even for plain HTTP.
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::builder()
            }
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

pub async fn start(profile: Profile) -> (Node, Api) {
    let node = Node::start(NodeConfig::memory().profile(profile))
        .await
        .unwrap();
    let api = Api::new(&node.url());
    (node, api)
}
