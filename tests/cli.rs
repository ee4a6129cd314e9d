//! The `standby` binary as an operator meets it: exit codes and the messages that say what to do.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use standby::checkpoint::{Checkpoint, CheckpointStore, PrimaryId};
use standby::config::Ordering;
use standby::esdb::EventData;
use standby::pipeline::{self, Shared};
use standby::position::{ExpectedVersion, Position};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::{admin_client, clusters, wait_applied_to_head};

const SECRET: &str = "changeit";

fn write_config(dir: &Path, primary: &str, secondary: &str, checkpoint: &Path) -> PathBuf {
    let path = dir.join("standby.toml");
    std::fs::write(
        &path,
        format!(
            "[primary]\nurl = {primary:?}\nusername = \"admin\"\npassword = {SECRET:?}\n\n\
             [secondary]\nurl = {secondary:?}\nusername = \"admin\"\npassword = {SECRET:?}\n\n\
             [checkpoint]\npath = {checkpoint:?}\n"
        ),
    )
    .unwrap();
    path
}

/// Runs the binary to completion (one-shot commands, or `run` that stops by itself).
async fn standby(args: &[&str], config: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_standby"));
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env("STANDBY_LOG", "warn");
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test]
async fn bad_configuration_exits_2_and_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let out = standby(&["run"], &missing).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("nope.toml"), "{}", text(&out).1);

    let config = write_config(
        dir.path(),
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        &dir.path().join("cp"),
    );
    let mut body = std::fs::read_to_string(&config).unwrap();
    body.push_str("\n[replication]\nordering = \"sideways\"\n");
    std::fs::write(&config, body).unwrap();
    let out = standby(&["run"], &config).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("sideways"), "{}", text(&out).1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_exit_3_and_say_what_to_do() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    primary
        .append_events(
            "s",
            &[EventData::json(Uuid::new_v4(), "T", "{}")],
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    let cp_path = c.dir.path().join("cp");
    let config = write_config(
        c.dir.path(),
        &c.config.primary.url,
        &c.config.secondary.url,
        &cp_path,
    );

    // Corrupt checkpoint: refused, never a silent restart from 0.
    std::fs::write(&cp_path, b"STBYCKPT garbage").unwrap();
    let out = standby(&["run"], &config).await;
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    assert!(text(&out).1.contains("corrupt"), "{}", text(&out).1);

    // A checkpoint taken against another primary.
    std::fs::remove_file(&cp_path).unwrap();
    let (mut store, _) = CheckpointStore::open(&cp_path).unwrap();
    store
        .store(&Checkpoint {
            position: Position::START,
            primary: PrimaryId("another-database".into()),
            epoch: pipeline::INITIAL_EPOCH,
        })
        .unwrap();
    let out = standby(&["run"], &config).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).1.contains("another primary"), "{}", text(&out).1);
    std::fs::remove_file(&cp_path).unwrap();

    // Replicate once so the secondary holds a checkpoint copy, then lose the local file.
    let mut cfg = c.config.clone();
    cfg.checkpoint.path = cp_path.clone();
    let shared = Arc::new(Shared::default());
    let stop = CancellationToken::new();
    let run = {
        let (cfg, shared, stop) = (cfg.clone(), shared.clone(), stop.clone());
        tokio::spawn(async move { pipeline::run(&cfg, stop, shared).await })
    };
    wait_applied_to_head(&shared, &primary, &run).await;
    stop.cancel();
    let kept = run.await.unwrap().unwrap().checkpoint.unwrap();
    std::fs::remove_file(&cp_path).unwrap();

    let out = standby(&["run"], &config).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out).1.contains("standby checkpoint recover"),
        "{}",
        text(&out).1
    );

    let out = standby(&["checkpoint", "recover", "--json"], &config).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(
        CheckpointStore::read(&cp_path).unwrap().unwrap().position,
        kept
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["recovered"]["position"],
        serde_json::to_value(kept).unwrap(),
        "{report}"
    );
    // Never overwrites an existing checkpoint.
    let out = standby(&["checkpoint", "recover"], &config).await;
    assert_eq!(out.status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_status_and_divergence_exit_codes() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    let secondary = admin_client(&c.config.secondary.url);
    let ev = || EventData::json(Uuid::new_v4(), "T", r#"{"a":1}"#);
    primary
        .append_events("order-1", &[ev(), ev()], ExpectedVersion::Any)
        .await
        .unwrap();
    let config = write_config(
        c.dir.path(),
        &c.config.primary.url,
        &c.config.secondary.url,
        &c.config.checkpoint.path,
    );

    // Not replicated yet: different (exit 4), with the first difference.
    let out = standby(&["verify"], &config).await;
    assert_eq!(out.status.code(), Some(4), "{:?}", text(&out));
    assert!(text(&out).0.contains("order-1"), "{}", text(&out).0);

    let shared = Arc::new(Shared::default());
    let stop = CancellationToken::new();
    let run = {
        let (cfg, shared, stop) = (c.config.clone(), shared.clone(), stop.clone());
        tokio::spawn(async move { pipeline::run(&cfg, stop, shared).await })
    };
    wait_applied_to_head(&shared, &primary, &run).await;
    stop.cancel();
    run.await.unwrap().unwrap();

    let out = standby(&["verify", "--json"], &config).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let report: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(report["equal"], true);

    let out = standby(&["status", "--json"], &config).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let (stdout, stderr) = text(&out);
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(status["checkpoint"].is_object(), "{stdout}");
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "credentials never printed"
    );

    // A foreign write on the secondary, then a primary write to the same stream: `run` halts
    // with exit 4 and the divergence report.
    secondary
        .append_events("order-1", &[ev()], ExpectedVersion::Any)
        .await
        .unwrap();
    primary
        .append_events("order-1", &[ev()], ExpectedVersion::Any)
        .await
        .unwrap();
    let out = standby(&["run"], &config).await;
    assert_eq!(out.status.code(), Some(4), "{:?}", text(&out));
    let stderr = text(&out).1;
    assert!(
        stderr.contains("divergence report") && stderr.contains("order-1"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET));

    // Unreachable side: exit 5 for a one-shot command.
    let dead = write_config(
        c.dir.path(),
        "http://127.0.0.1:9",
        &c.config.secondary.url,
        &c.config.checkpoint.path,
    );
    let out = standby(&["verify"], &dead).await;
    assert_eq!(out.status.code(), Some(5), "{:?}", text(&out));
}

