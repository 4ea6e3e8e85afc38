//! `portwall metrics [--output FILE]`: the OS firewall's counters in the
//! Prometheus text format (version 0.0.4), the format of node_exporter's
//! textfile collector.
//!
//! The counters are those of `portwall status --verbose`, read from the
//! kernel the same way ([`super::status::collect`]): per rule, per default
//! policy and per built-in rule, packets and bytes. Without `--output` the
//! text goes to stdout; with it, the file is replaced atomically (written
//! under a temporary name that does not end in `.prom`, flushed, renamed), so
//! node_exporter never reads half a file. Run it from a timer:
//!
//! ```text
//! portwall metrics --output /var/lib/prometheus/node-exporter/portwall.prom
//! ```
//!
//! Series: `portwall_table_loaded`, `portwall_enabled`, `portwall_rules`,
//! `portwall_kernel_drift` (gauges), and the counters
//! `portwall_rule_packets_total` / `portwall_rule_bytes_total{number, rule,
//! comment}`, `portwall_policy_{packets,bytes}_total{direction, policy}`,
//! `portwall_builtin_{packets,bytes}_total{name}`. A rule is labelled by
//! its text (`allow 22/tcp from 203.0.113.0/24`) as well as its number, so
//! its series survive an insert above it.

use crate::exit;
use crate::output::print_json;
use crate::Global;
use anyhow::Result;
use clap::Args;
use host::config_dir;
use netfilter::Count;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Write the metrics to FILE (atomically) instead of stdout, e.g.
    /// /var/lib/prometheus/node-exporter/portwall.prom.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Written {
    output: Option<String>,
    loaded: bool,
    rules: usize,
    series: usize,
    bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

/// The Prometheus text format: families of samples, each with HELP and TYPE.
#[derive(Default)]
struct Exposition {
    text: String,
    series: usize,
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
        self.series += 1;
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// Two counter families, `{stem}_packets_total` and `{stem}_bytes_total`,
    /// with one sample per (labels, count).
    fn counts(&mut self, stem: &str, what: &str, rows: &[(Vec<(&str, &str)>, Count)]) {
        for (unit, pick) in [
            ("packets", (|c: &Count| c.packets) as fn(&Count) -> u64),
            ("bytes", (|c: &Count| c.bytes) as fn(&Count) -> u64),
        ] {
            let name = format!("{stem}_{unit}_total");
            self.family(
                &name,
                "counter",
                &format!("{unit} {what} (the kernel's counter)"),
            );
            for (labels, count) in rows {
                self.sample(&name, labels, pick(count));
            }
        }
    }
}

fn render(s: &super::status::Status) -> Exposition {
    let mut e = Exposition::default();
    e.gauge(
        "portwall_table_loaded",
        "Whether portwall's table is loaded in the kernel (1) or not (0)",
        u64::from(s.loaded),
    );
    e.gauge(
        "portwall_enabled",
        "Whether portwall is enabled (its rules are restored at boot)",
        u64::from(s.enabled),
    );
    e.gauge(
        "portwall_rules",
        "Rules in force (the loaded ruleset, else the saved one)",
        s.rules.len() as u64,
    );
    e.gauge(
        "portwall_kernel_drift",
        "How many ways the kernel's table differs from what portwall applied (0: it matches)",
        s.kernel_drift.len() as u64,
    );
    if !s.loaded {
        return e;
    }
    let texts: Vec<(String, String, String)> = s
        .rules
        .iter()
        .map(|r| {
            let mut rule = r.value.clone();
            let comment = rule.comment.take().unwrap_or_default();
            (r.number.to_string(), rule.to_string(), comment)
        })
        .collect();
    let rules: Vec<(Vec<(&str, &str)>, Count)> = s
        .rules
        .iter()
        .zip(&texts)
        .map(|(r, (number, rule, comment))| {
            (
                vec![
                    ("number", number.as_str()),
                    ("rule", rule.as_str()),
                    ("comment", comment.as_str()),
                ],
                r.counters.unwrap_or_default(),
            )
        })
        .collect();
    e.counts("portwall_rule", "a rule matched", &rules);
    let policies: Vec<(Vec<(&str, &str)>, Count)> = s
        .defaults
        .iter()
        .map(|p| {
            (
                vec![("direction", p.direction), ("policy", p.policy.as_str())],
                p.counters.unwrap_or_default(),
            )
        })
        .collect();
    e.counts(
        "portwall_policy",
        "a default policy decided (no rule matched)",
        &policies,
    );
    if let Some(b) = &s.builtins {
        let mut names: Vec<&String> = b.keys().collect();
        names.sort();
        let builtins: Vec<(Vec<(&str, &str)>, Count)> = names
            .into_iter()
            .map(|n| (vec![("name", n.as_str())], b[n]))
            .collect();
        e.counts(
            "portwall_builtin",
            "a built-in rule matched (established, invalid, loopback, neighbour discovery)",
            &builtins,
        );
    }
    e
}

pub fn run(global: &Global, args: &MetricsArgs) -> Result<u8> {
    let status = super::status::collect(global, true, false)?;
    let e = render(&status);
    if let Some(path) = &args.output {
        config_dir::write_atomically(path, e.text.as_bytes())?;
    } else if !global.json {
        print!("{}", e.text);
    }
    if global.json {
        print_json(&Written {
            output: args.output.as_ref().map(|p| p.display().to_string()),
            loaded: status.loaded,
            rules: status.rules.len(),
            series: e.series,
            bytes: e.text.len(),
            text: args.output.is_none().then_some(e.text),
        })?;
    } else if let Some(path) = &args.output {
        eprintln!("wrote {} series to {}", e.series, path.display());
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::default();
        e.sample("x_total", &[("comment", "a \"b\" \\ c\nd")], 1);
        assert_eq!(e.text, "x_total{comment=\"a \\\"b\\\" \\\\ c\\nd\"} 1\n");
    }
}
