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
    // `cause`, not `source`: the message already says it, and a source would print it twice
    // in an error chain ("File exists (os error 17): File exists (os error 17)").
    #[error(
        "cannot read key file {path}: {cause} (create one with `quorumgate keygen --out {path}`)"
    )]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("key file {path} is not base64 of a 32-byte ed25519 seed ({why}); regenerate it with `quorumgate keygen`")]
    Malformed { path: PathBuf, why: String },
    #[error(
        "key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("cannot write key file {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path} already exists: keygen never overwrites a key (print its public key with `quorumgate keygen --public-key {path}`; to replace it, move it away first)")]
    Exists { path: PathBuf },
}

/// Loads a signing key; refuses files other users can read.
///
/// One exception: a file whose group bits are only the mask of a POSIX ACL that grants this
/// process's own user and nobody else (no group entry, no other user). systemd 255 and later
/// hand `LoadCredential=` files to a `DynamicUser=` service that way (root-owned, mode 0440,
/// `user:<the service's uid>:r--`), which is no more open than a 0400 file of that user.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    check_private_mode(path)?;
    let text = fs::read_to_string(path).map_err(|cause| KeyError::Read {
        path: path.to_owned(),
        cause,
    })?;
    parse_seed(text.trim()).map_err(|why| KeyError::Malformed {
        path: path.to_owned(),
        why,
    })
}

