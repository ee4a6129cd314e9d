//! The gRPC front: the v1 Streams, Users, Gossip and ServerFeatures services (docs/grpc.md)
//! over the same [`Store`](crate::store::Store) as the AtomPub front, on the same port.
//!
//! As on the real server, one listener speaks HTTP/1.1 and HTTP/2 (h2c in plaintext, ALPN `h2`
//! under TLS); a request whose content type is `application/grpc…` goes to the tonic services,
//! everything else to the AtomPub router. The v5 profile has no gRPC: its requests fall
//! through to the AtomPub router, which answers 404.
//!
//! * `streams` – Append, BatchAppend, Delete, Tombstone.
//! * `read` – Read: stream and `$all` reads, subscriptions, server-side filters.
//! * `admin` – Users, Gossip, ServerFeatures.
//! * `status` – the error statuses with the `exception` trailers clients decode.

mod admin;
mod read;
mod status;
mod streams;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::{Request, Response};
use tower::ServiceExt;

use proto::event_store::client::gossip::gossip_server::GossipServer;
use proto::event_store::client::server_features::server_features_server::ServerFeaturesServer;
use proto::event_store::client::streams::streams_server::StreamsServer;
use proto::event_store::client::users::users_server::UsersServer;

use crate::auth::{authenticate, Auth};
use crate::http::App;
use crate::store::acl::Principal;

/// Largest gRPC message the node decodes. Above the 1 MiB append limit so that an oversized
/// append reaches the limit check and gets the server's `maximum-append-size-exceeded` answer
/// rather than a transport error.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The node's router: gRPC by content type, AtomPub otherwise.
pub(crate) fn front(app: Arc<App>, http: Router) -> Router {
    let faults = app.clone();
    if app.wire.is_v5() {
        let dispatch = tower::service_fn(move |req: Request<Body>| {
            let http = http.clone();
            let faults = faults.clone();
            async move {
                if faults.faults.before_answer().await {
                    return Ok::<_, Infallible>(not_ready_http());
                }
                http.oneshot(req).await
            }
        });
        return Router::new().fallback_service(dispatch);
    }
    let grpc = tonic::service::Routes::new(
        StreamsServer::new(streams::Streams::new(app.clone()))
            .max_decoding_message_size(MAX_MESSAGE),
    )
    .add_service(UsersServer::new(admin::Users::new(app.clone())))
    .add_service(GossipServer::new(admin::Gossip::new(app.clone())))
    .add_service(ServerFeaturesServer::new(admin::Features::new(app)))
    .prepare();
    let dispatch = tower::service_fn(move |req: Request<Body>| {
        let grpc = grpc.clone();
        let http = http.clone();
        let faults = faults.clone();
        async move {
            if faults.faults.before_answer().await {
                return Ok(if is_grpc(&req) {
                    tonic::Status::unavailable("Server Is Not Ready").into_http()
                } else {
                    not_ready_http()
                });
            }
            if is_grpc(&req) {
                Ok::<_, Infallible>(call_grpc(grpc, req).await)
            } else {
                http.oneshot(req).await
            }
        }
    });
    Router::new().fallback_service(dispatch)
}

/// The 503 a node answers while not ready (`AuthenticationMiddleware`, the `NotReady` branch).
fn not_ready_http() -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("5"),
    );
    resp
}

fn is_grpc(req: &Request<Body>) -> bool {
    req.headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Runs a gRPC call under its deadline (`grpc-timeout`). A deadline of zero, or one that
/// passes before the answer starts, answers DEADLINE_EXCEEDED as the real server does; a
/// streaming answer that has started runs on (subscriptions carry no deadline in practice).
async fn call_grpc(grpc: tonic::service::Routes, req: Request<Body>) -> Response<Body> {
    let deadline = req
        .headers()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_timeout);
    let call = grpc.oneshot(req);
    let resp = match deadline {
        Some(d) if d.is_zero() => return deadline_exceeded(),
        Some(d) => match tokio::time::timeout(d, call).await {
            Ok(r) => r,
            Err(_) => return deadline_exceeded(),
        },
        None => call.await,
    };
    match resp {
        Ok(r) => r.map(Body::new),
        Err(never) => match never {},
    }
}

fn deadline_exceeded() -> Response<Body> {
    tonic::Status::deadline_exceeded("Deadline Exceeded").into_http()
}

/// `grpc-timeout`: at most 8 digits and a unit (gRPC over HTTP/2, "Requests"). `None` for a
/// malformed value, which is then ignored.
fn parse_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The caller of a gRPC request: `None` = anonymous. Wrong credentials are refused before any
/// handler, as by the server's authentication middleware.
pub(crate) fn principal<T>(
    app: &App,
    req: &tonic::Request<T>,
) -> Result<Option<Principal>, tonic::Status> {
    let header = req
        .metadata()
        .get("authorization")
        .map(|v| v.as_encoded_bytes());
    match authenticate(app.passthrough, &app.users, header) {
        Auth::Anonymous => Ok(None),
        Auth::User(p) => Ok(Some(p)),
        Auth::Bad => Err(tonic::Status::unauthenticated("Bad credentials")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_per_unit_and_reject_garbage() {
        assert_eq!(parse_timeout("0n"), Some(Duration::ZERO));
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "m", "123456789m", "10x", "-1m", "1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
    }
}
