//! Read handlers: stream feeds, single events, metadata reads (§4) and `$all` (§3).

use axum::http::header::ACCEPT;
use serde_json::{json, Value};

use super::feed::{self, escape, Embed, FeedHead};
use super::reply::{bad_request, internal, not_found, Reply, MAX_AGE};
use super::router::Ctx;
use super::wire;

/// Default page size (`AtomSpecs.FeedPageSize`).
const PAGE: usize = 20;
use crate::store::acl;
use crate::store::{
    AllSlice, EventRead, Operation, ReaderVersion, StreamRead, StreamSlice, TfPos, MAX_PAGE_SIZE,
};

fn parse_event_number(s: &str) -> Result<Option<i64>, Reply> {
    if s == "head" {
        return Ok(None);
    }
    match s.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Some(n)),
        _ => Err(bad_request(&format!("'{s}' is not valid event number"))),
    }
}

fn parse_stream_count(s: Option<&str>) -> Result<usize, Reply> {
    match s {
        None => Ok(PAGE),
        Some(c) => match c.parse::<i32>() {
            Ok(n) if n > 0 => Ok(n as usize),
            _ => Err(bad_request(&format!(
                "'{c}' is not valid count. Should be positive integer"
            ))),
        },
    }
}

/// §3.2 / §11.9: the reader refuses pages above 4096 with a 500 carrying the exception text.
fn check_page(count: usize) -> Result<(), Reply> {
    if count > MAX_PAGE_SIZE {
        Err(internal(&format!(
            "Read size too big, should be less than {MAX_PAGE_SIZE} items"
        )))
    } else {
        Ok(())
    }
}

fn not_acceptable() -> Reply {
    Reply::bare(406, "Requested URI is not available in requested format")
}

/// Description document (§2.3), served by the backward stream routes when it is the negotiated
/// codec: 406 for a missing `Accept` or `*/*`, 200 when asked for explicitly.
fn description_document(ctx: &Ctx, stream: &str, media: &str) -> Reply {
    let esc = escape(stream);
    let mut stream_types = vec![wire::ATOM_XML];
    if ctx.wire().v25() {
        stream_types.push(wire::ATOM_JSON_KURRENT);
    }
    stream_types.push(wire::ATOM_JSON_ES);
    let v = json!({
        "title": format!("Description document for '{stream}'"),
        "description": "The description document will be presented when no accept header is present or it was requested",
        "_links": {
            "self": { "href": format!("/streams/{esc}"), "supportedContentTypes": [media] },
            "stream": { "href": format!("/streams/{esc}"), "supportedContentTypes": stream_types }
        }
    });
    let accept = ctx.headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    let any = accept
        .is_none_or(|a| a.trim().is_empty() || a.split(',').any(|p| p.trim().starts_with("*/*")));
    let (status, reason) = match (any, accept) {
        (true, None) => (
            406,
            "We are unable to represent the stream in the format requested.",
        ),
        (true, Some(_)) => (406, "Description Document"),
        (false, _) => (200, "Description Document"),
    };
    Reply::new(status)
        .reason(reason)
        .content(media, feed::to_body(&v))
}

