//! UFW's rules → portwall rules.
//!
//! Two sources:
//!
//! - **`/etc/ufw/user.rules` and `user6.rules`** ([`from_files`],
//!   [`from_user_rules`]): UFW writes each rule it manages as a comment line
//!   `### tuple ### ACTION PROTO DPORT DST SPORT SRC [DAPP SAPP] DIRECTION`
//!   (`comment=HEX` last) before the iptables lines it generates from it. The
//!   tuple is UFW's own record of the rule, so it is what is read; the iptables
//!   lines are derived from it. The default policies are not in these files but in
//!   `/etc/default/ufw`, and the log level in `/etc/ufw/ufw.conf`.
//! - **`ufw status` / `ufw status verbose` / `ufw status numbered` output**
//!   ([`from_status`]), defaults and logging included when verbose.
//!
//! UFW's rules are a subset of portwall's, with three differences, each
//! reported as a note where it applies: `limit` in UFW counts the last 30 s
//! exactly, portwall with a token bucket (both refuse the 6th connection of a
//! burst); `log-all` logs every packet (in
//! portwall a rule logs the new connections it decides); and UFW's fixed
//! `before.rules` also accept some ICMP, DHCP, mDNS and UPnP traffic, which are
//! not user rules and so are not imported.

use crate::{
    assemble, numbered, parse_net, parse_ports, Collected, FamRule, Family, Import, Note, NoteKind,
    Origin, Untranslated,
};
use model::{Action, Addresses, Direction, Logging, Policy, Ports, Protocol, Rule};

/// The UFW files to import; any may be absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Files<'a> {
    /// `/etc/ufw/user.rules` (name, text).
    pub user_rules: Option<(&'a str, &'a str)>,
    /// `/etc/ufw/user6.rules` (name, text).
    pub user6_rules: Option<(&'a str, &'a str)>,
    /// `/etc/default/ufw` (name, text): the default policies.
    pub default_file: Option<(&'a str, &'a str)>,
    /// `/etc/ufw/ufw.conf` (name, text): the log level.
    pub ufw_conf: Option<(&'a str, &'a str)>,
}

/// Imports one `user.rules` or `user6.rules` text (both may be concatenated);
/// the default policies are assumed to be UFW's (deny incoming, allow
/// outgoing, deny routed), and noted so.
pub fn from_user_rules(text: &str) -> Import {
    from_files(&Files {
        user_rules: Some(("user.rules", text)),
        ..Default::default()
    })
}

const BEFORE_RULES_NOTE: &str = "UFW's fixed before.rules also accept ICMP (echo request, destination unreachable, time exceeded, parameter problem), DHCP replies, mDNS and UPnP multicast, and drop packets not addressed to this host; they are not user rules and are not imported (add e.g. 'allow proto icmp' to keep answering ping)";

