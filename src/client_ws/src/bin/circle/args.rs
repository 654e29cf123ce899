//! The command line: flags and subcommands, and the client they describe.

use std::path::PathBuf;
use std::time::Duration;

use circle_client_ws::{CircleWsClient, CircleWsClientBuilder, TlsBackend, TlsConfig};
use clap::{Parser, Subcommand, ValueEnum};

use crate::exit::{EXIT_CODES_HELP, Failure};

/// Run Rhai scripts on a circle server over ws:// or wss://.
// No Debug: the struct holds the secret key.
#[derive(Parser)]
#[command(name = "circle", version, after_help = EXIT_CODES_HELP)]
pub(crate) struct Cli {
    /// Server URL, e.g. wss://localhost:8443/ws.
    #[arg(long, env = "CIRCLE_URL")]
    pub(crate) url: String,

    /// secp256k1 secret key (64 hex digits, 0x optional) to authenticate
    /// with. Prefer the CIRCLE_KEY variable or --key-file: command lines are
    /// visible to other users of the machine.
    #[arg(
        long,
        env = "CIRCLE_KEY",
        hide_env_values = true,
        conflicts_with = "key_file"
    )]
    pub(crate) key: Option<String>,

    /// File holding the secret key (hex).
    #[arg(long, value_name = "FILE")]
    pub(crate) key_file: Option<PathBuf>,

    /// Trust the certificates in this PEM file (a private CA, or the
    /// server's self-signed certificate) in addition to the system's roots.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub(crate) ca: Option<PathBuf>,

    /// DANGER: accept any server certificate (development only).
    #[arg(long)]
    pub(crate) insecure: bool,

    /// Accept a trusted certificate issued for another host name.
    #[arg(long)]
    pub(crate) insecure_hostnames: bool,

    /// Client certificate (PEM) for servers that require mutual TLS.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub(crate) client_cert: Option<PathBuf>,

    /// Private key (PEM) of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub(crate) client_key: Option<PathBuf>,

    /// TLS library for wss:// URLs.
    #[arg(long, value_enum)]
    pub(crate) tls_backend: Option<BackendArg>,

    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub(crate) timeout: f64,

    /// Seconds to wait for the connection (TCP, TLS, WebSocket).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub(crate) connect_timeout: f64,

    /// More log output on stderr (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run one script and print its output (SCRIPT `-` reads it from stdin).
    Play {
        /// Rhai source code.
        script: String,
    },
    /// Print who the server thinks you are, and which circle it serves (JSON).
    Whoami,
    /// Read scripts from stdin and print each one's output (the default).
    ///
    /// By default each line is a script, continued on the next lines while a
    /// bracket or string is open. With --paragraphs, scripts are blocks of
    /// lines separated by blank lines. A failing script is reported on
    /// stderr and the next one runs.
    Repl {
        /// Scripts are separated by blank lines instead of line ends.
        #[arg(long, short)]
        paragraphs: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum BackendArg {
    Rustls,
    NativeTls,
}

fn seconds(value: f64, flag: &str) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| Failure::usage(format!("{flag} must be a positive number of seconds")))
}

pub(crate) fn build_client(cli: &Cli) -> Result<CircleWsClient, Failure> {
    let mut builder = CircleWsClientBuilder::new(&cli.url)
        .with_request_timeout(seconds(cli.timeout, "--timeout")?)
        .with_connect_timeout(seconds(cli.connect_timeout, "--connect-timeout")?);
    let key = match (&cli.key, &cli.key_file) {
        (Some(key), _) => Some(key.clone()),
        (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
            Failure::usage(format!("cannot read the key file {}: {e}", path.display()))
        })?),
        (None, None) => None,
    };
    if let Some(key) = key {
        builder = builder.with_keypair(key.trim());
    }
    let tls = TlsConfig {
        accept_invalid_certs: cli.insecure,
        accept_invalid_hostnames: cli.insecure_hostnames,
        ca_cert_path: cli.ca.clone(),
        client_cert_path: cli.client_cert.clone(),
        client_key_path: cli.client_key.clone(),
    };
    if tls != TlsConfig::default() {
        builder = builder.with_tls_config(tls);
    }
    if let Some(backend) = cli.tls_backend {
        builder = builder.with_tls_backend(match backend {
            BackendArg::Rustls => TlsBackend::Rustls,
            BackendArg::NativeTls => TlsBackend::NativeTls,
        });
    }
    Ok(builder.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from([
            "circle",
            "--url",
            "wss://localhost:8443/ws",
            "--ca",
            "cert.pem",
            "play",
            "40 + 2",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Play { .. })));
        assert!(
            Cli::try_parse_from(["circle", "--url", "u", "--ca", "c", "--insecure", "whoami"])
                .is_err()
        );
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
