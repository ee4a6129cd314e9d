//! `standby bench`: how fast replication is compared with what the two clusters allow, in one run.
//!
//! The run starts its dev nodes in this process (a primary, and a fresh in-memory secondary per
//! measurement), each secondary behind its own [`proxy::Proxy`] that can add latency, loads the
//! primary directly through its store (not measured), then measures:
//!
//! * `raw_read_eps`: the client alone reading the primary's whole `$all` (`embed=body`, pages of
//!   4,096);
//! * `raw_append_eps`: the client alone appending the same events to an empty secondary with the
//!   best batching the API allows: all consecutive events of a stream in one request (up to the
//!   wire's [`Client::max_append_bytes`], as the writer), [`APPEND_CONCURRENCY`] streams at once;
//! * `replicate_eps_global`, `replicate_eps_stream`: catch-up by the real `standby run` binary (this
//!   executable, as a child process) for each ordering, until its checkpoint file covers the
//!   primary's head;
//! * `live_lag_p50_ms`, `live_lag_p99_ms`: with the `ordering = "stream"` replicator caught up,
//!   single events appended to the primary at [`LIVE_RATE`] events/s; each event's lag runs from
//!   the moment its append is sent to the primary to the moment a long-polling reader of the
//!   secondary's `$all` (through the proxy) receives it;
//! * `peak_rss_mib` (`VmHWM`, the highest over the replicator runs) and `cpu_seconds_per_100k`
//!   (user + system time of the replicator per 100,000 events caught up).
//!
//! Everything is bounded: each phase has a deadline, and a replicator child is killed when its
//! handle is dropped.

pub mod proxy;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use devnode::store::ProposedEvent;
use serde::Serialize;
use uuid::Uuid;

use crate::checkpoint::CheckpointStore;
use crate::demo::primary_head;
use crate::esdb::{self, Client, Embed, Entry, EventData, PageSize, ReadOptions, Wire};
use crate::position::{ExpectedVersion, Position, StreamRevision};
use proxy::Proxy;

/// Events of one stream written together when the primary is loaded (the interleaving unit).
pub const RUN_LENGTH: u64 = 10;
/// Page size of the raw read and of the replicator (the server's largest).
pub const PAGE_SIZE: u16 = 4096;
/// Streams appended at once by the raw append measurement.
pub const APPEND_CONCURRENCY: usize = 32;
/// Events per second appended to the primary during the live-lag measurement.
pub const LIVE_RATE: u64 = 1_000;
/// Longest live-lag measurement; shorter when fewer events are benchmarked (one live event per
/// benchmarked event at most).
pub const LIVE_DURATION: Duration = Duration::from_secs(10);
/// Streams the live events are spread over.
const LIVE_STREAMS: u64 = 10;
/// Event type of the live events (how the secondary reader tells them apart).
const LIVE_EVENT_TYPE: &str = "BenchLive";
/// Live appends in flight at once, at most.
const LIVE_IN_FLIGHT: usize = 256;
/// How long the last live event may take to appear on the secondary.
const LIVE_GRACE: Duration = Duration::from_secs(10);
/// How often the replicator's checkpoint file and `/proc` entries are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;
/// Dev node credentials (the default `$admins` user).
const ADMIN: (&str, &str) = ("admin", "changeit");

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Events loaded into the primary (and caught up by each replicator run).
    pub events: u64,
    /// Streams the events are interleaved over, in runs of [`RUN_LENGTH`].
    pub streams: u64,
    /// Approximate size of each event's JSON data.
    pub event_bytes: usize,
    /// Added by the proxy to each direction of the secondary's traffic.
    pub latency: Duration,
    /// Rounds of the throughput measurements, interleaved; each figure is the median of its
    /// rounds, so that a moment of noise on a shared machine does not decide it.
    pub rounds: u32,
    /// The wire the replicator and the raw measurements speak.
    pub wire: Wire,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            events: 100_000,
            streams: 1_000,
            event_bytes: 100,
            latency: Duration::ZERO,
            rounds: 1,
            wire: Wire::Grpc,
        }
    }
}

