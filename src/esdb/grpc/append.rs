//! The `Streams.Append` request, encoded straight from the events to write.
//!
//! The generated `ProposedMessage` keeps an event's two properties (`type`, `content-type`) in a
//! `HashMap<String, String>`: four strings and a table built, hashed, encoded and freed for every
//! event, about a sixth of the replicator's time in a gRPC catch-up. [`AppendMessage`] writes the
//! same protobuf bytes (`streams.proto`: `AppendReq`, `ProposedMessage`, `UUID`) from the event
//! itself; the server, and the generated decoder the tests use, cannot tell the difference.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{
    encode_key, encode_varint, encoded_len_varint, key_len, skip_field, DecodeContext, WireType,
};
use prost::DecodeError;
use uuid::Uuid;

use super::convert::{BINARY, JSON};
use crate::esdb::EventData;
use proto::event_store::client::streams::append_req;

/// One message of an `Append` call: the options first, then one per event.
#[derive(Debug, Clone, PartialEq)]
pub enum AppendMessage {
    /// `AppendReq.options`.
    Options(append_req::Options),
    /// `AppendReq.proposed_message`.
    Event(ProposedEvent),
}

/// An event to append, as `ProposedMessage` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedEvent {
    pub id: Uuid,
    pub event_type: String,
    pub is_json: bool,
    pub custom_metadata: Bytes,
    pub data: Bytes,
}

impl From<&EventData> for ProposedEvent {
    fn from(event: &EventData) -> ProposedEvent {
        ProposedEvent {
            id: event.event_id,
            event_type: event.event_type.clone(),
            is_json: event.is_json,
            custom_metadata: event.metadata.clone(),
            data: event.data.clone(),
        }
    }
}

/// The length of a length-delimited field `tag` holding `len` bytes, key and length included.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_delimited(tag: u32, bytes: &[u8], buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.put_slice(bytes);
}

/// An `int64` field; zero is the default and is not written (proto3).
fn int64_len(tag: u32, value: i64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value as u64)
    }
}

fn put_int64(tag: u32, value: i64, buf: &mut impl BufMut) {
    if value != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(value as u64, buf);
    }
}

impl ProposedEvent {
    /// The UUID in its structured form, as the official clients send it: the two big-endian
    /// halves as signed 64-bit numbers.
    fn halves(&self) -> (i64, i64) {
        let n = self.id.as_u128();
        ((n >> 64) as u64 as i64, n as u64 as i64)
    }

    fn content_type(&self) -> &'static str {
        if self.is_json {
            JSON
        } else {
            BINARY
        }
    }

    /// `UUID.structured`'s length.
    fn structured_len(&self) -> usize {
        let (most, least) = self.halves();
        int64_len(1, most) + int64_len(2, least)
    }

    /// A map entry's length: `key = 1`, `value = 2`.
    fn entry_len(key: &str, value: &str) -> usize {
        delimited_len(1, key.len()) + delimited_len(2, value.len())
    }

    fn properties(&self) -> [(&str, &str); 2] {
        [
            ("type", self.event_type.as_str()),
            ("content-type", self.content_type()),
        ]
    }

    /// `ProposedMessage`'s length.
    fn len(&self) -> usize {
        let uuid = delimited_len(1, self.structured_len());
        let mut len = delimited_len(1, uuid);
        for (key, value) in self.properties() {
            len += delimited_len(2, Self::entry_len(key, value));
        }
        if !self.custom_metadata.is_empty() {
            len += delimited_len(3, self.custom_metadata.len());
        }
        if !self.data.is_empty() {
            len += delimited_len(4, self.data.len());
        }
        len
    }

    fn encode(&self, buf: &mut impl BufMut) {
        // id = 1: UUID { structured = 1 { most = 1, least = 2 } }
        let structured = self.structured_len();
        encode_key(1, WireType::LengthDelimited, buf);
        encode_varint(delimited_len(1, structured) as u64, buf);
        encode_key(1, WireType::LengthDelimited, buf);
        encode_varint(structured as u64, buf);
        let (most, least) = self.halves();
        put_int64(1, most, buf);
        put_int64(2, least, buf);
        // metadata = 2: map<string, string>, one entry message per property.
        for (key, value) in self.properties() {
            encode_key(2, WireType::LengthDelimited, buf);
            encode_varint(Self::entry_len(key, value) as u64, buf);
            put_delimited(1, key.as_bytes(), buf);
            put_delimited(2, value.as_bytes(), buf);
        }
        // custom_metadata = 3, data = 4: bytes, left out when empty (proto3).
        if !self.custom_metadata.is_empty() {
            put_delimited(3, &self.custom_metadata, buf);
        }
        if !self.data.is_empty() {
            put_delimited(4, &self.data, buf);
        }
    }
}

impl prost::Message for AppendMessage {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match self {
            AppendMessage::Options(options) => prost::encoding::message::encode(1, options, buf),
            AppendMessage::Event(event) => {
                encode_key(2, WireType::LengthDelimited, buf);
                encode_varint(event.len() as u64, buf);
                event.encode(buf);
            }
        }
    }

    /// Only ever encoded: a reply of the server is an `AppendResp`.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        match self {
            AppendMessage::Options(options) => prost::encoding::message::encoded_len(1, options),
            AppendMessage::Event(event) => delimited_len(2, event.len()),
        }
    }

    fn clear(&mut self) {
        *self = AppendMessage::Options(append_req::Options::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use proto::event_store::client::streams::AppendReq;

    /// What the generated types would send for `event`.
    fn generated(event: &EventData) -> append_req::ProposedMessage {
        append_req::ProposedMessage {
            id: Some(super::super::convert::uuid_to_proto(event.event_id)),
            metadata: super::super::convert::proposed_metadata(event),
            custom_metadata: event.metadata.clone(),
            data: event.data.clone(),
        }
    }

    #[test]
    fn an_event_encodes_to_what_the_generated_decoder_reads_as_the_generated_message() {
        let events = [
            EventData::json(Uuid::new_v4(), "Placed", &br#"{"a":1}"#[..])
                .with_metadata(&br#"{"m":true}"#[..]),
            EventData::binary(Uuid::from_u128(u128::MAX), "bin", &b"\xff\x00\xfe"[..])
                .with_metadata(&b"\x00"[..]),
            EventData::binary(Uuid::from_u128(1), "empty", Bytes::new()),
            EventData::json(Uuid::from_u128(1 << 64), "é type ✓", Bytes::new()),
            EventData::binary(Uuid::nil(), "nil id", vec![7u8; 300]),
        ];
        for event in &events {
            let message = AppendMessage::Event(ProposedEvent::from(event));
            let bytes = message.encode_to_vec();
            assert_eq!(bytes.len(), message.encoded_len(), "{event:?}");
            let decoded = AppendReq::decode(bytes.as_slice()).unwrap();
            assert_eq!(
                decoded.content,
                Some(append_req::Content::ProposedMessage(generated(event))),
                "{event:?}"
            );
        }
    }

    #[test]
    fn options_encode_as_the_generated_message() {
        let options = append_req::Options {
            stream_identifier: Some(super::super::convert::stream_id("order-1")),
            expected_stream_revision: Some(append_req::options::ExpectedStreamRevision::Revision(
                41,
            )),
        };
        let message = AppendMessage::Options(options.clone());
        let bytes = message.encode_to_vec();
        assert_eq!(bytes.len(), message.encoded_len());
        let generated = AppendReq {
            content: Some(append_req::Content::Options(options)),
        };
        assert_eq!(bytes, generated.encode_to_vec());
    }
}