/// Imports UFW's files.
pub fn from_files(files: &Files) -> Import {
    let mut c = Collected::default();
    let mut limits: Vec<(String, usize)> = Vec::new();
    let mut log_alls: Vec<(String, usize)> = Vec::new();
    for (name, text) in [files.user_rules, files.user6_rules].into_iter().flatten() {
        for (n, line) in numbered(text) {
            let Some(tuple) = line.trim().strip_prefix("### tuple ###") else {
                continue;
            };
            match tuple_rule(tuple) {
                Ok((family, rule, limit, log_all)) => {
                    if limit {
                        limits.push((name.to_string(), n));
                    }
                    if log_all {
                        log_alls.push((name.to_string(), n));
                    }
                    c.rules.push(FamRule {
                        family,
                        rule,
                        origin: Origin {
                            source: name.to_string(),
                            line_no: n,
                        },
                    });
                }
                Err(reason) => c.untranslated.push(Untranslated {
                    source: name.to_string(),
                    line_no: n,
                    text: line.trim().to_string(),
                    reason,
                }),
            }
        }
    }
    let first = files
        .user_rules
        .or(files.user6_rules)
        .map(|f| f.0.to_string())
        .unwrap_or_else(|| "user.rules".into());
    note_per_source(&mut c, limits, NoteKind::Differs, "UFW's limit refuses the 6th new connection from a source within the last 30 s, counted exactly; portwall's refuses it too, counted with a token bucket (five at once, then one every 6 s): the two agree on bursts, not on every steady rate");
    note_per_source(&mut c, log_alls, NoteKind::Differs, "UFW's log-all logs every packet of the rule; portwall logs the new connections the rule decides");
    match files.default_file {
        Some((name, text)) => {
            for (n, line) in numbered(text) {
                let Some((key, value)) = line.trim().split_once('=') else {
                    continue;
                };
                let direction = match key.trim() {
                    "DEFAULT_INPUT_POLICY" => Direction::In,
                    "DEFAULT_OUTPUT_POLICY" => Direction::Out,
                    "DEFAULT_FORWARD_POLICY" => Direction::Routed,
                    _ => continue,
                };
                let v = value.trim().trim_matches('"');
                let policy = match v {
                    "ACCEPT" => Policy::Allow,
                    "DROP" => Policy::Deny,
                    "REJECT" => Policy::Reject,
                    other => {
                        c.untranslated.push(Untranslated {
                            source: name.to_string(),
                            line_no: n,
                            text: line.trim().to_string(),
                            reason: format!("policy {other} is not ACCEPT, DROP or REJECT"),
                        });
                        continue;
                    }
                };
                for family in [Family::V4, Family::V6] {
                    c.policies.insert(
                        (family, direction),
                        (
                            policy,
                            Origin {
                                source: name.to_string(),
                                line_no: n,
                            },
                        ),
                    );
                }
            }
        }
        None => c.notes.push(Note {
            kind: NoteKind::Assumed,
            source: first.clone(),
            lines: vec![],
            message: "the default policies are not in user.rules and /etc/default/ufw was not given: UFW's defaults assumed (deny incoming, allow outgoing, deny routed)".into(),
        }),
    }
    if let Some((name, text)) = files.ufw_conf {
        for (n, line) in numbered(text) {
            if let Some(level) = line.trim().strip_prefix("LOGLEVEL=") {
                set_logging(&mut c, name, n, level.trim());
            }
        }
    }
    c.notes.push(Note {
        kind: NoteKind::Differs,
        source: first,
        lines: vec![],
        message: BEFORE_RULES_NOTE.into(),
    });
    assemble(c)
}

fn note_per_source(c: &mut Collected, lines: Vec<(String, usize)>, kind: NoteKind, message: &str) {
    let mut sources: Vec<String> = lines.iter().map(|(s, _)| s.clone()).collect();
    sources.dedup();
    for s in sources {
        c.notes.push(Note {
            kind,
            source: s.clone(),
            lines: lines
                .iter()
                .filter(|(x, _)| *x == s)
                .map(|(_, n)| *n)
                .collect(),
            message: message.into(),
        });
    }
}

fn set_logging(c: &mut Collected, source: &str, line: usize, level: &str) {
    let (logging, differs) = match level {
        "off" => (Logging::Off, false),
        "low" | "on" => (Logging::On, false),
        "medium" | "high" | "full" => (Logging::Full, true),
        _ => return,
    };
    c.logging = Some(logging);
    if differs {
        c.notes.push(Note {
            kind: NoteKind::Differs,
            source: source.to_string(),
            lines: vec![line],
            message: format!("UFW log level {level} is imported as 'logging full' (blocked packets and new connections); UFW {level} also logs other packets"),
        });
    }
}

