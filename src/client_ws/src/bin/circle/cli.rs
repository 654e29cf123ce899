//! The command-line client itself (native only; see `main.rs`).

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use circle_client_ws::circle_protocol::codes;
use circle_client_ws::{
    CertificateRejection, CircleWsClient, CircleWsClientBuilder, CircleWsClientError, TlsBackend,
    TlsConfig,
};
use clap::{Parser, Subcommand, ValueEnum};

const EXIT_CODES_HELP: &str = "\
EXIT CODES:
  0  success
  1  the script failed, or the server answered with another error
  2  usage error: bad arguments, invalid URL, unreadable key, CA or certificate file
  3  could not connect, connection lost, or no answer in time
  4  TLS failure: the server's certificate was rejected, or the handshake failed
  5  authentication failed, or the server requires it (give --key)

EXAMPLES:
  circle --url wss://localhost:8443/ws --ca cert.pem play 'print(\"hi\"); 40 + 2'
  CIRCLE_KEY=0x… circle --url wss://localhost:8443/ws --ca cert.pem whoami
  printf '1 + 1\\n\"a\" + \"b\"\\n' | circle --url ws://127.0.0.1:8080/ws";

/// Run Rhai scripts on a circle server over ws:// or wss://.
// No Debug: the struct holds the secret key.
#[derive(Parser)]
#[command(name = "circle", version, after_help = EXIT_CODES_HELP)]
struct Cli {
    /// Server URL, e.g. wss://localhost:8443/ws.
    #[arg(long, env = "CIRCLE_URL")]
    url: String,

    /// secp256k1 secret key (64 hex digits, 0x optional) to authenticate
    /// with. Prefer the CIRCLE_KEY variable or --key-file: command lines are
    /// visible to other users of the machine.
    #[arg(
        long,
        env = "CIRCLE_KEY",
        hide_env_values = true,
        conflicts_with = "key_file"
    )]
    key: Option<String>,

    /// File holding the secret key (hex).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,

    /// Trust the certificates in this PEM file (a private CA, or the
    /// server's self-signed certificate) in addition to the system's roots.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    ca: Option<PathBuf>,

    /// DANGER: accept any server certificate (development only).
    #[arg(long)]
    insecure: bool,

    /// Accept a trusted certificate issued for another host name.
    #[arg(long)]
    insecure_hostnames: bool,

    /// Client certificate (PEM) for servers that require mutual TLS.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,

    /// Private key (PEM) of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,

    /// TLS library for wss:// URLs.
    #[arg(long, value_enum)]
    tls_backend: Option<BackendArg>,

    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    timeout: f64,

    /// Seconds to wait for the connection (TCP, TLS, WebSocket).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    connect_timeout: f64,

    /// More log output on stderr (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
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
enum BackendArg {
    Rustls,
    NativeTls,
}

/// A failure and the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
    hint: Option<String>,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
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
            E::AuthenticationRefused { .. } => 5,
            E::Rpc { code, .. }
                if *code == codes::AUTHENTICATION_FAILED
                    || *code == codes::AUTHENTICATION_REQUIRED =>
            {
                5
            }
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

fn report(failure: &Failure) {
    eprintln!("circle: error: {}", failure.message);
    if let Some(hint) = &failure.hint {
        eprintln!("circle: hint: {hint}");
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn seconds(value: f64, flag: &str) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| Failure::usage(format!("{flag} must be a positive number of seconds")))
}

fn build_client(cli: &Cli) -> Result<CircleWsClient, Failure> {
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

/// Writes script output followed by a newline unless it already ends with
/// one; nothing at all for empty output.
fn print_output(output: &str) -> Result<(), Failure> {
    if output.is_empty() {
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(output.as_bytes())
        .and_then(|()| {
            if output.ends_with('\n') {
                Ok(())
            } else {
                stdout.write_all(b"\n")
            }
        })
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => Ok(()),
        // The reader went away (`circle play … | head -1`): not our failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure {
            code: 1,
            message: format!("cannot write to stdout: {e}"),
            hint: None,
        }),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let client = build_client(&cli)?;
    client.connect().await?;
    if client.public_key().is_some() {
        if !client.authenticate().await? {
            return Err(Failure {
                code: 5,
                message: format!(
                    "the server refused to authenticate {}",
                    client.address().unwrap_or_default()
                ),
                hint: None,
            });
        }
        tracing::info!(address = client.address(), "authenticated");
    }
    let result = match cli.command.unwrap_or(Command::Repl { paragraphs: false }) {
        Command::Play { script } => {
            let script = if script == "-" {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).map_err(|e| {
                    Failure::usage(format!("cannot read the script from stdin: {e}"))
                })?;
                text
            } else {
                script
            };
            match client.play(script).await {
                Ok(result) => print_output(&result.output),
                Err(error) => Err(error.into()),
            }
        }
        Command::Whoami => match client.whoami().await {
            Ok(whoami) => {
                let json = serde_json::to_string_pretty(&whoami).map_err(|e| Failure {
                    code: 1,
                    message: e.to_string(),
                    hint: None,
                })?;
                print_output(&json)
            }
            Err(error) => Err(error.into()),
        },
        Command::Repl { paragraphs } => repl(&client, paragraphs).await,
    };
    client.disconnect().await;
    result
}

