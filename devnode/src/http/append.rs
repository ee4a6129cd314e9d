//! Request-body parsing for appends (§5.1, `AutoEventConverter.SmartParse`).

use bytes::Bytes;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::store::ProposedEvent;

/// Why a body was refused; the text is the server's reason phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError(pub String);

pub const INVALID_BODY: &str = "Write request body invalid.";

/// Options that depend on the profile.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    /// v3–v5: leading `$type`/`$id` of a data/metadata object are consumed by Json.NET (§5.1).
    pub drop_leading_type_id: bool,
    /// v20+ (.NET Core) appends ` (Parameter 'x')` to argument exception messages.
    pub dotnet_core_messages: bool,
}

fn arg_error(opts: ParseOptions, msg: &str, param: &str) -> BodyError {
    if opts.dotnet_core_messages {
        BodyError(format!("{msg} (Parameter '{param}')"))
    } else {
        BodyError(msg.to_owned())
    }
}

/// `application/vnd.eventstore.events+json` (and the other array forms): a JSON array of
/// `{eventId, eventType, data, metadata}` with case-insensitive property names.
pub fn parse_events_json(body: &[u8], opts: ParseOptions) -> Result<Vec<ProposedEvent>, BodyError> {
    let invalid = || BodyError(INVALID_BODY.to_owned());
    // The body is decoded as UTF-8 text first (invalid sequences replaced).
    let text = String::from_utf8_lossy(body);
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&text) else {
        return Err(invalid());
    };
    if items.is_empty() {
        return Err(invalid());
    }
    struct Dyn {
        id: Uuid,
        ty: Option<String>,
        data: Option<Value>,
        meta: Option<Value>,
    }
    let mut parsed = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(obj) = item else {
            return Err(invalid());
        };
        let mut d = Dyn {
            id: Uuid::nil(),
            ty: None,
            data: None,
            meta: None,
        };
        // Json.NET: case-insensitive match, the last duplicate wins.
        for (k, v) in obj {
            match k.to_ascii_lowercase().as_str() {
                "eventid" => {
                    d.id = match v {
                        Value::Null => Uuid::nil(),
                        Value::String(s) if s.is_empty() => return Err(invalid()),
                        Value::String(s) => Uuid::parse_str(s.trim()).map_err(|_| invalid())?,
                        _ => return Err(invalid()),
                    }
                }
                "eventtype" => {
                    d.ty = match v {
                        Value::Null => None,
                        Value::String(s) => Some(s),
                        Value::Number(n) => Some(n.to_string()),
                        Value::Bool(b) => Some(if b { "True" } else { "False" }.to_owned()),
                        _ => return Err(invalid()),
                    }
                }
                "data" => d.data = Some(v),
                "metadata" => d.meta = Some(v),
                _ => {}
            }
        }
        if opts.drop_leading_type_id {
            d.data = d.data.map(consume_metadata_properties).transpose()?;
            d.meta = d.meta.map(consume_metadata_properties).transpose()?;
        }
        parsed.push(d);
    }
    let mut out = Vec::with_capacity(parsed.len());
    for d in parsed {
        // `new Event(...)` checks the id first, then the type.
        if d.id.is_nil() {
            return Err(arg_error(opts, "Empty eventId provided.", "eventId"));
        }
        let ty = match d.ty {
            Some(t) if !t.is_empty() => t,
            _ => return Err(arg_error(opts, "Empty eventType provided.", "eventType")),
        };
        let (data, data_json) = as_bytes(d.data);
        let (metadata, meta_json) = as_bytes(d.meta);
        out.push(ProposedEvent {
            event_id: d.id,
            event_type: ty,
            // §5.1: isJson = data is JSON OR metadata is JSON.
            is_json: data_json || meta_json,
            data,
            metadata,
        });
    }
    Ok(out)
}

/// Json.NET default `MetadataPropertyHandling` on an `object` member: leading `$id`/`$type` are
/// read as serializer metadata and dropped; a leading `$ref` turns the value into null, or is an
/// error when other properties follow. Nested objects are untouched (`CreateJObject`).
fn consume_metadata_properties(v: Value) -> Result<Value, BodyError> {
    let Value::Object(map) = v else { return Ok(v) };
    let mut rest = Map::new();
    let mut leading = true;
    let mut saw_ref = false;
    for (k, v) in map {
        if leading {
            match k.as_str() {
                "$id" | "$type" => continue,
                "$ref" => {
                    saw_ref = true;
                    continue;
                }
                _ => leading = false,
            }
        }
        if saw_ref {
            return Err(BodyError(INVALID_BODY.to_owned()));
        }
        rest.insert(k, v);
    }
    if saw_ref {
        return Ok(Value::Null);
    }
    Ok(Value::Object(rest))
}

