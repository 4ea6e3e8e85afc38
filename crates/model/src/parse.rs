//! The rule parser: UFW's syntax, so an admin's habits work unchanged.
//!
//! ```text
//! [route] ACTION [in|out|routed] [on IFACE] [log|log-all] SPEC [comment 'TEXT']
//! SPEC  := PORTS[/PROTO]                      short form: 22/tcp, http,https, 60000:61000/udp
//!        | [in on IF] [out on IF] [proto P] [from ADDR [port PORTS]] [to ADDR [port PORTS]]
//! ```
//!
//! The short form may be followed by `from`/`to` clauses (`allow out 53/udp to
//! 9.9.9.9`). Errors carry the span of the bad token and say what is accepted there.
//! A list of service names whose transports differ (`http,ntp`) yields one rule per
//! transport, which is why parsing returns a `Vec<Rule>`.

use crate::list::{Deadline, ListName};
use crate::profiles::ProfilePorts;
use crate::rule::{
    is_valid_interface, Action, Addresses, Direction, PortError, PortRange, Ports, Protocol, Rule,
};
use crate::services::{Services, Transports};
use ipnet::IpNet;
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;

/// A rule that could not be parsed: the message, and where in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// The input, as one line.
    pub input: String,
    /// Byte range of the offending token in `input` (empty at the end for a
    /// missing token).
    pub span: Range<usize>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.message)?;
        writeln!(f, "  {}", self.input)?;
        let width = self.input[self.span.clone()].chars().count().max(1);
        let lead = self.input[..self.span.start].chars().count();
        write!(f, "  {}{}", " ".repeat(lead), "^".repeat(width))
    }
}

/// A word of the rule, borrowed from the input (or from the argument it was
/// given as): parsing 100k rules from a file allocates only what the rules
/// keep.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    span: (usize, usize),
}

impl Token<'_> {
    fn span(&self) -> Range<usize> {
        self.span.0..self.span.1
    }
    /// Where `text` starts in the input: after the opening quote of a quoted
    /// word (whose span holds the two one-byte quotes), so that spans of parts
    /// of the word (`22` of `'22/tcp'`) fall on the text itself.
    fn text_start(&self) -> usize {
        if self.span.1 - self.span.0 == self.text.len() + 2 {
            self.span.0 + 1
        } else {
            self.span.0
        }
    }
}

/// Parses one rule written as a single string (quotes group words:
/// `comment 'office VPN'`).
pub fn parse_rule(input: &str, services: &Services) -> Result<Vec<Rule>, ParseError> {
    let tokens = tokenize(input)?;
    Parser {
        input: Cow::Borrowed(input),
        tokens,
        pos: 0,
        services,
    }
    .rule()
}

/// Parses one rule given as separate arguments, as the shell split them.
pub fn parse_rule_args<S: AsRef<str>>(
    args: &[S],
    services: &Services,
) -> Result<Vec<Rule>, ParseError> {
    let mut input = String::new();
    let mut tokens = Vec::new();
    for a in args {
        let a = a.as_ref();
        if !input.is_empty() {
            input.push(' ');
        }
        let shown = if a.is_empty() || a.contains(char::is_whitespace) {
            if a.contains('\'') {
                format!("\"{a}\"")
            } else {
                format!("'{a}'")
            }
        } else {
            a.to_string()
        };
        let start = input.len();
        input.push_str(&shown);
        tokens.push(Token {
            text: a,
            span: (start, input.len()),
        });
    }
    Parser {
        input: Cow::Owned(input),
        tokens,
        pos: 0,
        services,
    }
    .rule()
}

