//! Issue 14's findings, one test each: inputs that crashed, hung, ate memory, passed
//! by mistake or got an unclear message. Every test failed on the code before the fix
//! (each says how it failed); the fuzzers' crashes, kept in fuzz/regressions/, are
//! replayed here too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::util::{Output, Stagegate, repo_root};

/// How long a command may take before the test calls it a hang (generous: the
/// machine is shared; the fixed commands answer in well under a second).
const HANG: Duration = Duration::from_secs(60);

/// Runs `sh -c SCRIPT` from the repository root with `$SG` set to the binary, and
/// kills it if it has not finished within [`HANG`] (a hang is a failure, not a
/// test that never ends).
fn shell(script: &str) -> Output {
    let child = Command::new("sh")
        .args(["-c", script])
        .current_dir(repo_root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("SG", env!("CARGO_BIN_EXE_stagegate"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh starts");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid fits i32"));
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(HANG) {
        Ok(out) => {
            let out = out.expect("sh finishes");
            Output {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("`{script}` did not finish within {HANG:?}");
        }
    }
}

/// Writes `text` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("temp file written");
    path
}

fn seed_manifest() -> String {
    std::fs::read_to_string(repo_root().join("manifests/release-gate.yaml")).expect("committed")
}

/// `stagegate validate FILE`, bounded in time, with the file's name shell-quoted.
fn validate(path: &Path) -> Output {
    shell(&format!(
        "exec \"$SG\" validate '{}'",
        path.display().to_string().replace('\'', "'\\''")
    ))
}

// 1. Before: exit 134, "has overflowed its stack" (yaml-rust2's recursive loader).
#[test]
fn deep_block_nesting_is_rejected_not_a_stack_overflow() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = String::from("version: \"1.3\"\nextra:\n");
    for i in 0..3000 {
        text.push_str(&format!("{}k{i}:\n", " ".repeat(i + 1)));
    }
    text.push_str(&format!("{}v\n", " ".repeat(3001)));
    let out = validate(&write(dir.path(), "deep.yaml", text)).expect_code(2);
    assert!(
        out.stderr
            .contains("nested deeper than the manifest nesting depth limit (64 levels)"),
        "{}",
        out.stderr
    );
}

// 2. Before: 20 KB of `- - - …` took seconds and gigabytes (a key path per level,
// each a copy of its parent's); now the limit stops it at level 64.
#[test]
fn deep_sequence_nesting_is_rejected_in_flat_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!("version: \"1.3\"\nextra:\n  {}x\n", "- ".repeat(10_000));
    let path = write(dir.path(), "seq.yaml", text);
    // 256 MB of address space is plenty for the fix and far too little for the bug.
    let out = shell(&format!(
        "ulimit -v 1000000; exec \"$SG\" validate '{}'",
        path.display()
    ))
    .expect_code(2);
    assert!(
        out.stderr.contains("manifest nesting depth limit"),
        "{}",
        out.stderr
    );
}

// 3. Before: `validate` read /dev/zero until memory ran out, and blocked on a FIFO.
#[test]
fn list_files_must_be_regular_and_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = make_fifo(dir.path(), "langs.fifo");
    let big = write(
        dir.path(),
        "big.txt",
        vec![b'x'; stagegate::limits::LIST_FILE_BYTES.as_usize() + 1],
    );
    // (list file, text the error must contain, why)
    let rows = [
        (
            PathBuf::from("/dev/zero"),
            "not a regular file",
            "a device never ends",
        ),
        (fifo, "not a regular file", "a FIFO blocks until written"),
        (big, "list file size limit", "a file over the limit"),
    ];
    for (list, expected, why) in rows {
        let text = seed_manifest().replacen(
            "\ncontracts:",
            &format!(
                "\nlists:\n  supported_languages: {}\ncontracts:",
                list.display()
            ),
            1,
        );
        let out = validate(&write(dir.path(), "m.yaml", text));
        assert_eq!(out.code, 2, "{why}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{why}: {}", out.stderr);
    }
}

