//! Atom-JSON rendering: feeds, entries, links with the server's property order and null
//! handling (§2.4, `Feed.cs`, `Convert.cs`).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

use super::wire::Wire;
use crate::store::{parse_link, ResolvedEvent, StoredRecord};

/// .NET `Uri.EscapeDataString`: everything but RFC 3986 unreserved characters is escaped.
const DATA_STRING: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn escape(s: &str) -> String {
    utf8_percent_encode(s, DATA_STRING).to_string()
}

/// `embed=` levels (§3.7), ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Embed {
    None,
    Content,
    Rich,
    Body,
    Pretty,
    TryHarder,
}

impl Embed {
    /// Unknown values fall back to `None` like `GetEmbedLevel`.
    pub fn parse(v: Option<&str>) -> Embed {
        match v.map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("content") => Embed::Content,
            Some("rich") => Embed::Rich,
            Some("body") => Embed::Body,
            Some("pretty") => Embed::Pretty,
            Some("tryharder") => Embed::TryHarder,
            _ => Embed::None,
        }
    }
}

/// .NET `XmlConvert.ToString(dt, Utc)`: `yyyy-MM-ddTHH:mm:ss.FFFFFFFZ` (trailing zeros dropped).
/// `ticks` are 100 ns units since the Unix epoch; `None` = `DateTime.MinValue` on a UTC host.
pub fn format_time(ticks: Option<i64>) -> String {
    let Some(t) = ticks else {
        return "0001-01-01T00:00:00Z".to_owned();
    };
    let secs = t.div_euclid(10_000_000);
    let frac = t.rem_euclid(10_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        y,
        m,
        d,
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:07}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Builds JSON objects the way the server's Newtonsoft settings would (null policy per profile).
pub struct Renderer<'a> {
    pub wire: &'a Wire,
    /// `http://host:port`, no trailing slash.
    pub base: String,
    pub embed: Embed,
}

/// Inserts `v`, or drops it when it is null and the profile omits nulls.
fn put(m: &mut Map<String, Value>, nulls: bool, k: &str, v: Value) {
    if v.is_null() && !nulls {
        return;
    }
    m.insert(k.to_owned(), v);
}

fn opt_str(v: Option<String>) -> Value {
    v.map(Value::String).unwrap_or(Value::Null)
}

/// Header data of a feed.
pub struct FeedHead {
    pub title: String,
    pub id: String,
    pub updated: Option<i64>,
    pub stream_id: Option<String>,
    pub head_of_stream: bool,
    pub self_url: Option<String>,
    pub etag: Option<String>,
    pub links: Vec<(&'static str, String)>,
}

impl Renderer<'_> {
    fn nulls(&self) -> bool {
        self.wire.include_nulls()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn link(&self, relation: &str, uri: String) -> Value {
        let mut m = Map::new();
        m.insert("uri".into(), Value::String(uri));
        m.insert("relation".into(), Value::String(relation.to_owned()));
        put(&mut m, self.nulls(), "type", Value::Null);
        Value::Object(m)
    }

    fn author(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), Value::String(self.wire.author().to_owned()));
        Value::Object(m)
    }

    /// `FeedElement`: title, id, updated, streamId, author, headOfStream, selfUrl, eTag, links, entries.
    pub fn feed(&self, head: FeedHead, entries: Vec<Value>) -> Value {
        let n = self.nulls();
        let mut m = Map::new();
        m.insert("title".into(), Value::String(head.title));
        m.insert("id".into(), Value::String(head.id));
        m.insert("updated".into(), Value::String(format_time(head.updated)));
        put(&mut m, n, "streamId", opt_str(head.stream_id));
        m.insert("author".into(), self.author());
        m.insert("headOfStream".into(), Value::Bool(head.head_of_stream));
        put(&mut m, n, "selfUrl", opt_str(head.self_url));
        put(&mut m, n, "eTag", opt_str(head.etag));
        let links = head
            .links
            .into_iter()
            .map(|(rel, uri)| self.link(rel, uri))
            .collect();
        m.insert("links".into(), Value::Array(links));
        m.insert("entries".into(), Value::Array(entries));
        Value::Object(m)
    }

    /// `Convert.ToEntry`. `single` = single-event read (always embeds `content` for JSON events).
    pub fn entry(&self, ev: &ResolvedEvent, single: bool) -> Value {
        let n = self.nulls();
        let embed = self.embed;
        let mut m = Map::new();
        let evnt = ev.event.as_ref();
        if let (true, Some(e)) = (embed > Embed::Content, evnt) {
            // RichEntryElement (derived-class properties first).
            let mut is_json = e.is_json();
            let mut data: Option<String> = None;
            let mut meta: Option<String> = None;
            let mut link_meta: Option<String> = None;
            let mut is_meta = false;
            let mut is_link_meta = false;
            if embed >= Embed::Body {
                if is_json {
                    let raw = String::from_utf8_lossy(&e.data).into_owned();
                    data = Some(if embed >= Embed::Pretty {
                        format_json(&raw).unwrap_or(raw)
                    } else {
                        raw
                    });
                } else if embed >= Embed::TryHarder {
                    let raw = String::from_utf8_lossy(&e.data).into_owned();
                    match format_json(&raw) {
                        Some(f) => {
                            data = Some(f);
                            is_json = true;
                        }
                        None => data = Some(raw),
                    }
                }
                let raw_meta = String::from_utf8_lossy(&e.metadata).into_owned();
                is_meta = !raw_meta.is_empty();
                if is_meta {
                    meta = Some(if embed >= Embed::Pretty {
                        format_json(&raw_meta).unwrap_or(raw_meta)
                    } else {
                        raw_meta
                    });
                }
                if let Some(l) = &ev.link {
                    let raw = String::from_utf8_lossy(&l.metadata).into_owned();
                    is_link_meta = !raw.is_empty();
                    // The server does not null an empty link metadata string.
                    link_meta = Some(if embed >= Embed::Pretty {
                        format_json(&raw).unwrap_or(raw)
                    } else {
                        raw
                    });
                }
            }
            let orig = ev.original();
            m.insert("eventId".into(), Value::String(e.event_id.to_string()));
            m.insert("eventType".into(), Value::String(e.event_type.to_string()));
            m.insert("eventNumber".into(), Value::from(e.number));
            put(&mut m, n, "data", opt_str(data));
            put(&mut m, n, "metaData", opt_str(meta));
            put(&mut m, n, "linkMetaData", opt_str(link_meta));
            m.insert("streamId".into(), Value::String(e.stream.to_string()));
            m.insert("isJson".into(), Value::Bool(is_json));
            m.insert("isMetaData".into(), Value::Bool(is_meta));
            m.insert("isLinkMetaData".into(), Value::Bool(is_link_meta));
            if self.wire.has_is_redacted() {
                m.insert("isRedacted".into(), Value::Bool(false));
            }
            m.insert("positionEventNumber".into(), Value::from(orig.number));
            m.insert(
                "positionStreamId".into(),
                Value::String(orig.stream.to_string()),
            );
        }

        let mut content = Value::Null;
        let (stream, number, ts, summary) = match (evnt, &ev.link) {
            (Some(e), None) => {
                if (single || embed == Embed::Content) && e.is_json() {
                    content = data_dto(e);
                }
                (
                    e.stream.to_string(),
                    e.number,
                    e.timestamp,
                    e.event_type.to_string(),
                )
            }
            (_, Some(l)) => {
                // Entry of a link: title/id from the link data, time of the link record.
                let (num, s) = parse_link(&l.data).unwrap_or((l.number, &l.stream));
                (s.to_owned(), num, l.timestamp, "$>".to_owned())
            }
            (None, None) => unreachable!("resolved event without records"),
        };
        let uri = self.url(&format!("/streams/{}/{}", escape(&stream), number));
        m.insert("title".into(), Value::String(format!("{number}@{stream}")));
        m.insert("id".into(), Value::String(uri.clone()));
        m.insert("updated".into(), Value::String(format_time(Some(ts))));
        m.insert("author".into(), self.author());
        m.insert("summary".into(), Value::String(summary));
        if self.wire.has_retry_count() {
            put(&mut m, n, "retryCount", Value::Null);
        }
        put(&mut m, n, "content", content);
        m.insert(
            "links".into(),
            Value::Array(vec![
                self.link("edit", uri.clone()),
                self.link("alternate", uri),
            ]),
        );
        Value::Object(m)
    }
}

