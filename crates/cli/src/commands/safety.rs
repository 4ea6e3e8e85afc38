//! `portwall confirm`, the rollback watchdog, and how a confirmation's
//! deadline reads. The lockout check and the confirmation itself are the host
//! library's ([`host::lockout`], [`host::confirmation`]); this module starts
//! the watchdog process and renders.

use crate::exit;
use crate::Global;
use anyhow::{Context, Result};
use host::confirmation::{self, Deadline, PendingConfirmation};
use host::ConfigDir;

/// Starts the detached watchdog of `pending` (`setsid`, so it outlives the
/// terminal and the SSH connection): `portwall rollback-watchdog --id ID`.
pub fn start_watchdog(
    global: &Global,
) -> impl Fn(&PendingConfirmation) -> std::io::Result<()> + '_ {
    move |pending| {
        let exe = std::env::current_exe()?;
        std::process::Command::new("setsid")
            .arg("--fork")
            .arg(exe)
            .arg("--config-dir")
            .arg(&global.config_dir)
            .args(["rollback-watchdog", "--id", &pending.id])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .and_then(|s| {
                if s.success() {
                    Ok(())
                } else {
                    Err(std::io::Error::other(format!("setsid exited with {s}")))
                }
            })
    }
}

/// A confirmation's deadline as a person reads it: the local time and the
/// time left, `at 14:03:12 CET (in 1 min 0 s)`.
pub fn deadline_text(d: &Deadline) -> String {
    let local = jiff::Timestamp::from_second(d.deadline as i64)
        .map(|t| t.to_zoned(jiff::tz::TimeZone::system()))
        .map(|z| z.strftime("%H:%M:%S %Z").to_string())
        .unwrap_or_else(|_| format!("{} (Unix time)", d.deadline));
    format!("at {local} (in {})", countdown(d.seconds_left))
}

/// Seconds as `1 h 2 min 3 s`, `5 min 0 s`, `42 s`.
fn countdown(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s} s"),
        _ => format!("{h} h {m} min {s} s"),
    }
}

/// `portwall confirm`: keep the change that is waiting.
pub fn confirm(global: &Global) -> Result<u8> {
    let dir = ConfigDir::lock(&global.config_dir)?;
    let confirmed = confirmation::confirm(&dir)?;
    if global.json {
        crate::output::print_json(&serde_json::json!({ "confirmed": confirmed }))?;
    } else if confirmed {
        println!("Confirmed: the change stays in force.");
    } else {
        println!("Nothing to confirm.");
    }
    Ok(exit::OK)
}

/// The detached watchdog: waits for the deadline, then restores the previous state
/// unless the change was confirmed (or superseded by another `--confirm`).
pub fn rollback_watchdog(global: &Global, id: &str) -> Result<u8> {
    let kernel = crate::backend::kernel(global)?;
    confirmation::wait_and_roll_back(&global.config_dir, &kernel, id)
        .context("rolling back an unconfirmed change")?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_countdown_reads_in_hours_minutes_and_seconds() {
        assert_eq!(countdown(42), "42 s");
        assert_eq!(countdown(60), "1 min 0 s");
        assert_eq!(countdown(3723), "1 h 2 min 3 s");
    }

    /// The deadline is a local wall-clock time, not a Unix timestamp.
    #[test]
    fn a_deadline_reads_as_a_local_time_and_a_countdown() {
        let t = deadline_text(&Deadline {
            deadline: 1_796_663_093,
            seconds_left: 60,
        });
        assert!(!t.contains("1796663093"), "{t}");
        assert!(t.starts_with("at ") && t.ends_with("(in 1 min 0 s)"), "{t}");
        let clock = t.split(' ').nth(1).unwrap();
        assert_eq!(clock.len(), 8, "{t}");
        assert_eq!(clock.matches(':').count(), 2, "{t}");
    }
}
