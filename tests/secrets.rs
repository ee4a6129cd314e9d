//! With a known password, nothing `standby` prints — debug logs, `status --json`, `/metrics`,
//! error output — contains it, nor the Basic credentials made from it.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use devnode::{Node, NodeConfig, User};
use standby::esdb::{Client, ClientConfig, Credentials, EventData};
use standby::position::ExpectedVersion;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use uuid::Uuid;

use common::http_client;

const SECRET: &str = "Kn0wn-s3cret-7f9e";

fn config_text(primary: &str, secondary: &str, password: &str, checkpoint: &Path) -> String {
    format!(
        "[primary]\nurl = {primary:?}\nusername = \"admin\"\npassword = {password:?}\n\n\
         [secondary]\nurl = {secondary:?}\nusername = \"replicator\"\npassword = {password:?}\n\n\
         [secondary.admin]\nusername = \"admin\"\npassword = {password:?}\n\n\
         [checkpoint]\npath = {checkpoint:?}\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
    )
}

/// Every form of the secret an output could leak.
fn leaks(text: &str) -> Vec<String> {
    let mut forms = vec![SECRET.to_owned()];
    for user in ["admin", "replicator"] {
        forms.push(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{SECRET}")));
    }
    forms.into_iter().filter(|f| text.contains(f)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_contains_the_password() {
    let admin = User::new("admin", SECRET, &["$admins"]);
    let primary = Node::start(NodeConfig::memory().user(admin.clone()))
        .await
        .unwrap();
    let secondary = Node::start(NodeConfig::memory().user(admin).user(User::new(
        "replicator",
        SECRET,
        &[],
    )))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("standby.toml");
    std::fs::write(
        &config,
        config_text(
            &primary.url(),
            &secondary.url(),
            SECRET,
            &dir.path().join("checkpoint"),
        ),
    )
    .unwrap();
    let writer = Client::connect(
        ClientConfig::new(reqwest::Url::parse(&primary.url()).unwrap())
            .with_credentials(Credentials::new("admin", SECRET)),
    )
    .unwrap();
    for i in 0..5 {
        writer
            .append_events(
                "secret-test",
                &[EventData::json(
                    Uuid::new_v4(),
                    "E",
                    Bytes::from(format!(r#"{{"i":{i}}}"#)),
                )],
                ExpectedVersion::Any,
            )
            .await
            .unwrap();
    }

    // `run` with debug logs (JSON, so the metrics address can be read from them).
    let mut run = Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["--log", "debug", "--log-format", "json", "run", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(run.stderr.take().unwrap()).lines();
    let mut logs = String::new();
    let metrics_addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), stderr.next_line())
            .await
            .expect("run logs its metrics address")
            .unwrap()
            .expect("run is still running");
        logs.push_str(&line);
        logs.push('\n');
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(addr) = json["fields"]["addr"].as_str() {
            if json["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("/metrics"))
            {
                break addr.to_owned();
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let text = http_client()
            .get(format!("http://{metrics_addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("standby_events_replicated_total 5") {
            break text;
        }
        assert!(Instant::now() < deadline, "not replicated: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["--log", "debug", "status", "--json", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(status.status.success());
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &run.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    stderr.get_mut().read_to_string(&mut rest).await.unwrap();
    logs.push_str(&rest);
    let exit = run.wait().await.unwrap();
    assert_eq!(exit.code(), Some(0), "{logs}");
    assert!(
        logs.contains("\"level\":\"DEBUG\""),
        "debug logs were written"
    );

    // Error output: the same password, refused by a node that has another one.
    let other = Node::start(NodeConfig::memory()).await.unwrap();
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        config_text(
            &other.url(),
            &secondary.url(),
            SECRET,
            &dir.path().join("cp2"),
        ),
    )
    .unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["--log", "debug", "verify", "--config"])
        .arg(&wrong)
        .output()
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    let refused_text = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(refused_text.contains("401"), "{refused_text}");

    for (what, text) in [
        ("debug logs of run", logs),
        ("/metrics", metrics),
        (
            "status --json",
            String::from_utf8_lossy(&status.stdout).into_owned()
                + &String::from_utf8_lossy(&status.stderr),
        ),
        ("error output", refused_text),
    ] {
        assert_eq!(
            leaks(&text),
            Vec::<String>::new(),
            "{what} leaks the password"
        );
    }
}
