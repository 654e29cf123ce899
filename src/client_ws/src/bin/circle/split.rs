//! Cutting stdin into scripts for the REPL: a line is a script unless a
//! bracket or string is still open, or (`--paragraphs`) blank lines
//! separate scripts.

/// Cuts stdin into scripts: by line (continued while a bracket or string is
/// open) or by blank-line-separated paragraph.
pub(crate) struct ScriptSplitter {
    paragraphs: bool,
    pending: String,
}

impl ScriptSplitter {
    pub(crate) fn new(paragraphs: bool) -> Self {
        ScriptSplitter {
            paragraphs,
            pending: String::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Adds a line; returns a complete script when this line ends one.
    pub(crate) fn push_line(&mut self, line: &str) -> Option<String> {
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
    pub(crate) fn finish(&mut self) -> Option<String> {
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
}
