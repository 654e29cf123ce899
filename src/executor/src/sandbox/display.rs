//! Turning script values into text without unbounded allocation.
//!
//! Rhai shares strings (`ImmutableString` is reference-counted), and an indexed assignment
//! (`a[i] = s`) checks neither the container's size nor how often one string is stored. So
//! a script can hold an array of 100 000 references to one 1 MiB string in about 2 MB of
//! memory, and rhai's own `to_string`, `print`, `to_json` (and this crate's rendering of
//! the final value, and of a thrown value in an error message) would write all
//! 100 GB of it in a single native call: no operation passes in between, so neither the
//! memory limit nor the operation or wall-time limits could stop it before the process ran
//! out of memory. Rhai checks the string's length only after it is built.
//!
//! This module formats the same text as rhai, but stops as soon as the text outgrows the
//! limit it is going to be checked against:
//!
//! - [`register`] replaces rhai's `to_string`, `to_debug`, `print` and `debug` for arrays
//!   and object maps, and `to_json` for maps, with versions that produce exactly rhai's
//!   text (each element through the same `to_debug` function rhai would call) and give
//!   up past `max_string_size`, stopping the script with the string-size limit.
//! - [`Bounded`] is a `fmt::Write` that refuses to grow past a cap; the sandbox writes the
//!   final value and error messages through it.

use std::fmt::{self, Write};
use std::rc::Rc;

use rhai::{Array, Blob, Dynamic, Engine, FnPtr, ImmutableString, Map, NativeCallContext};

use super::RunState;
use crate::LimitKind;

/// A string that refuses to grow past `cap` bytes: a write that would pass it stores what
/// fits (whole characters only), marks the text as cut and fails, which makes Rust's
/// formatting machinery stop at once.
pub(crate) struct Bounded {
    text: String,
    cap: usize,
    cut: bool,
}

impl Bounded {
    /// An empty text that may grow to `cap` bytes.
    pub(crate) fn new(cap: usize) -> Self {
        Bounded {
            text: String::new(),
            cap,
            cut: false,
        }
    }

    /// Whether a write did not fit.
    pub(crate) fn is_cut(&self) -> bool {
        self.cut
    }

    /// The text written, cut at the cap if [`Bounded::is_cut`].
    pub(crate) fn into_text(self) -> String {
        self.text
    }

    /// The text written; if it did not fit, the script is stopped with the string-size
    /// limit (see [`register`] for how), and the cut text it gets back is never used.
    fn into_script_string(self, state: &RunState) -> ImmutableString {
        if self.cut {
            state.stop(LimitKind::StringSize);
        }
        self.text.into()
    }
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.cut {
            return Err(fmt::Error);
        }
        let room = self.cap.saturating_sub(self.text.len());
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(&s[..end]);
        self.cut = true;
        Err(fmt::Error)
    }
}

/// `value`'s `Display` text if it fits in `cap` bytes, else `None`.
pub(crate) fn display_within(value: &impl fmt::Display, cap: usize) -> Option<String> {
    let mut out = Bounded::new(cap);
    match write!(out, "{value}") {
        Ok(()) => Some(out.into_text()),
        Err(_) => None,
    }
}

/// `value`'s `Display` text, cut to at most `cap` bytes (plus `…` when cut).
pub(crate) fn display_cut(value: &impl fmt::Display, cap: usize) -> String {
    let mut out = Bounded::new(cap);
    // An error only means the text was cut, which `is_cut` tells.
    let _ = write!(out, "{value}");
    let cut = out.is_cut();
    let mut text = out.into_text();
    if cut {
        text.push('…');
    }
    text
}

/// Registers the bounded versions of rhai's array and map formatting functions on
/// `engine`. Functions registered on the engine take precedence over rhai's packages, also
/// when rhai calls them itself (string interpolation, `+` with a string, printing the
/// elements of a nested container).
///
/// Where rhai calls `to_string` itself (interpolation, `+` with a string), it answers any
/// failure of the call by formatting the value with Rust's `Display`, in full: the very
/// allocation this avoids. So these must not fail:
///
/// - They take the container by value, unlike rhai's (which take a reference): called on
///   a variable, rhai hands them a copy (for shared strings, a copy of the pointer) and
///   does not check the variable's own size after the call, a check that fails for a
///   container grown past the data-size limits by indexed assignment. Owning the copy
///   also lets the elements be formatted without copying them again.
/// - When the text outgrows `max_string` they return neither an error nor a text too
///   long (rhai's check of the result would turn that into an error). Instead they record
///   the string-size limit in the run's sticky `stopped` and return the cut text, which
///   passes every check; the progress callback ends the script at its next operation and
///   the sandbox reports the limit (and `print` drops text once a run is stopped), so the
///   cut text is never seen.
pub(crate) fn register(engine: &mut Engine, max_string: usize, state: &Rc<RunState>) {
    for name in ["to_string", "to_debug", "print", "debug"] {
        let array_state = Rc::clone(state);
        engine.register_fn(name, move |ctx: NativeCallContext, array: Array| {
            format_array(&ctx, array, max_string).into_script_string(&array_state)
        });
        let map_state = Rc::clone(state);
        engine.register_fn(name, move |ctx: NativeCallContext, map: Map| {
            format_map(&ctx, map, max_string).into_script_string(&map_state)
        });
    }
    let json_state = Rc::clone(state);
    engine.register_fn("to_json", move |map: &mut Map| {
        let mut out = Bounded::new(max_string);
        // An error only means the text was cut, which `into_script_string` handles.
        let _ = map_as_json(&mut out, map);
        out.into_script_string(&json_state)
    });
}

