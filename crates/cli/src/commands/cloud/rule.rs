//! A network-firewall rule from the command line (`tcp 443 --from
//! 203.0.113.0/24 --description https`, `--preset ssh`), checked with the
//! model's own types before anything is sent: a bad rule is refused here
//! (exit 2), naming the input and what is accepted.

use model::network::{preset, NetworkProtocol, NetworkRule, PRESETS};
use model::{PortRange, Services};
use serde_json::{json, Value};

/// What `add-rule` was given, as typed.
#[derive(Debug, Clone, Default)]
pub struct RuleWords<'a> {
    pub protocol: Option<&'a str>,
    pub port: Option<&'a str>,
    pub preset: Option<&'a str>,
    pub from: &'a [String],
    pub description: &'a str,
    pub enabled: bool,
}

/// A checked rule: the model value and the request body for
/// `POST /v1/firewalls/{id}/rules`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedRule {
    pub rule: NetworkRule,
    pub body: Value,
}

/// `22`, `8000-8100` (or `8000:8100`), or a service name; the error names
/// the text.
fn parse_port(s: &str, services: &Services) -> Result<PortRange, String> {
    services
        .port_range(s.trim())
        .map_err(|e| format!("'{s}' is not a port: {e}"))
}

/// Checks the rule; the error names the bad input and what is accepted.
pub fn check(w: &RuleWords, services: &Services) -> Result<CheckedRule, String> {
    let mut sources = Vec::new();
    for s in w.from {
        let net = model::parse_net(s.trim()).map_err(|e| format!("--from {e}"))?;
        sources.push(net);
    }
    let (protocol, ports, preset_name) = match (w.preset, w.protocol) {
        (Some(name), proto) => {
            if proto.is_some() || w.port.is_some() {
                let given = [proto, w.port].into_iter().flatten().collect::<Vec<_>>();
                return Err(format!(
                    "--preset {name} sets the protocol and port itself: drop '{}' or drop --preset",
                    given.join(" ")
                ));
            }
            let p = preset(name).ok_or_else(|| {
                let known: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
                format!("'{name}' is not a preset: {} (any case)", known.join(", "))
            })?;
            (p.protocol, p.port.map(PortRange::single), Some(p.name))
        }
        (None, Some(proto)) => {
            let protocol = str::parse::<NetworkProtocol>(proto)?;
            let ports = w.port.map(|p| parse_port(p, services)).transpose()?;
            (protocol, ports, None)
        }
        (None, None) => return Err(
            "no rule given: name a protocol and port (tcp 443, udp 53, icmp, any) or --preset NAME"
                .into(),
        ),
    };
    let rule = NetworkRule {
        protocol,
        ports,
        sources,
        description: w.description.to_string(),
        enabled: w.enabled,
    };
    rule.validate().map_err(|e| {
        if e.field == "ports" {
            match w.port {
                Some(p) => format!("'{p}' with {}: {}", protocol.as_str(), e.message),
                None => format!(
                    "{}: add-rule FIREWALL {} PORT",
                    e.message,
                    protocol.as_str()
                ),
            }
        } else if let Some(i) = e
            .field
            .strip_prefix("sources[")
            .and_then(|r| r.trim_end_matches(']').parse::<usize>().ok())
        {
            format!(
                "--from '{}': {}",
                w.from.get(i).map_or("", String::as_str),
                e.message
            )
        } else {
            format!("--{}: {}", e.field, e.message)
        }
    })?;
    let mut body = json!({
        "sources": rule.sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "description": rule.description,
        "enabled": rule.enabled,
    });
    match preset_name {
        Some(name) => body["preset"] = json!(name),
        None => {
            body["protocol"] = json!(rule.protocol.as_str());
            if let Some(p) = rule.ports {
                body["port"] = json!(p.hyphenated());
            }
        }
    }
    Ok(CheckedRule { rule, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words<'a>(
        protocol: Option<&'a str>,
        port: Option<&'a str>,
        from: &'a [String],
    ) -> RuleWords<'a> {
        RuleWords {
            protocol,
            port,
            from,
            enabled: true,
            ..Default::default()
        }
    }

    #[test]
    fn good_rules_become_request_bodies() {
        let s = Services::builtin();
        let from = vec!["203.0.113.0/24".to_string(), "2001:db8::/32".to_string()];
        let r = check(&words(Some("tcp"), Some("443"), &from), &s).unwrap();
        assert_eq!(r.body["protocol"], "tcp");
        assert_eq!(r.body["port"], "443");
        assert_eq!(r.body["sources"][1], "2001:db8::/32");
        let r = check(&words(Some("UDP"), Some("8000:8100"), &[]), &s).unwrap();
        assert_eq!(r.body["port"], "8000-8100");
        let r = check(&words(Some("tcp"), Some("https"), &[]), &s).unwrap();
        assert_eq!(r.body["port"], "443");
        let r = check(&words(Some("icmp"), None, &[]), &s).unwrap();
        assert!(r.body.get("port").is_none());
        let r = check(
            &RuleWords {
                preset: Some("ssh"),
                enabled: true,
                ..Default::default()
            },
            &s,
        )
        .unwrap();
        assert_eq!(r.body["preset"], "SSH");
        assert_eq!(r.rule.ports, Some(PortRange::single(22)));
        let one = vec!["198.51.100.7".to_string()];
        let r = check(&words(Some("tcp"), Some("22"), &one), &s).unwrap();
        assert_eq!(r.body["sources"][0], "198.51.100.7/32");
    }

    #[test]
    fn bad_rules_name_the_input() {
        let s = Services::builtin();
        let err = |w: RuleWords| check(&w, &s).unwrap_err();
        assert!(err(words(Some("tcp"), Some("70000"), &[])).contains("'70000'"));
        assert!(err(words(Some("tcp"), Some("70000"), &[])).contains("1-65535"));
        assert!(err(words(Some("tcp"), Some("9-3"), &[])).contains("'9-3'"));
        assert!(err(words(Some("sctp"), Some("22"), &[])).contains("tcp, udp"));
        assert!(err(words(Some("tcp"), None, &[])).contains("needs a port"));
        let e = err(words(Some("icmp"), Some("22"), &[]));
        assert!(
            e.contains("'22' with icmp") && e.contains("no ports"),
            "{e}"
        );
        let bad = vec!["10.0.0.300/8".to_string()];
        assert!(err(words(Some("tcp"), Some("22"), &bad)).contains("'10.0.0.300/8'"));
        let host_bits = vec!["10.0.0.1/8".to_string()];
        assert!(err(words(Some("tcp"), Some("22"), &host_bits)).contains("10.0.0.0/8"));
        let e = err(RuleWords {
            preset: Some("gopher"),
            ..Default::default()
        });
        assert!(e.contains("'gopher'") && e.contains("SSH"), "{e}");
        let e = err(RuleWords {
            preset: Some("ssh"),
            protocol: Some("tcp"),
            port: Some("23"),
            ..Default::default()
        });
        assert!(e.contains("drop 'tcp 23'"), "{e}");
        assert!(err(RuleWords::default()).contains("--preset"));
        let long = "x".repeat(300);
        let e = err(RuleWords {
            description: &long,
            ..words(Some("tcp"), Some("22"), &[])
        });
        assert!(e.starts_with("--description"), "{e}");
    }
}