/// The figures of one run, with its parameters; serialised as `standby bench --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub raw_read_eps: f64,
    pub raw_append_eps: f64,
    pub replicate_eps_global: f64,
    pub replicate_eps_stream: f64,
    pub live_lag_p50_ms: f64,
    pub live_lag_p99_ms: f64,
    pub peak_rss_mib: f64,
    pub cpu_seconds_per_100k: f64,
    pub events: u64,
    pub streams: u64,
    pub event_bytes: usize,
    pub latency_ms: u64,
    /// Rounds of the throughput measurements (each figure is their median).
    pub rounds: u32,
    /// Where the dev nodes run: always `"in-process"`.
    pub nodes: &'static str,
    /// The wire measured.
    pub wire: Wire,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} wire: {} events over {} streams, ~{} bytes each, +{} ms each way to the secondary, dev nodes {}{}",
            self.wire,
            self.events,
            self.streams,
            self.event_bytes,
            self.latency_ms,
            self.nodes,
            if self.rounds > 1 {
                format!(", medians of {} rounds", self.rounds)
            } else {
                String::new()
            }
        )?;
        let min_raw = self.raw_read_eps.min(self.raw_append_eps);
        let rows = [
            (
                "raw read of $all (client alone)",
                self.raw_read_eps,
                "events/s",
            ),
            ("raw append (client alone)", self.raw_append_eps, "events/s"),
            (
                "replicate, ordering global",
                self.replicate_eps_global,
                "events/s",
            ),
            (
                "replicate, ordering stream",
                self.replicate_eps_stream,
                "events/s",
            ),
            ("live lag p50 at 1,000 events/s", self.live_lag_p50_ms, "ms"),
            ("live lag p99 at 1,000 events/s", self.live_lag_p99_ms, "ms"),
            ("peak RSS of standby run", self.peak_rss_mib, "MiB"),
            (
                "CPU of standby run per 100k events",
                self.cpu_seconds_per_100k,
                "s",
            ),
        ];
        for (name, value, unit) in rows {
            let shown = if unit == "events/s" {
                format!("{value:.0}")
            } else {
                format!("{value:.2}")
            };
            writeln!(f, "  {name:<38} {shown:>10} {unit}")?;
        }
        if min_raw > 0.0 {
            writeln!(
                f,
                "  replicate (stream) / min(raw read, raw append) = {:.2}",
                self.replicate_eps_stream / min_raw
            )?;
        }
        Ok(())
    }
}

/// Why a benchmark run stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot start a dev node: {0}")]
    Node(#[from] devnode::Error),
    #[error("cannot load the primary: {0}")]
    Load(String),
    #[error("{what}: {source}")]
    Client {
        what: &'static str,
        #[source]
        source: esdb::Error,
    },
    #[error("{0}")]
    Io(String),
    #[error("the replicator: {0}")]
    Replicator(String),
    #[error("{0}")]
    Timeout(String),
}

fn client_error(what: &'static str) -> impl FnOnce(esdb::Error) -> BenchError {
    move |source| BenchError::Client { what, source }
}

fn io_error(what: &str) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |e| BenchError::Io(format!("{what}: {e}"))
}

/// One run of [`RUN_LENGTH`] (or fewer, at the end) consecutive events of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Stream index; the stream is named by [`stream_name`].
    pub stream: u64,
    /// Event number of the run's first event.
    pub first: u64,
    /// Events in the run.
    pub count: u64,
}

/// How `events` events are interleaved over `streams` streams, in load order: round `r` gives
/// each stream in turn its events `10 r .. 10 r + 10`, until `events` are placed.
pub fn layout(events: u64, streams: u64) -> impl Iterator<Item = Run> {
    let streams = streams.max(1);
    (0..events.div_ceil(RUN_LENGTH)).map(move |k| Run {
        stream: k % streams,
        first: (k / streams) * RUN_LENGTH,
        count: RUN_LENGTH.min(events - k * RUN_LENGTH),
    })
}

/// The name of benchmark stream `index`.
pub fn stream_name(index: u64) -> String {
    format!("bench-{index}")
}

