//! UFW's application profiles: `allow OpenSSH`, `allow 'WWW Full'`,
//! `allow from 192.0.2.0/24 to any app Samba`.
//!
//! A profile names ports and protocols in an INI file of
//! `/etc/ufw/applications.d` (`[Name]`, then `ports=80,443/tcp|53`: entries
//! separated by `|`, each a comma list of ports and `A:B` ranges with an
//! optional `/tcp` or `/udp`; without one, both). [`parse_profiles`] is the
//! one reader of that grammar; the CLI passes it the files' texts, and
//! [`DEBIAN_PROFILES`], the profiles Debian's `ufw` and `openssh-server`
//! packages ship, is the built-in fallback where those files are absent.
//!
//! A rule naming a profile is resolved when it is parsed, like a service
//! name: `allow OpenSSH` is saved as `allow 22/tcp comment 'OpenSSH'`. (UFW
//! keeps the name and re-reads the profile on `ufw app update`; portwall's
//! saved rules say what the kernel enforces, whatever the files say later.)

use crate::rule::{PortRange, Protocol};
use std::collections::BTreeMap;

/// The ports of one profile: per protocol (TCP, UDP, or `Any` for both),
/// the ports and ranges.
pub type ProfilePorts = Vec<(Protocol, Vec<PortRange>)>;

/// Profiles by name (case matters, as in UFW).
pub type Profiles = BTreeMap<String, ProfilePorts>;

/// A profile text that cannot be read: the line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ProfileError {
    pub line: usize,
    pub message: String,
}

/// Reads the profiles of one file of `/etc/ufw/applications.d`, whole or
/// not at all (the error names the first bad line).
pub fn parse_profiles(text: &str) -> Result<Profiles, ProfileError> {
    let mut out = Profiles::new();
    let mut current: Option<(String, usize, Option<ProfilePorts>)> = None;
    let finish = |out: &mut Profiles, cur: Option<(String, usize, Option<ProfilePorts>)>| {
        if let Some((name, line, ports)) = cur {
            let ports = ports.ok_or_else(|| ProfileError {
                line,
                message: format!("profile '{name}' has no 'ports=' line"),
            })?;
            out.insert(name, ports);
        }
        Ok(())
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(rest) = t.strip_prefix('[') {
            let name = rest.strip_suffix(']').ok_or_else(|| ProfileError {
                line,
                message: format!("'{t}' is not a section header: [Name]"),
            })?;
            check_name(name).map_err(|message| ProfileError { line, message })?;
            finish(&mut out, current.take())?;
            if out.contains_key(name) {
                return Err(ProfileError {
                    line,
                    message: format!("profile '{name}' is given twice"),
                });
            }
            current = Some((name.to_string(), line, None));
            continue;
        }
        let (key, value) = t.split_once('=').ok_or_else(|| ProfileError {
            line,
            message: format!("'{t}' is neither a [Name] header nor a key=value line"),
        })?;
        let Some((_, _, ports)) = current.as_mut() else {
            return Err(ProfileError {
                line,
                message: "a key before any [Name] header".into(),
            });
        };
        if key.trim().eq_ignore_ascii_case("ports") {
            *ports =
                Some(parse_ports(value.trim()).map_err(|message| ProfileError { line, message })?);
        }
    }
    finish(&mut out, current)?;
    Ok(out)
}

/// A profile name as UFW accepts it: 1-64 characters, starting with a letter
/// or digit, of letters, digits, spaces and `_.+-`.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _.+-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a profile name: 1-64 letters, digits, spaces and _.+-, starting with a letter or digit"
        ))
    }
}

/// `80,443/tcp|53|6881:6891/udp`.
fn parse_ports(value: &str) -> Result<ProfilePorts, String> {
    let mut out: ProfilePorts = Vec::new();
    for entry in value.split('|') {
        let (list, proto) = match entry.split_once('/') {
            Some((l, p)) => match p {
                "tcp" => (l, Protocol::Tcp),
                "udp" => (l, Protocol::Udp),
                _ => {
                    return Err(format!(
                        "'{p}' in '{entry}' is not a profile's protocol: tcp, udp"
                    ))
                }
            },
            None => (entry, Protocol::Any),
        };
        let mut ranges = Vec::new();
        for part in list.split(',') {
            if !part.bytes().all(|b| b.is_ascii_digit() || b == b':') {
                return Err(format!(
                    "'{part}' in '{entry}' is not a port or range: 1-65535, A:B"
                ));
            }
            ranges.push(part.parse::<PortRange>().map_err(|e| e.to_string())?);
        }
        match out.iter_mut().find(|(p, _)| *p == proto) {
            Some((_, v)) => v.extend(ranges),
            None => out.push((proto, ranges)),
        }
    }
    // In protocol order, as the rules of service names come out.
    out.sort_by_key(|(p, _)| *p);
    Ok(out)
}

