//! The ordered ruleset of a host and its default policies, and the edits the CLI
//! makes to it (add with UFW's replace-in-place, insert, delete).

use crate::builtins::Switches;
use crate::list::Lists;
use crate::rule::{Direction, Rule};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a direction does with a packet no rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Allow,
    Deny,
    Reject,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Allow => "allow",
            Policy::Deny => "deny",
            Policy::Reject => "reject",
        }
    }
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "allow" | "accept" => Ok(Policy::Allow),
            "deny" | "drop" => Ok(Policy::Deny),
            "reject" => Ok(Policy::Reject),
            _ => Err(format!("'{s}' is not a policy: allow, deny, reject")),
        }
    }
}

/// Default policies: incoming deny, outgoing allow, routed deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Defaults {
    pub incoming: Policy,
    pub outgoing: Policy,
    pub routed: Policy,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            incoming: Policy::Deny,
            outgoing: Policy::Allow,
            routed: Policy::Deny,
        }
    }
}

impl Defaults {
    pub fn get(&self, d: Direction) -> Policy {
        match d {
            Direction::In => self.incoming,
            Direction::Out => self.outgoing,
            Direction::Routed => self.routed,
        }
    }
    pub fn set(&mut self, d: Direction, p: Policy) {
        match d {
            Direction::In => self.incoming = p,
            Direction::Out => self.outgoing = p,
            Direction::Routed => self.routed = p,
        }
    }
}

/// What is logged (with the `portwall` prefix, rate-limited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Logging {
    /// Only rules marked `log`.
    #[default]
    Off,
    /// Also what the default policies block.
    On,
    /// Also every new connection a rule allows.
    Full,
}

impl Logging {
    pub fn as_str(self) -> &'static str {
        match self {
            Logging::Off => "off",
            Logging::On => "on",
            Logging::Full => "full",
        }
    }
}

impl std::str::FromStr for Logging {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(Logging::Off),
            "on" | "low" => Ok(Logging::On),
            "full" | "high" => Ok(Logging::Full),
            _ => Err(format!("'{s}' is not a logging level: off, on, full")),
        }
    }
}

/// An ordered list of rules: the first rule that matches a packet decides it;
/// when none does, the default policy of the packet's direction decides.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ruleset {
    pub rules: Vec<Rule>,
    pub defaults: Defaults,
    #[serde(default)]
    pub logging: Logging,
    /// Which of UFW's built-in accepts are on ([`crate::builtins`]).
    #[serde(default)]
    pub builtins: Switches,
    /// The contents of the lists the rules name, as loaded for this change
    /// (they live in files of their own, not in the rules).
    #[serde(skip)]
    pub lists: Lists,
}

/// What adding a rule did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AddOutcome {
    /// Added at this 1-based position.
    Added { number: usize },
    /// A rule with the same match existed; its action (and comment, log) changed.
    Replaced { number: usize, previous: Box<Rule> },
    /// The identical rule existed; nothing changed.
    Unchanged { number: usize },
}

impl AddOutcome {
    pub fn changed(&self) -> bool {
        !matches!(self, AddOutcome::Unchanged { .. })
    }
}

/// An edit that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesetError {
    #[error("there is no rule number {number}: the ruleset has {len} rule(s) (see 'portwall status --numbered')")]
    NoSuchNumber { number: usize, len: usize },
    #[error("position {number} is out of range: insert takes 1 to {max}")]
    BadPosition { number: usize, max: usize },
    #[error("no rule '{0}' exists (see 'portwall status --numbered')")]
    NoSuchRule(String),
}

impl Ruleset {
    /// Adds a rule at the end, or replaces the action of the rule with the same
    /// match in place (as UFW does), so `deny 8080/tcp` after `allow 8080/tcp`
    /// closes the port instead of adding a shadowed rule.
    pub fn add(&mut self, rule: Rule) -> AddOutcome {
        self.put(rule, None)
    }

    /// Inserts a rule before the 1-based position `number` (`len + 1` appends).
    /// A rule with the same match is replaced where it stands.
    pub fn insert(&mut self, number: usize, rule: Rule) -> Result<AddOutcome, RulesetError> {
        let max = self.rules.len() + 1;
        if number == 0 || number > max {
            return Err(RulesetError::BadPosition { number, max });
        }
        Ok(self.put(rule, Some(number - 1)))
    }

    fn put(&mut self, rule: Rule, at: Option<usize>) -> AddOutcome {
        if let Some(i) = self.rules.iter().position(|r| r.same_match(&rule)) {
            let existing = &mut self.rules[i];
            // A temporary rule over a permanent one of the same action does
            // not make it temporary.
            let until = match (existing.until, rule.until) {
                (None, Some(_)) if existing.action == rule.action => None,
                (_, new) => new,
            };
            if existing.action == rule.action
                && existing.log == rule.log
                && existing.rate == rule.rate
                && existing.until == until
                && (rule.comment.is_none() || existing.comment == rule.comment)
            {
                return AddOutcome::Unchanged { number: i + 1 };
            }
            let previous = existing.clone();
            existing.action = rule.action;
            existing.log = rule.log;
            existing.rate = rule.rate;
            existing.until = until;
            if rule.comment.is_some() {
                existing.comment = rule.comment;
            }
            return AddOutcome::Replaced {
                number: i + 1,
                previous: Box::new(previous),
            };
        }
        match at {
            Some(i) => {
                self.rules.insert(i, rule);
                AddOutcome::Added { number: i + 1 }
            }
            None => {
                self.rules.push(rule);
                AddOutcome::Added {
                    number: self.rules.len(),
                }
            }
        }
    }

    /// Deletes the rule at the 1-based position `number`.
    pub fn delete_number(&mut self, number: usize) -> Result<Rule, RulesetError> {
        if number == 0 || number > self.rules.len() {
            return Err(RulesetError::NoSuchNumber {
                number,
                len: self.rules.len(),
            });
        }
        Ok(self.rules.remove(number - 1))
    }

    /// Deletes the rule with this action and match (its comment does not matter).
    pub fn delete_rule(&mut self, rule: &Rule) -> Result<(usize, Rule), RulesetError> {
        match self
            .rules
            .iter()
            .position(|r| r.same_match(rule) && r.action == rule.action)
        {
            Some(i) => Ok((i + 1, self.rules.remove(i))),
            None => Err(RulesetError::NoSuchRule(rule.to_string())),
        }
    }
}

impl fmt::Display for Ruleset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in Direction::ALL {
            writeln!(
                f,
                "default {} {}",
                self.defaults.get(d).as_str(),
                d.policy_name()
            )?;
        }
        writeln!(f, "logging {}", self.logging.as_str())?;
        for r in &self.rules {
            writeln!(f, "{r}")?;
        }
        Ok(())
    }
}
