//! TLS configuration: rustls with the aws-lc-rs provider only.
//!
//! - [`install_crypto_provider`] makes aws-lc-rs the process default (idempotent).
//! - [`client_config`] / [`server_config`] build configs from PEM files, with errors that name the
//!   file and what is wrong with it.
//! - [`ClientConfigCache`] shares one `ClientConfig` between probes with the same trust settings.
//! - [`generate_dev_pki`] writes a throwaway CA and leaf certificates for the demo, tests and
//!   `keygen --tls`.
//!
//! Architecture Invariant: `ring` is never linked. If a second provider were compiled in,
//! `ClientConfig::builder()` would panic at run time; `cargo tree -e normal -i ring` stays empty.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN protocol id for HTTP/1.1, the only protocol we speak.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {what}", path.display())]
    Pem { path: PathBuf, what: String },
    #[error("{}: no certificates in it (expected PEM `BEGIN CERTIFICATE` blocks)", path.display())]
    NoCertificates { path: PathBuf },
    #[error("{}: no usable private key in it (expected a PEM PKCS#8, PKCS#1 or SEC1 key): {what}", path.display())]
    BadKey { path: PathBuf, what: String },
    #[error("{}: certificate rejected as a trust anchor: {source}", path.display())]
    BadCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("client CA bundle {}: {what}", path.display())]
    ClientVerifier { path: PathBuf, what: String },
    #[error("certificate {} and key {} do not form a usable identity: {source}", cert.display(), key.display())]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("invalid dev PKI name {name:?}: use 1-64 of [A-Za-z0-9._-], not starting with '.'")]
    BadName { name: String },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// Installs aws-lc-rs as the process-wide default crypto provider. Idempotent: later calls (and a
/// provider installed by someone else first) are fine.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: either way a provider is installed, and
        // aws-lc-rs is the only one compiled in.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file; an error if there is none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::BadKey {
        path: path.to_owned(),
        what: e.to_string(),
    })
}

/// A PEM bundle as trust anchors; an error if any certificate in it cannot be one.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|source| TlsError::BadCa {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// The platform's trust store plus the webpki roots. Unreadable platform certificates are
/// skipped: the webpki roots alone still make a usable store.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "skipping unreadable platform certificate");
    }
    roots.add_parsable_certificates(native.certs);
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

/// The roots a client trusts: `ca_file` only, or (when `None`) the platform's roots plus the
/// webpki roots. For clients that build their own [`ClientConfig`] (database probes: no ALPN).
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    match ca_file {
        Some(path) => load_roots(path),
        None => Ok(system_roots()),
    }
}

