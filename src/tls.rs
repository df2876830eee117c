//! TLS with rustls: termination (certificate chain + key from PEM files, ALPN
//! `h2` and `http/1.1`) and the client side of https upstreams and of a
//! `rediss://` store (system roots plus the config's `tls_ca`).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: no PEM certificate could be read ({reason})")]
    Certificate { path: String, reason: String },
    #[error("{path}: no PEM private key could be read ({reason})")]
    Key { path: String, reason: String },
    #[error("{path}: no CA certificate could be added as a trust root ({reason})")]
    Root { path: String, reason: String },
    #[error("certificate and key do not form a usable pair: {0}")]
    Config(#[from] rustls::Error),
}

/// Builds the server config; done at startup (and on reload), never per connection.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Key { path: key.display().to_string(), reason: e.to_string() })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The trust roots of an https upstream or a `rediss://` store: the system
/// roots (read once per process) plus every certificate in `extra_ca` (the
/// config's `tls_ca`). Config validation calls it for every `tls_ca`: a file
/// this accepts is one [`roots_pem`] accepts.
pub fn trust_roots(extra_ca: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = system_roots().store.clone();
    if let Some(path) = extra_ca {
        for cert in extra_roots(path)? {
            roots.add(cert).map_err(|e| root_err(path, e.to_string()))?;
        }
    }
    Ok(roots)
}

/// The same trust roots as [`trust_roots`], as PEM text: the system roots
/// plus every certificate in `extra_ca` (`[store] tls_ca`). The redis crate
/// takes its roots as PEM, and once given any it trusts only those, so the
/// system roots are written out with the extra ones.
pub fn roots_pem(extra_ca: Option<&Path>) -> Result<Vec<u8>, TlsError> {
    let mut certs = system_roots().certs.clone();
    if let Some(path) = extra_ca {
        certs.extend(extra_roots(path)?);
    }
    let blocks: Vec<pem::Pem> = certs.iter().map(|c| pem::Pem::new("CERTIFICATE", c.as_ref())).collect();
    Ok(pem::encode_many(&blocks).into_bytes())
}

/// The certificates of a `tls_ca` file, each checked to be usable as a trust root.
fn extra_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = read_certs(path).map_err(|e| root_err(path, e.to_string()))?;
    let mut check = RootCertStore::empty();
    for cert in &certs {
        check.add(cert.clone()).map_err(|e| root_err(path, e.to_string()))?;
    }
    Ok(certs)
}

fn root_err(path: &Path, reason: String) -> TlsError {
    TlsError::Root { path: path.display().to_string(), reason }
}

/// The client config for upstream connections; built with each config
/// snapshot, never per connection. ALPN is left to the connector.
pub fn client_config(roots: RootCertStore) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The platform's trust store: every certificate usable as a root, and the
/// store built from them (kept both ways for [`roots_pem`]).
struct SystemRoots {
    certs: Vec<CertificateDer<'static>>,
    store: RootCertStore,
}

/// The platform's trust store, loaded on first use. Unreadable entries are
/// skipped (logged): one bad file must not make every https upstream fail.
fn system_roots() -> &'static SystemRoots {
    static ROOTS: OnceLock<SystemRoots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "a system trust root could not be read");
        }
        let mut roots = SystemRoots { certs: Vec::new(), store: RootCertStore::empty() };
        let mut ignored = 0;
        for cert in found.certs {
            match roots.store.add(cert.clone()) {
                Ok(()) => roots.certs.push(cert),
                Err(_) => ignored += 1,
            }
        }
        tracing::debug!(added = roots.certs.len(), ignored, "system trust roots loaded");
        roots
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Certificate { path: path.display().to_string(), reason };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("the file holds no CERTIFICATE block".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_pem_is_the_system_roots_plus_the_extra_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        let parse = |pem: Vec<u8>| -> Vec<CertificateDer<'static>> {
            CertificateDer::pem_slice_iter(&pem).collect::<Result<_, _>>().unwrap()
        };
        let system = parse(roots_pem(None).unwrap());
        assert_eq!(system.len(), system_roots().certs.len());
        let with_ca = parse(roots_pem(Some(&dir.path().join("ca.pem"))).unwrap());
        assert_eq!(with_ca[..system.len()], system[..], "the system roots are kept");
        assert_eq!(with_ca[system.len()..], [ca.cert.der().clone()], "and the CA added");

        std::fs::write(dir.path().join("junk.pem"), "no certificate here").unwrap();
        let err = roots_pem(Some(&dir.path().join("junk.pem"))).unwrap_err();
        assert!(matches!(err, TlsError::Root { .. }), "{err}");
    }
}
