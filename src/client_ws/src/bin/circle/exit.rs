//! Exit codes: what each kind of failure exits with, and how a failure is
//! reported on stderr (see `EXIT CODES` in `--help`).

use circle_client_ws::circle_protocol::codes;
use circle_client_ws::{CertificateRejection, CircleWsClientError};

pub(crate) const EXIT_CODES_HELP: &str = "\
EXIT CODES:
  0  success
  1  the script failed, or the server answered with another error
  2  usage error: bad arguments, invalid URL, unreadable key, CA or certificate file
  3  could not connect, connection lost, or no answer in time
  4  TLS failure: the server's certificate was rejected, or the handshake failed
  5  authentication failed, or the server requires it (give --key)
  130  interrupted: Ctrl-C cancelled the running script on the server

EXAMPLES:
  circle --url wss://localhost:8443/ws --ca cert.pem play 'print(\"hi\"); 40 + 2'
  CIRCLE_KEY=0x… circle --url wss://localhost:8443/ws --ca cert.pem whoami
  printf '1 + 1\\n\"a\" + \"b\"\\n' | circle --url ws://127.0.0.1:8080/ws";

/// A failure and the exit code it maps to.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

/// The exit code after Ctrl-C, as shells report a program SIGINT stopped.
pub(crate) const INTERRUPTED: u8 = 130;

impl Failure {
    /// Ctrl-C stopped the script (or the wait for it).
    pub(crate) fn interrupted(message: impl Into<String>) -> Failure {
        Failure {
            code: INTERRUPTED,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
            hint: None,
        }
    }
}

impl From<CircleWsClientError> for Failure {
    fn from(error: CircleWsClientError) -> Failure {
        use CircleWsClientError as E;
        let code = match &error {
            E::InvalidUrl { .. } | E::TlsConfig { .. } | E::InvalidKeypair(_) => 2,
            E::CertificateRejected { .. } | E::TlsHandshake { .. } => 4,
            E::AuthenticationRefused { .. }
            | E::Signer(_)
            | E::SignatureMismatch { .. }
            | E::InvalidSignature { .. } => 5,
            E::Rpc { code, .. }
                if *code == codes::AUTHENTICATION_FAILED
                    || *code == codes::AUTHENTICATION_REQUIRED =>
            {
                5
            }
            // Only Ctrl-C makes this client cancel a script.
            E::Cancelled { .. } => INTERRUPTED,
            E::Rpc { .. } | E::Protocol(_) => 1,
            _ => 3,
        };
        let hint = match &error {
            E::CertificateRejected {
                reason: CertificateRejection::UnknownIssuer,
                ..
            } => Some(
                "trust the server's certificate or CA with --ca FILE (--insecure only for development)"
                    .to_owned(),
            ),
            E::CertificateRejected {
                reason: CertificateRejection::NameMismatch,
                ..
            } => Some(
                "connect with a host name the certificate names, or pass --insecure-hostnames"
                    .to_owned(),
            ),
            E::ConnectionRefused { .. } => Some(
                "is the server running? e.g. circle-server --tls --cert cert.pem --key key.pem"
                    .to_owned(),
            ),
            E::Rpc { code, .. } if *code == codes::AUTHENTICATION_REQUIRED => {
                Some("this server requires authentication: pass --key or set CIRCLE_KEY".to_owned())
            }
            _ => None,
        };
        Failure {
            code,
            message: error.to_string(),
            hint,
        }
    }
}

pub(crate) fn report(failure: &Failure) {
    eprintln!("circle: error: {}", failure.message);
    if let Some(hint) = &failure.hint {
        eprintln!("circle: hint: {hint}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_documented_exit_codes() {
        let code = |error: CircleWsClientError| Failure::from(error).code;
        assert_eq!(code(CircleWsClientError::InvalidKeypair("x".into())), 2);
        assert_eq!(
            code(CircleWsClientError::ConnectionRefused {
                address: "a".into()
            }),
            3
        );
        assert_eq!(
            code(CircleWsClientError::CertificateRejected {
                host: "h".into(),
                reason: CertificateRejection::UnknownIssuer,
                detail: String::new()
            }),
            4
        );
        assert_eq!(
            code(CircleWsClientError::Rpc {
                code: codes::AUTHENTICATION_REQUIRED,
                message: String::new(),
                data: None
            }),
            5
        );
        assert_eq!(
            code(CircleWsClientError::Cancelled {
                message: String::new()
            }),
            130
        );
        assert_eq!(
            code(CircleWsClientError::Rpc {
                code: codes::SCRIPT_ERROR,
                message: String::new(),
                data: None
            }),
            1
        );
    }
}
