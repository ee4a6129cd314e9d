//! Users, Gossip and ServerFeatures.
//!
//! Users runs over the same accounts as `/users` ([`crate::store::users`]) with the same
//! rights: admins manage accounts, a user may read its own and change its own password
//! (`src/KurrentDB.Core/Services/Transport/Grpc/Users.*.cs`; `http/users.rs`). In
//! `--insecure` mode the server has no user management; the calls answer UNIMPLEMENTED.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tonic::{Request, Response, Status};

use proto::event_store::client::gossip::{
    gossip_server, member_info::VNodeState, ClusterInfo, EndPoint, MemberInfo,
};
use proto::event_store::client::server_features::{
    server_features_server, SupportedMethod, SupportedMethods,
};
use proto::event_store::client::users::{self as u, users_server};

use super::status;
use crate::config::Profile;
use crate::http::App;
use crate::store::acl::Principal;
use crate::store::users::{UserOutcome, UserView};
use crate::store::StoreError;

pub(crate) struct Users {
    app: Arc<App>,
}

impl Users {
    pub(crate) fn new(app: Arc<App>) -> Self {
        Users { app }
    }

    /// The caller, who must be an admin (`admin_or_self`: or the account's owner).
    fn caller<T>(
        &self,
        req: &Request<T>,
        login: &str,
        admin_or_self: bool,
    ) -> Result<Principal, Status> {
        if self.app.passthrough {
            return Err(Status::unimplemented(
                "user management is not available in insecure mode",
            ));
        }
        let p = super::principal(&self.app, req)?.ok_or_else(status::access_denied)?;
        if p.is_admin() || (admin_or_self && p.login == login) {
            Ok(p)
        } else {
            Err(status::access_denied())
        }
    }
}

fn outcome(r: Result<UserOutcome, StoreError>, login: &str) -> Result<(), Status> {
    match r.map_err(status::internal)? {
        UserOutcome::Done => Ok(()),
        UserOutcome::NotFound => Err(status::user_not_found(login)),
        UserOutcome::Conflict => Err(status::user_conflict(login)),
        UserOutcome::Unauthorized => Err(status::access_denied()),
    }
}

fn options<T: Default + Clone>(o: &Option<T>) -> Result<T, Status> {
    o.clone().ok_or_else(|| status::required("options"))
}

fn details(v: UserView) -> u::DetailsResp {
    u::DetailsResp {
        user_details: Some(u::details_resp::UserDetails {
            login_name: v.login_name,
            full_name: v.full_name.unwrap_or_default(),
            groups: v.groups,
            last_updated: v.updated.map(|t| u::details_resp::user_details::DateTime {
                ticks_since_epoch: t,
            }),
            disabled: v.disabled,
        }),
    }
}

type DetailsStream = Pin<Box<dyn Stream<Item = Result<u::DetailsResp, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl users_server::Users for Users {
    type DetailsStream = DetailsStream;

    async fn create(&self, req: Request<u::CreateReq>) -> Result<Response<u::CreateResp>, Status> {
        let o = options(&req.get_ref().options)?;
        self.caller(&req, &o.login_name, false)?;
        let full_name = (!o.full_name.is_empty()).then_some(o.full_name);
        outcome(
            self.app
                .users
                .create(&o.login_name, full_name, o.groups, &o.password),
            &o.login_name,
        )?;
        Ok(Response::new(u::CreateResp {}))
    }

    async fn update(&self, req: Request<u::UpdateReq>) -> Result<Response<u::UpdateResp>, Status> {
        let o = options(&req.get_ref().options)?;
        self.caller(&req, &o.login_name, false)?;
        let full_name = (!o.full_name.is_empty()).then_some(o.full_name);
        outcome(
            self.app.users.update(&o.login_name, full_name, o.groups),
            &o.login_name,
        )?;
        if !o.password.is_empty() {
            outcome(
                self.app.users.reset_password(&o.login_name, &o.password),
                &o.login_name,
            )?;
        }
        Ok(Response::new(u::UpdateResp {}))
    }

    async fn delete(&self, req: Request<u::DeleteReq>) -> Result<Response<u::DeleteResp>, Status> {
        let o = options(&req.get_ref().options)?;
        self.caller(&req, &o.login_name, false)?;
        outcome(self.app.users.delete(&o.login_name), &o.login_name)?;
        Ok(Response::new(u::DeleteResp {}))
    }

    async fn disable(
        &self,
        req: Request<u::DisableReq>,
    ) -> Result<Response<u::DisableResp>, Status> {
        let o = options(&req.get_ref().options)?;
        self.caller(&req, &o.login_name, false)?;
        outcome(
            self.app.users.set_disabled(&o.login_name, true),
            &o.login_name,
        )?;
        Ok(Response::new(u::DisableResp {}))
    }

    async fn enable(&self, req: Request<u::EnableReq>) -> Result<Response<u::EnableResp>, Status> {
        let o = options(&req.get_ref().options)?;
        self.caller(&req, &o.login_name, false)?;
        outcome(
            self.app.users.set_disabled(&o.login_name, false),
            &o.login_name,
        )?;
        Ok(Response::new(u::EnableResp {}))
    }

    async fn details(
        &self,
        req: Request<u::DetailsReq>,
    ) -> Result<Response<Self::DetailsStream>, Status> {
        let login = req
            .get_ref()
            .options
            .as_ref()
            .map(|o| o.login_name.clone())
            .unwrap_or_default();
        let answers: Vec<Result<u::DetailsResp, Status>> = if login.is_empty() {
            self.caller(&req, "", false)?;
            self.app
                .users
                .list()
                .into_iter()
                .map(|v| Ok(details(v)))
                .collect()
        } else {
            self.caller(&req, &login, true)?;
            let v = self
                .app
                .users
                .get(&login)
                .ok_or_else(|| status::user_not_found(&login))?;
            vec![Ok(details(v))]
        };
        Ok(Response::new(Box::pin(futures_util::stream::iter(answers))))
    }

    async fn change_password(
        &self,
        req: Request<u::ChangePasswordReq>,
    ) -> Result<Response<u::ChangePasswordResp>, Status> {
        let o = options(&req.get_ref().options)?;
        if self.app.passthrough {
            return Err(Status::unimplemented(
                "user management is not available in insecure mode",
            ));
        }
        // Only the account's owner (`Operations.Users.ChangePassword`).
        let p = super::principal(&self.app, &req)?.ok_or_else(status::access_denied)?;
        if p.login != o.login_name {
            return Err(status::access_denied());
        }
        outcome(
            self.app
                .users
                .change_password(&o.login_name, &o.current_password, &o.new_password),
            &o.login_name,
        )?;
        Ok(Response::new(u::ChangePasswordResp {}))
    }

    async fn reset_password(
        &self,
        req: Request<u::ResetPasswordReq>,
    ) -> Result<Response<u::ResetPasswordResp>, Status> {
        let o = options(&req.get_ref().options)?;
        self.caller(&req, &o.login_name, false)?;
        outcome(
            self.app
                .users
                .reset_password(&o.login_name, &o.new_password),
            &o.login_name,
        )?;
        Ok(Response::new(u::ResetPasswordResp {}))
    }
}

