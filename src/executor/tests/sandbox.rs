//! The sandbox with real rhai: output format, constants, every limit, refusals, cache.

use std::time::{Duration, Instant};

use circle_executor::sandbox::{MIN_STACK_BYTES, Sandbox};
use circle_executor::{ExecutorError, LimitKind, ScriptContext, ScriptLimits, ScriptOutput};

/// Runs `f` with a fresh sandbox on a thread with the stack the sandbox documents it needs
/// (test threads have a smaller one).
fn with_sandbox<T: Send + 'static>(
    limits: ScriptLimits,
    f: impl FnOnce(&mut Sandbox) -> T + Send + 'static,
) -> T {
    std::thread::Builder::new()
        .stack_size(MIN_STACK_BYTES)
        .spawn(move || f(&mut Sandbox::new(limits, 8)))
        .expect("spawn sandbox thread")
        .join()
        .expect("sandbox thread panicked")
}

fn run_with(limits: ScriptLimits, script: &str) -> Result<ScriptOutput, ExecutorError> {
    let script = script.to_owned();
    with_sandbox(limits, move |sandbox| {
        sandbox.run(&script, &ScriptContext::default())
    })
}

fn run(script: &str) -> Result<ScriptOutput, ExecutorError> {
    run_with(ScriptLimits::default(), script)
}

fn output(script: &str) -> String {
    match run(script) {
        Ok(out) => out.output,
        Err(err) => panic!("script {script:?} failed: {err:?}"),
    }
}

/// Asserts `result` is a `Limit` of `kind`, with code -32004 and a message naming the
/// configured `value`.
fn assert_limit(result: Result<ScriptOutput, ExecutorError>, kind: LimitKind, value: &str) {
    match result {
        Err(err @ ExecutorError::Limit { .. }) => {
            assert_eq!(err.limit_kind(), Some(kind), "{err:?}");
            assert_eq!(err.code(), -32004);
            let message = err.to_string();
            assert!(message.contains(value), "{message:?} should name {value}");
            assert!(message.contains("limit"), "{message:?}");
        }
        other => panic!("expected a {kind:?} limit, got {other:?}"),
    }
}

fn assert_script_error(result: Result<ScriptOutput, ExecutorError>) -> String {
    match result {
        Err(err @ ExecutorError::Script(_)) => {
            assert_eq!(err.code(), -32003);
            err.to_string()
        }
        other => panic!("expected a script error, got {other:?}"),
    }
}

