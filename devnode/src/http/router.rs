//! Routing and handlers of the AtomPub API (§3.1, §4.1, §5, §9).
//!
//! The raw request path is split and each segment percent-decoded here, so `$all` and `%24all`
//! (and stream names with `$`, `@`, spaces, `%2F`) are treated alike.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use hyper::header::{HeaderName, ACCEPT, AUTHORIZATION, IF_NONE_MATCH, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Method, Response};
use percent_encoding::percent_decode_str;

use super::feed::{Embed, Renderer};
use super::reply::{bad_request, no_route, Reply};
use super::wire::{self, Wire};
use super::{admin, node, read, users, write, App};
use crate::auth::{authenticate, Auth};
use crate::store::acl::{self, Principal, Right};
use crate::store::Operation;

/// Everything a handler needs about the request.
pub(super) struct Ctx {
    pub(super) app: Arc<App>,
    pub(super) method: Method,
    pub(super) headers: HeaderMap,
    pub(super) query: Vec<(String, String)>,
    /// `http://host:port` from the `Host` header.
    pub(super) base: String,
    /// Raw path without query.
    pub(super) raw_path: String,
    pub(super) principal: Option<Principal>,
}

impl Ctx {
    pub(super) fn wire(&self) -> &Wire {
        &self.app.wire
    }

    pub(super) fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn accept(&self) -> Option<&str> {
        if let Some(f) = self.q("format") {
            return Some(wire::format_override(f));
        }
        self.headers.get(ACCEPT).and_then(|v| v.to_str().ok())
    }

