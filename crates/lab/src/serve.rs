//! The lab's service process (`portwall lab serve`, started by `up`): small
//! TCP services in the servers (22: an SSH-like banner, 80 and 443: an HTTP
//! answer), a UDP echo on 53, and the panel relay: a listener on the panel's
//! lab address ([`PANEL_V4`]:[`PANEL_PORT`], inside `pwlab-edge`) whose
//! connections are forwarded, bytes unchanged (TLS passes through), to the
//! panel on this machine's loopback. Each listener lives on a thread that
//! entered its host's namespace; the main thread stays in this machine's.

use crate::topology::{Role, HOSTS, PANEL_PORT, PANEL_V4};
use crate::LabError;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

/// TCP services in the servers.
const TCP_PORTS: [u16; 3] = [22, 80, 443];
const UDP_PORTS: [u16; 1] = [53];
/// Written when every listener is up.
pub const READY_FILE: &str = "serve.ready";

/// Runs `serve` on a thread inside `host`'s namespace once `bind` succeeded
/// there; returns bind's error otherwise.
fn in_host<S: Send + 'static>(
    host: &'static str,
    bind: impl FnOnce() -> std::io::Result<S> + Send + 'static,
    serve: impl FnOnce(S) + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        match testns::enter(&crate::topology::namespace(host)).and_then(|_| bind()) {
            Ok(s) => {
                let _ = tx.send(Ok(()));
                serve(s);
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    });
    rx.recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("listener thread died")))
}

fn tcp_service(host: &'static str, port: u16) -> std::io::Result<()> {
    in_host(
        host,
        move || TcpListener::bind(("::", port)),
        move |listener| {
            for mut conn in listener.incoming().flatten() {
                let banner = match port {
                    22 => format!("SSH-2.0-portwall-lab {host}\r\n"),
                    _ => format!(
                        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhello from {host} port {port}\n"
                    ),
                };
                let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
                let _ = conn.write_all(banner.as_bytes());
            }
        },
    )
}

fn udp_echo(host: &'static str, port: u16) -> std::io::Result<()> {
    in_host(
        host,
        move || UdpSocket::bind(("::", port)),
        |sock| {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        },
    )
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Runs the services and the relay to the panel on 127.0.0.1:`panel_port`;
/// returns only on error.
pub fn serve(dir: &Path, panel_port: u16) -> Result<(), LabError> {
    crate::need_root()?;
    let failed = |what: String| move |e: std::io::Error| LabError::Failed(format!("{what}: {e}"));
    for h in HOSTS.iter().filter(|h| matches!(h.role, Role::Server(_))) {
        for p in TCP_PORTS {
            tcp_service(h.name, p).map_err(failed(format!("tcp {p} in {}", h.name)))?;
        }
        for p in UDP_PORTS {
            udp_echo(h.name, p).map_err(failed(format!("udp {p} in {}", h.name)))?;
        }
    }
    // The relay: accepted inside pwlab-edge, handed to this (main) thread,
    // which connects to the panel on this machine's loopback.
    let (tx, rx) = std::sync::mpsc::channel::<TcpStream>();
    let panel_addr: Ipv4Addr = PANEL_V4.parse().expect("PANEL_V4 is an IPv4 address");
    in_host(
        "edge",
        move || TcpListener::bind((panel_addr, PANEL_PORT)),
        move |listener| {
            for conn in listener.incoming().flatten() {
                if tx.send(conn).is_err() {
                    return;
                }
            }
        },
    )
    .map_err(failed(format!(
        "the panel relay on {PANEL_V4}:{PANEL_PORT} in pwlab-edge"
    )))?;
    std::fs::write(dir.join(READY_FILE), std::process::id().to_string()).map_err(failed(
        format!("writing {}", dir.join(READY_FILE).display()),
    ))?;
    eprintln!(
        "lab services ready; relaying {PANEL_V4}:{PANEL_PORT} in pwlab-edge to 127.0.0.1:{panel_port}"
    );
    let panel = SocketAddr::from((Ipv4Addr::LOCALHOST, panel_port));
    for inbound in rx {
        match TcpStream::connect_timeout(&panel, Duration::from_secs(5)) {
            Ok(upstream) => {
                let _ = inbound.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let (i2, u2) = match (inbound.try_clone(), upstream.try_clone()) {
                    (Ok(i), Ok(u)) => (i, u),
                    _ => continue,
                };
                std::thread::spawn(move || pipe(inbound, upstream));
                std::thread::spawn(move || pipe(u2, i2));
            }
            Err(e) => eprintln!("cannot reach the panel: {e}"),
        }
    }
    Ok(())
}
