//! The REPL: scripts read from stdin, run one after the other, their lines
//! printed as they come. Ctrl-C cancels the running script and the REPL
//! goes on; at the prompt it drops the script being typed (interactive) or
//! ends the program (stdin not a terminal: no one to type the next one).

use std::io::{BufRead, IsTerminal};

use circle_client_ws::CircleWsClient;

use crate::exit::{Failure, INTERRUPTED, report};
use crate::split::ScriptSplitter;
use crate::stream::play_streamed;

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
        let line = tokio::select! {
            line = lines_rx.recv() => match line {
                Some(Ok(line)) => Some(line),
                Some(Err(e)) => return Err(Failure::usage(format!("cannot read stdin: {e}"))),
                None => None,
            },
            _ = tokio::signal::ctrl_c() => {
                if !interactive {
                    return Err(Failure::interrupted("interrupted"));
                }
                eprintln!();
                script = ScriptSplitter::new(paragraphs);
                continue;
            }
        };
        let ready = match &line {
            Some(line) => script.push_line(line),
            None => script.finish(),
        };
        if let Some(source) = ready {
            match play_streamed(client, source).await {
                Ok(()) => {}
                // Ctrl-C stopped this script only: on to the next.
                Err(failure) if failure.code == INTERRUPTED => {
                    eprintln!("circle: script cancelled");
                }
                Err(failure) => {
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
