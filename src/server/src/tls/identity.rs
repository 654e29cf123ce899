//! Who a mutual-TLS client is: the subject and serial of the certificate it
//! presented, which rustls has verified by the time this reads it.

use serde_json::value::RawValue;

/// The verified client certificate of a mutual-TLS connection.
#[derive(Clone, Debug)]
pub(crate) struct ClientIdentity {
    /// The certificate's subject, e.g. `CN=alice`.
    pub subject: String,
    /// The certificate's serial number, lowercase hex, as OpenSSL shows it.
    pub serial: String,
}

impl ClientIdentity {
    /// The identity in a finished TLS session, when the client presented a
    /// certificate (rustls has verified it by then).
    pub fn of(session: &rustls::ServerConnection) -> Option<ClientIdentity> {
        let leaf = session.peer_certificates()?.first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        // The serial is a DER integer: a leading zero byte only keeps it
        // positive and is not part of the number.
        let raw = parsed.raw_serial();
        let significant = raw
            .iter()
            .position(|&byte| byte != 0)
            .map_or(&raw[raw.len().saturating_sub(1)..], |first| &raw[first..]);
        let serial = significant
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Some(ClientIdentity {
            subject: parsed.subject().to_string(),
            serial,
        })
    }

    /// The identity as `whoami` shows it (`ClientCertificate`).
    pub fn to_json(&self) -> Box<RawValue> {
        let certificate = circle_protocol::ClientCertificate {
            subject: self.subject.clone(),
            serial: self.serial.clone(),
        };
        // Two plain strings always serialize.
        serde_json::value::to_raw_value(&certificate).unwrap_or_else(|_| RawValue::NULL.to_owned())
    }
}
