//! The REPL: scripts read from stdin, run one after the other.

use std::io::{BufRead, IsTerminal};

use circle_client_ws::CircleWsClient;

use crate::exit::{Failure, report};
use crate::output::print_output;
use crate::split::ScriptSplitter;

pub(crate) async fn repl(client: &CircleWsClient, paragraphs: bool) -> Result<(), Failure> {
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