/// The id of event `number` of benchmark stream `stream`: the same on every node, never nil.
pub fn event_id(stream: u64, number: u64) -> Uuid {
    Uuid::from_u64_pair(0xbe9c_0000_0000_0000 | stream, number)
}

/// The JSON data of every benchmark event: `{"pad":"xx…"}`, `bytes` long (at least 10).
pub fn payload(bytes: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"pad":"{}"}}"#,
        "x".repeat(bytes.saturating_sub(10))
    ))
}

/// Writes the benchmark events into `store` directly (no HTTP), in [`layout`] order.
///
/// # Errors
/// A store error or an unexpected append result.
pub fn load(store: &devnode::store::Store, options: &BenchOptions) -> Result<(), BenchError> {
    let data = payload(options.event_bytes);
    for run in layout(options.events, options.streams) {
        let events = (run.first..run.first + run.count)
            .map(|n| ProposedEvent {
                event_id: event_id(run.stream, n),
                event_type: "Bench".into(),
                is_json: true,
                data: data.clone(),
                metadata: Bytes::new(),
            })
            .collect();
        let expected = run.first as i64 - 1;
        match store.append(&stream_name(run.stream), expected, events) {
            Ok(devnode::store::AppendResult::Written { .. }) => {}
            Ok(other) => {
                return Err(BenchError::Load(format!(
                    "unexpected append result {other:?}"
                )))
            }
            Err(e) => return Err(BenchError::Load(e.to_string())),
        }
    }
    Ok(())
}

/// A client of a dev node as `admin`.
///
/// # Errors
/// An unusable URL.
pub fn admin_client(url: &str) -> Result<Client, BenchError> {
    let config = esdb::ClientConfig::for_address(url)
        .map_err(|e| BenchError::Io(format!("address {url}: {e}")))?
        .with_credentials(esdb::Credentials::new(ADMIN.0, ADMIN.1));
    Client::connect(config).map_err(client_error("client"))
}

/// The address of a plaintext loopback node (`http://127.0.0.1:PORT`) on `wire`.
pub fn address(http_url: &str, wire: Wire) -> String {
    match wire {
        Wire::Http => http_url.to_owned(),
        Wire::Grpc => format!(
            "kurrentdb://{}?tls=false",
            http_url.trim_start_matches("http://")
        ),
    }
}

/// Reads the whole `$all` of `client`'s node forward from the start, `embed=body`, pages of
/// [`PAGE_SIZE`]. Returns the records read and the time taken.
///
/// # Errors
/// The first client error (no retries: a benchmark on loopback should see none).
pub async fn raw_read(client: &Client) -> Result<(u64, Duration), BenchError> {
    let options = ReadOptions {
        embed: Embed::Body,
        long_poll: None,
        resolve_link_tos: Some(false),
    };
    let size = PageSize::new(PAGE_SIZE).expect("a valid page size");
    let started = Instant::now();
    let mut from = Position::START;
    let mut records = 0u64;
    loop {
        let page = client
            .read_all_forward(from, size, &options)
            .await
            .map_err(client_error("raw read of $all"))?;
        records += page.entries.len() as u64;
        match page.next {
            Some(next) if !page.is_end => from = next,
            _ => break,
        }
    }
    Ok((records, started.elapsed()))
}

