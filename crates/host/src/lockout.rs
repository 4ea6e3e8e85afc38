//! Never lock the operator out.
//!
//! Before a change is applied, the live SSH sessions of this host (sshd's
//! established connections from the socket table, and the session this
//! command is typed in, from `SSH_CONNECTION`) are checked against the new
//! ruleset with [`model::safety::sessions_cut`]; a change that would cut one
//! is refused ([`HostError::LockedOut`], naming the session and the rule)
//! unless the caller skips the check (`--force`, or `--confirm`, which brings
//! its own safety net: [`crate::confirmation`]).

use crate::error::{HostError, Result};
use model::safety::{sessions_cut, Cut, Session};
use model::HostConfig;
use std::net::SocketAddr;

/// The SSH sessions connected to this host now.
///
/// One dump per address family lists the listening and the established TCP
/// sockets; sshd's ports are those of the listening sockets that a process
/// named `sshd` holds (read from the descriptors of those processes only),
/// port 22 when there is none. Without any established connection nothing
/// more is read. The check runs before every change, so it is kept cheap:
/// 2-3 ms on this VM (two walks of the kernel's TCP tables, in parallel)
/// where reading every process's sockets too took 7-9, and it runs while the
/// rules are parsed ([`read_sessions_ahead`]).
pub fn live_sessions() -> Result<Vec<Session>> {
    let sockets = inspect::tcp_listening_and_established().map_err(HostError::Sessions)?;
    let established: Vec<&inspect::Socket> = sockets
        .iter()
        .filter(|s| s.state == inspect::State::Established)
        .collect();
    let mut sessions = Vec::new();
    if !established.is_empty() {
        let sshd = inspect::sockets_held_by("sshd").map_err(HostError::Sessions)?;
        let mut ports: Vec<u16> = sockets
            .iter()
            .filter(|s| s.state == inspect::State::Listen && sshd.binary_search(&s.inode).is_ok())
            .map(|s| s.local.port())
            .collect();
        if ports.is_empty() {
            ports.push(22);
        }
        for s in established {
            if ports.contains(&s.local.port()) {
                sessions.push(Session {
                    peer: unmap(s.remote),
                    local: unmap(s.local),
                    interface: None,
                });
            }
        }
    }
    // SSH_CONNECTION="client_ip client_port server_ip server_port"
    if let Ok(v) = std::env::var("SSH_CONNECTION") {
        let f: Vec<&str> = v.split_whitespace().collect();
        if let [cip, cport, sip, sport] = f[..] {
            if let (Ok(peer), Ok(local)) = (
                format!("{cip}:{cport}")
                    .parse::<SocketAddr>()
                    .or_else(|_| format!("[{cip}]:{cport}").parse()),
                format!("{sip}:{sport}")
                    .parse::<SocketAddr>()
                    .or_else(|_| format!("[{sip}]:{sport}").parse()),
            ) {
                // Only when the session ends in this network namespace (not, say,
                // a shell that entered another namespace with `ip netns exec`).
                if std::net::UdpSocket::bind(SocketAddr::new(local.ip(), 0)).is_ok() {
                    sessions.push(Session {
                        peer,
                        local,
                        interface: None,
                    });
                }
            }
        }
    }
    sessions.sort_by_key(|s| (s.peer, s.local));
    sessions.dedup();
    Ok(sessions)
}

/// IPv4-mapped IPv6 addresses (a dual-stack sshd) as plain IPv4.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

/// The live sessions being read ahead ([`read_sessions_ahead`]).
static SESSIONS_AHEAD: std::sync::Mutex<Option<std::thread::JoinHandle<Result<Vec<Session>>>>> =
    std::sync::Mutex::new(None);

/// Starts reading the live SSH sessions on a thread of their own, for the
/// lockout check of the change about to be made: reading them (two walks of
/// the kernel's TCP tables) does not depend on the rules, so it overlaps
/// reading and parsing the rules file. A new thread starts in its creator's
/// network namespace. Nothing is started when the check will not run
/// (`checked` false: `--force` or `--confirm`).
pub fn read_sessions_ahead(checked: bool) {
    if !checked {
        return;
    }
    let mut ahead = SESSIONS_AHEAD.lock().unwrap_or_else(|p| p.into_inner());
    if ahead.is_none() {
        *ahead = std::thread::Builder::new()
            .name("ssh-sessions".into())
            .spawn(live_sessions)
            .ok();
    }
}

/// The sessions read ahead, or read now.
fn sessions() -> Result<Vec<Session>> {
    let ahead = SESSIONS_AHEAD
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match ahead {
        Some(thread) => thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        None => live_sessions(),
    }
}

/// Refuses `new` when it would cut a live session that `old` did not already
/// cut; `checked` false (`--force`, or `--confirm` with its own safety net)
/// skips the check.
pub fn check_lockout(checked: bool, old: &HostConfig, new: &HostConfig) -> Result<()> {
    if !checked || !new.enabled {
        return Ok(());
    }
    let sessions = sessions()?;
    let already: Vec<Cut> = if old.enabled {
        sessions_cut(&old.ruleset, &sessions)
    } else {
        vec![]
    };
    let cuts: Vec<Cut> = sessions_cut(&new.ruleset, &sessions)
        .into_iter()
        .filter(|c| !already.iter().any(|a| a.session == c.session))
        .collect();
    if cuts.is_empty() {
        return Ok(());
    }
    let mut msg = String::from("refusing: this change would lock you out.\n");
    for c in &cuts {
        let by = match c.verdict.by {
            model::DecidedBy::Rule { number } => {
                format!("rule {number} ({})", new.ruleset.rules[number - 1])
            }
            model::DecidedBy::Policy { direction } => format!(
                "the default policy '{} {}'",
                new.ruleset.defaults.get(direction).as_str(),
                direction.policy_name()
            ),
            model::DecidedBy::Builtin { builtin } => format!("the built-in {builtin:?}"),
        };
        msg.push_str(&format!(
            "  SSH session {} -> {}: a new connection would be {} by {by}\n",
            c.session.peer,
            c.session.local,
            match c.verdict.decision {
                model::Decision::Drop => "dropped",
                model::Decision::Reject => "rejected",
                model::Decision::Accept => "accepted",
            }
        ));
    }
    msg.push_str(&format!("Allow it first (e.g. 'portwall allow 22/tcp from {}'), or add --confirm 60 to apply with automatic rollback, or --force.", cuts[0].session.peer.ip()));
    Err(HostError::LockedOut(msg))
}