pub(super) async fn stream_backward(
    ctx: &Ctx,
    stream: &str,
    ev: Option<&str>,
    cnt: Option<&str>,
    meta_route: bool,
) -> Reply {
    let Some(media) = wire::negotiate(ctx.accept(), &ctx.wire().feed_codecs()) else {
        return not_acceptable();
    };
    if !meta_route && ctx.wire().is_desc(media) {
        return description_document(ctx, stream, media);
    }
    if stream.is_empty() {
        return bad_request(&format!("Invalid stream name '{stream}'"));
    }
    let from = match ev.map(parse_event_number).transpose() {
        Ok(f) => f.flatten(),
        Err(r) => return r,
    };
    let count = match parse_stream_count(cnt) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let target = stream_target(stream, meta_route);
    let resolve = match ctx.resolve_link_tos(!meta_route || ctx.wire().is_v5()) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = ctx.require_leader() {
        return r;
    }
    if let Err(r) = ctx.check(&target, Operation::Read) {
        return r;
    }
    if let Err(r) = check_page(count) {
        return r;
    }
    let store = &ctx.app.store;
    if ctx.etag_number(media) == Some(store.last_event_number(&target)) {
        return Reply::status(304, "Not Modified");
    }
    let head = from.is_none();
    match store.read_stream_backward(&target, from, count, resolve) {
        StreamRead::NoStream => not_found(),
        StreamRead::Deleted => Reply::status(410, "Deleted"),
        StreamRead::Ok(slice) => {
            let etag = ctx.wire().etag(slice.last_event_number, media);
            let body =
                render_stream_feed(ctx, &target, &slice, media, Direction::Backward { head });
            let public = ctx.cache_public(&target);
            let reply = Reply::new(200).content(media, body);
            // `Configure.GetStreamEventsBackward`
            if slice.last_event_number >= slice.from && !head {
                reply.cache(Some(MAX_AGE as i64), public, None)
            } else {
                reply.cache(slice.metadata.cache_control, public, Some(etag))
            }
        }
    }
}

