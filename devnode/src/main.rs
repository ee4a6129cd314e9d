//! `devnode` command line: runs one node until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use devnode::{Node, NodeConfig, Profile, Storage, User};

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
    /// Server generation to imitate: v5, v20, v21.10 or v25.
    #[arg(long, default_value = "v25")]
    profile: Profile,
    /// Extra user NAME:PASSWORD[:GROUP]; repeat for more. A known login is overridden.
    #[arg(long = "user", value_name = "NAME:PASSWORD[:GROUP]", value_parser = parse_user)]
    users: Vec<User>,
    /// fsync the log before answering each write.
    #[arg(long)]
    fsync: bool,
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
    for u in cli.users {
        cfg = cfg.user(u);
    }
    let storage = match &cfg.storage {
        Storage::Memory => "memory".to_owned(),
        Storage::Dir(d) => format!("dir {}", d.display()),
    };
    let profile = cfg.profile;
    let node = match Node::start(cfg).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("devnode: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "devnode listening on {} (profile {profile}, storage {storage})",
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
