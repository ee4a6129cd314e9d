//! Write handlers: appends in every body form (§5.1–§5.3), metadata writes (§5.6), deletes (§5.4).

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use uuid::Uuid;

use super::append::{self, ParseOptions};
use super::feed::escape;
use super::reply::{bad_request, internal, Reply};
use super::router::Ctx;
use super::wire::{self, Wire};
use crate::config::Profile;
use crate::store::acl;
use crate::store::{AppendResult, DeleteResult, Operation, ProposedEvent};

/// Per-event size limit (data + metadata), §5.3.
const MAX_EVENT_SIZE: usize = 4 * 1024 * 1024;
/// Request bodies larger than this are refused outright.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Request body formats a write route understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// events+json, event+json, atom+json: array of events with ids and types.
    Array,
    /// application/json single event.
    Json,
    /// text/xml, application/xml single event (raw text, not JSON).
    Xml,
    /// application/octet-stream single event.
    Raw,
}

fn body_kind(ctx: &Ctx, batches_allowed: bool) -> Result<BodyKind, Reply> {
    let unsupported = || Reply::bare(415, "Invalid or missing Content-Type");
    let Some(ct) = ctx.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return Err(unsupported());
    };
    let Some(media) = wire::request_media(ct) else {
        return Err(unsupported());
    };
    let w = ctx.wire();
    if w.is_atom_json(media) {
        return Ok(BodyKind::Array);
    }
    if batches_allowed && (w.is_events_json(media) || w.is_event_json(media)) {
        return Ok(BodyKind::Array);
    }
    match media {
        wire::JSON => Ok(BodyKind::Json),
        wire::TEXT_XML | wire::APP_XML => Ok(BodyKind::Xml),
        wire::OCTET if batches_allowed => Ok(BodyKind::Raw),
        _ => Err(unsupported()),
    }
}

fn event_id_header(ctx: &Ctx) -> Result<Option<Uuid>, Reply> {
    match ctx.wire().header(&ctx.headers, "EventId") {
        Err(wire::BadHeader) => Err(ctx.header_err("EventId")),
        Ok(None) => Ok(None),
        Ok(Some(v)) => match Uuid::parse_str(v.trim()) {
            Ok(u) if !u.is_nil() => Ok(Some(u)),
            _ => Err(ctx.header_err("EventId")),
        },
    }
}

fn event_type_header(ctx: &Ctx) -> Result<Option<String>, Reply> {
    match ctx.wire().header(&ctx.headers, "EventType") {
        Err(wire::BadHeader) => Err(ctx.header_err("EventType")),
        Ok(v) => Ok(v.map(str::to_owned)),
    }
}

async fn read_body(body: Body) -> Result<bytes::Bytes, Reply> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| bad_request(append::INVALID_BODY))
}

/// `POST /streams/{s}` (§5.1).
pub(super) async fn post_events(ctx: &Ctx, stream: &str, body: Body) -> Reply {
    let kind = match body_kind(ctx, true) {
        Ok(k) => k,
        Err(r) => return r,
    };
    if stream.is_empty() {
        return bad_request("Invalid request. Stream must be non-empty string");
    }
    if let Err(r) = ctx.check(stream, Operation::Write) {
        return r;
    }
    let ty = match event_type_header(ctx) {
        Ok(t) => t,
        Err(r) => return r,
    };
    if kind != BodyKind::Array && ty.is_none() {
        return bad_request(&format!(
            "Must include an event type with the request either in body or as {} header.",
            ctx.wire().header_name("EventType")
        ));
    }
    let id = match event_id_header(ctx) {
        Ok(i) => i,
        Err(r) => return r,
    };
    if kind != BodyKind::Array && id.is_none() {
        // §5.1: redirect to an idempotent URI with a fresh id.
        let loc = format!(
            "{}{}/incoming/{}",
            ctx.base,
            ctx.raw_path.trim_end_matches('/'),
            Uuid::new_v4()
        );
        return Reply::new(307)
            .reason("Temporary Redirect")
            .location(loc)
            .content("text/plain", "Forwarding to idempotent URI");
    }
    let expected = match ctx.expected_version() {
        Ok(e) => e,
        Err(r) => return r,
    };
    if let Err(r) = ctx.require_leader() {
        return r;
    }
    post_entry(
        ctx,
        stream,
        expected,
        kind,
        id.unwrap_or_else(Uuid::nil),
        ty,
        body,
    )
    .await
}