/// `AutoEventConverter.AsBytes` (§5.1): objects/arrays → indented JSON; strings that parse as an
/// object/array → indented JSON; other strings → UTF-8 bytes; everything else → empty.
fn as_bytes(v: Option<Value>) -> (Bytes, bool) {
    match v {
        Some(v @ (Value::Object(_) | Value::Array(_))) => (pretty(&v), true),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            // `JsonConvert.DeserializeObject` uses Json.NET defaults, which also consume leading
            // `$id`/`$type` (derived from code, UNCONFIRMED at runtime).
            Ok(inner @ (Value::Object(_) | Value::Array(_))) => {
                match consume_metadata_properties(inner) {
                    Ok(j @ (Value::Object(_) | Value::Array(_))) => (pretty(&j), true),
                    _ => (Bytes::from(s.into_bytes()), false),
                }
            }
            _ => (Bytes::from(s.into_bytes()), false),
        },
        _ => (Bytes::new(), false),
    }
}

/// Newtonsoft `Formatting.Indented`: two spaces, `\n`, `"key": value`.
fn pretty(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(v).unwrap_or_default())
}

/// `application/json` single event: the body decoded as UTF-8 (invalid sequences → U+FFFD, a BOM
/// kept) and re-encoded; flagged JSON without validation.
pub fn single_json(body: &[u8]) -> Bytes {
    match std::str::from_utf8(body) {
        Ok(_) => Bytes::copy_from_slice(body),
        Err(_) => Bytes::from(String::from_utf8_lossy(body).into_owned().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V5: ParseOptions = ParseOptions {
        drop_leading_type_id: true,
        dotnet_core_messages: false,
    };
    const V20: ParseOptions = ParseOptions {
        drop_leading_type_id: false,
        dotnet_core_messages: true,
    };

    fn one(body: &str, o: ParseOptions) -> ProposedEvent {
        let mut v = parse_events_json(body.as_bytes(), o).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    const ID: &str = "fbf4a1a1-b4a3-4dfe-a01f-ec52c34e16e4";

    #[test]
    fn docs_single_event() {
        let e = one(
            &format!(r#"[{{"eventId":"{ID}","eventType":"event-type","data":{{"a":"1"}}}}]"#),
            V20,
        );
        assert_eq!(&e.data[..], b"{\n  \"a\": \"1\"\n}");
        assert!(e.is_json);
        assert!(e.metadata.is_empty());
    }

    #[test]
    fn case_insensitive_and_value_kinds() {
        let e = one(
            &format!(
                r#"[{{"EVENTID":"{ID}","EventType":"t","Data":"{{\"b\":1.10}}","METADATA":"hello"}}]"#
            ),
            V20,
        );
        assert_eq!(&e.data[..], b"{\n  \"b\": 1.1\n}");
        assert_eq!(&e.metadata[..], b"hello");
        assert!(e.is_json);
        let e = one(
            &format!(r#"[{{"eventId":"{ID}","eventType":"t","data":"123"}}]"#),
            V20,
        );
        assert_eq!(&e.data[..], b"123");
        assert!(!e.is_json);
        let e = one(
            &format!(r#"[{{"eventId":"{ID}","eventType":"t","data":5,"metadata":{{"m":1}}}}]"#),
            V20,
        );
        assert!(e.data.is_empty());
        assert!(e.is_json, "metadata JSON makes the event JSON");
    }

    #[test]
    fn key_order_preserved_and_v5_drops_leading_type() {
        let body = format!(
            r#"[{{"eventId":"{ID}","eventType":"t","data":{{"$type":"X","z":1,"a":2,"$id":"k"}}}}]"#
        );
        let e = one(&body, V5);
        assert_eq!(
            &e.data[..],
            b"{\n  \"z\": 1,\n  \"a\": 2,\n  \"$id\": \"k\"\n}"
        );
        let e = one(&body, V20);
        assert!(e.data.starts_with(b"{\n  \"$type\": \"X\""));
    }

    #[test]
    fn errors() {
        let err = |b: &str, o| parse_events_json(b.as_bytes(), o).unwrap_err().0;
        assert_eq!(err("{}", V20), INVALID_BODY);
        assert_eq!(err("[]", V20), INVALID_BODY);
        assert_eq!(err("nope", V20), INVALID_BODY);
        assert_eq!(
            err(r#"[{"eventId":"zz","eventType":"t"}]"#, V20),
            INVALID_BODY
        );
        assert_eq!(err(r#"[{"eventType":"t"}]"#, V5), "Empty eventId provided.");
        assert_eq!(
            err(r#"[{"eventType":"t"}]"#, V20),
            "Empty eventId provided. (Parameter 'eventId')"
        );
        assert_eq!(
            err(&format!(r#"[{{"eventId":"{ID}"}}]"#), V5),
            "Empty eventType provided."
        );
    }

    #[test]
    fn single_json_keeps_valid_utf8() {
        assert_eq!(&single_json(b"{a : \"1\"}")[..], b"{a : \"1\"}");
        assert_eq!(&single_json(&[0xff, b'a'])[..], "\u{fffd}a".as_bytes());
    }
}