/// Appends the benchmark events to `client`'s (empty) node: per stream, all its events in
/// order, in requests of up to [`Client::max_append_bytes`] with exact expected versions;
/// [`APPEND_CONCURRENCY`] streams at once. Returns the events written and the time taken.
///
/// # Errors
/// The first client error.
pub async fn raw_append(
    client: &Client,
    options: &BenchOptions,
) -> Result<(u64, Duration), BenchError> {
    let mut per_stream = vec![0u64; options.streams.max(1) as usize];
    for run in layout(options.events, options.streams) {
        per_stream[run.stream as usize] += run.count;
    }
    let per_stream = Arc::new(per_stream);
    let data = payload(options.event_bytes);
    let batch = (client.max_append_bytes() / data.len().max(1)).max(1) as u64;
    let next_stream = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..APPEND_CONCURRENCY {
        let (client, per_stream, next_stream, data) = (
            client.clone(),
            per_stream.clone(),
            next_stream.clone(),
            data.clone(),
        );
        workers.spawn(async move {
            let mut written = 0u64;
            loop {
                let s = next_stream.fetch_add(1, AtomicOrdering::Relaxed);
                let Some(&total) = per_stream.get(s as usize) else {
                    return Ok::<u64, BenchError>(written);
                };
                let name = stream_name(s);
                let mut first = 0;
                while first < total {
                    let n = batch.min(total - first);
                    let events: Vec<EventData> = (first..first + n)
                        .map(|i| EventData::json(event_id(s, i), "Bench", data.clone()))
                        .collect();
                    let revision = StreamRevision::new(first).expect("a small event number");
                    client
                        .append_events(&name, &events, ExpectedVersion::to_write(revision))
                        .await
                        .map_err(client_error("raw append"))?;
                    first += n;
                    written += n;
                }
            }
        });
    }
    let mut written = 0;
    while let Some(joined) = workers.join_next().await {
        written += joined.map_err(|e| BenchError::Io(format!("append task: {e}")))??;
    }
    Ok((written, started.elapsed()))
}

/// A `standby run` child process; killed (and reaped) when dropped.
pub struct Replicator {
    child: std::process::Child,
    /// Where the child's stderr goes, for error messages.
    log: PathBuf,
}

impl Replicator {
    /// Starts `exe run --config config` with warnings only on stderr (into `log`).
    ///
    /// # Errors
    /// When the process cannot be started.
    pub fn spawn(exe: &Path, config: &Path, log: &Path) -> Result<Replicator, BenchError> {
        let stderr = std::fs::File::create(log).map_err(io_error("replicator log file"))?;
        let child = std::process::Command::new(exe)
            .args(["run", "--config"])
            .arg(config)
            .env("STANDBY_LOG", "warn")
            .env_remove("STANDBY_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| BenchError::Replicator(format!("cannot start {}: {e}", exe.display())))?;
        Ok(Replicator {
            child,
            log: log.to_path_buf(),
        })
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// An error when the child has exited, with the end of its log.
    fn check_running(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(BenchError::Replicator(format!(
                    "`standby run` exited ({status}): {}",
                    tail.join(" | ")
                )))
            }
            Err(e) => Err(BenchError::Replicator(format!(
                "cannot watch the child: {e}"
            ))),
        }
    }