/// One tuple → (family, rule, is limit, is log-all).
fn tuple_rule(tuple: &str) -> Result<(Family, Rule, bool, bool), String> {
    let (fields, comment) = match tuple.split_once(" comment=") {
        Some((f, hex)) => (f, Some(hex_decode(hex.trim())?)),
        None => (tuple, None),
    };
    let t: Vec<&str> = fields.split_whitespace().collect();
    if t.len() != 7 && t.len() != 9 {
        return Err(format!(
            "a UFW tuple has 7 or 9 fields, this one {}",
            t.len()
        ));
    }
    let (mut action_s, routed) = match t[0].strip_prefix("route:") {
        Some(a) => (a, true),
        None => (t[0], false),
    };
    let mut log = false;
    let mut log_all = false;
    if let Some((a, l)) = action_s.split_once('_') {
        action_s = a;
        match l {
            "log" => log = true,
            "log-all" => {
                log = true;
                log_all = true;
            }
            other => return Err(format!("log type '{other}' is not log or log-all")),
        }
    }
    let action = match action_s {
        "allow" => Action::Allow,
        "deny" => Action::Deny,
        "reject" => Action::Reject,
        "limit" => Action::Limit,
        other => {
            return Err(format!(
                "action '{other}' is not allow, deny, reject or limit"
            ))
        }
    };
    // UFW's user rules name the protocols `man ufw` lists here: tcp, udp,
    // esp, ah, gre, igmp, ipv6, or any.
    let protocol = match t[1].parse::<Protocol>() {
        Ok(p) if !matches!(p, Protocol::Icmp | Protocol::Icmpv6) => p,
        _ => {
            return Err(format!(
                "protocol {}: UFW's rules name tcp, udp, esp, ah, gre, igmp, ipv6 or any",
                t[1]
            ))
        }
    };
    let ports = |s: &str| -> Result<Ports, String> {
        if s == "any" {
            Ok(Ports::any())
        } else {
            parse_ports(s)
                .map(Ports)
                .ok_or_else(|| format!("'{s}' is not a port list"))
        }
    };
    let mut family = None;
    let mut addr = |s: &str| -> Result<Addresses, String> {
        let n = parse_net(s).ok_or_else(|| format!("'{s}' is not an address"))?;
        family = Some(Family::of(&n));
        Ok(if n.prefix_len() == 0 {
            Addresses::any()
        } else {
            Addresses(vec![n])
        })
    };
    let destination_ports = ports(t[2])?;
    let destination = addr(t[3])?;
    let source_ports = ports(t[4])?;
    let source = addr(t[5])?;
    let family = family.ok_or("no address")?;
    let (app, dir_field) = if t.len() == 9 {
        let app = [t[6], t[7]]
            .iter()
            .filter(|a| **a != "-")
            .map(|a| a.replace("%20", " "))
            .collect::<Vec<_>>()
            .join(", ");
        (Some(app), t[8])
    } else {
        (None, t[6])
    };
    let direction_word = dir_field.split('_').next().unwrap_or_default();
    let mut in_interface = None;
    let mut out_interface = None;
    if let Some((a, b)) = dir_field.split_once('!') {
        in_interface = a.strip_prefix("in_").map(str::to_string);
        out_interface = b.strip_prefix("out_").map(str::to_string);
    } else if let Some(i) = dir_field.strip_prefix("in_") {
        in_interface = Some(i.to_string());
    } else if let Some(i) = dir_field.strip_prefix("out_") {
        out_interface = Some(i.to_string());
    } else if !matches!(dir_field, "in" | "out") {
        return Err(format!(
            "direction '{dir_field}' is not in, out, in_IFACE, out_IFACE or in_IFACE!out_IFACE"
        ));
    }
    let direction = if routed {
        Direction::Routed
    } else if direction_word == "out" {
        Direction::Out
    } else {
        Direction::In
    };
    let mut rule = Rule::new(action, direction);
    rule.protocol = protocol;
    rule.in_interface = in_interface;
    rule.out_interface = out_interface;
    rule.source = source;
    rule.destination = destination;
    rule.source_ports = source_ports;
    rule.destination_ports = destination_ports;
    rule.log = log;
    rule.comment = comment
        .or(app)
        .map(|c| c.chars().filter(|ch| !ch.is_control()).collect::<String>())
        .map(|c| {
            if c.contains('\'') && c.contains('"') {
                c.replace('"', "'")
            } else {
                c
            }
        })
        .filter(|c| !c.is_empty());
    rule.validate()
        .map_err(|e| format!("not a valid portwall rule: {e}"))?;
    Ok((family, rule, action == Action::Limit, log_all))
}

