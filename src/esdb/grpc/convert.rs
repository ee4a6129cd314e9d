//! proto ↔ domain types, pure: UUIDs in both wire forms, stream names as bytes, expected
//! revisions, recorded events (exact bytes, content type, `created` ticks), positions, gossip
//! members, users.
//!
//! Wire facts (`KurrentDB src/KurrentDB.Core/Services/Transport/Grpc/MetadataHelpers.cs`,
//! `Streams.Append.cs`): a proposed event's `metadata` map must carry `type` and `content-type`;
//! the server keeps only `isJson = content-type == "application/json"` and answers reads with
//! `type`, `created` (.NET ticks since the Unix epoch) and `content-type` (`application/json`
//! or `application/octet-stream`). Every other key is ignored.

use std::collections::HashMap;

use bytes::Bytes;
use proto::event_store::client as shared;
use proto::event_store::client::streams::read_resp;
use uuid::Uuid;

use super::error::{revision, CallInfo};
use super::read_resp::{ReadEventWire, ReadRespWire, RecordedWire};
use crate::esdb::error::Error;
use crate::esdb::node::{Endpoint, Gossip, Member, NodeState};
use crate::esdb::page::{EventRef, RecordedEvent};
use crate::esdb::types::EventData;
use crate::esdb::types::UserDetails;
use crate::position::{CurrentVersion, ExpectedVersion, Position, StreamRevision};

/// `content-type` of a JSON event.
pub const JSON: &str = "application/json";
/// `content-type` of any other event.
pub const BINARY: &str = "application/octet-stream";

/// An event read over gRPC: the stored record, exactly, with where it sits in `$all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEvent {
    /// The event. `data` and `metadata` are always `Some`: gRPC carries the stored bytes as
    /// they are, empty included, so `None` never means "not sent" here.
    pub event: RecordedEvent,
    /// Position of the record in `$all`.
    pub position: Position,
    /// The server's `created` stamp: .NET ticks (100 ns) since the Unix epoch, unrounded.
    pub created_ticks: Option<i64>,
}

impl ReadEvent {
    /// The data bytes.
    pub fn data(&self) -> &Bytes {
        self.event
            .data
            .as_ref()
            .expect("gRPC events always carry data")
    }

    /// The metadata bytes (empty when the event has none).
    pub fn metadata(&self) -> &Bytes {
        self.event
            .metadata
            .as_ref()
            .expect("gRPC events always carry metadata")
    }
}

/// The UUID in the structured form (the two big-endian halves as signed 64-bit numbers), which
/// the official Rust client sends.
pub fn uuid_to_proto(id: Uuid) -> shared::Uuid {
    let n = id.as_u128();
    shared::Uuid {
        value: Some(shared::uuid::Value::Structured(shared::uuid::Structured {
            most_significant_bits: (n >> 64) as u64 as i64,
            least_significant_bits: n as u64 as i64,
        })),
    }
}

/// A UUID in either wire form.
pub fn uuid_from_proto(id: Option<&shared::Uuid>) -> Option<Uuid> {
    match id?.value.as_ref()? {
        shared::uuid::Value::Structured(s) => Some(Uuid::from_u128(
            (u128::from(s.most_significant_bits as u64) << 64)
                | u128::from(s.least_significant_bits as u64),
        )),
        shared::uuid::Value::String(text) => Uuid::parse_str(text).ok(),
    }
}

/// A stream name on the wire (bytes, UTF-8).
pub fn stream_id(stream: &str) -> shared::StreamIdentifier {
    shared::StreamIdentifier {
        stream_name: Bytes::copy_from_slice(stream.as_bytes()),
    }
}

/// The event metadata map of an append: `type` and `content-type`, nothing else.
pub fn proposed_metadata(event: &EventData) -> HashMap<String, String> {
    HashMap::from([
        ("type".to_owned(), event.event_type.clone()),
        (
            "content-type".to_owned(),
            if event.is_json { JSON } else { BINARY }.to_owned(),
        ),
    ])
}

/// The parts of an expected revision, for the four oneofs that spell it alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// `revision`.
    Revision(u64),
    /// `no_stream`.
    NoStream,
    /// `any`.
    Any,
    /// `stream_exists`.
    StreamExists,
}

