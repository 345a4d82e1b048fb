//! The admin socket, the node's side: binding it, answering `status` and
//! `switchover`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::publish::StatusSource;
use hotpair_replicator::node::SiteState;

use super::{Status, MAX_REQUEST};

/// The answer to one request line.
pub fn answer(request: &[u8], status: &Status) -> Vec<u8> {
    let line = request.strip_suffix(b"\n").unwrap_or(request);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut out = match line {
        b"status" => serde_json::to_vec(status).unwrap_or_else(|e| {
            serde_json::to_vec(&serde_json::json!({"error": format!("encoding: {e}")}))
                .unwrap_or_default()
        }),
        _ => serde_json::to_vec(&serde_json::json!({
            "error": "unknown request: send \"status\\n\" or \"switchover\\n\""
        }))
        .unwrap_or_default(),
    };
    out.push(b'\n');
    out
}

/// The answer to a `switchover` request line (`None`: not one), and
/// whether the switchover goes ahead. Without `force`, every address must
/// be replicated with its peer up: otherwise a stop hands nothing over —
/// it just stops serving.
pub fn answer_switchover(request: &[u8], status: &Status) -> Option<(Vec<u8>, bool)> {
    let line = request.strip_suffix(b"\n").unwrap_or(request);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let force = match line {
        b"switchover" => false,
        b"switchover force" => true,
        _ => return None,
    };
    let not_ready: Vec<String> = status
        .addresses
        .iter()
        .filter_map(|a| {
            let replicated = a
                .state
                .parse::<SiteState>()
                .is_ok_and(SiteState::replicated);
            if !replicated {
                Some(format!("{} is {}", a.address, a.state))
            } else if a.connections.unreplicated > 0 {
                Some(format!(
                    "{} has {} connection(s) no peer shadows (opened before the peer rejoined)",
                    a.address, a.connections.unreplicated
                ))
            } else {
                None
            }
        })
        .collect();
    let go = force || not_ready.is_empty();
    let v = if go {
        serde_json::json!({
            "switchover": "started",
            "node": status.node,
            "forced": !not_ready.is_empty(),
        })
    } else {
        serde_json::json!({"error": format!(
            "not switching over: {} (no peer would take those connections; \
             `hotpair switchover --wait SECS` waits for them to end, --force stops anyway)",
            not_ready.join(", ")
        )})
    };
    let mut out = serde_json::to_vec(&v).unwrap_or_default();
    out.push(b'\n');
    Some((out, go))
}

/// What a granted `switchover` does (the node's planned stop).
pub type SwitchoverAction = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Bind the admin socket at `path`: its directory is made if missing, and
/// a stale socket (no node answering on it) is replaced. A live node on
/// the path is an error.
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the admin socket's directory {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "admin socket {}: another node is running there (set [admin] socket)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale admin socket {}", path.display()))?;
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("binding the admin socket {}", path.display()))?;
    // The mode `bind` gives comes from the umask (0755 under the usual
    // 022: anyone may connect, and `switchover` stops the node). Set it;
    // each connection's peer is checked as well (`serve`), which also
    // covers the moment between bind and chmod.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making the admin socket {} mode 0600", path.display()))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Who may use the admin socket: root and the node's own user (the
/// socket's mode says the same; this holds even if someone widens it).
pub(super) fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == 0 || peer_uid == own_uid
}

/// At most one warning about refused admin clients per this interval.
const ADMIN_REFUSED_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Serve the admin socket until the runtime stops.
pub async fn serve(
    listener: std::os::unix::net::UnixListener,
    status: StatusSource,
    switchover: Option<SwitchoverAction>,
) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin socket unusable");
            return;
        }
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own_uid = unsafe { libc::geteuid() };
    let mut refused_warned: Option<std::time::Instant> = None;
    let mut refused_since = 0u64;
    // SO_PEERCRED: the user of the process that connected.
    let admit = move |sock: &tokio::net::UnixStream| {
        let peer_uid = sock.peer_cred().map(|c| c.uid());
        if peer_uid
            .as_ref()
            .is_ok_and(|&uid| peer_allowed(uid, own_uid))
        {
            return Ok(());
        }
        let who = match &peer_uid {
            Ok(uid) => format!("uid {uid}"),
            Err(e) => format!("a peer whose credentials are unknown ({e})"),
        };
        refused_since += 1;
        if refused_warned.is_none_or(|t| t.elapsed() >= ADMIN_REFUSED_WARN_INTERVAL) {
            tracing::warn!(peer = %who, refused = refused_since, "admin socket: client refused (only root and the node's own user may use it)");
            refused_warned = Some(std::time::Instant::now());
            refused_since = 0;
        }
        Err(format!(
            "error: refused: {who} may not use this admin socket (only root and uid {own_uid})\n"
        )
        .into_bytes())
    };
    let respond = move |buf: Vec<u8>| {
        let mut status = status.clone();
        let switchover = switchover.clone();
        async move {
            let line = match buf.iter().position(|&b| b == b'\n') {
                Some(n) => &buf[..=n],
                None => &buf[..],
            };
            let snapshot = status.fresh().await;
            match (answer_switchover(line, &snapshot), &switchover) {
                (Some((out, go)), Some(act)) => {
                    if go {
                        tracing::info!(
                            "switchover asked on the admin socket: handing over and stopping"
                        );
                        act();
                    }
                    out
                }
                _ => answer(line, &snapshot),
            }
        }
    };
    let bounds = crate::one_shot::Bounds {
        slots: crate::admin::MAX_CLIENTS,
        read_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(2),
        max_request: MAX_REQUEST + 1,
    };
    crate::one_shot::serve(
        listener,
        "admin socket",
        bounds,
        admit,
        |r: &[u8]| r.contains(&b'\n'),
        respond,
    )
    .await;
}
