//! TLS between portwall's panel and its clients (`portwall-edge`,
//! `portwall cloud`, `explain`, `audit`, the lab): rustls with the `ring`
//! provider only, so no build of the workspace compiles aws-lc.
//!
//! - [`server_config`]: the panel's certificate chain and key, read from PEM
//!   files, with errors that name the file; the panel reloads it on SIGHUP.
//! - [`ClientTls`]: how a client trusts the panel (the system's roots, or the
//!   CA certificates of one PEM file, `--panel-ca`) and whether it may send a
//!   token over plain HTTP to a panel that is not on loopback
//!   (`--insecure-http`). [`ClientTls::check_url`] is that rule, in one place
//!   for every client.
//! - [`authority`] (feature `authority`): a throwaway certificate authority
//!   (rcgen) for the lab and the tests.

#[cfg(feature = "authority")]
pub mod authority;

pub use rustls;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The flag that lets a client send its token over plain HTTP to a panel that
/// is not on loopback.
pub const INSECURE_HTTP_FLAG: &str = "--insecure-http";

/// What went wrong setting up TLS, or why a URL is refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no {what} (expected PEM: -----BEGIN {label}-----)", path.display())]
    Missing {
        what: &'static str,
        label: &'static str,
        path: PathBuf,
    },
    #[error("{} is not a valid PEM {what}: {message}", path.display())]
    BadPem {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("the certificate {} and the key {} do not make a TLS server: {message}", cert.display(), key.display())]
    Server {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("the CA file {}: {message}", path.display())]
    BadCa { path: PathBuf, message: String },
    #[error("cannot use the system's trusted certificates: {0}")]
    SystemRoots(String),
    #[error("'{0}' is not a panel URL: write https://HOST[:PORT] (http:// only for a panel on loopback)")]
    BadUrl(String),
    #[error(
        "refusing to send a token over plain HTTP to {url}: only a panel on loopback \
         (127.0.0.1, ::1, localhost) is reached without TLS; use https:// (with --panel-ca FILE \
         for a private CA), or pass {INSECURE_HTTP_FLAG} to send it in clear anyway"
    )]
    PlainHttp { url: String },
    #[error("cannot make a certificate: {0}")]
    Issue(String),
}

/// The one crypto provider of portwall: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate of a PEM file (a chain: the leaf first), at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read("certificate file", path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what: "certificate file",
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            what: "certificate",
            label: "CERTIFICATE",
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("key file", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Missing {
            what: "private key",
            label: "PRIVATE KEY",
            path: path.to_path_buf(),
        },
        e => TlsError::BadPem {
            what: "key file",
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    })
}

/// The panel's TLS server configuration from a PEM certificate chain and its
/// key; offers HTTP/2 and HTTP/1.1.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let chain = read_certificates(cert)?;
    let private = read_private_key(key)?;
    let server_err = |message: String| TlsError::Server {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        message,
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| server_err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| server_err(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// How a client reaches the panel: whom it trusts, and whether plain HTTP to
/// a non-loopback panel is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// Trust only the CA certificates of this PEM file (`--panel-ca`); none:
    /// the system's trusted roots.
    pub ca_file: Option<PathBuf>,
    /// Allow `http://` to a panel that is not on loopback (`--insecure-http`).
    pub insecure_http: bool,
}

/// How a checked URL will be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `https://`, verified.
    Https,
    /// `http://` to loopback: nothing leaves the machine.
    PlainLoopback,
    /// `http://` to another host, allowed by `--insecure-http`.
    PlainInsecure,
}

impl ClientTls {
    /// The rustls client configuration: verification against the CA file, or
    /// against the system's roots (the platform verifier).
    pub fn config(&self) -> Result<ClientConfig, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::SystemRoots(e.to_string()))?;
        let config = match &self.ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certificates(path)? {
                    roots.add(cert).map_err(|e| TlsError::BadCa {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => {
                use rustls_platform_verifier::BuilderVerifierExt;
                builder
                    .with_platform_verifier()
                    .map_err(|e| TlsError::SystemRoots(e.to_string()))?
                    .with_no_client_auth()
            }
        };
        Ok(config)
    }

    /// Whether a token may be sent to `url`: `https://` always, `http://` to
    /// loopback, `http://` elsewhere only with `insecure_http`.
    pub fn check_url(&self, url: &str) -> Result<Transport, TlsError> {
        let parsed = url::Url::parse(url).map_err(|_| TlsError::BadUrl(url.to_string()))?;
        match parsed.scheme() {
            "https" if parsed.host().is_some() => Ok(Transport::Https),
            "http" if parsed.host().is_some() => {
                if is_loopback(&parsed) {
                    Ok(Transport::PlainLoopback)
                } else if self.insecure_http {
                    Ok(Transport::PlainInsecure)
                } else {
                    Err(TlsError::PlainHttp {
                        url: url.to_string(),
                    })
                }
            }
            _ => Err(TlsError::BadUrl(url.to_string())),
        }
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a).is_loopback(),
        Some(url::Host::Ipv6(a)) => IpAddr::V6(a).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_goes_over_plain_http_only_to_loopback_unless_allowed() {
        let strict = ClientTls::default();
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.3.4.5",
            "http://[::1]:8080/",
            "http://localhost:8080",
        ] {
            assert_eq!(
                strict.check_url(ok).unwrap(),
                Transport::PlainLoopback,
                "{ok}"
            );
        }
        assert_eq!(
            strict.check_url("https://panel.example").unwrap(),
            Transport::Https
        );
        for refused in [
            "http://203.0.113.2:8080",
            "http://panel.example",
            "http://[2001:db8::1]/",
            "http://localhost.example",
        ] {
            let e = strict.check_url(refused).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains(refused) && msg.contains(INSECURE_HTTP_FLAG),
                "{msg}"
            );
        }
        let insecure = ClientTls {
            insecure_http: true,
            ..ClientTls::default()
        };
        assert_eq!(
            insecure.check_url("http://203.0.113.2:8080").unwrap(),
            Transport::PlainInsecure
        );
        for bad in ["ftp://x", "panel.example", "https://", "http://"] {
            assert!(
                matches!(strict.check_url(bad), Err(TlsError::BadUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn unreadable_and_empty_pem_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let e = read_certificates(&empty).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("BEGIN CERTIFICATE"),
            "{e}"
        );
        let e = read_private_key(&empty).unwrap_err().to_string();
        assert!(e.contains("empty.pem") && e.contains("PRIVATE KEY"), "{e}");
        let e = ClientTls {
            ca_file: Some(dir.path().join("nope.pem")),
            insecure_http: false,
        }
        .config()
        .unwrap_err()
        .to_string();
        assert!(e.contains("nope.pem"), "{e}");
    }

    #[cfg(feature = "authority")]
    #[test]
    fn an_issued_certificate_makes_a_server_and_its_ca_a_client() {
        let dir = tempfile::tempdir().unwrap();
        let ca = authority::Authority::new("portwall test CA").unwrap();
        let files = ca
            .issue_files(dir.path(), "panel", &["127.0.0.1", "localhost"])
            .unwrap();
        server_config(&files.cert, &files.key).unwrap();
        let client = ClientTls {
            ca_file: Some(files.ca.clone()),
            insecure_http: false,
        };
        client.config().unwrap();
        // A key file given as the certificate is refused with both names.
        let e = server_config(&files.key, &files.key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("panel.key"), "{e}");
    }
}
