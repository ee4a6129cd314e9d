//! gRPC status + trailers → [`Error`], with the same transient/permanent split and "what to do"
//! texts as the HTTP client.
//!
//! The server says what went wrong in the `exception` trailer and names the details in more
//! trailers (`KurrentDB src/KurrentDB.Core/Services/Transport/Grpc/RpcExceptions.cs`,
//! `Constants.cs`); the status code alone is ambiguous (`NotFound` is both "not leader" and
//! "user not found"). So the trailer decides first, the code second:
//!
//! | `exception` | code | [`Error`] |
//! |---|---|---|
//! | `not-leader` (+ `leader-endpoint-host`/`-port`) | NotFound | [`Error::NotLeader`] (transient) |
//! | `access-denied` | PermissionDenied | [`Error::AccessDenied`] |
//! | `stream-deleted` (+ `stream-name`) | FailedPrecondition | [`Error::StreamDeleted`] |
//! | `wrong-expected-version` (+ `expected-version`, `actual-version`) | FailedPrecondition | [`Error::WrongExpectedVersion`] |
//! | `maximum-append-size-exceeded`, `maximum-append-event-size-exceeded` | InvalidArgument | [`Error::TooLarge`] |
//! | `user-not-found` (+ `login-name`) | NotFound | [`Error::UserNotFound`] |
//! | — | DeadlineExceeded; Aborted (server commit timeout) | [`Error::DeadlineExceeded`] (transient) |
//! | — | PermissionDenied, Unauthenticated | [`Error::AccessDenied`] |
//! | — | Unavailable from the transport, Cancelled | [`Error::Unreachable`] (transient) |
//! | — | Unavailable, Internal, Unknown, ResourceExhausted, DataLoss | [`Error::Unavailable`] (transient) |
//! | anything else | | [`Error::Rejected`] (permanent) |

use std::time::Duration;

use tonic::{Code, Status};

use crate::esdb::error::Error;
use crate::esdb::node::Endpoint;
use crate::position::{CurrentVersion, ExpectedVersion, StreamRevision};

/// What a failed call was doing, for the error text.
#[derive(Clone, Debug, Default)]
pub struct CallInfo {
    /// Operation name, e.g. `append`.
    pub op: &'static str,
    /// `host:port` of the node called.
    pub endpoint: String,
    /// The stream the call was about.
    pub stream: Option<String>,
    /// The expected revision sent.
    pub expected: Option<ExpectedVersion>,
    /// The user name sent (never the password); `None` = anonymous.
    pub user: Option<String>,
    /// The deadline set on the call.
    pub deadline: Option<Duration>,
    /// The login a user command was about.
    pub login: Option<String>,
}

impl CallInfo {
    /// A call of `op` to `endpoint`.
    pub fn new(op: &'static str, endpoint: impl Into<String>) -> CallInfo {
        CallInfo {
            op,
            endpoint: endpoint.into(),
            ..CallInfo::default()
        }
    }

    /// About `stream`.
    pub fn stream(mut self, stream: impl Into<String>) -> CallInfo {
        self.stream = Some(stream.into());
        self
    }

    /// With `expected`.
    pub fn expected(mut self, expected: ExpectedVersion) -> CallInfo {
        self.expected = Some(expected);
        self
    }

    /// About user `login`.
    pub fn login(mut self, login: impl Into<String>) -> CallInfo {
        self.login = Some(login.into());
        self
    }

    /// A reply that breaks the protocol.
    pub fn protocol(&self, detail: impl Into<String>) -> Error {
        Error::Protocol {
            op: self.op,
            endpoint: self.endpoint.clone(),
            detail: detail.into(),
        }
    }
}

/// The `exception` trailer.
pub fn exception(status: &Status) -> Option<&str> {
    trailer(status, "exception")
}

fn trailer<'a>(status: &'a Status, key: &str) -> Option<&'a str> {
    status.metadata().get(key).and_then(|v| v.to_str().ok())
}

/// The leader named by a "not leader" status, if it is one and names it.
pub fn not_leader(status: &Status) -> Option<Option<Endpoint>> {
    if exception(status) != Some("not-leader") {
        return None;
    }
    let host = trailer(status, "leader-endpoint-host").filter(|h| !h.is_empty());
    let port = trailer(status, "leader-endpoint-port").and_then(|p| p.parse::<u16>().ok());
    Some(host.zip(port).map(|(host, port)| Endpoint {
        host: host.to_owned(),
        port,
    }))
}