fn stream_target(stream: &str, meta_route: bool) -> String {
    if meta_route {
        acl::metastream_of(stream)
    } else {
        stream.to_owned()
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Backward { head: bool },
    Forward,
}

/// `Convert.ToStreamEventBackwardFeed` / `ToStreamEventForwardFeed` (§4.2).
fn render_stream_feed(
    ctx: &Ctx,
    stream: &str,
    slice: &StreamSlice,
    media: &str,
    dir: Direction,
) -> Vec<u8> {
    let embed = Embed::parse(ctx.q("embed"));
    let r = ctx.renderer(embed);
    let esc = escape(stream);
    let self_url = r.url(&format!("/streams/{esc}"));
    let n = slice.max_count as i64;
    let mut links: Vec<(&'static str, String)> = vec![
        ("self", self_url.clone()),
        ("first", r.url(&format!("/streams/{esc}/head/backward/{n}"))),
    ];
    let updated = slice.events.first().map(|e| e.original().timestamp);
    let entries: Vec<Value>;
    let head_of_stream;
    let (mut feed_self, mut feed_etag) = (None, None);
    match dir {
        Direction::Backward { head } => {
            let prev = slice.from.min(slice.last_event_number) + 1;
            let next = slice.from - n;
            if !slice.is_end_of_stream && next >= 0 {
                links.push(("last", r.url(&format!("/streams/{esc}/0/forward/{n}"))));
                links.push((
                    "next",
                    r.url(&format!("/streams/{esc}/{next}/backward/{n}")),
                ));
            }
            links.push((
                "previous",
                r.url(&format!("/streams/{esc}/{prev}/forward/{n}")),
            ));
            links.push(("metadata", r.url(&format!("/streams/{esc}/metadata"))));
            head_of_stream = head;
            feed_self = Some(self_url.clone());
            if head {
                feed_etag = Some(ctx.wire().etag(slice.last_event_number, media));
            }
            entries = slice.events.iter().map(|e| r.entry(e, false)).collect();
        }
        Direction::Forward => {
            let prev = (slice.from.saturating_add(n - 1)).min(slice.last_event_number) + 1;
            let next = slice.from - 1;
            if next >= 0 {
                links.push(("last", r.url(&format!("/streams/{esc}/0/forward/{n}"))));
                links.push((
                    "next",
                    r.url(&format!("/streams/{esc}/{next}/backward/{n}")),
                ));
            }
            if !slice.is_end_of_stream || !slice.events.is_empty() {
                links.push((
                    "previous",
                    r.url(&format!("/streams/{esc}/{prev}/forward/{n}")),
                ));
            }
            // The server tests `escapedStreamId.StartsWith("$$")`, which never matches an escaped
            // name, so the metadata link is always present.
            links.push(("metadata", r.url(&format!("/streams/{esc}/metadata"))));
            head_of_stream = slice.is_end_of_stream;
            entries = slice
                .events
                .iter()
                .rev()
                .map(|e| r.entry(e, false))
                .collect();
        }
    }
    let head = FeedHead {
        title: format!("Event stream '{stream}'"),
        id: self_url,
        updated,
        stream_id: Some(stream.to_owned()),
        head_of_stream,
        self_url: feed_self,
        etag: feed_etag,
        links,
    };
    feed::to_body(&r.feed(head, entries))
}

pub(super) async fn stream_forward(
    ctx: &Ctx,
    stream: &str,
    ev: &str,
    cnt: &str,
    meta_route: bool,
) -> Reply {
    let Some(media) = wire::negotiate(ctx.accept(), &ctx.wire().feed_codecs()) else {
        return not_acceptable();
    };
    if stream.is_empty() {
        return bad_request(&format!("Invalid stream name '{stream}'"));
    }
    let from = match ev.parse::<i64>() {
        Ok(n) if n >= 0 => n,
        _ => return bad_request(&format!("'{ev}' is not valid event number")),
    };
    let count = match parse_stream_count(Some(cnt)) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let target = stream_target(stream, meta_route);
    let resolve = match ctx.resolve_link_tos(!meta_route || ctx.wire().is_v5()) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = ctx.require_leader() {
        return r;
    }
    let long_poll = match ctx.long_poll() {
        Ok(l) => l,
        Err(r) => return r,
    };
    if let Err(r) = ctx.check(&target, Operation::Read) {
        return r;
    }
    if let Err(r) = check_page(count) {
        return r;
    }
    let store = ctx.app.store.clone();
    let etag_n = ctx.etag_number(media);
    // Subscribed before the first read so a racing commit is not missed.
    let mut rx = long_poll.map(|_| store.subscribe());
    let reader = if ctx.wire().is_v5() {
        ReaderVersion::V5
    } else {
        ReaderVersion::V20Plus
    };
    // Also returns the last event number the answer is based on.
    let read = |store: &crate::store::Store| -> (bool, StreamRead, i64) {
        let last = store.last_event_number(&target);
        if etag_n == Some(last) {
            return (true, StreamRead::NoStream, last);
        }
        (
            false,
            store.read_stream_forward(&target, from, count, resolve, reader),
            last,
        )
    };
    // Captured before the read so a commit racing with it still wakes the poll.
    let before = store.last_event_number(&target);
    let (mut not_modified, mut result, last) = read(&store);
    // `StorageReaderWorker.Handle(ReadStreamEventsForward)`: a success, no-stream or not-modified
    // answer is parked when the requested number is past the last event (`FromEventNumber >
    // LastEventNumber`), not merely when the page is empty: a page emptied by `$maxAge` or `$tb`
    // below the last event answers at once.
    let parks = |r: &StreamRead, last: i64| !matches!(r, StreamRead::Deleted) && from > last;
    if let (Some(timeout), Some(rx)) = (long_poll, rx.as_mut()) {
        if parks(&result, last) {
            // Park until this stream changes, the timeout expires or the node stops; then answer
            // with a fresh read (§3.5 / §4.3).
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = ctx.app.shutdown.cancelled() => break,
                    changed = rx.changed() => {
                        if changed.is_err() || store.last_event_number(&target) != before {
                            break;
                        }
                    }
                }
            }
            (not_modified, result, _) = read(&store);
        }
    }
    if not_modified {
        return Reply::status(304, "Not Modified");
    }
    match result {
        StreamRead::NoStream => not_found(),
        StreamRead::Deleted => Reply::status(410, "Deleted"),
        StreamRead::Ok(slice) => {
            let body = render_stream_feed(ctx, &target, &slice, media, Direction::Forward);
            let public = ctx.cache_public(&target);
            let reply = Reply::new(200).content(media, body);
            // `Configure.GetStreamEventsForward`
            if slice.last_event_number + 1 >= slice.from.saturating_add(count as i64) {
                reply.cache(Some(MAX_AGE as i64), public, None)
            } else {
                let etag = ctx.wire().etag(slice.last_event_number, media);
                reply.cache(slice.metadata.cache_control, public, Some(etag))
            }
        }
    }
}

