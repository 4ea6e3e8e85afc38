//! The lab's long-running processes (panel, edge agent, service process):
//! started with a log file, recorded by pid and start time (a recycled pid
//! has another), stopped by that record.

use serde::{Deserialize, Serialize};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A process the lab started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proc {
    pub name: String,
    pub pid: u32,
    /// Start time in clock ticks (/proc/PID/stat field 22).
    pub start_time: u64,
    pub log: PathBuf,
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

impl Proc {
    /// Starts `cmd` in its own process group, stdout and stderr to
    /// `DIR/logs/NAME.log`, not waited for: it outlives the command that
    /// started it.
    pub fn spawn(dir: &Path, name: &str, mut cmd: Command) -> std::io::Result<Proc> {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = logs.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()?;
        let pid = child.id();
        drop(child);
        Ok(Proc {
            name: name.to_string(),
            pid,
            start_time: start_time(pid).unwrap_or(0),
            log,
        })
    }

    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&self) {
        if !self.alive() {
            return;
        }
        signal(self.pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.alive() {
            signal(self.pid, rustix::process::Signal::KILL);
        }
    }
}

/// Polls `f` every 100 ms until it gives a value or `timeout` passes.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, crate::LabError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(crate::LabError::Failed(format!(
                "timed out after {} s waiting for {what}",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Finds a binary next to the running program, or on PATH.
pub fn find_binary(name: &str) -> Result<PathBuf, crate::LabError> {
    let next_to_me = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let path = std::env::var_os("PATH").unwrap_or_default();
    next_to_me
        .into_iter()
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            crate::LabError::Failed(format!(
                "{name} not found next to portwall or on PATH (cargo build --bins builds it)"
            ))
        })
}