/// Whether the node refused the caller's identity: the answer that makes a plaintext client
/// send its credentials (see `client.rs`, "Credentials").
pub fn is_access_denied(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::PermissionDenied | Code::Unauthenticated
    ) || exception(status) == Some("access-denied")
}

/// Maps a failed call.
pub fn from_status(status: &Status, call: &CallInfo) -> Error {
    let op = call.op;
    let endpoint = call.endpoint.clone();
    let stream = || {
        trailer(status, "stream-name")
            .map(str::to_owned)
            .or_else(|| call.stream.clone())
            .unwrap_or_default()
    };
    if let Some(leader) = not_leader(status) {
        return Error::NotLeader {
            op,
            endpoint,
            leader,
        };
    }
    match exception(status) {
        Some("access-denied") => {
            return Error::AccessDenied {
                op,
                endpoint,
                user: call.user.clone(),
            }
        }
        Some("stream-deleted") => {
            return Error::StreamDeleted {
                stream: stream(),
                reason: None,
            }
        }
        Some("wrong-expected-version") => {
            let expected = call
                .expected
                .or_else(|| {
                    trailer(status, "expected-version")
                        .and_then(|v| v.parse::<i64>().ok())
                        .and_then(ExpectedVersion::from_header_value)
                })
                .unwrap_or(ExpectedVersion::Any);
            let current =
                trailer(status, "actual-version").and_then(|v| v.parse::<CurrentVersion>().ok());
            return Error::WrongExpectedVersion {
                stream: stream(),
                expected,
                current,
            };
        }
        Some("maximum-append-size-exceeded") => {
            return Error::TooLarge {
                stream: stream(),
                detail: format!(
                    "the append is above the server's maximum append size{}",
                    trailer(status, "maximum-append-size")
                        .map(|m| format!(" of {m} bytes"))
                        .unwrap_or_default()
                ),
            }
        }
        Some("maximum-append-event-size-exceeded") => {
            return Error::TooLarge {
                stream: stream(),
                detail: format!(
                    "event {} is {} bytes, above the server's maximum event size{}",
                    trailer(status, "event-id").unwrap_or("(unnamed)"),
                    trailer(status, "proposed-append-event-size").unwrap_or("?"),
                    trailer(status, "maximum-append-event-size")
                        .map(|m| format!(" of {m} bytes"))
                        .unwrap_or_default()
                ),
            }
        }
        Some("user-not-found") => {
            return Error::UserNotFound {
                login: trailer(status, "login-name")
                    .map(str::to_owned)
                    .or_else(|| call.login.clone())
                    .unwrap_or_default(),
            }
        }
        _ => {}
    }
    let detail = || format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        // tonic's own client-side timer (`grpc-timeout`) ends the call as Cancelled.
        Code::DeadlineExceeded | Code::Cancelled
            if status.code() == Code::DeadlineExceeded
                || status.message().contains("Timeout expired") =>
        {
            Error::DeadlineExceeded {
                op,
                endpoint,
                after: call.deadline,
            }
        }
        // The server's commit/prepare/forward timeout (`RpcExceptions.Timeout`).
        Code::Aborted => Error::DeadlineExceeded {
            op,
            endpoint,
            after: None,
        },
        Code::PermissionDenied | Code::Unauthenticated => Error::AccessDenied {
            op,
            endpoint,
            user: call.user.clone(),
        },
        // tonic reports a failed connect as Unavailable with the transport error as source; a
        // server that is up but not ready answers Unavailable without one.
        Code::Unavailable if std::error::Error::source(status).is_some() => Error::Unreachable {
            op,
            endpoint,
            detail: status.message().to_owned(),
        },
        Code::Cancelled => Error::Unreachable {
            op,
            endpoint,
            detail: detail(),
        },
        Code::Unavailable
        | Code::Internal
        | Code::Unknown
        | Code::ResourceExhausted
        | Code::DataLoss => Error::Unavailable {
            op,
            endpoint,
            detail: detail(),
        },
        code => Error::Rejected {
            op,
            endpoint,
            code: code_name(code),
            exception: exception(status).map(str::to_owned),
            message: status.message().to_owned(),
        },
    }
}