pub(super) async fn meta_backward(ctx: &Ctx, stream: &str, ev: &str, cnt: &str) -> Reply {
    if stream.is_empty() || acl::is_metastream(stream) {
        return bad_request(&format!("Invalid stream name '{stream}'"));
    }
    stream_backward(ctx, stream, Some(ev), Some(cnt), true).await
}

pub(super) async fn meta_forward(ctx: &Ctx, stream: &str, ev: &str, cnt: &str) -> Reply {
    if stream.is_empty() || acl::is_metastream(stream) {
        return bad_request(&format!("Invalid stream name '{stream}'"));
    }
    stream_forward(ctx, stream, ev, cnt, true).await
}

/// `GET /streams/{s}/{n|head}` (§4.4).
pub(super) fn single_event(ctx: &Ctx, stream: &str, ev: &str) -> Reply {
    if stream.is_empty() {
        return bad_request(&format!("Invalid stream name '{stream}'"));
    }
    let number = match parse_event_number(ev) {
        Ok(n) => n,
        Err(r) => return r,
    };
    read_single(ctx, stream, number, true)
}

/// `GET /streams/{s}/metadata[/{n}]` (§4.5): a single-event read of `$$s`.
pub(super) fn metadata_get(ctx: &Ctx, stream: &str, ev: Option<&str>) -> Reply {
    if stream.is_empty() || acl::is_metastream(stream) {
        return bad_request("Stream must be non-empty string and should not be metastream");
    }
    let number = match ev.map(parse_event_number).transpose() {
        Ok(n) => n.flatten(),
        Err(r) => return r,
    };
    read_single(ctx, &acl::metastream_of(stream), number, true)
}

fn read_single(ctx: &Ctx, stream: &str, number: Option<i64>, default_resolve: bool) -> Reply {
    let Some(media) = wire::negotiate(ctx.accept(), &ctx.wire().event_codecs()) else {
        return not_acceptable();
    };
    let resolve = match ctx.resolve_link_tos(default_resolve) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = ctx.require_leader() {
        return r;
    }
    if let Err(r) = ctx.check(stream, Operation::Read) {
        return r;
    }
    let head = number.is_none();
    let public = ctx.cache_public(stream);
    match ctx.app.store.read_event(stream, number, resolve) {
        EventRead::NotFound | EventRead::NoStream => not_found(),
        EventRead::Deleted => Reply::status(410, "Deleted"),
        EventRead::NoMetadata => {
            // `Empty.Result` through the codec; no ETag (§4.5, TEST metadata.cs).
            let body: &[u8] = if media == wire::OCTET { b"" } else { b"{}" };
            Reply::new(200)
                .content(media, body)
                .cache(None, public, None)
        }
        EventRead::Ok { event, metadata } => {
            let Some(target) = event.event.as_ref() else {
                // Link to a deleted/missing event.
                return not_found();
            };
            let body: Vec<u8> = if ctx.wire().is_atom_json(media) {
                let r = ctx.renderer(Embed::parse(ctx.q("embed")));
                feed::to_body(&r.entry(&event, true))
            } else if media == wire::JSON {
                feed::to_body(&feed::data_dto(target)["data"])
            } else if ctx.wire().is_event_json(media) {
                feed::to_body(&feed::data_dto(target))
            } else {
                target.data.to_vec()
            };
            let reply = Reply::new(200).content(media, body);
            if head {
                let etag = ctx.wire().etag(event.original().number, media);
                reply.cache(metadata.cache_control, public, Some(etag))
            } else {
                reply.cache(Some(MAX_AGE as i64), public, None)
            }
        }
    }
}

fn parse_all_count(cnt: Option<&str>) -> Result<usize, Reply> {
    match cnt {
        None => Ok(PAGE),
        Some(c) => match c.parse::<i32>() {
            Ok(n) if n > 0 => Ok(n as usize),
            _ => Err(bad_request(&format!("Invalid count argument: {c}"))),
        },
    }
}

