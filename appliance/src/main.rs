//! `hotpair` — the appliance binary: CLI, config, wiring of the stack thread to
//! the HTTP handlers, the namespace lab and the demo.

mod bench;
mod demo;
mod lab;
mod pair;

use hotpair::{config, node};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hotpair",
    version,
    about = "Client-transparent fault-tolerant HTTP appliance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (or validate its config with --check).
    Node(NodeArgs),
    /// A ready network-namespace lab: client, switch and nodes.
    Lab(lab::LabArgs),
    /// The failover demo: a duplex lab (or --mode dual-role: one download per
    /// address), a 50 MB download, a node SIGKILLed mid-way; the client
    /// finishes with the right SHA-256 (shows the stall).
    Demo(demo::DemoArgs),
    /// Ask a running node for its status: each address's role, peer health
    /// and link round trip, connections, log sizes, takeovers and fencing.
    Status(StatusArgs),
    /// The paper's evaluation (Figures 2–6) on this machine, side by side with nginx.
    Bench(bench::BenchArgs),
    /// Write matched node configs (roles, MACs, link endpoints, fresh link
    /// keys) for a duplex pair, a dual-role pair or a ring.
    Pair(pair::PairArgs),
}

#[derive(clap::Args)]
struct NodeArgs {
    /// Node configuration file (TOML).
    #[arg(long)]
    config: std::path::PathBuf,
    /// Only validate the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Write every frame the node sees to this pcap file.
    #[arg(long)]
    pcap: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct StatusArgs {
    /// Print the status as JSON (a stable document: docs/operations.md).
    #[arg(long)]
    json: bool,
    /// The node's admin socket.
    #[arg(long, conflicts_with = "config")]
    socket: Option<std::path::PathBuf>,
    /// The node's config file: its `[admin] socket` (or the default).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

fn status(args: StatusArgs) -> Result<()> {
    use anyhow::Context;
    let path = hotpair::admin::socket_path(args.socket, args.config.as_deref())?;
    let st = hotpair::admin::query(&path)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&st).context("encoding the status")?
        );
    } else {
        print!("{}", hotpair::admin::render(&st));
    }
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: node logs usually go to files.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Node(args) => {
            let cfg = config::Config::load(&args.config)?;
            if args.check {
                println!("{}: ok", args.config.display());
                return Ok(());
            }
            init_tracing();
            node::run(cfg, args.pcap)
        }
        Command::Lab(args) => lab::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Pair(args) => pair::run(args),
        Command::Status(args) => status(args),
    }
}
