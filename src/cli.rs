//! The command line: `run`, `verify`, `status`, `promote`, `switchover`, `divergence`,
//! `checkpoint recover`, `verify-backup`, `demo`, `bench`.
//!
//! Every command exits with one of the codes of [`standby::exit`]; errors are printed once, on
//! stderr, saying what happened and what to do.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Keeps a warm standby Event Store cluster in step with a primary, and promotes it only on an
/// operator's command.
#[derive(Debug, Parser)]
#[command(name = "standby", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true, env = "STANDBY_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug`, `standby=debug` (RUST_LOG syntax).
    #[arg(long, default_value = "info", global = true, env = "STANDBY_LOG")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The configuration file (see config/standby.toml).
    #[arg(long, short = 'c', env = "STANDBY_CONFIG")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a shell completion script for `standby` (e.g. `standby completions bash >
    /// /etc/bash_completion.d/standby`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `standby man > /usr/local/share/man/man1/standby.1`.
    Man,
    /// Replicate the primary's $all into the secondary until stopped (SIGINT/SIGTERM).
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Take the secondary over from whatever standby process last worked on it: take the
        /// lease at once instead of waiting for it to expire, and fence the secondary for
        /// replication again when a promotion that stopped before its epoch left it closed. Only
        /// when you know the replicator holding the lease, or the promotion, is gone for good.
        #[arg(long)]
        takeover: bool,
    },
    /// Check both clusters and the local state before `run` (read-only): reachability, versions,
    /// security mode, the replication user, the admin identity, the secondary's state, the
    /// checkpoint and the lease. One line per check with what to do; exit 0 when `run` can
    /// start, 3 otherwise.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare the user streams of both clusters; exit 0 when equal, 4 at the first difference.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the checkpoint, the primary's head, the lag and the secondary's role.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make the secondary a primary now (the primary is lost): revoke the replication user, write
    /// the next epoch, open the secondary to applications, print the data-loss bound. Refuses
    /// without --force while the primary answers.
    Promote {
        #[command(flatten)]
        config: ConfigArg,
        /// Promote although the primary still answers or the lag exceeds --max-lag.
        #[arg(long)]
        force: bool,
        /// Measure and print what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also make the old primary read-only for applications (when it answers).
        #[arg(long)]
        fence_primary: bool,
        /// Why, recorded in the epoch record.
        #[arg(long)]
        reason: Option<String>,
        /// Refuse when more events than this would be lost.
        #[arg(long)]
        max_lag: Option<u64>,
        /// Promote a secondary that cannot be fenced (insecure, or accounts managed outside it):
        /// you have stopped every `standby run` against it. The report says it is unfenced.
        #[arg(long)]
        unfenced: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Planned, lossless handover: fence the primary's application writes, wait until the
    /// secondary holds everything, check the tail, then promote.
    Switchover {
        #[command(flatten)]
        config: ConfigArg,
        /// Give up (and remove the primary's fence) after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Why, recorded in the epoch record.
        #[arg(long)]
        reason: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export the old primary's events after the last replicated position (the orphaned tail)
    /// as JSON lines, for manual reconciliation.
    Divergence {
        #[command(flatten)]
        config: ConfigArg,
        /// The output file (written completely, then renamed into place).
        #[arg(long)]
        out: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a node's database directory, or a copy of it, offline: names, sizes, headers,
    /// footers and checkpoints (quick), every completed chunk's and PTable's MD5 and the indexmap
    /// hash (full), and what the server will do when it starts on it (deep). Exit 0 when sound,
    /// 6 when damaged or inconsistent; each finding names the file and what to do.
    VerifyBackup {
        /// The database directory (the server's --db, or a copy of it).
        #[arg(long, required_unless_present = "repo", conflicts_with = "repo")]
        dir: Option<PathBuf>,
        /// The index directory when it is not DIR/index (the server's --index).
        #[arg(long, requires = "dir")]
        index: Option<PathBuf>,
        /// A backup repository (not available yet: repositories come with `standby backup`).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// The backup set in the repository (not available yet).
        #[arg(long, requires = "repo")]
        set: Option<String>,
        /// How much to check.
        #[arg(long, value_enum, default_value_t = VerifyLevel::Full)]
        level: VerifyLevel,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Checkpoint maintenance.
    Checkpoint {
        #[command(subcommand)]
        action: CheckpointAction,
    },
    /// Start a primary and a secondary dev node in this process, write a live mixed workload,
    /// replicate it, and verify the result.
    Demo {
        /// Events to write to the primary.
        #[arg(long, default_value_t = 20_000)]
        events: u64,
        /// Streams to spread them over.
        #[arg(long, default_value_t = 200)]
        streams: u64,
        /// Replication order.
        #[arg(long, value_enum, default_value_t = DemoOrdering::Global)]
        ordering: DemoOrdering,
    },
    /// Measure replication against the limits of the clusters: start dev nodes in this process,
    /// load the primary, then measure raw reads, raw appends, catch-up by `standby run` in each
    /// ordering, live lag, and the replicator's memory and CPU (see docs/benchmarks.md).
    Bench {
        /// Events to load into the primary and replicate.
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
        events: u64,
        /// Streams to interleave them over, in runs of 10.
        #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
        streams: u64,
        /// Approximate size of each event's JSON data, in bytes.
        #[arg(long, default_value_t = 100)]
        event_bytes: usize,
        /// Milliseconds the proxy in front of the secondary adds to each direction.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Rounds of the throughput measurements, interleaved; each figure is the median.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=99))]
        rounds: u32,
        /// The wire to measure: grpc, http (AtomPub), or both, one after the other in this run.
        #[arg(long, value_enum, default_value_t = BenchWire::Grpc)]
        wire: BenchWire,
        /// Print only the figures, as one JSON object per wire.
        #[arg(long)]
        json: bool,
    },
}

/// `standby bench --wire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchWire {
    /// gRPC.
    Grpc,
    /// AtomPub over HTTP.
    Http,
    /// gRPC, then AtomPub, with the same parameters.
    Both,
}

#[derive(Debug, Subcommand)]
pub enum CheckpointAction {
    /// Write the checkpoint copy kept on the secondary to the local checkpoint file, after the
    /// local file was lost. Never overwrites an existing file.
    Recover {
        #[command(flatten)]
        config: ConfigArg,
        /// Print what was recovered as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifyLevel {
    /// Names, sizes, headers, footers, checkpoints: 256 bytes per chunk.
    Quick,
    /// Quick, plus the MD5 of every completed chunk and PTable, the indexmap hash, Bloom filters.
    Full,
    /// Full, plus record framing and a prediction of the server's start on the directory.
    Deep,
}

impl From<VerifyLevel> for layout::verify::Level {
    fn from(l: VerifyLevel) -> Self {
        match l {
            VerifyLevel::Quick => Self::Quick,
            VerifyLevel::Full => Self::Full,
            VerifyLevel::Deep => Self::Deep,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoOrdering {
    Global,
    Stream,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_is_required_for_run() {
        assert!(Cli::try_parse_from(["standby", "run"]).is_err());
        let cli = Cli::try_parse_from(["standby", "run", "--config", "x.toml"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Run {
                takeover: false,
                ..
            }
        ));
        let cli = Cli::try_parse_from(["standby", "run", "-c", "x.toml", "--takeover"]).unwrap();
        assert!(matches!(cli.command, Command::Run { takeover: true, .. }));
    }

    #[test]
    fn verify_backup_needs_a_dir_or_a_repo_and_defaults_to_full() {
        assert!(Cli::try_parse_from(["standby", "verify-backup"]).is_err());
        assert!(
            Cli::try_parse_from(["standby", "verify-backup", "--dir", "a", "--repo", "b"]).is_err()
        );
        let cli = Cli::try_parse_from(["standby", "verify-backup", "--dir", "a"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::VerifyBackup {
                level: VerifyLevel::Full,
                json: false,
                ..
            }
        ));
    }

    #[test]
    fn bench_has_defaults_and_refuses_zero_events() {
        let cli = Cli::try_parse_from(["standby", "bench"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Bench {
                events: 100_000,
                streams: 1_000,
                event_bytes: 100,
                latency_ms: 0,
                rounds: 1,
                wire: BenchWire::Grpc,
                json: false
            }
        ));
        assert!(Cli::try_parse_from(["standby", "bench", "--events", "0"]).is_err());
    }
}
