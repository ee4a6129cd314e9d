//! One writer per secondary, through the real binary: the checkpoint lock refuses a second
//! `standby run` on the same checkpoint at once; the lease on the secondary refuses one started
//! elsewhere while the holder renews, hands over at once after a graceful stop or `--takeover`,
//! and after the lease period when the holder was killed, with replication going on to equal
//! clusters.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use standby::checkpoint::CheckpointStore;
use standby::config::Ordering;
use standby::demo::DemoClusters;
use standby::esdb::EventData;
use standby::lease::{read_head, LeaseRecord};
use standby::position::ExpectedVersion;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::{admin_client, clusters, verify};

/// Short enough for a test, long enough for two busy cores.
const LEASE_SECS: u64 = 4;
/// Generous bound for a process to start, reach both clusters and set the secondary up.
const START: Duration = Duration::from_secs(60);

/// A configuration in `dir` (created) for `clusters`, with its own checkpoint in `dir`.
fn config_in(clusters: &DemoClusters, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let (user, password) = standby::demo::REPLICATOR;
    let path = dir.join("standby.toml");
    std::fs::write(
        &path,
        format!(
            "[primary]\nurl = {:?}\nusername = \"admin\"\npassword = \"changeit\"\n\n\
             [secondary]\nurl = {:?}\nusername = {user:?}\npassword = {password:?}\n\n\
             [secondary.admin]\nusername = \"admin\"\npassword = \"changeit\"\n\n\
             [checkpoint]\npath = {:?}\n\n[replication]\nlease_secs = {LEASE_SECS}\n",
            clusters.config.primary.url,
            clusters.config.secondary.url,
            checkpoint_in(dir),
        ),
    )
    .unwrap();
    path
}

fn checkpoint_in(dir: &Path) -> PathBuf {
    dir.join("standby.checkpoint")
}

/// A `standby run` child process with its stderr (JSON logs) read line by line.
struct Replicator {
    child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    log: Vec<String>,
}