#[test]
fn output_is_printed_lines_then_the_value() {
    assert_eq!(output(r#"print("hi"); 40 + 2"#), "hi\n42");
    assert_eq!(output("40 + 2"), "42");
    assert_eq!(output(r#"print("a")"#), "a");
    assert_eq!(output(r#"print("a"); print("b")"#), "a\nb");
    assert_eq!(output(r#""plain string""#), "plain string");
    assert_eq!(output("let x = 1;"), "");
    assert_eq!(output(""), "");
    assert_eq!(output("print(1); print(2); ()"), "1\n2");
    // An empty line printed is a line: the value still comes after it.
    assert_eq!(output(r#"print(""); 42"#), "\n42");
    assert_eq!(output("[1, 2, 3]"), "[1, 2, 3]");
    assert_eq!(output("true"), "true");
    // Ending early still shows what was printed, then the value.
    assert_eq!(output(r#"print("a"); return 3; print("b")"#), "a\n3");
    assert_eq!(output(r#"print("a"); exit(5); print("b")"#), "a\n5");
    // `debug` prints too, in its debug form (strings quoted).
    assert_eq!(output(r#"debug("x"); 1"#), "\"x\"\n1");
}

#[test]
fn circle_constants_are_in_scope() {
    let context = ScriptContext {
        circle_name: "garden".into(),
        circle_public_key: "02abcdef".into(),
        caller_public_key: "03123456".into(),
    };
    let out = with_sandbox(ScriptLimits::default(), move |sandbox| {
        sandbox.run(
            r#"print(CIRCLE_NAME); print(CIRCLE_PUBLIC_KEY); CALLER_PUBLIC_KEY"#,
            &context,
        )
    });
    assert_eq!(out.unwrap().output, "garden\n02abcdef\n03123456");

    // Unauthenticated callers see an empty key; the constants cannot be changed.
    assert_eq!(output(r#"CALLER_PUBLIC_KEY == """#), "true");
    assert_script_error(run(r#"CIRCLE_NAME = "mine";"#));
}

/// One sandbox keeps the scope its runs start from: each run sees its own
/// caller's constants and none of an earlier run's variables, whatever the
/// earlier run tried on the constants.
#[test]
fn each_run_starts_from_the_constants_alone() {
    let caller = |key: &str| ScriptContext {
        circle_name: "garden".into(),
        circle_public_key: "02abcdef".into(),
        caller_public_key: key.into(),
    };
    let outputs = with_sandbox(ScriptLimits::default(), move |sandbox| {
        let mut run = |script: &str, context: &ScriptContext| match sandbox.run(script, context) {
            Ok(out) => out.output,
            Err(error) => format!("error: {error}"),
        };
        vec![
            run("let x = 1; x", &caller("03aa")),
            run("x", &caller("03aa")),
            run(r#"CIRCLE_NAME.clear(); CIRCLE_NAME"#, &caller("03aa")),
            // A closure shares what it captures.
            run(
                "let f = || CIRCLE_NAME + CALLER_PUBLIC_KEY; f.call()",
                &caller("03aa"),
            ),
            run(r#"CIRCLE_NAME += "!"; 1"#, &caller("03aa")),
            run("CIRCLE_NAME + CALLER_PUBLIC_KEY", &caller("03aa")),
            run("CALLER_PUBLIC_KEY", &caller("03bb")),
            run("CALLER_PUBLIC_KEY", &caller("")),
        ]
    });
    assert_eq!(outputs[0], "1");
    assert!(outputs[1].starts_with("error:"), "{}", outputs[1]);
    assert!(outputs[1].contains("x"), "{}", outputs[1]);
    assert!(outputs[2].starts_with("error:"), "{}", outputs[2]);
    assert_eq!(outputs[3], "garden03aa");
    assert!(outputs[4].starts_with("error:"), "{}", outputs[4]);
    assert_eq!(outputs[5], "garden03aa");
    assert_eq!(outputs[6], "03bb");
    assert_eq!(outputs[7], "");
}

#[test]
fn operation_limit() {
    let limits = ScriptLimits {
        max_operations: 10_000,
        ..ScriptLimits::default()
    };
    assert_limit(run_with(limits, "loop {}"), LimitKind::Operations, "10000");
}

#[test]
fn wall_time_limit() {
    let limits = ScriptLimits {
        max_operations: u64::MAX,
        max_run_time: Duration::from_millis(200),
        ..ScriptLimits::default()
    };
    let started = Instant::now();
    assert_limit(run_with(limits, "loop {}"), LimitKind::WallTime, "200 ms");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn wall_time_limit_cannot_be_caught() {
    // A termination inside a function call reaches `try` wrapped in a catchable error;
    // the sandbox must still end the script.
    let limits = ScriptLimits {
        max_operations: u64::MAX,
        max_run_time: Duration::from_millis(200),
        ..ScriptLimits::default()
    };
    let script = "fn spin() { loop {} } loop { try { spin(); } catch (e) { print(e); } }";
    let started = Instant::now();
    assert_limit(
        run_with(limits.clone(), script),
        LimitKind::WallTime,
        "200 ms",
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // Even when the script ends right after catching it.
    let script = "fn spin() { loop {} } try { spin(); } catch { } 1";
    assert_limit(run_with(limits, script), LimitKind::WallTime, "200 ms");
}

#[test]
fn operation_limit_cannot_be_caught() {
    let limits = ScriptLimits {
        max_operations: 10_000,
        ..ScriptLimits::default()
    };
    let script = "fn spin() { loop {} } loop { try { spin(); } catch { } }";
    assert_limit(run_with(limits, script), LimitKind::Operations, "10000");
}

#[test]
fn call_depth_limit() {
    let limits = ScriptLimits {
        max_call_depth: 16,
        ..ScriptLimits::default()
    };
    assert_limit(
        run_with(limits, "fn f(n) { f(n + 1) } f(0)"),
        LimitKind::CallDepth,
        "16",
    );
    // The default depth, through the worst nesting the expression limit allows.
    let mut body = String::from("f(n + 1)");
    for _ in 0..28 {
        body = format!("(1 + {body})");
    }
    let script = format!("fn f(n) {{ if n > 1000 {{ return 0; }} {body} }} f(0)");
    assert_limit(run(&script), LimitKind::CallDepth, "64");
}

#[test]
fn expression_depth_limit() {
    let limits = ScriptLimits {
        max_expr_depth: 20,
        ..ScriptLimits::default()
    };
    let script = format!("{}1{}", "(".repeat(50), ")".repeat(50));
    assert_limit(run_with(limits, &script), LimitKind::ExpressionDepth, "20");
}

#[test]
fn string_size_limit() {
    let limits = ScriptLimits {
        max_string_size: 1024,
        ..ScriptLimits::default()
    };
    assert_limit(
        run_with(limits.clone(), r#"let s = "x"; loop { s += s; }"#),
        LimitKind::StringSize,
        "1024 bytes",
    );
    // A literal over the limit is refused when parsing.
    let script = format!("let s = \"{}\";", "y".repeat(2000));
    assert_limit(
        run_with(limits, &script),
        LimitKind::StringSize,
        "1024 bytes",
    );
}

#[test]
fn array_size_limit() {
    let limits = ScriptLimits {
        max_array_size: 100,
        ..ScriptLimits::default()
    };
    assert_limit(
        run_with(limits.clone(), "let a = []; loop { a.push(1); }"),
        LimitKind::ArraySize,
        "100 elements",
    );
    let elements: Vec<String> = (0..150).map(|i| i.to_string()).collect();
    let script = format!("[{}]", elements.join(", "));
    assert_limit(
        run_with(limits, &script),
        LimitKind::ArraySize,
        "100 elements",
    );
}

#[test]
fn map_size_limit() {
    let limits = ScriptLimits {
        max_map_size: 100,
        ..ScriptLimits::default()
    };
    // A linked list of maps: nested maps count towards the limit.
    assert_limit(
        run_with(
            limits.clone(),
            "let m = #{}; let i = 0; loop { m = #{ next: m, value: i }; i += 1; }",
        ),
        LimitKind::MapSize,
        "100 properties",
    );
    assert_limit(
        run_with(
            limits.clone(),
            "let m = #{ a: 1 }; loop { m += #{ b: m }; }",
        ),
        LimitKind::MapSize,
        "100 properties",
    );
    // A literal over the limit is refused when parsing.
    let fields: Vec<String> = (0..150).map(|i| format!("k{i}: {i}")).collect();
    let script = format!("#{{ {} }}", fields.join(", "));
    assert_limit(
        run_with(limits, &script),
        LimitKind::MapSize,
        "100 properties",
    );
}

#[test]
fn output_size_limit() {
    let limits = ScriptLimits {
        max_output_bytes: 1024,
        ..ScriptLimits::default()
    };
    assert_limit(
        run_with(limits.clone(), r#"loop { print("0123456789"); }"#),
        LimitKind::OutputSize,
        "1024 bytes",
    );
    // The final value counts too.
    let script = format!("\"{}\"", "z".repeat(2000));
    assert_limit(
        run_with(limits.clone(), &script),
        LimitKind::OutputSize,
        "1024 bytes",
    );
    // Exactly at the limit is fine: 100 lines of 9 bytes + 99 newlines = 999 bytes.
    let out = run_with(limits, r#"for i in 0..100 { print("012345678"); }"#).unwrap();
    assert_eq!(out.output.len(), 999);
}

#[test]
fn script_size_limit() {
    let limits = ScriptLimits {
        max_script_bytes: 16,
        ..ScriptLimits::default()
    };
    assert_limit(
        run_with(limits.clone(), "1 + 1 + 1 + 1 + 1 + 1"),
        LimitKind::ScriptSize,
        "16 bytes",
    );
    assert_eq!(run_with(limits, "1 + 1").unwrap().output, "2");
}

#[test]
fn syntax_error_says_where() {
    let message = assert_script_error(run("let x = ;\nx"));
    assert!(message.contains("line 1"), "{message}");
    assert!(message.contains("position"), "{message}");
    let message = assert_script_error(run("1 +\n\n (2"));
    assert!(message.contains("line"), "{message}");
}

#[test]
fn runtime_errors_are_script_errors() {
    let message = assert_script_error(run("let a = 1;\n a / 0"));
    assert!(message.contains("line 2"), "{message}");
    let message = assert_script_error(run("nope + 1"));
    assert!(message.contains("nope"), "{message}");
    let message = assert_script_error(run(r#"throw "custom failure""#));
    assert!(message.contains("custom failure"), "{message}");
    assert_script_error(run("[1, 2][5]"));
    assert_script_error(run("no_such_function(1)"));
}

#[test]
fn import_eval_and_sleep_are_refused() {
    assert_script_error(run(r#"import "x" as x; 1"#));
    assert_script_error(run(r#"eval("1")"#));
    assert_script_error(run(r#"let e = Fn("eval"); e.call("1")"#));
    assert_script_error(run(r#"call(Fn("ev" + "al"), "1")"#));
    assert_script_error(run(r#""1".eval()"#));
    // `sleep` would hold a worker without counting operations: it must not block.
    let started = Instant::now();
    for script in [
        "sleep(100)",
        "sleep(100.0)",
        r#"Fn("sleep").call(100)"#,
        r#"call(Fn("sleep"), 100)"#,
    ] {
        let message = assert_script_error(run(script));
        assert!(message.contains("sleep"), "{message}");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn repeated_scripts_are_compiled_once() {
    let stats = with_sandbox(ScriptLimits::default(), |sandbox| {
        let context = ScriptContext::default();
        for _ in 0..3 {
            assert_eq!(sandbox.run("40 + 2", &context).unwrap().output, "42");
        }
        assert_eq!(sandbox.run("1 + 1", &context).unwrap().output, "2");
        sandbox.cache_stats()
    });
    assert_eq!((stats.hits, stats.misses, stats.entries), (2, 2, 2));
}

#[test]
fn the_sandbox_keeps_working_after_a_limit() {
    let limits = ScriptLimits {
        max_operations: 10_000,
        ..ScriptLimits::default()
    };
    let results = with_sandbox(limits, |sandbox| {
        let context = ScriptContext::default();
        let first = sandbox.run("loop {}", &context);
        let second = sandbox.run("let x = 0; for i in 0..100 { x += i } x", &context);
        (first, second)
    });
    assert_limit(results.0, LimitKind::Operations, "10000");
    assert_eq!(results.1.unwrap().output, "4950");
}
