//! The `xiaoer` binary: parses the command line, loads settings and the knowledge base, and
//! hands over to a channel. Wiring only.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use xiaoer::channels::cli;
use xiaoer::config::Settings;
use xiaoer::engine::Engine;

#[derive(Parser)]
#[command(
    name = "xiaoer",
    version,
    about = "店小二 — a customer-service bot for online shops"
)]
struct Cli {
    /// Knowledge base folder (default: knowledge/, or `kb` in xiaoer.toml, or XIAOER_KB).
    #[arg(long, global = true)]
    kb: Option<PathBuf>,
    /// Settings file.
    #[arg(long, global = true, default_value = "xiaoer.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer one question, or with --json one question per stdin line.
    Ask {
        question: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Chat with the bot in the terminal.
    Chat,
    /// Score `a<TAB>b` question pairs from stdin, one score in [0,1] per line.
    Similarity,
    /// Run an evaluation set and print precision, coverage and handoff recall.
    Eval {
        file: PathBuf,
        /// Only the cases of this split (tune or heldout).
        #[arg(long)]
        split: Option<String>,
    },
    /// Knowledge-base tools.
    Kb {
        #[command(subcommand)]
        command: KbCommand,
    },
}

#[derive(Subcommand)]
enum KbCommand {
    /// Validate a knowledge base, then check its examples against the built matcher (examples
    /// another entry answers, repeats, near-copies); exit 1 listing every problem.
    Check {
        dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Compare two knowledge bases: entries edited, and the evaluation questions answered
    /// differently. Exits 1 only when either one is invalid.
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// Evaluation set to ask both.
        #[arg(long, default_value = "tests/data/eval.jsonl")]
        eval: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        // A reader that stopped reading (`xiaoer eval … | head`) is not an error.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    let mut settings = Settings::load(&cli.config)?;
    if let Some(kb) = cli.kb {
        settings.kb = kb;
    }
    let load =
        || Engine::load(&settings.kb, settings.thresholds).context("loading the knowledge base");
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    match cli.command {
        Command::Ask {
            question: Some(question),
            json: false,
        } => cli::ask_one(&load()?, &question),
        Command::Ask {
            question: None,
            json: true,
        } => cli::ask_json(&load()?, stdin.lock(), stdout.lock())?,
        Command::Ask { .. } => {
            anyhow::bail!("give a question, or --json to read questions from stdin")
        }
        Command::Chat => {
            let interactive = stdin.is_terminal();
            cli::chat(&load()?, stdin.lock(), stdout.lock(), interactive)?
        }
        Command::Similarity => cli::similarity(&load()?, stdin.lock(), stdout.lock())?,
        Command::Eval { file, split } => {
            cli::eval(&load()?, &file, split.as_deref(), stdout.lock())?;
        }
        Command::Kb {
            command: KbCommand::Check { dir, json },
        } => {
            let dir = dir.unwrap_or(settings.kb);
            if !cli::kb_check(&dir, settings.thresholds, json, stdout.lock())? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Kb {
            command: KbCommand::Diff { old, new, eval },
        } => {
            if !cli::kb_diff(&old, &new, &eval, settings.thresholds, stdout.lock())? {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