/// Logs sent to a file or a pipe carry no terminal colour codes (issue: clean terminal output).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_file_have_no_colour_codes() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    primary
        .append_events(
            "s",
            &[EventData::json(Uuid::new_v4(), "T", "{}")],
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    let config = common::write_config_file(&c);
    let log = c.dir.path().join("log.txt");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["run", "--config"])
        .arg(&config)
        .env("STANDBY_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("replication starting")
    {
        assert!(child.try_wait().unwrap().is_none(), "standby exited early");
        assert!(std::time::Instant::now() < deadline, "no start-up log line");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let written = std::fs::read(&log).unwrap();
    assert!(!written.is_empty());
    assert!(
        !written.contains(&0x1b),
        "escape bytes in the log file:\n{}",
        String::from_utf8_lossy(&written)
    );
}

/// Shell completions and the manual page come from the command-line definition itself, so they
/// name every command.
#[test]
fn completions_and_the_man_page_name_every_command() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_standby"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {:?}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let commands = [
        "run",
        "verify",
        "status",
        "promote",
        "switchover",
        "divergence",
        "checkpoint",
        "demo",
        "bench",
        "completions",
        "man",
    ];
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = run(&["completions", shell]);
        for command in commands {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
    }
    let man = run(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH standby 1"),
        "{man}"
    );
    for command in commands {
        assert!(man.contains(command), "the man page lacks {command}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// `divergence --json` prints its summary as JSON, and it matches the export file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn divergence_prints_its_summary_as_json() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    let ev = || EventData::json(Uuid::new_v4(), "T", r#"{"a":1}"#);
    primary
        .append_events("before", &[ev()], ExpectedVersion::Any)
        .await
        .unwrap();
    common::replicate_to_head(&c.config, &primary).await;
    standby::control::promote(
        &c.config,
        &standby::control::PromoteOptions {
            force: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    primary
        .append_events("orphans", &[ev(), ev()], ExpectedVersion::Any)
        .await
        .unwrap();
    let config = common::write_config_file(&c);
    let out_file = c.dir.path().join("tail.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["divergence", "--json", "--out"])
        .arg(&out_file)
        .arg("--config")
        .arg(&config)
        .env("STANDBY_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["events"], 2, "{summary}");
    let lines = std::fs::read_to_string(&out_file).unwrap().lines().count();
    assert_eq!(lines, 2);
}

/// A successful `standby demo` (replication, verify, switchover) logs no `ERROR` line: the
/// replicator's stop at promotion is an expected outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_demo_logs_no_error() {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_standby"))
            .args(["demo", "--events", "2000", "--streams", "20"])
            .env_remove("STANDBY_LOG")
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the demo ends within 5 minutes")
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("switchover"), "{stdout}");
    for line in stdout.lines().chain(stderr.lines()) {
        assert!(!line.contains("ERROR"), "an ERROR line: {line}");
    }
}
