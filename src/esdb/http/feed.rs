//! Wire DTOs: the JSON shapes the server sends (Atom feeds and entries, `/info`, `/gossip`), exactly
//! as on the wire and nothing more.
//!
//! Every field is optional and `#[serde(default)]`, so a property that is absent (servers up to 21.6)
//! and one that is `null` (21.10+, contract §2.4) both become `None`; unknown properties are ignored.
//! Property names are camelCase. `data`, `metaData` and `linkMetaData` are JSON *strings* holding the
//! stored bytes decoded as UTF-8 (contract §3.7), so they are kept as text.
//!
//! Feed text is [`Text`]: borrowed from the response body unless it holds escapes. A `$all` page
//! carries thousands of entries of a dozen strings each; borrowing them keeps decoding to about
//! one allocation per entry beyond what the decoded event keeps. Entry `links` (`edit`,
//! `alternate`) are not read: the entry's own URL is its `id`.
//!
//! Conversion into domain types ([`crate::esdb::page`], [`crate::esdb::node`]) lives in [`super::response`];
//! these types never leave the `esdb` module's decoding code.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use serde::de::{Deserializer, Visitor};
use serde::Deserialize;

/// A JSON string of a response body: borrowed when it has no escapes, owned otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    /// The text as an owned string (no copy when it was already owned).
    pub fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

/// An Atom feed page (`$all` or a stream), contract §2.4.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FeedDto<'a> {
    /// `"All events"` or `"Event stream '<s>'"`.
    #[serde(borrow)]
    pub title: Option<Text<'a>>,
    /// Feed URL.
    #[serde(borrow)]
    pub id: Option<Text<'a>>,
    /// Timestamp of the newest event on the page; not parsed (time-zone dependent when empty).
    #[serde(borrow)]
    pub updated: Option<Text<'a>>,
    /// Stream name (absent/null for `$all`).
    #[serde(borrow)]
    pub stream_id: Option<Text<'a>>,
    /// Whether the page reaches the current end of the stream (always false for `$all`).
    pub head_of_stream: Option<bool>,
    /// Only on head reads.
    #[serde(borrow)]
    pub self_url: Option<Text<'a>>,
    /// Only on head reads; the ETag without quotes.
    #[serde(borrow)]
    pub e_tag: Option<Text<'a>>,
    /// Navigation links (RFC 5005 names, inverted: `previous` = newer).
    #[serde(borrow)]
    pub links: Option<Vec<LinkDto<'a>>>,
    /// Entries, newest first in both directions (contract §3.3).
    #[serde(borrow)]
    pub entries: Option<Vec<EntryDto<'a>>>,
}

/// A feed link.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinkDto<'a> {
    /// Absolute URL.
    #[serde(borrow)]
    pub uri: Option<Text<'a>>,
    /// `self`, `first`, `last`, `next`, `previous`, `metadata`, `edit`, `alternate`.
    #[serde(borrow)]
    pub relation: Option<Text<'a>>,
}

/// A feed entry: the base Atom fields plus the rich fields present at `embed >= rich`
/// (contract §2.4, §3.7).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EntryDto<'a> {
    // Rich fields.
    /// Lower-case hyphenated GUID; missing on 2013 servers and on plain entries.
    #[serde(borrow)]
    pub event_id: Option<Text<'a>>,
    /// Event type.
    #[serde(borrow)]
    pub event_type: Option<Text<'a>>,
    /// Event number (tombstone = `i64::MAX`).
    pub event_number: Option<i64>,
    /// Stored data as UTF-8 text (only for JSON events at `body`; any event at `tryharder`).
    #[serde(borrow)]
    pub data: Option<Text<'a>>,
    /// Stored metadata as UTF-8 text, when non-empty.
    #[serde(borrow)]
    pub meta_data: Option<Text<'a>>,
    /// Metadata of the link record, for resolved links.
    #[serde(borrow)]
    pub link_meta_data: Option<Text<'a>>,
    /// Stream of the event.
    #[serde(borrow)]
    pub stream_id: Option<Text<'a>>,
    /// The event's isJson flag.
    pub is_json: Option<bool>,
    /// Whether the metadata is non-empty.
    pub is_meta_data: Option<bool>,
    /// Whether the link metadata is non-empty.
    pub is_link_meta_data: Option<bool>,
    /// 23.6+: the event was redacted and its data is empty.
    pub is_redacted: Option<bool>,
    /// Number of the record as read (the link's number for a resolved link).
    pub position_event_number: Option<i64>,
    /// Stream of the record as read (the link's stream for a resolved link).
    #[serde(borrow)]
    pub position_stream_id: Option<Text<'a>>,

    // Base entry fields.
    /// `"<eventNumber>@<streamId>"`.
    #[serde(borrow)]
    pub title: Option<Text<'a>>,
    /// Entry URL.
    #[serde(borrow)]
    pub id: Option<Text<'a>>,
    /// Event timestamp; not parsed.
    #[serde(borrow)]
    pub updated: Option<Text<'a>>,
    /// The event type.
    #[serde(borrow)]
    pub summary: Option<Text<'a>>,
    /// `embed=content` / single-event reads: the event with parsed data.
    pub content: Option<ContentDto>,
}

