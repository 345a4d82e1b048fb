//! Trace helpers: what moved in an engine, what a link message is.

use hotpair_replicator::Msg;

use crate::lan;
use crate::node::LinkIn;

/// The counters that moved between two engine snapshots, for traces.
pub(super) fn stats_delta(
    a: &hotpair_stack::engine::EngineStats,
    b: &hotpair_stack::engine::EngineStats,
) -> String {
    let fields = [
        ("accepted", a.accepted, b.accepted),
        ("closed", a.closed, b.closed),
        ("active", a.active as u64, b.active as u64),
        (
            "time-wait recycled",
            a.time_wait_recycled,
            b.time_wait_recycled,
        ),
        ("duplicate SYN", a.duplicate_syn, b.duplicate_syn),
        ("forwarded", a.forwarded, b.forwarded),
        ("not forwarded", a.not_forwarded, b.not_forwarded),
        ("held", a.held, b.held),
        ("held dropped", a.held_dropped, b.held_dropped),
        ("passed through", a.passed_through, b.passed_through),
        ("promoted", a.promoted, b.promoted),
    ];
    fields
        .iter()
        .filter(|(_, x, y)| x != y)
        .map(|(n, x, y)| format!("{n} {x}->{y}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn link_desc(m: &LinkIn) -> String {
    match m {
        LinkIn::Connected => "connected".into(),
        LinkIn::Lost(why) => format!("lost ({why})"),
        LinkIn::Msg(_, Msg::Unit(u)) => u.to_string(),
        LinkIn::Msg(_, Msg::Frame { frame }) => format!("Frame {}", lan::describe(frame)),
        LinkIn::Msg(_, Msg::UnitAck { conn, seq }) => format!("UnitAck {conn} seq={seq}"),
        LinkIn::Msg(_, Msg::ConnGone { conn }) => format!("ConnGone {conn}"),
        LinkIn::Msg(_, m) => m.name().to_owned(),
        // Transports the simulation does not use.
        #[allow(unreachable_patterns)]
        _ => "other link news".into(),
    }
}