impl From<ExpectedVersion> for Expected {
    fn from(expected: ExpectedVersion) -> Expected {
        match expected {
            ExpectedVersion::Any => Expected::Any,
            ExpectedVersion::NoStream => Expected::NoStream,
            ExpectedVersion::StreamExists => Expected::StreamExists,
            ExpectedVersion::Exact(r) => Expected::Revision(r.get()),
        }
    }
}

/// Converts one `ReadResp.event`.
///
/// # Errors
///
/// [`Error::Protocol`] when the event lacks an id, a stream name, or the `type` metadata, or a
/// number is out of range.
pub fn read_event(event: read_resp::ReadEvent, call: &CallInfo) -> Result<ReadEvent, Error> {
    read_event_wire(event.into(), call)
}

/// As [`read_event`], from the reader's decoding of the event ([`ReadEventWire`]).
///
/// # Errors
///
/// As [`read_event`].
pub fn read_event_wire(event: ReadEventWire, call: &CallInfo) -> Result<ReadEvent, Error> {
    let mut read = subscribed_event(event, call)?;
    read.event.updated = read.created_ticks.map(crate::clock::ticks_rfc3339);
    Ok(read)
}

/// Converts one event of a subscription as [`read_event`] does, except that `event.updated` is
/// left `None`: `created_ticks` holds the time. A subscription delivers every event of a
/// catch-up, and formatting each one's timestamp costs more than a tenth of the reader's time,
/// though only the last of a batch is ever shown.
///
/// # Errors
///
/// As [`read_event`].
pub fn subscribed_event(event: ReadEventWire, call: &CallInfo) -> Result<ReadEvent, Error> {
    let link = event.link.map(|l| recorded(l, call)).transpose()?;
    let target = event
        .event
        .ok_or_else(|| call.protocol("a read event without its event"))?;
    let (mut recorded_event, position, created) = recorded(target, call)?;
    if let Some((link_event, link_position, _)) = link {
        // A resolved link: the event is the target, the record read (and its position) the
        // link's.
        recorded_event.link = Some(EventRef {
            stream: link_event.stream,
            revision: link_event.revision,
        });
        recorded_event.link_metadata = link_event.metadata.filter(|m| !m.is_empty());
        recorded_event.is_link_metadata = recorded_event.link_metadata.is_some();
        return Ok(ReadEvent {
            event: recorded_event,
            position: link_position,
            created_ticks: created,
        });
    }
    Ok(ReadEvent {
        event: recorded_event,
        position,
        created_ticks: created,
    })
}

fn recorded(
    event: RecordedWire,
    call: &CallInfo,
) -> Result<(RecordedEvent, Position, Option<i64>), Error> {
    let event_id = uuid_from_proto(event.id.as_ref())
        .ok_or_else(|| call.protocol("an event without a valid id"))?;
    let stream = event
        .stream_identifier
        .map(|s| String::from_utf8_lossy(&s.stream_name).into_owned())
        .ok_or_else(|| call.protocol(format!("event {event_id} without a stream name")))?;
    let event_type = event
        .event_type
        .ok_or_else(|| call.protocol(format!("event {event_id} without a type")))?;
    let (is_json, created) = (event.is_json, event.created);
    let position = Position::new(event.commit_position, event.prepare_position)
        .ok_or_else(|| call.protocol(format!("event {event_id} has a position above i64::MAX")))?;
    let revision = revision(event.stream_revision, call)?;
    let is_metadata = !event.custom_metadata.is_empty();
    Ok((
        RecordedEvent {
            stream,
            revision,
            event_id,
            event_type,
            is_json,
            // Copied out: the decoded bytes are slices of the connection's receive buffer, and
            // one event kept until its stream's append is done would keep the whole buffer it
            // arrived in (a catch-up's peak memory fell from 66 to 48 MiB with the copy).
            data: Some(Bytes::copy_from_slice(&event.data)),
            metadata: Some(Bytes::copy_from_slice(&event.custom_metadata)),
            is_metadata,
            link_metadata: None,
            is_link_metadata: false,
            is_redacted: false,
            link: None,
            updated: None,
        },
        position,
        created,
    ))
}