/// The `content` object of an entry (`embed=content`, single-event atom reads): data and metadata
/// are *parsed* JSON here, not strings (contract §4.4).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContentDto {
    /// Stream of the event.
    pub event_stream_id: Option<String>,
    /// Event number.
    pub event_number: Option<i64>,
    /// Event type.
    pub event_type: Option<String>,
    /// Event id (missing on 2013 servers).
    pub event_id: Option<String>,
    /// Parsed data (a JSON string for unparsable data).
    pub data: Option<serde_json::Value>,
    /// Parsed metadata; `""` when empty.
    pub metadata: Option<serde_json::Value>,
}

/// `GET /info`: v5 `{esVersion, state, projectionsMode}`, v20+ adds `features` and
/// `authentication` (contract §9).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InfoDto {
    /// Server version, e.g. `20.10.3.0`.
    pub es_version: Option<String>,
    /// Node state, lower case on v20+ (`leader`, `follower`, `prereplica`, …).
    pub state: Option<String>,
    /// v5 only.
    pub projections_mode: Option<String>,
    /// v20+ only.
    pub features: Option<FeaturesDto>,
    /// v20+ only.
    pub authentication: Option<AuthenticationDto>,
}

/// `/info` `features` (v20+).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FeaturesDto {
    /// Projections subsystem enabled.
    pub projections: Option<bool>,
    /// User management enabled.
    pub user_management: Option<bool>,
    /// The AtomPub HTTP API (this API) enabled.
    pub atom_pub: Option<bool>,
}

/// `/info` `authentication` (v20+).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuthenticationDto {
    /// Provider type, e.g. `internal`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// `GET /gossip`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GossipDto {
    /// Cluster members as seen by the answering node.
    pub members: Option<Vec<MemberDto>>,
    /// Address of the answering node.
    pub server_ip: Option<String>,
    /// Port of the answering node.
    pub server_port: Option<i64>,
}

/// One `/gossip` member. v20+ uses `httpEndPoint*`, v5 `externalHttp*`/`internalHttp*`
/// (contract §9).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MemberDto {
    /// Node instance id.
    pub instance_id: Option<String>,
    /// Time of the member's last gossip.
    pub time_stamp: Option<String>,
    /// PascalCase state (`Leader`, `Master`, `Follower`, `Slave`, …).
    pub state: Option<String>,
    /// Whether the member answers gossip.
    pub is_alive: Option<bool>,
    /// v20+ HTTP endpoint host.
    pub http_end_point_ip: Option<String>,
    /// v20+ HTTP endpoint port.
    pub http_end_point_port: Option<i64>,
    /// v5 external HTTP host.
    pub external_http_ip: Option<String>,
    /// v5 external HTTP port.
    pub external_http_port: Option<i64>,
    /// v5 internal HTTP host.
    pub internal_http_ip: Option<String>,
    /// v5 internal HTTP port.
    pub internal_http_port: Option<i64>,
    /// Last commit position (log offset).
    pub last_commit_position: Option<i64>,
    /// Writer checkpoint (log offset).
    pub writer_checkpoint: Option<i64>,
    /// Chaser checkpoint (log offset).
    pub chaser_checkpoint: Option<i64>,
    /// Position of the last epoch record.
    pub epoch_position: Option<i64>,
    /// The server's election epoch number (unrelated to the replicator's fencing epoch).
    pub epoch_number: Option<i64>,
    /// The server's election epoch id.
    pub epoch_id: Option<String>,
    /// Election priority.
    pub node_priority: Option<i64>,
    /// Read-only replica flag.
    pub is_read_only_replica: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_and_null_are_both_none() {
        let absent: EntryDto = serde_json::from_str(r#"{"title":"0@s"}"#).unwrap();
        let null: EntryDto =
            serde_json::from_str(r#"{"title":"0@s","data":null,"retryCount":null}"#).unwrap();
        assert_eq!(absent.data, None);
        assert_eq!(null.data, None);
        assert_eq!(absent.title, null.title);
        assert!(
            matches!(absent.title.unwrap().0, Cow::Borrowed("0@s")),
            "plain text is borrowed from the body"
        );
    }

    #[test]
    fn data_is_a_json_string() {
        let entry: EntryDto = serde_json::from_str(
            r#"{"data":"{\n  \"a\": \"1\"\n}","eventNumber":9223372036854775807}"#,
        )
        .unwrap();
        assert_eq!(entry.data.as_deref(), Some("{\n  \"a\": \"1\"\n}"));
        assert!(
            matches!(entry.data.unwrap().0, Cow::Owned(_)),
            "escapes make it owned"
        );
        assert_eq!(entry.event_number, Some(i64::MAX));
    }

    #[test]
    fn feed_with_nulls_everywhere() {
        let feed: FeedDto = serde_json::from_str(
            r#"{"streamId":null,"selfUrl":null,"eTag":null,"links":null,"entries":null,"extra":1}"#,
        )
        .unwrap();
        assert!(feed.links.is_none() && feed.entries.is_none());
    }

    #[test]
    fn authentication_type_field() {
        let info: InfoDto =
            serde_json::from_str(r#"{"authentication":{"type":"internal","properties":null}}"#)
                .unwrap();
        assert_eq!(
            info.authentication.unwrap().kind.as_deref(),
            Some("internal")
        );
    }
}
