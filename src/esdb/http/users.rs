//! User management (`/users`): typed calls on [`Client`] and their pure decoders.
//!
//! Promotion uses these to disable the replication user on the old primary, so a replicator that
//! is still running can no longer even authenticate: the server refuses a disabled account at
//! authentication, exactly like a wrong password (`InternalAuthenticationProvider`).
//!
//! Wire facts (`UsersController.cs`, `UserManagementService.cs`, `UserManagementMessage.cs`,
//! identical in oss-v5.0.12, oss-v20.10.6, v24.10.0 and KurrentDB):
//! * `GET /users/{login}` → 200 `{"data": {loginName, fullName, groups, disabled, links, …},
//!   "success": true, "error": "Success"}`, 404 for an unknown or deleted login.
//! * `POST /users` `{loginName, fullName, groups, password}` → 201 + `Location`; the same again
//!   with the same password is 201 too, with another password 409.
//! * `POST /users/{login}/command/enable|disable` (no body), `…/reset-password`
//!   `{newPassword}` → 200, 404 for an unknown login.
//! * All of these need a member of `$admins` (401 otherwise); the server maps `TryAgain` to 408
//!   and internal errors to 500, both transient here.

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tracing::instrument;

use super::client::{Call, Client};
use super::headers::media;
use super::request::escape_segment;
use super::response::{status_error, RawResponse, RequestInfo};
use crate::esdb::config::Password;
use crate::esdb::error::Error;
use crate::esdb::page::Lookup;
use crate::esdb::types::{NewUser, UserDetails};

/// `UserDataHttpFormated`; `fullName` and `dateLastUpdated` may be null or missing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserDataDto {
    login_name: String,
    #[serde(default)]
    full_name: Option<String>,
    #[serde(default)]
    groups: Option<Vec<String>>,
    #[serde(default)]
    disabled: bool,
}

#[derive(Deserialize)]
struct UserDetailsDto {
    #[serde(default)]
    data: Option<UserDataDto>,
}

/// Decodes `GET /users/{login}`.
///
/// # Errors
///
/// [`Error::Decode`] for a 200 without account data; status errors as [`status_error`].
pub fn decode_user(req: &RequestInfo, resp: &RawResponse) -> Result<Lookup<UserDetails>, Error> {
    match resp.status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Ok(Lookup::NotFound),
        _ => return Err(status_error(req, resp)),
    }
    let dto: UserDetailsDto = serde_json::from_slice(&resp.body).map_err(|e| Error::Decode {
        method: req.method.clone(),
        url: req.url.clone(),
        detail: format!("the user details are not the expected JSON: {e}"),
    })?;
    let data = dto.data.ok_or_else(|| Error::Decode {
        method: req.method.clone(),
        url: req.url.clone(),
        detail: "the user details have no \"data\"".to_owned(),
    })?;
    Ok(Lookup::Found(UserDetails {
        login_name: data.login_name,
        full_name: data.full_name.unwrap_or_default(),
        groups: data.groups.unwrap_or_default(),
        disabled: data.disabled,
    }))
}

/// Decodes the answer to create, enable, disable and reset-password.
///
/// # Errors
///
/// [`Error::Conflict`] for 409, [`Error::NotFound`] for 404, other status errors as
/// [`status_error`].
pub fn decode_user_command(req: &RequestInfo, resp: &RawResponse) -> Result<(), Error> {
    match resp.status {
        StatusCode::OK | StatusCode::CREATED => Ok(()),
        StatusCode::CONFLICT => Err(Error::Conflict {
            method: req.method.clone(),
            url: req.url.clone(),
            reason: resp.reason.clone(),
        }),
        // 404 (unknown login) → `Error::NotFound`, 401 → `Error::Unauthorized`, 408 and 5xx
        // → transient `Error::Status`.
        _ => Err(status_error(req, resp)),
    }
}

