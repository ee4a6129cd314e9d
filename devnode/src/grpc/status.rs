//! Error statuses as the real server sends them: a gRPC code, its message, and the
//! `exception` trailer (plus the trailers that name the details) that clients decode
//! (`src/KurrentDB.Core/Services/Transport/Grpc/RpcExceptions.cs`, `Constants.cs`;
//! docs/grpc.md "Errors").

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

fn with_trailers(
    code: Code,
    message: impl Into<String>,
    trailers: &[(&'static str, String)],
) -> Status {
    let mut map = MetadataMap::new();
    for (k, v) in trailers {
        // Stream names may hold bytes a header cannot; such a trailer is left out rather
        // than failing the answer.
        if let Ok(v) = MetadataValue::try_from(v.as_str()) {
            map.insert(*k, v);
        }
    }
    Status::with_metadata(code, message, map)
}

pub(crate) fn access_denied() -> Status {
    with_trailers(
        Code::PermissionDenied,
        "Access Denied",
        &[("exception", "access-denied".into())],
    )
}

pub(crate) fn stream_deleted(stream: &str) -> Status {
    with_trailers(
        Code::FailedPrecondition,
        format!("Event stream '{stream}' is deleted."),
        &[
            ("exception", "stream-deleted".into()),
            ("stream-name", stream.into()),
        ],
    )
}

/// Delete and Tombstone (an Append answers a wrong expected version in its reply instead).
/// `expected` and `actual` are the server's numbers: −2 any, −1 no stream, −4 stream exists.
pub(crate) fn wrong_expected_version(op: &str, stream: &str, expected: i64, actual: i64) -> Status {
    with_trailers(
        Code::FailedPrecondition,
        format!(
            "{op} failed due to WrongExpectedVersion. Stream: {stream}, Expected version: \
             {expected}, Actual version: {actual}"
        ),
        &[
            ("exception", "wrong-expected-version".into()),
            ("stream-name", stream.into()),
            ("expected-version", expected.to_string()),
            ("actual-version", actual.to_string()),
        ],
    )
}

pub(crate) fn maximum_append_size_exceeded(max: usize) -> Status {
    with_trailers(
        Code::InvalidArgument,
        format!("Maximum Append Size of {max} Exceeded."),
        &[
            ("exception", "maximum-append-size-exceeded".into()),
            ("maximum-append-size", max.to_string()),
        ],
    )
}

pub(crate) fn missing_metadata(property: &str) -> Status {
    with_trailers(
        Code::InvalidArgument,
        format!("Required Metadata Property '{property}' is missing"),
        &[
            ("exception", "missing-required-metadata-property".into()),
            ("required-metadata-properties", "type,content-type".into()),
        ],
    )
}

pub(crate) fn invalid_transaction() -> Status {
    with_trailers(
        Code::InvalidArgument,
        "Invalid Transaction",
        &[("exception", "invalid-transaction".into())],
    )
}

pub(crate) fn user_not_found(login: &str) -> Status {
    with_trailers(
        Code::NotFound,
        format!("User '{login}' is not found."),
        &[
            ("exception", "user-not-found".into()),
            ("login-name", login.into()),
        ],
    )
}

pub(crate) fn user_conflict(login: &str) -> Status {
    with_trailers(
        Code::FailedPrecondition,
        "Conflict.",
        &[
            ("exception", "user-conflict".into()),
            ("login-name", login.into()),
        ],
    )
}

/// `RpcExceptions.RequiredArgument`: a required field of the request is absent.
pub(crate) fn required(name: &str) -> Status {
    Status::invalid_argument(format!("'{name}' is a required argument"))
}

/// `RpcExceptions.InvalidCombination`.
pub(crate) fn invalid_combination(what: &str) -> Status {
    Status::invalid_argument(format!("The combination of {what} is invalid."))
}

/// An append whose messages are out of order (options not first, options twice): the
/// server throws `InvalidOperationException`, which reaches the client as UNKNOWN.
pub(crate) fn bad_framing() -> Status {
    Status::unknown("Exception was thrown by handler.")
}

/// Storage failures: the log could not be written.
pub(crate) fn internal(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("Server Is Not Ready: {e}"))
}