    pub(super) fn renderer(&self, embed: Embed) -> Renderer<'_> {
        Renderer {
            wire: self.wire(),
            base: self.base.clone(),
            embed,
        }
    }

    /// 401 for an access check that failed (`Configure.Unauthorized`, text/plain) in the
    /// profile's style (§8): v5 adds `WWW-Authenticate` to every 401.
    pub(super) fn unauthorized(&self) -> Reply {
        v5_challenge(self, Reply::status(401, "Unauthorized"))
    }

    /// 401 from the 5.0.2+ / 23.6+ first-level check, before any handler (`ReplyStatus`).
    pub(super) fn unauthorized_first_level(&self) -> Reply {
        v5_challenge(self, Reply::bare(401, "Unauthorized"))
    }

    pub(super) fn header_err(&self, base: &str) -> Reply {
        bad_request(&format!(
            "{} header in wrong format.",
            self.wire().header_name(base)
        ))
    }

    /// Boolean `true`/`false` header (case-insensitive); `Err` = 400.
    pub(super) fn bool_header(&self, base: &str, default: bool) -> Result<bool, Reply> {
        match self.wire().header(&self.headers, base) {
            Err(wire::BadHeader) => Err(self.header_err(base)),
            Ok(None) => Ok(default),
            Ok(Some(v)) if v.eq_ignore_ascii_case("true") => Ok(true),
            Ok(Some(v)) if v.eq_ignore_ascii_case("false") => Ok(false),
            Ok(Some(_)) => Err(self.header_err(base)),
        }
    }

    /// `ES-RequireMaster` (v5) / `ES-RequireLeader` + legacy `ES-RequireMaster` (v20+): only
    /// syntax-checked, this node is always the leader.
    pub(super) fn require_leader(&self) -> Result<bool, Reply> {
        if self.wire().is_v5() {
            return self.bool_header("RequireMaster", false);
        }
        let leader = self.bool_header("RequireLeader", false)?;
        let master = self
            .bool_header("RequireMaster", false)
            .map_err(|_| self.header_err("RequireLeader"))?;
        Ok(leader || master)
    }

    pub(super) fn resolve_link_tos(&self, default: bool) -> Result<bool, Reply> {
        self.bool_header("ResolveLinkTos", default)
    }

    /// `ES-LongPoll: <seconds>` (int > 0), forward reads only (§3.5).
    pub(super) fn long_poll(&self) -> Result<Option<Duration>, Reply> {
        match self.wire().header(&self.headers, "LongPoll") {
            Err(wire::BadHeader) => Err(self.header_err("LongPoll")),
            Ok(None) => Ok(None),
            Ok(Some(v)) => match v.trim().parse::<i32>() {
                Ok(n) if n > 0 => Ok(Some(Duration::from_secs(n as u64))),
                _ => Err(self.header_err("LongPoll")),
            },
        }
    }

    /// `ES-ExpectedVersion`, default Any; must be an int64 ≥ −4 (§5.2).
    pub(super) fn expected_version(&self) -> Result<i64, Reply> {
        match self.wire().header(&self.headers, "ExpectedVersion") {
            Err(wire::BadHeader) => Err(self.header_err("ExpectedVersion")),
            Ok(None) => Ok(crate::store::EXPECTED_ANY),
            Ok(Some(v)) => match v.trim().parse::<i64>() {
                Ok(n) if n >= crate::store::EXPECTED_STREAM_EXISTS => Ok(n),
                _ => Err(self.header_err("ExpectedVersion")),
            },
        }
    }

    /// `If-None-Match: "<n>;<hash>"` → n, when the hash matches the response media type.
    pub(super) fn etag_number(&self, media: &str) -> Option<i64> {
        let v = self.headers.get(IF_NONE_MATCH)?.to_str().ok()?;
        let v = v.trim().trim_matches('"');
        let (n, h) = v.split_once(';')?;
        if h != self.wire().media_hash(media).to_string() {
            return None;
        }
        n.parse().ok()
    }

    pub(super) fn check(&self, stream: &str, op: Operation) -> Result<(), Reply> {
        if self
            .app
            .store
            .check_access(stream, op, self.principal.as_ref())
        {
            Ok(())
        } else {
            Err(self.unauthorized())
        }
    }

    /// v5 only: `public` caching when `$all` may read the stream (§2.5).
    pub(super) fn cache_public(&self, stream: &str) -> bool {
        if !self.wire().is_v5() {
            return false;
        }
        let (target, right) = if acl::is_metastream(stream) {
            (acl::original_of_metastream(stream), Right::MetaRead)
        } else {
            (stream, Right::Read)
        };
        self.app
            .store
            .roles(target, right)
            .iter()
            .any(|r| r == acl::ALL_ROLE)
    }

    pub(super) fn current_version_headers(&self, r: Reply, current: i64) -> Reply {
        let r = if self.wire().v25() {
            r.header_str("Kurrent-CurrentVersion", current.to_string())
        } else {
            r
        };
        r.header_str("ES-CurrentVersion", current.to_string())
    }
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = q else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// Entry point for every request.
pub(crate) async fn handle(State(app): State<Arc<App>>, req: Request) -> Response<Body> {
    if app.closed.load(Ordering::SeqCst) {
        return Reply::status(503, "Server Is Not Ready").into_response();
    }
    let (parts, body) = req.into_parts();
    let host = parts
        .headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| app.addr.to_string());
    let mut ctx = Ctx {
        app: app.clone(),
        method: parts.method.clone(),
        headers: parts.headers,
        query: parse_query(parts.uri.query()),
        base: format!("{}://{host}", app.scheme),
        raw_path: parts.uri.path().to_owned(),
        principal: None,
    };
    let mut reply = route(&mut ctx, body).await;
    if reply.is_bare() && ctx.wire().is_v5() {
        // `HttpListener` writes the null content type as an empty header (recorded).
        reply = reply.header(hyper::header::CONTENT_TYPE, "");
    }
    let resp = cors(&ctx, reply).into_response();
    tracing::debug!(method = %ctx.method, path = %ctx.raw_path, status = resp.status().as_u16(), "request");
    resp
}

