//! One script run as a stream: its lines printed as they come, Ctrl-C
//! cancelling it on the server rather than killing the program (so the
//! server's script thread is freed, and the REPL can go on).

use circle_client_ws::{CircleWsClient, PlayEvent};
use futures_util::StreamExt;

use crate::exit::Failure;
use crate::output::{print_line, print_output};

/// Runs `script`, printing each line as the server sends it, then what
/// the lines did not show (the script's value). On Ctrl-C, asks the server
/// to cancel it and waits for the answer: the failure is then
/// 130 (`INTERRUPTED`). A second Ctrl-C gives up waiting.
pub(crate) async fn play_streamed(client: &CircleWsClient, script: String) -> Result<(), Failure> {
    let mut stream = client.play_stream(script).await?;
    let mut cancelling = false;
    // One listener for the whole run, made again only after it fired: a
    // Ctrl-C while a line is being printed is not lost.
    let mut interrupt = Box::pin(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(PlayEvent::Line(line))) => print_line(&line)?,
                Some(Ok(PlayEvent::Done(done))) => return print_output(&done.tail),
                // Also `Cancelled` after a Ctrl-C, which maps to exit code 130.
                Some(Err(error)) => return Err(error.into()),
                // Not reached: the stream ends with one of the above.
                Some(Ok(_)) | None => return Ok(()),
            },
            interrupted = &mut interrupt => {
                interrupt = Box::pin(tokio::signal::ctrl_c());
                if interrupted.is_err() || cancelling {
                    // No way to wait for Ctrl-C, or a second one: stop
                    // waiting; dropping the stream still sends `cancel`.
                    return Err(Failure::interrupted("interrupted"));
                }
                cancelling = true;
                eprintln!("circle: cancelling the script (Ctrl-C again to stop waiting)");
                let canceller = stream.canceller();
                // The stream keeps being read meanwhile, and ends with the
                // server's -32006 answer; a `cancel` that finds the script
                // already over changes nothing.
                tokio::spawn(async move {
                    if let Err(error) = canceller.cancel().await {
                        tracing::warn!(%error, "cancel failed");
                    }
                });
            }
        }
    }
}
