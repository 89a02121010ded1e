//! `wayfare man DIR`: a man page for `wayfare` and one for every subcommand
//! (`wayfare-connect.1`, `wayfare-chain-deploy.1`, …), generated from the same clap definitions
//! `--help` prints, so the pages never drift from the binary. `make deb` ships them.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// `wayfare man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The directory the pages are written to (created if missing).
    out: PathBuf,
}

/// Writes every page; prints how many.
pub fn run(args: ManArgs, cmd: clap::Command) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("can't create {}", args.out.display()))?;
    let mut cmd = cmd;
    cmd.build();
    let n = write_pages(&cmd, "wayfare", &args.out)?;
    println!("{n} man pages written to {}", args.out.display());
    Ok(())
}

/// The page of `cmd` (named `name`) and its subcommands', depth first.
fn write_pages(cmd: &clap::Command, name: &str, out: &Path) -> anyhow::Result<usize> {
    let page = cmd.clone().name(name.to_string());
    let mut buf = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut buf)
        .with_context(|| format!("rendering the page of {name}"))?;
    let path = out.join(format!("{name}.1"));
    std::fs::write(&path, buf).with_context(|| format!("can't write {}", path.display()))?;
    let mut n = 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        n += write_pages(sub, &format!("{name}-{}", sub.get_name()), out)?;
    }
    Ok(n)
}