/// The `POST /users` body. Holds the password: never log it or put it in an error.
fn new_user_body(user: &NewUser<'_>) -> Bytes {
    let body = serde_json::json!({
        "loginName": user.login_name,
        "fullName": user.full_name,
        "groups": user.groups,
        "password": user.password.expose(),
    });
    Bytes::from(body.to_string())
}

impl Client {
    fn user_url(&self, login: &str, command: Option<&str>) -> reqwest::Url {
        let mut path = format!("/users/{}", escape_segment(login));
        if let Some(command) = command {
            path.push_str("/command/");
            path.push_str(command);
        }
        self.routes.endpoint(&path)
    }

    async fn user_command(
        &self,
        login: &str,
        command: &str,
        body: Option<Bytes>,
    ) -> Result<(), Error> {
        let mut call =
            Call::new(Method::POST, self.user_url(login, Some(command))).accept(media::JSON);
        if let Some(body) = body {
            call = call.body(media::JSON, body);
        }
        let (info, resp) = self.execute(call).await?;
        decode_user_command(&info, &resp)
    }

    /// `GET /users/{login}`: the account, [`Lookup::NotFound`] when it does not exist (or was
    /// deleted).
    ///
    /// # Errors
    ///
    /// [`Error::Unauthorized`] unless the client's user is in `$admins` (v20+ also lets a user
    /// read their own account), other [`Error`]s.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a read has no side effects.
    #[instrument(skip_all, fields(login = %login))]
    pub async fn get_user(&self, login: &str) -> Result<Lookup<UserDetails>, Error> {
        let call = Call::new(Method::GET, self.user_url(login, None)).accept(media::JSON);
        let (info, resp) = self.execute(call).await?;
        decode_user(&info, &resp)
    }

    /// `GET /users/$current`: the caller's own account. Needs only an authenticated user on
    /// every server version with user management, so a 401 means exactly that the server
    /// refuses the client's credentials (unknown, wrong password, or disabled and no longer
    /// cached).
    ///
    /// # Errors
    ///
    /// [`Error::Unauthorized`] when the credentials are refused, other [`Error`]s.
    #[instrument(skip_all)]
    pub async fn current_user(&self) -> Result<Lookup<UserDetails>, Error> {
        let call =
            Call::new(Method::GET, self.routes.endpoint("/users/$current")).accept(media::JSON);
        let (info, resp) = self.execute(call).await?;
        decode_user(&info, &resp)
    }

    /// `POST /users`: creates an account. Creating it again with the same password succeeds, so
    /// a retry after a lost answer is safe.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] when the login exists with another password, [`Error::Unauthorized`]
    /// unless the client's user is in `$admins`, other [`Error`]s.
    ///
    /// # Cancel safety
    ///
    /// A dropped request may or may not have created the account; repeat the same call.
    #[instrument(skip_all, fields(login = %user.login_name))]
    pub async fn create_user(&self, user: &NewUser<'_>) -> Result<(), Error> {
        let call = Call::new(Method::POST, self.routes.endpoint("/users/"))
            .accept(media::JSON)
            .body(media::JSON, new_user_body(user));
        let (info, resp) = self.execute(call).await?;
        decode_user_command(&info, &resp)
    }

    /// `POST /users/{login}/command/enable`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown login, [`Error::Unauthorized`] unless the client's user
    /// is in `$admins`, other [`Error`]s.
    ///
    /// # Cancel safety
    ///
    /// Idempotent: repeat after a dropped request.
    #[instrument(skip_all, fields(login = %login))]
    pub async fn enable_user(&self, login: &str) -> Result<(), Error> {
        self.user_command(login, "enable", None).await
    }

    /// `POST /users/{login}/command/disable`: from the next request on, the account fails
    /// authentication (401) as if its password were wrong.
    ///
    /// # Errors
    ///
    /// As [`Client::enable_user`].
    ///
    /// # Cancel safety
    ///
    /// Idempotent: repeat after a dropped request.
    #[instrument(skip_all, fields(login = %login))]
    pub async fn disable_user(&self, login: &str) -> Result<(), Error> {
        self.user_command(login, "disable", None).await
    }