/// What one `ReadResp` of a subscription means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionMessage {
    /// An event.
    Event(Box<ReadEvent>),
    /// The subscription has delivered everything that existed when it caught up; live events
    /// follow. `position` is the `$all` position it caught up at (absent for stream
    /// subscriptions and on an empty database).
    CaughtUp {
        /// Where it caught up.
        position: Option<Position>,
    },
    /// A filtered `$all` subscription has considered every record up to `position`: resume
    /// from here and nothing that passes the filter is lost.
    Checkpoint(Position),
    /// The subscription fell behind the live edge (never sent by today's servers).
    FellBehind,
    /// A message this client does not need (confirmation, stream positions).
    Other,
}

/// Converts a subscription message.
///
/// # Errors
///
/// [`Error::Protocol`] for a malformed event or position.
pub fn subscription_message(
    resp: ReadRespWire,
    call: &CallInfo,
) -> Result<SubscriptionMessage, Error> {
    let position = |commit: u64, prepare: u64| {
        Position::new(commit, prepare).ok_or_else(|| call.protocol("a position above i64::MAX"))
    };
    if let Some(event) = resp.event {
        return Ok(SubscriptionMessage::Event(Box::new(subscribed_event(
            event, call,
        )?)));
    }
    Ok(match resp.other {
        Some(read_resp::Content::Event(event)) => {
            SubscriptionMessage::Event(Box::new(subscribed_event(event.into(), call)?))
        }
        Some(read_resp::Content::CaughtUp(caught_up)) => SubscriptionMessage::CaughtUp {
            position: caught_up
                .position
                .map(|p| position(p.commit_position, p.prepare_position))
                .transpose()?,
        },
        Some(read_resp::Content::Checkpoint(c)) => {
            SubscriptionMessage::Checkpoint(position(c.commit_position, c.prepare_position)?)
        }
        Some(read_resp::Content::FellBehind(_)) => SubscriptionMessage::FellBehind,
        _ => SubscriptionMessage::Other,
    })
}

/// An append's resulting state: the last revision (or no stream) and the position.
pub fn current_version(current: Option<u64>, call: &CallInfo) -> Result<CurrentVersion, Error> {
    match current {
        None => Ok(CurrentVersion::NoStream),
        Some(value) => Ok(CurrentVersion::Revision(revision(value, call)?)),
    }
}

/// A position in a write reply.
pub fn reply_position(commit: u64, prepare: u64, call: &CallInfo) -> Result<Position, Error> {
    Position::new(commit, prepare).ok_or_else(|| call.protocol("a position above i64::MAX"))
}

/// Gossip `ClusterInfo` → [`Gossip`]. States map through [`NodeState::parse`]; the read-only
/// replica flag covers its starting states too (`PreReadOnlyReplica`, `ReadOnlyLeaderless`).
pub fn gossip(info: proto::event_store::client::gossip::ClusterInfo) -> Gossip {
    use proto::event_store::client::gossip::member_info::VNodeState;
    let members = info
        .members
        .into_iter()
        .map(|m| {
            let state = VNodeState::try_from(m.state).ok();
            let name = state.map_or("Unknown", |s| s.as_str_name());
            Member {
                instance_id: uuid_from_proto(m.instance_id.as_ref()),
                state: NodeState::parse(name),
                is_alive: m.is_alive,
                http_endpoint: m.http_end_point.and_then(|e| {
                    Some(Endpoint {
                        host: e.address,
                        port: u16::try_from(e.port).ok()?,
                    })
                }),
                internal_http_endpoint: None,
                last_commit_position: None,
                writer_checkpoint: None,
                chaser_checkpoint: None,
                epoch_position: None,
                election_epoch: None,
                election_epoch_id: None,
                node_priority: None,
                is_read_only_replica: matches!(
                    state,
                    Some(
                        VNodeState::ReadOnlyReplica
                            | VNodeState::PreReadOnlyReplica
                            | VNodeState::ReadOnlyLeaderless
                    )
                ),
                timestamp: Some(m.time_stamp.to_string()),
            }
        })
        .collect();
    Gossip {
        members,
        server: None,
    }
}

/// `DetailsResp.UserDetails` → [`UserDetails`].
pub fn user(details: proto::event_store::client::users::details_resp::UserDetails) -> UserDetails {
    UserDetails {
        login_name: details.login_name,
        full_name: details.full_name,
        groups: details.groups,
        disabled: details.disabled,
    }
}

