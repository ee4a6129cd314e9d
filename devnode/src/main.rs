//! `devnode` command line: runs one node until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use devnode::{DevCerts, Node, NodeConfig, Profile, RunProjections, Storage, User};

/// An Event Store–compatible AtomPub HTTP node for tests and demos (not a production database).
#[derive(Debug, Parser)]
#[command(name = "devnode", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2113")]
    http: SocketAddr,
    /// Keep the log in this directory (created if missing).
    #[arg(long, value_name = "DIR", conflicts_with = "memory")]
    db: Option<PathBuf>,
    /// Keep everything in memory (the default when --db is not given).
    #[arg(long)]
    memory: bool,
    /// Server generation to imitate: v5, v20, v21.10, v25 (25.0–26.1) or v26 (26.2).
    #[arg(long, default_value = "v26")]
    profile: Profile,
    /// Secure mode: the node certificate chain (PEM). v20+ profiles.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "dev_certs"
    )]
    tls_cert: Option<PathBuf>,
    /// Secure mode: the node's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Secure mode with a development CA and node certificate for 127.0.0.1/localhost in DIR
    /// (ca.crt, node.crt, node.key; written when missing). Give clients DIR/ca.crt.
    #[arg(long, value_name = "DIR")]
    dev_certs: Option<PathBuf>,
    /// Plaintext with authentication and authorization off: every request runs as `system`
    /// (v20+ profiles, as the real server's --insecure).
    #[arg(long, conflicts_with_all = ["tls_cert", "dev_certs", "disable_tls"])]
    insecure: bool,
    /// Plaintext with authentication (v26 profile, KurrentDB 26.2).
    #[arg(long, conflicts_with_all = ["tls_cert", "dev_certs"])]
    disable_tls: bool,
    /// Accounts managed outside the node, as with the LDAPS or OAuth plugins: the users
    /// authenticate, but /users is not served and no account can be disabled through it.
    #[arg(long, conflicts_with = "insecure")]
    external_users: bool,
    /// Do not write what a real node writes on its own (`admin` and `ops` at the first start, an
    /// `$epoch-information` event at every start on 21.10+ profiles): the log holds only what
    /// clients wrote.
    #[arg(long)]
    no_server_records: bool,
    /// The projection subsystem: `none` (the server's default) or `system` (the system
    /// projections are registered at start and, once enabled, write `$streams`, `$ce-*`, `$et-*`,
    /// `$category-*` and `$bc-*` links behind the log; see docs/devnode.md).
    #[arg(long, value_name = "MODE", default_value = "none")]
    run_projections: RunProjections,
    /// Enable the system projections at start (as the server's option; without it they are
    /// registered stopped and write no links).
    #[arg(long)]
    start_standard_projections: bool,
    /// Answer every request "not ready" (HTTP 503 with Retry-After, gRPC UNAVAILABLE) for this
    /// many seconds after start, as a node does while it starts or elects a leader.
    #[arg(long, value_name = "SECS")]
    not_ready_secs: Option<u64>,
    /// Add this many milliseconds before every answer, as a slow or far node.
    #[arg(long, value_name = "MS")]
    latency_ms: Option<u64>,
    /// Extra user NAME:PASSWORD[:GROUP]; repeat for more. A known login is overridden.
    #[arg(long = "user", value_name = "NAME:PASSWORD[:GROUP]", value_parser = parse_user)]
    users: Vec<User>,
    /// fsync the log before answering each write.
    #[arg(long)]
    fsync: bool,
    /// How the log is kept in --db: `devnode` (one log file of its own) or `chunks` (the
    /// server's chunk files, checkpoints and index, see docs/devnode.md).
    #[arg(long, value_enum, default_value_t = Layout::Devnode, requires = "db")]
    layout: Layout,
    /// Bytes per chunk with --layout chunks (the server's default is 256 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = devnode::config::DEFAULT_CHUNK_SIZE,
          value_parser = clap::value_parser!(u32).range(4096..))]
    chunk_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Layout {
    Devnode,
    Chunks,
}

fn parse_user(s: &str) -> Result<User, String> {
    let mut parts = s.splitn(3, ':');
    let login = parts.next().unwrap_or("");
    let password = parts
        .next()
        .ok_or_else(|| "expected NAME:PASSWORD[:GROUP]".to_owned())?;
    if login.is_empty() {
        return Err("empty user name".to_owned());
    }
    let groups = match parts.next() {
        Some(g) if !g.is_empty() => vec![g.to_owned()],
        _ => Vec::new(),
    };
    Ok(User {
        login: login.to_owned(),
        password: password.to_owned(),
        groups,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let mut cfg = match &cli.db {
        Some(dir) => NodeConfig::on_disk(dir.clone()),
        None => NodeConfig::memory(),
    }
    .profile(cli.profile)
    .http(cli.http)
    .fsync(cli.fsync);
    if cli.layout == Layout::Chunks {
        cfg = cfg.chunk_layout(cli.chunk_size);
    }
    for u in cli.users {
        cfg = cfg.user(u);
    }
    if cli.insecure {
        cfg = cfg.insecure();
    }
    if cli.external_users {
        cfg = cfg.external_users();
    }
    cfg = cfg
        .server_records(!cli.no_server_records)
        .run_projections(cli.run_projections)
        .start_standard_projections(cli.start_standard_projections);
    let (cli_not_ready, cli_latency) = (cli.not_ready_secs, cli.latency_ms);
    if cli.disable_tls {
        cfg = cfg.disable_tls();
    }
    let mut ca_file = None;
    if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        let read =
            |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        match (read(cert), read(key)) {
            (Ok(c), Ok(k)) => cfg = cfg.tls(c, k),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("devnode: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(dir) = &cli.dev_certs {
        match DevCerts::ensure(dir).and_then(|c| {
            ca_file = Some(c.ca_file());
            cfg.clone().dev_tls(&c)
        }) {
            Ok(c) => cfg = c,
            Err(e) => {
                eprintln!("devnode: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let storage = match &cfg.storage {
        Storage::Memory => "memory".to_owned(),
        Storage::Dir(d) => format!("dir {}", d.display()),
        Storage::Chunks { dir, chunk_size } => {
            format!("chunks {} ({chunk_size}-byte chunks)", dir.display())
        }
    };
    let profile = cfg.profile;
    let security = match cfg.security.name() {
        "unset" if profile == Profile::V26 => "disable-tls",
        other => other,
    };
    let node = match Node::start(cfg).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("devnode: cannot start: {e}");
            if matches!(
                e,
                devnode::Error::Security(devnode::SecurityError::CertificateRequired)
            ) {
                eprintln!(
                    "devnode: give --tls-cert FILE --tls-key FILE or --dev-certs DIR, or \
                     --insecure, or choose --profile v26 for plaintext with authentication"
                );
            }
            return ExitCode::FAILURE;
        }
    };
    if let Some(secs) = cli_not_ready {
        node.not_ready_for(std::time::Duration::from_secs(secs));
    }
    if let Some(ms) = cli_latency {
        node.set_latency(std::time::Duration::from_millis(ms));
    }
    if let Some(ca) = ca_file {
        println!("devnode CA certificate for clients: {}", ca.display());
    }
    println!(
        "devnode listening on {} (profile {profile}, security {security}, storage {storage})",
        node.url()
    );
    wait_for_signal().await;
    tracing::info!("signal received, stopping");
    node.stop().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
