//! gRPC helpers: the generated clients of the `proto` crate on a channel to a test node.
#![allow(dead_code)]

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use devnode::Node;
use proto::event_store::client::streams::streams_client::StreamsClient;
use proto::event_store::client::streams::{
    append_req, read_req, read_resp, AppendReq, AppendResp, ReadReq, ReadResp,
};
use proto::event_store::client::users::users_client::UsersClient;
use proto::event_store::client::StreamIdentifier;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status, Streaming};

/// A channel to `node` over h2c, or over TLS trusting the test binary's development CA.
pub async fn channel(node: &Node) -> Channel {
    let mut ep = Endpoint::from_shared(node.url())
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    if node.is_tls() {
        let ca = std::fs::read(super::dev_certs().ca_file()).unwrap();
        ep = ep
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
            .unwrap();
    }
    ep.connect().await.unwrap()
}

/// Clients of one node, sending `auth` (login, password) as Basic credentials when set.
#[derive(Clone)]
pub struct Grpc {
    pub streams: StreamsClient<Channel>,
    pub users: UsersClient<Channel>,
    pub auth: Option<(String, String)>,
}

impl Grpc {
    pub async fn connect(node: &Node) -> Grpc {
        let ch = channel(node).await;
        Grpc {
            streams: StreamsClient::new(ch.clone()).max_decoding_message_size(64 << 20),
            users: UsersClient::new(ch),
            auth: Some(("admin".into(), "changeit".into())),
        }
    }

    pub fn anonymous(&self) -> Grpc {
        Grpc {
            auth: None,
            ..self.clone()
        }
    }

    pub fn as_user(&self, login: &str, password: &str) -> Grpc {
        Grpc {
            auth: Some((login.into(), password.into())),
            ..self.clone()
        }
    }

    /// `msg` with this client's credentials.
    pub fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some((l, p)) = &self.auth {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{l}:{p}"));
            r.metadata_mut()
                .insert("authorization", format!("Basic {token}").parse().unwrap());
        }
        r
    }

    /// One Append call: options, then `events`.
    pub async fn append(
        &self,
        stream: &str,
        expected: append_req::options::ExpectedStreamRevision,
        events: Vec<append_req::ProposedMessage>,
    ) -> Result<AppendResp, Status> {
        let mut msgs = vec![AppendReq {
            content: Some(append_req::Content::Options(append_req::Options {
                stream_identifier: Some(ident(stream)),
                expected_stream_revision: Some(expected),
            })),
        }];
        msgs.extend(events.into_iter().map(|e| AppendReq {
            content: Some(append_req::Content::ProposedMessage(e)),
        }));
        let req = self.req(futures_util::stream::iter(msgs));
        self.streams
            .clone()
            .append(req)
            .await
            .map(|r| r.into_inner())
    }

    pub async fn read(&self, options: read_req::Options) -> Result<Streaming<ReadResp>, Status> {
        let req = self.req(ReadReq {
            options: Some(options),
        });
        self.streams.clone().read(req).await.map(|r| r.into_inner())
    }

    /// Every answer of a bounded read.
    pub async fn read_all_of(
        &self,
        options: read_req::Options,
    ) -> Result<Vec<read_resp::Content>, Status> {
        let mut s = self.read(options).await?;
        let mut out = Vec::new();
        while let Some(m) = s.message().await? {
            out.extend(m.content);
        }
        Ok(out)
    }
}

pub fn ident(stream: &str) -> StreamIdentifier {
    StreamIdentifier {
        stream_name: Bytes::copy_from_slice(stream.as_bytes()),
    }
}

/// A proposed event with a structured id.
pub fn proposed(
    id: uuid::Uuid,
    ty: &str,
    content_type: &str,
    data: &[u8],
    metadata: &[u8],
) -> append_req::ProposedMessage {
    append_req::ProposedMessage {
        id: Some(proto::ids::structured(id)),
        metadata: [
            ("type".to_owned(), ty.to_owned()),
            ("content-type".to_owned(), content_type.to_owned()),
        ]
        .into_iter()
        .collect(),
        custom_metadata: Bytes::copy_from_slice(metadata),
        data: Bytes::copy_from_slice(data),
    }
}

fn uuid_option(structured: bool) -> read_req::options::UuidOption {
    use read_req::options::uuid_option::Content;
    read_req::options::UuidOption {
        content: Some(if structured {
            Content::Structured(())
        } else {
            Content::String(())
        }),
    }
}

/// A forward read of `stream` from its start, `count` events, ids in the given form.
pub fn stream_forward(stream: &str, count: u64, structured: bool) -> read_req::Options {
    use read_req::options::*;
    read_req::Options {
        stream_option: Some(StreamOption::Stream(StreamOptions {
            stream_identifier: Some(ident(stream)),
            revision_option: Some(stream_options::RevisionOption::Start(())),
        })),
        read_direction: ReadDirection::Forwards as i32,
        count_option: Some(CountOption::Count(count)),
        filter_option: Some(FilterOption::NoFilter(())),
        uuid_option: Some(uuid_option(structured)),
        ..Default::default()
    }
}

/// A read or subscription of `$all`.
pub fn all(
    from: read_req::options::all_options::AllOption,
    count: Option<u64>,
) -> read_req::Options {
    use read_req::options::*;
    read_req::Options {
        stream_option: Some(StreamOption::All(AllOptions {
            all_option: Some(from),
        })),
        read_direction: ReadDirection::Forwards as i32,
        count_option: Some(match count {
            Some(n) => CountOption::Count(n),
            None => CountOption::Subscription(SubscriptionOptions {}),
        }),
        filter_option: Some(FilterOption::NoFilter(())),
        uuid_option: Some(uuid_option(false)),
        ..Default::default()
    }
}

pub fn at(commit: u64) -> read_req::options::all_options::AllOption {
    read_req::options::all_options::AllOption::Position(read_req::options::Position {
        commit_position: commit,
        prepare_position: commit,
    })
}

/// The events of a list of read answers.
pub fn events(answers: &[read_resp::Content]) -> Vec<read_resp::read_event::RecordedEvent> {
    answers
        .iter()
        .filter_map(|c| match c {
            read_resp::Content::Event(e) => e.event.clone(),
            _ => None,
        })
        .collect()
}

/// The value of trailer `key` of an error status.
pub fn trailer(status: &Status, key: &str) -> Option<String> {
    status
        .metadata()
        .get(key)
        .map(|v| v.to_str().unwrap().to_owned())
}
