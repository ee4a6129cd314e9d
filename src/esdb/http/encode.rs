//! Request bodies: the `events+json` batch encoding of events given as raw bytes plus an isJson
//! flag, and the checks of the single-event forms (contract §5.1).
//!
//! The server turns each `data`/`metadata` value of an `events+json` body into stored bytes like
//! this: a JSON object or array is re-serialised *indented* and flagged JSON; any other string is
//! stored as its UTF-8 bytes; numbers, booleans, null and a missing value become *empty* bytes; the
//! stored isJson flag is `data is JSON || metadata is JSON`. [`encode_events_json`] chooses, per
//! value, the representation that keeps the stored bytes (up to that unavoidable re-indentation of
//! JSON objects/arrays), and refuses the events it cannot carry faithfully with an
//! [`EncodeError`] that names the form to use instead.

use std::borrow::Borrow;
use std::fmt;

use bytes::Bytes;
use serde::de::IgnoredAny;
use uuid::Uuid;

use crate::esdb::types::EventData;
/// Which part of an event an [`EncodeError`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The data.
    Data,
    /// The metadata.
    Metadata,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Data => "data",
            Part::Metadata => "metadata",
        })
    }
}

/// An event the chosen request form cannot carry without changing what the server stores.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// An `events+json` batch must contain at least one event (the server answers 400).
    #[error("an append must contain at least one event")]
    EmptyBatch,
    /// The nil UUID is refused by the server (`Empty eventId provided.`).
    #[error(
        "event #{index} has the nil event id; give every event a unique, stable id (it is the \
         idempotency key)"
    )]
    NilEventId {
        /// Index of the event in the batch.
        index: usize,
    },
    /// An empty event type is refused by the server (`Empty eventType provided.`).
    #[error("event #{index} ({event_id}) has an empty event type; every event needs a type")]
    EmptyEventType {
        /// Index of the event in the batch.
        index: usize,
        /// Its id.
        event_id: Uuid,
    },
    /// Bytes that are not valid UTF-8 cannot travel inside JSON (there is no base64 in this API).
    #[error(
        "the {part} of event #{index} ({event_id}) is not valid UTF-8 and cannot be sent as \
         application/vnd.eventstore.events+json; send it alone with the application/octet-stream \
         single-event form (Client::append_binary_event), which cannot carry metadata"
    )]
    NotUtf8 {
        /// Index of the event in the batch (0 for single-event forms).
        index: usize,
        /// Its id.
        event_id: Uuid,
        /// Data or metadata.
        part: Part,
    },
    /// Single-event forms send the event type as a header, which cannot hold control characters
    /// or non-ASCII text.
    #[error(
        "the event type {event_type:?} of event {event_id} cannot be sent as an HTTP header; \
         append it with the application/vnd.eventstore.events+json batch form instead"
    )]
    EventTypeNotHeaderSafe {
        /// Its id.
        event_id: Uuid,
        /// The event type.
        event_type: String,
    },
    /// A value that starts like a JSON object/array but is not sent as one: flagged non-JSON data,
    /// or text that is not strictly valid JSON. The server's lenient JSON parser would try to read
    /// it, and re-format it and flag the event JSON if it succeeds.
    #[error(
        "the {part} of event #{index} ({event_id}) starts like a JSON object/array but {}; \
         the server would re-format it and flag the event as JSON if sent as \
         application/vnd.eventstore.events+json; {}",
        if *.flagged_json { "is not valid JSON" } else { "the event is flagged non-JSON" },
        fallback_hint(*.part, *.flagged_json)
    )]
    LooksLikeJson {
        /// Index of the event in the batch.
        index: usize,
        /// Its id.
        event_id: Uuid,
        /// Data or metadata.
        part: Part,
        /// The event's isJson flag.
        flagged_json: bool,
    },
}

fn fallback_hint(part: Part, flagged_json: bool) -> &'static str {
    match (part, flagged_json) {
        (Part::Data, false) => {
            "send it alone with the application/octet-stream single-event form \
             (Client::append_binary_event) to keep the bytes and the flag (metadata cannot be sent that way)"
        }
        (Part::Data, true) => {
            "send it alone with the application/json single-event form (Client::append_json_event), \
             which stores the body unchanged (metadata cannot be sent that way)"
        }
        (Part::Metadata, _) => {
            "no AtomPub request form can store this metadata unchanged; fix the metadata or accept \
             the change explicitly"
        }
    }
}

