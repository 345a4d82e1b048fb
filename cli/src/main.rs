//! `hotpair` — the appliance binary: the CLI over the node (`hotpair`), the
//! namespace lab, demo and pair (`hotpair-lab`) and the bench
//! (`hotpair-bench`).

use hotpair::{config, node, outln};
use hotpair_bench as bench;
use hotpair_lab::{self as lab, demo, pair};

use std::process::ExitCode;

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
    /// and link round trip, connections, log sizes, takeovers and fencing
    /// (--check: one line and an exit code for a monitoring check).
    Status(StatusArgs),
    /// Hand every connection of a running node to its peers and stop it
    /// (the planned stop SIGTERM makes), e.g. before an upgrade; refused
    /// unless every address is replicated with its peer up (--force).
    Switchover(SwitchoverArgs),
    /// The paper's evaluation (Figures 2–6) on this machine, side by side with nginx.
    Bench(bench::BenchArgs),
    /// Write matched node configs (roles, MACs, link endpoints, fresh link
    /// keys) for a duplex pair, a dual-role pair or a ring.
    Pair(pair::PairArgs),
    /// HTTPS keys: `hotpair tls new-ticket-key PATH` writes a fresh
    /// session-ticket master key.
    Tls {
        #[command(subcommand)]
        command: TlsCommand,
    },
    /// Print a shell completion script, e.g.
    /// `hotpair completions bash > /etc/bash_completion.d/hotpair`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `hotpair man > hotpair.1; man ./hotpair.1`.
    Man,
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Write a fresh session-ticket master key (64 hex digits, mode 0600)
    /// to PATH, and say how to roll it in on both nodes. The key that seals
    /// tickets already rotates by itself (`[tls] ticket_rotation_secs`);
    /// this rotates the master it is derived from.
    NewTicketKey {
        /// Where to write it (refused if it exists, unless --force).
        path: std::path::PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

/// `hotpair tls new-ticket-key`: a fresh master, written before a byte of
/// it can be read by others (`write_private`), and the steps to roll it.
fn new_ticket_key(path: &std::path::Path, force: bool) -> Result<String> {
    // Any 32 random bytes: a fresh private key is one (as `hotpair pair`).
    let (key, _) = hotpair::secure::generate_keypair()?;
    hotpair::secure::write_private(path, &format!("{}\n", hotpair::secure::hex(&key)), force)?;
    Ok(format!(
        "wrote {p} (mode 0600): a new session-ticket master key.\n\
         To roll it in (both nodes must hold the same keys; copy {p} to the other node over a secure channel):\n\
         \x20 1. on each node, in [tls]: the file ticket_key_file names now becomes previous_ticket_key_file\n\
         \x20    (tickets sealed under it keep resuming), and ticket_key_file names this new key;\n\
         \x20 2. hotpair node --config FILE --check on each;\n\
         \x20 3. reload both (SIGHUP: systemctl reload hotpair) within a ticket lifetime ({h} h) of each other.\n\
         No connection is dropped: a reload changes new handshakes only.",
        p = path.display(),
        h = hotpair_tls::TICKET_LIFETIME_SECS / 3600
    ))
}

/// The completion script for `shell`.
fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "hotpair", &mut out);
    out
}

/// The man page: hotpair(1), with each subcommand's options.
fn man_page() -> Result<Vec<u8>> {
    use anyhow::Context;
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .context("rendering the man page")?;
    // clap_mangen renders one command; the subcommands' options follow as
    // sections of their own.
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("hotpair {}", sub.get_name());
        out.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
        let man = clap_mangen::Man::new(sub.clone());
        man.render_description_section(&mut out)
            .and_then(|_| man.render_options_section(&mut out))
            .with_context(|| format!("rendering {name}"))?;
    }
    Ok(out)
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
    /// Stop writing the --pcap file at this size (whole frames; one
    /// warning); the node runs on.
    #[arg(long, value_name = "BYTES", default_value_t = hotpair::node::PCAP_DEFAULT_MAX_BYTES, requires = "pcap")]
    pcap_max_bytes: u64,
    /// Log lines: `journald` prefixes each with its syslog priority
    /// (`<4>` for warn …) so journald ranks it; `auto` does so when stderr
    /// is the journal (`$JOURNAL_STREAM`).
    #[arg(long, value_enum, default_value = "auto")]
    log_format: hotpair::logging::LogFormat,
}