fn hex_decode(hex: &str) -> Result<String, String> {
    if !hex.len().is_multiple_of(2) {
        return Err(format!("comment '{hex}' is not hex"));
    }
    let bytes: Result<Vec<u8>, _> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect();
    let bytes = bytes.map_err(|_| format!("comment '{hex}' is not hex"))?;
    String::from_utf8(bytes).map_err(|_| format!("comment '{hex}' is not UTF-8"))
}

/// Imports `ufw status`, `ufw status verbose` or `ufw status numbered` output.
pub fn from_status(text: &str) -> Import {
    const SOURCE: &str = "ufw status";
    let mut c = Collected::default();
    let mut in_table = false;
    let mut saw_defaults = false;
    let mut active = None;
    let mut limits = Vec::new();
    let mut log_alls = Vec::new();
    for (n, raw) in numbered(text) {
        let line = raw.trim_end();
        let trimmed = line.trim();
        if let Some(s) = trimmed.strip_prefix("Status:") {
            active = Some(s.trim() == "active");
            continue;
        }
        if let Some(l) = trimmed.strip_prefix("Logging:") {
            let l = l.trim();
            let level = match l.split_once('(') {
                Some((_, lvl)) => lvl.trim_end_matches(')').trim(),
                None => l,
            };
            set_logging(&mut c, SOURCE, n, level);
            continue;
        }
        if let Some(d) = trimmed.strip_prefix("Default:") {
            saw_defaults = true;
            for part in d.split(',') {
                let part = part.trim();
                let Some((policy, dir)) = part.split_once(' ') else {
                    continue;
                };
                let Ok(direction) = dir.trim().trim_matches(['(', ')']).parse::<Direction>() else {
                    continue;
                };
                let policy = match policy {
                    "allow" => Policy::Allow,
                    "deny" => Policy::Deny,
                    "reject" => Policy::Reject,
                    "disabled" => {
                        c.notes.push(Note {
                            kind: NoteKind::Assumed,
                            source: SOURCE.into(),
                            lines: vec![n],
                            message: "UFW does not filter routed traffic here (IP forwarding is off): imported as 'default deny routed'".into(),
                        });
                        Policy::Deny
                    }
                    _ => continue,
                };
                for family in [Family::V4, Family::V6] {
                    c.policies.insert(
                        (family, direction),
                        (
                            policy,
                            Origin {
                                source: SOURCE.into(),
                                line_no: n,
                            },
                        ),
                    );
                }
            }
            continue;
        }
        if trimmed.starts_with("To ") && trimmed.contains("Action") {
            in_table = true;
            continue;
        }
        if !in_table || trimmed.is_empty() || trimmed.starts_with("--") {
            continue;
        }
        match status_row(trimmed) {
            Ok((family, rule, log_all)) => {
                if rule.action == Action::Limit {
                    limits.push((SOURCE.to_string(), n));
                }
                if log_all {
                    log_alls.push((SOURCE.to_string(), n));
                }
                c.rules.push(FamRule {
                    family,
                    rule,
                    origin: Origin {
                        source: SOURCE.into(),
                        line_no: n,
                    },
                });
            }
            Err(reason) => c.untranslated.push(Untranslated {
                source: SOURCE.into(),
                line_no: n,
                text: trimmed.to_string(),
                reason,
            }),
        }
    }
    if active == Some(false) {
        c.notes.push(Note {
            kind: NoteKind::Info,
            source: SOURCE.into(),
            lines: vec![],
            message: "UFW is inactive: 'ufw status' lists no rules then; import /etc/ufw/user.rules instead".into(),
        });
    }
    if !saw_defaults {
        c.notes.push(Note {
            kind: NoteKind::Assumed,
            source: SOURCE.into(),
            lines: vec![],
            message: "plain 'ufw status' does not show the default policies: UFW's defaults assumed (deny incoming, allow outgoing, deny routed); 'ufw status verbose' shows them".into(),
        });
    }
    note_per_source(&mut c, limits, NoteKind::Differs, "UFW's limit refuses the 6th new connection from a source within the last 30 s, counted exactly; portwall's refuses it too, counted with a token bucket (five at once, then one every 6 s): the two agree on bursts, not on every steady rate");
    note_per_source(&mut c, log_alls, NoteKind::Differs, "UFW's log-all logs every packet of the rule; portwall logs the new connections the rule decides");
    c.notes.push(Note {
        kind: NoteKind::Differs,
        source: SOURCE.into(),
        lines: vec![],
        message: BEFORE_RULES_NOTE.into(),
    });
    assemble(c)
}

