//! The node's stable libp2p identity: an ed25519 keypair kept in a file (mode 0600) beside the
//! node's other keys.

use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;
use thiserror::Error;

/// Why the node key could not be loaded or created.
#[derive(Debug, Error)]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("node key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not hold a protobuf-encoded ed25519 keypair.
    #[error(
        "node key file {path} is not a libp2p ed25519 keypair: restore it from backup or delete it to get a new peer id"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
    },
    /// The file is readable by others.
    #[error("node key file {path} has mode {mode:o}: run `chmod 600 {path}`")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
}

/// Loads the ed25519 keypair at `path`, or creates one there (mode 0600) if the file is absent.
pub fn load_or_create_keypair(path: &Path) -> Result<Keypair, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            check_mode(path)?;
            let kp =
                Keypair::from_protobuf_encoding(&bytes).map_err(|_| KeyFileError::Corrupt {
                    path: path.to_owned(),
                })?;
            if kp.clone().try_into_ed25519().is_err() {
                return Err(KeyFileError::Corrupt {
                    path: path.to_owned(),
                });
            }
            Ok(kp)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let kp = Keypair::generate_ed25519();
            let bytes = kp
                .to_protobuf_encoding()
                .map_err(|e| io(std::io::Error::other(e)))?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(path).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(kp)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(unix)]
fn check_mode(path: &Path) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_: &Path) -> Result<(), KeyFileError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reloads_the_same_identity_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let a = load_or_create_keypair(&path).unwrap();
        let b = load_or_create_keypair(&path).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                load_or_create_keypair(&path),
                Err(KeyFileError::Permissions { .. })
            ));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            load_or_create_keypair(&path),
            Err(KeyFileError::Corrupt { .. })
        ));
    }
}