fn tokenize(input: &str) -> Result<Vec<Token<'_>>, ParseError> {
    let mut tokens = Vec::with_capacity(8);
    let mut chars = input.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '\'' || c == '"' {
            chars.next();
            let mut closed = None;
            for (i, ch) in chars.by_ref() {
                if ch == c {
                    closed = Some(i);
                    break;
                }
            }
            let Some(close) = closed else {
                return Err(ParseError {
                    input: input.to_string(),
                    span: start..input.len(),
                    message: format!("unterminated quote {c}: close it with {c}"),
                });
            };
            // The quote characters are one byte each.
            tokens.push(Token {
                text: &input[start + 1..close],
                span: (start, close + 1),
            });
            continue;
        }
        let mut end = start;
        while let Some(&(i, ch)) = chars.peek() {
            if ch.is_whitespace() {
                break;
            }
            end = i + ch.len_utf8();
            chars.next();
        }
        tokens.push(Token {
            text: &input[start..end],
            span: (start, end),
        });
    }
    Ok(tokens)
}

const ACTIONS: &str = "allow, deny, reject, limit";
use crate::rule::PROTOCOLS;
const ADDRESS_HELP: &str = "an IPv4 or IPv6 address, a network (203.0.113.0/24, 2001:db8::/32), a comma list of those, a list (@office), or any";
const CLAUSES: &str = "on IFACE, proto P, from ADDR, to ADDR, port PORTS, comment 'TEXT', log, rate N/Ts (limit), until TIME, or a port such as 22/tcp";

/// A port element before protocols are settled: its range and, for a service
/// name, the transports the name covers.
#[derive(Debug, Clone, Copy)]
struct PortElem {
    range: PortRange,
    named: Option<Transports>,
}

struct Parser<'a> {
    input: Cow<'a, str>,
    tokens: Vec<Token<'a>>,
    pos: usize,
    services: &'a Services,
}

impl<'a> Parser<'a> {
    fn err_at(&self, span: Range<usize>, message: impl Into<String>) -> ParseError {
        ParseError {
            input: self.input.to_string(),
            span,
            message: message.into(),
        }
    }

    fn err_here(&self, message: impl Into<String>) -> ParseError {
        let span = match self.tokens.get(self.pos) {
            Some(t) => t.span(),
            None => self.input.len()..self.input.len(),
        };
        self.err_at(span, message)
    }

