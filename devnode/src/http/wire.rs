//! Profile-dependent wire details (§1 table, §11.2): header names, media types, ETag hashes,
//! null emission, plus content negotiation (§2.3).

use hyper::HeaderMap;

use crate::config::Profile;

pub const ATOM_JSON_ES: &str = "application/vnd.eventstore.atom+json";
pub const ATOM_JSON_KURRENT: &str = "application/vnd.kurrent.atom+json";
pub const DESC_JSON_ES: &str = "application/vnd.eventstore.streamdesc+json";
pub const DESC_JSON_KURRENT: &str = "application/vnd.kurrent.streamdesc+json";
pub const EVENTS_JSON_ES: &str = "application/vnd.eventstore.events+json";
pub const EVENTS_JSON_KURRENT: &str = "application/vnd.kurrent.events+json";
pub const EVENT_JSON_ES: &str = "application/vnd.eventstore.event+json";
pub const EVENT_JSON_KURRENT: &str = "application/vnd.kurrent.event+json";
pub const JSON: &str = "application/json";
pub const OCTET: &str = "application/octet-stream";
pub const TEXT_XML: &str = "text/xml";
pub const APP_XML: &str = "application/xml";
pub const ATOM_XML: &str = "application/atom+xml";

/// A request header that is present but not visible ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadHeader;

/// Everything that differs between server generations, fixed for one node run.
#[derive(Debug, Clone)]
pub struct Wire {
    pub profile: Profile,
    /// Per-start salt for media-type hashes (.NET Core string hashes are randomised per process).
    seed: u64,
}

impl Wire {
    pub fn new(profile: Profile) -> Wire {
        Wire {
            profile,
            seed: rand_seed(),
        }
    }

    /// KurrentDB (25 and later): the v25 and v26 profiles share the wire.
    pub fn v25(&self) -> bool {
        matches!(self.profile, Profile::V25 | Profile::V26)
    }

    pub fn is_v5(&self) -> bool {
        self.profile == Profile::V5
    }

    /// §2.4: from 21.10 on the serializer writes null properties.
    pub fn include_nulls(&self) -> bool {
        matches!(self.profile, Profile::V21_10 | Profile::V25 | Profile::V26)
    }

    /// §2.4: `isRedacted` exists from 23.6 (only the v25 profile here).
    pub fn has_is_redacted(&self) -> bool {
        self.v25()
    }

    /// §2.4: `retryCount` exists from 20.6 (null in feeds, so visible only with nulls on).
    pub fn has_retry_count(&self) -> bool {
        !self.is_v5()
    }

    /// §1: feed `author.name`.
    pub fn author(&self) -> &'static str {
        if self.v25() {
            "Kurrent"
        } else {
            "EventStore"
        }
    }

    /// §2.1: anonymous stream access refused by 5.0.2–5.0.12 and 23.6+.
    pub fn refuses_anonymous(&self) -> bool {
        matches!(self.profile, Profile::V5 | Profile::V25 | Profile::V26)
    }

    /// The primary spelling of a header, e.g. `ES-ExpectedVersion` / `Kurrent-ExpectedVersion`;
    /// used in reason phrases.
    pub fn header_name(&self, base: &str) -> String {
        if self.v25() {
            format!("Kurrent-{base}")
        } else {
            format!("ES-{base}")
        }
    }

    /// Reads a request header by base name (§1: v25 reads `Kurrent-*` first, `ES-*` as fallback).
    /// `Err` when present but not valid text.
    pub fn header<'a>(
        &self,
        headers: &'a HeaderMap,
        base: &str,
    ) -> Result<Option<&'a str>, BadHeader> {
        let mut names = Vec::with_capacity(2);
        if self.v25() {
            names.push(format!("kurrent-{base}"));
        }
        names.push(format!("es-{base}"));
        for n in names {
            if let Some(v) = headers.get(n.as_str()) {
                let s = v.to_str().map_err(|_| BadHeader)?;
                if !s.is_empty() {
                    return Ok(Some(s));
                }
            }
        }
        Ok(None)
    }

    /// `"<number>;<hash>"` of §2.5. v5 (Mono) hashes were stable: the recorded values are used.
    pub fn etag(&self, number: i64, media: &str) -> String {
        format!("{};{}", number, self.media_hash(media))
    }

    pub fn media_hash(&self, media: &str) -> i32 {
        if self.is_v5() {
            // Recorded Mono hashes (fixtures 2017/2018).
            match media {
                ATOM_JSON_ES => return -2060438500,
                JSON => return 1391431453,
                DESC_JSON_ES => return 1415427280,
                _ => {}
            }
            return fnv(0, media);
        }
        fnv(self.seed, media)
    }

    /// Batch append media types (§5.1).
    pub fn is_events_json(&self, media: &str) -> bool {
        media == EVENTS_JSON_ES || (self.v25() && media == EVENTS_JSON_KURRENT)
    }

    pub fn is_atom_json(&self, media: &str) -> bool {
        media == ATOM_JSON_ES || (self.v25() && media == ATOM_JSON_KURRENT)
    }

    pub fn is_event_json(&self, media: &str) -> bool {
        media == EVENT_JSON_ES || (self.v25() && media == EVENT_JSON_KURRENT)
    }

    /// Response codecs of feed routes in server order (XML/HTML codecs are not offered).
    pub fn feed_codecs(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.v25() {
            v.push(DESC_JSON_KURRENT);
        }
        v.push(DESC_JSON_ES);
        if self.v25() {
            v.push(ATOM_JSON_KURRENT);
        }
        v.push(ATOM_JSON_ES);
        v.push(JSON);
        v
    }

    /// Response codecs of single-event/metadata routes in server order.
    pub fn event_codecs(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.v25() {
            v.push(ATOM_JSON_KURRENT);
        }
        v.push(ATOM_JSON_ES);
        v.push(JSON);
        if self.v25() {
            v.push(EVENT_JSON_KURRENT);
        }
        v.push(EVENT_JSON_ES);
        v.push(OCTET);
        v
    }

    pub fn is_desc(&self, media: &str) -> bool {
        media == DESC_JSON_ES || media == DESC_JSON_KURRENT
    }
}

