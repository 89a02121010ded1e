//! Files `wayfare init` writes: each atomically (a temporary file linked into place, so it is
//! absent or complete) and never over an existing one; and the password for new keystores.

use std::{
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use alloy_primitives::B256;
use anyhow::{Context, bail};
use wayfare_chain::keystore::{
    PasswordSource, encryption_public_key, new_encryption_key, read_password,
};

/// Where the keystores' password comes from.
pub struct Password {
    file: Option<PathBuf>,
    env: String,
}

impl Password {
    /// From `file`, else the variable `env` when set, else a prompt.
    pub fn new(file: Option<PathBuf>, env: &str) -> Self {
        Self {
            file,
            env: env.to_string(),
        }
    }

    /// The source to open an existing keystore with.
    pub fn source(&self) -> PasswordSource {
        match &self.file {
            Some(f) => PasswordSource::File(f.clone()),
            None if std::env::var_os(&self.env).is_some() => PasswordSource::Env(self.env.clone()),
            None => PasswordSource::Prompt,
        }
    }

    /// The password for a new keystore at `path` (prompted twice when from the terminal).
    pub fn for_new_key(&self, path: &Path) -> anyhow::Result<String> {
        let source = self.source();
        let pw = read_password(&source, path)?;
        if source == PasswordSource::Prompt {
            let again = rpassword::prompt_password("the same password again: ").context(
                "can't prompt for the password: use --password-file or the password variable",
            )?;
            if again != pw {
                bail!("the two passwords differ: nothing was written; run the command again");
            }
        }
        if pw.len() < 8 {
            bail!(
                "the keystore password is {} characters: use at least 8 (it guards keys that hold money)",
                pw.len()
            );
        }
        Ok(pw)
    }
}

/// Creates `dir` (and parents) if missing, mode 0700.
pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "can't create {} (run as its owner, or pass --data-dir)",
                dir.display()
            )
        })?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("can't make {} private", dir.display()))?;
    }
    Ok(())
}

/// Writes `bytes` to the new file `path` with `mode`: a temporary file in the same directory,
/// synced, then linked into place (failing if `path` exists), so `path` is never half-written
/// and never replaced.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "can't create {} (check its owner, or choose another path)",
            dir.display()
        )
    })?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", rand_suffix()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} exists: it is kept (init never replaces a file); remove it to write a new one",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("can't write {}", path.display())),
    }
}

/// A new config file (0644).
pub fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    write_atomic(path, text.as_bytes(), 0o644)
}

/// The seller's X25519 key for sealed reveals: the one in `path` (hex secret), or a new one
/// written there (0600). Returns the public key.
pub fn encryption_key(path: &Path) -> anyhow::Result<B256> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("can't read {}", path.display()))?;
        let bytes: B256 = format!("0x{}", text.trim().trim_start_matches("0x"))
            .parse()
            .with_context(|| {
                format!(
                    "{} is not 32 bytes of hex: restore it or remove it",
                    path.display()
                )
            })?;
        return Ok(encryption_public_key(bytes.0));
    }
    let (secret, public) = new_encryption_key();
    write_atomic(
        path,
        alloy_primitives::hex::encode(secret).as_bytes(),
        0o600,
    )?;
    Ok(public)
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{}-{nanos}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_file_is_never_replaced_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("wayfare.toml");
        write_new(&p, "a = 1\n").unwrap();
        let e = write_new(&p, "b = 2\n").unwrap_err().to_string();
        assert!(e.contains("never replaces"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a = 1\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_encryption_key_is_kept_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k/seller.x25519");
        let a = encryption_key(&p).unwrap();
        assert_eq!(encryption_key(&p).unwrap(), a);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
