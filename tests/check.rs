//! `standby check` through the binary, against dev nodes in the states an operator meets: the
//! verdict of each check, and exit 0 only when `run` can start safely.

mod common;

use std::path::Path;

use standby::config::Ordering;
use standby::esdb::EventData;
use standby::position::ExpectedVersion;
use uuid::Uuid;

use common::{admin_client, clusters, write_config_file};

/// Runs `standby check --json`; returns the exit code and (check → verdict).
async fn check(config: &Path) -> (Option<i32>, Vec<(String, String, String)>) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["check", "--json", "--config"])
        .arg(config)
        .env("STANDBY_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("`standby check` answers within a minute, whatever the clusters do")
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_owned(),
                f["verdict"].as_str().unwrap().to_owned(),
                format!("{} {}", f["detail"], f["fix"]),
            )
        })
        .collect();
    (out.status.code(), findings)
}

/// Appends one event to `stream` on the node at `url`, as `admin`.
async fn write_one(url: &str, stream: &str) {
    admin_client(url)
        .append_events(
            stream,
            &[EventData::json(Uuid::new_v4(), "T", "{}")],
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
}

fn verdict<'a>(findings: &'a [(String, String, String)], check: &str) -> (&'a str, &'a str) {
    findings
        .iter()
        .find(|(c, _, _)| c == check)
        .map(|(_, v, d)| (v.as_str(), d.as_str()))
        .unwrap_or_else(|| panic!("no {check:?} in {findings:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_pair_passes_and_each_problem_fails_with_its_fix() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    primary
        .append_events(
            "order-1",
            &[EventData::json(Uuid::new_v4(), "T", "{}")],
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    let config = write_config_file(&c);

    // Fresh: every check passes; plaintext with authentication is a warning.
    let (code, findings) = check(&config).await;
    assert_eq!(code, Some(0), "{findings:#?}");
    for name in [
        "primary reachable",
        "secondary reachable",
        "admin identity",
        "replication user",
        "secondary state",
        "checkpoint file",
        "lease",
    ] {
        assert_eq!(verdict(&findings, name).0, "ok", "{name}: {findings:#?}");
    }
    assert_eq!(verdict(&findings, "secondary security").0, "warn");
    assert!(verdict(&findings, "secondary state").1.contains("empty"));

    // Replicated and stopped: set up, a checkpoint, the lease released.
    common::replicate_to_head(&c.config, &primary).await;
    let (code, findings) = check(&config).await;
    assert_eq!(code, Some(0), "{findings:#?}");
    assert!(verdict(&findings, "secondary state").1.contains("set up"));
    assert!(verdict(&findings, "lease").1.contains("released"));

    // A checkpoint older than its copy.
    let kept = std::fs::read(&c.config.checkpoint.path).unwrap();
    common::rewind(&c, standby::position::Position::START).await;
    let newer = standby::checkpoint::Checkpoint {
        position: standby::demo::primary_head(&primary).await.unwrap(),
        ..standby::checkpoint::CheckpointStore::read(&c.config.checkpoint.path)
            .unwrap()
            .unwrap()
    };
    admin_client(&c.config.secondary.url)
        .append_events(
            standby::pipeline::CHECKPOINT_STREAM,
            &[EventData::json(
                Uuid::new_v4(),
                standby::pipeline::CHECKPOINT_EVENT_TYPE,
                serde_json::to_vec(&newer).unwrap(),
            )],
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    let (code, findings) = check(&config).await;
    assert_eq!(code, Some(3));
    let (v, detail) = verdict(&findings, "checkpoint file");
    assert_eq!(v, "fail");
    assert!(detail.contains("checkpoint recover"), "{detail}");
    std::fs::write(&c.config.checkpoint.path, kept).unwrap();

    // The login `admin` as the replication user (an admin by name on 20+ servers), with another
    // member of $admins for setup.
    let password = standby::esdb::Password::new("changeit");
    admin_client(&c.config.secondary.url)
        .create_user(&standby::esdb::NewUser {
            login_name: "root",
            full_name: "second admin",
            groups: &["$admins"],
            password: &password,
        })
        .await
        .unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let as_admin = c.dir.path().join("as-admin.toml");
    std::fs::write(
        &as_admin,
        text.replacen(
            &format!("username = {:?}", standby::demo::REPLICATOR.0),
            "username = \"admin\"",
            1,
        )
        .replacen(
            "[secondary.admin]\nusername = \"admin\"",
            "[secondary.admin]\nusername = \"root\"",
            1,
        ),
    )
    .unwrap();
    let (code, findings) = check(&as_admin).await;
    assert_eq!(code, Some(3));
    let (v, detail) = verdict(&findings, "replication user");
    assert_eq!(v, "fail");
    assert!(detail.contains("admin"), "{detail}");

    // A promoted secondary.
    standby::control::promote(
        &c.config,
        &standby::control::PromoteOptions {
            force: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (code, findings) = check(&config).await;
    assert_eq!(code, Some(3));
    let (v, detail) = verdict(&findings, "secondary state");
    assert_eq!(v, "fail");
    assert!(detail.contains("promoted"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_with_data_of_its_own_is_a_warning_and_an_unreachable_one_fails() {
    let c = clusters(Ordering::Global).await;
    write_one(&c.secondary.url(), "local-data").await;
    let config = write_config_file(&c);
    let (code, findings) = check(&config).await;
    assert_eq!(code, Some(0), "{findings:#?}");
    let (v, detail) = verdict(&findings, "secondary state");
    assert_eq!(v, "warn");
    assert!(detail.contains("user streams"), "{detail}");

    let text = std::fs::read_to_string(&config).unwrap();
    let dead = c.dir.path().join("dead.toml");
    std::fs::write(
        &dead,
        text.replacen(
            &c.config.secondary.url,
            "kurrentdb://127.0.0.1:9?tls=false",
            1,
        ),
    )
    .unwrap();
    let (code, findings) = check(&dead).await;
    assert_eq!(code, Some(3));
    assert_eq!(verdict(&findings, "secondary reachable").0, "fail");
}

/// Starts a pair whose secondary is adjusted by `secondary`, writes one event to the primary
/// and the configuration file, and runs `check`.
async fn check_pair(
    secondary: impl Fn(devnode::NodeConfig) -> devnode::NodeConfig,
    tls: bool,
) -> (
    standby::demo::DemoClusters,
    Option<i32>,
    Vec<(String, String, String)>,
) {
    let certs = common::dev_certs();
    let c = common::start_clusters_with(
        Ordering::Global,
        |config, is_secondary| {
            let config = if tls {
                config
                    .profile(devnode::Profile::V25)
                    .dev_tls(certs)
                    .unwrap()
            } else {
                config
            };
            if is_secondary {
                secondary(config)
            } else {
                config
            }
        },
        tls.then(|| certs.ca_file()),
    )
    .await
    .unwrap();
    write_one(&c.primary.url(), "order-1").await;
    let config = write_config_file(&c);
    let (code, findings) = check(&config).await;
    (c, code, findings)
}

/// Secure mode passes; an insecure secondary fails with the fence explanation; accounts managed
/// outside the secondary are a warning that only ACLs fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secondary_security_mode_decides_whether_it_can_be_fenced() {
    let (_c, code, findings) = check_pair(|config| config, true).await;
    assert_eq!(code, Some(0), "{findings:#?}");
    let (v, detail) = verdict(&findings, "secondary security");
    assert_eq!(v, "ok", "{detail}");
    assert!(detail.contains("TLS"), "{detail}");
    assert_eq!(verdict(&findings, "primary security").0, "ok");

    let (_c, code, findings) = check_pair(
        |config| config.profile(devnode::Profile::V25).insecure(),
        false,
    )
    .await;
    assert_eq!(code, Some(3), "{findings:#?}");
    let (v, detail) = verdict(&findings, "secondary security");
    assert_eq!(v, "fail");
    assert!(detail.contains("insecure"), "{detail}");
    assert!(detail.contains("cannot fence"), "{detail}");
    assert!(detail.contains("--unfenced"), "{detail}");

    let (_c, code, findings) = check_pair(|config| config.external_users(), false).await;
    assert_eq!(code, Some(0), "{findings:#?}");
    let (v, detail) = verdict(&findings, "secondary security");
    assert_eq!(v, "warn");
    assert!(detail.contains("only ACLs"), "{detail}");
}

/// A secondary whose clock is 30 s behind: a warning naming both offsets and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_between_the_clusters_is_a_warning() {
    let (_c, code, findings) = check_pair(|config| config, false).await;
    assert_eq!(code, Some(0), "{findings:#?}");
    assert_eq!(verdict(&findings, "clock skew").0, "ok", "{findings:#?}");

    let c = clusters(Ordering::Global).await;
    c.secondary.set_clock_offset(-30_000);
    write_one(&c.primary.url(), "order-1").await;
    let (code, findings) = check(&write_config_file(&c)).await;
    assert_eq!(
        code,
        Some(0),
        "a warning does not stop `run`: {findings:#?}"
    );
    let (v, detail) = verdict(&findings, "clock skew");
    assert_eq!(v, "warn", "{detail}");
    assert!(detail.contains("secondary -30 s"), "{detail}");
    assert!(detail.contains("NTP"), "{detail}");
}
