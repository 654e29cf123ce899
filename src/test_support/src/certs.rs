//! Certificates for tests: the repository's development pair, and CAs and
//! leaves made on the spot with rcgen.

use std::path::{Path, PathBuf};

/// The repository's development certificate (self-signed, `localhost` and
/// `127.0.0.1`).
pub fn dev_cert() -> PathBuf {
    repository_root().join("cert.pem")
}

/// The key of [`dev_cert`].
pub fn dev_key() -> PathBuf {
    repository_root().join("key.pem")
}

fn repository_root() -> PathBuf {
    // This crate lives at src/test_support.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A certificate and its key, as PEM.
pub struct CertPem {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

impl CertPem {
    /// Writes both to `dir` as `NAME.crt.pem` and `NAME.key.pem`; returns
    /// (certificate path, key path).
    pub fn write_to(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt.pem"));
        let key = dir.join(format!("{name}.key.pem"));
        std::fs::write(&cert, &self.cert).expect("write certificate");
        std::fs::write(&key, &self.key).expect("write key");
        (cert, key)
    }
}

/// When a leaf is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Valid now (rcgen's default period).
    Now,
    /// Ended in 2021.
    Expired,
    /// Begins in 2090.
    NotYetValid,
}

impl Validity {
    fn apply(self, params: &mut rcgen::CertificateParams) {
        match self {
            Validity::Now => {}
            Validity::Expired => {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            Validity::NotYetValid => {
                params.not_before = rcgen::date_time_ymd(2090, 1, 1);
                params.not_after = rcgen::date_time_ymd(2091, 1, 1);
            }
        }
    }
}

/// A development CA that issues server and client certificates.
pub struct TestCa {
    /// The CA's certificate and key, for issuing with rcgen directly.
    pub issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A new CA with `common_name`.
    pub fn new(common_name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        TestCa {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA's certificate, PEM: what a peer must trust.
    pub fn cert_pem(&self) -> String {
        self.issuer.as_ref().pem()
    }

    /// A leaf for `names` (DNS names or IP addresses), valid as `validity` says.
    pub fn leaf(&self, names: &[&str], validity: Validity) -> CertPem {
        let mut params = rcgen::CertificateParams::new(owned(names)).expect("leaf params");
        validity.apply(&mut params);
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        CertPem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A self-signed leaf (not a CA) for `names`.
pub fn self_signed(names: &[&str]) -> CertPem {
    let certified =
        rcgen::generate_simple_self_signed(owned(names)).expect("self-signed certificate");
    CertPem {
        cert: certified.cert.pem(),
        key: certified.signing_key.serialize_pem(),
    }
}

fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_development_pair_is_where_the_kit_says() {
        let cert = std::fs::read_to_string(dev_cert()).expect("cert.pem at the root");
        let key = std::fs::read_to_string(dev_key()).expect("key.pem at the root");
        assert!(cert.contains("BEGIN CERTIFICATE"));
        assert!(key.contains("PRIVATE KEY"));
    }
}