/// Rhai's `format_array` of `array`, in at most `cap` bytes.
fn format_array(ctx: &NativeCallContext, array: Array, cap: usize) -> Bounded {
    let mut out = Bounded::new(cap);
    // An error only means the text was cut, which `out` records.
    let _ = write_array(ctx, &mut out, array);
    out
}

/// Rhai's `format_map` of `map`, in at most `cap` bytes.
fn format_map(ctx: &NativeCallContext, map: Map, cap: usize) -> Bounded {
    let mut out = Bounded::new(cap);
    // An error only means the text was cut, which `out` records.
    let _ = write_map(ctx, &mut out, map);
    out
}

/// `[` + each element as `to_debug` shows it + `, ` between + `]`.
fn write_array(ctx: &NativeCallContext, out: &mut Bounded, mut array: Array) -> fmt::Result {
    let len = array.len();
    out.write_str("[")?;
    for (i, item) in array.iter_mut().enumerate() {
        write_debug(ctx, out, item)?;
        if i + 1 < len {
            out.write_str(", ")?;
        }
    }
    out.write_str("]")
}

/// `#{` + `"key": value` (the value as `to_debug` shows it), `, ` between + `}`.
fn write_map(ctx: &NativeCallContext, out: &mut Bounded, mut map: Map) -> fmt::Result {
    let len = map.len();
    out.write_str("#{")?;
    for (i, (key, value)) in map.iter_mut().enumerate() {
        write!(out, "{key:?}: ")?;
        write_debug(ctx, out, value)?;
        if i + 1 < len {
            out.write_str(", ")?;
        }
    }
    out.write_str("}")
}

/// Writes `value` as rhai's `print_with_func("to_debug", …)` would: through the
/// `to_debug` function for its type, a non-string result shown as its type name, a failed
/// call as the value's `Debug` text.
///
/// A nested array or map is written here directly rather than through the engine: the
/// `to_debug` the engine would pick for it is this module's anyway, and each call through
/// the engine costs kilobytes of native stack, so a deeply nested value (nesting depth is
/// not limited by rhai) would overflow the thread's stack, which aborts the process.
///
/// `value` belongs to the copy being formatted, so it is moved, not copied again: into the
/// nested write, or into the `to_debug` call (as a value, `is_ref_mut` false).
fn write_debug(ctx: &NativeCallContext, out: &mut Bounded, value: &mut Dynamic) -> fmt::Result {
    if value.is::<Array>()
        && let Some(array) = std::mem::take(value).try_cast::<Array>()
    {
        return write_array(ctx, out, array);
    }
    if value.is::<Map>()
        && let Some(map) = std::mem::take(value).try_cast::<Map>()
    {
        return write_map(ctx, out, map);
    }
    match ctx.call_native_fn_raw("to_debug", false, &mut [&mut *value]) {
        Ok(result) => match result.into_immutable_string() {
            Ok(text) => out.write_str(&text),
            Err(type_name) => out.write_str(ctx.engine().map_type_name(type_name)),
        },
        Err(_) => {
            // Rhai maps the whole text through `map_type_name`, which only ever replaces a
            // text equal to a registered type's name; a value's `Debug` text cut short or
            // not, that mapping is done on the piece written here.
            let mut piece = Bounded::new(out.cap.saturating_sub(out.text.len()));
            let fitted = write!(piece, "{value:?}").is_ok();
            out.write_str(ctx.engine().map_type_name(&piece.text))?;
            if fitted { Ok(()) } else { Err(fmt::Error) }
        }
    }
}

/// Rhai's `format_map_as_json`, writing into `out`.
fn map_as_json(out: &mut Bounded, map: &Map) -> fmt::Result {
    out.write_str("{")?;
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.write_str(",")?;
        }
        write!(out, "{key:?}")?;
        out.write_str(":")?;
        value_as_json(out, value)?;
    }
    out.write_str("}")
}