/// CORS headers every response carries (§2.2 recordings).
fn cors(ctx: &Ctx, r: Reply) -> Reply {
    let (prefix, expose) = if ctx.wire().v25() {
        (
            "Kurrent",
            "Location, Kurrent-Position, Kurrent-CurrentVersion",
        )
    } else {
        ("ES", "Location, ES-Position, ES-CurrentVersion")
    };
    let allow = format!(
        "Content-Type, X-Requested-With, X-Forwarded-Host, X-Forwarded-Prefix, X-PINGOTHER, Authorization, \
         {prefix}-LongPoll, {prefix}-ExpectedVersion, {prefix}-EventId, {prefix}-EventType, {prefix}-RequiresMaster, \
         {prefix}-HardDelete, {prefix}-ResolveLinkTos"
    );
    r.header(HeaderName::from_static("access-control-allow-origin"), "*")
        .header(
            HeaderName::from_static("access-control-allow-headers"),
            allow,
        )
        .header(
            HeaderName::from_static("access-control-expose-headers"),
            expose,
        )
}

/// v3–v5 add `WWW-Authenticate` to every 401 (`HttpEntityManager.SetRequiredHeaders`); the v5
/// profile is 5.0.12, which says `BasicCustom` (4.1.4 and 5.0.2+, commit 943f13be; contract §8).
/// The older recordings say `Basic`.
pub(super) fn v5_challenge(ctx: &Ctx, r: Reply) -> Reply {
    if ctx.wire().is_v5() {
        r.header(WWW_AUTHENTICATE, "BasicCustom realm=\"ES\"")
    } else {
        r
    }
}

pub(super) fn method_not_allowed(allowed: &str) -> Reply {
    Reply::bare(405, "Method Not Allowed").header(
        HeaderName::from_static("access-control-allow-methods"),
        allowed.to_owned(),
    )
}