/// resolveLinkTos of `$all` reads: v20+ header, default false; v5 takes the `ES-RequireMaster`
/// value instead (argument mix-up in `AtomController.GetAllEvents*@oss-v5.0.12`, §3.8).
fn all_resolve(ctx: &Ctx) -> Result<bool, Reply> {
    if ctx.wire().is_v5() {
        ctx.require_leader()
    } else {
        ctx.require_leader()?;
        ctx.resolve_link_tos(false)
    }
}

/// Positions must be record boundaries; an offset inside the log is refused with 500
/// (`ReadAllResult.InvalidPosition` in v24.10+, "Error" before; exact phrase UNCONFIRMED).
fn check_boundary(ctx: &Ctx, pos: TfPos) -> Result<(), Reply> {
    if ctx.app.store.is_boundary(pos.commit) {
        Ok(())
    } else {
        Err(internal(&format!(
            "Invalid position: {}. The position is not a record boundary.",
            pos.to_hex()
        )))
    }
}

pub(super) async fn all_backward(ctx: &Ctx, pos: Option<&str>, cnt: Option<&str>) -> Reply {
    let Some(media) = wire::negotiate(ctx.accept(), &ctx.wire().feed_codecs()) else {
        return not_acceptable();
    };
    let position = match pos {
        None | Some("head") => None,
        Some(p) => match TfPos::parse(p) {
            Some(tp) => Some(tp),
            None => return bad_request(&format!("Invalid position argument: {p}")),
        },
    };
    let count = match parse_all_count(cnt) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let resolve = match all_resolve(ctx) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = ctx.check("$all", Operation::Read) {
        return r;
    }
    if let Err(r) = check_page(count) {
        return r;
    }
    if let Some(p) = position {
        if let Err(r) = check_boundary(ctx, p) {
            return r;
        }
    }
    let store = &ctx.app.store;
    if ctx.etag_number(media) == Some(store.last_commit_position()) {
        return Reply::status(304, "Not Modified");
    }
    let slice = store.read_all_backward(position, count, resolve);
    let body = render_large(slice.events.len(), || render_all_feed(ctx, &slice, false));
    let public = ctx.cache_public("$all");
    let reply = Reply::new(200).content(media, body);
    // `Configure.ReadAllEventsBackwardCompleted`
    if position.is_some() && slice.requested.commit <= slice.last_commit {
        reply.cache(Some(MAX_AGE as i64), public, None)
    } else {
        let etag = ctx.wire().etag(slice.last_commit, media);
        reply.cache(None, public, Some(etag))
    }
}

pub(super) async fn all_forward(ctx: &Ctx, pos: &str, cnt: &str) -> Reply {
    let Some(media) = wire::negotiate(ctx.accept(), &ctx.wire().feed_codecs()) else {
        return not_acceptable();
    };
    let Some(position) = TfPos::parse(pos) else {
        return bad_request(&format!("Invalid position argument: {pos}"));
    };
    let count = match parse_all_count(Some(cnt)) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let resolve = match all_resolve(ctx) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let long_poll = match ctx.long_poll() {
        Ok(l) => l,
        Err(r) => return r,
    };
    if let Err(r) = ctx.check("$all", Operation::Read) {
        return r;
    }
    if let Err(r) = check_page(count) {
        return r;
    }
    if let Err(r) = check_boundary(ctx, position) {
        return r;
    }
    let store = ctx.app.store.clone();
    let etag_n = ctx.etag_number(media);
    // Subscribed before the first read so a racing commit is not missed.
    let mut rx = long_poll.map(|_| store.subscribe());
    let read = |store: &crate::store::Store| -> Result<AllSlice, i64> {
        let last = store.last_commit_position();
        if etag_n == Some(last) {
            return Err(last);
        }
        Ok(store.read_all_forward(position, count, resolve))
    };
    // Captured before the read so a commit racing with it still wakes the poll.
    let before = store.end();
    let mut result = read(&store);
    if let (Some(timeout), Some(rx)) = (long_poll, rx.as_mut()) {
        // §3.5: park on an empty end-of-feed page, or on a 304 whose position is past the ETag.
        let parks = match &result {
            Ok(s) => s.is_end_of_stream() && s.events.is_empty(),
            Err(last) => position.commit > *last,
        };
        if parks {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = ctx.app.shutdown.cancelled() => break,
                    changed = rx.changed() => {
                        if changed.is_err() || *rx.borrow_and_update() != before {
                            break;
                        }
                    }
                }
            }
            result = read(&store);
        }
    }
    let slice = match result {
        Ok(s) => s,
        Err(_) => return Reply::status(304, "Not Modified"),
    };
    let body = render_large(slice.events.len(), || render_all_feed(ctx, &slice, true));
    let public = ctx.cache_public("$all");
    let reply = Reply::new(200).content(media, body);
    // `Configure.ReadAllEventsForwardCompleted`
    if slice.events.len() == count {
        reply.cache(Some(MAX_AGE as i64), public, None)
    } else {
        let etag = ctx.wire().etag(slice.last_commit, media);
        reply.cache(None, public, Some(etag))
    }
}

