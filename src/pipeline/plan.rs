//! What the replicator does with each `$all` record: a pure function from one page of source
//! records to the operations that make the secondary equal (contract §7, design "Replication
//! semantics").
//!
//! | source record | operation on the secondary | why a replay writes nothing |
//! |---|---|---|
//! | event of a user stream (JSON, binary, empty, user-written `$>` link) | append to the same stream, same id/type/data/metadata, expected version = number − 1 | the server finds the same ids at those numbers (strong idempotency, §5.5) |
//! | consecutive events of one stream | one append | as above |
//! | `$$x` record of user stream `x` (metadata, soft delete `{"$tb":MAX}`, the server's undelete records) | the same `$metadata` record in `$$x`, original id, expected version = its metastream number − 1 | the same id at that number; a record the secondary's server wrote itself is recognised by its content |
//! | `$streamDeleted` tombstone of `x` | hard delete of `x`, expected version = `x`'s last number | the stream answers 410: already deleted |
//! | any record of a system stream (`$…`, `$$$…`) | nothing: the secondary runs its own system streams and projections | — |
//! | a user stream excluded by the filters | nothing | — |
//!
//! A tombstone cannot be undone and makes every later write to its stream fail, so a page holding
//! one is a *barrier*: the pages before it are made durable before it is applied, and it is made
//! durable before the next page, so no replay ever runs an earlier page's writes after it.

use std::collections::HashSet;

use bytes::Bytes;
use uuid::Uuid;

use crate::config::ReplicationConfig;
use crate::esdb::{EventData, RecordedEvent};
use crate::position::StreamRevision;

/// Event type of a hard-delete tombstone (§5.7).
pub const TOMBSTONE_TYPE: &str = "$streamDeleted";
/// Event type of link events (§6).
pub const LINK_TYPE: &str = "$>";
/// The exact stored body of a soft delete (§5.7).
pub const SOFT_DELETE_BODY: &[u8] = br#"{"$tb":9223372036854775807}"#;

/// What kind of stream a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamKind<'a> {
    /// A user stream: replicated.
    User(&'a str),
    /// The metastream `$$x` of user stream `x`: replicated as metadata of `x`.
    MetadataOf(&'a str),
    /// A system stream or a system stream's metastream: never replicated.
    System,
}

/// Classifies a stream name (§6: `$`-prefixed names are system streams, `$$x` is the metastream
/// of `x`).
pub fn classify(stream: &str) -> StreamKind<'_> {
    match stream.strip_prefix("$$") {
        Some(of) if !of.is_empty() && !of.starts_with('$') => StreamKind::MetadataOf(of),
        Some(_) => StreamKind::System,
        None if stream.starts_with('$') => StreamKind::System,
        None => StreamKind::User(stream),
    }
}

/// One source event to append, with its source number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEvent {
    pub revision: StreamRevision,
    pub event: EventData,
}

/// One operation on the secondary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Consecutive events of one stream, numbers without gaps, in order.
    Append {
        stream: String,
        events: Vec<SourceEvent>,
    },
    /// A record of the metastream `$$stream`, written as it is in the primary's log: at its
    /// metastream number, with the source record's id. A soft delete is such a record, with
    /// exactly [`SOFT_DELETE_BODY`].
    Metadata {
        stream: String,
        /// The record's number in the primary's `$$stream`.
        revision: StreamRevision,
        event_id: Uuid,
        data: Bytes,
    },
    /// A hard delete (tombstone). `last`: the stream's last number before it, when this page
    /// holds that event.
    HardDelete {
        stream: String,
        last: Option<StreamRevision>,
    },
}

impl Op {
    /// The secondary stream the operation touches.
    pub fn stream(&self) -> &str {
        match self {
            Op::Append { stream, .. }
            | Op::Metadata { stream, .. }
            | Op::HardDelete { stream, .. } => stream,
        }
    }
}

/// The operations for one page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// The page holds a tombstone: persist the pages before it first, and it before the next.
    pub barrier: bool,
    /// Streams this page hard-deletes: a 410 from an earlier operation of the same page on one of
    /// them means the page is being replayed after the delete was applied.
    pub hard_deleted: HashSet<String>,
    /// Events (appends) in the plan.
    pub events: usize,
    /// Source records that produce no operation (system streams, filtered streams).
    pub skipped: usize,
}

