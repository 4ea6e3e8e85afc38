//! Man pages and shell completions generated from a binary's clap command, so
//! `--help`, `man` and tab completion have one source, as ripgrep does.
//!
//! Each binary (`portwall`, `portwall-panel`, `portwall-edge`) has a hidden
//! `generate` subcommand taking [`GenerateArgs`] and calls [`generate`] with
//! its own `clap::Command`; `scripts/package` runs it at build time and the
//! Debian packages install what it writes:
//!
//! - `generate man DIR`: `NAME.SECTION` for the command and one page per
//!   visible subcommand, nested ones too (`portwall-allow.8`,
//!   `portwall-cloud-firewall.8`), each listing its own subcommands;
//! - `generate completions DIR`: `bash/NAME`, `zsh/_NAME` and
//!   `fish/NAME.fish`, the file names each shell's completion directory
//!   expects.

use std::io::Write;
use std::path::{Path, PathBuf};

/// What `generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Man pages (roff), one per command and subcommand.
    Man,
    /// bash, zsh and fish completion scripts.
    Completions,
}

/// The arguments of a binary's hidden `generate` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// man or completions.
    #[arg(value_enum)]
    pub kind: Kind,
    /// The directory to write into (created when missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Writes what `args` asks for `cmd` (the binary's whole command, e.g.
/// `Cli::command()`), man pages in `section` ("8": administration tools and
/// daemons). Returns the files written, in order.
pub fn generate(
    cmd: clap::Command,
    section: &str,
    args: &GenerateArgs,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(&args.dir)?;
    match args.kind {
        Kind::Man => man_pages(cmd, section, &args.dir),
        Kind::Completions => completions(cmd, &args.dir),
    }
}

/// One page per visible command, depth first from the top, like
/// `clap_mangen::generate_to` but in `section` rather than always 1.
fn man_pages(cmd: clap::Command, section: &str, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn walk(
        cmd: clap::Command,
        section: &str,
        dir: &Path,
        out: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        let subs: Vec<clap::Command> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .cloned()
            .collect();
        out.push(
            clap_mangen::Man::new(cmd)
                .section(section)
                .generate_to(dir)?,
        );
        for sub in subs {
            walk(sub, section, dir, out)?;
        }
        Ok(())
    }
    // Built once at the top so subcommands get their display names
    // (`portwall-allow`) and inherit global options.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(cmd, section, dir, &mut out)?;
    Ok(out)
}

/// `cmd` without its hidden subcommands, at every level: clap_complete's bash
/// and zsh scripts would offer them (`generate`, `rollback-watchdog`) as
/// candidates. Keeps what completion uses: names, about, version, arguments.
fn without_hidden(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new(cmd.get_name().to_string());
    if let Some(version) = cmd.get_version() {
        out = out.version(version.to_string());
    }
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    for arg in cmd.get_arguments() {
        out = out.arg(arg.clone());
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out = out.subcommand(without_hidden(sub));
    }
    out
}

fn completions(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    use clap_complete::Shell;
    let mut cmd = without_hidden(&cmd);
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    for (shell, sub, file) in [
        (Shell::Bash, "bash", name.clone()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ] {
        let path = dir.join(sub).join(file);
        std::fs::create_dir_all(dir.join(sub))?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        clap_complete::generate(shell, &mut cmd, name.clone(), &mut f);
        f.flush()?;
        out.push(path);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser, Subcommand};

    /// A command shaped like the binaries': global flag, nested and hidden
    /// subcommands.
    #[derive(Debug, Parser)]
    #[command(name = "demo", version, about = "A demo.")]
    struct Demo {
        /// Print JSON.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: Cmd,
    }

    #[derive(Debug, Subcommand)]
    enum Cmd {
        /// Allow a port.
        Allow { port: u16 },
        /// Things in the cloud.
        Cloud {
            #[command(subcommand)]
            command: CloudCmd,
        },
        #[command(hide = true)]
        Generate(GenerateArgs),
    }

    #[derive(Debug, Subcommand)]
    enum CloudCmd {
        /// Add a firewall.
        AddFirewall { name: String },
    }

    fn run(kind: Kind) -> (tempfile::TempDir, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let args = GenerateArgs {
            kind,
            dir: dir.path().to_path_buf(),
        };
        let files = generate(Demo::command(), "8", &args).unwrap();
        let names = files
            .iter()
            .map(|f| f.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        (dir, names)
    }

    #[test]
    fn man_pages_cover_every_visible_subcommand_in_the_section() {
        let (dir, names) = run(Kind::Man);
        assert_eq!(
            names,
            [
                "demo.8",
                "demo-allow.8",
                "demo-cloud.8",
                "demo-cloud-add-firewall.8"
            ]
        );
        let top = std::fs::read_to_string(dir.path().join("demo.8")).unwrap();
        assert!(top.contains(".TH demo 8"), "{top}");
        assert!(top.contains("demo\\-allow(8)"), "{top}");
        assert!(
            !top.contains("generate"),
            "hidden subcommand listed:\n{top}"
        );
        let allow = std::fs::read_to_string(dir.path().join("demo-allow.8")).unwrap();
        assert!(
            allow.contains("\\-\\-json"),
            "global option missing:\n{allow}"
        );
    }

    #[test]
    fn completions_land_under_each_shells_file_name() {
        let (dir, names) = run(Kind::Completions);
        assert_eq!(names, ["bash/demo", "zsh/_demo", "fish/demo.fish"]);
        let bash = std::fs::read_to_string(dir.path().join("bash/demo")).unwrap();
        assert!(bash.contains("complete -F _demo"), "{bash}");
        assert!(bash.contains("--json"), "{bash}");
        let zsh = std::fs::read_to_string(dir.path().join("zsh/_demo")).unwrap();
        let fish = std::fs::read_to_string(dir.path().join("fish/demo.fish")).unwrap();
        assert!(fish.contains("add-firewall"), "{fish}");
        for (shell, text) in [("bash", &bash), ("zsh", &zsh), ("fish", &fish)] {
            assert!(
                !text.contains("generate"),
                "{shell} offers the hidden subcommand:\n{text}"
            );
        }
    }
}