// 4a, 4b and 10: keys written twice and `null` items. Before: a duplicate in `enums`
// and `required_fields: [null]` passed (exit 0); a duplicate `version` pointed at
// the first one; a duplicate `lists` printed its error twice.
#[test]
fn duplicate_keys_and_null_items_are_errors_at_the_right_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seed = seed_manifest();
    let enums = "      verification.result: [\"passed\", \"failed\", \"review_required\"]\n";
    assert!(seed.contains(enums), "the seed's first enum");
    // (manifest text, message, the line the caret must be on: its last writing, why)
    let rows = [
        (
            seed.replacen(enums, &format!("{enums}{enums}"), 1),
            "`contracts[0].enums.verification.result` is written twice",
            enums.trim_end(),
            "a duplicate in `enums`",
        ),
        (
            seed.replacen("      - event_id\n", "      - event_id\n      - null\n", 1),
            "`contracts[0].required_fields[1]` is null",
            "      - null",
            "a null field name",
        ),
        (
            seed.replacen(
                "version: \"1.3\"\n",
                "version: \"1.3\"\nversion: \"1.3\"\n",
                1,
            ),
            "`version` is written twice",
            "version: \"1.3\"",
            "a duplicate `version`",
        ),
        (
            seed.replacen(
                "\ncontracts:",
                "\nlists:\n  a: a.txt\nlists:\n  a: a.txt\ncontracts:",
                1,
            ),
            "`lists` is written twice",
            "lists:",
            "a duplicate `lists`",
        ),
    ];
    for (text, message, line_text, why) in rows {
        let out = validate(&write(dir.path(), "m.yaml", &text)).expect_code(2);
        assert_eq!(
            out.stderr.matches(message).count(),
            1,
            "{why}: said once\n{}",
            out.stderr
        );
        assert!(out.stderr.contains("has 1 error"), "{why}\n{}", out.stderr);
        let line = text
            .lines()
            .enumerate()
            .filter(|(_, l)| *l == line_text)
            .map(|(i, _)| i + 1)
            .last()
            .expect("the line exists");
        assert!(
            out.stderr.contains(&format!("m.yaml:{line}:")),
            "{why}: placed at line {line}\n{}",
            out.stderr
        );
    }
}

// 10. Before: "found unexpected end of stream" (NUL), "expected value" (UTF-16), and
// a 200 KB line of brackets echoed under the error.
#[test]
fn encoding_problems_and_long_lines_get_clear_short_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let utf16: Vec<u8> = "\u{feff}version: \"1.3\"\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let out = validate(&write(dir.path(), "u16.yaml", utf16)).expect_code(2);
    assert!(
        out.stderr.contains("is UTF-16LE: convert it to UTF-8"),
        "{}",
        out.stderr
    );
    let out = validate(&write(
        dir.path(),
        "nul.yaml",
        "version: \"1.3\"\nx: a\0b\n",
    ))
    .expect_code(2);
    assert!(
        out.stderr.contains("NUL byte (\\0) at line 2, column 5"),
        "{}",
        out.stderr
    );
    let flow = format!(
        "version: \"1.3\"\nextra: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let out = validate(&write(dir.path(), "flow.yaml", flow)).expect_code(2);
    assert!(
        out.stderr.contains("manifest nesting depth limit"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.len() < 2_000,
        "the long line is not echoed ({} bytes)",
        out.stderr.len()
    );
    assert!(out.stderr.contains("flow.yaml:2:"), "{}", out.stderr);
}

// The manifest size limit, named in its error.
#[test]
fn oversized_manifests_name_the_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = std::fs::File::create(dir.path().join("big.yaml")).expect("created");
    let line = format!("# {}\n", "x".repeat(1022));
    for _ in 0..=(stagegate::limits::MANIFEST_BYTES.as_usize() / line.len()) {
        file.write_all(line.as_bytes()).expect("written");
    }
    drop(file);
    let out = validate(&dir.path().join("big.yaml")).expect_code(2);
    assert!(
        out.stderr.contains("larger than the manifest size limit"),
        "{}",
        out.stderr
    );
    let _ = Stagegate::new(["validate", "manifests/release-gate.yaml"])
        .run()
        .expect_code(0);
}

/// `stagegate check --manifest SEED ARGS…` with `stdin`, through the shell (bounded).
fn check(args: &str, stdin: &[u8]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = write(dir.path(), "stdin", stdin);
    shell(&format!(
        "exec \"$SG\" check --manifest manifests/release-gate.yaml {args} < '{}'",
        input.display()
    ))
}