    fn peek(&self) -> Option<&'a str> {
        self.tokens.get(self.pos).map(|t| t.text)
    }

    /// The next word in lower case (borrowed unless it has capitals).
    fn peek_lower(&self) -> Option<Cow<'a, str>> {
        self.peek().map(|w| {
            if w.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(w.to_ascii_lowercase())
            } else {
                Cow::Borrowed(w)
            }
        })
    }

    fn next_value(&mut self, after: &str, what: &str) -> Result<Token<'a>, ParseError> {
        match self.tokens.get(self.pos) {
            Some(t) => {
                self.pos += 1;
                Ok(*t)
            }
            None => Err(self.err_here(format!("'{after}' needs {what} after it"))),
        }
    }

    fn rule(mut self) -> Result<Vec<Rule>, ParseError> {
        let mut routed = false;
        if self.peek_lower().as_deref() == Some("route") {
            routed = true;
            self.pos += 1;
        }
        let action = match self.peek_lower().as_deref() {
            Some("allow") => Action::Allow,
            Some("deny") => Action::Deny,
            Some("reject") => Action::Reject,
            Some("limit") => Action::Limit,
            Some(other) => {
                return Err(self.err_here(format!("'{other}' is not an action: {ACTIONS}")))
            }
            None => return Err(self.err_here(format!("a rule starts with an action: {ACTIONS}"))),
        };
        self.pos += 1;
        let mut rule = Rule::new(
            action,
            if routed {
                Direction::Routed
            } else {
                Direction::In
            },
        );
        let mut direction_given = routed;

        // The direction word, unless it starts a routed `in on X` clause.
        if !routed {
            match self.peek_lower().as_deref() {
                Some("in") => {
                    direction_given = true;
                    self.pos += 1;
                }
                Some("out") => {
                    rule.direction = Direction::Out;
                    direction_given = true;
                    self.pos += 1;
                }
                Some("routed") => {
                    rule.direction = Direction::Routed;
                    direction_given = true;
                    self.pos += 1;
                }
                _ => {}
            }
        }
        let _ = direction_given;

        let mut dest_elems: Option<(Vec<PortElem>, Range<usize>)> = None;
        let mut src_elems: Option<Vec<PortElem>> = None;
        let mut explicit_proto: Option<(Protocol, Range<usize>)> = None;
        let mut from_given = false;
        let mut to_given = false;
        let mut comment_given = false;
        // An application profile named for the destination: its name and ports.
        let mut profile: Option<(&'a str, &'a ProfilePorts, Range<usize>)> = None;

        while let Some(word) = self.peek_lower() {
            let span = self.tokens[self.pos].span();
            match &*word {
                "on" => {
                    self.pos += 1;
                    let iface = self.next_value("on", "an interface name (eth0)")?;
                    match rule.direction {
                        Direction::In => set_once(&mut rule.in_interface, iface, &self)?,
                        Direction::Out => set_once(&mut rule.out_interface, iface, &self)?,
                        Direction::Routed => {
                            return Err(self.err_at(
                                span,
                                "routed rules name the side: 'in on IFACE' or 'out on IFACE'",
                            ))
                        }
                    }
                }
                "in" | "out"
                    if self
                        .tokens
                        .get(self.pos + 1)
                        .is_some_and(|t| t.text.eq_ignore_ascii_case("on")) =>
                {
                    let is_in = word == "in";
                    let ok = match rule.direction {
                        Direction::Routed => true,
                        Direction::In => is_in,
                        Direction::Out => !is_in,
                    };
                    if !ok {
                        return Err(self.err_at(
                            span,
                            format!(
                                "'{word} on' does not fit a rule of direction {}: use 'on IFACE', or 'routed' for forwarded traffic",
                                rule.direction.as_str()
                            ),
                        ));
                    }
                    self.pos += 2;
                    let iface = self.next_value("on", "an interface name (eth0)")?;
                    if is_in {
                        set_once(&mut rule.in_interface, iface, &self)?;
                    } else {
                        set_once(&mut rule.out_interface, iface, &self)?;
                    }
                }
                "log" | "log-all" => {
                    rule.log = true;
                    self.pos += 1;
                }
                "proto" => {
                    self.pos += 1;
                    let tok = self.next_value("proto", PROTOCOLS)?;
                    if explicit_proto.is_some() {
                        return Err(self.err_at(tok.span(), "the protocol is given twice"));
                    }
                    explicit_proto = Some((self.protocol(&tok)?, tok.span()));
                }
                "from" | "to" => {
                    self.pos += 1;
                    let tok = self.next_value(&word, ADDRESS_HELP)?;
                    let is_from = word == "from";
                    if (is_from && from_given) || (!is_from && to_given) {
                        return Err(self.err_at(span, format!("'{word}' is given twice")));
                    }
                    let (addrs, list) = if tok.text.starts_with('@') {
                        let name = ListName::parse_reference(tok.text)
                            .map_err(|e| self.err_at(tok.span(), e.to_string()))?;
                        (Addresses::any(), Some(name))
                    } else {
                        (self.addresses(&tok)?, None)
                    };
                    if is_from {
                        from_given = true;
                        rule.source = addrs;
                        rule.source_list = list;
                    } else {
                        to_given = true;
                        rule.destination = addrs;
                        rule.destination_list = list;
                    }
                    if self.peek_lower().as_deref() == Some("app") {
                        let aspan = self.tokens[self.pos].span();
                        self.pos += 1;
                        let tok =
                            self.next_value("app", "an application profile (OpenSSH, 'WWW Full')")?;
                        if is_from {
                            return Err(self.err_at(
                                aspan,
                                "an application profile names the destination's ports: 'to ADDR app NAME'",
                            ));
                        }
                        if dest_elems.is_some() || profile.is_some() {
                            return Err(self.err_at(aspan, "the destination port is given twice"));
                        }
                        profile = Some(self.profile(&tok)?);
                    } else if self.peek_lower().as_deref() == Some("port") {
                        let pspan = self.tokens[self.pos].span();
                        self.pos += 1;
                        let tok =
                            self.next_value("port", "a port, port range (A:B) or service name")?;
                        let elems = self.ports(tok.text, &tok.span())?;
                        if is_from {
                            src_elems = Some(elems);
                        } else {
                            if dest_elems.is_some() {
                                return Err(
                                    self.err_at(pspan, "the destination port is given twice")
                                );
                            }
                            dest_elems = Some((elems, tok.span()));
                        }
                    }
                }
                "port" => {
                    self.pos += 1;
                    let tok =
                        self.next_value("port", "a port, port range (A:B) or service name")?;
                    if dest_elems.is_some() {
                        return Err(self.err_at(span, "the destination port is given twice"));
                    }
                    let elems = self.ports(tok.text, &tok.span())?;
                    dest_elems = Some((elems, tok.span()));
                }
                "rate" => {
                    self.pos += 1;
                    let tok = self.next_value("rate", "CONNECTIONS/SECONDS such as 10/60s")?;
                    if rule.action != Action::Limit {
                        return Err(self.err_at(
                            span,
                            "'rate' belongs to 'limit' rules: limit ssh rate 10/60s",
                        ));
                    }
                    if rule.rate.is_some() {
                        return Err(self.err_at(span, "'rate' is given twice"));
                    }
                    let rate: crate::rule::Rate = tok
                        .text
                        .parse()
                        .map_err(|e: String| self.err_at(tok.span(), e))?;
                    // UFW's rate is the default, written without a clause.
                    rule.rate = Some(rate).filter(|r| *r != crate::rule::Rate::UFW);
                }
                "until" => {
                    self.pos += 1;
                    let tok = self.next_value("until", "a time such as 2026-12-08T04:00:00Z")?;
                    if rule.until.is_some() {
                        return Err(self.err_at(span, "'until' is given twice"));
                    }
                    rule.until =
                        Some(Deadline::parse(tok.text).map_err(|e| self.err_at(tok.span(), e))?);
                }
                "comment" => {
                    self.pos += 1;
                    let tok = self.next_value(
                        "comment",
                        "a text, quoted if it has spaces: comment 'office VPN'",
                    )?;
                    if comment_given {
                        return Err(self.err_at(span, "'comment' is given twice"));
                    }
                    comment_given = true;
                    rule.comment = Some(tok.text.to_string());
                }
                _ => {
                    // The short form: PORTS[/PROTO], or an application profile.
                    let tok = self.tokens[self.pos];
                    if dest_elems.is_some() || profile.is_some() || from_given || to_given {
                        return Err(self.err_at(
                            tok.span(),
                            format!("unexpected '{}': expected {CLAUSES}", tok.text),
                        ));
                    }
                    if let Some(ports) = self.services.profile(tok.text) {
                        profile = Some((tok.text, ports, tok.span()));
                        self.pos += 1;
                        continue;
                    }
                    let (ports_text, proto_text) = match tok.text.split_once('/') {
                        Some((p, pr)) => (p, Some(pr)),
                        None => (tok.text, None),
                    };
                    let ports_span = tok.text_start()..tok.text_start() + ports_text.len();
                    let elems = self.ports(ports_text, &ports_span).map_err(|e| {
                        if proto_text.is_none() && self.services.profile_named_like(ports_text).is_some() {
                            // A profile name in another case: UFW's names are case-sensitive.
                            self.profile(&tok).err().unwrap_or(e)
                        } else if ports_text.chars().all(|c| c.is_ascii_alphabetic()) && self.services.lookup(ports_text).is_none() {
                            self.err_at(
                                ports_span.clone(),
                                format!("unexpected '{ports_text}': expected {CLAUSES} (and '{ports_text}' is no known service name)"),
                            )
                        } else {
                            e
                        }
                    })?;
                    if let Some(pt) = proto_text {
                        let pspan = tok.text_start() + ports_text.len() + 1
                            ..tok.text_start() + tok.text.len();
                        let ptok = Token {
                            text: pt,
                            span: (pspan.start, pspan.end),
                        };
                        if explicit_proto.is_some() {
                            return Err(self.err_at(pspan, "the protocol is given twice"));
                        }
                        explicit_proto = Some((self.protocol(&ptok)?, pspan));
                    }
                    dest_elems = Some((elems, tok.span()));
                    self.pos += 1;
                }
            }
        }

        if let Some((name, ports, _)) = profile {
            if let Some((_, span)) = explicit_proto {
                return Err(self.err_at(
                    span,
                    format!("the application profile '{name}' names its own protocols"),
                ));
            }
            if rule.comment.is_none() {
                rule.comment = Some(name.to_string());
            }
            if let Some(src) = &src_elems {
                rule.source_ports = Ports(src.iter().map(|e| e.range).collect());
            }
            let rules: Vec<Rule> = ports
                .iter()
                .map(|(p, ranges)| {
                    let mut r = rule.clone();
                    r.protocol = *p;
                    r.destination_ports = Ports(ranges.clone());
                    r
                })
                .collect();
            let whole = 0..self.input.len();
            for r in &rules {
                r.validate()
                    .map_err(|e| self.err_at(whole.clone(), e.to_string()))?;
            }
            return Ok(rules);
        }
        if let Some((p, span)) = &explicit_proto {
            rule.protocol = *p;
            if !p.has_ports() && (dest_elems.is_some() || src_elems.is_some()) {
                return Err(self.err_at(
                    span.clone(),
                    format!(
                        "ports need protocol tcp or udp (or none, meaning both); {} has no ports",
                        p.as_str()
                    ),
                ));
            }
        }
        if let Some(src) = &src_elems {
            rule.source_ports = Ports(src.iter().map(|e| e.range).collect());
        }

        let whole = 0..self.input.len();
        let rules = match dest_elems {
            None => {
                if src_elems
                    .as_ref()
                    .is_some_and(|s| s.iter().any(|e| e.named.is_some()))
                    && explicit_proto.is_none()
                {
                    rule.protocol =
                        settle(src_elems.as_ref().unwrap().iter().filter_map(|e| e.named))
                            .unwrap_or(Protocol::Any);
                }
                vec![rule]
            }
            Some((elems, _)) if explicit_proto.is_some() => {
                rule.destination_ports = Ports(elems.iter().map(|e| e.range).collect());
                vec![rule]
            }
            Some((elems, _)) => {
                // No protocol given: numbers mean tcp and udp, names mean theirs.
                let mut groups: Vec<(Protocol, Vec<PortRange>)> = Vec::new();
                for e in &elems {
                    let p = match e.named {
                        None => Protocol::Any,
                        Some(t) => settle(std::iter::once(t)).unwrap_or(Protocol::Any),
                    };
                    match groups.iter_mut().find(|(gp, _)| *gp == p) {
                        Some((_, v)) => v.push(e.range),
                        None => groups.push((p, vec![e.range])),
                    }
                }
                groups.sort_by_key(|(p, _)| *p);
                groups
                    .into_iter()
                    .map(|(p, ranges)| {
                        let mut r = rule.clone();
                        r.protocol = p;
                        r.destination_ports = Ports(ranges);
                        r
                    })
                    .collect()
            }
        };
        for r in &rules {
            r.validate()
                .map_err(|e| self.err_at(whole.clone(), e.to_string()))?;
        }
        Ok(rules)
    }

    /// The application profile `tok` names (case matters, as in UFW).
    fn profile(
        &self,
        tok: &Token<'a>,
    ) -> Result<(&'a str, &'a ProfilePorts, Range<usize>), ParseError> {
        match self.services.profile(tok.text) {
            Some(ports) => Ok((tok.text, ports, tok.span())),
            None => {
                let hint = match self.services.profile_named_like(tok.text) {
                    Some(n) => format!(" (did you mean '{n}'? names are case-sensitive)"),
                    None => " (see /etc/ufw/applications.d; 'OpenSSH', 'WWW Full', ...)".into(),
                };
                Err(self.err_at(
                    tok.span(),
                    format!("'{}' is not an application profile{hint}", tok.text),
                ))
            }
        }
    }

    fn protocol(&self, tok: &Token<'_>) -> Result<Protocol, ParseError> {
        tok.text.parse().map_err(|m| self.err_at(tok.span(), m))
    }

    fn addresses(&self, tok: &Token<'_>) -> Result<Addresses, ParseError> {
        if tok.text.eq_ignore_ascii_case("any") {
            return Ok(Addresses::any());
        }
        let mut nets = Vec::with_capacity(1);
        let mut offset = tok.text_start();
        for part in tok.text.split(',') {
            let span = offset..offset + part.len();
            offset += part.len() + 1;
            nets.push(parse_net(part).map_err(|m| self.err_at(span, m))?);
        }
        Ok(Addresses(nets))
    }

    fn ports(&self, text: &str, span: &Range<usize>) -> Result<Vec<PortElem>, ParseError> {
        let mut out = Vec::with_capacity(1);
        let mut offset = span.start;
        for part in text.split(',') {
            let pspan = offset..offset + part.len();
            offset += part.len() + 1;
            out.push(self.port_elem(part, pspan)?);
        }
        Ok(out)
    }

    fn port_elem(&self, part: &str, span: Range<usize>) -> Result<PortElem, ParseError> {
        if part.is_empty() {
            return Err(self.err_at(
                span,
                "empty port: write a port (22), a range (60000:61000) or a service name (ssh)",
            ));
        }
        if part.contains([':', '-']) || part.bytes().all(|c| c.is_ascii_digit()) {
            return Ok(PortElem {
                range: part
                    .parse()
                    .map_err(|e: PortError| self.err_at(span, e.to_string()))?,
                named: None,
            });
        }
        match self.services.lookup(part) {
            Some((port, t)) => Ok(PortElem { range: PortRange::single(port), named: Some(t) }),
            None => Err(self.err_at(
                span,
                format!("'{part}' is not a port, port range (A:B) or known service name (ssh, http, https, ...)"),
            )),
        }
    }
}

