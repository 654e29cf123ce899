//! Script output on stdout, the only thing written there.

use std::io::Write;

use crate::exit::Failure;

/// Writes script output followed by a newline unless it already ends with
/// one; nothing at all for empty output.
pub(crate) fn print_output(output: &str) -> Result<(), Failure> {
    if output.is_empty() {
        return Ok(());
    }
    write_flushed(output)
}

/// Writes one streamed line and its line break, even an empty line.
pub(crate) fn print_line(line: &str) -> Result<(), Failure> {
    write_flushed(line)
}

/// `text`, a newline unless it ends with one, and a flush: a line shows up
/// when it is printed, even in a pipe.
fn write_flushed(output: &str) -> Result<(), Failure> {
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
