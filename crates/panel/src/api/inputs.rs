//! Request bodies that need more than serde: rules (with presets and ports
//! written as `"22"` or `"8000-8100"`), rule edits, assignments.

use crate::store::StoreError;
use ipnet::IpNet;
use model::network::{preset, NetworkProtocol, NetworkRule, PRESETS};
use serde::{Deserialize, Deserializer};
use std::net::IpAddr;
use utoipa::ToSchema;

/// A port or range, given as a number (`22`) or a string (`"22"`,
/// `"8000-8100"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec(pub String);

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PortSpec, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PortSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a port (22) or range (\"8000-8100\")")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PortSpec, E> {
                Ok(PortSpec(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PortSpec, E> {
                Ok(PortSpec(v.to_string()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PortSpec, E> {
                Ok(PortSpec(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

fn yes() -> bool {
    true
}

/// A rule in a request: a preset (`{"preset": "SSH"}`) or a protocol with an
/// optional port, plus sources (empty: from anywhere), description, enabled.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    /// A preset name from `GET /v1/presets` (case-insensitive); sets protocol
    /// and port.
    #[schema(example = "SSH")]
    pub preset: Option<String>,
    /// `tcp`, `udp`, `icmp` or `any`.
    #[schema(value_type = Option<String>, example = "tcp")]
    pub protocol: Option<NetworkProtocol>,
    /// `22` or `"8000-8100"`; required for tcp/udp, forbidden for icmp,
    /// optional for any.
    #[schema(value_type = Option<String>, example = "22")]
    pub port: Option<PortSpec>,
    /// Source addresses or networks (`203.0.113.0/24`, `2001:db8::/32`,
    /// `198.51.100.7`). Empty: from anywhere.
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// A change to one rule; absent fields stay. `"port": null` removes the port.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulePatch {
    #[schema(value_type = Option<String>, example = "udp")]
    pub protocol: Option<NetworkProtocol>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, example = "53")]
    pub port: Option<Option<PortSpec>>,
    pub sources: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

fn double_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<PortSpec>>, D::Error> {
    Option::<PortSpec>::deserialize(d).map(Some)
}

/// Parses source networks; a bare address is a /32 or /128.
pub fn parse_sources(sources: &[String], prefix: &str) -> Result<Vec<IpNet>, StoreError> {
    sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.trim();
            s.parse::<IpNet>().or_else(|_| s.parse::<IpAddr>().map(IpNet::from)).map_err(|_| {
                StoreError::invalid(
                    format!("{prefix}sources[{i}]"),
                    format!("'{s}' is not an IP address or network: write 203.0.113.0/24, 2001:db8::/32 or 198.51.100.7"),
                )
            })
        })
        .collect()
}

fn parse_port_field(p: &PortSpec, prefix: &str) -> Result<model::PortRange, StoreError> {
    let text = p.0.trim();
    text.parse().map_err(|e: model::PortError| {
        StoreError::invalid(
            format!("{prefix}port"),
            format!("'{text}': {e}; ports are 1-65535, a range is written 8000-8100"),
        )
    })
}

fn check(rule: NetworkRule, prefix: &str) -> Result<NetworkRule, StoreError> {
    rule.validate().map_err(|e| {
        let field = if e.field == "ports" {
            "port".to_string()
        } else {
            e.field
        };
        StoreError::invalid(format!("{prefix}{field}"), e.message)
    })?;
    Ok(rule)
}

impl RuleInput {
    /// The model rule, or the first bad field (prefixed, e.g. `rules[3].`).
    pub fn to_rule(&self, prefix: &str) -> Result<NetworkRule, StoreError> {
        let (protocol, ports) = match (&self.preset, self.protocol) {
            (Some(name), _) => {
                if self.protocol.is_some() || self.port.is_some() {
                    return Err(StoreError::invalid(
                        format!("{prefix}preset"),
                        "give either a preset or protocol and port, not both",
                    ));
                }
                let p = preset(name).ok_or_else(|| {
                    let known: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
                    StoreError::invalid(
                        format!("{prefix}preset"),
                        format!("unknown preset '{name}'; known: {}", known.join(", ")),
                    )
                })?;
                (p.protocol, p.port.map(model::PortRange::single))
            }
            (None, Some(protocol)) => (
                protocol,
                self.port
                    .as_ref()
                    .map(|p| parse_port_field(p, prefix))
                    .transpose()?,
            ),
            (None, None) => {
                return Err(StoreError::invalid(
                    format!("{prefix}protocol"),
                    "required: tcp, udp, icmp or any (or give a preset)",
                ))
            }
        };
        let rule = NetworkRule {
            protocol,
            ports,
            sources: parse_sources(&self.sources, prefix)?,
            description: self.description.clone(),
            enabled: self.enabled,
        };
        check(rule, prefix)
    }
}

impl RulePatch {
    /// Applies the edit to the current rule and validates the result.
    pub fn apply(&self, mut rule: NetworkRule) -> Result<NetworkRule, StoreError> {
        if let Some(p) = self.protocol {
            rule.protocol = p;
            // icmp has no ports: switching to it drops the port unless one is given.
            if p == NetworkProtocol::Icmp && self.port.is_none() {
                rule.ports = None;
            }
        }
        if let Some(port) = &self.port {
            rule.ports = port.as_ref().map(|p| parse_port_field(p, "")).transpose()?;
        }
        if let Some(s) = &self.sources {
            rule.sources = parse_sources(s, "")?;
        }
        if let Some(d) = &self.description {
            rule.description = d.clone();
        }
        if let Some(e) = self.enabled {
            rule.enabled = e;
        }
        check(rule, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> RuleInput {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn rules_from_presets_ports_and_sources() {
        let r = input(r#"{"preset":"ssh","sources":["203.0.113.0/24","198.51.100.7"]}"#)
            .to_rule("")
            .unwrap();
        assert_eq!(r.protocol, NetworkProtocol::Tcp);
        assert_eq!(r.ports, Some(model::PortRange::single(22)));
        assert_eq!(r.sources[1].to_string(), "198.51.100.7/32");
        let r = input(r#"{"protocol":"udp","port":"8000-8100"}"#)
            .to_rule("")
            .unwrap();
        assert_eq!(r.ports, model::PortRange::new(8000, 8100));
        let r = input(r#"{"protocol":"tcp","port":443}"#)
            .to_rule("")
            .unwrap();
        assert_eq!(r.ports, Some(model::PortRange::single(443)));
    }

    #[test]
    fn bad_rules_name_their_field() {
        let field = |json: &str| match input(json).to_rule("rules[2].") {
            Err(StoreError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(r#"{"protocol":"tcp","port":"70000"}"#),
            "rules[2].port"
        );
        assert_eq!(field(r#"{"protocol":"tcp"}"#), "rules[2].port");
        assert_eq!(field(r#"{"protocol":"icmp","port":"22"}"#), "rules[2].port");
        assert_eq!(
            field(r#"{"protocol":"tcp","port":"22","sources":["10.0.0.300/8"]}"#),
            "rules[2].sources[0]"
        );
        assert_eq!(
            field(r#"{"protocol":"tcp","port":"22","sources":["10.0.0.1/8"]}"#),
            "rules[2].sources[0]"
        );
        assert_eq!(field(r#"{"preset":"gopher"}"#), "rules[2].preset");
        assert_eq!(field(r#"{"preset":"SSH","port":"23"}"#), "rules[2].preset");
        assert_eq!(field(r#"{}"#), "rules[2].protocol");
    }

    #[test]
    fn patches_merge_and_revalidate() {
        let base = input(r#"{"protocol":"tcp","port":"22"}"#)
            .to_rule("")
            .unwrap();
        let p: RulePatch = serde_json::from_str(r#"{"protocol":"icmp"}"#).unwrap();
        assert_eq!(p.apply(base.clone()).unwrap().ports, None);
        let p: RulePatch = serde_json::from_str(r#"{"protocol":"any","port":null}"#).unwrap();
        assert_eq!(p.apply(base.clone()).unwrap().ports, None);
        let p: RulePatch = serde_json::from_str(r#"{"port":"0"}"#).unwrap();
        assert!(p.apply(base).is_err());
    }
}
