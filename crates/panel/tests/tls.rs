//! `portwall-panel` on HTTPS, as an operator runs it: the binary with
//! `--tls-cert/--tls-key` from a throwaway CA, spoken to over real TLS
//! (rustls). It sends HSTS and Secure session cookies, reloads its certificate
//! on SIGHUP while an open connection keeps working, keeps the old certificate
//! when the new files are bad, and refuses plain HTTP off loopback unless told
//! it is behind a TLS-terminating proxy.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls::authority::Authority;
use tls::rustls;

/// One TLS connection to the panel, verified against the CA in `ca`.
struct Conn(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl Conn {
    fn open(port: u16, ca: &Path) -> Result<Conn, String> {
        let config = tls::ClientTls {
            ca_file: Some(ca.to_path_buf()),
            insecure_http: false,
        }
        .config()
        .map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        // Completes the handshake, so a wrong certificate shows here.
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).map_err(|e| e.to_string())?;
        }
        Ok(Conn(s))
    }

    /// A form request (or a GET) on this connection, kept alive.
    fn request(&mut self, method: &str, path: &str, body: &str) -> (String, Vec<String>, String) {
        self.send(
            method,
            path,
            "Content-Type: application/x-www-form-urlencoded\r\n",
            body,
        )
    }

    /// One HTTP/1.1 request with `extra` header lines: (status line, headers
    /// in lower case, body).
    fn send(
        &mut self,
        method: &str,
        path: &str,
        extra: &str,
        body: &str,
    ) -> (String, Vec<String>, String) {
        write!(
            self.0,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        self.0.flush().unwrap();
        let mut r = BufReader::new(&mut self.0);
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        let mut headers = Vec::new();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let line = line.trim_end().to_string();
            if line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            headers.push(lower);
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).unwrap();
        (
            status.trim_end().to_string(),
            headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }
}

struct PanelProcess {
    child: Child,
    port: u16,
    admin: String,
    _data: tempfile::TempDir,
}

impl Drop for PanelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn panel_command(data: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_portwall-panel"));
    c.arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("PORTWALL_PANEL_LISTEN")
        .env_remove("PORTWALL_PANEL_PLAIN_HTTP_BEHIND_PROXY")
        .stdin(Stdio::null());
    c
}

/// Starts the binary on 127.0.0.1 (a free port) with `cert`/`key`; returns once
/// it prints its URL.
fn start(cert: &Path, key: &Path) -> PanelProcess {
    let data = tempfile::tempdir().unwrap();
    let mut child = panel_command(data.path(), &["--listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start portwall-panel");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut admin, mut port) = (String::new(), 0u16);
    let deadline = Instant::now() + Duration::from_secs(60);
    while port == 0 {
        assert!(Instant::now() < deadline, "the panel did not start");
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!("the panel exited: {:?}", child.wait());
        }
        if let Some(t) = line
            .trim()
            .strip_prefix("admin token (shown once, keep it safe): ")
        {
            admin = t.to_string();
        }
        if let Some(rest) = line
            .trim()
            .strip_prefix("portwall-panel listening on https://")
        {
            let addr = rest.split_whitespace().next().unwrap();
            port = addr.rsplit(':').next().unwrap().parse().unwrap();
        }
    }
    PanelProcess {
        child,
        port,
        admin,
        _data: data,
    }
}

/// An API call as `token`; the answer must be 201.
fn json_post(c: &mut Conn, path: &str, token: &str, body: &str) -> String {
    let (status, _, answer) = c.send(
        "POST",
        path,
        &format!("Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"),
        body,
    );
    assert!(status.contains(" 201 "), "{status} {answer}");
    answer
}