/// A BatchAppend error reply: the v1 `google.rpc.Status` with one packed detail
/// (`KurrentDB src/KurrentDB.Core/Services/Transport/Grpc/Status.cs`), decoded by the caller into
/// `code` and, for a wrong expected version, the current revision.
pub fn from_batch_status(
    code: Code,
    message: &str,
    current: Option<CurrentVersion>,
    size_detail: Option<String>,
    call: &CallInfo,
) -> Error {
    let stream = call.stream.clone().unwrap_or_default();
    if let Some(detail) = size_detail {
        return Error::TooLarge { stream, detail };
    }
    match code {
        Code::AlreadyExists => Error::WrongExpectedVersion {
            stream,
            expected: call.expected.unwrap_or(ExpectedVersion::Any),
            current,
        },
        Code::NotFound if message == "StreamDeleted" || message.is_empty() => {
            Error::StreamDeleted {
                stream,
                reason: None,
            }
        }
        Code::InvalidArgument if message.starts_with("MaximumAppend") => Error::TooLarge {
            stream,
            detail: message.to_owned(),
        },
        _ => from_status(&Status::new(code, message), call),
    }
}

/// A revision the server reported, checked against the signed range it stores.
pub fn revision(value: u64, call: &CallInfo) -> Result<StreamRevision, Error> {
    StreamRevision::new(value)
        .ok_or_else(|| call.protocol(format!("stream revision {value} is above i64::MAX")))
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataMap;

    fn status(code: Code, message: &str, trailers: &[(&'static str, &str)]) -> Status {
        let mut metadata = MetadataMap::new();
        for (k, v) in trailers {
            metadata.insert(*k, v.parse().unwrap());
        }
        Status::with_metadata(code, message, metadata)
    }

    fn call() -> CallInfo {
        let mut call = CallInfo::new("append", "node1:2113")
            .stream("orders-1")
            .expected(ExpectedVersion::Exact(StreamRevision::new(4).unwrap()));
        call.user = Some("ops".into());
        call.deadline = Some(Duration::from_secs(2));
        call
    }

    #[test]
    fn not_leader_names_the_leader_and_is_transient() {
        let s = status(
            Code::NotFound,
            "Leader info available",
            &[
                ("exception", "not-leader"),
                ("leader-endpoint-host", "10.0.0.7"),
                ("leader-endpoint-port", "2113"),
            ],
        );
        let err = from_status(&s, &call());
        let Error::NotLeader { leader, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            leader,
            &Some(Endpoint {
                host: "10.0.0.7".into(),
                port: 2113
            })
        );
        assert!(err.is_transient());
        assert!(err.to_string().contains("10.0.0.7:2113"), "{err}");
        // Without usable leader trailers it is still "not leader", not "user not found".
        let s = status(
            Code::NotFound,
            "",
            &[("exception", "not-leader"), ("leader-endpoint-port", "x")],
        );
        assert!(matches!(
            from_status(&s, &call()),
            Error::NotLeader { leader: None, .. }
        ));
    }

    #[test]
    fn access_denied_names_the_user_and_the_fix() {
        for s in [
            status(
                Code::PermissionDenied,
                "Access Denied",
                &[("exception", "access-denied")],
            ),
            status(Code::Unauthenticated, "Bad credentials", &[]),
        ] {
            assert!(is_access_denied(&s));
            let err = from_status(&s, &call());
            assert!(matches!(err, Error::AccessDenied { .. }), "{err:?}");
            assert!(!err.is_transient());
            let text = err.to_string();
            assert!(
                text.contains("\"ops\"") && text.contains("$admins"),
                "{text}"
            );
            assert_eq!(err.kind(), "unauthorized");
        }
    }

    #[test]
    fn stream_deleted_and_wrong_expected_version_from_trailers() {
        let s = status(
            Code::FailedPrecondition,
            "Event stream 'orders-1' is deleted.",
            &[("exception", "stream-deleted"), ("stream-name", "orders-1")],
        );
        let err = from_status(&s, &call());
        assert!(
            matches!(&err, Error::StreamDeleted { stream, .. } if stream == "orders-1"),
            "{err:?}"
        );
        assert!(!err.is_transient());

        let s = status(
            Code::FailedPrecondition,
            "WrongExpectedVersion",
            &[
                ("exception", "wrong-expected-version"),
                ("stream-name", "orders-1"),
                ("expected-version", "4"),
                ("actual-version", "-1"),
            ],
        );
        let err = from_status(&s, &CallInfo::new("delete", "n:1"));
        let Error::WrongExpectedVersion {
            stream,
            expected,
            current,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(stream, "orders-1");
        assert_eq!(
            *expected,
            ExpectedVersion::Exact(StreamRevision::new(4).unwrap())
        );
        assert_eq!(*current, Some(CurrentVersion::NoStream));
        assert!(!err.is_transient());
        assert!(err.to_string().contains("do not retry blindly"));
    }

    #[test]
    fn size_limits_say_what_to_do() {
        let s = status(
            Code::InvalidArgument,
            "Maximum Append Size of 1024 Exceeded.",
            &[
                ("exception", "maximum-append-size-exceeded"),
                ("maximum-append-size", "1024"),
            ],
        );
        let err = from_status(&s, &call());
        assert!(matches!(err, Error::TooLarge { .. }));
        assert!(
            err.to_string().contains("1024 bytes") && err.to_string().contains("split"),
            "{err}"
        );
        let s = status(
            Code::InvalidArgument,
            "",
            &[
                ("exception", "maximum-append-event-size-exceeded"),
                ("event-id", "0f8fad5b-d9cb-469f-a165-70867728950e"),
                ("proposed-append-event-size", "5000"),
                ("maximum-append-event-size", "4096"),
            ],
        );
        let text = from_status(&s, &call()).to_string();
        assert!(
            text.contains("0f8fad5b") && text.contains("5000") && text.contains("4096"),
            "{text}"
        );
    }

    #[test]
    fn deadlines_and_unavailability_are_transient() {
        let err = from_status(
            &status(Code::DeadlineExceeded, "Deadline Exceeded", &[]),
            &call(),
        );
        assert!(matches!(
            err,
            Error::DeadlineExceeded { after: Some(_), .. }
        ));
        assert!(err.is_transient());
        assert!(err.to_string().contains("2s"), "{err}");
        assert_eq!(err.kind(), "timeout");
        let err = from_status(&status(Code::Aborted, "Operation timed out", &[]), &call());
        assert!(matches!(err, Error::DeadlineExceeded { after: None, .. }));
        assert!(err.is_transient());
        for code in [
            Code::Unavailable,
            Code::Internal,
            Code::Unknown,
            Code::ResourceExhausted,
        ] {
            let err = from_status(&status(code, "Server Is Not Ready", &[]), &call());
            assert!(matches!(err, Error::Unavailable { .. }), "{code:?}");
            assert!(err.is_transient());
        }
        let err = from_status(&status(Code::Cancelled, "h2 stream reset", &[]), &call());
        assert!(matches!(err, Error::Unreachable { .. }) && err.is_transient());
    }

    #[test]
    fn other_refusals_are_permanent_and_named() {
        let s = status(
            Code::InvalidArgument,
            "Required metadata properties are missing",
            &[
                ("exception", "missing-required-metadata-property"),
                ("required-metadata-properties", "type,content-type"),
            ],
        );
        let err = from_status(&s, &call());
        let Error::Rejected {
            code, exception, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(*code, "InvalidArgument");
        assert_eq!(
            exception.as_deref(),
            Some("missing-required-metadata-property")
        );
        assert!(!err.is_transient());
        assert!(err.to_string().contains("client bug"));
        let err = from_status(&status(Code::Unimplemented, "", &[]), &call());
        assert!(err.to_string().contains("older than 20.6"), "{err}");
        let s = status(
            Code::NotFound,
            "",
            &[("exception", "user-not-found"), ("login-name", "ops")],
        );
        let err = from_status(&s, &CallInfo::new("disable user", "n:1"));
        assert!(matches!(&err, Error::UserNotFound { login } if login == "ops"));
        assert!(!err.is_transient());
    }

    #[test]
    fn batch_append_errors() {
        let current = Some(CurrentVersion::Revision(StreamRevision::new(9).unwrap()));
        let err = from_batch_status(
            Code::AlreadyExists,
            "WrongExpectedVersion",
            current,
            None,
            &call(),
        );
        assert!(matches!(
            err,
            Error::WrongExpectedVersion {
                current: Some(_),
                ..
            }
        ));
        assert!(err.to_string().contains("the stream is at 9"), "{err}");
        let err = from_batch_status(Code::NotFound, "StreamDeleted", None, None, &call());
        assert!(matches!(err, Error::StreamDeleted { .. }));
        let err = from_batch_status(Code::DeadlineExceeded, "", None, None, &call());
        assert!(err.is_transient());
        let err = from_batch_status(Code::PermissionDenied, "", None, None, &call());
        assert!(matches!(err, Error::AccessDenied { .. }));
    }
}