/// `POST /streams/{s}/incoming/{guid}`: single-event forms only (§5.1).
pub(super) async fn post_incoming(ctx: &Ctx, stream: &str, guid: &str, body: Body) -> Reply {
    let kind = match body_kind(ctx, false) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Ok(id) = Uuid::parse_str(guid) else {
        return bad_request("Invalid request. Unable to parse guid");
    };
    if stream.is_empty() {
        return bad_request("Invalid request. Stream must be non-empty string");
    }
    if let Err(r) = ctx.check(stream, Operation::Write) {
        return r;
    }
    let ty = match event_type_header(ctx) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let expected = match ctx.expected_version() {
        Ok(e) => e,
        Err(r) => return r,
    };
    if let Err(r) = ctx.require_leader() {
        return r;
    }
    post_entry(ctx, stream, expected, kind, id, ty, body).await
}

/// `POST /streams/{s}/metadata` (§5.6): one event to `$$s`.
pub(super) async fn metadata_post(ctx: &Ctx, stream: &str, body: Body) -> Reply {
    let kind = match body_kind(ctx, true) {
        Ok(k) => k,
        Err(r) => return r,
    };
    if stream.is_empty() || acl::is_metastream(stream) {
        return bad_request(
            "Invalid request. Stream must be non-empty string and should not be metastream",
        );
    }
    let meta = acl::metastream_of(stream);
    if let Err(r) = ctx.check(&meta, Operation::Write) {
        return r;
    }
    let id = match event_id_header(ctx) {
        Ok(i) => i,
        Err(r) => return r,
    };
    match event_type_header(ctx) {
        Ok(Some(t)) if t != "$metadata" => {
            return bad_request("Bad Request you should not include a event type for metadata")
        }
        Ok(_) => {}
        Err(r) => return r,
    }
    let expected = match ctx.expected_version() {
        Ok(e) => e,
        Err(r) => return r,
    };
    if let Err(r) = ctx.require_leader() {
        return r;
    }
    // Without an id the single-event forms fail in `new Event(...)` (no redirect on this route).
    post_entry(
        ctx,
        &meta,
        expected,
        kind,
        id.unwrap_or_else(Uuid::nil),
        Some("$metadata".to_owned()),
        body,
    )
    .await
}

fn parse_options(w: &Wire) -> ParseOptions {
    ParseOptions {
        drop_leading_type_id: w.is_v5(),
        dotnet_core_messages: !w.is_v5(),
    }
}

