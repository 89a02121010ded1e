//! Keys at rest: Ethereum V3 keystores (the format geth and `cast wallet` read), unlocked by a
//! password from a file, an environment variable or a prompt; raw private keys for devnets only.

use std::path::{Path, PathBuf};

use alloy::{primitives::B256, signers::local::LocalSignerError};

pub use alloy::signers::local::PrivateKeySigner;

/// Where a keystore's password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The first line of a file (trailing newline removed).
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// Ask on the terminal.
    Prompt,
}

/// A key that could not be loaded or stored.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The keystore file is missing.
    #[error(
        "keystore {0} not found: pass the path of a V3 keystore JSON file (devnet keys are under the devnet dir's keystores/)"
    )]
    NotFound(PathBuf),
    /// The password does not open the keystore.
    #[error(
        "wrong password for keystore {0}: check --password-file / the password variable and try again"
    )]
    WrongPassword(PathBuf),
    /// The keystore is not a V3 keystore.
    #[error(
        "{path} is not a usable V3 keystore ({why}): export it again with `cast wallet import` or geth"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
    /// The password file could not be read.
    #[error("can't read the password file {path}: {source}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The password variable is unset.
    #[error(
        "the environment variable {0} holding the keystore password is not set: export it, or use --password-file"
    )]
    PasswordEnvMissing(String),
    /// No terminal to prompt on.
    #[error(
        "can't prompt for the keystore password ({0}): use --password-file or the password variable"
    )]
    Prompt(String),
    /// A raw private key that isn't one.
    #[error("the private key is not 32 bytes of hex (0x…64 hex digits)")]
    BadPrivateKey,
    /// Writing a keystore failed.
    #[error("can't write a keystore into {path}: {why}")]
    Write {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
}

/// Reads a password from its source.
pub fn read_password(source: &PasswordSource, keystore: &Path) -> Result<String, KeyError> {
    match source {
        PasswordSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| KeyError::PasswordFile {
                path: path.clone(),
                source,
            })?;
            Ok(text.lines().next().unwrap_or("").to_string())
        }
        PasswordSource::Env(var) => {
            std::env::var(var).map_err(|_| KeyError::PasswordEnvMissing(var.clone()))
        }
        PasswordSource::Prompt => {
            rpassword::prompt_password(format!("password for {}: ", keystore.display()))
                .map_err(|e| KeyError::Prompt(e.to_string()))
        }
    }
}

/// Opens a V3 keystore.
pub fn load_keystore(path: &Path, source: &PasswordSource) -> Result<PrivateKeySigner, KeyError> {
    if !path.is_file() {
        return Err(KeyError::NotFound(path.to_path_buf()));
    }
    let password = read_password(source, path)?;
    PrivateKeySigner::decrypt_keystore(path, password).map_err(|e| match e {
        LocalSignerError::EthKeystoreError(eth_keystore::KeystoreError::MacMismatch) => {
            KeyError::WrongPassword(path.to_path_buf())
        }
        other => KeyError::Malformed {
            path: path.to_path_buf(),
            why: other.to_string(),
        },
    })
}

/// Parses a raw hex private key (devnets only: the caller checks the chain).
pub fn parse_private_key(hex: &str) -> Result<PrivateKeySigner, KeyError> {
    hex.trim()
        .parse::<B256>()
        .ok()
        .and_then(|b| PrivateKeySigner::from_bytes(&b).ok())
        .ok_or(KeyError::BadPrivateKey)
}

/// Writes `key` as a V3 keystore named `name` into `dir` (created if missing, mode 0700) and
/// returns the file's path. The file is readable by its owner only.
pub fn write_keystore(
    dir: &Path,
    name: &str,
    key: &PrivateKeySigner,
    password: &str,
) -> Result<PathBuf, KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |why: String| KeyError::Write {
        path: dir.to_path_buf(),
        why,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| fail(e.to_string()))?;
    let mut rng = rand::thread_rng();
    PrivateKeySigner::encrypt_keystore(dir, &mut rng, key.to_bytes(), password, Some(name))
        .map_err(|e| fail(e.to_string()))?;
    let path = dir.join(name);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fail(e.to_string()))?;
    Ok(path)
}

