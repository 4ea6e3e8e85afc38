//! Exit codes, documented in the README. `main` maps every outcome to one of these.

/// Success (and, for `probe --expect`, every expectation met).
pub const OK: u8 = 0;
/// The command failed (the kernel refused a ruleset, a probe expectation failed, ...).
pub const FAILURE: u8 = 1;
/// Bad usage or bad input: nothing was changed.
pub const USAGE: u8 = 2;
/// `audit`: a risky service is exposed.
pub const EXPOSED: u8 = 3;

/// An error that carries its exit code. Errors without one exit with [`FAILURE`].
#[derive(Debug)]
pub struct ExitError {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitError {}

/// Bad input: exit code 2.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    ExitError {
        code: USAGE,
        message: message.into(),
    }
    .into()
}

/// A definite "no" that is not an error of the program (exit code given).
pub fn with_code(code: u8, message: impl Into<String>) -> anyhow::Error {
    ExitError {
        code,
        message: message.into(),
    }
    .into()
}