pub(crate) struct Gossip {
    app: Arc<App>,
}

impl Gossip {
    pub(crate) fn new(app: Arc<App>) -> Self {
        Gossip { app }
    }
}

#[tonic::async_trait]
impl gossip_server::Gossip for Gossip {
    /// A single-node cluster: this node, alive and leader.
    async fn read(&self, _req: Request<()>) -> Result<Response<ClusterInfo>, Status> {
        Ok(Response::new(ClusterInfo {
            members: vec![MemberInfo {
                instance_id: Some(proto::ids::structured(self.app.instance_id)),
                time_stamp: crate::store::now_ticks(),
                state: VNodeState::Leader as i32,
                is_alive: true,
                http_end_point: Some(EndPoint {
                    address: self.app.addr.ip().to_string(),
                    port: u32::from(self.app.addr.port()),
                }),
            }],
        }))
    }
}

pub(crate) struct Features {
    app: Arc<App>,
}

impl Features {
    pub(crate) fn new(app: Arc<App>) -> Self {
        Features { app }
    }
}

/// Every method this node serves, lower-cased as the server lists them, with the features the
/// server adds (`src/KurrentDB.Core/Services/Transport/Grpc/ServerFeatures.cs`).
const METHODS: &[(&str, &str, &[&str])] = &[
    (
        "event_store.client.streams.streams",
        "read",
        &["position", "events"],
    ),
    ("event_store.client.streams.streams", "append", &[]),
    ("event_store.client.streams.streams", "delete", &[]),
    ("event_store.client.streams.streams", "tombstone", &[]),
    (
        "event_store.client.streams.streams",
        "batchappend",
        &["deadline_duration"],
    ),
    ("event_store.client.users.users", "create", &[]),
    ("event_store.client.users.users", "update", &[]),
    ("event_store.client.users.users", "delete", &[]),
    ("event_store.client.users.users", "disable", &[]),
    ("event_store.client.users.users", "enable", &[]),
    ("event_store.client.users.users", "details", &[]),
    ("event_store.client.users.users", "changepassword", &[]),
    ("event_store.client.users.users", "resetpassword", &[]),
    ("event_store.client.gossip.gossip", "read", &[]),
    (
        "event_store.client.server_features.serverfeatures",
        "getsupportedmethods",
        &[],
    ),
];

/// The version the node reports: the newest release of the generation its profile imitates.
fn version(profile: Profile) -> &'static str {
    match profile {
        Profile::V5 => "5.0.12",
        Profile::V20 => "20.10.5",
        Profile::V21_10 => "21.10.9",
        Profile::V25 => "25.1.0",
        Profile::V26 => "26.2.0",
    }
}

#[tonic::async_trait]
impl server_features_server::ServerFeatures for Features {
    async fn get_supported_methods(
        &self,
        _req: Request<()>,
    ) -> Result<Response<SupportedMethods>, Status> {
        Ok(Response::new(SupportedMethods {
            methods: METHODS
                .iter()
                .map(|(service, method, features)| SupportedMethod {
                    method_name: (*method).to_owned(),
                    service_name: (*service).to_owned(),
                    features: features.iter().map(|f| (*f).to_owned()).collect(),
                })
                .collect(),
            event_store_server_version: version(self.app.wire.profile).to_owned(),
        }))
    }
}
