//! `POST /admin/scavenge` (`AdminController.OnPostScavenge`, `StorageScavenger`, both
//! @oss-v5.0.12; same answer in oss-v20.10.6 … v25.0.0). The dev node scavenges synchronously
//! before answering, so a scavenge is never "in progress" (which would answer 400).

use serde_json::json;

use super::feed;
use super::reply::{bad_request, Reply};
use super::router::Ctx;
use super::wire;
use crate::config::Profile;
use crate::store::acl::{ADMINS_ROLE, OPS_ROLE};
use crate::store::ScavengeOptions;

/// Scavenge options for the node's profile: 5.0.12 and KurrentDB run the scavenger that writes a
/// scavenge point; 20.x/21.x run `TFChunkScavenger` (`ClusterVNode.cs` of each tag).
pub(crate) fn options_for(profile: Profile, node_endpoint: String) -> ScavengeOptions {
    ScavengeOptions {
        scavenge_point: matches!(profile, Profile::V5 | Profile::V25 | Profile::V26),
        node_endpoint,
        ..ScavengeOptions::default()
    }
}

/// Text, JSON, XML (`AdminController.SupportedCodecs`); the dev node has no XML codec, so an
/// `Accept` that only takes XML gets 406.
const CODECS: [&str; 2] = ["text/plain", wire::JSON];

pub(super) async fn scavenge(ctx: &Ctx) -> Reply {
    // `AuthorizationLevel.Ops` (v5 `HttpService.Authorized`) / `Operations.Node.Scavenge.Start`
    // (v20+ `OperationsOrAdmins`): no body, 401 before anything else.
    let allowed = ctx
        .principal
        .as_ref()
        .is_some_and(|p| p.groups.iter().any(|g| g == ADMINS_ROLE || g == OPS_ROLE));
    if !allowed {
        return ctx.unauthorized_first_level();
    }
    let w = ctx.wire();
    let new_scavenger = matches!(w.profile, Profile::V5 | Profile::V25 | Profile::V26);
    let mut opts = options_for(w.profile, ctx.app.addr.to_string());
    // Query parameters, checked in the controller's order with its reason phrases.
    let mut threads = 1;
    if let Some(v) = ctx.q("startFromChunk") {
        match v.parse::<i32>() {
            Ok(n) if n >= 0 => opts.start_from_chunk = n as u64,
            _ => return bad_request("startFromChunk must be a positive integer"),
        }
    }
    if let Some(v) = ctx.q("threads") {
        match v.parse::<i32>() {
            Ok(n) if n >= 1 => threads = n,
            _ => return bad_request("threads must be a 1 or above"),
        }
    }
    if new_scavenger {
        if let Some(v) = ctx.q("threshold") {
            match v.parse::<i32>() {
                Ok(n) => opts.threshold = n,
                Err(_) => return bad_request("threshold must be an integer"),
            }
        }
        if let Some(v) = ctx.q("throttlePercent") {
            match v.parse::<i32>() {
                Ok(n) if (1..=100).contains(&n) => {
                    if n != 100 && threads > 1 {
                        return bad_request(
                            "throttlePercent must be 100 for a multi-threaded scavenge",
                        );
                    }
                }
                _ => return bad_request("throttlePercent must be between 1 and 100 inclusive"),
            }
        }
        if let Some(v) = ctx.q("syncOnly") {
            // .NET `bool.TryParse`: case-insensitive true/false, surrounding white space allowed.
            match v.trim().to_ascii_lowercase().as_str() {
                "true" => opts.sync_only = true,
                "false" => opts.sync_only = false,
                _ => return bad_request("syncOnly must be a boolean"),
            }
        }
    }
    let Some(media) = wire::negotiate(ctx.accept(), &CODECS) else {
        return Reply::bare(406, "Requested URI is not available in requested format");
    };
    let store = ctx.app.store.clone();
    let outcome = match tokio::task::spawn_blocking(move || store.scavenge(&opts)).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "scavenge failed");
            return Reply::status(500, "Internal Server Error");
        }
        Err(e) => {
            tracing::error!(error = %e, "scavenge task failed");
            return Reply::status(500, "Internal Server Error");
        }
    };
    let id = outcome.scavenge_id.to_string();
    // `ScavengeResultDto`: JSON `{"scavengeId": …}`; the text codec writes its `ToString()`.
    let body = if media == wire::JSON {
        feed::to_body(&json!({ "scavengeId": id }))
    } else {
        format!("ScavengeId: {id}").into_bytes()
    };
    // `Configure.Ok(contentType)`: 200 "OK", no cache headers.
    Reply::new(200).content(media, body)
}