/// Rhai's `format_dynamic_as_json`, writing into `out`.
fn value_as_json(out: &mut Bounded, value: &Dynamic) -> fmt::Result {
    if value.is_shared() {
        // Only the curried arguments of closures are shared; rhai writes what they hold.
        if let Some(inner) = value.read_lock::<Dynamic>() {
            return value_as_json(out, &inner);
        }
    }
    if value.is_unit() {
        return out.write_str("null");
    }
    if let Some(f) = value.read_lock::<FnPtr>() {
        if !f.is_curried() {
            return write!(out, "{:?}", f.fn_name());
        }
        out.write_str("[")?;
        write!(out, "{:?}", f.fn_name())?;
        for curried in f.iter_curry() {
            out.write_str(",")?;
            value_as_json(out, curried)?;
        }
        return out.write_str("]");
    }
    if let Some(map) = value.read_lock::<Map>() {
        return map_as_json(out, &map);
    }
    if let Some(array) = value.read_lock::<Array>() {
        out.write_str("[")?;
        for (i, item) in array.iter().enumerate() {
            if i > 0 {
                out.write_str(",")?;
            }
            value_as_json(out, item)?;
        }
        return out.write_str("]");
    }
    if let Some(blob) = value.read_lock::<Blob>() {
        out.write_str("[")?;
        for (i, byte) in blob.iter().enumerate() {
            if i > 0 {
                out.write_str(",")?;
            }
            write!(out, "{byte}")?;
        }
        return out.write_str("]");
    }
    write!(out, "{value:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_stops_at_the_cap_on_a_char_boundary() {
        let mut out = Bounded::new(5);
        assert!(out.write_str("abc").is_ok());
        assert!(out.write_str("dé€").is_err());
        assert!(out.is_cut());
        assert_eq!(out.text, "abcd");
        assert!(out.write_str("").is_err(), "a cut text takes nothing more");
    }

    /// The bounded functions must print exactly what rhai's own do: every way of turning
    /// a container into text, run by the sandbox and by a plain rhai engine.
    #[test]
    fn same_text_as_rhai() {
        let values = [
            "[]",
            "#{}",
            "[1, 2, 3]",
            r#"[1, -2, "a\"b\n", 'c', 2.5, 1e300, true, (), [3, [4, []]], #{x: 1, "y z": "w"}]"#,
            r#"#{a: [1, #{b: "q\"uote\n"}], c: 'x', d: (), e: 0.1, f: Fn("foo"), g: 1..3}"#,
            r#"[Fn("foo"), Fn("foo").curry(1), |x| x + 1, blob(3), 1..=4, "é€😀"]"#,
            r#"#{json: [1, "two", (), #{n: [true, false]}, blob(2), Fn("g").curry([1, "x"])]}"#,
        ];
        let forms = [
            "print(V); debug(V);",
            "V.to_string()",
            "V.to_debug()",
            "`<${V}>`",
            r#""<" + V"#,
            r#"V + ">""#,
            r#"let s = "<"; s += V; s"#,
            "V",
            "[V, V]",
            "#{k: V}",
            "if type_of(V) == \"map\" { V.to_json() } else { #{v: V}.to_json() }",
            // A variable captured by a closure is shared: formatted through the same path.
            "let keep = || V; print(V); `${V}` + V.to_string() + [V].to_debug()",
        ];
        let mut sandbox = super::super::Sandbox::new(crate::ScriptLimits::default(), 0);
        for value in values {
            for form in forms {
                let script = format!("let V = {value}; {form}");
                let printed = Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
                let mut plain = Engine::new();
                let sink = Rc::clone(&printed);
                plain.on_print(move |text| sink.borrow_mut().push(text.to_owned()));
                let sink = Rc::clone(&printed);
                plain.on_debug(move |text, _, _| sink.borrow_mut().push(text.to_owned()));
                let value = plain.eval::<Dynamic>(&script).unwrap();
                let mut expected = printed.borrow().clone();
                if !value.is_unit() {
                    expected.push(value.to_string());
                }
                let ours = sandbox
                    .run(&script, &crate::ScriptContext::default())
                    .unwrap_or_else(|err| panic!("{script}: {err}"));
                assert_eq!(ours.output, expected.join("\n"), "{script}");
            }
        }
    }

    #[test]
    fn display_helpers() {
        assert_eq!(display_within(&"hello", 5).as_deref(), Some("hello"));
        assert_eq!(display_within(&"hello!", 5), None);
        assert_eq!(display_cut(&"hello!", 5), "hello…");
        assert_eq!(display_cut(&"hello", 5), "hello");
    }
}