/// How one data/metadata value goes into the JSON body.
enum Repr<'a> {
    /// Leave the property out (the server stores empty bytes).
    Omit,
    /// Embed the bytes verbatim as a JSON value (they are a JSON object or array).
    Embed(&'a str),
    /// Embed as a JSON string (stored as its UTF-8 bytes).
    Text(&'a str),
}

/// Whether `text` starts (after JSON whitespace) like a JSON object or array, i.e. something the
/// server's lenient parser (Json.NET accepts unquoted keys, single quotes, comments) may turn into
/// JSON when it arrives as a string.
fn looks_like_container(text: &str) -> bool {
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r']);
    trimmed.starts_with('{') || trimmed.starts_with('[')
}

/// Whether `text` is strictly valid JSON.
fn is_valid_json(text: &str) -> bool {
    serde_json::from_str::<IgnoredAny>(text).is_ok()
}

fn utf8(bytes: &[u8], index: usize, event_id: Uuid, part: Part) -> Result<&str, EncodeError> {
    std::str::from_utf8(bytes).map_err(|_| EncodeError::NotUtf8 {
        index,
        event_id,
        part,
    })
}

/// The representation of one value. `embed_allowed`: whether a JSON object/array may be embedded
/// (data of a non-JSON event may not: the server would flag it JSON).
fn repr<'a>(
    bytes: &'a [u8],
    index: usize,
    event_id: Uuid,
    part: Part,
    flagged_json: bool,
) -> Result<Repr<'a>, EncodeError> {
    if bytes.is_empty() {
        return Ok(Repr::Omit);
    }
    let text = utf8(bytes, index, event_id, part)?;
    if !looks_like_container(text) {
        // Plain text, a JSON scalar, or invalid JSON that cannot become an object: sent as a
        // string it is stored as exactly these bytes. (Embedding a scalar would store empty bytes
        // for numbers/booleans/null and the unquoted text for strings.)
        return Ok(Repr::Text(text));
    }
    // Metadata has no flag of its own: an object/array is JSON whichever event it belongs to.
    let embed_allowed = flagged_json || part == Part::Metadata;
    if embed_allowed && is_valid_json(text) {
        Ok(Repr::Embed(text))
    } else {
        Err(EncodeError::LooksLikeJson {
            index,
            event_id,
            part,
            flagged_json,
        })
    }
}

fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Serializing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn push_repr(out: &mut Vec<u8>, name: &str, repr: &Repr<'_>) {
    match repr {
        Repr::Omit => {}
        Repr::Embed(raw) => {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(raw.as_bytes());
        }
        Repr::Text(text) => {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            push_json_string(out, text);
        }
    }
}

/// Encodes a batch as an `application/vnd.eventstore.events+json` body:
/// `[{"eventId":…,"eventType":…,"data":…,"metadata":…}, …]`.
///
/// JSON object/array data of JSON events and JSON object/array metadata are embedded verbatim as
/// JSON values; other valid UTF-8 data/metadata is sent as a JSON string; empty data/metadata is
/// left out.
///
/// # Errors
///
/// [`EncodeError`] when the batch is empty, an event has the nil id or an empty type, a value is not
/// valid UTF-8 ([`EncodeError::NotUtf8`]), or a value starts like a JSON object/array but may not be
/// embedded as one ([`EncodeError::LooksLikeJson`]: the server would re-format it). Each error names
/// the single-event form that can carry the event instead, where one exists.
pub fn encode_events_json<E: Borrow<EventData>>(events: &[E]) -> Result<Bytes, EncodeError> {
    if events.is_empty() {
        return Err(EncodeError::EmptyBatch);
    }
    let mut out = Vec::with_capacity(
        events
            .iter()
            .map(Borrow::borrow)
            .map(|e: &EventData| e.data.len() + e.metadata.len() + e.event_type.len() + 96)
            .sum(),
    );
    out.push(b'[');
    for (index, event) in events.iter().map(Borrow::borrow).enumerate() {
        let event: &EventData = event;
        check_identity(index, event.event_id, &event.event_type)?;
        let data = repr(
            &event.data,
            index,
            event.event_id,
            Part::Data,
            event.is_json,
        )?;
        let metadata = repr(
            &event.metadata,
            index,
            event.event_id,
            Part::Metadata,
            event.is_json,
        )?;
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"eventId\":\"");
        out.extend_from_slice(
            event
                .event_id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        );
        out.extend_from_slice(b"\",\"eventType\":");
        push_json_string(&mut out, &event.event_type);
        push_repr(&mut out, "data", &data);
        push_repr(&mut out, "metadata", &metadata);
        out.push(b'}');
    }
    out.push(b']');
    Ok(Bytes::from(out))
}

/// Checks the id and type every write needs.
///
/// # Errors
///
/// [`EncodeError::NilEventId`], [`EncodeError::EmptyEventType`].
pub fn check_identity(index: usize, event_id: Uuid, event_type: &str) -> Result<(), EncodeError> {
    if event_id.is_nil() {
        return Err(EncodeError::NilEventId { index });
    }
    if event_type.is_empty() {
        return Err(EncodeError::EmptyEventType { index, event_id });
    }
    Ok(())
}