/// Pages of more entries than this are rendered off the runtime's worker (see [`render_large`]).
const LARGE_PAGE: usize = 256;

/// Renders a page of `entries` entries. A large page takes milliseconds of CPU; on a
/// multi-threaded runtime it is rendered with `block_in_place`, so the worker's other connections
/// move to another thread instead of waiting behind it.
fn render_large(entries: usize, render: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if entries > LARGE_PAGE && multi_thread {
        tokio::task::block_in_place(render)
    } else {
        render()
    }
}

/// `Convert.ToAllEventsForwardFeed` / `ToAllEventsBackwardFeed` (§3.3, §3.4).
fn render_all_feed(ctx: &Ctx, slice: &AllSlice, forward: bool) -> Vec<u8> {
    let r = ctx.renderer(Embed::parse(ctx.q("embed")));
    let all = escape("$all");
    let n = slice.max_count;
    let self_url = r.url(&format!("/streams/{all}"));
    let mut links: Vec<(&'static str, String)> = vec![
        ("self", self_url.clone()),
        ("first", r.url(&format!("/streams/{all}/head/backward/{n}"))),
    ];
    let zero = TfPos::new(0, 0).to_hex();
    let updated;
    let entries: Vec<Value>;
    if forward {
        if slice.requested.commit != 0 {
            links.push(("last", r.url(&format!("/streams/{all}/{zero}/forward/{n}"))));
            links.push((
                "next",
                r.url(&format!(
                    "/streams/{all}/{}/backward/{n}",
                    slice.prev.to_hex()
                )),
            ));
        }
        if !slice.is_end_of_stream() || !slice.events.is_empty() {
            links.push((
                "previous",
                r.url(&format!(
                    "/streams/{all}/{}/forward/{n}",
                    slice.next.to_hex()
                )),
            ));
        }
        updated = slice.events.last().map(|e| e.original().timestamp);
        entries = slice
            .events
            .iter()
            .rev()
            .map(|e| r.entry(e, false))
            .collect();
    } else {
        if !slice.is_end_of_stream() {
            links.push(("last", r.url(&format!("/streams/{all}/{zero}/forward/{n}"))));
            links.push((
                "next",
                r.url(&format!(
                    "/streams/{all}/{}/backward/{n}",
                    slice.next.to_hex()
                )),
            ));
        }
        links.push((
            "previous",
            r.url(&format!(
                "/streams/{all}/{}/forward/{n}",
                slice.prev.to_hex()
            )),
        ));
        updated = slice.events.first().map(|e| e.original().timestamp);
        entries = slice.events.iter().map(|e| r.entry(e, false)).collect();
    }
    links.push(("metadata", r.url(&format!("/streams/{all}/metadata"))));
    let head = FeedHead {
        title: "All events".to_owned(),
        id: self_url,
        updated,
        stream_id: None,
        // §3.3: never set for `$all`.
        head_of_stream: false,
        self_url: None,
        etag: None,
        links,
    };
    feed::to_body(&r.feed(head, entries))
}