    /// `POST /users/{login}/command/reset-password` `{newPassword}`: the old password stops
    /// working from the next request on.
    ///
    /// # Errors
    ///
    /// As [`Client::enable_user`].
    ///
    /// # Cancel safety
    ///
    /// Idempotent for the same password: repeat after a dropped request.
    #[instrument(skip_all, fields(login = %login))]
    pub async fn reset_password(&self, login: &str, new_password: &Password) -> Result<(), Error> {
        let body = serde_json::json!({ "newPassword": new_password.expose() });
        self.user_command(login, "reset-password", Some(Bytes::from(body.to_string())))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn req(method: Method, url: &str) -> RequestInfo {
        RequestInfo {
            method,
            url: url.to_owned(),
            user: Some("admin".to_owned()),
        }
    }

    fn resp(status: u16, body: &str) -> RawResponse {
        RawResponse::new(
            StatusCode::from_u16(status).unwrap(),
            HeaderMap::new(),
            body.as_bytes().to_vec(),
        )
    }

    #[test]
    fn user_details_in_both_null_styles() {
        let get = req(Method::GET, "http://n/users/repl");
        // v21.10+ writes nulls; `links` and unknown fields are ignored.
        let v25 = r#"{"data":{"loginName":"repl","fullName":null,"groups":["r"],
            "dateLastUpdated":null,"disabled":true,"links":[{"href":"x","rel":"enable"}]},
            "success":true,"error":"Success"}"#;
        let found = decode_user(&get, &resp(200, v25)).unwrap().found().unwrap();
        assert_eq!(
            found,
            UserDetails {
                login_name: "repl".into(),
                full_name: String::new(),
                groups: vec!["r".into()],
                disabled: true,
            }
        );
        // v5 / v20 omit nulls.
        let v5 = r#"{"data":{"loginName":"a","fullName":"A","groups":[],"disabled":false},
            "success":true,"error":"Success"}"#;
        let found = decode_user(&get, &resp(200, v5)).unwrap().found().unwrap();
        assert_eq!(found.full_name, "A");
        assert!(!found.disabled);
        let missing = r#"{"data":null,"success":false,"error":"NotFound"}"#;
        assert!(matches!(
            decode_user(&get, &resp(404, missing)).unwrap(),
            Lookup::NotFound
        ));
        let err = decode_user(&get, &resp(200, r#"{"success":true}"#)).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }));
    }

    #[test]
    fn command_statuses() {
        let post = req(Method::POST, "http://n/users/repl/command/disable");
        assert!(decode_user_command(&post, &resp(200, "{}")).is_ok());
        assert!(decode_user_command(&post, &resp(201, "{}")).is_ok());
        let conflict = decode_user_command(&post, &resp(409, "{}")).unwrap_err();
        assert!(matches!(conflict, Error::Conflict { .. }));
        assert!(!conflict.is_transient());
        assert_eq!(conflict.status(), Some(StatusCode::CONFLICT));
        let missing = decode_user_command(&post, &resp(404, "")).unwrap_err();
        assert!(matches!(missing, Error::NotFound { .. }));
        assert!(missing.to_string().contains("user does not exist"));
        let refused = decode_user_command(&post, &resp(401, "")).unwrap_err();
        assert!(matches!(refused, Error::Unauthorized { .. }));
        assert!(!refused.is_transient());
        for code in [408, 500, 503] {
            let e = decode_user_command(&post, &resp(code, "")).unwrap_err();
            assert!(e.is_transient(), "{code}");
        }
    }

    #[test]
    fn new_user_body_has_the_server_field_names() {
        let password = Password::new("s3cret");
        let user = NewUser {
            login_name: "repl",
            full_name: "Replicator",
            groups: &["$admins"],
            password: &password,
        };
        let body: serde_json::Value = serde_json::from_slice(&new_user_body(&user)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"loginName": "repl", "fullName": "Replicator",
                "groups": ["$admins"], "password": "s3cret"})
        );
        assert!(!format!("{user:?}").contains("s3cret"));
    }
}
