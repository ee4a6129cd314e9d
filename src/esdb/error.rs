//! [`Error`]: everything that can go wrong talking to an Event Store node, classified for retries
//! by [`Error::is_transient`].
//!
//! Expected conditions are *not* errors: a missing or hard-deleted stream on a read is a
//! [`Lookup`](super::page::Lookup) value, a repeated hard delete is a
//! [`DeleteOutcome`](super::types::DeleteOutcome). Error texts name the likely fix. No variant
//! ever carries a password.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use super::http::encode::EncodeError;
use crate::position::{CurrentVersion, ExpectedVersion};

/// An Event Store client error, from either wire.
///
/// The variants that carry a method and URL are the HTTP client's and keep their HTTP shapes, so
/// today's callers and matches are untouched. The gRPC client reports through the variants that
/// carry none: the shared ones ([`Error::Config`], [`Error::WrongExpectedVersion`],
/// [`Error::StreamDeleted`]) and the wire-neutral ones from [`Error::Unreachable`] on, which the
/// HTTP client can adopt when both wires move behind one `esdb::Client`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client could not be built from its configuration.
    #[error("invalid Event Store client configuration: {detail}")]
    Config {
        /// What is wrong and how to fix it.
        detail: String,
    },

    /// No TCP/TLS connection could be established.
    #[error(
        "cannot connect to {url}: {source}; check that the node is running, that the base URL \
         (scheme, host, port 2113) is right, and for https that the server certificate is trusted \
         (system roots or the configured CA file)"
    )]
    Connect {
        /// Request URL.
        url: String,
        /// Underlying error.
        #[source]
        source: reqwest::Error,
    },

    /// The request did not complete within its timeout.
    #[error(
        "{method} {url} timed out after {timeout:?}; the node may be overloaded or unreachable, \
         or the request timeout is too short for the page size"
    )]
    Timeout {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// The timeout that expired (request timeout plus long-poll time).
        timeout: Duration,
    },

    /// The connection failed after it was established (reset, truncated body, protocol error).
    #[error("{method} {url} failed in transit: {source}; the request is safe to retry")]
    Transport {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// Underlying error.
        #[source]
        source: reqwest::Error,
    },

    /// 401: the credentials are missing, wrong, or lack the rights for this request.
    #[error(
        "{method} {url} was refused with 401 Unauthorized{} ({}): check the username and password \
         configured for this node, and that the user may do this: reading $all, $settings and \
         other $ streams needs a member of $admins, writes need $w on the stream; since 5.0.2 and \
         23.6 anonymous requests are refused",
        reason_suffix(.reason.as_deref()),
        user_text(.user.as_deref())
    )]
    Unauthorized {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// User name sent (never the password); `None` = anonymous.
        user: Option<String>,
        /// The server's reason phrase, if non-standard.
        reason: Option<String>,
    },

    /// 400 "Wrong expected EventNumber": the stream is not at the expected version.
    #[error(
        "wrong expected version writing to stream {stream:?}: expected {expected}, the stream is \
         at {}; the target stream differs from what the writer assumed (a gap, a divergence or a \
         concurrent writer) and needs attention, do not retry blindly",
        current.map_or_else(|| "an unknown version (no ES-CurrentVersion header)".to_owned(), |c| c.to_string())
    )]
    WrongExpectedVersion {
        /// Stream written to (`$$s` for metadata writes, whose expected version refers to the
        /// metastream).
        stream: String,
        /// The expected version sent.
        expected: ExpectedVersion,
        /// `ES-CurrentVersion` / `Kurrent-CurrentVersion`, if the server sent it.
        current: Option<CurrentVersion>,
    },

    /// The stream is hard-deleted, where the operation cannot treat that as an answer.
    ///
    /// Both wires: HTTP 410, gRPC `exception: stream-deleted`.
    #[error(
        "stream {stream:?} is hard-deleted (tombstoned{}): it can never be written again; skip it \
         or write to another stream",
        reason_suffix(.reason.as_deref())
    )]
    StreamDeleted {
        /// The stream.
        stream: String,
        /// The server's HTTP reason phrase, if non-standard; `None` over gRPC.
        reason: Option<String>,
    },

    /// 404 where the resource must exist (e.g. the AtomPub routes are missing, or a user command
    /// names an unknown login).
    #[error(
        "{method} {url} answered 404 Not Found{}: for /users/<login> requests the user does not \
         exist (check the login); if every /streams request fails like this the AtomPub HTTP API \
         is disabled on the node (enable it with --enable-atom-pub-over-http / \
         EVENTSTORE_ENABLE_ATOM_PUB_OVER_HTTP=true on 20.6+), otherwise check the base URL path",
        reason_suffix(.reason.as_deref())
    )]
    NotFound {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// The server's reason phrase, if non-standard.
        reason: Option<String>,
    },

    /// 409: the request clashes with what exists, e.g. `POST /users` for a login that exists with
    /// another password (`UserManagementMessage.Error.Conflict`).
    #[error(
        "{method} {url} answered 409 Conflict{}: for POST /users the login already exists with a \
         different password (choose another login, or reset that user's password instead); \
         otherwise the resource changed concurrently; retrying the same request will not help",
        reason_suffix(.reason.as_deref())
    )]
    Conflict {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// The server's reason phrase, if non-standard.
        reason: Option<String>,
    },

    /// 400 other than wrong-expected-version: the request itself is invalid.
    #[error(
        "{method} {url} was rejected with 400 Bad Request{}: the request is invalid for this \
         server version; this is a client bug or a version mismatch, retrying will not help",
        reason_suffix(.reason.as_deref())
    )]
    BadRequest {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// The server's reason phrase (the only error text the server sends).
        reason: Option<String>,
    },

    /// 3xx: the server wants the request sent elsewhere (e.g. a follower pointing at the leader).
    #[error(
        "{method} {url} was redirected ({status}) to {}: point the base URL at the leader node \
         (see /gossip) or at a load balancer that routes to it (a redirect to .../incoming/<id> \
         means a write without an event id, which is a client bug)",
        location.as_deref().unwrap_or("an unspecified location")
    )]
    Redirected {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// The 3xx status.
        status: StatusCode,
        /// `Location` header.
        location: Option<String>,
    },

    /// Any other unexpected status.
    #[error(
        "{method} {url} answered {status}{}{}; {}",
        reason_suffix(.reason.as_deref()),
        current_version.map(|c| format!(" (current version {c})")).unwrap_or_default(),
        status_hint(*.status)
    )]
    Status {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// HTTP status.
        status: StatusCode,
        /// The server's reason phrase, if non-standard (HTTP/1.1 only; HTTP/2 has none).
        reason: Option<String>,
        /// `ES-CurrentVersion` / `Kurrent-CurrentVersion`, if sent.
        current_version: Option<CurrentVersion>,
    },

    /// The response could not be understood.
    #[error(
        "cannot decode the response to {method} {url}: {detail}; check that the base URL points \
         at an Event Store node and not at a proxy or another service"
    )]
    Decode {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// What was wrong.
        detail: String,
    },

    /// The events cannot be sent in the chosen request form.
    #[error(transparent)]
    Encode(#[from] EncodeError),

    /// No connection to the node could be made, or it broke during the call (gRPC
    /// `UNAVAILABLE` from the transport, `CANCELLED`).
    #[error(
        "cannot reach {endpoint} for {op}: {detail}; check that the node is running, that the \
         connection string's host and port (2113) are right, and that tls= matches the server \
         (tls=false for an --insecure node; with TLS, tlsCAFile names the cluster CA); the call \
         is safe to retry"
    )]
    Unreachable {
        /// What was being done.
        op: &'static str,
        /// `host:port` of the node.
        endpoint: String,
        /// What the transport said.
        detail: String,
    },

    /// The call did not finish within its deadline (gRPC `DEADLINE_EXCEEDED`), or the server
    /// gave up committing it (`ABORTED` "Operation timed out").
    #[error(
        "{op} on {endpoint} {}; the node may be overloaded, or the deadline (defaultDeadline) \
         too short; a write may still have been applied, so retry it with the same event ids and \
         expected revision",
        .after.map_or_else(|| "timed out on the server".to_owned(), |d| format!("did not finish within its deadline of {d:?}"))
    )]
    DeadlineExceeded {
        /// What was being done.
        op: &'static str,
        /// `host:port` of the node.
        endpoint: String,
        /// The client's deadline; `None` when the server timed out on its own.
        after: Option<Duration>,
    },

    /// The node cannot serve now: not ready, too busy, shutting down, or failing internally
    /// (gRPC `UNAVAILABLE`, `INTERNAL`, `UNKNOWN`, `RESOURCE_EXHAUSTED`, `DATA_LOSS`).
    #[error(
        "{op} on {endpoint} failed on the server: {detail}; retry later and check the server log"
    )]
    Unavailable {
        /// What was being done.
        op: &'static str,
        /// `host:port` of the node.
        endpoint: String,
        /// The status code and message.
        detail: String,
    },

    /// The node refused the caller: unknown user, wrong password, disabled account, or missing
    /// rights (gRPC `PERMISSION_DENIED` / `UNAUTHENTICATED`, `exception: access-denied`).
    #[error(
        "{op} on {endpoint} was refused: access denied {}: check the credentials (user info of \
         the connection string, or the configured username and password, or the X.509 user \
         certificate), that the account is enabled, and that the user may do this: reading $all, \
         $settings and other $ streams needs a member of $admins, writes need $w on the stream",
        user_text(.user.as_deref())
    )]
    AccessDenied {
        /// What was being done.
        op: &'static str,
        /// `host:port` of the node.
        endpoint: String,
        /// User name sent (never the password); `None` = anonymous.
        user: Option<String>,
    },

    /// The node is not the leader and the operation needs it (`exception: not-leader`). The gRPC
    /// client has already switched to the leader it named, so a retry goes there: transient.
    #[error(
        "{op} on {endpoint} needs the leader, and this node is not the leader{}; the client now \
         connects to the leader, so retry; if this repeats, the cluster is electing or \
         nodePreference/the hosts point at a read-only replica",
        .leader.as_ref().map(|l| format!(" (the leader is {l})")).unwrap_or_default()
    )]
    NotLeader {
        /// What was being done.
        op: &'static str,
        /// `host:port` of the node that answered.
        endpoint: String,
        /// The leader it named, if any.
        leader: Option<crate::esdb::node::Endpoint>,
    },

    /// An event or the whole append is above the server's size limit
    /// (`maximum-append-event-size-exceeded`, `maximum-append-size-exceeded`).
    #[error(
        "append to {stream:?} is too large: {detail}; nothing was written; split the append into \
         smaller ones, or raise the server's MaxAppendSize / MaxAppendEventSize"
    )]
    TooLarge {
        /// The stream written to.
        stream: String,
        /// Which limit, and the sizes the server reported.
        detail: String,
    },

    /// A user command names a login that does not exist (`exception: user-not-found`).
    #[error(
        "user {login:?} does not exist on the node: check the login, or create the user first"
    )]
    UserNotFound {
        /// The login.
        login: String,
    },

    /// The node refused the request itself (gRPC `INVALID_ARGUMENT`, `FAILED_PRECONDITION`,
    /// `NOT_FOUND`, `UNIMPLEMENTED`, …): retrying the same request will not help.
    #[error(
        "{op} on {endpoint} was rejected ({code}{}): {message:?}; {}",
        .exception.as_deref().map(|e| format!(", {e}")).unwrap_or_default(),
        rejected_hint(.code, .exception.as_deref())
    )]
    Rejected {
        /// What was being done.
        op: &'static str,
        /// `host:port` of the node.
        endpoint: String,
        /// The gRPC status code name, e.g. `InvalidArgument`.
        code: &'static str,
        /// The `exception` trailer, if any.
        exception: Option<String>,
        /// The status message.
        message: String,
    },

    /// A reply that does not follow the protocol (a required field missing, a bad UUID).
    #[error(
        "cannot understand the reply to {op} from {endpoint}: {detail}; check that the \
         connection string points at an Event Store / KurrentDB node"
    )]
    Protocol {
        /// What was being done.
        op: &'static str,
        /// `host:port` of the node.
        endpoint: String,
        /// What was wrong.
        detail: String,
    },
}

