//! `ReadResp` decoded for a reader: an event's properties straight into the three values standby
//! uses, everything else as generated.
//!
//! The generated `RecordedEvent` decodes an event's properties (`type`, `content-type`,
//! `created`) into a `HashMap<String, String>`: six strings and a table built, hashed and freed
//! for every event read, about a sixth of the replicator's time in a gRPC catch-up.
//! [`RecordedWire`] reads the same bytes (`streams.proto`: `ReadResp.ReadEvent.RecordedEvent`)
//! into the type, the JSON flag and the creation ticks, and skips properties it has no use for.
//! The generated types still decode every other message, and convert into these with `From`, so
//! that one conversion ([`super::convert`]) serves both.
//!
//! These types only decode: encoding one writes nothing.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{
    bytes as bytes_field, check_wire_type, decode_key, merge_loop, message, skip_field, uint64,
    DecodeContext, WireType,
};
use prost::DecodeError;

use super::convert::JSON;
use proto::event_store::client as shared;
use proto::event_store::client::streams::{read_resp, ReadResp};

/// `ReadResp`: an event decoded as [`ReadEventWire`], any other content as generated.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReadRespWire {
    /// `content.event`.
    pub event: Option<ReadEventWire>,
    /// Any other `content`.
    pub other: Option<read_resp::Content>,
}

/// `ReadResp.ReadEvent`. Its `position` oneof is left out: each record carries its own.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReadEventWire {
    pub event: Option<RecordedWire>,
    pub link: Option<RecordedWire>,
}

/// `ReadResp.ReadEvent.RecordedEvent`, its property map read into the values standby uses.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RecordedWire {
    pub id: Option<shared::Uuid>,
    pub stream_identifier: Option<shared::StreamIdentifier>,
    pub stream_revision: u64,
    pub prepare_position: u64,
    pub commit_position: u64,
    /// The `type` property (`None` when absent or not UTF-8).
    pub event_type: Option<String>,
    /// The `content-type` property is `application/json`.
    pub is_json: bool,
    /// The `created` property: .NET ticks since the Unix epoch.
    pub created: Option<i64>,
    pub custom_metadata: Bytes,
    pub data: Bytes,
}

impl From<read_resp::read_event::RecordedEvent> for RecordedWire {
    fn from(mut e: read_resp::read_event::RecordedEvent) -> RecordedWire {
        RecordedWire {
            id: e.id,
            stream_identifier: e.stream_identifier,
            stream_revision: e.stream_revision,
            prepare_position: e.prepare_position,
            commit_position: e.commit_position,
            event_type: e.metadata.remove("type"),
            is_json: e.metadata.get("content-type").map(String::as_str) == Some(JSON),
            created: e.metadata.get("created").and_then(|c| c.parse().ok()),
            custom_metadata: e.custom_metadata,
            data: e.data,
        }
    }
}

impl From<read_resp::ReadEvent> for ReadEventWire {
    fn from(e: read_resp::ReadEvent) -> ReadEventWire {
        ReadEventWire {
            event: e.event.map(Into::into),
            link: e.link.map(Into::into),
        }
    }
}

impl From<ReadResp> for ReadRespWire {
    fn from(r: ReadResp) -> ReadRespWire {
        match r.content {
            Some(read_resp::Content::Event(e)) => ReadRespWire {
                event: Some(e.into()),
                other: None,
            },
            other => ReadRespWire { event: None, other },
        }
    }
}

/// Merges a message field into an optional value, as generated code does.
fn merge_optional<M: prost::Message + Default>(
    wire_type: WireType,
    field: &mut Option<M>,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    message::merge(wire_type, field.get_or_insert_with(M::default), buf, ctx)
}

/// One map entry's key and value, as bytes.
#[derive(Default)]
struct Entry {
    key: Bytes,
    value: Bytes,
}

impl RecordedWire {
    /// Reads one `metadata` map entry and keeps what standby uses of it.
    fn merge_property(
        &mut self,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        check_wire_type(WireType::LengthDelimited, wire_type)?;
        let mut entry = Entry::default();
        merge_loop(&mut entry, buf, ctx, |entry, buf, ctx| {
            let (tag, wire_type) = decode_key(buf)?;
            match tag {
                1 => bytes_field::merge(wire_type, &mut entry.key, buf, ctx),
                2 => bytes_field::merge(wire_type, &mut entry.value, buf, ctx),
                _ => skip_field(wire_type, tag, buf, ctx),
            }
        })?;
        match entry.key.as_ref() {
            b"type" => self.event_type = String::from_utf8(entry.value.to_vec()).ok(),
            b"content-type" => self.is_json = entry.value.as_ref() == JSON.as_bytes(),
            b"created" => {
                self.created = std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|c| c.parse().ok())
            }
            _ => {}
        }
        Ok(())
    }
}

impl prost::Message for RecordedWire {
    fn encode_raw(&self, _buf: &mut impl BufMut) {}

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => merge_optional(wire_type, &mut self.id, buf, ctx),
            2 => merge_optional(wire_type, &mut self.stream_identifier, buf, ctx),
            3 => uint64::merge(wire_type, &mut self.stream_revision, buf, ctx),
            4 => uint64::merge(wire_type, &mut self.prepare_position, buf, ctx),
            5 => uint64::merge(wire_type, &mut self.commit_position, buf, ctx),
            6 => self.merge_property(wire_type, buf, ctx),
            7 => bytes_field::merge(wire_type, &mut self.custom_metadata, buf, ctx),
            8 => bytes_field::merge(wire_type, &mut self.data, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        0
    }

