//! `portwall metrics`: the OS firewall's counters in node_exporter's textfile
//! format, from the real binary in a namespace this test creates, parsed with
//! a strict Prometheus text parser (`openmetrics-parser`'s). Traffic to an allowed port
//! moves its rule's counter in the file; a dropped packet moves the incoming
//! policy's.

mod common;
#[path = "../../panel/tests/common/scrape.rs"]
mod scrape;
use common::ok;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use scrape::samples;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use testns::traffic::{self, Listeners, Seen};
use testns::Pair;

type Scrape = MetricsExposition<PrometheusType, PrometheusValue>;

fn parse(text: &str) -> Scrape {
    openmetrics_parser::prometheus::parse_prometheus(text)
        .unwrap_or_else(|e| panic!("not a Prometheus text exposition ({e:?}):\n{text}"))
}

/// The one counter sample `name{labels}`; the family must be typed counter.
fn counter(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(s, name, labels).first().map(|v| match v {
        PrometheusValue::Counter(c) => c.value.as_f64(),
        other => panic!("{name} is not a counter: {other:?}"),
    })
}

fn gauge(s: &Scrape, name: &str) -> Option<f64> {
    samples(s, name, &[]).first().map(|v| match v {
        PrometheusValue::Gauge(n) => n.as_f64(),
        other => panic!("{name} is not a gauge: {other:?}"),
    })
}

#[test]
fn traffic_moves_a_rules_counter_in_the_textfile() {
    let pair = Pair::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server: IpAddr = pair.server_addr.v4.parse().unwrap();
    let client: IpAddr = pair.client_addr.v4.parse().unwrap();
    let _l = Listeners::start(&pair.server, &[server], &[8080]);

    // Not enabled: the gauges say so, no counters.
    let text = ok(&pair.server, d, &["metrics"]);
    let s = parse(&text);
    assert_eq!(gauge(&s, "portwall_table_loaded"), Some(0.0));
    assert_eq!(counter(&s, "portwall_rule_packets_total", &[]), None);

    ok(&pair.server, d, &["enable"]);
    ok(&pair.server, d, &["allow", "8080/tcp", "comment", "web"]);
    let textfile = d.join("textfile").join("portwall.prom");
    std::fs::create_dir_all(textfile.parent().unwrap()).unwrap();
    let read = |path: &std::path::Path| {
        ok(
            &pair.server,
            d,
            &["metrics", "--output", path.to_str().unwrap()],
        );
        parse(&std::fs::read_to_string(path).unwrap())
    };
    let rule = [
        ("number", "1"),
        ("rule", "allow 8080/tcp"),
        ("comment", "web"),
    ];
    let before = read(&textfile);
    assert_eq!(gauge(&before, "portwall_table_loaded"), Some(1.0));
    assert_eq!(gauge(&before, "portwall_rules"), Some(1.0));
    assert_eq!(gauge(&before, "portwall_kernel_drift"), Some(0.0));
    let p0 = counter(&before, "portwall_rule_packets_total", &rule)
        .unwrap_or_else(|| panic!("no counter for the rule: {before:?}"));
    let b0 = counter(&before, "portwall_rule_bytes_total", &rule).unwrap();
    let incoming = [("direction", "incoming"), ("policy", "deny")];
    let dropped0 = counter(&before, "portwall_policy_packets_total", &incoming).unwrap();

    let t = Duration::from_millis(400);
    for i in 0..3 {
        let seen = pair.client.run(move || {
            traffic::tcp(
                SocketAddr::new(client, 31000 + i),
                SocketAddr::new(server, 8080),
                t,
            )
        });
        assert_eq!(seen, Seen::Open);
    }
    let seen = pair
        .client
        .run(move || traffic::tcp(SocketAddr::new(client, 0), SocketAddr::new(server, 9), t));
    assert_eq!(seen, Seen::Timeout);

    let after = read(&textfile);
    let p1 = counter(&after, "portwall_rule_packets_total", &rule).unwrap();
    assert!(p1 >= p0 + 3.0, "three new connections: {p0} -> {p1}");
    assert!(counter(&after, "portwall_rule_bytes_total", &rule).unwrap() > b0);
    assert!(counter(&after, "portwall_policy_packets_total", &incoming).unwrap() > dropped0);
    assert!(counter(
        &after,
        "portwall_builtin_packets_total",
        &[("name", "established")]
    )
    .is_some());
    // Written atomically: nothing but the file itself is left in the directory.
    let names: Vec<_> = std::fs::read_dir(textfile.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("portwall.prom")]);

    let json: serde_json::Value = serde_json::from_str(&ok(
        &pair.server,
        d,
        &["metrics", "--json", "--output", textfile.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(json["loaded"], true);
    assert_eq!(json["rules"], 1);
    assert!(json["series"].as_u64().unwrap() >= 6);
}
