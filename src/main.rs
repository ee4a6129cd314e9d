//! `standby`: command-line entry point. Parses arguments, sets up logging, runs the command and
//! turns its outcome into one of the documented exit codes (`standby::exit`).

mod cli;

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use cli::{CheckpointAction, Cli, Command, DemoOrdering, LogFormat};
use standby::config::{Config, Ordering};
use standby::exit;
use standby::pipeline::{self, RunError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own progress and summaries (fidelity limits are listed by its verify
    // step); per-event warnings and request logs would drown them.
    let filter = match (&cli.command, cli.log.as_str()) {
        (Command::Demo { .. } | Command::Bench { .. }, "info") => "error",
        (_, filter) => filter,
    };
    init_logging(cli.log_format, filter);
    // `run` is one pipeline of a few tasks, all waiting on the network most of the time: on one
    // thread it spends less CPU on wake-ups between threads and holds less memory than on a
    // thread per core (docs/benchmarks.md). Checkpoint writes still go to the blocking pool.
    let mut builder = match cli.command {
        Command::Run { .. } => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    ExitCode::from(runtime.block_on(dispatch(cli.command)))
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_on_stderr())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Colour codes only for a person at a terminal: never in a file, a pipe or a log collector, and
/// never when `NO_COLOR` is set to a non-empty value (no-color.org).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Fires on the first SIGINT or SIGTERM.
fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stop requested");
        t.cancel();
    });
    token
}

fn load(path: &std::path::Path) -> Result<Config, u8> {
    Config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        exit::USAGE
    })
}

async fn dispatch(command: Command) -> u8 {
    match command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "standby",
                &mut std::io::stdout(),
            );
            exit::OK
        }
        Command::Check { config, json } => {
            let config = match load(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let report = standby::check::check(&config).await;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("a report serialises")
                );
            } else {
                print!("{report}");
            }
            if report.passed() {
                exit::OK
            } else {
                exit::REFUSED
            }
        }
        Command::Man => {
            use clap::CommandFactory;
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("error: writing the manual page: {e}");
                    exit::INTERNAL
                }
            }
        }
        Command::Run { config, takeover } => {
            let config = match load(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let shared: std::sync::Arc<pipeline::Shared> = std::sync::Arc::default();
            let server = match endpoints(&config, &shared).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            let progress_stop = tokio_util::sync::CancellationToken::new();
            let progress = match pipeline::clients(&config) {
                Ok((primary, _)) => Some(tokio::spawn(standby::progress::report(
                    shared.clone(),
                    primary,
                    config.replication.clone(),
                    server.is_none(),
                    progress_stop.clone(),
                ))),
                Err(_) => None,
            };
            let options = pipeline::RunOptions { takeover };
            let result = pipeline::run_with(&config, &options, shutdown_signal(), shared).await;
            progress_stop.cancel();
            if let Some(progress) = progress {
                let _ = progress.await;
            }
            if let Some(server) = server {
                server.stop().await;
            }
            match result {
                Ok(summary) => {
                    tracing::info!(
                        events = summary.progress.events_written,
                        checkpoint = %summary.checkpoint.map_or_else(|| "none".into(), |c| c.to_string()),
                        "stopped"
                    );
                    exit::OK
                }
                Err(e) => report(&e),
            }
        }
        Command::VerifyBackup {
            dir,
            index,
            repo,
            set: _,
            level,
            json,
        } => verify_backup(dir, index, repo, level.into(), json).await,
        Command::Verify { config, json } => {
            let config = match load(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            verify(&config, json).await
        }
        Command::Status { config, json } => {
            let config = match load(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            status(&config, json).await
        }
        Command::Checkpoint {
            action: CheckpointAction::Recover { config, json },
        } => {
            let config = match load(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match pipeline::recover_checkpoint(&config).await {
                Ok(cp) if json => {
                    let report = serde_json::json!({
                        "recovered": cp,
                        "path": config.checkpoint.path,
                    });
                    println!("{report}");
                    exit::OK
                }
                Ok(cp) => {
                    println!(
                        "recovered checkpoint {} (primary database {}, epoch {}) into {}",
                        cp.position,
                        cp.primary,
                        cp.epoch,
                        config.checkpoint.path.display()
                    );
                    exit::OK
                }
                Err(e) => report(&e),
            }
        }
        Command::Promote {
            config,
            force,
            dry_run,
            fence_primary,
            reason,
            max_lag,
            unfenced,
            json,
        } => {
            let config = match load(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let options = standby::control::PromoteOptions {
                force,
                dry_run,
                fence_primary,
                reason,
                max_lag,
                unfenced,
            };
            promotion(standby::control::promote(&config, &options).await, json)
        }
        Command::Switchover {
            config,
            timeout,
            reason,
            json,
        } => {
            let config = match load(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let timeout = std::time::Duration::from_secs(timeout);
            promotion(
                standby::control::switchover(&config, timeout, reason, &shutdown_signal()).await,
                json,
            )
        }
        Command::Divergence { config, out, json } => {
            let config = match load(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match standby::control::divergence::export(&config, &out).await {
                Ok(export) if json => {
                    println!(
                        "{}",
                        serde_json::json!({
                            "from": export.from.to_string(),
                            "from_source": export.from_source,
                            "head": export.head.to_string(),
                            "events": export.events,
                            "out": out.display().to_string(),
                        })
                    );
                    exit::OK
                }
                Ok(export) => {
                    println!(
                        "exported {} events of the old primary after {} ({}) up to its head {} into {}",
                        export.events,
                        export.from,
                        export.from_source,
                        export.head,
                        out.display()
                    );
                    exit::OK
                }
                Err(e) => {
                    eprintln!("error: divergence: {e}");
                    e.exit_code()
                }
            }
        }
        Command::Demo {
            events,
            streams,
            ordering,
        } => {
            let ordering = match ordering {
                DemoOrdering::Global => Ordering::Global,
                DemoOrdering::Stream => Ordering::Stream,
            };
            match standby::demo::run(
                standby::demo::DemoOptions {
                    events,
                    streams,
                    ordering,
                },
                shutdown_signal(),
            )
            .await
            {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: demo: {e}");
                    exit::INTERNAL
                }
            }
        }
        Command::Bench {
            events,
            streams,
            event_bytes,
            latency_ms,
            rounds,
            wire,
            json,
        } => {
            use cli::BenchWire;
            use standby::esdb::Wire;
            let wires: &[Wire] = match wire {
                BenchWire::Grpc => &[Wire::Grpc],
                BenchWire::Http => &[Wire::Http],
                BenchWire::Both => &[Wire::Grpc, Wire::Http],
            };
            let mut code = exit::OK;
            for &wire in wires {
                let options = standby::bench::BenchOptions {
                    events,
                    streams,
                    event_bytes,
                    latency: std::time::Duration::from_millis(latency_ms),
                    rounds,
                    wire,
                };
                code = bench(&options, json).await;
                if code != exit::OK {
                    break;
                }
            }
            code
        }
    }
}

/// `bench`: progress on stdout (stderr with `--json`), then the figures; 1 when a phase fails.
async fn bench(options: &standby::bench::BenchOptions, json: bool) -> u8 {
    let progress = |line: &str| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    match standby::bench::run(options, progress).await {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("a report serialises")
                );
            } else {
                print!("{report}");
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: bench: {e}");
            exit::INTERNAL
        }
    }
}

/// `verify`: 0 equal, 4 different, 5 a side unreachable, 3 refused (permissions), 1 otherwise.
async fn verify(config: &Config, json: bool) -> u8 {
    let (primary, secondary) = match pipeline::reading_clients(config) {
        Ok(c) => c,
        Err(e) => return report(&e),
    };
    let result = standby::verify::verify(&primary, &secondary, &config.replication, |p| {
        tracing::debug!(progress = ?p, "verifying");
    })
    .await;
    match result {
        Ok(r) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r).expect("a report serialises")
                );
            } else {
                print!("{r}");
            }
            if r.equal {
                exit::OK
            } else {
                exit::DIVERGENCE
            }
        }
        Err(e) => {
            eprintln!("error: verify: {e}");
            if e.is_unreachable() {
                exit::UNREACHABLE
            } else if matches!(
                &e,
                standby::verify::VerifyError::Read { source, .. } if source.is_access_denied()
            ) {
                exit::REFUSED
            } else {
                exit::INTERNAL
            }
        }
    }
}

