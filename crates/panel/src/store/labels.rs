//! Server labels (`env=prod`) and the selectors that match them.

use super::StoreError;
use std::collections::BTreeMap;

const MAX_LABELS: usize = 64;

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 63
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks a server's labels; the error names the offending key.
pub fn parse_labels(labels: &BTreeMap<String, String>) -> Result<(), StoreError> {
    if labels.len() > MAX_LABELS {
        return Err(StoreError::invalid(
            "labels",
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    for (k, v) in labels {
        if !valid_key(k) {
            return Err(StoreError::invalid(
                format!("labels.{k}"),
                format!("'{k}' is not a label key: 1-63 of A-Z a-z 0-9 . _ - /"),
            ));
        }
        if !valid_value(v) {
            return Err(StoreError::invalid(
                format!("labels.{k}"),
                format!("'{v}' is not a label value: up to 63 of A-Z a-z 0-9 . _ -"),
            ));
        }
    }
    Ok(())
}

/// `key=value[,key=value...]`; a server matches when it has every pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(BTreeMap<String, String>);

impl Selector {
    /// Parses and canonicalizes a selector; errors name `selector`.
    pub fn parse(s: &str) -> Result<Selector, StoreError> {
        let bad = |m: String| StoreError::invalid("selector", m);
        let mut pairs = BTreeMap::new();
        for part in s.split(',') {
            let part = part.trim();
            let Some((k, v)) = part.split_once('=') else {
                return Err(bad(format!("'{part}' is not key=value (e.g. env=prod)")));
            };
            let (k, v) = (k.trim(), v.trim());
            if !valid_key(k) || !valid_value(v) {
                return Err(bad(format!("'{part}': keys are 1-63 of A-Z a-z 0-9 . _ - /, values up to 63 of A-Z a-z 0-9 . _ -")));
            }
            if pairs.insert(k.to_string(), v.to_string()).is_some() {
                return Err(bad(format!("'{k}' appears twice")));
            }
        }
        Ok(Selector(pairs))
    }

    /// Whether a server with these labels matches.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// Checks an edge zone name.
pub(crate) fn check_zone(field: &str, zone: &str) -> Result<(), StoreError> {
    if zone.is_empty()
        || zone.len() > 63
        || !zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(StoreError::invalid(
            field,
            format!("'{zone}' is not a zone name: 1-63 of A-Z a-z 0-9 - _ ."),
        ));
    }
    Ok(())
}

/// Checks a display name (customer, server, firewall, token).
pub(crate) fn check_name(field: &str, name: &str) -> Result<(), StoreError> {
    if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            field,
            "1-100 characters, no control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_canonically_and_match_all_pairs() {
        let s = Selector::parse(" role=web , env=prod").unwrap();
        assert_eq!(s.to_string(), "env=prod,role=web");
        let mut labels = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        assert!(!s.matches(&labels));
        labels.insert("role".into(), "web".into());
        assert!(s.matches(&labels));
        assert!(Selector::parse("env").is_err());
        assert!(Selector::parse("env=a,env=b").is_err());
        assert!(Selector::parse("bad key=x").is_err());
    }
}