/// `AutoEventConverter.CreateDataDto`: data/metadata parsed when the event is JSON and they parse.
pub fn data_dto(e: &StoredRecord) -> Value {
    let data = String::from_utf8_lossy(&e.data).into_owned();
    let meta = String::from_utf8_lossy(&e.metadata).into_owned();
    let (data_v, meta_v) = if e.is_json() {
        (
            parse_any(&data).unwrap_or(Value::String(data)),
            parse_any(&meta).unwrap_or(Value::String(meta)),
        )
    } else {
        (Value::String(data), Value::String(meta))
    };
    let mut m = Map::new();
    m.insert("eventStreamId".into(), Value::String(e.stream.to_string()));
    m.insert("eventNumber".into(), Value::from(e.number));
    m.insert("eventType".into(), Value::String(e.event_type.to_string()));
    m.insert("eventId".into(), Value::String(e.event_id.to_string()));
    m.insert("data".into(), data_v);
    m.insert("metadata".into(), meta_v);
    Value::Object(m)
}

/// `Codec.Json.From<object>`: any JSON value; empty or invalid text → `None`.
pub fn parse_any(s: &str) -> Option<Value> {
    if s.trim().is_empty() {
        return None;
    }
    serde_json::from_str::<Value>(s).ok()
}

/// `Convert.FormatJson`: only a JSON *object* is re-indented (`JObject.Load`).
pub fn format_json(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some(String::new());
    }
    match serde_json::from_str::<Value>(s) {
        Ok(v @ Value::Object(_)) => serde_json::to_string_pretty(&v).ok(),
        _ => None,
    }
}

/// JSON response body, indented with 2 spaces like `JsonCodec` (Formatting.Indented).
pub fn to_body(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(format_time(None), "0001-01-01T00:00:00Z");
        // 2013-07-01T11:43:21.129594Z
        let secs = 1_372_679_001i64;
        let t = secs * 10_000_000 + 1_295_940;
        assert_eq!(format_time(Some(t)), "2013-07-01T11:43:21.129594Z");
        assert_eq!(format_time(Some(secs * 10_000_000)), "2013-07-01T11:43:21Z");
        assert_eq!(format_time(Some(0)), "1970-01-01T00:00:00Z");
        // leap day
        assert_eq!(
            format_time(Some(951_782_400 * 10_000_000)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("$all"), "%24all");
        assert_eq!(escape("$$a b@c-d"), "%24%24a%20b%40c-d");
    }

    #[test]
    fn pretty_objects_only() {
        assert_eq!(format_json("{\"a\":1}").unwrap(), "{\n  \"a\": 1\n}");
        assert!(format_json("[1]").is_none());
        assert!(format_json("nope").is_none());
    }
}
