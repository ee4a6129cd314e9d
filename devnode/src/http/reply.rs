//! Response construction with custom HTTP/1.1 reason phrases (§2.2: errors carry their message
//! in the reason phrase with an empty body).

use axum::body::Body;
use hyper::ext::ReasonPhrase;
use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, LOCATION, VARY};
use hyper::{Response, StatusCode};

/// `max-age` of pages that can no longer change (`MaxPossibleAge`).
pub const MAX_AGE: u32 = 31_536_000;

/// A response under construction.
pub struct Reply {
    status: StatusCode,
    reason: Option<String>,
    headers: Vec<(HeaderName, String)>,
    body: Vec<u8>,
    /// Answered by a controller or the request processor through `ReplyStatus`, which sets no
    /// content type, rather than through a `Configure.*` response (text/plain). Rendered per
    /// profile by the router: see [`Reply::is_bare`].
    bare: bool,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            reason: None,
            headers: Vec::new(),
            body: Vec::new(),
            bare: false,
        }
    }

    /// Empty-bodied reply with a reason phrase and no content type: v5's
    /// `HttpEntityManagerExtensions.ReplyStatus` passes a null type, which the recordings show as
    /// an empty `Content-Type:` header (`append-no-eventtype.2018`, `unauthorized-incorrect-user.2018`).
    /// Used for controller-level 400s (`CommunicationController.SendBadRequest`), 413
    /// (`SendTooBig`), the request processor's 404/405/406/415 and the authentication 401s.
    pub fn bare(status: u16, reason: &str) -> Reply {
        let mut r = Reply::new(status).reason(reason);
        r.bare = true;
        r
    }

    /// A [`Reply::bare`] reply that has not been given a body type since.
    pub fn is_bare(&self) -> bool {
        self.bare && !self.headers.iter().any(|(n, _)| *n == CONTENT_TYPE)
    }

    /// Empty-bodied `text/plain` reply with a reason phrase (`ReplyStatus`).
    pub fn status(status: u16, reason: &str) -> Reply {
        Reply::new(status)
            .reason(reason)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
    }

    pub fn reason(mut self, reason: &str) -> Reply {
        self.reason = Some(reason.to_owned());
        self
    }

    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Reply {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }

    /// Adds a header by name (for `ES-*` / `Kurrent-*`).
    pub fn header_str(self, name: &str, value: impl Into<String>) -> Reply {
        match HeaderName::try_from(name) {
            Ok(n) => self.header(n, value),
            Err(_) => self,
        }
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    /// `Content-Type: <media>; charset=utf-8` plus a body.
    pub fn content(self, media: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.header(CONTENT_TYPE, format!("{media}; charset=utf-8"))
            .body(body)
    }

    pub fn location(self, url: String) -> Reply {
        self.header(LOCATION, url)
    }

    /// Cache headers of `Configure.Ok` (§2.5): cacheable pages get `max-age=N, public|private`,
    /// live pages `max-age=0, no-cache, must-revalidate` (or the stream's `$cacheControl`) + ETag.
    pub fn cache(self, cache_seconds: Option<i64>, public: bool, etag: Option<String>) -> Reply {
        let cc = match cache_seconds {
            Some(s) => format!(
                "max-age={}, {}",
                s,
                if public { "public" } else { "private" }
            ),
            None => "max-age=0, no-cache, must-revalidate".to_owned(),
        };
        let mut r = self.header(CACHE_CONTROL, cc).header(VARY, "Accept");
        if let Some(e) = etag {
            r = r.header(ETAG, format!("\"{e}\""));
        }
        r
    }

    pub fn into_response(self) -> Response<Body> {
        let mut resp = Response::new(Body::from(self.body));
        *resp.status_mut() = self.status;
        for (n, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().append(n, v);
            }
        }
        if let Some(r) = self.reason {
            let canonical = self.status.canonical_reason().unwrap_or("");
            if r != canonical {
                if let Ok(p) = ReasonPhrase::try_from(sanitize(&r).into_bytes()) {
                    resp.extensions_mut().insert(p);
                }
            }
        }
        resp
    }
}

/// Reason phrases must be visible ASCII, space or tab.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '\t' || (' '..='~').contains(&c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// A controller-level 400 (`SendBadRequest`): bad headers, arguments or body.
pub fn bad_request(reason: &str) -> Reply {
    Reply::bare(400, reason)
}

/// A read of something that does not exist (`Configure.NotFound`, text/plain).
pub fn not_found() -> Reply {
    Reply::status(404, "Not Found")
}

/// No route matched (`AuthenticatedHttpRequestProcessor`, `ReplyStatus`).
pub fn no_route() -> Reply {
    Reply::bare(404, "Not Found")
}

pub fn internal(reason: &str) -> Reply {
    Reply::status(500, reason)
}