#[derive(clap::Args)]
struct StatusArgs {
    /// Print the status as JSON (a stable document: docs/operations.md).
    #[arg(long)]
    json: bool,
    /// One line and an exit code, for a monitoring or keepalived-style
    /// check: 0 every address replicated (or configured alone), 1 degraded
    /// (some address served alone after a takeover), 2 some address not
    /// served (starting, fenced, leaving, stalled) or no node answering.
    #[arg(long, conflicts_with = "json")]
    check: bool,
    /// The node's admin socket.
    #[arg(long, conflicts_with = "config")]
    socket: Option<std::path::PathBuf>,
    /// The node's config file: its `[admin] socket` (or the default).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct SwitchoverArgs {
    /// The node's admin socket.
    #[arg(long, conflicts_with = "config")]
    socket: Option<std::path::PathBuf>,
    /// The node's config file: its `[admin] socket` (or the default).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Stop even if some address has no peer to take it over, or holds
    /// connections no peer shadows (they are cut).
    #[arg(long, conflicts_with = "wait")]
    force: bool,
    /// Wait up to SECS for every address to be replicated and for the
    /// connections no peer shadows (opened before the peer rejoined) to
    /// end, then switch over.
    #[arg(long, value_name = "SECS")]
    wait: Option<u64>,
}

