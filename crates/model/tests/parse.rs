//! The parser: UFW's syntax in, rules out; errors that point at the bad token.

use model::{parse_rule, Action, Direction, PortRange, Ports, Protocol, Rule, Services};

fn one(s: &str) -> Rule {
    let mut v = parse_rule(s, &Services::builtin()).unwrap_or_else(|e| panic!("{s}: {e}"));
    assert_eq!(v.len(), 1, "{s}");
    v.remove(0)
}

fn err(s: &str) -> String {
    parse_rule(s, &Services::builtin())
        .expect_err(s)
        .to_string()
}

#[test]
fn the_issue_examples_parse() {
    let r = one("allow 8080/tcp");
    assert_eq!(
        (r.action, r.direction, r.protocol),
        (Action::Allow, Direction::In, Protocol::Tcp)
    );
    assert_eq!(r.destination_ports, Ports(vec![PortRange::single(8080)]));

    let r = one("allow 22/tcp from 203.0.113.0/24");
    assert_eq!(r.source.0[0].to_string(), "203.0.113.0/24");

    let r = one("allow 60000:61000/udp");
    assert_eq!(
        r.destination_ports,
        Ports(vec![PortRange {
            start: 60000,
            end: 61000
        }])
    );
    assert_eq!(r.protocol, Protocol::Udp);

    let r = one("limit ssh");
    assert_eq!(
        (r.action, r.protocol, r.destination_ports.to_string()),
        (Action::Limit, Protocol::Tcp, "22".into())
    );

    let r = one("reject out 25/tcp");
    assert_eq!((r.action, r.direction), (Action::Reject, Direction::Out));

    let r = one("allow in on eth0 from 2001:db8::/32 to any port 443 proto tcp");
    assert_eq!(r.in_interface.as_deref(), Some("eth0"));
    assert_eq!(r.protocol, Protocol::Tcp);

    let r = one("deny from 198.51.100.7");
    assert_eq!(r.source.0[0].to_string(), "198.51.100.7/32");
    assert_eq!(r.protocol, Protocol::Any);

    let r = one("allow out 53/udp to 9.9.9.9");
    assert_eq!(r.destination.0[0].to_string(), "9.9.9.9/32");

    let r = one("route allow in on eth0 out on eth1 to 203.0.113.10 port 80 proto tcp");
    assert_eq!(
        (
            r.direction,
            r.in_interface.as_deref(),
            r.out_interface.as_deref()
        ),
        (Direction::Routed, Some("eth0"), Some("eth1"))
    );

    let r = one("allow routed 443/tcp from 203.0.113.0/24");
    assert_eq!(r.direction, Direction::Routed);

    let r = one("allow 22/tcp comment 'office VPN'");
    assert_eq!(r.comment.as_deref(), Some("office VPN"));

    let r = one("allow log 80/tcp");
    assert!(r.log);
}

#[test]
fn services_with_different_transports_give_one_rule_each() {
    let v = parse_rule("allow http,ntp", &Services::builtin()).unwrap();
    assert_eq!(
        v.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["allow 80/tcp", "allow 123/udp"]
    );
    // /etc/services overrides the built-in table.
    let s = Services::with_etc_services("https 443/tcp\nhttps 443/udp # HTTP/3\n");
    let v = parse_rule("allow https", &s).unwrap();
    assert_eq!(v[0].to_string(), "allow 443");
}

#[test]
fn errors_point_at_the_token_and_list_what_is_accepted() {
    let e = err("allow 70000/tcp");
    assert!(e.starts_with("port 70000 is out of range 1-65535"), "{e}");
    assert!(e.contains("\n  allow 70000/tcp\n        ^^^^^"), "{e}");

    let e = err("allow 22/tcpp");
    assert!(
        e.starts_with(
            "'tcpp' is not a protocol: tcp, udp, icmp, icmpv6, esp, ah, gre, igmp, ipv6, any"
        ),
        "{e}"
    );
    assert!(e.ends_with("           ^^^^"), "{e}");

    assert!(err("alow 22").starts_with("'alow' is not an action: allow, deny, reject, limit"));
    assert!(err("allow 61000:60000/udp").contains("is reversed: write 60000:61000"));
    assert!(err("allow from 300.1.1.1").contains("'300.1.1.1' is not an address"));
    assert!(err("allow from 10.0.0.5/8").contains("did you mean 10.0.0.0/8?"));
    assert!(err("allow proto icmp to any port 22").contains("icmp has no ports"));
    assert!(err("allow from").contains("'from' needs"));
    assert!(err("allow 22/tcp bogus").contains("unexpected 'bogus'"));
    assert!(err("allow 22 from 10.0.0.0/8 to 2001:db8::1").contains("one address family"));
    assert!(err("allow proto icmp from 2001:db8::/32").contains("IPv4-only"));
    assert!(err("allow out on eth0 in on eth1 22").contains("does not fit"));
    assert!(err("allow 22 comment 'unterminated").contains("unterminated quote"));
    assert!(err("allow nosuchservice").contains("no known service name"));
}

