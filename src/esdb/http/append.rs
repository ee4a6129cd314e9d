//! Appends over AtomPub: the events the `events+json` batch cannot carry, and the single-event
//! forms that carry them instead.
//!
//! The batch carries ids, types, data and metadata, but as JSON text: data or metadata that is
//! not UTF-8, or that starts like a JSON object or array the server would not store unchanged,
//! cannot travel in it ([`EncodeError`]). Such an event goes alone in a single-event form —
//! `application/json` for JSON-flagged UTF-8 data, `application/octet-stream` otherwise — which
//! stores the data bytes exactly and has no place for metadata (`docs/replication.md`, "Fidelity
//! limits of the HTTP API").

use super::{Client, EncodeError};
use crate::esdb::{Appended, Error, EventData};
use crate::position::ExpectedVersion;

/// The index, within the events of a batch append that failed with `e`, of the first event the
/// batch form cannot carry; `None` when `e` is about something else.
pub fn refused_in_batch(e: &Error) -> Option<usize> {
    match e {
        Error::Encode(
            EncodeError::NotUtf8 { index, .. } | EncodeError::LooksLikeJson { index, .. },
        ) => Some(*index),
        _ => None,
    }
}

/// Whether the batch form carries `event` unchanged (up to JSON re-indentation).
pub fn batch_carries(event: &EventData) -> bool {
    super::encode::encode_events_json(std::slice::from_ref(event)).is_ok()
}

/// Whether [`append_single`] leaves out part of `event`: its metadata, if it has any.
pub fn single_drops_metadata(event: &EventData) -> bool {
    !event.metadata.is_empty()
}

/// Appends `event` alone in the single-event form that stores its data bytes unchanged,
/// without its metadata.
///
/// # Errors
/// As [`Client::append_events`].
pub async fn append_single(
    client: &Client,
    stream: &str,
    event: &EventData,
    expected: ExpectedVersion,
) -> Result<Appended, Error> {
    let data = event.data.clone();
    if event.is_json && std::str::from_utf8(&event.data).is_ok() {
        client
            .append_json_event(stream, event.event_id, &event.event_type, data, expected)
            .await
    } else {
        client
            .append_binary_event(stream, event.event_id, &event.event_type, data, expected)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn the_batch_refuses_non_utf8_and_json_lookalikes_by_index_and_nothing_else() {
        let id = Uuid::from_u128;
        let events = [
            EventData::json(id(1), "t", &b"{\"a\":1}"[..]),
            EventData::binary(id(2), "t", &b"\xff\x00"[..]),
        ];
        let err = Error::from(super::super::encode::encode_events_json(&events).unwrap_err());
        assert_eq!(refused_in_batch(&err), Some(1));
        let lookalike = [EventData::binary(id(3), "t", &b"[1,2]"[..])];
        let err = Error::from(super::super::encode::encode_events_json(&lookalike).unwrap_err());
        assert_eq!(refused_in_batch(&err), Some(0));
        let empty: [EventData; 0] = [];
        let err = Error::from(super::super::encode::encode_events_json(&empty).unwrap_err());
        assert_eq!(refused_in_batch(&err), None);
        assert!(!single_drops_metadata(&events[1]));
        assert!(single_drops_metadata(
            &events[1].clone().with_metadata(&b"m"[..])
        ));
    }
}