/// One side of a status row: `Anywhere`, `10.0.0.0/8`, `22/tcp`,
/// `10.0.0.2 80/tcp`, each maybe with `(v6)` and `on IFACE`.
#[derive(Debug, Default)]
struct Side {
    v6: bool,
    addr: Option<ipnet::IpNet>,
    ports: Option<(Ports, Option<Protocol>)>,
    iface: Option<String>,
    app: Option<String>,
}

fn parse_side(s: &str) -> Result<Side, String> {
    let mut side = Side::default();
    let mut text = s.to_string();
    if text.contains("(v6)") {
        side.v6 = true;
        text = text.replace("(v6)", "");
    }
    // `22/tcp (OpenSSH)`: the application name, in verbose output.
    if let Some(open) = text.find('(') {
        let app = text[open + 1..].replace(')', "");
        side.app = Some(app.trim().to_string());
        text.truncate(open);
    }
    let toks: Vec<&str> = text.split_whitespace().collect();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        if t == "on" {
            side.iface = Some(
                toks.get(i + 1)
                    .ok_or("'on' without an interface")?
                    .to_string(),
            );
            i += 2;
            continue;
        }
        if t == "Anywhere" {
        } else if let Some(n) = parse_net(t) {
            side.addr = (n.prefix_len() != 0).then_some(n);
            side.v6 |= matches!(n, ipnet::IpNet::V6(_));
        } else if let Some((p, proto)) = parse_port_spec(t) {
            side.ports = Some((p, proto));
        } else {
            return Err(format!(
                "'{}' looks like an application profile: its ports are in /etc/ufw/applications.d (import /etc/ufw/user.rules, or 'ufw status verbose', which shows them)",
                toks[i..].join(" ")
            ));
        }
        i += 1;
    }
    Ok(side)
}

fn parse_port_spec(t: &str) -> Option<(Ports, Option<Protocol>)> {
    let (ports, proto) = match t.split_once('/') {
        Some((p, name)) => match name.parse::<Protocol>() {
            Ok(proto @ (Protocol::Tcp | Protocol::Udp)) if name == proto.as_str() => {
                (p, Some(proto))
            }
            _ => return None,
        },
        None => (t, None),
    };
    if !ports
        .chars()
        .all(|c| c.is_ascii_digit() || c == ',' || c == ':')
    {
        return None;
    }
    parse_ports(ports).map(|p| (Ports(p), proto))
}

