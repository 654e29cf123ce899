//! Reading the files. Whole files are read at once: certificates and keys
//! are a few kilobytes, and each problem is judged on the whole content (a
//! file without a certificate may hold a key, which is the more useful thing
//! to say).

use std::io;
use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{CertificateProblem, PemError, PemFile, PrivateKeyProblem};

/// Every `CERTIFICATE` block of the PEM file at `path`, in order (a chain
/// leaf first, or a set of trusted CAs). At least one, or an error.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let invalid = |problem| PemError::InvalidCertificate {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = read(path, PemFile::Certificate)?;
    if is_blank(&bytes) {
        return Err(invalid(CertificateProblem::Empty));
    }
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| invalid(CertificateProblem::Malformed(e.to_string())))?;
    if certificates.is_empty() {
        return Err(invalid(if contains(&bytes, b"PRIVATE KEY-----") {
            CertificateProblem::HoldsPrivateKey
        } else {
            CertificateProblem::NoPemCertificate
        }));
    }
    Ok(certificates)
}

/// The first private key of the PEM file at `path`: PKCS#8, PKCS#1 (RSA) or
/// SEC1 (EC), not encrypted.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let invalid = |problem| PemError::InvalidPrivateKey {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = read(path, PemFile::PrivateKey)?;
    if is_blank(&bytes) {
        return Err(invalid(PrivateKeyProblem::Empty));
    }
    // Encrypted keys come as PKCS#8 "ENCRYPTED PRIVATE KEY" or as legacy
    // OpenSSL PEM with a "Proc-Type: 4,ENCRYPTED" header. The PEM reader
    // would skip the first and choke on the second; say what it really is.
    if contains(&bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(&bytes, b"Proc-Type: 4,ENCRYPTED")
    {
        return Err(invalid(PrivateKeyProblem::Encrypted));
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound if contains(&bytes, b"-----BEGIN CERTIFICATE-----") => {
            invalid(PrivateKeyProblem::HoldsCertificate)
        }
        pem::Error::NoItemsFound => invalid(PrivateKeyProblem::NoPemKey),
        other => invalid(PrivateKeyProblem::Malformed(other.to_string())),
    })
}

fn read(path: &Path, expected: PemFile) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => PemError::NotFound {
            path: path.to_path_buf(),
            expected,
        },
        _ => PemError::Unreadable {
            path: path.to_path_buf(),
            expected,
            source,
        },
    })
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair {
        cert: String,
        key: String,
    }

    fn generated_pair() -> Pair {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn file_with(dir: &tempfile::TempDir, name: &str, contents: &str) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }

    fn certificate_problem(path: &Path) -> CertificateProblem {
        match read_certificates(path) {
            Err(PemError::InvalidCertificate { problem, .. }) => problem,
            other => panic!("expected an invalid certificate, got {other:?}"),
        }
    }

    fn key_problem(path: &Path) -> PrivateKeyProblem {
        match read_private_key(path) {
            Err(PemError::InvalidPrivateKey { problem, .. }) => problem,
            other => panic!("expected an invalid private key, got {other:?}"),
        }
    }

    #[test]
    fn chains_are_read_in_order_and_keys_in_their_format() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (generated_pair(), generated_pair());
        let chain = file_with(
            &dir,
            "chain.pem",
            &format!("{}\n{}", first.cert, second.cert),
        );
        let certificates = read_certificates(&chain).unwrap();
        assert_eq!(certificates.len(), 2);
        let expected = CertificateDer::from_pem_slice(second.cert.as_bytes()).unwrap();
        assert_eq!(certificates[1], expected);
        let key = file_with(&dir, "key.pem", &first.key);
        assert!(matches!(
            read_private_key(&key).unwrap(),
            PrivateKeyDer::Pkcs8(_)
        ));
    }

    #[test]
    fn missing_and_unreadable_files_name_the_path_and_what_it_should_hold() {
        let missing = Path::new("/nonexistent/ca.pem");
        let error = read_certificates(missing).unwrap_err();
        assert!(matches!(
            &error,
            PemError::NotFound { expected: PemFile::Certificate, path } if path == missing
        ));
        assert_eq!(
            error.to_string(),
            "certificate file not found: /nonexistent/ca.pem"
        );
        assert_eq!(error.reason(), "certificate file not found");

        let dir = tempfile::tempdir().unwrap();
        let error = read_private_key(dir.path()).unwrap_err();
        assert!(matches!(
            error,
            PemError::Unreadable {
                expected: PemFile::PrivateKey,
                ..
            }
        ));
        assert_eq!(error.path(), dir.path());
    }

    #[test]
    fn each_certificate_mistake_has_its_problem() {
        let dir = tempfile::tempdir().unwrap();
        let pair = generated_pair();
        let empty = file_with(&dir, "empty.pem", "\n \n");
        assert_eq!(certificate_problem(&empty), CertificateProblem::Empty);
        let garbage = file_with(&dir, "garbage.pem", "hello, I am not a certificate");
        assert_eq!(
            certificate_problem(&garbage),
            CertificateProblem::NoPemCertificate
        );
        let swapped = file_with(&dir, "swapped.pem", &pair.key);
        assert_eq!(
            certificate_problem(&swapped),
            CertificateProblem::HoldsPrivateKey
        );
        assert!(
            CertificateProblem::HoldsPrivateKey
                .to_string()
                .contains("swap")
        );
        let truncated = file_with(&dir, "truncated.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
        assert!(matches!(
            certificate_problem(&truncated),
            CertificateProblem::Malformed(_)
        ));
    }

    #[test]
    fn each_key_mistake_has_its_problem() {
        let dir = tempfile::tempdir().unwrap();
        let pair = generated_pair();
        let empty = file_with(&dir, "empty.pem", "");
        assert_eq!(key_problem(&empty), PrivateKeyProblem::Empty);
        let garbage = file_with(&dir, "garbage.pem", "not a key");
        assert_eq!(key_problem(&garbage), PrivateKeyProblem::NoPemKey);
        let swapped = file_with(&dir, "swapped.pem", &pair.cert);
        assert_eq!(key_problem(&swapped), PrivateKeyProblem::HoldsCertificate);
        assert!(
            PrivateKeyProblem::HoldsCertificate
                .to_string()
                .contains("swap")
        );
        let pkcs8 = file_with(
            &dir,
            "pkcs8.pem",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        assert_eq!(key_problem(&pkcs8), PrivateKeyProblem::Encrypted);
        let legacy = file_with(
            &dir,
            "legacy.pem",
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        );
        assert_eq!(key_problem(&legacy), PrivateKeyProblem::Encrypted);
        let truncated = file_with(&dir, "truncated.pem", "-----BEGIN PRIVATE KEY-----\nMIIB\n");
        assert!(matches!(
            key_problem(&truncated),
            PrivateKeyProblem::Malformed(_)
        ));
    }
}
