//! A throwaway PostgreSQL cluster for the tests of one test binary.
//!
//! With `PORTWALL_TEST_DATABASE_URL` set (a URL of a superuser on any
//! database), tests create their databases there. Otherwise the first test
//! that needs PostgreSQL runs `initdb` into a temporary directory and starts
//! `postgres` on a unix socket in it (no TCP at all), as the `postgres` user
//! when running as root (PostgreSQL refuses to run as root), with
//! `fsync=off` unless `PORTWALL_TEST_PG_DURABLE=1`. The server is
//! stopped and the directory removed when the test binary exits (atexit), and
//! it dies with the test binary if that is killed (PR_SET_PDEATHSIG).
//! Every test gets a fresh database.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

struct Cluster {
    /// URL prefix without the database name, and the query string.
    base: String,
    query: String,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static RUNNING: OnceLock<(i32, PathBuf)> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

fn pg_bin(name: &str) -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin").join(name))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.into_iter().rev().find(|p| p.is_file()).ok_or_else(|| {
        format!("PostgreSQL's {name} not found: install the PostgreSQL server (apt-get install postgresql) or set PORTWALL_TEST_DATABASE_URL")
    })
}

extern "C" fn stop_cluster() {
    if let Some((pid, dir)) = RUNNING.get() {
        unsafe {
            // SIGQUIT: immediate shutdown; nothing here needs to be kept.
            libc::kill(*pid, libc::SIGQUIT);
            let start = Instant::now();
            while libc::kill(*pid, 0) == 0 && start.elapsed() < Duration::from_secs(10) {
                let mut status = 0;
                libc::waitpid(*pid, &mut status, libc::WNOHANG);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn split_url(url: &str) -> (String, String) {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m.to_string(), format!("?{q}")),
        None => (url.to_string(), String::new()),
    };
    // postgres://user@host:port/db -> postgres://user@host:port/
    let scheme_end = main.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match main[scheme_end..].find('/') {
        Some(i) => main[..scheme_end + i + 1].to_string(),
        None => format!("{main}/"),
    };
    (base, query)
}

fn start_cluster() -> Result<Cluster, String> {
    if let Ok(url) = std::env::var("PORTWALL_TEST_DATABASE_URL") {
        let (base, query) = split_url(&url);
        return Ok(Cluster { base, query });
    }
    let initdb = pg_bin("initdb")?;
    let postgres = pg_bin("postgres")?;
    let dir = tempfile::Builder::new()
        .prefix("pwpg")
        .tempdir_in("/tmp")
        .map_err(|e| e.to_string())?
        .keep();
    let is_root = unsafe { libc::geteuid() } == 0;
    let (uid, gid) = if is_root {
        let user = nix::unistd::User::from_name("postgres")
            .map_err(|e| e.to_string())?
            .ok_or("running as root, and there is no 'postgres' user to run PostgreSQL as")?;
        nix::unistd::chown(&dir, Some(user.uid), Some(user.gid)).map_err(|e| e.to_string())?;
        (user.uid.as_raw(), user.gid.as_raw())
    } else {
        (unsafe { libc::geteuid() }, unsafe { libc::getegid() })
    };
    let data = dir.join("data");
    let out = Command::new(&initdb)
        .args([
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ])
        .current_dir(&dir)
        .uid(uid)
        .gid(gid)
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // Start the server from a thread that lives as long as the process, so
    // that PR_SET_PDEATHSIG fires only when the test binary dies.
    // PORTWALL_TEST_PG_DURABLE=1: the server's default durability (fsync,
    // synchronous commits), for benchmarks that must report it.
    let durable = std::env::var("PORTWALL_TEST_PG_DURABLE").is_ok_and(|v| v == "1");
    let (tx, rx) = mpsc::channel();
    let sock = dir.clone();
    std::thread::spawn(move || {
        let child = unsafe {
            Command::new(&postgres)
                .args([
                    "-D",
                    data.to_str().unwrap(),
                    "-k",
                    sock.to_str().unwrap(),
                    "-p",
                    "5432",
                ])
                .args(["-c", "listen_addresses="])
                .args(if durable {
                    &[][..]
                } else {
                    &[
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                    ][..]
                })
                .args(["-c", "max_connections=300", "-c", "shared_buffers=32MB"])
                .current_dir(&sock)
                .uid(uid)
                .gid(gid)
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(sock.join("postgres.log")).expect("log file"),
                ))
                .pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                })
                .spawn()
        };
        let _ = tx.send(child.map(|c| c.id()));
        loop {
            std::thread::park();
        }
    });
    let pid = rx
        .recv()
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("starting postgres: {e}"))?;
    let _ = RUNNING.set((pid as i32, dir.clone()));
    unsafe {
        libc::atexit(stop_cluster);
    }
    let socket = dir.join(".s.PGSQL.5432");
    let start = Instant::now();
    while !socket.exists() {
        if start.elapsed() > Duration::from_secs(60) {
            let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            return Err(format!("postgres did not start within 60 s:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Cluster {
        base: "postgres://postgres@localhost/".into(),
        query: format!("?host={}", socket_dir(&dir)),
    })
}

fn socket_dir(dir: &Path) -> String {
    dir.to_str().unwrap().to_string()
}

/// A fresh, empty database on the test cluster; returns its URL.
pub async fn fresh_database() -> String {
    let cluster = CLUSTER
        .get_or_init(start_cluster)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    let name = format!(
        "pw_test_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    let admin_url = format!("{}postgres{}", cluster.base, cluster.query);
    let start = Instant::now();
    loop {
        use sqlx::Connection;
        match sqlx::PgConnection::connect(&admin_url).await {
            Ok(mut conn) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("CREATE DATABASE");
                let _ = conn.close().await;
                break;
            }
            Err(e) if start.elapsed() < Duration::from_secs(60) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot connect to the test PostgreSQL at {admin_url}: {e}"),
        }
    }
    format!("{}{name}{}", cluster.base, cluster.query)
}
