//! `wayfare service install | unit`: run the daemon as a systemd service with least privilege
//! (the unit is `dist/wayfare.service`, embedded here): the binary, a dedicated system user
//! `wayfare`, /etc/wayfare and /var/lib/wayfare owned right, the unit, `systemctl daemon-reload`.
//! `--dry-run` prints every step and does none.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

/// The unit file as committed.
pub const UNIT: &str = include_str!("../../../dist/wayfare.service");
const DEFAULT_BIN: &str = "/usr/local/bin/wayfare";

/// `wayfare service`.
#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    cmd: ServiceCmd,
}

#[derive(Debug, clap::Subcommand)]
enum ServiceCmd {
    /// Install the daemon as the systemd service `wayfare` (root): copy this binary to --bin,
    /// create the system user `wayfare`, /etc/wayfare and /var/lib/wayfare (owned by it), give
    /// it the config's password file, write the unit and reload systemd. Starts nothing: the
    /// last line says how.
    Install {
        /// Print each step without doing it.
        #[arg(long)]
        dry_run: bool,
        /// Where the binary goes (the unit's ExecStart).
        #[arg(long, default_value = DEFAULT_BIN)]
        bin: PathBuf,
        /// Where the unit goes.
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: PathBuf,
    },
    /// Print the unit (with ExecStart pointing at --bin).
    Unit {
        /// The binary the unit runs.
        #[arg(long, default_value = DEFAULT_BIN)]
        bin: PathBuf,
    },
}

/// The unit running `bin`.
pub fn unit_for(bin: &Path) -> String {
    UNIT.replace(
        &format!("ExecStart={DEFAULT_BIN} "),
        &format!("ExecStart={} ", bin.display()),
    )
}

enum Step {
    Run(Vec<String>),
    Write(PathBuf, String, u32),
    Copy(PathBuf, PathBuf),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Run(argv) => write!(f, "run    {}", argv.join(" ")),
            Self::Write(p, _, mode) => write!(f, "write  {} (mode {mode:o})", p.display()),
            Self::Copy(a, b) => write!(f, "copy   {} -> {}", a.display(), b.display()),
        }
    }
}

fn run_argv(argv: &[&str]) -> Step {
    Step::Run(argv.iter().map(|s| s.to_string()).collect())
}

fn user_exists() -> bool {
    Command::new("id")
        .arg("wayfare")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn plan(bin: &Path, unit_dir: &Path) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    let me = std::env::current_exe().context("can't find this program's path")?;
    if me.canonicalize().ok() != bin.canonicalize().ok() {
        steps.push(Step::Copy(me, bin.to_path_buf()));
    }
    if !user_exists() {
        steps.push(run_argv(&[
            "useradd",
            "--system",
            "--user-group",
            "--home-dir",
            "/var/lib/wayfare",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "wayfare",
        ]));
    }
    steps.push(run_argv(&["install", "-d", "-m", "0755", "/etc/wayfare"]));
    steps.push(run_argv(&[
        "install",
        "-d",
        "-m",
        "0700",
        "-o",
        "wayfare",
        "-g",
        "wayfare",
        "/var/lib/wayfare",
    ]));
    // Keys `wayfare init` wrote as root go to the service's user.
    steps.push(run_argv(&[
        "chown",
        "-R",
        "wayfare:wayfare",
        "/var/lib/wayfare",
    ]));
    let config = Path::new("/etc/wayfare/wayfare.toml");
    if let Ok(text) = std::fs::read_to_string(config)
        && let Ok(cfg) = wayfare_node::NodeConfig::parse(&text)
        && let Some(pw) = cfg.chain.password_file
    {
        let pw = pw.display().to_string();
        steps.push(run_argv(&["chgrp", "wayfare", &pw]));
        steps.push(run_argv(&["chmod", "0640", &pw]));
    }
    steps.push(Step::Write(
        unit_dir.join("wayfare.service"),
        unit_for(bin),
        0o644,
    ));
    steps.push(run_argv(&["systemctl", "daemon-reload"]));
    Ok(steps)
}

fn apply(step: &Step) -> anyhow::Result<()> {
    match step {
        Step::Run(argv) => {
            let status = Command::new(&argv[0])
                .args(&argv[1..])
                .status()
                .with_context(|| format!("can't run {} (is it installed?)", argv[0]))?;
            if !status.success() {
                bail!(
                    "`{}` failed ({status}): fix that and re-run `wayfare service install`",
                    argv.join(" ")
                );
            }
        }
        Step::Write(path, text, mode) => {
            use std::os::unix::fs::PermissionsExt;
            let tmp = path.with_extension("service.tmp");
            std::fs::write(&tmp, text).with_context(|| format!("can't write {}", tmp.display()))?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode))?;
            std::fs::rename(&tmp, path)
                .with_context(|| format!("can't write {}", path.display()))?;
        }
        Step::Copy(from, to) => {
            let tmp = to.with_extension("tmp");
            std::fs::copy(from, &tmp)
                .with_context(|| format!("can't copy the binary to {}", tmp.display()))?;
            std::fs::rename(&tmp, to).with_context(|| format!("can't install {}", to.display()))?;
        }
    }
    Ok(())
}

pub fn run(args: ServiceArgs) -> anyhow::Result<()> {
    match args.cmd {
        ServiceCmd::Unit { bin } => {
            print!("{}", unit_for(&bin));
            Ok(())
        }
        ServiceCmd::Install {
            dry_run,
            bin,
            unit_dir,
        } => {
            // SAFETY: geteuid has no preconditions.
            if !dry_run && unsafe { libc::geteuid() } != 0 {
                bail!(
                    "installing a system service needs root: run it with sudo (or --dry-run to see the steps)"
                );
            }
            let steps = plan(&bin, &unit_dir)?;
            for s in &steps {
                if dry_run {
                    println!("would {s}");
                } else {
                    println!("{s}");
                    apply(s)?;
                }
            }
            let init = if Path::new("/etc/wayfare/wayfare.toml").exists() {
                ""
            } else {
                "wayfare init --seller|--buyer … (as root, writes /etc/wayfare/wayfare.toml), then "
            };
            println!("next: {init}systemctl enable --now wayfare; journalctl -u wayfare -f");
            Ok(())
        }
    }
}