/// One row of the status table → (family, rule, is log-all).
fn status_row(row: &str) -> Result<(Family, Rule, bool), String> {
    let mut row = row;
    if row.starts_with('[') {
        row = row.split_once(']').map_or(row, |(_, r)| r.trim_start());
    }
    let (row, comment) = match row.split_once(" # ") {
        Some((r, c)) => (r, Some(c.trim().to_string())),
        None => (row, None),
    };
    let words: Vec<&str> = row.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| matches!(*w, "ALLOW" | "DENY" | "REJECT" | "LIMIT"))
        .ok_or("no ALLOW, DENY, REJECT or LIMIT in the row")?;
    let action = match words[at] {
        "ALLOW" => Action::Allow,
        "DENY" => Action::Deny,
        "REJECT" => Action::Reject,
        _ => Action::Limit,
    };
    let mut next = at + 1;
    let direction = match words.get(next) {
        Some(&"IN") => {
            next += 1;
            Direction::In
        }
        Some(&"OUT") => {
            next += 1;
            Direction::Out
        }
        Some(&"FWD") => {
            next += 1;
            Direction::Routed
        }
        _ => Direction::In,
    };
    let mut from_words: Vec<&str> = words[next..].to_vec();
    let (mut log, mut log_all) = (false, false);
    from_words.retain(|w| match *w {
        "(log)" => {
            log = true;
            false
        }
        "(log-all)" => {
            log = true;
            log_all = true;
            false
        }
        "(out)" => false,
        _ => true,
    });
    let to = parse_side(&words[..at].join(" "))?;
    let from = parse_side(&from_words.join(" "))?;
    let family = if to.v6 || from.v6 {
        Family::V6
    } else {
        Family::V4
    };
    let mut rule = Rule::new(action, direction);
    rule.log = log;
    rule.destination = Addresses(to.addr.into_iter().collect());
    rule.source = Addresses(from.addr.into_iter().collect());
    let mut proto = None;
    if let Some((p, pr)) = to.ports {
        rule.destination_ports = p;
        proto = pr;
    }
    if let Some((p, pr)) = from.ports {
        rule.source_ports = p;
        proto = proto.or(pr);
    }
    rule.protocol = proto.unwrap_or(Protocol::Any);
    match direction {
        Direction::In => rule.in_interface = to.iface,
        Direction::Out => rule.out_interface = to.iface,
        Direction::Routed => {
            rule.out_interface = to.iface;
            rule.in_interface = from.iface;
        }
    }
    rule.comment = comment.or(to.app).filter(|c| !c.is_empty());
    rule.validate()
        .map_err(|e| format!("not a valid portwall rule: {e}"))?;
    Ok((family, rule, log_all))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(i: &Import) -> Vec<String> {
        i.ruleset.rules.iter().map(ToString::to_string).collect()
    }

    // As written by ufw 0.36.2 (see the equivalence test for the real run).
    const USER_RULES: &str = "*filter\n:ufw-user-input - [0:0]\n### RULES ###\n\n### tuple ### limit tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 22 -m conntrack --ctstate NEW -m recent --set\n\n### tuple ### deny any any 0.0.0.0/0 any 198.51.100.7 in\n-A ufw-user-input -s 198.51.100.7 -j DROP\n\n### tuple ### allow tcp 8080 0.0.0.0/0 any 0.0.0.0/0 in_eth0 comment=77656220616c74\n\n### tuple ### route:allow tcp 80 10.0.0.2 any 0.0.0.0/0 in_eth0!out_eth1\n\n### tuple ### allow_log tcp 8443 0.0.0.0/0 any 0.0.0.0/0 in\n\n### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 OpenSSH - in\n\n### tuple ### allow gre any 0.0.0.0/0 any 0.0.0.0/0 in\n\n### tuple ### allow sctp any 0.0.0.0/0 any 0.0.0.0/0 in\n\n### tuple ### allow udp 53 0.0.0.0/0 any 0.0.0.0/0 out\n### END RULES ###\n";
    const USER6_RULES: &str = "### tuple ### limit tcp 22 ::/0 any ::/0 in\n### tuple ### allow tcp 8080 ::/0 any ::/0 in_eth0 comment=77656220616c74\n### tuple ### allow udp 53 ::/0 any ::/0 out\n";

    #[test]
    fn tuples_become_rules() {
        let i = from_files(&Files {
            user_rules: Some(("user.rules", USER_RULES)),
            user6_rules: Some(("user6.rules", USER6_RULES)),
            default_file: Some((
                "ufw",
                "DEFAULT_INPUT_POLICY=\"REJECT\"\nDEFAULT_OUTPUT_POLICY=\"ACCEPT\"\n",
            )),
            ufw_conf: Some(("ufw.conf", "ENABLED=yes\nLOGLEVEL=low\n")),
        });
        assert_eq!(
            texts(&i),
            [
                "limit 22/tcp",
                "deny from 198.51.100.7",
                "allow in on eth0 8080/tcp comment 'web alt'",
                "allow routed in on eth0 out on eth1 80/tcp to 10.0.0.2",
                "allow log 8443/tcp from 0.0.0.0/0",
                "allow 22/tcp from 0.0.0.0/0 comment 'OpenSSH'",
                "allow proto gre from 0.0.0.0/0",
                "allow out 53/udp",
            ]
        );
        assert_eq!(i.ruleset.defaults.incoming, Policy::Reject);
        assert_eq!(i.ruleset.logging, Logging::On);
        assert_eq!(i.untranslated.len(), 1);
        assert_eq!(i.untranslated[0].line_no, 21);
        assert!(i.untranslated[0].reason.contains("protocol sctp"));
        assert!(i
            .notes
            .iter()
            .any(|n| n.message.contains("6th") && n.lines == [5]));
    }

    const STATUS_VERBOSE: &str = "Status: active\nLogging: on (low)\nDefault: deny (incoming), allow (outgoing), disabled (routed)\nNew profiles: skip\n\nTo                         Action      From\n--                         ------      ----\n22/tcp                     LIMIT IN    Anywhere                  \nAnywhere                   DENY IN     198.51.100.7              \n5432                       REJECT IN   Anywhere                  \n8080/tcp on eth0           ALLOW IN    Anywhere                   # web alt\n1000:2000/udp              ALLOW IN    10.0.0.0/8                \n8443/tcp                   ALLOW IN    Anywhere                   (log)\n22/tcp (OpenSSH)           ALLOW IN    Anywhere                  \n22/tcp (v6)                LIMIT IN    Anywhere (v6)             \n5432 (v6)                  REJECT IN   Anywhere (v6)             \n8080/tcp (v6) on eth0      ALLOW IN    Anywhere (v6)              # web alt\n22/tcp (OpenSSH (v6))      ALLOW IN    Anywhere (v6)             \n\n53/udp                     ALLOW OUT   Anywhere                  \n53/udp (v6)                ALLOW OUT   Anywhere (v6)             \n\n10.0.0.2 80/tcp on eth1    ALLOW FWD   Anywhere on eth0          \n";

    #[test]
    fn status_verbose_becomes_rules_and_defaults() {
        let i = from_status(STATUS_VERBOSE);
        assert_eq!(
            texts(&i),
            [
                "limit 22/tcp",
                "deny from 198.51.100.7",
                "reject 5432",
                "allow in on eth0 8080/tcp comment 'web alt'",
                "allow 1000:2000/udp from 10.0.0.0/8",
                "allow log 8443/tcp from 0.0.0.0/0",
                "allow out 53/udp",
                "allow routed in on eth0 out on eth1 80/tcp to 10.0.0.2",
            ]
        );
        assert_eq!(i.ruleset.defaults.incoming, Policy::Deny);
        assert_eq!(i.ruleset.defaults.routed, Policy::Deny);
        assert!(i.untranslated.is_empty(), "{:?}", i.untranslated);
        // `allow OpenSSH` after `limit 22/tcp` can never decide a packet.
        assert!(i
            .notes
            .iter()
            .any(|n| n.kind == NoteKind::Info && n.lines == [14, 18]));
    }

    #[test]
    fn plain_status_names_apps_it_cannot_resolve() {
        let i = from_status("Status: active\n\n     To                         Action      From\n     --                         ------      ----\n[ 1] 22/tcp                     ALLOW IN    Anywhere\n[ 2] OpenSSH                    ALLOW IN    Anywhere\n[ 3] 53/udp                     ALLOW OUT   Anywhere                   (out)\n");
        assert_eq!(
            texts(&i),
            [
                "allow 22/tcp from 0.0.0.0/0",
                "allow out 53/udp from 0.0.0.0/0"
            ]
        );
        assert_eq!(i.untranslated.len(), 1);
        assert!(i.untranslated[0].reason.contains("application profile"));
        assert!(i.notes.iter().any(|n| n.kind == NoteKind::Assumed));
    }
}
