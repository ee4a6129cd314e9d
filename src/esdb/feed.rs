//! Wire DTOs: the JSON shapes the server sends (Atom feeds and entries, `/info`, `/gossip`), exactly
//! as on the wire and nothing more.
//!
//! Every field is optional and `#[serde(default)]`, so a property that is absent (servers up to 21.6)
//! and one that is `null` (21.10+, contract §2.4) both become `None`; unknown properties are ignored.
//! Property names are camelCase. `data`, `metaData` and `linkMetaData` are JSON *strings* holding the
//! stored bytes decoded as UTF-8 (contract §3.7), so they are kept as `String`.
//!
//! Conversion into domain types ([`super::page`], [`super::node`]) lives in [`super::response`];
//! these types never leave the `esdb` module's decoding code.

use serde::Deserialize;

/// An Atom feed page (`$all` or a stream), contract §2.4.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FeedDto {
    /// `"All events"` or `"Event stream '<s>'"`.
    pub title: Option<String>,
    /// Feed URL.
    pub id: Option<String>,
    /// Timestamp of the newest event on the page; not parsed (time-zone dependent when empty).
    pub updated: Option<String>,
    /// Stream name (absent/null for `$all`).
    pub stream_id: Option<String>,
    /// Whether the page reaches the current end of the stream (always false for `$all`).
    pub head_of_stream: Option<bool>,
    /// Only on head reads.
    pub self_url: Option<String>,
    /// Only on head reads; the ETag without quotes.
    pub e_tag: Option<String>,
    /// Navigation links (RFC 5005 names, inverted: `previous` = newer).
    pub links: Option<Vec<LinkDto>>,
    /// Entries, newest first in both directions (contract §3.3).
    pub entries: Option<Vec<EntryDto>>,
}

/// A feed link.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinkDto {
    /// Absolute URL.
    pub uri: Option<String>,
    /// `self`, `first`, `last`, `next`, `previous`, `metadata`, `edit`, `alternate`.
    pub relation: Option<String>,
}

/// A feed entry: the base Atom fields plus the rich fields present at `embed >= rich`
/// (contract §2.4, §3.7).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EntryDto {
    // Rich fields.
    /// Lower-case hyphenated GUID; missing on 2013 servers and on plain entries.
    pub event_id: Option<String>,
    /// Event type.
    pub event_type: Option<String>,
    /// Event number (tombstone = `i64::MAX`).
    pub event_number: Option<i64>,
    /// Stored data as UTF-8 text (only for JSON events at `body`; any event at `tryharder`).
    pub data: Option<String>,
    /// Stored metadata as UTF-8 text, when non-empty.
    pub meta_data: Option<String>,
    /// Metadata of the link record, for resolved links.
    pub link_meta_data: Option<String>,
    /// Stream of the event.
    pub stream_id: Option<String>,
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
    pub position_stream_id: Option<String>,

    // Base entry fields.
    /// `"<eventNumber>@<streamId>"`.
    pub title: Option<String>,
    /// Entry URL.
    pub id: Option<String>,
    /// Event timestamp; not parsed.
    pub updated: Option<String>,
    /// The event type.
    pub summary: Option<String>,
    /// `embed=content` / single-event reads: the event with parsed data.
    pub content: Option<ContentDto>,
    /// `edit` and `alternate` links.
    pub links: Option<Vec<LinkDto>>,
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
    }

    #[test]
    fn data_is_a_json_string() {
        let entry: EntryDto = serde_json::from_str(
            r#"{"data":"{\n  \"a\": \"1\"\n}","eventNumber":9223372036854775807}"#,
        )
        .unwrap();
        assert_eq!(entry.data.as_deref(), Some("{\n  \"a\": \"1\"\n}"));
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
