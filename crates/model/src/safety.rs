//! Never lock the operator out: which live sessions a ruleset would cut.
//!
//! An established SSH session survives a ruleset change (conntrack keeps it), but
//! the next login from the same place is a new connection. A ruleset "cuts" a
//! session when [`crate::evaluate`] would not accept a new connection from the
//! session's peer to the session's local address and port.

use crate::evaluate::{evaluate, ConnState, Decision, Packet, PacketProtocol, Verdict};
use crate::rule::Direction;
use crate::ruleset::Ruleset;
use serde::Serialize;
use std::net::SocketAddr;

/// A live inbound TCP session (e.g. SSH): the admin's side and ours.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Session {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The interface the session arrives on, when known.
    pub interface: Option<String>,
}

/// A session the ruleset would cut, and the verdict that cuts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cut {
    pub session: Session,
    pub verdict: Verdict,
}

/// The sessions of `sessions` whose next connection `ruleset` would not accept.
pub fn sessions_cut(ruleset: &Ruleset, sessions: &[Session]) -> Vec<Cut> {
    sessions
        .iter()
        .filter_map(|s| {
            let packet = Packet {
                direction: Direction::In,
                in_interface: s.interface.clone(),
                out_interface: None,
                protocol: PacketProtocol::Tcp,
                source: s.peer.ip(),
                destination: s.local.ip(),
                source_port: Some(s.peer.port()),
                destination_port: Some(s.local.port()),
                icmp_type: None,
                hop_limit: None,
                state: ConnState::New,
            };
            let verdict = evaluate(ruleset, &packet);
            (verdict.decision != Decision::Accept).then(|| Cut {
                session: s.clone(),
                verdict,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_rule, Services};

    #[test]
    fn a_deny_on_the_ssh_port_cuts_the_session_and_an_allow_from_its_peer_does_not() {
        let s = Session {
            peer: "198.51.100.20:51514".parse().unwrap(),
            local: "198.51.100.10:22".parse().unwrap(),
            interface: None,
        };
        let mut rs = Ruleset::default();
        assert_eq!(
            sessions_cut(&rs, std::slice::from_ref(&s)).len(),
            1,
            "default deny incoming cuts it"
        );
        rs.add(
            parse_rule("allow 22/tcp from 198.51.100.0/24", &Services::builtin())
                .unwrap()
                .remove(0),
        );
        assert!(sessions_cut(&rs, std::slice::from_ref(&s)).is_empty());
        rs.insert(
            1,
            parse_rule("deny from 198.51.100.20", &Services::builtin())
                .unwrap()
                .remove(0),
        )
        .unwrap();
        let cuts = sessions_cut(&rs, &[s]);
        assert_eq!(cuts[0].verdict.by, crate::DecidedBy::Rule { number: 1 });
    }
}