/// Checks a body for the `application/json` single-event and metadata forms: the server decodes it
/// as UTF-8 and re-encodes it, so invalid UTF-8 would be silently replaced by U+FFFD.
///
/// # Errors
///
/// [`EncodeError::NotUtf8`] for invalid UTF-8.
pub fn check_json_body(event_id: Uuid, body: &[u8], part: Part) -> Result<(), EncodeError> {
    utf8(body, 0, event_id, part).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn decode(body: &Bytes) -> serde_json::Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn json_object_data_is_embedded_verbatim() {
        let body =
            encode_events_json(&[EventData::json(id(1), "event-type", &b"{\"a\": \"1\"}"[..])])
                .unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"[{"eventId":"00000000-0000-0000-0000-000000000001","eventType":"event-type","data":{"a": "1"}}]"#
        );
    }

    #[test]
    fn matches_the_docs_batch_shape() {
        let fixture: serde_json::Value = serde_json::from_str(
            r#"[{"eventId":"fbf4b1a1-b4a3-4dfe-a01f-ec52c34e16e4","eventType":"event-type","data":{"a":"1"}},
                {"eventId":"0f9fad5b-d9cb-469f-a165-70867728951e","eventType":"event-type","data":{"b":"2"}}]"#,
        )
        .unwrap();
        let body = encode_events_json(&[
            EventData::json(
                "fbf4b1a1-b4a3-4dfe-a01f-ec52c34e16e4".parse().unwrap(),
                "event-type",
                &br#"{"a":"1"}"#[..],
            ),
            EventData::json(
                "0f9fad5b-d9cb-469f-a165-70867728951e".parse().unwrap(),
                "event-type",
                &br#"{"b":"2"}"#[..],
            ),
        ])
        .unwrap();
        assert_eq!(decode(&body), fixture);
    }

    #[test]
    fn text_data_and_metadata_become_strings() {
        let event = EventData::binary(id(2), "t\"q", &b"hello \"w\"\n"[..])
            .with_metadata(&b"{\"source\":\"web\"}"[..]);
        let value = decode(&encode_events_json(&[event]).unwrap());
        assert_eq!(value[0]["eventType"], "t\"q");
        assert_eq!(value[0]["data"], "hello \"w\"\n");
        assert_eq!(value[0]["metadata"]["source"], "web");
    }

    #[test]
    fn json_scalars_are_sent_as_text_to_keep_bytes() {
        for data in ["123", "true", "null", "\"x\"", "not {json"] {
            let value = decode(
                &encode_events_json(&[EventData::json(id(3), "t", data.as_bytes().to_vec())])
                    .unwrap(),
            );
            assert_eq!(value[0]["data"], data, "{data}");
        }
    }

    #[test]
    fn empty_values_are_omitted() {
        let value =
            decode(&encode_events_json(&[EventData::json(id(4), "t", Bytes::new())]).unwrap());
        assert!(value[0].get("data").is_none());
        assert!(value[0].get("metadata").is_none());
    }

    #[test]
    fn refusals() {
        assert_eq!(
            encode_events_json::<EventData>(&[]),
            Err(EncodeError::EmptyBatch)
        );
        assert_eq!(
            encode_events_json(&[EventData::json(Uuid::nil(), "t", &b"{}"[..])]),
            Err(EncodeError::NilEventId { index: 0 })
        );
        assert_eq!(
            encode_events_json(&[EventData::json(id(1), "", &b"{}"[..])]),
            Err(EncodeError::EmptyEventType {
                index: 0,
                event_id: id(1)
            })
        );
        let err = encode_events_json(&[
            EventData::json(id(1), "t", &b"{}"[..]),
            EventData::binary(id(2), "t", vec![0xff, 0xfe]),
        ])
        .unwrap_err();
        assert_eq!(
            err,
            EncodeError::NotUtf8 {
                index: 1,
                event_id: id(2),
                part: Part::Data
            }
        );
        assert!(err.to_string().contains("application/octet-stream"));
        assert_eq!(
            encode_events_json(
                &[EventData::json(id(1), "t", &b"{}"[..]).with_metadata(vec![0xc3])]
            ),
            Err(EncodeError::NotUtf8 {
                index: 0,
                event_id: id(1),
                part: Part::Metadata
            })
        );
        assert_eq!(
            encode_events_json(&[EventData::binary(id(5), "t", &b" [1,2]"[..])]),
            Err(EncodeError::LooksLikeJson {
                index: 0,
                event_id: id(5),
                part: Part::Data,
                flagged_json: false,
            })
        );
        // Json.NET would parse `{a : "1"}` (the server's own test payload); serde_json does not.
        let err =
            encode_events_json(&[EventData::json(id(6), "t", &b"{a : \"1\"}"[..])]).unwrap_err();
        assert!(
            err.to_string()
                .contains("application/json single-event form"),
            "{err}"
        );
        let err =
            encode_events_json(
                &[EventData::json(id(7), "t", &b"{}"[..]).with_metadata(&b"{x"[..])],
            )
            .unwrap_err();
        assert!(matches!(
            err,
            EncodeError::LooksLikeJson {
                part: Part::Metadata,
                ..
            }
        ));
    }

    #[test]
    fn debug_hides_payloads() {
        let event = EventData::json(id(1), "t", &b"{\"secret\":1}"[..]);
        assert!(!format!("{event:?}").contains("secret"));
    }

    #[test]
    fn json_body_check() {
        assert!(check_json_body(id(1), b"{}", Part::Data).is_ok());
        assert!(check_json_body(id(1), &[0xff], Part::Data).is_err());
    }
}
