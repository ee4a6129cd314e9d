//! The wire-neutral values of an Event Store node: what an event to append is, what a write
//! answers, what an account looks like. Both wires ([`super::http`], [`super::grpc`]) speak them.

use std::fmt;

use bytes::Bytes;
use uuid::Uuid;

use super::config::Password;
use crate::position::StreamRevision;

/// An event to append: the bytes and flags of a stored event, so a copy can preserve them.
#[derive(Clone, PartialEq, Eq)]
pub struct EventData {
    /// Event id; preserved so that retries and copies are idempotent (contract §5.5). Must not be
    /// the nil UUID (the server answers 400).
    pub event_id: Uuid,
    /// Event type; must not be empty.
    pub event_type: String,
    /// Data bytes.
    pub data: Bytes,
    /// Metadata bytes; empty = no metadata.
    pub metadata: Bytes,
    /// The isJson flag of the event.
    pub is_json: bool,
}

impl EventData {
    /// A JSON event without metadata.
    pub fn json(event_id: Uuid, event_type: impl Into<String>, data: impl Into<Bytes>) -> Self {
        EventData {
            event_id,
            event_type: event_type.into(),
            data: data.into(),
            metadata: Bytes::new(),
            is_json: true,
        }
    }

    /// A non-JSON event without metadata.
    pub fn binary(event_id: Uuid, event_type: impl Into<String>, data: impl Into<Bytes>) -> Self {
        EventData {
            event_id,
            event_type: event_type.into(),
            data: data.into(),
            metadata: Bytes::new(),
            is_json: false,
        }
    }

    /// Sets the metadata bytes.
    pub fn with_metadata(mut self, metadata: impl Into<Bytes>) -> Self {
        self.metadata = metadata.into();
        self
    }
}

impl fmt::Debug for EventData {
    /// Shows sizes, not payloads: event data can be large and may be sensitive.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventData")
            .field("event_id", &self.event_id)
            .field("event_type", &self.event_type)
            .field("data_len", &self.data.len())
            .field("metadata_len", &self.metadata.len())
            .field("is_json", &self.is_json)
            .finish()
    }
}

/// An account as the server shows it (never with its password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDetails {
    /// Login name.
    pub login_name: String,
    /// Display name; empty when the server has none.
    pub full_name: String,
    /// Groups (roles such as `$admins`, `$ops`).
    pub groups: Vec<String>,
    /// A disabled account fails authentication until it is enabled again.
    pub disabled: bool,
}

/// A user to create.
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    /// Login name.
    pub login_name: &'a str,
    /// Display name.
    pub full_name: &'a str,
    /// Groups (roles).
    pub groups: &'a [&'a str],
    /// Initial password; sent in the body only, never logged.
    pub password: &'a Password,
}

/// How `DELETE /streams/{s}` deletes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DeleteMode {
    /// Writes `{"$tb": i64::MAX}` as the stream's metadata; the stream can be re-created.
    Soft,
    /// Writes a tombstone (`ES-HardDelete: true`); the stream can never be written again.
    Hard,
}

/// Result of a successful append (201 Created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Number of the first event written, from `Location: …/streams/<s>/<n>`. For an idempotent
    /// replay it is the number of the original first event (contract §5.5). `None` if the server
    /// sent no parseable `Location` (the write still succeeded).
    pub first: Option<StreamRevision>,
    /// The `Location` header.
    pub location: Option<String>,
}

/// Result of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// 204: the stream was deleted now.
    Deleted,
    /// 410: the stream was already hard-deleted (a retried hard delete ends here).
    AlreadyHardDeleted,
    /// 400 wrong-expected-version with current version -1 on an expected-version-`Any` delete: the
    /// stream has neither events nor metadata (21.10+ refuses to soft-delete it).
    StreamNotFound,
}