// 4c. Before: "checked 0 payloads … verdict: pass" (exit 0) with stdin closed.
#[test]
fn a_closed_stdin_is_an_unreadable_input_not_an_empty_one() {
    let out =
        shell("exec \"$SG\" check --manifest manifests/release-gate.yaml - <&-").expect_code(2);
    assert!(
        out.stderr.contains("standard input is closed"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "", "no report begun");
}

// 4d. Before: the last "type" won silently and the payload was judged under it.
#[test]
fn a_key_written_twice_in_a_payload_is_malformed() {
    let payload =
        br#"{"type": "identity.verification.completed", "type": "assessment.score.posted"}
"#;
    let out = check("--format json -", payload).expect_code(1);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    let violations = report["violations"].as_array().expect("violations");
    assert_eq!(violations.len(), 1, "{report:#}");
    assert_eq!(violations[0]["rule"], "malformed");
    assert!(
        violations[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("the key \"type\" is written twice")),
        "{report:#}"
    );
}

// 5. Before: the first line `[…]` made the whole input one array, and every later
// line "unexpected text after the closing `]`": line 3's missing fields went unseen.
#[test]
fn json_lines_starting_with_an_array_are_read_line_by_line() {
    let input = b"[\"not a payload\"]\n{\"type\": \"identity.verification.completed\"}\n";
    let out = check("--format json -", input).expect_code(1);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    let violations = report["violations"].as_array().expect("violations");
    assert_eq!(report["payloads"], 2, "{report:#}");
    assert!(
        violations
            .iter()
            .any(|v| v["line"] == 2 && v["rule"] == "required_field"),
        "line 2 is judged: {report:#}"
    );
    assert!(!out.stdout.contains("after the closing"), "{}", out.stdout);
    // A one-line array is still an array of payloads.
    let out = check(
        "--format json -",
        b"[{\"type\": \"identity.verification.completed\"}, {\"type\": \"x\"}]\n",
    );
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(report["payloads"], 2, "{report:#}");
}

// 6. Before: `{"violations": [` and nothing more on stdout.
#[test]
fn json_reports_are_whole_documents_or_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    for unreadable in [dir.path().to_path_buf(), dir.path().join("missing.jsonl")] {
        let out = shell(&format!(
            "exec \"$SG\" check --format json --manifest manifests/release-gate.yaml '{}'",
            unreadable.display()
        ))
        .expect_code(2);
        assert_eq!(out.stdout, "", "nothing begun for {}", unreadable.display());
        assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
    }
}

// 10. Before: "unexpected end of hex escape" and "expected value at line 1 column 1".
#[test]
fn payload_encoding_problems_are_named() {
    let out = check("-", b"{\"type\": \"\\ud800\"}\n").expect_code(1);
    assert!(
        out.stdout.contains("a lone UTF-16 surrogate escape"),
        "{}",
        out.stdout
    );
    let utf16: Vec<u8> = "{\"type\": \"x\"}\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let out = check("--format json -", &utf16).expect_code(2);
    assert!(
        out.stderr.contains("UTF-16LE: convert it to UTF-8"),
        "{}",
        out.stderr
    );
    // Found once reading began: the document is closed, saying so.
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(report["verdict"], "error", "{report:#}");
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("UTF-16LE")),
        "{report:#}"
    );
}

/// The fuzz targets' bodies, as the fuzz binaries call them.
#[path = "../../fuzz/targets.rs"]
mod targets;

// The fuzzers' findings (and issue 14's inputs) stay fixed: each file in
// fuzz/regressions/TARGET/ goes through its target's call, in a thread with a deadline
// so that a hang fails rather than stalls.
#[test]
fn fuzz_regressions_replay() {
    let root = repo_root().join("fuzz/regressions");
    let mut inputs = Vec::new();
    for target in std::fs::read_dir(&root).expect("fuzz/regressions exists") {
        let target = target.expect("listed").path();
        if !target.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&target).expect("listed") {
            inputs.push(file.expect("listed").path());
        }
    }
    assert!(inputs.len() >= 6, "the committed regressions: {inputs:?}");
    for input in inputs {
        let target = input
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .expect("a target folder")
            .to_owned();
        let data = std::fs::read(&input).expect("readable");
        let replay = targets::by_name(&target)
            .unwrap_or_else(|| panic!("fuzz/regressions/{target}: no fuzz target of that name"));
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            replay(&data);
            let _ = done.send(());
        });
        finished.recv_timeout(HANG).unwrap_or_else(|err| {
            panic!(
                "{}: {err} (a panic, or longer than {HANG:?})",
                input.display()
            )
        });
    }
}

