//! `tenure`: run a command while leader, show a lock, or watch a demo.
//!
//! Exit codes: 0 success; the command's own code when it exits by itself
//! (128 + signal when a signal ended it); 1 a store or runtime error;
//! 2 bad input (arguments, URL, timing).

mod demo;
mod http;
mod logs;
mod output;
// tenure-conformance includes this file too and uses all of it.
#[allow(dead_code)]
mod procfs;
mod run;
mod shard;
mod status;
mod supervisor;
mod term;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Leader election on the store you already run (Kubernetes, etcd, Redis).
#[derive(Parser, Debug)]
#[command(name = "tenure", version, about)]
struct Cli {
    /// Log level for the election engine's tracing output on stderr
    /// (error, warn, info, debug, trace, or a tracing filter).
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    log: String,
    /// How tenure writes stderr: text, or one JSON object per line
    /// (timestamp, level, target, message, lock, identity and the
    /// event's fields).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    log_format: logs::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Campaign for a lock; run COMMAND while leader, stop it when leadership ends.
    Run(Box<run::RunArgs>),
    /// Share N shards fairly among the live replicas; run COMMAND once
    /// per owned shard, each stopped before its shard can move.
    Shard(Box<shard::ShardArgs>),
    /// Show who holds a lock.
    Status(status::StatusArgs),
    /// Three candidates in this process: election, crash fail-over, hand-off.
    Demo,
}

/// A failure with its exit code; the message is printed as one line.
#[derive(Debug)]
pub struct Failure {
    /// 1: store or runtime; 2: bad input.
    pub code: u8,
    /// What went wrong, without secrets.
    pub message: String,
}

impl Failure {
    /// Bad input (exit code 2).
    pub fn input(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// A store or runtime error (exit code 1).
    pub fn runtime(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

/// An error and its causes, each once, on one line.
pub fn said(e: &(dyn std::error::Error + 'static)) -> String {
    tenure::ErrorChain(e).to_string()
}

impl From<tenure::ConnectError> for Failure {
    fn from(e: tenure::ConnectError) -> Self {
        match &e {
            tenure::ConnectError::Store(s) if !s.is_bad_input() => Failure::runtime(said(&e)),
            _ => Failure::input(said(&e)),
        }
    }
}

impl From<tenure::StoreError> for Failure {
    fn from(e: tenure::StoreError) -> Self {
        if e.is_bad_input() {
            Failure::input(said(&e))
        } else {
            Failure::runtime(said(&e))
        }
    }
}

/// Parses "15s", "500ms", "1m 30s".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 15s, 500ms, 1m)"))
}

fn main() -> ExitCode {
    // The supervisor of one term (internal; see `supervisor.rs`): no
    // runtime, no logging, before anything else.
    let mut raw = std::env::args();
    if raw.nth(1).as_deref() == Some(supervisor::SUBCOMMAND) {
        return ExitCode::from(supervisor::main(raw.collect()));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // One line, like every other error (`--help` shows the usage).
            // clap's message up to its usage block, joined into one line.
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let message = message.join(" ");
            eprintln!(
                "tenure: error: {} (see --help)",
                message.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    logs::init(&cli.log, cli.log_format);
    // One thread is plenty: the election is a few requests a second, and the
    // command's deadline is the supervisor's, which needs no runtime.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tenure: error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(*args).await,
            Command::Shard(args) => shard::shard(*args).await,
            Command::Status(args) => status::status(args).await,
            Command::Demo => demo::demo().await,
        }
    });
    let code = match result {
        Ok(code) => code,
        Err(f) => {
            output::say_error(&f.message);
            f.code
        }
    };
    output::flush(std::time::Duration::from_secs(1));
    ExitCode::from(code)
}