#[test]
fn ruleset_edits_follow_ufw() {
    use model::{AddOutcome, Ruleset};
    let mut rs = Ruleset::default();
    assert_eq!(
        rs.add(one("allow 8080/tcp")),
        AddOutcome::Added { number: 1 }
    );
    assert_eq!(
        rs.add(one("allow 8080/tcp")),
        AddOutcome::Unchanged { number: 1 }
    );
    let out = rs.add(one("deny 8080/tcp"));
    assert!(
        matches!(out, AddOutcome::Replaced { number: 1, .. }),
        "{out:?}"
    );
    assert_eq!(rs.rules.len(), 1);
    assert_eq!(rs.rules[0].action, Action::Deny);
    rs.add(one("allow 22/tcp"));
    assert_eq!(
        rs.insert(1, one("deny from 198.51.100.7")).unwrap(),
        AddOutcome::Added { number: 1 }
    );
    assert_eq!(rs.rules[0].to_string(), "deny from 198.51.100.7");
    assert!(rs.insert(9, one("allow 1/tcp")).is_err());
    assert_eq!(rs.delete_rule(&one("allow 22/tcp")).unwrap().0, 3);
    assert!(rs.delete_rule(&one("allow 22/tcp")).is_err());
    assert_eq!(
        rs.delete_number(1).unwrap().to_string(),
        "deny from 198.51.100.7"
    );
    assert!(rs.delete_number(5).is_err());
}

#[test]
fn config_round_trips_and_names_the_bad_line() {
    use model::HostConfig;
    let s = Services::builtin();
    let text = "enabled = true\nlogging = \"on\"\nrules = [\"allow 22/tcp from 203.0.113.0/24 comment 'office'\", \"limit ssh\"]\n[defaults]\nincoming = \"reject\"\n";
    let c = HostConfig::from_toml(text, &s).unwrap();
    assert_eq!(c.ruleset.rules.len(), 2);
    assert_eq!(c.ruleset.defaults.incoming, model::Policy::Reject);
    assert_eq!(c.ruleset.defaults.outgoing, model::Policy::Allow);
    assert_eq!(HostConfig::from_toml(&c.to_toml(), &s).unwrap(), c);
    let bad = "rules = [\"allow 22/tcp\", \"allow 99999/tcp\"]\n";
    let e = HostConfig::from_toml(bad, &s).unwrap_err().to_string();
    assert!(e.contains("rule 2") && e.contains("out of range"), "{e}");
    assert!(
        HostConfig::from_toml("enabld = true\n", &s).is_err(),
        "unknown keys are refused"
    );
}

/// Found by the rule_parse fuzz target: in a quoted word, the spans of its
/// parts (ports, protocol, addresses) were counted from the opening quote,
/// one byte early, so an error could point inside a multi-byte character and
/// printing it panicked. They point at the text itself.
#[test]
fn errors_in_quoted_words_point_at_their_text() {
    let services = Services::builtin();
    for (input, bad) in [
        ("allow 'у'", "у"),
        ("allow '22/tсp'", "tсp"),
        ("allow \"80,ё\"", "ё"),
        ("deny from '10.0.0.0/8,ж'", "ж"),
    ] {
        let e = parse_rule(input, &services).expect_err(input);
        assert_eq!(&e.input[e.span.clone()], bad, "{input}");
        let shown = e.to_string();
        assert!(shown.contains(input), "{shown}");
    }
    // The same words given as separate arguments, as a shell passes them.
    let e = model::parse_rule_args(&["allow", "22/tсp x"], &services).expect_err("args");
    assert_eq!(&e.input[e.span.clone()], "tсp x");
    let _ = e.to_string();
}