async fn route(ctx: &mut Ctx, body: Body) -> Reply {
    let path = ctx.raw_path.clone();
    let raw: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let auth = authenticate(
        ctx.app.passthrough,
        &ctx.app.users,
        ctx.headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
    );

    if raw.first() == Some(&"health") && raw.get(1) == Some(&"live") && raw.len() == 2 {
        if ctx.wire().is_v5() {
            return no_route();
        }
        return match ctx.method {
            Method::GET | Method::HEAD => Reply::new(204),
            _ => method_not_allowed("GET, HEAD"),
        };
    }

    // Wrong credentials are refused everywhere (authentication runs before routing).
    let principal = match auth {
        Auth::Bad => {
            let r = Reply::bare(401, "Unauthorized");
            return if ctx.wire().is_v5() {
                v5_challenge(ctx, r)
            } else {
                r.header(WWW_AUTHENTICATE, "X-Basic realm=\"ESDB\"")
            };
        }
        Auth::Anonymous => None,
        Auth::User(p) => Some(p),
    };
    ctx.principal = principal;

    if ctx.method == Method::OPTIONS {
        return Reply::new(200).header(
            HeaderName::from_static("access-control-allow-methods"),
            "POST, DELETE, GET, OPTIONS",
        );
    }

    match raw.as_slice() {
        ["ping"] => return node::ping(ctx),
        ["info"] => return node::info(ctx),
        ["gossip"] => return node::gossip(ctx),
        ["admin", "scavenge"] => {
            return match ctx.method {
                Method::POST => admin::scavenge(ctx).await,
                _ => method_not_allowed("POST, OPTIONS"),
            };
        }
        // `--insecure` registers no `UsersController` (research §2).
        ["users", ..] if ctx.app.passthrough => return no_route(),
        ["users", rest @ ..] => return users::route(ctx, rest, body).await,
        ["streams", ..] if raw.len() >= 2 => {}
        _ => return no_route(),
    }

    // §2.1: 5.0.2+ and 23.6+ refuse anonymous stream access before any handler.
    if ctx.principal.is_none() && ctx.wire().refuses_anonymous() {
        return ctx.unauthorized_first_level();
    }

    // Trailing slash → 307 to the slash-less URL (`RedirectKeepVerb`).
    if raw.len() > 2 && raw.last() == Some(&"") {
        let trimmed = path.trim_end_matches('/');
        return Reply::new(307)
            .location(format!("{}{}", ctx.base, trimmed))
            .header(hyper::header::CACHE_CONTROL, "max-age=31536000, public")
            .body("Moved Permanently");
    }

    let mut segs = Vec::with_capacity(raw.len() - 1);
    for s in &raw[1..] {
        match percent_decode_str(s).decode_utf8() {
            Ok(d) => segs.push(d.into_owned()),
            Err(_) => return bad_request("Invalid request. Stream must be non-empty string"),
        }
    }
    let stream = segs[0].clone();
    let rest: Vec<&str> = segs[1..].iter().map(String::as_str).collect();
    let m = ctx.method.clone();

    if stream == "$all" && !(rest.len() == 1 && rest[0] != "metadata") {
        return match (rest.as_slice(), &m) {
            ([], &Method::GET) => read::all_backward(ctx, None, None).await,
            ([pos, cnt], &Method::GET) => read::all_backward(ctx, Some(pos), Some(cnt)).await,
            ([pos, "backward", cnt], &Method::GET) => {
                read::all_backward(ctx, Some(pos), Some(cnt)).await
            }
            ([pos, "forward", cnt], &Method::GET) => read::all_forward(ctx, pos, cnt).await,
            (["metadata"], &Method::GET) => read::metadata_get(ctx, &stream, None),
            (["metadata"], &Method::POST) => write::metadata_post(ctx, &stream, body).await,
            ([], &Method::POST) | ([], &Method::DELETE) => {
                // Writes and deletes on `$all` are always denied (§3.9, §5.1).
                ctx.unauthorized()
            }
            (["filtered", ..], _) => no_route(),
            ([] | [_, _] | [_, _, _], _) => method_not_allowed("GET, OPTIONS"),
            _ => no_route(),
        };
    }

    match (rest.as_slice(), &m) {
        ([], &Method::GET) => read::stream_backward(ctx, &stream, None, None, false).await,
        ([], &Method::POST) => write::post_events(ctx, &stream, body).await,
        ([], &Method::DELETE) => write::delete_stream(ctx, &stream),
        ([], _) => method_not_allowed("POST, DELETE, GET, OPTIONS"),
        (["incoming", guid], &Method::POST) => write::post_incoming(ctx, &stream, guid, body).await,
        (["incoming", _], _) => method_not_allowed("POST, OPTIONS"),
        (["metadata"], &Method::GET) => read::metadata_get(ctx, &stream, None),
        (["metadata"], &Method::POST) => write::metadata_post(ctx, &stream, body).await,
        (["metadata"], _) => method_not_allowed("GET, POST, OPTIONS"),
        (["metadata", ev], &Method::GET) => read::metadata_get(ctx, &stream, Some(ev)),
        (["metadata", ev, cnt], &Method::GET) => read::meta_backward(ctx, &stream, ev, cnt).await,
        (["metadata", ev, "backward", cnt], &Method::GET) => {
            read::meta_backward(ctx, &stream, ev, cnt).await
        }
        (["metadata", ev, "forward", cnt], &Method::GET) => {
            read::meta_forward(ctx, &stream, ev, cnt).await
        }
        ([ev], &Method::GET) => read::single_event(ctx, &stream, ev),
        ([ev, cnt], &Method::GET) => {
            read::stream_backward(ctx, &stream, Some(ev), Some(cnt), false).await
        }
        ([ev, "backward", cnt], &Method::GET) => {
            read::stream_backward(ctx, &stream, Some(ev), Some(cnt), false).await
        }
        ([ev, "forward", cnt], &Method::GET) => {
            read::stream_forward(ctx, &stream, ev, cnt, false).await
        }
        ([_] | [_, _] | [_, _, _] | [_, _, _, _], _) => method_not_allowed("GET, OPTIONS"),
        _ => no_route(),
    }
}
