//! Shared helpers for the integration tests: recorded fixtures and a plain HTTP client.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

/// The recorded wire samples, copied with their provenance README from the wire contract.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/http-api")
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(name))
        .unwrap_or_else(|e| panic!("fixture {name} is not JSON: {e}"))
}

/// A recorded status line and headers (`X.headers.txt`), parsed by the same function the client
/// uses for them, so the reason phrase is kept exactly when hyper would keep it.
pub fn recorded_head(name: &str) -> standby::esdb::RawResponse {
    let text = String::from_utf8(fixture(name)).expect("headers files are text");
    standby::esdb::RawResponse::from_http1_head(&text, bytes::Bytes::new())
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A plain HTTP client for loopback dev nodes (no TLS needed).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}