    /// Peak resident set (`VmHWM`) in KiB, while the process exists.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// User plus system CPU time used so far, in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.id())).ok()?;
        // Fields after the parenthesised command name start at field 3 (state); utime and stime
        // are fields 14 and 15.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) as f64 / CLOCK_TICKS)
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration file of one replicator run.
///
/// # Errors
/// When the file cannot be written.
pub fn write_config(
    dir: &Path,
    primary: &str,
    secondary: &str,
    checkpoint: &Path,
    ordering: &str,
) -> Result<PathBuf, BenchError> {
    let path = dir.join("standby.toml");
    let (user, password) = ADMIN;
    std::fs::write(
        &path,
        format!(
            "[primary]\nurl = {primary:?}\nusername = {user:?}\npassword = {password:?}\n\n\
             [secondary]\nurl = {secondary:?}\nusername = {user:?}\npassword = {password:?}\n\n\
             [checkpoint]\npath = {checkpoint:?}\n\n\
             [replication]\nordering = {ordering:?}\npage_size = {PAGE_SIZE}\n"
        ),
    )
    .map_err(io_error("replicator configuration"))?;
    Ok(path)
}

/// What one catch-up measured.
#[derive(Debug, Clone, Copy)]
pub struct CatchUp {
    pub elapsed: Duration,
    pub peak_rss_kib: u64,
    pub cpu_seconds: f64,
}

/// Waits until the checkpoint file at `checkpoint` covers `head`, sampling the child's peak RSS
/// every [`SAMPLE_EVERY`]; the time is measured from `started`.
///
/// # Errors
/// The child exits, or `deadline` passes.
pub async fn wait_caught_up(
    child: &mut Replicator,
    checkpoint: &Path,
    head: Position,
    started: Instant,
    deadline: Duration,
) -> Result<CatchUp, BenchError> {
    let mut peak = 0;
    loop {
        peak = peak.max(child.peak_rss_kib().unwrap_or(0));
        let covered = CheckpointStore::read(checkpoint)
            .ok()
            .flatten()
            .is_some_and(|c| c.position.commit() >= head.commit());
        if covered {
            let elapsed = started.elapsed();
            return Ok(CatchUp {
                elapsed,
                peak_rss_kib: peak.max(child.peak_rss_kib().unwrap_or(0)),
                cpu_seconds: child.cpu_seconds().unwrap_or(0.0),
            });
        }
        child.check_running()?;
        if started.elapsed() > deadline {
            return Err(BenchError::Timeout(format!(
                "`standby run` did not catch up within {} s",
                deadline.as_secs()
            )));
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// An in-memory dev node on a runtime of its own.
///
/// Two clusters never share a task queue: on one runtime, a page the primary renders would wait
/// behind the secondary's appends (up to 128 at once under `ordering = "stream"`), a delay no
/// deployment has. The threads still share the machine's cores, as the OS schedules them.
struct HostedNode {
    /// `None` only while stopping.
    node: Option<devnode::Node>,
    /// Taken on drop: a runtime cannot be dropped (blocking) inside another runtime's task.
    runtime: Option<tokio::runtime::Runtime>,
}

impl HostedNode {
    async fn start(name: &str) -> Result<HostedNode, BenchError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("devnode-{name}"))
            .enable_all()
            .build()
            .map_err(io_error("dev node runtime"))?;
        let node = runtime
            .spawn(devnode::Node::start(devnode::NodeConfig::memory()))
            .await
            .map_err(|e| BenchError::Io(format!("dev node start: {e}")))??;
        Ok(HostedNode {
            node: Some(node),
            runtime: Some(runtime),
        })
    }

    /// Runs `future` on the node's runtime, so what it spawns runs there too.
    async fn run_on<F>(&self, future: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = self.runtime.as_ref().expect("present until dropped");
        match runtime.spawn(future).await {
            Ok(output) => output,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    async fn stop(mut self) {
        if let (Some(node), Some(runtime)) = (self.node.take(), self.runtime.as_ref()) {
            // Stopping waits on the node's own server task, so it runs on the node's runtime.
            let _ = runtime.spawn(node.stop()).await;
        }
    }
}

impl Drop for HostedNode {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::ops::Deref for HostedNode {
    type Target = devnode::Node;

    fn deref(&self) -> &devnode::Node {
        self.node
            .as_ref()
            .expect("a hosted node is running until stopped")
    }
}

/// A fresh in-memory secondary dev node behind its own proxy.
struct Secondary {
    node: HostedNode,
    proxy: Proxy,
}

impl Secondary {
    async fn start(latency: Duration) -> Result<Secondary, BenchError> {
        let node = HostedNode::start("secondary").await?;
        // On the node's runtime: the proxy stands for the network in front of that cluster, and a
        // hop to another runtime would add a thread wake-up to every request.
        let proxy = node
            .run_on(Proxy::start(node.addr(), latency))
            .await
            .map_err(io_error("proxy"))?;
        Ok(Secondary { node, proxy })
    }

    async fn stop(self) {
        self.proxy.stop().await;
        self.node.stop().await;
    }
}

/// Live lag percentiles, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct LiveLag {
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Events measured.
    pub events: u64,
    /// The append rate achieved, events/s.
    pub rate: f64,
}

/// Appends `count` single events to `primary` at [`LIVE_RATE`] events/s and measures for each the
/// time from sending its append to receiving it from a long-polling forward read of `secondary`'s
/// `$all`, started at the secondary's current head.
///
/// # Errors
/// Client errors, or an event not seen on the secondary within [`LIVE_GRACE`] of the last append.
pub async fn live_lag(
    primary: &Client,
    secondary: &Client,
    count: u64,
) -> Result<LiveLag, BenchError> {
    let from = primary_head(secondary)
        .await
        .map_err(client_error("the secondary's head"))?;
    let base = Instant::now();
    // Nanoseconds after `base` at which each append was sent, plus one (0 = not yet).
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let stop_watch = tokio_util::sync::CancellationToken::new();
    let watcher = {
        let (secondary, sent, stop) = (secondary.clone(), sent.clone(), stop_watch.clone());
        tokio::spawn(async move { watch_live(&secondary, from, &sent, base, &stop).await })
    };
    let limit = Arc::new(tokio::sync::Semaphore::new(LIVE_IN_FLIGHT));
    let mut appends = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / LIVE_RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    for seq in 0..count {
        tick.tick().await;
        let permit = limit
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (primary, sent) = (primary.clone(), sent.clone());
        appends.spawn(async move {
            let event = EventData::json(
                Uuid::new_v4(),
                LIVE_EVENT_TYPE,
                Bytes::from(format!(r#"{{"seq":{seq}}}"#)),
            );
            let at = base.elapsed().as_nanos() as u64 + 1;
            sent[seq as usize].store(at, AtomicOrdering::Release);
            let result = primary
                .append_events(
                    &format!("bench-live-{}", seq % LIVE_STREAMS),
                    &[event],
                    ExpectedVersion::Any,
                )
                .await;
            drop(permit);
            result.map(|_| ()).map_err(client_error("live append"))
        });
        while let Some(done) = appends.try_join_next() {
            done.map_err(|e| BenchError::Io(format!("append task: {e}")))??;
        }
    }
    while let Some(done) = appends.join_next().await {
        done.map_err(|e| BenchError::Io(format!("append task: {e}")))??;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    let watched = tokio::time::timeout(LIVE_GRACE, watcher).await;
    stop_watch.cancel();
    let mut lags = match watched {
        Ok(joined) => joined.map_err(|e| BenchError::Io(format!("watch task: {e}")))??,
        Err(_) => {
            return Err(BenchError::Timeout(format!(
                "live events did not all reach the secondary within {} s of the last append",
                LIVE_GRACE.as_secs()
            )))
        }
    };
    lags.sort_by(f64::total_cmp);
    Ok(LiveLag {
        p50_ms: percentile(&lags, 50.0),
        p99_ms: percentile(&lags, 99.0),
        events: lags.len() as u64,
        rate,
    })
}

/// Reads the secondary's `$all` forward from `from` with long polls until every live event was
/// seen (or `stop` fires); returns each event's lag in milliseconds.
async fn watch_live(
    secondary: &Client,
    mut from: Position,
    sent: &[AtomicU64],
    base: Instant,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<Vec<f64>, BenchError> {
    let options = ReadOptions {
        embed: Embed::Body,
        long_poll: Some(Duration::from_secs(1)),
        resolve_link_tos: Some(false),
    };
    let size = PageSize::new(PAGE_SIZE).expect("a valid page size");
    let mut lags = vec![None; sent.len()];
    let mut seen = 0;
    let mut note = |e: &esdb::RecordedEvent, lags: &mut Vec<Option<f64>>| {
        if e.event_type != LIVE_EVENT_TYPE {
            return;
        }
        let now = base.elapsed().as_nanos() as u64;
        let seq = e
            .data
            .as_deref()
            .and_then(|d| serde_json::from_slice::<serde_json::Value>(d).ok())
            .and_then(|v| v.get("seq").and_then(serde_json::Value::as_u64));
        let Some(slot) = seq.and_then(|s| lags.get_mut(s as usize)) else {
            return;
        };
        if slot.is_none() {
            let at = sent[seq.unwrap_or_default() as usize].load(AtomicOrdering::Acquire);
            let lag = now.saturating_sub(at.saturating_sub(1));
            *slot = Some(lag as f64 / 1e6);
            seen += 1;
        }
    };
    if let Client::Grpc(grpc) = secondary {
        // gRPC pushes: a subscription after the head, as the replicator's own reader does.
        let mut subscription = grpc
            .subscribe_all(Some(from).filter(|p| *p != Position::START), None)
            .await
            .map_err(client_error("subscription to the secondary"))?;
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => break,
                m = subscription.next_event() => m.map_err(client_error("subscription to the secondary"))?,
            };
            let Some(event) = message else { break };
            note(&event.event, &mut lags);
            if lags.iter().all(Option::is_some) {
                break;
            }
        }
        return Ok(lags.into_iter().flatten().collect());
    }
    while lags.iter().any(Option::is_none) {
        let page = tokio::select! {
            _ = stop.cancelled() => break,
            page = secondary.read_all_forward(from, size, &options) => {
                page.map_err(client_error("long-poll read of the secondary"))?
            }
        };
        for entry in &page.entries {
            if let Entry::Event(e) = entry {
                note(e, &mut lags);
            }
        }
        if let Some(next) = page.next {
            from = next;
        }
    }
    Ok(lags.into_iter().flatten().collect())
}

/// The nearest-rank percentile `p` of sorted `values` (0 when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `values` (the mean of the middle two for an even count; 0 when empty).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn rounded(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// Runs every measurement; `progress` receives one line per phase.
///
/// # Errors
/// See [`BenchError`].
pub async fn run(
    options: &BenchOptions,
    mut progress: impl FnMut(&str),
) -> Result<BenchReport, BenchError> {
    let exe = std::env::current_exe().map_err(io_error("the standby executable"))?;
    let dir = tempfile::tempdir().map_err(io_error("temporary directory"))?;
    progress(&format!(
        "standby bench: dev nodes in-process, each on its own runtime (a primary, and a fresh \
         in-memory secondary per measurement behind a proxy adding {} ms each way); `standby run` \
         as a child process",
        options.latency.as_millis()
    ));
    let primary = HostedNode::start("primary").await?;
    progress(&format!(
        "loading the primary {}: {} events over {} streams, ~{} bytes each (not measured)",
        primary.url(),
        options.events,
        options.streams,
        options.event_bytes
    ));
    {
        let (store, load_options) = (primary.store(), options.clone());
        tokio::task::spawn_blocking(move || load(&store, &load_options))
            .await
            .map_err(|e| BenchError::Load(e.to_string()))??;
    }
    let on_wire = |url: String| address(&url, options.wire);
    let primary_client = admin_client(&on_wire(primary.url()))?;
    let head = primary_head(&primary_client)
        .await
        .map_err(client_error("the primary's head"))?;

    let deadline = Duration::from_secs(60 + options.events / 1_000);
    let live_events = options
        .events
        .min(LIVE_RATE * LIVE_DURATION.as_secs())
        .max(1);
    let rounds = options.rounds.max(1);
    let mut peak_kib = 0;
    let mut cpu = Vec::new();
    let (mut reads, mut appends) = (Vec::new(), Vec::new());
    let mut eps = [Vec::new(), Vec::new()];
    let mut lag = None;
    for round in 1..=rounds {
        let tag = if rounds > 1 {
            format!("[{round}/{rounds}] ")
        } else {
            String::new()
        };
        let (read, took) = raw_read(&primary_client).await?;
        reads.push(read as f64 / took.as_secs_f64());
        progress(&format!(
            "{tag}raw read: {read} records in {:.2} s = {:.0} events/s",
            took.as_secs_f64(),
            reads[reads.len() - 1]
        ));

        let secondary = Secondary::start(options.latency).await?;
        let (written, took) =
            raw_append(&admin_client(&on_wire(secondary.proxy.url()))?, options).await?;
        secondary.stop().await;
        appends.push(written as f64 / took.as_secs_f64());
        progress(&format!(
            "{tag}raw append: {written} events in {:.2} s = {:.0} events/s",
            took.as_secs_f64(),
            appends[appends.len() - 1]
        ));

        let mut round_cpu = 0.0;
        for (i, ordering) in ["global", "stream"].into_iter().enumerate() {
            let run_dir = dir.path().join(format!("{ordering}-{round}"));
            std::fs::create_dir_all(&run_dir).map_err(io_error("run directory"))?;
            let secondary = Secondary::start(options.latency).await?;
            let checkpoint = run_dir.join("standby.checkpoint");
            let config = write_config(
                &run_dir,
                &on_wire(primary.url()),
                &on_wire(secondary.proxy.url()),
                &checkpoint,
                ordering,
            )?;
            let started = Instant::now();
            let mut child = Replicator::spawn(&exe, &config, &run_dir.join("standby.log"))?;
            let caught = wait_caught_up(&mut child, &checkpoint, head, started, deadline).await?;
            eps[i].push(options.events as f64 / caught.elapsed.as_secs_f64());
            peak_kib = peak_kib.max(caught.peak_rss_kib);
            round_cpu += caught.cpu_seconds;
            progress(&format!(
                "{tag}replicate, ordering {ordering}: caught up {} events in {:.2} s = {:.0} events/s, \
                 peak RSS {:.1} MiB, CPU {:.2} s",
                options.events,
                caught.elapsed.as_secs_f64(),
                eps[i][eps[i].len() - 1],
                caught.peak_rss_kib as f64 / 1024.0,
                caught.cpu_seconds
            ));
            if ordering == "stream" && round == rounds {
                progress(&format!(
                    "live: {live_events} single-event appends at {LIVE_RATE} events/s, lag to a \
                     long-polling reader of the secondary"
                ));
                let measured = live_lag(
                    &primary_client,
                    &admin_client(&on_wire(secondary.proxy.url()))?,
                    live_events,
                )
                .await;
                child.check_running()?;
                peak_kib = peak_kib.max(child.peak_rss_kib().unwrap_or(0));
                let measured = measured?;
                progress(&format!(
                    "live: {} events at {:.0} events/s, lag p50 {:.2} ms, p99 {:.2} ms",
                    measured.events, measured.rate, measured.p50_ms, measured.p99_ms
                ));
                lag = Some(measured);
            }
            drop(child);
            secondary.stop().await;
        }
        cpu.push(round_cpu);
        if rounds > 1 {
            let min_raw = reads[reads.len() - 1].min(appends[appends.len() - 1]);
            progress(&format!(
                "{tag}replicate (stream) / min(raw read, raw append) = {:.2}",
                eps[1][eps[1].len() - 1] / min_raw
            ));
        }
    }
    primary.stop().await;
    let lag = lag.expect("the stream run measures the live lag");
    Ok(BenchReport {
        raw_read_eps: rounded(median(&mut reads), 0),
        raw_append_eps: rounded(median(&mut appends), 0),
        replicate_eps_global: rounded(median(&mut eps[0]), 0),
        replicate_eps_stream: rounded(median(&mut eps[1]), 0),
        live_lag_p50_ms: rounded(lag.p50_ms, 2),
        live_lag_p99_ms: rounded(lag.p99_ms, 2),
        peak_rss_mib: rounded(peak_kib as f64 / 1024.0, 1),
        cpu_seconds_per_100k: rounded(
            median(&mut cpu) / (2.0 * options.events as f64) * 100_000.0,
            3,
        ),
        events: options.events,
        streams: options.streams,
        event_bytes: options.event_bytes,
        latency_ms: options.latency.as_millis() as u64,
        rounds,
        nodes: "in-process",
        wire: options.wire,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_interleaves_runs_of_ten_and_places_every_event() {
        let runs: Vec<Run> = layout(45, 2).collect();
        assert_eq!(runs.iter().map(|r| r.count).sum::<u64>(), 45);
        assert_eq!(
            runs[..3],
            [
                Run {
                    stream: 0,
                    first: 0,
                    count: 10
                },
                Run {
                    stream: 1,
                    first: 0,
                    count: 10
                },
                Run {
                    stream: 0,
                    first: 10,
                    count: 10
                },
            ]
        );
        assert_eq!(
            runs[4],
            Run {
                stream: 0,
                first: 20,
                count: 5
            }
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
        assert_eq!(percentile(&[3.0], 1.0), 3.0);
    }

    #[test]
    fn medians_take_the_middle() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut [7.0]), 7.0);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn the_payload_has_the_requested_size() {
        assert_eq!(payload(100).len(), 100);
        assert!(serde_json::from_slice::<serde_json::Value>(&payload(10)).is_ok());
    }
}
