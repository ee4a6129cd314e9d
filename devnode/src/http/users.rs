//! User management over HTTP (`/users`), as `UsersController` answers it (@oss-v5.0.12,
//! oss-v20.10.6, v24.10.0 and KurrentDB: same routes, bodies and status mapping); the accounts
//! themselves live in [`crate::store::users`].
//!
//! * Who may call: v5 registers every route but `$current` and change-password with
//!   `AuthorizationLevel.Admin`; v20+ (`LegacyAuthorizationProviderFactory` /
//!   `LegacyPolicySelectorFactory`) wants `$admins` too, except reading one's own account and
//!   changing one's own password. `$ops` has no rights here. A refusal is the router's 401 before
//!   the handler.
//! * Answers: the `UpdateResult` / `UserDetailsResult` JSON with `success` and `error`
//!   (`UserManagementMessage.Error` by name), status by `ErrorToHttpStatusCode`: NotFound 404,
//!   Conflict 409, Unauthorized 401, TryAgain 408, Error 500; a successful create is 201 with
//!   `Location: /users/<login>`.
//! * Deviations: JSON only (the server also speaks XML: 415 / 406 here), and an unparsable or
//!   incomplete body is a 400 (the server's handler fails on it without answering).

use std::sync::Arc;

use axum::body::Body;
use hyper::header::CONTENT_TYPE;
use hyper::Method;
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};

use super::feed;
use super::reply::{bad_request, no_route, Reply};
use super::router::{method_not_allowed, v5_challenge, Ctx};
use super::wire;
use super::App;
use crate::store::users::{UserOutcome, UserRegistry, UserView};
use crate::store::StoreError;

/// Request bodies above this are refused; account documents are tiny.
const MAX_BODY: usize = 64 * 1024;

/// Who may call a route (see the module docs).
#[derive(Clone, Copy)]
enum Needs {
    Admin,
    /// Any authenticated user.
    User,
    /// An admin or the account's owner (v20+ `Operations.Users.Read`; v5: admins only).
    AdminOrSelf,
    /// The account's owner (v20+ `Operations.Users.ChangePassword`; v5: any user).
    OwnerOfAccount,
}

fn allowed(ctx: &Ctx, needs: Needs, login: &str) -> bool {
    let Some(p) = ctx.principal.as_ref() else {
        return false;
    };
    let v5 = ctx.wire().is_v5();
    match needs {
        Needs::Admin => p.is_admin(),
        Needs::User => true,
        Needs::AdminOrSelf => p.is_admin() || (!v5 && p.login == login),
        Needs::OwnerOfAccount => v5 || p.login == login,
    }
}

/// Dispatches `/users/...`; `rest` are the raw segments after `users`.
pub(super) async fn route(ctx: &Ctx, rest: &[&str], body: Body) -> Reply {
    let m = &ctx.method;
    match rest {
        [] | [""] => match *m {
            Method::GET => guarded(ctx, Needs::Admin, "", list(ctx)).await,
            Method::POST => guarded(ctx, Needs::Admin, "", create(ctx, body)).await,
            _ => method_not_allowed("GET, POST, OPTIONS"),
        },
        [login] => {
            let Some(login) = decode(login) else {
                return no_route();
            };
            if login == "$current" && *m == Method::GET {
                let own = ctx.principal.as_ref().map(|p| p.login.clone());
                let own = own.unwrap_or_default();
                return guarded(ctx, Needs::User, &own, current(ctx, &own)).await;
            }
            match *m {
                Method::GET => guarded(ctx, Needs::AdminOrSelf, &login, get(ctx, &login)).await,
                Method::PUT => guarded(ctx, Needs::Admin, &login, update(ctx, &login, body)).await,
                Method::DELETE => {
                    let f = command(ctx, &login, move |u, l| u.delete(l));
                    guarded(ctx, Needs::Admin, &login, f).await
                }
                _ => method_not_allowed("GET, PUT, DELETE, OPTIONS"),
            }
        }
        [login, "command", cmd] => {
            let Some(login) = decode(login) else {
                return no_route();
            };
            if *m != Method::POST {
                return method_not_allowed("POST, OPTIONS");
            }
            match *cmd {
                "enable" => {
                    let f = command(ctx, &login, |u, l| u.set_disabled(l, false));
                    guarded(ctx, Needs::Admin, &login, f).await
                }
                "disable" => {
                    let f = command(ctx, &login, |u, l| u.set_disabled(l, true));
                    guarded(ctx, Needs::Admin, &login, f).await
                }
                "reset-password" => {
                    let f = reset_password(ctx, &login, body);
                    guarded(ctx, Needs::Admin, &login, f).await
                }
                "change-password" => {
                    let f = change_password(ctx, &login, body);
                    guarded(ctx, Needs::OwnerOfAccount, &login, f).await
                }
                _ => no_route(),
            }
        }
        _ => no_route(),
    }
}

