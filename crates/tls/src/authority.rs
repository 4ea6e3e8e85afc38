//! A throwaway certificate authority (rcgen, ring): the lab's panel and the
//! tests get a certificate from it, and their clients trust its certificate
//! with `--panel-ca`. Not for production: the key lives only in memory and in
//! the files the caller asks for.

use crate::TlsError;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A self-signed CA that issues server certificates.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Where [`Authority::issue_files`] wrote the CA certificate, the server
/// certificate and its key.
#[derive(Debug, Clone)]
pub struct IssuedFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn issue_err(e: rcgen::Error) -> TlsError {
    TlsError::Issue(e.to_string())
}

impl Authority {
    /// A new CA whose certificate's common name is `name`.
    pub fn new(name: &str) -> Result<Authority, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(issue_err)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(issue_err)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(issue_err)?;
        Ok(Authority { issuer })
    }

    /// The CA's certificate, PEM: what clients trust.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (IP addresses or DNS names).
    pub fn issue(&self, names: &[&str]) -> Result<Issued, TlsError> {
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).map_err(issue_err)?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("portwall"),
        );
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(issue_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(issue_err)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a certificate for `names` and writes `DIR/ca.pem`,
    /// `DIR/STEM.pem` and `DIR/STEM.key` (mode 0600).
    pub fn issue_files(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
    ) -> Result<IssuedFiles, TlsError> {
        let issued = self.issue(names)?;
        let files = IssuedFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        write_file(&files.ca, self.cert_pem().as_bytes(), 0o644)?;
        write_file(&files.cert, issued.cert_pem.as_bytes(), 0o644)?;
        write_file(&files.key, issued.key_pem.as_bytes(), 0o600)?;
        Ok(files)
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::Read {
        what: "file to write",
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)
}