/// `AtomController.PostEntry`: parse, size check, write, answer.
async fn post_entry(
    ctx: &Ctx,
    stream: &str,
    expected: i64,
    kind: BodyKind,
    id: Uuid,
    ty: Option<String>,
    body: Body,
) -> Reply {
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let opts = parse_options(ctx.wire());
    let events = match kind {
        BodyKind::Array => match append::parse_events_json(&body, opts) {
            Ok(e) => e,
            Err(e) => return bad_request(&e.0),
        },
        single => {
            // `new Event(id, type, ...)`: the id is checked first, then the type.
            if id.is_nil() {
                let msg = if opts.dotnet_core_messages {
                    "Empty eventId provided. (Parameter 'eventId')"
                } else {
                    "Empty eventId provided."
                };
                return bad_request(msg);
            }
            let Some(ty) = ty.filter(|t| !t.is_empty()) else {
                let msg = if opts.dotnet_core_messages {
                    "Empty eventType provided. (Parameter 'eventType')"
                } else {
                    "Empty eventType provided."
                };
                return bad_request(msg);
            };
            let (data, is_json) = match single {
                BodyKind::Json => (append::single_json(&body), true),
                BodyKind::Xml => (append::single_json(&body), false),
                _ => (body.clone(), false),
            };
            vec![ProposedEvent {
                event_id: id,
                event_type: ty,
                is_json,
                data,
                metadata: bytes::Bytes::new(),
            }]
        }
    };
    // §5.3: the 413 is sent but the write still goes ahead (the size loop does not return).
    let too_big = events
        .iter()
        .any(|e| e.data.len() + e.metadata.len() > MAX_EVENT_SIZE);
    let store = ctx.app.store.clone();
    let s = stream.to_owned();
    // A file-backed write may block on the disk; an in-memory one is over in microseconds, so it
    // runs here rather than paying a hop to the blocking pool and back on every request.
    let result = if store.is_durable() {
        tokio::task::spawn_blocking(move || store.append(&s, expected, events)).await
    } else {
        Ok(store.append(&s, expected, events))
    };
    let reply = match result {
        Err(_) => internal("Write timeout"),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "append failed");
            internal("Write timeout")
        }
        Ok(Ok(r)) => match r {
            AppendResult::Written { .. } if ctx.app.take_write_timeout(stream) => {
                internal("Write timeout")
            }
            AppendResult::Written { first, .. } | AppendResult::Idempotent { first } => {
                Reply::status(201, "Created").location(format!(
                    "{}/streams/{}/{}",
                    ctx.base,
                    escape(stream),
                    first
                ))
            }
            AppendResult::WrongExpectedVersion { current } => ctx
                .current_version_headers(Reply::status(400, "Wrong expected EventNumber"), current),
            AppendResult::StreamDeleted => Reply::status(410, "Stream deleted"),
            // §5.2: expected version −3 — nothing written and no status set; the default
            // status (200) with an empty body goes out (UNCONFIRMED at runtime).
            AppendResult::NothingWritten => Reply::new(200),
        },
    };
    if too_big {
        let phrase = if ctx.wire().v25() {
            format!("Too large events received. Limit is {MAX_EVENT_SIZE} bytes.")
        } else {
            "Too large events received. Limit is 4mb".to_owned()
        };
        return Reply::bare(413, &phrase);
    }
    reply
}

/// `DELETE /streams/{s}` (§5.4).
pub(super) fn delete_stream(ctx: &Ctx, stream: &str) -> Reply {
    if stream.is_empty() {
        return bad_request(&format!("Invalid stream name '{stream}'"));
    }
    let expected = match ctx.expected_version() {
        Ok(e) => e,
        Err(r) => return r,
    };
    if let Err(r) = ctx.require_leader() {
        return r;
    }
    let hard = match ctx.bool_header("HardDelete", false) {
        Ok(h) => h,
        Err(r) => return r,
    };
    if let Err(r) = ctx.check(stream, Operation::Delete) {
        return r;
    }
    // 21.10+ refuses a soft delete of a stream with neither events nor metadata.
    let reject_missing = matches!(
        ctx.wire().profile,
        Profile::V21_10 | Profile::V25 | Profile::V26
    );
    match ctx.app.store.delete(stream, expected, hard, reject_missing) {
        Err(e) => {
            tracing::error!(error = %e, "delete failed");
            internal("Delete timeout")
        }
        Ok(DeleteResult::Deleted) => Reply::status(204, "Stream deleted"),
        Ok(DeleteResult::StreamDeleted) => Reply::status(410, "Stream deleted"),
        Ok(DeleteResult::WrongExpectedVersion { current }) => {
            let r = Reply::status(400, "Wrong expected EventNumber");
            // `ES-CurrentVersion` on delete only from 22.10 on (§5.4).
            if ctx.wire().v25() {
                ctx.current_version_headers(r, current)
            } else {
                r
            }
        }
    }
}