/// `status`: always prints what it could gather; 5 when neither cluster answered.
async fn status(config: &Config, json: bool) -> u8 {
    let (primary, secondary) = match pipeline::reading_clients(config) {
        Ok(c) => c,
        Err(e) => return report(&e),
    };
    let r = standby::status::status(config, &primary, &secondary).await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("a report serialises")
        );
    } else {
        print!("{r}");
    }
    if r.primary.head.is_none() && r.secondary.reachable == Some(false) {
        exit::UNREACHABLE
    } else {
        exit::OK
    }
}

/// Starts `/metrics` and the health endpoints when `[metrics] listen` is set.
async fn endpoints(
    config: &Config,
    shared: &std::sync::Arc<pipeline::Shared>,
) -> Result<Option<standby::serve::Server>, u8> {
    let Some(listen) = config.metrics.listen else {
        return Ok(None);
    };
    let (primary, _) = pipeline::clients(config).map_err(|e| report(&e))?;
    standby::serve::start(
        listen,
        shared.clone(),
        std::time::Duration::from_secs(config.metrics.ready_window_secs),
        primary,
        config.replication.clone(),
    )
    .await
    .map(Some)
    .map_err(|e| {
        eprintln!("error: cannot serve metrics on {listen}: {e}");
        exit::USAGE
    })
}

/// Prints a promotion report; the exit code of its outcome.
fn promotion(
    result: Result<standby::control::PromoteReport, standby::control::PromoteError>,
    json: bool,
) -> u8 {
    match result {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("a report serialises")
                );
            } else {
                print!("{report}");
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn report(e: &RunError) -> u8 {
    match e {
        RunError::Divergence(d) => {
            eprintln!("error: replication halted: {d}");
            if let Ok(json) = serde_json::to_string(d) {
                eprintln!("divergence report: {json}");
            }
        }
        RunError::Promoted(why) => eprintln!("stopped: {why}"),
        other => eprintln!("error: {other}"),
    }
    e.exit_code()
}

/// `verify-backup`: 0 when sound, 6 when damaged, 2 when the directory cannot be verified at all.
async fn verify_backup(
    dir: Option<std::path::PathBuf>,
    index: Option<std::path::PathBuf>,
    repo: Option<std::path::PathBuf>,
    level: layout::verify::Level,
    json: bool,
) -> u8 {
    let Some(dir) = dir else {
        eprintln!(
            "error: --repo {}: backup repositories are not available yet (they come with \
             `standby backup create`); verify a restored or copied directory with --dir DIR",
            repo.unwrap_or_default().display()
        );
        return exit::USAGE;
    };
    let verified = tokio::task::spawn_blocking(move || {
        standby::backup::verify::verify_backup(&dir, index.as_deref(), level)
    })
    .await;
    let verified = match verified {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
        Err(e) => {
            eprintln!("error: the verification stopped: {e}");
            return exit::INTERNAL;
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&verified.to_json()).expect("a report serialises")
        );
    } else {
        print!("{verified}");
    }
    if verified.is_sound() {
        exit::OK
    } else {
        exit::DAMAGED
    }
}
