//! The `xiaoer` binary: parses the command line, loads settings and the knowledge base, and
//! hands over to a channel. Wiring only.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use xiaoer::bot::Bot;
use xiaoer::channels::cli;
use xiaoer::channels::control;
use xiaoer::channels::http;
use xiaoer::channels::listener;
use xiaoer::channels::telegram::Telegram;
use xiaoer::config::Settings;
use xiaoer::engine::Engine;
use xiaoer::hours::ServiceHours;
use xiaoer::service::{LastGood, Service, SystemClock};
use xiaoer::storage::SqliteStore;

/// jemalloc, not the system allocator: with glibc malloc, resident memory climbed to ~430 MiB
/// over knowledge reloads (fragmentation across threads); with jemalloc it stays flat
/// (BENCHMARKS.md, "Reload").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Dialog flows folder (default: dialogs/, or `dialogs` in xiaoer.toml, or XIAOER_DIALOGS).
    #[arg(long, global = true)]
    dialogs: Option<PathBuf>,
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
    /// Chat with the bot in the terminal (flows included; nothing is stored).
    Chat,
    /// Run the bot: the HTTP chat API, with conversations stored in SQLite, and the Telegram
    /// bot when TELEGRAM_BOT_TOKEN is set.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free one).
        #[arg(long)]
        addr: Option<String>,
        /// Folder of the SQLite store, created if missing (default: data/).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Score `a<TAB>b` question pairs from stdin, one score in [0,1] per line.
    Similarity,
    /// Run an evaluation set and print precision, coverage and handoff recall.
    Eval {
        file: PathBuf,
        /// The split to run: tune, heldout (figures only, no misses) or all.
        #[arg(long, default_value = "tune", value_parser = ["tune", "heldout", "all"])]
        split: String,
    },
    /// Agents of the console.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Knowledge-base tools.
    Kb {
        #[command(subcommand)]
        command: KbCommand,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Add an agent and print its sign-in token once, alone on the last line.
    Add {
        name: String,
        /// Folder of the SQLite store (default: data/).
        #[arg(long)]
        data: Option<PathBuf>,
        /// `agent`, or `editor` (may also add examples to the knowledge base).
        #[arg(long, default_value = "agent")]
        role: String,
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
    // Without RUST_LOG: our own info lines (reloads, limits) and every warning.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,xiaoer=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
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
    if let Some(dialogs) = cli.dialogs {
        settings.dialogs = dialogs;
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
            let bot = load_bot(&settings)?;
            let hours = match bot.engine.knowledge_base().shop.service_hours() {
                Some(Ok(hours)) => hours,
                _ => ServiceHours::parse(&settings.hours)?,
            };
            cli::chat(&bot, &hours, stdin.lock(), stdout.lock(), interactive)?
        }
        Command::Agent {
            command: AgentCommand::Add { name, data, role },
        } => {
            let data = data.unwrap_or(settings.data);
            add_agent(&data, &name, &role)?;
        }
        Command::Serve { addr, data } => {
            settings.addr = addr.unwrap_or(settings.addr);
            settings.data = data.unwrap_or(settings.data);
            serve(settings)?;
        }
        Command::Similarity => cli::similarity(&load()?, stdin.lock(), stdout.lock())?,
        Command::Eval { file, split } => {
            cli::eval(&load()?, &file, &split, stdout.lock())?;
        }
        Command::Kb {
            command: KbCommand::Check { dir, json },
        } => {
            let dir = dir.unwrap_or(settings.kb);
            if !cli::kb_check(
                &dir,
                &settings.dialogs,
                settings.thresholds,
                json,
                stdout.lock(),
            )? {
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

fn load_bot(settings: &Settings) -> Result<Bot> {
    Bot::load(&settings.kb, &settings.dialogs, settings.thresholds)
        .context("loading the knowledge base and dialog flows")
}

/// `xiaoer serve`: loads everything, opens the store, listens, and runs the background work
/// (knowledge reload, reminders) until Ctrl-C or SIGTERM.
fn serve(settings: Settings) -> Result<()> {
    let limits = prepare_process(&settings);
    let store = SqliteStore::open_dir(&settings.data)
        .with_context(|| format!("opening the store in {}", settings.data.display()))?;
    let last_good = LastGood::in_data(&settings.data);
    let kept = last_good.root().display().to_string();
    let service = Service::start(
        Arc::new(store),
        Arc::new(SystemClock),
        settings.clone(),
        last_good,
    )
    .with_context(|| {
        format!("loading the knowledge base and dialog flows (and no last good version in {kept} to serve instead)")
    })?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let service = Arc::new(service);
        control::listen(&settings.data, service.clone())?;
        let tcp_listener = tokio::net::TcpListener::bind(&settings.addr)
            .await
            .with_context(|| format!("listening on {}", settings.addr))?;
        let address = tcp_listener.local_addr()?;
        println!(
            "xiaoer listening on http://{address} (knowledge {}, data {})",
            service.bot().version.hash,
            settings.data.display()
        );
        use std::io::Write as _;
        std::io::stdout().flush()?;
        let mut router = http::router(service.clone());
        if settings.telegram.token.is_some() {
            router = router.merge(start_telegram(service.clone(), &settings).await?);
        }
        tokio::spawn(service.clone().run_background());
        listener::serve(tcp_listener, router, limits, shutdown_signal()).await;
        Ok(())
    })
}

/// Lifts the open-file limit for connections, and makes a write past the file-size limit an
/// error the store reports instead of a signal that kills the process without a word.
fn prepare_process(settings: &Settings) -> listener::Limits {
    #[cfg(unix)]
    // SAFETY: ignoring a signal installs no handler; nothing else in the process uses SIGXFSZ.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let open_files = listener::raise_open_file_limit().unwrap_or_else(|error| {
        tracing::warn!(%error, "could not read the open-file limit; assuming 1024");
        1024
    });
    let limits = listener::Limits::new(&settings.connections, open_files);
    tracing::info!(
        open_files,
        max_connections = limits.max_connections,
        "connection limits"
    );
    limits
}

/// The Telegram bot (`TELEGRAM_BOT_TOKEN` is set): long polling, or the webhook route to serve.
async fn start_telegram(service: Arc<Service>, settings: &Settings) -> Result<axum::Router> {
    let telegram = Telegram::connect(service, &settings.telegram)
        .await
        .context("starting the Telegram bot")?;
    let username = telegram.username().to_string();
    let routes = if settings.telegram.webhook_url.is_some() {
        let routes = telegram.start_webhook().await?;
        println!("Telegram bot @{username}: webhook");
        routes
    } else {
        telegram.start_polling().await?;
        println!("Telegram bot @{username}: long polling");
        axum::Router::new()
    };
    use std::io::Write as _;
    std::io::stdout().flush()?;
    Ok(routes)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// `xiaoer agent add`: the token is printed once; the store keeps only its hash. Goes
/// through the server when one runs on `data` (it holds the store alone).
fn add_agent(data: &std::path::Path, name: &str, role: &str) -> Result<()> {
    let token = xiaoer::auth::new_token()?;
    control::add_agent(data, name, role, &xiaoer::auth::token_hash(&token))?;
    let name = name.trim();
    println!("added {role} {name}; sign in at /console with this token (shown only now):");
    println!("{token}");
    Ok(())
}