impl Error {
    /// The node refused who is asking: AtomPub's 401, gRPC's access denied or unauthenticated.
    pub fn is_access_denied(&self) -> bool {
        matches!(
            self,
            Error::Unauthorized { .. } | Error::AccessDenied { .. }
        )
    }

    /// Whether retrying the same request later may succeed: connection failures, timeouts,
    /// transport errors, 408, 429 and 5xx; over gRPC also an unavailable node and "not leader"
    /// (the client has switched to the leader). Other 4xx (409 [`Error::Conflict`] included),
    /// access denied, decode and encode errors, redirects, rejected requests and
    /// [`Error::WrongExpectedVersion`] are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::Timeout { .. }
            | Error::Transport { .. }
            | Error::Unreachable { .. }
            | Error::DeadlineExceeded { .. }
            | Error::Unavailable { .. }
            | Error::NotLeader { .. } => true,
            Error::Status { status, .. } => is_transient_status(*status),
            Error::Config { .. }
            | Error::Unauthorized { .. }
            | Error::WrongExpectedVersion { .. }
            | Error::StreamDeleted { .. }
            | Error::NotFound { .. }
            | Error::Conflict { .. }
            | Error::BadRequest { .. }
            | Error::Redirected { .. }
            | Error::Decode { .. }
            | Error::Encode(_)
            | Error::AccessDenied { .. }
            | Error::TooLarge { .. }
            | Error::UserNotFound { .. }
            | Error::Rejected { .. }
            | Error::Protocol { .. } => false,
        }
    }

    /// The HTTP status, for errors that came from a response.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Unauthorized { .. } => Some(StatusCode::UNAUTHORIZED),
            Error::WrongExpectedVersion { .. } | Error::BadRequest { .. } => {
                Some(StatusCode::BAD_REQUEST)
            }
            Error::StreamDeleted { .. } => Some(StatusCode::GONE),
            Error::NotFound { .. } => Some(StatusCode::NOT_FOUND),
            Error::Conflict { .. } => Some(StatusCode::CONFLICT),
            Error::Redirected { status, .. } | Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A short, bounded label for metrics (`standby_errors_total{kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config { .. } => "config",
            Error::Connect { .. } => "connect",
            Error::Timeout { .. } => "timeout",
            Error::Transport { .. } => "transport",
            Error::Unauthorized { .. } => "unauthorized",
            Error::WrongExpectedVersion { .. } => "wrong_expected_version",
            Error::StreamDeleted { .. } => "stream_deleted",
            Error::NotFound { .. } => "not_found",
            Error::Conflict { .. } => "conflict",
            Error::BadRequest { .. } => "bad_request",
            Error::Redirected { .. } => "redirected",
            Error::Status { .. } => "status",
            Error::Decode { .. } => "decode",
            Error::Encode(_) => "encode",
            Error::Unreachable { .. } => "connect",
            Error::DeadlineExceeded { .. } => "timeout",
            Error::Unavailable { .. } => "unavailable",
            Error::AccessDenied { .. } => "unauthorized",
            Error::NotLeader { .. } => "not_leader",
            Error::TooLarge { .. } => "too_large",
            Error::UserNotFound { .. } => "not_found",
            Error::Rejected { .. } => "rejected",
            Error::Protocol { .. } => "decode",
        }
    }
}

/// 408, 429 and 5xx.
pub fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

fn reason_suffix(reason: Option<&str>) -> String {
    match reason {
        Some(reason) if !reason.is_empty() => format!(" \"{reason}\""),
        _ => String::new(),
    }
}

fn user_text(user: Option<&str>) -> String {
    match user {
        Some(user) => format!("as user {user:?}"),
        None => "anonymously: no credentials are configured".to_owned(),
    }
}

fn rejected_hint(code: &str, exception: Option<&str>) -> &'static str {
    match (code, exception) {
        (_, Some("missing-required-metadata-property")) => {
            "every event needs a type and a content type; this is a client bug"
        }
        (_, Some("stream-not-found")) => "the stream does not exist; check the stream name",
        (_, Some("user-conflict")) => {
            "the login already exists; choose another login, or reset that user's password"
        }
        ("Unimplemented", _) => {
            "the node does not offer this call: it is older than 20.6, or not an Event Store node"
        }
        _ => "the request is invalid for this server version; this is a client bug or a version mismatch",
    }
}

fn status_hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        304 => "the page did not change (If-None-Match matched) where the client expected content",
        406 => "the server cannot produce the requested media type; it may be too old or a proxy rewrote the Accept header",
        408 => "the server timed out handling the request; retry, or lower the page size",
        413 => "an event is larger than the server's 4 MiB limit; the server may still have written it, so check the stream before resending",
        415 => "the server does not accept this Content-Type; it may be too old for the chosen header family (use the ES family)",
        429 => "the server is rate-limiting; retry later",
        500 => "the server failed (e.g. write timeout, read error, page size above 4096); retry later and check the server log",
        503 => "the node is not ready (starting, catching up or too busy); retry later",
        s if (500..600).contains(&s) => "server-side failure; retry later and check the server log",
        _ => "unexpected answer for this request; check the server version and the base URL",
    }
}

impl crate::retry::Transient for Error {
    fn is_transient(&self) -> bool {
        Error::is_transient(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::StreamRevision;

    fn status(code: u16) -> Error {
        Error::Status {
            method: Method::GET,
            url: "http://n/x".into(),
            status: StatusCode::from_u16(code).unwrap(),
            reason: None,
            current_version: None,
        }
    }

    #[test]
    fn transient_classification() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(status(code).is_transient(), "{code}");
        }
        for code in [304, 405, 406, 409, 413, 415] {
            assert!(!status(code).is_transient(), "{code}");
        }
        let wev = Error::WrongExpectedVersion {
            stream: "s".into(),
            expected: ExpectedVersion::NoStream,
            current: Some(CurrentVersion::Revision(StreamRevision::START)),
        };
        assert!(!wev.is_transient());
        assert_eq!(wev.status(), Some(StatusCode::BAD_REQUEST));
        assert!(wev.to_string().contains("the stream is at 0"));
        let bad = Error::BadRequest {
            method: Method::POST,
            url: "u".into(),
            reason: Some("Write request body invalid.".into()),
        };
        assert!(!bad.is_transient());
        assert!(bad.to_string().contains("\"Write request body invalid.\""));
    }

    #[test]
    fn unauthorized_names_user_and_fix() {
        let err = Error::Unauthorized {
            method: Method::GET,
            url: "http://n:2113/streams/%24all".into(),
            user: Some("admin".into()),
            reason: None,
        };
        let text = err.to_string();
        assert!(text.contains("\"admin\""));
        assert!(text.contains("http://n:2113/streams/%24all"));
        assert!(text.contains("$admins"));
        assert!(!err.is_transient());
        let anonymous = Error::Unauthorized {
            method: Method::GET,
            url: "u".into(),
            user: None,
            reason: None,
        };
        assert!(anonymous.to_string().contains("no credentials"));
    }

    #[test]
    fn status_text_keeps_reason_and_current_version() {
        let err = Error::Status {
            method: Method::POST,
            url: "u".into(),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            reason: Some("Too large events received. Limit is 4mb".into()),
            current_version: Some(CurrentVersion::NoStream),
        };
        let text = err.to_string();
        assert!(text.contains("Limit is 4mb"));
        assert!(text.contains("current version no stream"));
        assert_eq!(err.kind(), "status");
    }
}