/// The profiles Debian's packages ship (`ufw`'s applications.d files and
/// `openssh-server`'s), for hosts without `/etc/ufw/applications.d`.
pub const DEBIAN_PROFILES: &str = "\
[OpenSSH]\nports=22/tcp\n\
[Transmission]\nports=51413\n\
[Deluge]\nports=6881:6891/tcp\n\
[KTorrent]\nports=6881/tcp|4444/udp\n\
[qBittorrent]\nports=6881/tcp\n\
[PeopleNearby]\nports=5353/udp|5298\n\
[Bonjour]\nports=5353/udp|5298\n\
[MSN]\nports=1863|6891:6900/tcp|6901\n\
[MSN SSL]\nports=443/tcp\n\
[AIM]\nports=5190/tcp\n\
[Yahoo]\nports=5050\n\
[XMPP]\nports=5222/tcp|5269/tcp\n\
[Kerberos KDC]\nports=88\n\
[Kerberos Admin]\nports=749/tcp\n\
[Kerberos Password]\nports=464/udp\n\
[Kerberos Full]\nports=88,749/tcp|464/udp\n\
[LDAP]\nports=389/tcp\n\
[LDAPS]\nports=636/tcp\n\
[DNS]\nports=53\n\
[CIFS]\nports=137,138/udp|139,445/tcp\n\
[NFS]\nports=2049,111/tcp|2049,111/udp\n\
[svnserve]\nports=3690/tcp\n\
[Telnet]\nports=23/tcp\n\
[SSH]\nports=22/tcp\n\
[VNC]\nports=5900/tcp\n\
[POP3]\nports=110/tcp\n\
[POP3S]\nports=995/tcp\n\
[IMAP]\nports=143/tcp\n\
[IMAPS]\nports=993/tcp\n\
[SMTP]\nports=25/tcp\n\
[Mail submission]\nports=587/tcp\n\
[IPP]\nports=631\n\
[LPD]\nports=515/tcp\n\
[Socks]\nports=1080/tcp\n\
[Transparent Proxy]\nports=8081/tcp\n\
[WWW]\nports=80/tcp\n\
[WWW Secure]\nports=443/tcp\n\
[WWW Full]\nports=80,443/tcp\n\
[WWW Cache]\nports=8080/tcp\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_profiles_read_as_ufw_reads_them() {
        let p = parse_profiles(DEBIAN_PROFILES).unwrap();
        assert_eq!(p.len(), 39);
        assert_eq!(
            p["OpenSSH"],
            vec![(Protocol::Tcp, vec![PortRange::single(22)])]
        );
        assert_eq!(
            p["WWW Full"],
            vec![(
                Protocol::Tcp,
                vec![PortRange::single(80), PortRange::single(443)]
            )]
        );
        assert_eq!(
            p["MSN"],
            vec![
                (
                    Protocol::Any,
                    vec![PortRange::single(1863), PortRange::single(6901)]
                ),
                (Protocol::Tcp, vec![PortRange::new(6891, 6900).unwrap()]),
            ]
        );
        assert_eq!(
            p["Deluge"],
            vec![(Protocol::Tcp, vec![PortRange::new(6881, 6891).unwrap()])]
        );
    }

    #[test]
    fn a_bad_file_is_refused_naming_its_line() {
        for (text, line, says) in [
            ("[Web]\nports=80/sctp\n", 2, "'sctp'"),
            ("[Web]\nports=http/tcp\n", 2, "'http'"),
            ("[Web]\ntitle=x\n", 1, "no 'ports='"),
            ("ports=80\n", 1, "before any [Name]"),
            ("[Web\nports=80\n", 1, "section header"),
            ("[-x]\nports=80\n", 1, "profile name"),
            ("[A]\nports=1\n[A]\nports=2\n", 3, "twice"),
            ("[A]\nports=0\n", 2, "1-65535"),
        ] {
            let e = parse_profiles(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(says), "{text:?}: {e}");
        }
    }
}