/// Runs `handler` when the caller may; otherwise the 401 of the authorization check.
async fn guarded(
    ctx: &Ctx,
    needs: Needs,
    login: &str,
    handler: impl std::future::Future<Output = Reply>,
) -> Reply {
    if !allowed(ctx, needs, login) {
        return ctx.unauthorized_first_level();
    }
    if wire::negotiate(ctx.accept(), &[wire::JSON]).is_none() {
        return Reply::bare(406, "Requested URI is not available in requested format");
    }
    handler.await
}

fn decode(segment: &str) -> Option<String> {
    let s = percent_decode_str(segment).decode_utf8().ok()?;
    (!s.is_empty()).then(|| s.into_owned())
}

/// Runs a registry call off the async threads (it may write and fsync the log).
async fn blocking<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&UserRegistry) -> T + Send + 'static,
) -> Option<T> {
    let app = app.clone();
    match tokio::task::spawn_blocking(move || f(&app.users)).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "user management task failed");
            None
        }
    }
}

fn json_reply(ctx: &Ctx, status: u16, body: Value) -> Reply {
    let r = Reply::new(status).content(wire::JSON, feed::to_body(&body));
    if status == 401 {
        v5_challenge(ctx, r)
    } else {
        r
    }
}

fn error_name(outcome: Result<UserOutcome, ()>) -> (u16, &'static str) {
    match outcome {
        Ok(UserOutcome::Done) => (200, "Success"),
        Ok(UserOutcome::NotFound) => (404, "NotFound"),
        Ok(UserOutcome::Conflict) => (409, "Conflict"),
        Ok(UserOutcome::Unauthorized) => (401, "Unauthorized"),
        Err(()) => (500, "Error"),
    }
}

/// `UpdateResult`: `{loginName, success, error}`.
fn update_result(ctx: &Ctx, login: &str, outcome: Result<UserOutcome, ()>) -> Reply {
    let (status, error) = error_name(outcome);
    json_reply(
        ctx,
        status,
        json!({ "loginName": login, "success": status == 200, "error": error }),
    )
}

fn flatten(r: Option<Result<UserOutcome, StoreError>>) -> Result<UserOutcome, ()> {
    match r {
        Some(Ok(o)) => Ok(o),
        Some(Err(e)) => {
            tracing::error!(error = %e, "user management write failed");
            Err(())
        }
        None => Err(()),
    }
}

async fn command(
    ctx: &Ctx,
    login: &str,
    f: impl FnOnce(&UserRegistry, &str) -> Result<UserOutcome, StoreError> + Send + 'static,
) -> Reply {
    let l = login.to_owned();
    let r = blocking(&ctx.app, move |u| f(u, &l)).await;
    update_result(ctx, login, flatten(r))
}

/// A JSON object body; the server's codec matches property names case-insensitively.
async fn read_object(ctx: &Ctx, body: Body) -> Result<Map<String, Value>, Reply> {
    let media = ctx
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(wire::request_media);
    if media != Some(wire::JSON) {
        return Err(Reply::bare(415, "Invalid or missing Content-Type"));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| bad_request("Invalid request body"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(bad_request("Invalid request body")),
    }
}

fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn string_field(obj: &Map<String, Value>, name: &str) -> Option<String> {
    field(obj, name).and_then(Value::as_str).map(str::to_owned)
}

fn groups_field(obj: &Map<String, Value>) -> Vec<String> {
    match field(obj, "groups") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|g| g.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(g)) => vec![g.clone()],
        _ => Vec::new(),
    }
}

/// `POST /users`: `{loginName, fullName, groups, password}` → 201 + `Location`.
async fn create(ctx: &Ctx, body: Body) -> Reply {
    let obj = match read_object(ctx, body).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (Some(login), Some(password)) = (
        string_field(&obj, "loginName").filter(|l| !l.is_empty()),
        string_field(&obj, "password"),
    ) else {
        return bad_request("loginName and password are required");
    };
    let full_name = string_field(&obj, "fullName");
    let groups = groups_field(&obj);
    let l = login.clone();
    let r = blocking(&ctx.app, move |u| {
        u.create(&l, full_name, groups, &password)
    })
    .await;
    let outcome = flatten(r);
    if outcome != Ok(UserOutcome::Done) {
        return update_result(ctx, &login, outcome);
    }
    // `configuration.SetCreated(MakeUrl("/users/" + Uri.EscapeDataString(login)))`, also for a
    // repeated create with the same password.
    let escaped = utf8_percent_encode(&login, UNRESERVED).to_string();
    let body = json!({ "loginName": login, "success": true, "error": "Success" });
    Reply::new(201)
        .location(format!("{}/users/{escaped}", ctx.base))
        .content(wire::JSON, feed::to_body(&body))
}

/// `Uri.EscapeDataString` leaves RFC 3986 unreserved characters alone.
const UNRESERVED: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `PUT /users/{login}`: `{fullName, groups}`.
async fn update(ctx: &Ctx, login: &str, body: Body) -> Reply {
    let obj = match read_object(ctx, body).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let full_name = string_field(&obj, "fullName");
    let groups = groups_field(&obj);
    command(ctx, login, move |u, l| u.update(l, full_name, groups)).await
}

