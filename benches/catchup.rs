//! Catch-up benchmark: a primary dev node is loaded with N events (directly through its store, so
//! loading is not what is measured), then the real `standby run` binary replicates them into an
//! empty secondary dev node. Reports catch-up events/s for both orderings and the peak RSS of the
//! `standby` process (`VmHWM` from `/proc`), with both dev nodes in this process.
//!
//! `cargo bench --bench catchup -- [--events N] [--streams M] [--event-bytes B]`

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use devnode::store::ProposedEvent;
use standby::checkpoint::CheckpointStore;
use uuid::Uuid;

struct Args {
    events: u64,
    streams: u64,
    event_bytes: usize,
}

fn args() -> Args {
    let mut a = Args {
        events: 100_000,
        streams: 1_000,
        event_bytes: 100,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = || {
            argv.get(i + 1)
                .and_then(|v| v.parse::<u64>().ok())
                .expect("a number after the flag")
        };
        match argv[i].as_str() {
            "--events" => a.events = value(),
            "--streams" => a.streams = value(),
            "--event-bytes" => a.event_bytes = value() as usize,
            _ => {} // cargo passes --bench
        }
        i += if argv[i].starts_with("--") && i + 1 < argv.len() && !argv[i + 1].starts_with("--") {
            2
        } else {
            1
        };
    }
    a
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn one_run(a: &Args, ordering: &str) -> (f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let primary = devnode::Node::start(devnode::NodeConfig::memory())
        .await
        .unwrap();
    let secondary = devnode::Node::start(devnode::NodeConfig::memory())
        .await
        .unwrap();
    // Load: events interleaved over the streams, in batches of 10 per stream.
    let store = primary.store();
    let payload = format!(
        r#"{{"pad":"{}"}}"#,
        "x".repeat(a.event_bytes.saturating_sub(10))
    );
    let mut next = vec![-1i64; a.streams as usize];
    let mut written = 0;
    while written < a.events {
        for (s, last) in next.iter_mut().enumerate() {
            let n = 10.min(a.events - written);
            if n == 0 {
                break;
            }
            let events = (0..n)
                .map(|_| ProposedEvent {
                    event_id: Uuid::new_v4(),
                    event_type: "Bench".into(),
                    is_json: true,
                    data: Bytes::from(payload.clone()),
                    metadata: Bytes::new(),
                })
                .collect();
            store.append(&format!("bench-{s}"), *last, events).unwrap();
            *last += n as i64;
            written += n;
        }
    }
    let head = standby::demo::primary_head(&standby_client(&primary.url()))
        .await
        .unwrap();

    let cp = dir.path().join("cp");
    let config = write_config(dir.path(), &primary.url(), &secondary.url(), &cp, ordering);
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["run", "--config"])
        .arg(&config)
        .env("STANDBY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    loop {
        peak = peak.max(peak_rss_kib(child.id()).unwrap_or(0));
        if CheckpointStore::read(&cp)
            .ok()
            .flatten()
            .is_some_and(|c| c.position.commit() >= head.commit())
        {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "standby exited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    peak = peak.max(peak_rss_kib(child.id()).unwrap_or(0));
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    primary.stop().await;
    secondary.stop().await;
    (a.events as f64 / elapsed, peak)
}

fn standby_client(url: &str) -> standby::esdb::Client {
    let config = standby::esdb::ClientConfig::new(url.parse().unwrap())
        .with_credentials(standby::esdb::Credentials::new("admin", "changeit"));
    standby::esdb::Client::new(config).unwrap()
}

fn write_config(
    dir: &Path,
    primary: &str,
    secondary: &str,
    cp: &Path,
    ordering: &str,
) -> std::path::PathBuf {
    let path = dir.join("standby.toml");
    std::fs::write(
        &path,
        format!(
            "[primary]\nurl = {primary:?}\nusername = \"admin\"\npassword = \"changeit\"\n\n\
             [secondary]\nurl = {secondary:?}\nusername = \"admin\"\npassword = \"changeit\"\n\n\
             [checkpoint]\npath = {cp:?}\n\n[replication]\nordering = {ordering:?}\npage_size = 4096\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::main]
async fn main() {
    let a = args();
    println!("catch-up of {} events over {} streams ({} bytes each), dev nodes in the bench process, `standby run` as a child process", a.events, a.streams, a.event_bytes);
    for ordering in ["global", "stream"] {
        let (eps, peak) = one_run(&a, ordering).await;
        println!(
            "ordering={ordering:<6} catch_up_eps={eps:>8.0} peak_rss_mib={:.1}",
            peak as f64 / 1024.0
        );
    }
}
