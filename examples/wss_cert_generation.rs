//! Generates a development CA and a server certificate signed by it, for
//! the host names you give, and prints how to use them.
//!
//! Run: `cargo run --example wss_cert_generation -- --out certs localhost 127.0.0.1 myhost.lan`
//!
//! Files written to the output folder (existing files are not overwritten):
//! - `ca.pem`: the CA certificate clients trust (`ca_cert_path`, `circle --ca`);
//! - `ca.key.pem`: the CA's key, to sign more certificates (keep it private);
//! - `cert.pem`: the server certificate (leaf, then the CA), `--cert`;
//! - `key.pem`: the server's key (PKCS#8), `--key`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

const USAGE: &str = "usage: wss_cert_generation [--out DIR] [HOST...]
  --out DIR  folder for the files (default: ./dev-certs)
  HOST       DNS names or IP addresses (default: localhost 127.0.0.1 ::1)";

fn main() -> anyhow::Result<()> {
    let mut out = PathBuf::from("dev-certs");
    let mut hosts = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => {
                out = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or_else(|| anyhow::anyhow!(USAGE))?
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            flag if flag.starts_with('-') => anyhow::bail!("unknown option {flag}\n{USAGE}"),
            host => hosts.push(host.to_owned()),
        }
    }
    if hosts.is_empty() {
        hosts = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    }
    std::fs::create_dir_all(&out)?;

    // The CA: signs certificates, is never used by a server itself.
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "circles development CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    // The server certificate: names every host (rcgen turns IP strings into
    // IP address names), valid for TLS servers only.
    let mut server_params = CertificateParams::new(hosts.clone())?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, hosts[0].as_str());
    server_params.is_ca = IsCa::ExplicitNoCa;
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, &ca)?;

    let ca_pem = ca.as_ref().pem();
    write_new(&out.join("ca.pem"), &ca_pem, false)?;
    write_new(&out.join("ca.key.pem"), &ca_key_pem, true)?;
    // Leaf first, then the CA: a full chain, like Let's Encrypt's fullchain.pem.
    write_new(
        &out.join("cert.pem"),
        &format!("{}{ca_pem}", server_cert.pem()),
        false,
    )?;
    write_new(&out.join("key.pem"), &server_key.serialize_pem(), true)?;

    let dir = out.display();
    println!(
        "wrote {dir}/ca.pem, {dir}/ca.key.pem, {dir}/cert.pem, {dir}/key.pem for: {}",
        hosts.join(", ")
    );
    println!();
    println!("server:  circle-server --tls --cert {dir}/cert.pem --key {dir}/key.pem --port 8443");
    println!(
        "client:  TlsConfig {{ ca_cert_path: Some(\"{dir}/ca.pem\".into()), ..Default::default() }}"
    );
    println!(
        "CLI:     circle --url wss://{}:8443/ws --ca {dir}/ca.pem play '40 + 2'",
        url_host(&hosts[0])
    );
    println!(
        "Keep ca.key.pem private; anyone holding it can impersonate any host to clients that trust ca.pem."
    );
    Ok(())
}

/// Writes a new file; refuses to overwrite (an existing key may be in use).
/// Private keys are readable by their owner only.
fn write_new(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot create {}: {e} (remove it first to regenerate)",
            path.display()
        )
    })?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// A host as written in a URL: IPv6 addresses in brackets.
fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}