    fn clear(&mut self) {
        *self = RecordedWire::default();
    }
}

impl prost::Message for ReadEventWire {
    fn encode_raw(&self, _buf: &mut impl BufMut) {}

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => merge_optional(wire_type, &mut self.event, buf, ctx),
            2 => merge_optional(wire_type, &mut self.link, buf, ctx),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        0
    }

    fn clear(&mut self) {
        *self = ReadEventWire::default();
    }
}

impl prost::Message for ReadRespWire {
    fn encode_raw(&self, _buf: &mut impl BufMut) {}

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => {
                self.other = None;
                merge_optional(wire_type, &mut self.event, buf, ctx)
            }
            2..=9 => {
                self.event = None;
                read_resp::Content::merge(&mut self.other, tag, wire_type, buf, ctx)
            }
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        0
    }

    fn clear(&mut self) {
        *self = ReadRespWire::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;
    use std::collections::HashMap;

    fn recorded(
        id: u128,
        properties: &[(&str, &str)],
        custom_metadata: Vec<u8>,
        data: Vec<u8>,
        positions: (u64, u64, u64),
    ) -> read_resp::read_event::RecordedEvent {
        read_resp::read_event::RecordedEvent {
            id: Some(super::super::convert::uuid_to_proto(uuid::Uuid::from_u128(
                id,
            ))),
            stream_identifier: Some(super::super::convert::stream_id("s-1")),
            stream_revision: positions.0,
            prepare_position: positions.1,
            commit_position: positions.2,
            metadata: properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            custom_metadata: custom_metadata.into(),
            data: data.into(),
        }
    }

    /// Decodes `bytes` both ways: as generated then converted, and directly.
    fn both(bytes: &[u8]) -> (ReadRespWire, ReadRespWire) {
        let generated = ReadRespWire::from(ReadResp::decode(bytes).unwrap());
        let direct = ReadRespWire::decode(bytes).unwrap();
        (generated, direct)
    }

    proptest! {
        #[test]
        fn an_event_decodes_as_the_generated_decoder_reads_it(
            id in any::<u128>(),
            event_type in "[a-zA-Z$é ]{0,12}",
            json in any::<bool>(),
            created in proptest::option::of(any::<i64>()),
            extra in proptest::option::of("[a-z]{1,8}"),
            custom_metadata in proptest::collection::vec(any::<u8>(), 0..40),
            data in proptest::collection::vec(any::<u8>(), 0..200),
            positions in (any::<u64>(), any::<u64>(), any::<u64>()),
            with_link in any::<bool>(),
            commit in proptest::option::of(any::<u64>()),
        ) {
            let created = created.map(|c| c.to_string());
            let mut properties = vec![
                ("type", event_type.as_str()),
                ("content-type", if json { JSON } else { "application/octet-stream" }),
            ];
            if let Some(c) = &created {
                properties.push(("created", c));
            }
            if let Some(x) = &extra {
                properties.push(("x-extra", x));
            }
            let event = recorded(id, &properties, custom_metadata.clone(), data.clone(), positions);
            let link = with_link.then(|| recorded(id ^ 1, &[("type", "$>")], vec![], b"0@s".to_vec(), positions));
            let resp = ReadResp {
                content: Some(read_resp::Content::Event(read_resp::ReadEvent {
                    event: Some(event),
                    link,
                    position: Some(match commit {
                        Some(c) => read_resp::read_event::Position::CommitPosition(c),
                        None => read_resp::read_event::Position::NoPosition(()),
                    }),
                })),
            };
            let (generated, direct) = both(&resp.encode_to_vec());
            prop_assert_eq!(&generated, &direct);
            let e = direct.event.unwrap().event.unwrap();
            prop_assert_eq!(e.event_type.as_deref(), Some(event_type.as_str()));
            prop_assert_eq!(e.is_json, json);
            prop_assert_eq!(e.data.as_ref(), data.as_slice());
        }
    }

    #[test]
    fn other_contents_decode_as_generated() {
        let contents = [
            read_resp::Content::Confirmation(read_resp::SubscriptionConfirmation {
                subscription_id: "sub-1".into(),
            }),
            read_resp::Content::Checkpoint(read_resp::Checkpoint {
                commit_position: 10,
                prepare_position: 9,
                timestamp: None,
            }),
            read_resp::Content::CaughtUp(read_resp::CaughtUp {
                timestamp: None,
                stream_revision: None,
                position: Some(read_resp::Position {
                    commit_position: 5,
                    prepare_position: 5,
                }),
            }),
            read_resp::Content::LastStreamPosition(7),
        ];
        for content in contents {
            let resp = ReadResp {
                content: Some(content.clone()),
            };
            let (generated, direct) = both(&resp.encode_to_vec());
            assert_eq!(generated, direct);
            assert_eq!(direct.other, Some(content));
            assert!(direct.event.is_none());
        }
    }
}