fn rand_seed() -> u64 {
    let u = uuid::Uuid::new_v4();
    let b = u.as_bytes();
    u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]))
}

fn fnv(seed: u64, s: &str) -> i32 {
    let mut h: u64 = 0xcbf29ce484222325 ^ seed;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h ^ (h >> 32)) as u32 as i32
}

/// One entry of an `Accept` header.
#[derive(Debug, Clone, PartialEq)]
struct MediaRange {
    ty: String,
    sub: String,
    q: f32,
}

fn parse_accept(accept: &str) -> Vec<MediaRange> {
    let mut out = Vec::new();
    for part in accept.split(',') {
        let mut pieces = part.split(';');
        let media = pieces.next().unwrap_or("").trim();
        if media.is_empty() {
            continue;
        }
        let (ty, sub) = media.split_once('/').unwrap_or((media, "*"));
        let mut q = 1.0f32;
        for p in pieces {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
        }
        out.push(MediaRange {
            ty: ty.trim().to_ascii_lowercase(),
            sub: sub.trim().to_ascii_lowercase(),
            q,
        });
    }
    // Stable: equal q keep header order.
    out.sort_by(|a, b| b.q.partial_cmp(&a.q).unwrap_or(std::cmp::Ordering::Equal));
    out
}

fn suits(range: &MediaRange, codec: &str) -> bool {
    let (t, s) = codec.split_once('/').unwrap_or((codec, ""));
    (range.ty == "*" || range.ty == t) && (range.sub == "*" || range.sub == s)
}

/// §2.3: the first codec (server order) suitable for the highest-q media range wins. `None` → 406.
/// A missing `Accept` behaves like `*/*`.
pub fn negotiate(accept: Option<&str>, codecs: &[&'static str]) -> Option<&'static str> {
    let ranges = match accept {
        Some(a) if !a.trim().is_empty() => parse_accept(a),
        _ => vec![MediaRange {
            ty: "*".into(),
            sub: "*".into(),
            q: 1.0,
        }],
    };
    for r in ranges.iter().filter(|r| r.q > 0.0) {
        if let Some(c) = codecs.iter().find(|c| suits(r, c)) {
            return Some(c);
        }
    }
    None
}

/// `?format=` overrides `Accept` (§2.3). Unsupported formats map to a type no codec offers.
pub fn format_override(format: &str) -> &'static str {
    match format.to_ascii_lowercase().as_str() {
        "json" => JSON,
        "atomxj" => ATOM_JSON_ES,
        "atom" => ATOM_XML,
        "xml" => TEXT_XML,
        _ => "text/x-unsupported",
    }
}

/// Request `Content-Type` → media type, if it carries no parameter other than a utf-8 charset
/// (§2.3: exact, case-sensitive media type comparison).
pub fn request_media(content_type: &str) -> Option<&str> {
    let mut parts = content_type.split(';');
    let media = parts.next()?.trim();
    for p in parts {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        if !(v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")) {
            return None;
        }
    }
    Some(media)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        let w = Wire::new(Profile::V5);
        let feed = w.feed_codecs();
        assert_eq!(negotiate(None, &feed), Some(DESC_JSON_ES));
        assert_eq!(negotiate(Some("*/*"), &feed), Some(DESC_JSON_ES));
        assert_eq!(negotiate(Some(ATOM_JSON_ES), &feed), Some(ATOM_JSON_ES));
        assert_eq!(
            negotiate(
                Some("application/json;q=0.5, application/vnd.eventstore.atom+json"),
                &feed
            ),
            Some(ATOM_JSON_ES)
        );
        assert_eq!(negotiate(Some("application/atom+xml"), &feed), None);
        assert_eq!(negotiate(Some(ATOM_JSON_KURRENT), &feed), None);
        let k = Wire::new(Profile::V25);
        assert_eq!(
            negotiate(Some(ATOM_JSON_KURRENT), &k.feed_codecs()),
            Some(ATOM_JSON_KURRENT)
        );
    }

    #[test]
    fn v5_hashes_are_the_recorded_ones() {
        let w = Wire::new(Profile::V5);
        assert_eq!(w.etag(0, ATOM_JSON_ES), "0;-2060438500");
        assert_eq!(w.etag(1, JSON), "1;1391431453");
        let a = Wire::new(Profile::V25);
        assert_eq!(a.media_hash(JSON), a.media_hash(JSON));
    }

    #[test]
    fn request_media_types() {
        assert_eq!(
            request_media("application/json; charset=utf-8"),
            Some("application/json")
        );
        assert_eq!(request_media("application/json; charset=latin1"), None);
        assert_eq!(request_media("application/json"), Some("application/json"));
    }
}
