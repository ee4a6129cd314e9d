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

/// A recorded status line and headers (`X.headers.txt`).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// Parses `HTTP/1.1 400 Wrong expected EventNumber` followed by `Name: value` lines.
pub fn parse_recorded_headers(text: &[u8]) -> Recorded {
    let text = String::from_utf8_lossy(text);
    let mut lines = text.lines();
    let status_line = lines.next().expect("status line");
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let reason = parts.next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Recorded {
        status,
        reason,
        headers,
    }
}

/// A plain HTTP client for loopback dev nodes (no TLS needed).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}
