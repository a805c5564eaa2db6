//! `dialtone`: the binary. Glue only: read the configuration, open the store, make sure the main
//! account exists, start the node, wait for a signal.

mod bench_numbers;
mod config;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use rand::Rng;

#[derive(Parser)]
#[command(name = "dialtone", version, about = "Self-hosted programmable voice, Twilio-compatible")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (SIP, RTP, REST API) until interrupted.
    Serve {
        /// A TOML file of settings; `DIALTONE_*` environment variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Benchmark of the routing index (bench/numbers.sh): fill a database with numbers, or load
    /// them as a start does and time lookups.
    #[command(hide = true)]
    BenchNumbers {
        /// sqlite://... or postgres://...
        #[arg(long)]
        database: String,
        /// Add this many numbers first.
        #[arg(long)]
        fill: Option<u64>,
        /// The account the numbers belong to (created if missing).
        #[arg(long, default_value = "AC0123456789abcdef0123456789abcdef")]
        account: String,
        /// Load the index and time this many lookups.
        #[arg(long)]
        measure: Option<u64>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let raw = match &config {
                Some(path) => config::RawConfig::from_file(path)?,
                None => config::RawConfig::default(),
            };
            let config = raw.overlay_env(|k| std::env::var(k).ok()).validate()?;
            init_logging(&config);
            // Work woken from outside the runtime's threads (the SQLite worker's answers, which
            // the SMS journal and every store call wait for) enters the global queue, which a
            // busy worker only looks at every `global_queue_interval` tasks (31 by default):
            // under thousands of HTTP requests a second each statement then waited for dozens
            // of requests. Looking every 4th task keeps the store's round trips short.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .global_queue_interval(4)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(serve(config))
        }
        Command::BenchNumbers { database, fill, account, measure } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let account: model::AccountSid = account.parse().context("--account")?;
            runtime.block_on(async {
                if let Some(count) = fill {
                    bench_numbers::fill(&database, &account, count).await?;
                }
                if let Some(lookups) = measure {
                    bench_numbers::measure(&database, lookups).await?;
                }
                anyhow::Ok(())
            })
        }
    }
}

fn init_logging(config: &config::Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match config.log_format {
        config::LogFormat::Json => builder.json().init(),
        config::LogFormat::Text => builder.init(),
    }
}

async fn serve(config: config::Config) -> Result<()> {
    std::fs::create_dir_all(&config.node.data_dir)
        .with_context(|| format!("creating the data dir {}", config.node.data_dir.display()))?;
    std::fs::create_dir_all(&config.node.recordings_dir)
        .with_context(|| format!("creating {}", config.node.recordings_dir.display()))?;
    // Seals the API key secrets in the database, so access tokens can be verified.
    let server_key = store::SealingKey::load_or_create(&config.node.data_dir.join("server.key"))
        .context("loading the server key")?;
    let store = store::Store::open(&config.database_url)
        .await
        .with_context(|| format!("opening the database {}", config.database_url))?
        .with_sealing_key(server_key);
    ensure_main_account(&store, &config).await?;
    let node = node::Node::start(config.node.clone(), store).await?;
    println!("dialtone listening: SIP {} (UDP+TCP), HTTP {}", node.sip_addr, node.http_addr);
    shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(())
}

/// The main account: the one given in the environment, or on a first start a generated one,
/// printed once.
async fn ensure_main_account(store: &store::Store, config: &config::Config) -> Result<()> {
    if let (Some(sid), Some(token)) = (&config.account_sid, &config.auth_token) {
        store.ensure_account(sid, token, "Main account").await.context("creating the main account")?;
        return Ok(());
    }
    if store.account_count().await.context("counting accounts")? > 0 {
        return Ok(());
    }
    let sid = model::AccountSid::generate();
    let token: String = {
        let mut rng = rand::thread_rng();
        (0..32).map(|_| char::from(b"0123456789abcdef"[rng.gen_range(0..16)])).collect()
    };
    store.ensure_account(&sid, &token, "Main account").await.context("creating the main account")?;
    println!("Created the main account (shown once; keep it):");
    println!("  DIALTONE_ACCOUNT_SID={sid}");
    println!("  DIALTONE_AUTH_TOKEN={token}");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
