//! `stagegate sandbox generate`: the dataset it writes, its determinism, its errors.

use std::collections::HashSet;

use stagegate::sandbox::dataset;

use crate::snapshot;
use crate::util::Stagegate;

fn generate(args: &[&str]) -> Stagegate {
    let mut all = vec!["sandbox", "generate"];
    all.extend_from_slice(args);
    Stagegate::new(all)
}

#[test]
fn generate_writes_a_dataset_that_loads_and_repeats_byte_for_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| {
        dir.path()
            .join(name)
            .to_str()
            .expect("utf-8 path")
            .to_owned()
    };
    let (first, again, other, explicit) = (
        path("a.yaml"),
        path("b.yaml"),
        path("c.yaml"),
        path("d.yaml"),
    );
    let out = generate(&["--count", "200", "--seed", "7", "--out", &first])
        .run()
        .expect_code(0);
    assert!(
        out.stdout
            .starts_with(&format!("wrote 200 candidates to {first} (seed 7; low ")),
        "{}",
        out.stdout
    );
    generate(&["--count", "200", "--seed", "7", "--out", &again])
        .run()
        .expect_code(0);
    generate(&["--count", "200", "--seed", "8", "--out", &other])
        .run()
        .expect_code(0);
    generate(&[
        "--count",
        "200",
        "--seed",
        "7",
        "--manifest",
        "manifests/release-gate.yaml",
        "--out",
        &explicit,
    ])
    .run()
    .expect_code(0);
    let read = |p: &str| std::fs::read(p).expect("written");
    assert_eq!(read(&first), read(&again), "same seed, same bytes");
    assert_eq!(
        read(&first),
        read(&explicit),
        "the default manifest is the shipped one"
    );
    assert_ne!(read(&first), read(&other), "another seed, another dataset");

    let loaded = dataset::load(first.as_ref()).expect("the dataset loads");
    assert_eq!(
        (loaded.version.as_str(), loaded.seed, loaded.count),
        ("1", 7, 200)
    );
    assert_eq!(loaded.candidates[0].ats_candidate_id, "CAND_000001");
    assert_eq!(loaded.candidates[199].ats_candidate_id, "CAND_000200");
    let emails: HashSet<&str> = loaded.candidates.iter().map(|c| c.email.as_str()).collect();
    assert_eq!(emails.len(), 200, "unique addresses");
    assert!(
        loaded.candidates.iter().any(|c| !c.name.is_ascii()),
        "non-ASCII names"
    );
    for c in &loaded.candidates {
        assert!(c.requisition.tags.iter().any(|t| t == "canary-il"), "{c:?}");
        assert!(
            !["DE", "FR"].contains(&c.requisition.location.as_str()),
            "{c:?}"
        );
    }
    let low = loaded
        .candidates
        .iter()
        .filter(|c| c.risk_tier.as_str() == "low")
        .count();
    assert!((110..=170).contains(&low), "about 70% low: {low}");
    assert!(
        !std::path::Path::new(&format!("{first}.partial")).exists(),
        "no partial file is left behind"
    );
}

#[test]
fn a_bad_risk_mix_says_what_is_wrong_and_how_to_write_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("x.yaml");
    let out_file = out_path.to_str().expect("utf-8 path");
    let out = generate(&[
        "--count",
        "10",
        "--seed",
        "1",
        "--risk-mix",
        "low=70,medium=x",
        "--out",
        out_file,
    ])
    .run()
    .expect_code(2);
    snapshot!("sandbox_bad_risk_mix", out.stderr);
    assert!(!out_path.exists(), "nothing is written");
    // (mix, what the error says, why)
    let rows = [
        (
            "low=70,medium=20",
            "add up to 90, not 100",
            "must sum to 100",
        ),
        (
            "low=60,meduim=40",
            "(did you mean `medium`?)",
            "misspelt tier",
        ),
        ("low=100,low=0", "`low` is given twice", "duplicate tier"),
    ];
    for (mix, says, why) in rows {
        let out = generate(&[
            "--count",
            "10",
            "--seed",
            "1",
            "--risk-mix",
            mix,
            "--out",
            out_file,
        ])
        .run()
        .expect_code(2);
        assert!(out.stderr.contains(says), "{why}: {}", out.stderr);
        assert!(
            out.stderr
                .starts_with(&format!("error: invalid --risk-mix `{mix}`: ")),
            "{why}"
        );
    }
}

#[test]
fn other_bad_input_is_a_usage_error() {
    // (args, what stderr says, why)
    let rows: &[(&[&str], &str, &str)] = &[
        (
            &["--count", "0", "--seed", "1", "--out", "x.yaml"],
            "0 is not in 1..",
            "no empty datasets",
        ),
        (
            &["--count", "5", "--out", "x.yaml"],
            "--seed <S>",
            "the seed is required",
        ),
        (
            &[
                "--count",
                "5",
                "--seed",
                "1",
                "--out",
                "/nonexistent-dir/x.yaml",
            ],
            "cannot write /nonexistent-dir/x.yaml.partial",
            "an unwritable path",
        ),
        (
            &[
                "--count",
                "5",
                "--seed",
                "1",
                "--manifest",
                "no-such.yaml",
                "--out",
                "x.yaml",
            ],
            "no-such.yaml",
            "a missing manifest",
        ),
    ];
    for (args, says, why) in rows {
        let out = generate(args).run().expect_code(2);
        assert!(out.stderr.contains(says), "{why}: {}", out.stderr);
    }
}

#[test]
fn generate_help_is_stable() {
    let out = generate(&["--help"]).run().expect_code(0);
    snapshot!("help_sandbox_generate_help", out.stdout);
}