/// Issue 18: UFW's application profiles, resolved as they are parsed.
#[test]
fn application_profiles_resolve_to_their_ports() {
    let r = one("allow OpenSSH");
    assert_eq!(r.to_string(), "allow 22/tcp comment 'OpenSSH'");
    let r = one("allow from 198.51.100.0/24 to any app 'WWW Full' comment 'web'");
    assert_eq!(
        r.to_string(),
        "allow 80,443/tcp from 198.51.100.0/24 comment 'web'"
    );
    let rules = parse_rule("allow CIFS", &Services::builtin()).unwrap();
    let text: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        text,
        [
            "allow 139,445/tcp comment 'CIFS'",
            "allow 137,138/udp comment 'CIFS'"
        ]
    );
    // A profile without protocols means TCP and UDP, as a bare port does.
    assert_eq!(one("allow DNS").protocol, Protocol::Any);
    // The profiles of /etc/ufw/applications.d replace and add to Debian's.
    let mut s = Services::builtin();
    s.add_profiles("[Game]\ntitle=x\nports=27015/udp|27015:27030/tcp\n")
        .unwrap();
    let v = parse_rule("limit Game", &s).unwrap();
    assert_eq!(v.len(), 2);

    // A source port stays with a profile (nothing is widened).
    let r = one("allow from 198.51.100.7 port 40000:40099 to any app OpenSSH");
    assert_eq!(
        r.to_string(),
        "allow proto tcp from 198.51.100.7 port 40000:40099 to any port 22 comment 'OpenSSH'"
    );
    assert!(
        err("allow openssh").contains("did you mean 'OpenSSH'"),
        "{}",
        err("allow openssh")
    );
    assert!(err("allow to any app Nope").contains("'Nope' is not an application profile"));
    assert!(err("allow from any app OpenSSH").contains("'to ADDR app NAME'"));
    assert!(err("allow OpenSSH proto udp").contains("names its own protocols"));
    assert!(err("allow OpenSSH 80/tcp").contains("unexpected '80/tcp'"));
}

/// Issue 18: the protocols `man ufw` lists beyond TCP and UDP.
#[test]
fn ipsec_gre_igmp_and_6in4_are_protocols_without_ports() {
    for (text, p) in [
        ("allow proto esp from 203.0.113.9", Protocol::Esp),
        ("allow proto ah", Protocol::Ah),
        ("allow proto gre from 198.51.100.0/24", Protocol::Gre),
        ("allow proto igmp", Protocol::Igmp),
        ("allow proto ipv6 from 192.0.2.1", Protocol::Ipv6),
        ("allow proto GRE", Protocol::Gre),
    ] {
        let r = one(text);
        assert_eq!(r.protocol, p, "{text}");
        assert_eq!(one(&r.to_string()), r, "{text} prints and reads back");
    }
    // 6in4 is IPv4's: an IPv6 packet with next header 41 (6in6) is not it.
    let rule = one("allow proto ipv6");
    let packet = |src: &str, dst: &str| model::Packet {
        direction: Direction::In,
        in_interface: Some("eth0".into()),
        out_interface: None,
        protocol: model::PacketProtocol::Other(41),
        source: src.parse().unwrap(),
        destination: dst.parse().unwrap(),
        source_port: None,
        destination_port: None,
        icmp_type: None,
        hop_limit: None,
        state: model::ConnState::New,
    };
    assert!(model::rule_matches(
        &rule,
        &packet("192.0.2.1", "192.0.2.2")
    ));
    assert!(!model::rule_matches(
        &rule,
        &packet("2001:db8::1", "2001:db8::2")
    ));
    assert!(err("allow proto esp port 500").contains("esp has no ports"));
    assert!(err("allow proto igmp from 2001:db8::1").contains("igmp is IPv4-only"));
    assert!(err("allow proto ipv6 from 2001:db8::1").contains("ipv6 is IPv4-only"));
    assert!(
        err("allow proto sctp").contains("tcp, udp, icmp, icmpv6, esp, ah, gre, igmp, ipv6, any")
    );
}

/// Issue 18: `limit` rates, parsed in one place.
#[test]
fn limit_rates_parse_print_and_refuse_what_they_cannot_mean() {
    use model::Rate;
    for (text, connections, seconds) in [
        ("10/60s", 10, 60),
        ("10/1m", 10, 60),
        ("100/1h", 100, 3600),
        ("3/7", 3, 7),
    ] {
        let r: Rate = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!((r.connections, r.seconds), (connections, seconds), "{text}");
        assert_eq!(
            r.to_string().parse::<Rate>(),
            Ok(r),
            "{text} prints and reads back"
        );
    }
    for bad in [
        "0/10s",
        "10/0s",
        "ten",
        "10",
        "10/86401s",
        "10001/1h",
        "1/-5s",
        "1/5x",
        "/5s",
    ] {
        let e = bad.parse::<Rate>().unwrap_err();
        assert!(e.contains(&format!("'{bad}' is not a rate")), "{bad}: {e}");
    }
    let r = one("limit ssh rate 10/1m");
    assert_eq!(r.to_string(), "limit 22/tcp rate 10/60s");
    // UFW's own rate is the default, and written without a clause.
    let r = one("limit ssh rate 5/30s");
    assert_eq!((r.rate, r.to_string()), (None, "limit 22/tcp".to_string()));
    assert_eq!(r.limit_rate(), Rate::UFW);
}