/// The revision a BatchAppend wrong-expected-version detail reports, from the packed
/// `event_store.client.WrongExpectedVersion` (`KurrentDB …/Transport/Grpc/Status.cs`).
pub fn batch_current(details: Option<&prost_types::Any>) -> Option<CurrentVersion> {
    use prost::Message;
    let any = details?;
    if !any
        .type_url
        .ends_with("event_store.client.WrongExpectedVersion")
    {
        return None;
    }
    let wev = shared::WrongExpectedVersion::decode(any.value.as_slice()).ok()?;
    match wev.current_stream_revision_option? {
        shared::wrong_expected_version::CurrentStreamRevisionOption::CurrentStreamRevision(r) => {
            StreamRevision::new(r).map(CurrentVersion::Revision)
        }
        shared::wrong_expected_version::CurrentStreamRevisionOption::CurrentNoStream(()) => {
            Some(CurrentVersion::NoStream)
        }
    }
}

/// The sizes a BatchAppend size-limit detail reports, as text for the error.
pub fn batch_size_detail(details: Option<&prost_types::Any>) -> Option<String> {
    use prost::Message;
    let any = details?;
    if any
        .type_url
        .ends_with("event_store.client.MaximumAppendSizeExceeded")
    {
        let d = shared::MaximumAppendSizeExceeded::decode(any.value.as_slice()).ok()?;
        return Some(format!(
            "the append is above the server's maximum append size of {} bytes",
            d.max_append_size
        ));
    }
    if any
        .type_url
        .ends_with("event_store.client.MaximumAppendEventSizeExceeded")
    {
        let d = shared::MaximumAppendEventSizeExceeded::decode(any.value.as_slice()).ok()?;
        return Some(format!(
            "event {} is {} bytes, above the server's maximum event size of {} bytes",
            d.event_id, d.proposed_event_size, d.max_append_event_size
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proto::event_store::client::streams::ReadResp;

    fn wire_event(
        id: shared::Uuid,
        metadata: &[(&str, &str)],
    ) -> read_resp::read_event::RecordedEvent {
        read_resp::read_event::RecordedEvent {
            id: Some(id),
            stream_identifier: Some(stream_id("orders-1")),
            stream_revision: 3,
            prepare_position: 1200,
            commit_position: 1200,
            metadata: metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            custom_metadata: Bytes::from_static(&[0xff, 0x00, 0xfe]),
            data: Bytes::from_static(b"{ \"a\" :1 }"),
        }
    }

    proptest! {
        #[test]
        fn uuids_round_trip_in_both_forms(n in any::<u128>()) {
            let id = Uuid::from_u128(n);
            prop_assert_eq!(uuid_from_proto(Some(&uuid_to_proto(id))), Some(id));
            let text = shared::Uuid { value: Some(shared::uuid::Value::String(id.to_string())) };
            prop_assert_eq!(uuid_from_proto(Some(&text)), Some(id));
        }
    }

    proptest! {
        /// Whatever bytes a node sends, decoding them as a read reply and converting it gives a
        /// value or a protocol error, never a panic.
        #[test]
        fn any_read_reply_converts_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            use prost::Message;
            if let Ok(reply) = ReadResp::decode(bytes.as_slice()) {
                let _ = subscription_message(reply.into(), &CallInfo::new("read", "n:1"));
            }
            if let Ok(reply) = ReadRespWire::decode(bytes.as_slice()) {
                let _ = subscription_message(reply, &CallInfo::new("read", "n:1"));
            }
        }

        #[test]
        fn any_recorded_event_converts_without_panicking(
            id in any::<u128>(),
            revision in any::<u64>(),
            commit in any::<u64>(),
            prepare in any::<u64>(),
            keys in proptest::collection::vec(("(type|content-type|created|x)", "\\PC{0,8}"), 0..4),
        ) {
            let mut event = wire_event(uuid_to_proto(Uuid::from_u128(id)), &[]);
            event.stream_revision = revision;
            event.commit_position = commit;
            event.prepare_position = prepare;
            event.metadata = keys.into_iter().collect();
            let reply = read_resp::ReadEvent { event: Some(event), link: None, position: None };
            if let Ok(read) = read_event(reply, &CallInfo::new("read", "n:1")) {
                prop_assert!(read.event.revision.get() <= i64::MAX as u64);
                prop_assert!(read.position.commit() <= i64::MAX as u64);
            }
        }
    }

    #[test]
    fn structured_uuid_halves_are_big_endian() {
        // The official clients put the first 8 bytes of the canonical form in the most
        // significant half.
        let id = Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        let Some(shared::uuid::Value::Structured(s)) = uuid_to_proto(id).value else {
            panic!()
        };
        assert_eq!(s.most_significant_bits as u64, 0x0011_2233_4455_6677);
        assert_eq!(s.least_significant_bits as u64, 0x8899_aabb_ccdd_eeff);
    }

    #[test]
    fn events_keep_their_exact_bytes_type_and_content_type() {
        let id = Uuid::new_v4();
        let call = CallInfo::new("read", "n:1");
        let event = read_resp::ReadEvent {
            event: Some(wire_event(
                uuid_to_proto(id),
                &[
                    ("type", "OrderPlaced"),
                    ("content-type", "application/json"),
                    ("created", "17000000000000000"),
                ],
            )),
            link: None,
            position: None,
        };
        let read = read_event(event, &call).unwrap();
        assert_eq!(read.event.event_id, id);
        assert_eq!(read.event.event_type, "OrderPlaced");
        assert!(read.event.is_json);
        assert_eq!(read.data().as_ref(), b"{ \"a\" :1 }");
        assert_eq!(read.metadata().as_ref(), &[0xff, 0x00, 0xfe]);
        assert_eq!(read.position, Position::new(1200, 1200).unwrap());
        assert_eq!(read.created_ticks, Some(17_000_000_000_000_000));
        assert_eq!(read.event.revision.get(), 3);
    }

    #[test]
    fn malformed_events_are_protocol_errors_not_panics() {
        let call = CallInfo::new("read", "n:1");
        let no_type = read_resp::ReadEvent {
            event: Some(wire_event(uuid_to_proto(Uuid::new_v4()), &[])),
            link: None,
            position: None,
        };
        assert!(matches!(
            read_event(no_type, &call),
            Err(Error::Protocol { .. })
        ));
        let bad_id = read_resp::ReadEvent {
            event: Some(wire_event(
                shared::Uuid {
                    value: Some(shared::uuid::Value::String("nope".into())),
                },
                &[("type", "t")],
            )),
            link: None,
            position: None,
        };
        assert!(matches!(
            read_event(bad_id, &call),
            Err(Error::Protocol { .. })
        ));
        let empty = read_resp::ReadEvent {
            event: None,
            link: None,
            position: None,
        };
        assert!(read_event(empty, &call).is_err());
        let mut huge = wire_event(uuid_to_proto(Uuid::new_v4()), &[("type", "t")]);
        huge.stream_revision = u64::MAX;
        let huge = read_resp::ReadEvent {
            event: Some(huge),
            link: None,
            position: None,
        };
        assert!(read_event(huge, &call).is_err());
    }

    #[test]
    fn append_metadata_is_type_and_content_type_only() {
        let json = EventData::json(Uuid::new_v4(), "A", "{}");
        assert_eq!(proposed_metadata(&json)["content-type"], JSON);
        assert_eq!(proposed_metadata(&json)["type"], "A");
        let binary = EventData::binary(Uuid::new_v4(), "B", vec![0xff]);
        assert_eq!(proposed_metadata(&binary)["content-type"], BINARY);
        assert_eq!(proposed_metadata(&binary).len(), 2);
    }

    #[test]
    fn batch_wrong_expected_version_detail_decodes() {
        use prost::Message;
        let wev = shared::WrongExpectedVersion {
            current_stream_revision_option: Some(
                shared::wrong_expected_version::CurrentStreamRevisionOption::CurrentStreamRevision(
                    7,
                ),
            ),
            expected_stream_position_option: None,
        };
        let any = prost_types::Any {
            type_url: "type.googleapis.com/event_store.client.WrongExpectedVersion".into(),
            value: wev.encode_to_vec(),
        };
        assert_eq!(
            batch_current(Some(&any)),
            Some(CurrentVersion::Revision(StreamRevision::new(7).unwrap()))
        );
        assert_eq!(batch_current(None), None);
    }
}
