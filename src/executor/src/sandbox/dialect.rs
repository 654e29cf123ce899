//! The circle dialect: the one place where a circle script's syntax differs
//! from plain Rhai.
//!
//! Rhai reads `'x'` as a character and `'Hello WSS!'` as a syntax error
//! ("Invalid character"). Scripts written from examples in other languages
//! (the project's own original plan has `print('Hello WSS!')`) use single
//! quotes for text, so in a circle single-quoted text of any length is a
//! string: `'Hello WSS!'` is `"Hello WSS!"`, and escapes work as in
//! double-quoted strings. A single character in single quotes stays a Rhai
//! character (`'a'`), which prints the same. The empty `''` is still an
//! error (Rhai's lexer gives up on it before the mapper sees it): write `""`.
//!
//! Both executors (the embedded pool and `circle-worker`) build their engine
//! through [`Sandbox`](super::Sandbox), so the dialect is the same in both.

use std::cell::Cell;
use std::rc::Rc;

use rhai::{Engine, LexError, Token};

/// The dialect's state while one script is tokenized.
#[derive(Debug, Default)]
pub(super) struct Dialect {
    /// Whether the token just before was single-quoted text made a string.
    after_quoted_text: Cell<bool>,
}

impl Dialect {
    /// Call before each compile: the state of a script that failed to
    /// parse must not leak into the next one.
    pub(super) fn reset(&self) {
        self.after_quoted_text.set(false);
    }
}

/// Installs the dialect's token mapper on `engine`.
pub(super) fn register(engine: &mut Engine) -> Rc<Dialect> {
    let dialect = Rc::new(Dialect::default());
    let state = Rc::clone(&dialect);
    // `on_parse_token` is marked deprecated only to flag it as a volatile
    // API (rhai's own words); it is the documented hook for this.
    #[allow(deprecated)]
    engine.on_parse_token(move |token, _position, _state| {
        let after_quoted_text = state.after_quoted_text.replace(false);
        match token {
            // The lexer has read up to the closing quote and decoded the
            // escapes; it only refused to make a character of the result.
            Token::LexError(error) => match *error {
                LexError::MalformedChar(text) => {
                    state.after_quoted_text.set(true);
                    Token::StringConstant(Box::new(text.into()))
                }
                other => Token::LexError(Box::new(other)),
            },
            // The lexer decided "unary" from the error it saw, not from the
            // string it became: after a value, `+` and `-` are binary.
            Token::UnaryPlus if after_quoted_text => Token::Plus,
            Token::UnaryMinus if after_quoted_text => Token::Minus,
            other => other,
        }
    });
    dialect
}

#[cfg(test)]
mod tests {
    use crate::sandbox::Sandbox;
    use crate::{ScriptContext, ScriptLimits};

    fn run(script: &str) -> String {
        Sandbox::new(ScriptLimits::default(), 0)
            .run(script, &ScriptContext::default())
            .map(|output| output.output)
            .unwrap_or_else(|error| format!("error: {error}"))
    }

    #[test]
    fn single_quoted_text_is_a_string() {
        assert_eq!(run("print('Hello WSS!')"), "Hello WSS!");
        assert_eq!(run("let s = 'ab' + 'cd'; s.len"), "4");
        assert_eq!(run("'ab' + 1"), "ab1");
        assert_eq!(run("let x = 'ab'; +1 + 2"), "3");
        assert_eq!(run("'it\\'s' + \"!\""), "it's!");
        assert_eq!(run("type_of('two words')"), "string");
    }

    #[test]
    fn a_single_character_in_single_quotes_stays_a_character() {
        assert_eq!(run("type_of('a')"), "char");
        assert_eq!(run("print('a')"), "a");
    }

    #[test]
    fn empty_single_quotes_are_not_a_string() {
        // Rhai's lexer stops at the second quote of `''` before any mapper
        // sees it, so the dialect cannot make it a string: write `""`.
        assert!(run("''").starts_with("error:"));
    }

    #[test]
    fn other_lexer_errors_are_still_errors() {
        let unterminated = run("print('never closed");
        assert!(unterminated.starts_with("error:"), "{unterminated}");
        let bad = run("let x = 1 $ 2;");
        assert!(bad.starts_with("error:"), "{bad}");
    }
}
