//! Who is asking: Basic credentials → [`Principal`], the same for the HTTP and the gRPC front.
//!
//! Both fronts of the real server sit behind one authentication middleware: a request without
//! credentials is anonymous, wrong credentials are refused before any handler, and in
//! `--insecure` mode the passthrough provider answers `system` whatever was sent (research
//! `real-server-behaviour.md` §2).

use base64::Engine;

use crate::store::acl::{self, Principal};
use crate::store::users::UserRegistry;

/// The outcome of authenticating one request.
pub(crate) enum Auth {
    Anonymous,
    User(Principal),
    /// Credentials were sent and are wrong (unknown login, wrong password, disabled account, or
    /// an unreadable header): all look the same to the client.
    Bad,
}

/// `system`, as `PassthroughAuthenticationProvider` answers every request in `--insecure` mode;
/// it is in `$admins`.
pub(crate) fn system() -> Principal {
    Principal {
        login: "system".to_owned(),
        groups: vec![acl::ADMINS_ROLE.to_owned()],
        admin_by_name: false,
    }
}

/// Authenticates the value of an `authorization` header (HTTP header or gRPC metadata).
pub(crate) fn authenticate(
    passthrough: bool,
    users: &UserRegistry,
    authorization: Option<&[u8]>,
) -> Auth {
    if passthrough {
        return Auth::User(system());
    }
    let Some(v) = authorization else {
        return Auth::Anonymous;
    };
    let Ok(v) = std::str::from_utf8(v) else {
        return Auth::Bad;
    };
    let Some((scheme, rest)) = v.trim().split_once(' ') else {
        return Auth::Bad;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Auth::Bad;
    }
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
        return Auth::Bad;
    };
    let Ok(text) = String::from_utf8(raw) else {
        return Auth::Bad;
    };
    let Some((login, password)) = text.split_once(':') else {
        return Auth::Bad;
    };
    // Successes come from or go to the credential cache (`store::credentials`).
    match users.authenticate(login, password) {
        Some(p) => Auth::User(p),
        None => Auth::Bad,
    }
}
