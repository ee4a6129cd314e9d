//! Node endpoints (§9): `/ping`, `/info`, `/gossip`.

use serde_json::{json, Map, Value};

use super::feed;
use super::reply::Reply;
use super::router::Ctx;
use super::wire;
use crate::config::Profile;

pub(super) fn ping(ctx: &Ctx) -> Reply {
    // Exact shape UNCONFIRMED (§9).
    let v = json!({ "text": "Ping request successfully handled" });
    let _ = ctx;
    Reply::new(200).content(wire::JSON, feed::to_body(&v))
}

fn version(p: Profile) -> &'static str {
    match p {
        Profile::V5 => "5.0.12.0",
        Profile::V20 => "20.10.6.0",
        Profile::V21_10 => "21.10.11.0",
        Profile::V25 => "25.1.4.0",
        Profile::V26 => "26.2.0.0",
    }
}

pub(super) fn info(ctx: &Ctx) -> Reply {
    let w = ctx.wire();
    let v = if w.is_v5() {
        json!({
            "esVersion": version(w.profile),
            "state": "master",
            "projectionsMode": ctx.app.run_projections.as_str()
        })
    } else {
        // Insecure mode: the passthrough provider's type and no user management
        // (the server's `ClusterVNode.cs`, the `/info` features).
        let (auth, users) = if ctx.app.passthrough {
            ("insecure", false)
        } else if !ctx.app.user_management {
            ("ldaps", false)
        } else {
            ("internal", true)
        };
        json!({
            "esVersion": version(w.profile),
            "state": "leader",
            "features": {
                "projections": ctx.app.run_projections != crate::config::RunProjections::None, "userManagement": users, "atomPub": true },
            "authentication": { "type": auth, "properties": null }
        })
    };
    Reply::new(200).content(wire::JSON, feed::to_body(&v))
}

/// One member: this node, the leader. `lastCommitPosition` is the commit position of the newest
/// record and `writerCheckpoint`/`chaserCheckpoint` the log end, as on a real node (§9, §10).
pub(super) fn gossip(ctx: &Ctx) -> Reply {
    let w = ctx.wire();
    let store = &ctx.app.store;
    let end = store.end() as i64;
    let ip = ctx.app.addr.ip().to_string();
    let port = ctx.app.addr.port();
    let mut m = Map::new();
    m.insert("instanceId".into(), json!(ctx.app.instance_id.to_string()));
    m.insert(
        "timeStamp".into(),
        json!(feed::format_time(Some(crate::store::now_ticks()))),
    );
    m.insert(
        "state".into(),
        json!(if w.is_v5() { "Master" } else { "Leader" }),
    );
    m.insert("isAlive".into(), json!(true));
    m.insert("internalTcpIp".into(), json!(ip));
    m.insert("internalTcpPort".into(), json!(0));
    m.insert("internalSecureTcpPort".into(), json!(0));
    m.insert("externalTcpIp".into(), json!(ip));
    m.insert("externalTcpPort".into(), json!(0));
    m.insert("externalSecureTcpPort".into(), json!(0));
    if w.is_v5() {
        m.insert("internalHttpIp".into(), json!(ip));
        m.insert("internalHttpPort".into(), json!(port));
        m.insert("externalHttpIp".into(), json!(ip));
        m.insert("externalHttpPort".into(), json!(port));
    } else {
        m.insert("httpEndPointIp".into(), json!(ip));
        m.insert("httpEndPointPort".into(), json!(port));
    }
    m.insert(
        "lastCommitPosition".into(),
        json!(store.last_commit_position()),
    );
    m.insert("writerCheckpoint".into(), json!(end));
    m.insert("chaserCheckpoint".into(), json!(end));
    m.insert("epochPosition".into(), json!(-1));
    m.insert("epochNumber".into(), json!(0));
    m.insert("epochId".into(), json!(ctx.app.epoch_id.to_string()));
    m.insert("nodePriority".into(), json!(0));
    m.insert("isReadOnlyReplica".into(), json!(false));
    let v = json!({ "members": [Value::Object(m)], "serverIp": ip, "serverPort": port });
    Reply::new(200).content(wire::JSON, feed::to_body(&v))
}