/// The rule [`load_signing_key`] applies to a private key file's mode, on its own: readable by
/// its owner only (0600, 0400), or shared with this process's own user alone through an ACL.
/// `quorumgate check` holds TLS private keys to it too.
pub fn check_private_mode(path: &Path) -> Result<(), KeyError> {
    let meta = fs::metadata(path).map_err(|cause| KeyError::Read {
        path: path.to_owned(),
        cause,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    let own_acl_only = || {
        mode & 0o007 == 0
            && acl_grants_only(path, rustix::process::geteuid().as_raw()).unwrap_or(false)
    };
    if mode & 0o077 != 0 && !own_acl_only() {
        return Err(KeyError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Whether `path` has a POSIX access ACL whose entries beyond the owner's grant access to user
/// `uid` only: no named group, no other named user, and the owning group gets nothing. `false`
/// without an ACL (the group bits are then the group's own).
fn acl_grants_only(path: &Path, uid: u32) -> std::io::Result<bool> {
    let mut buf = [0u8; 1024];
    let len = match rustix::fs::getxattr(path, "system.posix_acl_access", &mut buf) {
        Ok(len) => len,
        Err(e) if e == rustix::io::Errno::NODATA || e == rustix::io::Errno::NOTSUP => {
            return Ok(false)
        }
        Err(e) => return Err(e.into()),
    };
    Ok(acl_xattr_grants_only(&buf[..len], uid))
}

/// The check of [`acl_grants_only`] on the kernel's `system.posix_acl_access` value: a 4-byte
/// version (2), then 8-byte entries (tag u16, permissions u16, id u32, little-endian).
fn acl_xattr_grants_only(value: &[u8], uid: u32) -> bool {
    const USER: u16 = 0x02;
    const GROUP_OBJ: u16 = 0x04;
    const GROUP: u16 = 0x08;
    const MASK: u16 = 0x10;
    const OTHER: u16 = 0x20;
    let Some((version, entries)) = value.split_first_chunk::<4>() else {
        return false;
    };
    if u32::from_le_bytes(*version) != 2 || entries.is_empty() || entries.len() % 8 != 0 {
        return false;
    }
    let entries: Vec<(u16, u16, u32)> = entries
        .chunks_exact(8)
        .map(|e| {
            (
                u16::from_le_bytes([e[0], e[1]]),
                u16::from_le_bytes([e[2], e[3]]) & 0o7,
                u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
        .collect();
    // Named entries and the owning group are limited by the mask; no mask, no named entries.
    let mask = entries
        .iter()
        .find(|(tag, _, _)| *tag == MASK)
        .map_or(0o7, |(_, perm, _)| *perm);
    let mut grants_uid = false;
    for (tag, perm, id) in entries {
        let effective = perm & mask;
        match tag {
            USER if id == uid => grants_uid = effective != 0,
            USER | GROUP | GROUP_OBJ if effective != 0 => return false,
            OTHER if perm != 0 => return false,
            _ => {}
        }
    }
    grants_uid
}

fn parse_seed(text: &str) -> Result<SigningKey, String> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|e| config::base64_problem(&e))?;
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
    let write_err = |cause| KeyError::Write {
        path: path.to_owned(),
        cause,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => KeyError::Exists {
                path: path.to_owned(),
            },
            _ => write_err(e),
        })?;
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
        let exists = write_signing_key(&path, &key).unwrap_err();
        assert!(matches!(exists, KeyError::Exists { .. }), "{exists}");
        assert!(exists.to_string().contains("already exists"), "{exists}");
        assert!(std::error::Error::source(&exists).is_none());

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
        let none = load_signing_key(&dir.path().join("none")).unwrap_err();
        assert!(matches!(none, KeyError::Read { .. }), "{none}");
        // The io error is in the message once, not again as a source.
        assert!(std::error::Error::source(&none).is_none());
        // A space in the key, in the user's terms.
        let err = parse_seed("BVcN P2V5UFO3TcOoLVkRwGS0fAPWr/6EWc42H4V0ylA=").unwrap_err();
        assert!(err.contains("character 5 is a space"), "{err}");
    }

    fn setfacl(path: &Path, spec: &str) {
        let out = std::process::Command::new("setfacl")
            .args(["-m", spec])
            .arg(path)
            .output()
            .expect("run setfacl (Debian's acl package; scripts/test-deps.sh installs it)");
        assert!(
            out.status.success(),
            "setfacl -m {spec} {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A key shared the way systemd 255+ hands a credential to a `DynamicUser=` service: mode
    /// 0440 through an ACL entry for the service's user, the owning group with nothing. Set
    /// with setfacl on a real file (the temporary directory's filesystem: tmpfs or ext4).
    #[test]
    fn a_key_shared_only_with_our_own_user_through_an_acl_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        let key = SigningKey::from_bytes(&[7; 32]);
        write_signing_key(&path, &key).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        let me = rustix::process::geteuid().as_raw();
        setfacl(&path, &format!("u:{me}:r"));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o440, "the ACL mask shows as the group bits");
        assert_eq!(load_signing_key(&path).unwrap().to_bytes(), key.to_bytes());
        // The same file granted to another uid: what systemd does for the service's user.
        assert!(acl_grants_only(&path, me).unwrap());
        assert!(!acl_grants_only(&path, me + 1).unwrap());

        // Another user too: refused.
        let other = dir.path().join("other.key");
        write_signing_key(&other, &key).unwrap();
        setfacl(&other, &format!("u:{me}:r,u:{}:r", me + 4242));
        assert!(matches!(
            load_signing_key(&other),
            Err(KeyError::TooOpen { .. })
        ));
        // The owning group, or a named group: refused.
        let group = dir.path().join("group.key");
        write_signing_key(&group, &key).unwrap();
        setfacl(&group, &format!("u:{me}:r,g::r"));
        assert!(matches!(
            load_signing_key(&group),
            Err(KeyError::TooOpen { .. })
        ));
        let named = dir.path().join("named.key");
        write_signing_key(&named, &key).unwrap();
        setfacl(&named, &format!("u:{me}:r,g:4242:r"));
        assert!(matches!(
            load_signing_key(&named),
            Err(KeyError::TooOpen { .. })
        ));
        // Others: refused whatever the ACL says.
        let world = dir.path().join("world.key");
        write_signing_key(&world, &key).unwrap();
        setfacl(&world, &format!("u:{me}:r,o::r"));
        assert!(matches!(
            load_signing_key(&world),
            Err(KeyError::TooOpen { .. })
        ));
        // A group-readable file without an ACL: refused, as before.
        let plain = dir.path().join("plain.key");
        write_signing_key(&plain, &key).unwrap();
        fs::set_permissions(&plain, fs::Permissions::from_mode(0o440)).unwrap();
        assert!(matches!(
            load_signing_key(&plain),
            Err(KeyError::TooOpen { .. })
        ));
    }

    #[test]
    fn acl_xattr_parsing() {
        let acl = |entries: &[(u16, u16, u32)]| {
            let mut v = 2u32.to_le_bytes().to_vec();
            for (tag, perm, id) in entries {
                v.extend(tag.to_le_bytes());
                v.extend(perm.to_le_bytes());
                v.extend(id.to_le_bytes());
            }
            v
        };
        let any = u32::MAX;
        let systemd = acl(&[
            (0x01, 4, any),
            (0x02, 4, 61000),
            (0x04, 0, any),
            (0x10, 4, any),
            (0x20, 0, any),
        ]);
        assert!(acl_xattr_grants_only(&systemd, 61000));
        assert!(!acl_xattr_grants_only(&systemd, 61001));
        // A named entry masked to nothing grants nothing.
        let masked = acl(&[
            (0x01, 4, any),
            (0x02, 4, 61000),
            (0x02, 4, 7),
            (0x04, 0, any),
            (0x10, 0, any),
            (0x20, 0, any),
        ]);
        assert!(!acl_xattr_grants_only(&masked, 61000));
        assert!(!acl_xattr_grants_only(&[], 61000));
        assert!(!acl_xattr_grants_only(&systemd[..10], 61000));
        let mut v1 = systemd.clone();
        v1[0] = 1;
        assert!(!acl_xattr_grants_only(&v1, 61000));
    }
}
