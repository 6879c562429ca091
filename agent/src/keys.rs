//! Agent signing keys on disk: base64 of the 32-byte ed25519 seed, one line, mode 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use quorum::{SigningKey, VerifyingKey};

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "cannot read key file {path}: {source} (create one with `quorumgate keygen --out {path}`)"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is not base64 of a 32-byte ed25519 seed ({why}); regenerate it with `quorumgate keygen`")]
    Malformed { path: PathBuf, why: String },
    #[error(
        "key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Loads a signing key; refuses files other users can read.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let read_err = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(read_err)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let text = fs::read_to_string(path).map_err(read_err)?;
    parse_seed(text.trim()).map_err(|why| KeyError::Malformed {
        path: path.to_owned(),
        why,
    })
}

fn parse_seed(text: &str) -> Result<SigningKey, String> {
    let bytes = STANDARD.decode(text).map_err(|e| e.to_string())?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes, expected 32", b.len()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A fresh key from the operating system's CSPRNG.
pub fn generate() -> Result<SigningKey, getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes `key` to `path` with mode 0600; refuses to overwrite an existing file.
pub fn write_signing_key(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let write_err = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write_err)?;
    writeln!(f, "{}", STANDARD.encode(key.to_bytes())).map_err(write_err)?;
    f.sync_all().map_err(write_err)
}

/// The form `[[members]].public_key` takes in the config.
#[must_use]
pub fn public_key_base64(key: &VerifyingKey) -> String {
    STANDARD.encode(key.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = SigningKey::from_bytes(&[5; 32]);
        write_signing_key(&path, &key).unwrap();
        assert_eq!(load_signing_key(&path).unwrap().to_bytes(), key.to_bytes());
        assert!(matches!(
            write_signing_key(&path, &key),
            Err(KeyError::Write { .. })
        ));

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_signing_key(&path),
            Err(KeyError::TooOpen { .. })
        ));

        let bad = dir.path().join("bad");
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&bad)
            .unwrap()
            .write_all(b"abc")
            .unwrap();
        let err = load_signing_key(&bad).unwrap_err();
        assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
        assert!(matches!(
            load_signing_key(&dir.path().join("none")),
            Err(KeyError::Read { .. })
        ));
    }
}