impl Replicator {
    fn start(config: &Path, args: &[&str]) -> Replicator {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_standby"))
            .arg("run")
            .args(args)
            .arg("--config")
            .arg(config)
            .env("STANDBY_LOG", "standby=info")
            .env("STANDBY_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("standby starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Replicator {
            child,
            lines,
            log: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    /// Waits for a log line containing every one of `needles`.
    async fn wait_for(&mut self, needles: &[&str], within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.log.push(line.clone());
                    if needles.iter().all(|n| line.contains(n)) {
                        return line;
                    }
                }
                Ok(None) => panic!(
                    "standby exited before logging {needles:?}:\n{}",
                    self.log.join("\n")
                ),
                Err(_) => panic!(
                    "standby did not log {needles:?} within {within:?}:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// Waits for the lease line and returns the holder id it names.
    async fn acquired(&mut self, how: &str, within: Duration) -> Uuid {
        let line = self
            .wait_for(
                &[
                    r#""message":"lease acquired""#,
                    &format!(r#""how":"{how}""#),
                ],
                within,
            )
            .await;
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        json["fields"]["holder"].as_str().unwrap().parse().unwrap()
    }

    fn signal(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits for the process to exit; its exit code and everything it logged.
    async fn exit(mut self, within: Duration) -> (Option<i32>, String) {
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                while let Ok(line) = self.lines.try_recv() {
                    self.log.push(line);
                }
                panic!(
                    "standby still runs after {within:?}:\n{}",
                    self.log.join("\n")
                )
            }
        };
        while let Some(line) = self.lines.recv().await {
            self.log.push(line);
        }
        (status.code(), self.log.join("\n"))
    }
}

/// The lease record at the head of the secondary's `$standby-lease`.
async fn lease_head(c: &DemoClusters) -> LeaseRecord {
    read_head(&admin_client(&c.config.secondary.url))
        .await
        .unwrap()
        .expect("a lease record")
        .record
}

/// Waits until the checkpoint at `path` exists and covers the primary's head.
async fn wait_checkpoint_at_head(c: &DemoClusters, path: &Path, run: &mut Replicator) {
    let primary = admin_client(&c.config.primary.url);
    let head = standby::demo::primary_head(&primary).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        // `read`, not `open`: opening the store would remove the live replicator's temporary file.
        let cp = CheckpointStore::read(path).unwrap();
        if cp.is_some_and(|cp| cp.position.commit() >= head.commit()) {
            return;
        }
        assert!(
            run.child.try_wait().unwrap().is_none(),
            "standby exited before catching up:\n{}",
            run.log.join("\n")
        );
        assert!(Instant::now() < deadline, "not caught up after 300 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn some_events(c: &DemoClusters, n: usize) {
    let primary = admin_client(&c.config.primary.url);
    let events: Vec<_> = (0..n)
        .map(|i| EventData::json(Uuid::new_v4(), "T", format!(r#"{{"i":{i}}}"#)))
        .collect();
    primary
        .append_events("order-1", &events, ExpectedVersion::Any)
        .await
        .unwrap();
}

/// Copies the checkpoint of `from` into `to`, as an operator moving the replicator would.
fn copy_checkpoint(from: &Path, to: &Path) {
    let cp = CheckpointStore::read(&checkpoint_in(from))
        .unwrap()
        .expect("a checkpoint to copy");
    std::fs::create_dir_all(to).unwrap();
    let (mut store, _) = CheckpointStore::open(checkpoint_in(to)).unwrap();
    store.store(&cp).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_checkpoint_exits_3_at_once_naming_the_first() {
    let c = clusters(Ordering::Global).await;
    some_events(&c, 10).await;
    let dir = c.dir.path().join("a");
    let config = config_in(&c, &dir);
    let mut first = Replicator::start(&config, &[]);
    let holder = first.acquired("free", START).await;

    let started = Instant::now();
    let (code, log) = Replicator::start(&config, &[]).exit(START).await;
    assert_eq!(code, Some(3), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused after {:?}",
        started.elapsed()
    );
    assert!(
        log.contains(&format!("pid {}", first.pid())) && log.contains("standby.checkpoint.lock"),
        "{log}"
    );
    // The first one keeps the lease and goes on.
    let lease = lease_head(&c).await;
    assert_eq!(
        (lease.holder, lease.pid, lease.released),
        (holder, first.pid(), false)
    );
    first.signal("-TERM");
    let (code, log) = first.exit(START).await;
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_checkpoint_elsewhere_is_refused_while_the_holder_renews() {
    let c = clusters(Ordering::Global).await;
    some_events(&c, 10).await;
    let (dir_a, dir_b) = (c.dir.path().join("a"), c.dir.path().join("b"));
    let mut first = Replicator::start(&config_in(&c, &dir_a), &[]);
    let holder = first.acquired("free", START).await;
    wait_checkpoint_at_head(&c, &checkpoint_in(&dir_a), &mut first).await;
    copy_checkpoint(&dir_a, &dir_b);

    let started = Instant::now();
    let second = Replicator::start(&config_in(&c, &dir_b), &[]);
    let (code, log) = second.exit(Duration::from_secs(30)).await;
    assert_eq!(code, Some(3), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(
        log.contains("holds the lease")
            && log.contains(&holder.to_string())
            && log.contains(&format!("pid {}", first.pid()))
            && log.contains("--takeover"),
        "{log}"
    );
    assert_eq!(lease_head(&c).await.holder, holder);
    first.signal("-TERM");
    let (code, log) = first.exit(START).await;
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_a_run_elsewhere_takes_over_within_the_lease_period_and_replicates_on() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    let writes = {
        let primary = primary.clone();
        tokio::spawn(async move {
            standby::demo::workload(
                &primary,
                "lease",
                5_000,
                50,
                7,
                &CancellationToken::new(),
                |_| {},
            )
            .await
        })
    };
    let (dir_a, dir_b) = (c.dir.path().join("a"), c.dir.path().join("b"));
    let mut first = Replicator::start(&config_in(&c, &dir_a), &[]);
    let holder = first.acquired("free", START).await;
    // Kill it once it has replicated something, while the workload goes on.
    let deadline = Instant::now() + START;
    while CheckpointStore::read(&checkpoint_in(&dir_a))
        .unwrap()
        .is_none()
    {
        assert!(Instant::now() < deadline, "no checkpoint written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.signal("-KILL");
    first.exit(START).await;
    let lease = lease_head(&c).await;
    assert_eq!((lease.holder, lease.released), (holder, false));
    copy_checkpoint(&dir_a, &dir_b);

    let started = Instant::now();
    let mut second = Replicator::start(&config_in(&c, &dir_b), &[]);
    let successor = second
        .acquired(
            "expired",
            Duration::from_secs(LEASE_SECS) + Duration::from_secs(20),
        )
        .await;
    assert_ne!(successor, holder);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(LEASE_SECS + 20),
        "took over after {took:?}"
    );
    writes.await.unwrap().expect("the workload completes");
    wait_checkpoint_at_head(&c, &checkpoint_in(&dir_b), &mut second).await;
    second.signal("-TERM");
    let (code, log) = second.exit(START).await;
    assert_eq!(code, Some(0), "{log}");
    let report = verify(&c.config).await;
    assert!(report.equal, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_graceful_stop_the_next_run_takes_over_at_once() {
    let c = clusters(Ordering::Global).await;
    some_events(&c, 10).await;
    let (dir_a, dir_b) = (c.dir.path().join("a"), c.dir.path().join("b"));
    let mut first = Replicator::start(&config_in(&c, &dir_a), &[]);
    let holder = first.acquired("free", START).await;
    wait_checkpoint_at_head(&c, &checkpoint_in(&dir_a), &mut first).await;
    first.signal("-TERM");
    let (code, log) = first.exit(START).await;
    assert_eq!(code, Some(0), "{log}");
    let lease = lease_head(&c).await;
    assert_eq!((lease.holder, lease.released), (holder, true), "{log}");
    copy_checkpoint(&dir_a, &dir_b);

    let mut second = Replicator::start(&config_in(&c, &dir_b), &[]);
    // Taken because it was released: without the release it would have watched it for at least
    // half a period first and taken it as expired.
    second.acquired("released", START).await;
    assert!(
        !second.log.iter().any(|l| l.contains("watching it")),
        "{}",
        second.log.join("\n")
    );
    some_events(&c, 10).await;
    wait_checkpoint_at_head(&c, &checkpoint_in(&dir_b), &mut second).await;
    second.signal("-TERM");
    let (code, log) = second.exit(START).await;
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_setup_a_replication_user_refused_on_the_lease_stream_exits_3_saying_so() {
    let c = clusters(Ordering::Global).await;
    some_events(&c, 1).await;
    let dir = c.dir.path().join("a");
    let config = config_in(&c, &dir);
    // No [secondary.admin]: nothing grants the (non-admin) replication user `$standby-lease`.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[secondary.admin]\nusername = \"admin\"\npassword = \"changeit\"\n",
        "",
    );
    assert!(!text.contains("[secondary.admin]"));
    std::fs::write(&config, text).unwrap();
    // An operator granted it the state it reads, but not the lease stream.
    let admin = admin_client(&c.config.secondary.url);
    for stream in [
        "$standby-control",
        "$standby-checkpoint",
        "$standby-offsets",
    ] {
        admin
            .write_stream_metadata(
                stream,
                Uuid::new_v4(),
                bytes::Bytes::from_static(br#"{"$acl":{"$r":"replicator","$w":"replicator"}}"#),
                ExpectedVersion::Any,
            )
            .await
            .unwrap();
    }
    let (code, log) = Replicator::start(&config, &[]).exit(START).await;
    assert_eq!(code, Some(3), "{log}");
    let error = log
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{log}"));
    assert!(
        error.contains("refused the replication user on $standby-lease")
            && error.contains("[secondary.admin]"),
        "{error}"
    );

    // Without even that, the first state it reads is refused, and the message says the same.
    for stream in [
        "$standby-control",
        "$standby-checkpoint",
        "$standby-offsets",
    ] {
        admin
            .write_stream_metadata(
                stream,
                Uuid::new_v4(),
                bytes::Bytes::from_static(b"{}"),
                ExpectedVersion::Any,
            )
            .await
            .unwrap();
    }
    let (code, log) = Replicator::start(&config, &[]).exit(START).await;
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains("[secondary.admin]"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_takes_the_lease_at_once_and_the_old_holder_stops_with_exit_3() {
    let c = clusters(Ordering::Global).await;
    some_events(&c, 10).await;
    let (dir_a, dir_b) = (c.dir.path().join("a"), c.dir.path().join("b"));
    let mut first = Replicator::start(&config_in(&c, &dir_a), &[]);
    first.acquired("free", START).await;
    wait_checkpoint_at_head(&c, &checkpoint_in(&dir_a), &mut first).await;
    copy_checkpoint(&dir_a, &dir_b);

    let mut second = Replicator::start(&config_in(&c, &dir_b), &["--takeover"]);
    let successor = second.acquired("takeover", START).await;
    let second_pid = second.pid();
    // The old holder's next renewal (a third of the period) finds the lease taken.
    let (code, log) = first
        .exit(Duration::from_secs(LEASE_SECS) + Duration::from_secs(20))
        .await;
    assert_eq!(code, Some(3), "{log}");
    assert!(
        log.contains("taken over") && log.contains(&format!("pid {second_pid}")),
        "{log}"
    );
    assert_eq!(lease_head(&c).await.holder, successor);
    second.signal("-TERM");
    let (code, log) = second.exit(START).await;
    assert_eq!(code, Some(0), "{log}");
}

/// In process: a holder that cannot renew (the secondary is gone) stops before the lease period
/// has passed since the secondary went away, so no successor can overlap with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_cannot_renew_stops_before_its_lease_runs_out() {
    let mut c = clusters(Ordering::Global).await;
    some_events(&c, 10).await;
    let mut config = c.config.clone();
    config.replication.lease_secs = 6;
    let shared = std::sync::Arc::new(standby::pipeline::Shared::default());
    let run = {
        let (config, shared) = (config.clone(), shared.clone());
        tokio::spawn(async move {
            standby::pipeline::run(&config, CancellationToken::new(), shared).await
        })
    };
    common::wait_applied_to_head(&shared, &admin_client(&c.config.primary.url), &run).await;
    let down = std::mem::replace(
        &mut c.secondary,
        devnode::Node::start(devnode::NodeConfig::memory())
            .await
            .unwrap(),
    );
    down.stop().await;
    let stopped = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the run stops")
        .unwrap()
        .expect_err("the run fails");
    let took = stopped.elapsed();
    assert!(
        took < config.replication.lease_period(),
        "stopped after {took:?}"
    );
    assert_eq!(err.exit_code(), standby::exit::INTERNAL, "{err}");
    assert!(err.to_string().contains("could not be renewed"), "{err}");
}