// 8. Before: 3,000 silent connections to `serve` were all still held after 35 s.
// Now each is closed once the header read and idle timeout passes.
#[test]
fn serve_closes_silent_connections() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("temp dir");
    let (serve, lines) = crate::serve::ServeProcess::seed_manifest(dir.path());
    let url = crate::serve::exported(&lines, "STAGEGATE_ATS_URL").to_owned();
    let addr = url.trim_start_matches("http://");
    let timeout = stagegate::limits::HEADER_READ_SECS.as_duration();
    let deadline = std::time::Instant::now() + timeout + HANG;
    let mut silent: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(addr).expect("connects"))
        .collect();
    for stream in &mut silent {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout set");
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(err) => panic!("a silent connection was still held after {timeout:?}: {err}"),
        }
    }
    assert_eq!(serve.interrupt(), 0, "serve stops cleanly");
}

// 9. Before: `bearer TOKEN` was refused (the scheme matched case-sensitively), and of
// two `Authorization` headers the first decided.
#[tokio::test]
async fn bearer_is_case_insensitive_and_authorization_single() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (serve, lines) = crate::serve::ServeProcess::seed_manifest(dir.path());
    let url = crate::serve::exported(&lines, "STAGEGATE_ATS_URL").to_owned();
    let token = crate::serve::exported(&lines, "STAGEGATE_ATS_TOKEN").to_owned();
    let client = reqwest::Client::new();
    // (Authorization headers, status, why)
    let rows: [(Vec<String>, u16, &str); 4] = [
        (vec![format!("Bearer {token}")], 200, "as documented"),
        (
            vec![format!("bearer {token}")],
            200,
            "the scheme in any case",
        ),
        (
            vec![format!("Bearer {token}"), "Bearer wrong".to_owned()],
            401,
            "two headers",
        ),
        (
            vec!["Bearer wrong".to_owned(), format!("Bearer {token}")],
            401,
            "two headers, the right one last",
        ),
    ];
    for (values, status, why) in rows {
        let mut request = client.get(format!("{url}/v1/candidates/CAND_canary_001"));
        for value in values {
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("the mock answers");
        assert_eq!(response.status().as_u16(), status, "{why}");
    }
    assert_eq!(serve.interrupt(), 0, "serve stops cleanly");
}

// Found while fixing 3: `log verify /dev/zero` read one endless line (before: no end,
// memory without bound). A device is now refused before reading, and lines of a
// regular file are bounded like every other input.
#[test]
fn log_lines_are_bounded() {
    let out = shell("exec \"$SG\" log verify /dev/zero").expect_code(2);
    assert!(
        out.stderr.contains("/dev/zero is a device"),
        "{}",
        out.stderr
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let long = write(
        dir.path(),
        "long.jsonl",
        vec![b'x'; stagegate::limits::LOG_LINE_BYTES.as_usize() + 1],
    );
    let out = shell(&format!("exec \"$SG\" log verify '{}'", long.display())).expect_code(2);
    assert!(
        out.stderr
            .contains("longer than the observation log line limit"),
        "{}",
        out.stderr
    );
}

// What people read: a key written twice, a null item and the depth limit, in full.
#[test]
fn hardening_diagnostics_read_well() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = "version: \"1.3\"\nversion: \"1.3\"\nextra:\n  required_fields: [a, null]\n  deep: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[x]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n";
    write(dir.path(), "m.yaml", text);
    let out = Stagegate::new(["validate", "m.yaml"])
        .current_dir(dir.path())
        .run()
        .expect_code(2);
    crate::snapshot!("hardening_depth_limit", out.stderr);
    write(
        dir.path(),
        "m.yaml",
        text.replace("[[[[", "[").replace("]]]]", "]"),
    );
    let out = Stagegate::new(["validate", "m.yaml"])
        .current_dir(dir.path())
        .run()
        .expect_code(2);
    crate::snapshot!("hardening_duplicate_and_null", out.stderr);
}

