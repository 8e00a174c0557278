//! HTTPS: a rustls server configuration whose certificate can be swapped at runtime, so SIGHUP
//! picks up renewed certificate files without dropping the listener or open connections.
//! Minimum TLS 1.2. With `http.tls.ca`, clients must present a certificate signed by that CA:
//! a primary can admit only its replicas (their `replication.tls`); without it, no client
//! authentication, as the Go server (whose `http.tls.root` is ignored, see
//! [`HttpTlsSettings`]).

use crate::config::HttpTlsSettings;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// Why TLS files cannot be used, naming the key (`http.tls.cert`, `http.tls.key`).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// One of the two files is not configured.
    #[error("http.tls: both cert and key are required")]
    Missing,
    /// A file cannot be read or holds no usable certificate or key.
    #[error("http.tls.{key} {path}: {message}")]
    File {
        /// `cert` or `key`.
        key: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// What a PEM file must hold.
#[derive(Debug, Clone, Copy)]
pub enum PemKind {
    /// At least one certificate.
    Certificates,
    /// A private key.
    PrivateKey,
}

/// Reads `path` and checks that it holds what `kind` asks for: for files that a library reads
/// only later (NATS TLS), so a bad file fails the start and `check-config` instead.
///
/// # Errors
/// The problem, as one line without the path.
pub fn check_pem(path: &Path, kind: PemKind) -> Result<(), String> {
    let mut reader = File::open(path)
        .map(BufReader::new)
        .map_err(|e| e.to_string())?;
    match kind {
        PemKind::Certificates => {
            let certs = rustls_pemfile::certs(&mut reader)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            if certs.is_empty() {
                return Err("no PEM certificate found".into());
            }
        }
        PemKind::PrivateKey => {
            rustls_pemfile::private_key(&mut reader)
                .map_err(|e| e.to_string())?
                .ok_or("no PEM private key found")?;
        }
    }
    Ok(())
}

/// A certificate resolver that always answers the current certificate.
#[derive(Debug)]
pub struct ReloadableCert {
    /// std `RwLock`: read on every handshake for a pointer clone, written only on reload;
    /// never held across an `.await`.
    current: RwLock<Arc<CertifiedKey>>,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    /// CAs whose client certificates are admitted; `None`: no client authentication.
    client_roots: Option<Arc<rustls::RootCertStore>>,
}

impl ReloadableCert {
    /// Loads the files named in `tls`.
    ///
    /// # Errors
    /// [`TlsError`] naming the file.
    pub fn load(tls: &HttpTlsSettings) -> Result<Arc<ReloadableCert>, TlsError> {
        let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
            return Err(TlsError::Missing);
        };
        let ck = certified_key(cert, key)?;
        let client_roots = match &tls.ca {
            None => None,
            Some(ca) => Some(Arc::new(root_store(ca)?)),
        };
        Ok(Arc::new(ReloadableCert {
            current: RwLock::new(Arc::new(ck)),
            cert: cert.clone(),
            key: key.clone(),
            client_roots,
        }))
    }

    /// Re-reads the certificate and key files; on error the old certificate stays.
    ///
    /// # Errors
    /// [`TlsError`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let ck = certified_key(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ck);
        Ok(())
    }

    /// The rustls server configuration using this resolver.
    ///
    /// # Errors
    /// [`TlsError`] when the client CA cannot be used to verify certificates.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
            .expect("ring supports TLS 1.2 and 1.3");
        let builder = match &self.client_roots {
            None => builder.with_no_client_auth(),
            Some(roots) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.clone(),
                    provider,
                )
                .build()
                .map_err(|e| TlsError::File {
                    key: "ca",
                    path: String::new(),
                    message: e.to_string(),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        Ok(builder.with_cert_resolver(self.clone()))
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The CA certificates of a PEM bundle, for verifying client certificates.
fn root_store(ca: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let err = |message: String| TlsError::File {
        key: "ca",
        path: ca.display().to_string(),
        message,
    };
    let file = File::open(ca).map_err(|e| err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no PEM certificate found".into()));
    }
    Ok(roots)
}

fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let err = |which: &'static str, path: &Path, e: &dyn std::fmt::Display| TlsError::File {
        key: which,
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let open = |which, p: &Path| {
        File::open(p)
            .map(BufReader::new)
            .map_err(|e| err(which, p, &e))
    };
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut open("cert", cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| err("cert", cert, &e))?;
    if certs.is_empty() {
        return Err(err("cert", cert, &"no PEM certificate found"));
    }
    let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut open("key", key)?)
        .map_err(|e| err("key", key, &e))?
        .ok_or_else(|| err("key", key, &"no PEM private key found"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| err("key", key, &format!("unsupported private key: {e}")))?;
    Ok(CertifiedKey::new(certs, signing))
}
