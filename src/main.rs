//! The `jwtgate` binary: parse the command line, set up logging, load the
//! config and hand over to the library (DESIGN.md §2).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use jwtgate::commands;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's built-in options (`_RJEM_MALLOC_CONF` in the environment still
/// overrides them). Without a background thread, jemalloc returns freed pages
/// to the OS only while it is allocating, so a gateway that goes quiet after a
/// burst keeps the burst's memory; Redis ships jemalloc with the same thread.
/// Freed pages go back after one second instead of ten.
///
/// hyper reads every request from a client, and every response from an
/// upstream, into a fresh 8 KiB buffer, because the previous message's
/// headers still share the old one. An 8 KiB slab holds one buffer, so jemalloc's default
/// of 20 cached per size class ran dry and overflowed under load, and each
/// refill went to the arena for single-buffer slabs: about 5 % of the
/// instructions per request (BENCHMARKS.md). 64 slots absorb the churn. The
/// minimum applies to every small size (up to 14 KiB), so a thread may cache
/// a few MiB more at worst; RSS at 10 000 idle connections did not move.
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &u8 =
    &b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,tcache_nslots_small_min:64\0"[0];

#[derive(Parser)]
#[command(name = "jwtgate", version, about = "Reverse-proxy authentication gateway for JWT sessions")]
struct Cli {
    /// Config file (`demo` and `keygen` read none).
    #[arg(short = 'c', long = "config", global = true, default_value = "gateway.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (what a bare `jwtgate` does).
    Run,
    /// Validate the config and print the route table; exit 1 listing every error.
    Check,
    /// Show which route a request would match, its policy and canonical path.
    Explain {
        /// HTTP method, e.g. GET.
        method: String,
        /// An origin-form target (`/p?q`) or an absolute URL (its host is matched).
        url: String,
    },
    /// Mint or inspect tokens with the configured keys.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Write a new signing key.
    Keygen {
        /// ES256 | RS256 | EdDSA | HS256 (also ES384, RS384/512, PS*, HS384/512).
        #[arg(long)]
        alg: String,
        /// Directory to write into; without it the key is printed.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Gateway plus a built-in demo app, to see login, silent refresh and step-up.
    Demo {
        /// Where the demo listens (another free port on 127.0.0.1 if this one is in use).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Access-token lifetime, e.g. "20s" (short, so the silent refresh shows).
        #[arg(long, default_value = "20s")]
        access_ttl: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Mint a token with the configured signing key.
    Mint {
        #[arg(long)]
        sub: String,
        /// Mark the access token fresh (as a credential login would).
        #[arg(long)]
        fresh: bool,
        #[arg(long = "type", default_value = "access")]
        token_type: String,
        /// Extra claim `k=v`; v is JSON if it parses, else a string. Repeatable.
        #[arg(long = "claim")]
        claims: Vec<String>,
    },
    /// Decode and verify a token; exit 1 if it is invalid.
    Inspect { token: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => commands::run(&cli.config),
        Command::Check => commands::check(&cli.config),
        Command::Explain { method, url } => commands::explain(&cli.config, &method, &url),
        Command::Token { command: TokenCommand::Mint { sub, fresh, token_type, claims } } => {
            commands::mint(&cli.config, &sub, fresh, &token_type, &claims)
        }
        Command::Token { command: TokenCommand::Inspect { token } } => commands::inspect(&cli.config, &token),
        Command::Keygen { alg, out } => commands::keygen(&alg, out.as_deref()),
        Command::Demo { listen, access_ttl } => commands::demo(listen, &access_ttl),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Not `eprintln!`, which panics (exit 101) on a closed stderr.
            let _ = writeln!(std::io::stderr(), "jwtgate: {e}");
            ExitCode::FAILURE
        }
    }
}