async fn repl(client: &CircleWsClient, paragraphs: bool) -> Result<(), Failure> {
    let interactive = std::io::stdin().is_terminal();
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(16);
    // stdin is blocking: read it on its own thread and hand lines over.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if lines_tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    let mut script = ScriptSplitter::new(paragraphs);
    let mut failures = 0usize;
    loop {
        if interactive {
            eprint!(
                "{}",
                if script.is_empty() {
                    "circle> "
                } else {
                    "......> "
                }
            );
        }
        let line = match lines_rx.recv().await {
            Some(Ok(line)) => Some(line),
            Some(Err(e)) => return Err(Failure::usage(format!("cannot read stdin: {e}"))),
            None => None,
        };
        let ready = match &line {
            Some(line) => script.push_line(line),
            None => script.finish(),
        };
        if let Some(source) = ready {
            match client.play(source).await {
                Ok(result) => print_output(&result.output)?,
                Err(error) => {
                    let failure = Failure::from(error);
                    // A lost connection or a refused identity will not get
                    // better for the next script: stop (main reports it).
                    if failure.code != 1 {
                        return Err(failure);
                    }
                    report(&failure);
                    failures += 1;
                }
            }
        }
        if line.is_none() {
            break;
        }
    }
    if failures > 0 {
        return Err(Failure {
            code: 1,
            message: format!("{failures} script(s) failed"),
            hint: None,
        });
    }
    Ok(())
}

/// Cuts stdin into scripts: by line (continued while a bracket or string is
/// open) or by blank-line-separated paragraph.
struct ScriptSplitter {
    paragraphs: bool,
    pending: String,
}

impl ScriptSplitter {
    fn new(paragraphs: bool) -> Self {
        ScriptSplitter {
            paragraphs,
            pending: String::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Adds a line; returns a complete script when this line ends one.
    fn push_line(&mut self, line: &str) -> Option<String> {
        if line.trim().is_empty() {
            return self.finish();
        }
        if !self.pending.is_empty() {
            self.pending.push('\n');
        }
        self.pending.push_str(line);
        if !self.paragraphs && brackets_closed(&self.pending) {
            return self.finish();
        }
        None
    }

    /// Ends the current script, if any.
    fn finish(&mut self) -> Option<String> {
        let script = std::mem::take(&mut self.pending);
        (!script.trim().is_empty()).then_some(script)
    }
}

/// Whether every bracket and string literal in `source` is closed (a rough
/// Rhai lexer: strings in `"…"` and `` `…` ``, escapes, `//` comments).
fn brackets_closed(source: &str) -> bool {
    let mut depth: i64 = 0;
    let mut chars = source.chars().peekable();
    let mut in_string: Option<char> = None;
    while let Some(c) = chars.next() {
        match in_string {
            Some(quote) => match c {
                '\\' => {
                    chars.next();
                }
                _ if c == quote => in_string = None,
                _ => {}
            },
            None => match c {
                '"' | '`' => in_string = Some(c),
                '/' if chars.peek() == Some(&'/') => {
                    // Skip the rest of the line.
                    for next in chars.by_ref() {
                        if next == '\n' {
                            break;
                        }
                    }
                }
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            },
        }
    }
    // Too many closers is a syntax error the server will explain: send it.
    in_string.is_none() && depth <= 0
}

/// Parses the command line, runs the command, and maps the outcome to an
/// exit code.
#[tokio::main]
pub(crate) async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version are not errors; clap knows which is which.
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(cli.verbose);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            report(&failure);
            ExitCode::from(failure.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_scripts_unless_brackets_are_open() {
        let mut splitter = ScriptSplitter::new(false);
        assert_eq!(splitter.push_line("40 + 2").as_deref(), Some("40 + 2"));
        assert_eq!(splitter.push_line("fn add(a, b) {"), None);
        assert_eq!(splitter.push_line("  a + b // }"), None);
        assert_eq!(
            splitter.push_line("} add(1, 2)").as_deref(),
            Some("fn add(a, b) {\n  a + b // }\n} add(1, 2)")
        );
        assert_eq!(
            splitter.push_line("print(\"(\")").as_deref(),
            Some("print(\"(\")")
        );
        assert_eq!(splitter.push_line(""), None);
        assert_eq!(splitter.push_line("let s = `multi"), None);
        assert_eq!(
            splitter.push_line("line`; s").as_deref(),
            Some("let s = `multi\nline`; s")
        );
        assert_eq!(splitter.push_line("[1, 2"), None);
        assert_eq!(splitter.finish().as_deref(), Some("[1, 2"));
    }

    #[test]
    fn paragraphs_end_at_blank_lines() {
        let mut splitter = ScriptSplitter::new(true);
        assert_eq!(splitter.push_line("let x = 40;"), None);
        assert_eq!(splitter.push_line("x + 2"), None);
        assert_eq!(
            splitter.push_line("   ").as_deref(),
            Some("let x = 40;\nx + 2")
        );
        assert_eq!(splitter.push_line(""), None);
        assert_eq!(splitter.push_line("1"), None);
        assert_eq!(splitter.finish().as_deref(), Some("1"));
        assert_eq!(splitter.finish(), None);
    }

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
            code(CircleWsClientError::Rpc {
                code: codes::SCRIPT_ERROR,
                message: String::new(),
                data: None
            }),
            1
        );
    }

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