/// Writes `key` as the keystore `dir/name` only if no file has that name: the keystore is
/// written into a private temporary directory and linked into place, so `dir/name` is either
/// absent or complete, and an existing key is never replaced. Returns the path.
pub fn create_keystore(
    dir: &Path,
    name: &str,
    key: &PrivateKeySigner,
    password: &str,
) -> Result<PathBuf, KeyError> {
    let dest = dir.join(name);
    let fail = |why: String| KeyError::Write {
        path: dir.to_path_buf(),
        why,
    };
    if dest.exists() {
        return Err(fail(format!(
            "{} exists: it is kept (never overwritten); remove it first to make a new key",
            dest.display()
        )));
    }
    let tmp = dir.join(format!(".tmp-{name}-{}", rand::random::<u64>()));
    let result = write_keystore(&tmp, name, key, password).and_then(|written| {
        std::fs::hard_link(&written, &dest).map_err(|e| fail(format!("{}: {e}", dest.display())))
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result.map(|()| dest)
}

/// A new X25519 key pair for sealed reveals: (secret, public), each 32 bytes.
pub fn new_encryption_key() -> ([u8; 32], B256) {
    let secret: [u8; 32] = rand::random();
    (secret, encryption_public_key(secret))
}

/// The X25519 public key of `secret`.
pub fn encryption_public_key(secret: [u8; 32]) -> B256 {
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret));
    B256::from(*public.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystore_round_trip_and_wrong_password() {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKeySigner::random();
        let path = write_keystore(dir.path(), "k.json", &key, "hunter2").unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "hunter2\n").unwrap();
        let back = load_keystore(&path, &PasswordSource::File(pw.clone())).unwrap();
        assert_eq!(back.address(), key.address());

        std::fs::write(&pw, "wrong").unwrap();
        let err = load_keystore(&path, &PasswordSource::File(pw)).unwrap_err();
        assert!(matches!(err, KeyError::WrongPassword(_)), "{err}");
        assert!(err.to_string().contains("wrong password"));
    }

    #[test]
    fn create_keystore_never_replaces_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKeySigner::random();
        let path = create_keystore(dir.path(), "a.json", &key, "pw").unwrap();
        let before = std::fs::read(&path).unwrap();
        let err =
            create_keystore(dir.path(), "a.json", &PrivateKeySigner::random(), "pw").unwrap_err();
        assert!(err.to_string().contains("never overwritten"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // No temporary directory is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn missing_and_malformed_keystores_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let err = load_keystore(&missing, &PasswordSource::Env("X".into())).unwrap_err();
        assert!(matches!(err, KeyError::NotFound(_)));
        let junk = dir.path().join("junk.json");
        std::fs::write(&junk, "{\"not\": \"a keystore\"}").unwrap();
        // SAFETY: tests in this module don't read this variable concurrently.
        unsafe { std::env::set_var("WAYFARE_TEST_PW_JUNK", "x") };
        let err =
            load_keystore(&junk, &PasswordSource::Env("WAYFARE_TEST_PW_JUNK".into())).unwrap_err();
        assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
        let err =
            load_keystore(&junk, &PasswordSource::Env("WAYFARE_TEST_PW_UNSET".into())).unwrap_err();
        assert!(matches!(err, KeyError::PasswordEnvMissing(_)), "{err}");
    }

    #[test]
    fn private_keys_parse_strictly() {
        let k =
            parse_private_key("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
                .unwrap();
        assert_eq!(
            k.address().to_string(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
        assert!(matches!(
            parse_private_key("0x1234"),
            Err(KeyError::BadPrivateKey)
        ));
        assert!(matches!(
            parse_private_key(""),
            Err(KeyError::BadPrivateKey)
        ));
    }
}