/// Makes a named pipe `dir/name` (the crate forbids `unsafe`, so with mkfifo(1)).
fn make_fifo(dir: &Path, name: &str) -> PathBuf {
    let fifo = dir.join(name);
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", fifo.display());
    fifo
}

/// Runs `script` with `$FIFO` a fresh named pipe (nothing ever writes it) in a temp
/// dir, `$DIR` that dir and `$FX` the drift fixtures, and checks that it stops at once
/// with `code` and an error naming the FIFO and `limit`. Before, each of these opened
/// the FIFO and blocked on it until [`HANG`] (only the manifest itself was refused).
fn refuses_fifo(script: &str, code: i32, limit: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = make_fifo(dir.path(), "in.fifo");
    let out = shell(&format!(
        "DIR='{}' FIFO='{}' FX=tests/fixtures/drift; {script}",
        dir.path().display(),
        fifo.display()
    ));
    assert_eq!(out.code, code, "`{script}`: {}", out.stderr);
    for expected in ["in.fifo is a FIFO", "not a regular file", limit] {
        assert!(
            out.stderr.contains(expected),
            "`{script}` should say {expected:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn check_refuses_a_fifo_of_payloads() {
    refuses_fifo(
        "exec \"$SG\" check --manifest manifests/release-gate.yaml \"$FIFO\"",
        2,
        "payload size limit",
    );
}

#[test]
fn drift_refuses_a_fifo_of_captures() {
    refuses_fifo("exec \"$SG\" drift \"$FIFO\"", 2, "payload size limit");
}

#[test]
fn drift_refuses_a_fifo_baseline_or_severity_file() {
    for flag in ["--baseline", "--severity"] {
        refuses_fifo(
            &format!("exec \"$SG\" drift {flag} \"$FIFO\" \"$FX/clean.jsonl\""),
            2,
            "document size limit",
        );
    }
}

#[test]
fn observation_log_readers_refuse_a_fifo() {
    for command in [
        "log verify \"$FIFO\"",
        "trace --candidate CAND_1 \"$FIFO\"",
        "evidence --candidate CAND_1 --out \"$DIR/pack.tar\" \"$FIFO\"",
    ] {
        refuses_fifo(
            &format!("exec \"$SG\" {command}"),
            2,
            "observation log line limit",
        );
    }
}

#[test]
fn whole_document_readers_refuse_a_fifo() {
    for command in [
        "evidence verify \"$FIFO\"",
        "report merge --out \"$DIR/merged.json\" \"$FIFO\"",
    ] {
        refuses_fifo(&format!("exec \"$SG\" {command}"), 2, "document size limit");
    }
}

#[test]
fn the_dataset_reader_refuses_a_fifo() {
    refuses_fifo(
        "exec \"$SG\" serve --dataset \"$FIFO\" manifests/release-gate.yaml",
        2,
        "dataset line limit",
    );
}

// Before: `record --out FIFO` started and appended captures to the pipe, where they
// were lost to whoever read it, or blocked the writer once the pipe filled.
#[test]
fn record_refuses_a_fifo_capture_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = make_fifo(dir.path(), "captures.fifo");
    let out = shell(&format!(
        "exec \"$SG\" record --listen 127.0.0.1:0 --out '{}'",
        fifo.display()
    ));
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("captures.fifo is not a regular file"),
        "{}",
        out.stderr
    );
}

// A device never ends and a folder is not a file: both are refused like a FIFO.
#[test]
fn devices_and_folders_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rows = [
        ("/dev/zero".to_owned(), "is a device"),
        (dir.path().display().to_string(), "is a folder"),
    ];
    for (path, expected) in rows {
        let out = shell(&format!(
            "exec \"$SG\" drift --baseline '{path}' tests/fixtures/drift/clean.jsonl"
        ))
        .expect_code(2);
        for text in [
            expected,
            "not a regular file",
            "document size limit",
            "name",
        ] {
            assert!(
                out.stderr.contains(text),
                "{path}: {text:?} in {}",
                out.stderr
            );
        }
    }
}