/// A client config trusting `ca_file` only (or, when `None`, the platform roots plus the webpki
/// roots), optionally presenting a client certificate for mutual TLS. ALPN: `http/1.1`.
pub fn client_config(
    ca_file: Option<&Path>,
    client_identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    install_crypto_provider();
    let roots = match ca_file {
        Some(path) => load_roots(path)?,
        None => system_roots(),
    };
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let mut config = match client_identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|source| TlsError::Identity {
                cert: cert.to_owned(),
                key: key.to_owned(),
                source,
            })?,
    };
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// A server config presenting `cert_file`/`key_file`. With `client_ca_file`, every client must
/// present a certificate issued by a CA in that bundle. ALPN: `http/1.1`.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    install_crypto_provider();
    let builder = ServerConfig::builder();
    let builder = match client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let verifier = WebPkiClientVerifier::builder(Arc::new(load_roots(path)?))
                .build()
                .map_err(|e| TlsError::ClientVerifier {
                    path: path.to_owned(),
                    what: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(load_certs(cert_file)?, load_key(key_file)?)
        .map_err(|source| TlsError::Identity {
            cert: cert_file.to_owned(),
            key: key_file.to_owned(),
            source,
        })?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

type CacheKey = (Option<PathBuf>, Option<(PathBuf, PathBuf)>);

/// Shares one [`ClientConfig`] between all users of the same CA file and client identity, so a
/// thousand probes against one CA parse it once (and share rustls' session cache).
///
/// Files are read on first use; a failure is not cached, so a file that appears later is picked
/// up by the next caller. A changed file is not re-read (restart the agent to rotate a CA).
#[derive(Debug, Default)]
pub struct ClientConfigCache {
    configs: Mutex<HashMap<CacheKey, Arc<ClientConfig>>>,
}

impl ClientConfigCache {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared config for these settings, building it on first use.
    pub fn get(
        &self,
        ca_file: Option<&Path>,
        client_identity: Option<(&Path, &Path)>,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let key: CacheKey = (
            ca_file.map(Path::to_owned),
            client_identity.map(|(c, k)| (c.to_owned(), k.to_owned())),
        );
        if let Some(config) = self.lock().get(&key) {
            return Ok(Arc::clone(config));
        }
        // Built outside the lock: loading the platform roots takes milliseconds. Two racing
        // builders both succeed and the first insert wins.
        let config = client_config(ca_file, client_identity)?;
        Ok(Arc::clone(self.lock().entry(key).or_insert(config)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Arc<ClientConfig>>> {
        // The map holds no invariant a panicking holder could break; keep using it.
        self.configs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Files written by [`generate_dev_pki`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevPki {
    /// The CA certificate (`ca.pem`); its key is not kept.
    pub ca_file: PathBuf,
    /// Per name: `(name, <name>.pem, <name>.key)`.
    pub certs: Vec<(String, PathBuf, PathBuf)>,
}

fn valid_pki_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Writes a throwaway CA (`dir/ca.pem`) and, per name, a leaf certificate valid for both server
/// and client authentication with SANs `localhost`, `127.0.0.1` and the name (`dir/<name>.pem`,
/// `dir/<name>.key`, the key mode 0600). Existing files are overwritten. For demos and tests
/// only: the CA key is discarded and the certificates never expire in practice.
pub fn generate_dev_pki(dir: &Path, names: &[&str]) -> Result<DevPki, TlsError> {
    let leaves: Vec<(&str, Vec<String>)> =
        names.iter().map(|n| (*n, vec![(*n).to_owned()])).collect();
    generate_pki(dir, &leaves)
}

/// As [`generate_dev_pki`], with each leaf's extra SANs given (`(name, sans)`: the files are
/// named by `name`, the SANs are `localhost`, `127.0.0.1` and `sans`; an IP address becomes an
/// IP SAN). `quorumgate init` names each agent's certificate by its id and adds its peer URL's
/// host.
pub fn generate_pki(dir: &Path, leaves: &[(&str, Vec<String>)]) -> Result<DevPki, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };

    if let Some((bad, _)) = leaves.iter().find(|(n, _)| !valid_pki_name(n)) {
        return Err(TlsError::BadName {
            name: (*bad).to_owned(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "quorumgate dev CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let ca_file = dir.join("ca.pem");
    write_file(&ca_file, ca_cert.pem().as_bytes(), false)?;

    let mut certs = Vec::with_capacity(leaves.len());
    for (name, extra) in leaves {
        let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        for san in extra {
            if !sans.contains(san) {
                sans.push(san.clone());
            }
        }
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, *name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;

        let cert_file = dir.join(format!("{name}.pem"));
        let key_file = dir.join(format!("{name}.key"));
        write_file(&cert_file, cert.pem().as_bytes(), false)?;
        write_file(&key_file, key.serialize_pem().as_bytes(), true)?;
        certs.push(((*name).to_owned(), cert_file, key_file));
    }
    Ok(DevPki { ca_file, certs })
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path).map_err(err)?;
        // `mode` applies only to a newly created file; tighten an existing one too.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
        return file
            .write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(err);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[test]
    fn dev_pki_loads_as_client_and_server_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = generate_dev_pki(dir.path(), &["agent-a", "agent-b"]).expect("pki");
        assert_eq!(pki.certs.len(), 2);
        let (_, cert, key) = &pki.certs[0];
        server_config(cert, key, Some(&pki.ca_file)).expect("server config with mTLS");
        server_config(cert, key, None).expect("server config");
        let client = client_config(Some(&pki.ca_file), Some((cert, key))).expect("client config");
        assert_eq!(client.alpn_protocols, vec![b"http/1.1".to_vec()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.pem");
        let err = client_config(Some(&missing), None).expect_err("missing file");
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        assert!(err.to_string().contains("nope.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a pem\n").expect("write");
        let err = client_config(Some(&empty), None).expect_err("no certs");
        assert!(matches!(err, TlsError::NoCertificates { .. }), "{err}");

        let pki = generate_dev_pki(dir.path(), &["a"]).expect("pki");
        let err = server_config(&pki.certs[0].1, &pki.ca_file, None).expect_err("cert as key");
        assert!(matches!(err, TlsError::BadKey { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");

        assert!(matches!(
            generate_dev_pki(dir.path(), &["../x"]),
            Err(TlsError::BadName { .. })
        ));
    }

    #[test]
    fn cache_shares_configs_per_ca_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = generate_dev_pki(dir.path(), &["a"]).expect("pki");
        let cache = ClientConfigCache::new();
        let one = cache.get(Some(&pki.ca_file), None).expect("config");
        let two = cache.get(Some(&pki.ca_file), None).expect("config");
        assert!(Arc::ptr_eq(&one, &two));
        let system = cache.get(None, None).expect("system roots");
        assert!(!Arc::ptr_eq(&one, &system));
    }
}