fn switchover(args: SwitchoverArgs) -> Result<()> {
    let path = hotpair::admin::socket_path(args.socket, args.config.as_deref())?;
    if let Some(secs) = args.wait {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let mut said = String::new();
        loop {
            let st = hotpair::admin::query(&path)?;
            let pending: Vec<String> = st
                .addresses
                .iter()
                .filter(|a| a.state != "replicated" || a.connections.unreplicated > 0)
                .map(|a| {
                    format!(
                        "{} {} ({} connection(s) no peer shadows)",
                        a.address, a.state, a.connections.unreplicated
                    )
                })
                .collect();
            if pending.is_empty() {
                break;
            }
            let now = pending.join(", ");
            if now != said {
                eprintln!("waiting: {now}");
                said = now;
            }
            if std::time::Instant::now() >= deadline {
                anyhow::bail!("not switched over: still {said} after {secs} s");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    let node = hotpair::admin::switchover(&path, args.force)?;
    let start = std::time::Instant::now();
    // The node closes its admin socket when it has exited.
    while std::os::unix::net::UnixStream::connect(&path).is_ok() {
        if start.elapsed() > std::time::Duration::from_secs(15) {
            anyhow::bail!("node {node} accepted the switchover but still runs after 15 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    outln!(
        "node {node}: connections handed over, stopped ({} ms)",
        start.elapsed().as_millis()
    )
}

fn status(args: StatusArgs) -> Result<ExitCode> {
    use anyhow::Context;
    if args.check {
        return status_check(args);
    }
    let path = hotpair::admin::socket_path(args.socket, args.config.as_deref())?;
    let st = hotpair::admin::query(&path)?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&st).context("encoding the status")?
        )?;
    } else {
        hotpair::out!("{}", hotpair::admin::render(&st))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `hotpair status --check`: every failure to ask is a verdict too (2,
/// the node is not there to serve), never an error of the tool itself.
fn status_check(args: StatusArgs) -> Result<ExitCode> {
    use hotpair::health::{check, Check};
    let (verdict, why) = match hotpair::admin::socket_path(args.socket, args.config.as_deref()) {
        Err(e) => (Check::Down, format!("no admin socket to ask: {e:#}")),
        Ok(path) => match hotpair::admin::query(&path) {
            Ok(st) => {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let (v, why) = check(&st, now_ms);
                (v, format!("node {}: {why}", st.node))
            }
            Err(e) => (Check::Down, format!("unreachable: {e:#}")),
        },
    };
    outln!("{}: {why}", verdict.name())?;
    Ok(ExitCode::from(verdict.code()))
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Node(args) => {
            let cfg = config::Config::load(&args.config)?;
            if args.check {
                for w in &cfg.warnings {
                    eprintln!("warning: {w}");
                }
                // The file is well formed; does it fit this machine?
                let host = cfg.check_host();
                for w in &host.warnings {
                    eprintln!("warning: {w}");
                }
                for e in &host.errors {
                    eprintln!("error: {e}");
                }
                if !host.errors.is_empty() {
                    outln!(
                        "{}: does not fit this machine ({} error(s) above)",
                        args.config.display(),
                        host.errors.len()
                    )?;
                    return Ok(ExitCode::from(1));
                }
                outln!("{}: ok", args.config.display())?;
                return Ok(ExitCode::SUCCESS);
            }
            hotpair::logging::init(args.log_format);
            for w in &cfg.warnings {
                tracing::warn!("{w}");
            }
            // Absolute: SIGHUP reads this same file again.
            let config = std::fs::canonicalize(&args.config).unwrap_or(args.config.clone());
            node::run(cfg, Some(config), args.pcap, args.pcap_max_bytes)
        }
        Command::Lab(args) => lab::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Pair(args) => pair::run(args),
        Command::Status(args) => return status(args),
        Command::Tls {
            command: TlsCommand::NewTicketKey { path, force },
        } => new_ticket_key(&path, force).and_then(|said| outln!("{said}")),
        Command::Switchover(args) => switchover(args),
        // Both are text (UTF-8), written through `out!` so that `| head`
        // does not panic.
        Command::Completions { shell } => {
            hotpair::out!("{}", String::from_utf8_lossy(&completions(shell)))
        }
        Command::Man => hotpair::out!("{}", String::from_utf8_lossy(&man_page()?)),
    }?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ticket_key_writes_a_private_fresh_key_the_config_reads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("hotpair-cli-ticket-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.key"), dir.join("b.key"));
        let said = new_ticket_key(&a, false).unwrap();
        assert!(
            said.contains("previous_ticket_key_file") && said.contains("SIGHUP"),
            "{said}"
        );
        new_ticket_key(&b, false).unwrap();
        let read = |p: &std::path::Path| {
            let meta = std::fs::metadata(p).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", p.display());
            hotpair::secure::parse_key(&std::fs::read_to_string(p).unwrap()).unwrap()
        };
        assert_ne!(read(&a), read(&b), "two keys, the same bytes");
        // An existing key is not overwritten by mistake.
        let before = std::fs::read(&a).unwrap();
        let e = new_ticket_key(&a, false).unwrap_err();
        assert!(format!("{e:#}").contains("--force"), "{e:#}");
        assert_eq!(std::fs::read(&a).unwrap(), before);
        new_ticket_key(&a, true).unwrap();
        assert_ne!(std::fs::read(&a).unwrap(), before);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn completions_know_every_subcommand() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let text = String::from_utf8(completions(shell)).unwrap();
            for sub in ["node", "status", "switchover", "pair", "lab", "man", "tls"] {
                assert!(text.contains(sub), "{shell}: no {sub}");
            }
            assert!(text.contains("pcap-max-bytes"), "{shell}");
        }
    }

    #[test]
    fn the_man_page_has_every_subcommand_and_its_options() {
        let text = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(text.contains(".TH hotpair 1"), "{text}");
        for sub in ["NODE", "STATUS", "SWITCHOVER", "PAIR", "LAB", "COMPLETIONS"] {
            assert!(
                text.contains(&format!(".SH \"HOTPAIR {sub}\"")),
                "no {sub} section"
            );
        }
        assert!(text.contains("log\\-format"), "no --log-format");
    }
}
