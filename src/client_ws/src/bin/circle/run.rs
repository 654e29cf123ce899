//! The program's flow: parse the command line, connect (and sign in when
//! a key is given), run the command, exit with the failure's code.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command, build_client};
use crate::exit::{Failure, report};
use crate::output::print_output;
use crate::repl::repl;
use crate::stream::play_streamed;

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
            play_streamed(&client, script).await
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