fn set_once(slot: &mut Option<String>, tok: Token<'_>, p: &Parser<'_>) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(p.err_at(tok.span(), "the interface is given twice"));
    }
    if !is_valid_interface(tok.text) {
        return Err(p.err_at(
            tok.span(),
            format!(
                "'{}' is not an interface name: 1-15 characters, no spaces, '/' or quotes",
                tok.text
            ),
        ));
    }
    *slot = Some(tok.text.to_string());
    Ok(())
}

/// The protocol that covers every given transport set, if one does.
fn settle(mut ts: impl Iterator<Item = Transports>) -> Option<Protocol> {
    let first = ts.next()?;
    if ts.any(|t| t != first) {
        return None;
    }
    Some(match (first.tcp, first.udp) {
        (true, false) => Protocol::Tcp,
        (false, true) => Protocol::Udp,
        _ => Protocol::Any,
    })
}

/// Parses an address or network; a network must not have host bits set.
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    if let Ok(a) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(a));
    }
    match text.parse::<IpNet>() {
        Ok(n) if n.trunc() == n => Ok(n),
        Ok(n) => Err(format!(
            "'{text}' has host bits set: did you mean {}?",
            n.trunc()
        )),
        Err(_) => Err(format!(
            "'{text}' is not an address: write an IPv4 or IPv6 address or a network (203.0.113.0/24, 2001:db8::/32)"
        )),
    }
}