#[test]
fn https_with_hsts_secure_cookies_and_a_certificate_reloaded_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let ca1 = Authority::new("first CA").unwrap();
    let first = ca1
        .issue_files(dir.path(), "panel", &["127.0.0.1"])
        .unwrap();
    let ca1_file = dir.path().join("ca1.pem");
    std::fs::rename(&first.ca, &ca1_file).unwrap();
    let p = start(&first.cert, &first.key);

    // HTTPS, verified against the first CA; HSTS on every answer.
    let mut kept = Conn::open(p.port, &ca1_file).expect("TLS with the first CA");
    let (status, headers, login_page) = kept.request("GET", "/login", "");
    assert!(status.contains(" 200 "), "{status}");
    // The login form's CSRF cookie (Secure on HTTPS) and its token.
    let csrf_cookie = headers
        .iter()
        .find_map(|h| h.strip_prefix("set-cookie: "))
        .filter(|c| c.starts_with(panel::auth::LOGIN_CSRF_COOKIE))
        .unwrap_or_else(|| panic!("no login CSRF cookie in {headers:?}"));
    assert!(csrf_cookie.contains("; secure"), "{csrf_cookie}");
    let csrf_cookie = csrf_cookie.split(';').next().unwrap().to_string();
    let marker = "name=\"csrf_token\" value=\"";
    let at = login_page
        .find(marker)
        .expect("the login form has a csrf_token")
        + marker.len();
    let csrf_token = login_page[at..].split('"').next().unwrap().to_string();
    assert!(
        headers
            .iter()
            .any(|h| h == &format!("strict-transport-security: {}", panel::serve::HSTS)),
        "{headers:?}"
    );
    // The session cookie of a browser login is Secure.
    let customer = json_post(&mut kept, "/v1/customers", &p.admin, r#"{"name":"acme"}"#);
    let cid: serde_json::Value = serde_json::from_str(&customer).unwrap();
    json_post(
        &mut kept,
        "/v1/users",
        &p.admin,
        &format!(
            r#"{{"login":"alice","password":"correct horse battery","customer_id":{}}}"#,
            cid["id"]
        ),
    );
    let (status, headers, body) = kept.send(
        "POST",
        "/login",
        &format!("Content-Type: application/x-www-form-urlencoded\r\nCookie: {csrf_cookie}\r\n"),
        &format!(
            "login=alice&password=correct+horse+battery&next=%2Ffirewalls&csrf_token={csrf_token}"
        ),
    );
    assert!(status.contains(" 303 "), "{status} {body}");
    let session = format!("set-cookie: {}=", panel::auth::SESSION_COOKIE);
    let cookie = headers
        .iter()
        .find(|h| h.starts_with(&session))
        .unwrap_or_else(|| panic!("no cookie in {headers:?}"));
    assert!(cookie.contains("; secure"), "{cookie}");

    // A bad file on SIGHUP: the old certificate stays.
    std::fs::write(&first.cert, "not a certificate\n").unwrap();
    let hup = |pid: u32| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap()
    };
    hup(p.child.id());
    std::thread::sleep(Duration::from_millis(300));
    Conn::open(p.port, &ca1_file).expect("still the first certificate after a bad reload");

    // A certificate of another CA replaces it on SIGHUP.
    let ca2 = Authority::new("second CA").unwrap();
    let second = ca2
        .issue_files(dir.path(), "panel", &["127.0.0.1"])
        .unwrap();
    hup(p.child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    while Conn::open(p.port, &second.ca).is_err() {
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // New connections with the old CA are refused, clearly.
    let e = Conn::open(p.port, &ca1_file)
        .err()
        .expect("the old CA is refused");
    assert!(
        e.contains("UnknownIssuer") || e.contains("certificate"),
        "{e}"
    );
    // The connection opened before the reload was not dropped.
    let (status, _, _) = kept.request("GET", "/login", "");
    assert!(status.contains(" 200 "), "{status}");
}

#[test]
fn plain_http_is_refused_off_loopback_unless_behind_a_proxy() {
    let data = tempfile::tempdir().unwrap();
    let out = panel_command(data.path(), &["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0.0.0.0:0")
            && err.contains("--plain-http-behind-proxy")
            && err.contains("--tls-cert"),
        "{err}"
    );
    // The refusal comes before listening: the port was never opened (exit, not a timeout).
    // Half a TLS pair is a usage error naming the missing flag.
    let out = panel_command(data.path(), &["--tls-cert", "/nonexistent.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An unreadable certificate is named.
    let out = panel_command(
        data.path(),
        &[
            "--tls-cert",
            "/nonexistent.pem",
            "--tls-key",
            "/nonexistent.key",
        ],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent.pem"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