/// `POST /users/{login}/command/reset-password`: `{newPassword}`.
async fn reset_password(ctx: &Ctx, login: &str, body: Body) -> Reply {
    let obj = match read_object(ctx, body).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let Some(new) = string_field(&obj, "newPassword") else {
        return bad_request("newPassword is required");
    };
    command(ctx, login, move |u, l| u.reset_password(l, &new)).await
}

/// `POST /users/{login}/command/change-password`: `{currentPassword, newPassword}`; a wrong
/// current password is the service's 401 (with the JSON body).
async fn change_password(ctx: &Ctx, login: &str, body: Body) -> Reply {
    let obj = match read_object(ctx, body).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (Some(current), Some(new)) = (
        string_field(&obj, "currentPassword"),
        string_field(&obj, "newPassword"),
    ) else {
        return bad_request("currentPassword and newPassword are required");
    };
    command(ctx, login, move |u, l| u.change_password(l, &current, &new)).await
}

/// Nulls are written from 21.10 on (§2.4), omitted before.
fn put_nullable(obj: &mut Map<String, Value>, include_nulls: bool, key: &str, v: Option<Value>) {
    match v {
        Some(v) => {
            obj.insert(key.to_owned(), v);
        }
        None if include_nulls => {
            obj.insert(key.to_owned(), Value::Null);
        }
        None => {}
    }
}

/// `UserDataHttpFormated`: its `dateLastUpdated` is never set, so always null; links to the
/// commands that apply.
fn user_formatted(ctx: &Ctx, u: &UserView) -> Value {
    let nulls = ctx.wire().include_nulls();
    let mut o = Map::new();
    o.insert("loginName".into(), json!(u.login_name));
    put_nullable(
        &mut o,
        nulls,
        "fullName",
        u.full_name.clone().map(Value::from),
    );
    o.insert("groups".into(), json!(u.groups));
    put_nullable(&mut o, nulls, "dateLastUpdated", None);
    o.insert("disabled".into(), json!(u.disabled));
    let url = format!("{}/users/{}", ctx.base, u.login_name);
    let link = |href: String, rel: &str| json!({ "href": href, "rel": rel });
    let toggle = if u.disabled {
        link(format!("{url}/command/enable"), "enable")
    } else {
        link(format!("{url}/command/disable"), "disable")
    };
    o.insert(
        "links".into(),
        json!([
            link(format!("{url}/command/reset-password"), "reset-password"),
            link(format!("{url}/command/change-password"), "change-password"),
            link(url.clone(), "edit"),
            link(url.clone(), "delete"),
            toggle,
        ]),
    );
    Value::Object(o)
}

/// `{data, success, error}`, data omitted or null on failure.
fn details(ctx: &Ctx, data: Option<Value>, error: Option<&str>) -> Reply {
    let (status, name) = match error {
        None => (200, "Success"),
        Some("NotFound") => (404, "NotFound"),
        Some(other) => (500, other),
    };
    let mut o = Map::new();
    put_nullable(&mut o, ctx.wire().include_nulls(), "data", data);
    o.insert("success".into(), json!(status == 200));
    o.insert("error".into(), json!(name));
    json_reply(ctx, status, Value::Object(o))
}

/// `GET /users/{login}`.
async fn get(ctx: &Ctx, login: &str) -> Reply {
    let l = login.to_owned();
    match blocking(&ctx.app, move |u| u.get(&l)).await {
        Some(Some(view)) => details(ctx, Some(user_formatted(ctx, &view)), None),
        Some(None) => details(ctx, None, Some("NotFound")),
        None => details(ctx, None, Some("Error")),
    }
}

/// `GET /users`: every account, ordered by login.
async fn list(ctx: &Ctx) -> Reply {
    match blocking(&ctx.app, |u| u.list()).await {
        Some(all) => {
            let data: Vec<Value> = all.iter().map(|v| user_formatted(ctx, v)).collect();
            details(ctx, Some(Value::Array(data)), None)
        }
        None => details(ctx, None, Some("Error")),
    }
}

/// `GET /users/$current`: the caller's account as plain `UserData` (with `dateLastUpdated`, no
/// links).
async fn current(ctx: &Ctx, login: &str) -> Reply {
    let l = login.to_owned();
    let Some(found) = blocking(&ctx.app, move |u| u.get(&l)).await else {
        return details(ctx, None, Some("Error"));
    };
    let Some(u) = found else {
        return details(ctx, None, Some("NotFound"));
    };
    let nulls = ctx.wire().include_nulls();
    let mut o = Map::new();
    o.insert("loginName".into(), json!(u.login_name));
    put_nullable(&mut o, nulls, "fullName", u.full_name.map(Value::from));
    o.insert("groups".into(), json!(u.groups));
    // Json.NET writes a UTC `DateTimeOffset` as `...+00:00`.
    let date = u.updated.map(|t| {
        let s = feed::format_time(Some(t));
        Value::from(format!("{}+00:00", s.trim_end_matches('Z')))
    });
    put_nullable(&mut o, nulls, "dateLastUpdated", date);
    o.insert("disabled".into(), json!(u.disabled));
    details(ctx, Some(Value::Object(o)), None)
}