/// Why a record cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "event {revision} of stream {stream:?} ({event_id}) arrived without its data; this is a \
         bug in the reader"
    )]
    MissingData {
        stream: String,
        revision: StreamRevision,
        event_id: Uuid,
    },
}

/// Plans one page. Records must be in `$all` order and carry their data (`RecordedEvent::data`
/// set for every user-stream event and every JSON metadata record).
///
/// # Errors
/// [`PlanError::MissingData`] for a user event without data.
pub fn plan(records: Vec<RecordedEvent>, filter: &ReplicationConfig) -> Result<Plan, PlanError> {
    let mut plan = Plan::default();
    for r in records {
        match classify(&r.stream) {
            StreamKind::System => plan.skipped += 1,
            StreamKind::User(s) | StreamKind::MetadataOf(s) if !filter.replicates(s) => {
                plan.skipped += 1
            }
            StreamKind::MetadataOf(s) => {
                // Non-JSON metadata cannot be read back from an older metastream event (only the
                // latest is readable, §4.5) and has no effect on the server's behaviour.
                let Some(data) = r.data.filter(|_| r.is_json) else {
                    tracing::warn!(stream = s, event_id = %r.event_id, "non-JSON stream metadata is not replicated");
                    plan.skipped += 1;
                    continue;
                };
                plan.ops.push(Op::Metadata {
                    stream: s.to_string(),
                    revision: r.revision,
                    event_id: r.event_id,
                    data,
                });
            }
            StreamKind::User(s)
                if r.event_type == TOMBSTONE_TYPE && r.revision == StreamRevision::TOMBSTONE =>
            {
                plan.barrier = true;
                plan.hard_deleted.insert(s.to_string());
                let last = plan.ops.iter().rev().find_map(|op| match op {
                    Op::Append { stream, events } if stream == s => {
                        events.last().map(|e| e.revision)
                    }
                    _ => None,
                });
                plan.ops.push(Op::HardDelete {
                    stream: s.to_string(),
                    last,
                });
            }
            StreamKind::User(s) => {
                let Some(data) = r.data else {
                    return Err(PlanError::MissingData {
                        stream: s.to_string(),
                        revision: r.revision,
                        event_id: r.event_id,
                    });
                };
                let event = EventData {
                    event_id: r.event_id,
                    event_type: r.event_type,
                    data,
                    metadata: r.metadata.unwrap_or_default(),
                    is_json: r.is_json,
                };
                let source = SourceEvent {
                    revision: r.revision,
                    event,
                };
                plan.events += 1;
                match plan.ops.last_mut() {
                    Some(Op::Append { stream, events })
                        if stream == s
                            && events.last().and_then(|e| e.revision.next())
                                == Some(r.revision) =>
                    {
                        events.push(source)
                    }
                    _ => plan.ops.push(Op::Append {
                        stream: s.to_string(),
                        events: vec![source],
                    }),
                }
            }
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(n: u64) -> StreamRevision {
        StreamRevision::new(n).unwrap()
    }

    fn rec(stream: &str, n: u64, ty: &str, data: &[u8], is_json: bool) -> RecordedEvent {
        RecordedEvent {
            stream: stream.into(),
            revision: StreamRevision::new(n).unwrap_or(StreamRevision::TOMBSTONE),
            event_id: Uuid::new_v4(),
            event_type: ty.into(),
            is_json,
            data: Some(Bytes::copy_from_slice(data)),
            metadata: None,
            is_metadata: false,
            link_metadata: None,
            is_link_metadata: false,
            is_redacted: false,
            link: None,
            updated: None,
        }
    }

    fn all() -> ReplicationConfig {
        ReplicationConfig::default()
    }

    #[test]
    fn stream_names_are_classified_like_the_server() {
        assert_eq!(classify("order-1"), StreamKind::User("order-1"));
        assert_eq!(classify("$$order-1"), StreamKind::MetadataOf("order-1"));
        assert_eq!(classify("$$$users"), StreamKind::System);
        assert_eq!(classify("$ce-order"), StreamKind::System);
        assert_eq!(classify("$settings"), StreamKind::System);
        assert_eq!(classify("$$"), StreamKind::System);
    }

    #[test]
    fn consecutive_events_of_one_stream_form_one_append() {
        let recs = vec![
            rec("a", 0, "t", b"{}", true),
            rec("a", 1, "t", b"{}", true),
            rec("b", 0, "t", b"x", false),
            rec("a", 2, "t", b"{}", true),
            rec("$stats", 5, "t", b"{}", true),
            rec("a", 3, "t", b"{}", true),
        ];
        let p = plan(recs, &all()).unwrap();
        let shape: Vec<(String, Vec<u64>)> = p
            .ops
            .iter()
            .map(|op| match op {
                Op::Append { stream, events } => (
                    stream.clone(),
                    events.iter().map(|e| e.revision.get()).collect(),
                ),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("a".into(), vec![0, 1]),
                ("b".into(), vec![0]),
                ("a".into(), vec![2, 3])
            ]
        );
        assert_eq!((p.events, p.skipped, p.barrier), (5, 1, false));
    }

    #[test]
    fn metadata_records_keep_their_metastream_numbers_and_tombstones_their_last_number() {
        let recs = vec![
            rec("a", 0, "t", b"{}", true),
            rec("$$a", 0, "$metadata", br#"{"$maxCount":5}"#, true),
            rec("$$a", 1, "$metadata", SOFT_DELETE_BODY, true),
            rec("a", 1, "t", b"{}", true),
            rec("b", 0, "t", b"{}", true),
            rec("b", 1, "t", b"{}", true),
            rec("b", u64::MAX, TOMBSTONE_TYPE, b"", false),
            rec("c", u64::MAX, TOMBSTONE_TYPE, b"", false),
            rec("$$$users", 0, "$metadata", b"{}", true),
        ];
        let p = plan(recs, &all()).unwrap();
        let meta: Vec<(u64, bool)> = p
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Metadata { revision, data, .. } => {
                    Some((revision.get(), data.as_ref() == SOFT_DELETE_BODY))
                }
                _ => None,
            })
            .collect();
        assert_eq!(meta, vec![(0, false), (1, true)]);
        assert_eq!(
            p.ops[5],
            Op::HardDelete {
                stream: "b".into(),
                last: Some(rev(1))
            }
        );
        assert_eq!(
            p.ops[6],
            Op::HardDelete {
                stream: "c".into(),
                last: None
            }
        );
        assert!(p.barrier, "a tombstone is a barrier");
        assert!(p.hard_deleted.contains("b") && p.hard_deleted.contains("c"));
        assert_eq!(p.skipped, 1);
    }

    #[test]
    fn a_soft_delete_is_no_barrier() {
        let recs = vec![
            rec("$$a", 0, "$metadata", SOFT_DELETE_BODY, true),
            rec("b", 0, "t", b"{}", true),
        ];
        let p = plan(recs, &all()).unwrap();
        assert!(!p.barrier);
    }

    #[test]
    fn filters_apply_to_streams_and_their_metadata() {
        let filter = ReplicationConfig {
            exclude: vec!["tmp-*".into()],
            ..Default::default()
        };
        let recs = vec![
            rec("tmp-1", 0, "t", b"{}", true),
            rec("$$tmp-1", 0, "$metadata", b"{}", true),
            rec("keep", 0, "t", b"{}", true),
        ];
        let p = plan(recs, &filter).unwrap();
        assert_eq!(p.ops.len(), 1);
        assert_eq!(p.skipped, 2);
    }

    #[test]
    fn user_links_and_binary_events_are_copied_as_records() {
        let mut link = rec("mine", 0, LINK_TYPE, b"3@order-1", false);
        link.metadata = Some(Bytes::from_static(b"{\"m\":1}"));
        let p = plan(
            vec![
                link.clone(),
                rec("bin", 0, "blob", &[0, 159, 146, 150], false),
            ],
            &all(),
        )
        .unwrap();
        match &p.ops[0] {
            Op::Append { events, .. } => {
                assert_eq!(events[0].event.event_type, LINK_TYPE);
                assert_eq!(events[0].event.data.as_ref(), b"3@order-1");
                assert_eq!(events[0].event.metadata.as_ref(), b"{\"m\":1}");
                assert_eq!(events[0].event.event_id, link.event_id);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.events, 2);
    }

    #[test]
    fn a_user_event_without_data_is_a_reader_bug_not_an_empty_event() {
        let mut r = rec("a", 0, "t", b"", false);
        r.data = None;
        assert!(matches!(
            plan(vec![r], &all()),
            Err(PlanError::MissingData { .. })
        ));
    }
}
