//! `--report html=PATH` in a real browser: headless Chromium loads the page from disk
//! (no network), and the test asserts what renders — the verdict, a failed check's
//! link to its findings, a finding's candidate reaching that candidate's timeline
//! (`#candidate=ID`), the outage chart — and keeps screenshots under
//! `target/tmp/audit/screenshots/`.
//!
//! `.ci/run` installs Chromium. Without it the test fails under `CI=true` and skips
//! with a message elsewhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::trace::{defective, outage, passing};

/// The browser binary, if there is one.
fn chromium() -> Option<PathBuf> {
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Chromium, or `None` after saying why the browser tests are skipped; under CI a
/// missing browser fails the test.
fn browser() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is missing and CI=true: .ci/run installs it (apt-get install chromium)"
        );
        eprintln!("skipping the browser test: no chromium on PATH (apt-get install chromium)");
    }
    found
}

/// Runs headless Chromium on the page with `args`, bounded in time.
fn headless(browser: &Path, page: &Path, fragment: &str, args: &[String]) -> String {
    let profile = tempfile::tempdir().expect("a fresh profile");
    let url = format!("file://{}{fragment}", page.display());
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--run-all-compositor-stages-before-draw",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    // Read stdout on a thread so a full pipe never blocks the browser.
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().expect("waitable").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().expect("reader").expect("UTF-8 DOM")
}

fn dom(browser: &Path, page: &Path, fragment: &str) -> String {
    headless(browser, page, fragment, &["--dump-dom".to_owned()])
}

fn screenshot(browser: &Path, page: &Path, fragment: &str, name: &str, height: u32) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshots folder");
    let file = dir.join(name);
    let _ = std::fs::remove_file(&file);
    headless(
        browser,
        page,
        fragment,
        &[
            format!("--screenshot={}", file.display()),
            format!("--window-size=1280,{height}"),
        ],
    );
    let png = std::fs::read(&file).expect("a screenshot was written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    file
}

/// The text of the element with this id in a dumped DOM (up to its end tag).
fn element<'d>(dom: &'d str, id: &str) -> &'d str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} rendered"));
    &dom[at..]
}

#[test]
fn a_failed_check_leads_to_the_candidates_timeline_in_a_browser() {
    let run = defective();
    let page = run.html();
    let size = std::fs::metadata(&page).expect("html written").len();
    assert!(
        size < 2 << 20,
        "a small run gives a small page: {size} bytes"
    );
    let text = std::fs::read_to_string(&page).expect("html");
    assert!(
        !text.contains("observation.jsonl\",\"seq\""),
        "no log records embedded"
    );
    let Some(browser) = browser() else { return };

    let home = dom(&browser, &page, "");
    assert!(home.contains("data-rendered=\"true\""), "the script ran");
    assert!(
        element(&home, "verdict").starts_with("id=\"verdict\" class=\"verdict v-blocked\">blocked"),
        "{}",
        &element(&home, "verdict")[..80]
    );
    // The failed check links to its findings, and they to the candidate.
    assert!(home.contains("href=\"#check=idempotency.exactly_once\""));
    let findings = element(&home, "check-idempotency.exactly_once");
    let candidate = run.finding_candidates("idempotency.exactly_once")[0].clone();
    assert!(findings.contains(&format!("href=\"#candidate={candidate}\"")));

    // Following that link shows the candidate's timeline, its duplicate marked.
    let fragment = format!("#candidate={candidate}");
    let view = dom(&browser, &page, &fragment);
    let timeline = element(&view, "candidate-view");
    assert!(
        timeline.starts_with(&format!(
            "id=\"candidate-view\" data-candidate=\"{candidate}\""
        )),
        "{}",
        &timeline[..120]
    );
    let timeline = &timeline[..timeline.find("id=\"checks\"").expect("checks follow")];
    for stage in ["stage-acknowledged", "stage-processed", "stage-written"] {
        assert!(timeline.contains(stage), "{stage} in the timeline");
    }
    assert!(
        timeline.contains("duplicate: "),
        "the duplicate delivery is marked"
    );
    assert!(
        timeline.contains("applied again"),
        "the second write is marked"
    );
    assert!(timeline.contains("Findings about this candidate"));
    screenshot(&browser, &page, &fragment, "defective-candidate.png", 1400);
}

#[test]
fn a_passing_run_and_an_outage_render_in_a_browser() {
    let Some(browser) = browser() else { return };
    let run = passing();
    let home = dom(&browser, &run.html(), "");
    assert!(element(&home, "verdict").contains("v-pass\">pass"));
    assert!(home.contains("No check failed."));
    let plan = run.plan();
    let candidates = plan["candidates"].as_array().expect("candidates").len();
    assert!(
        home.contains(&format!("({candidates} candidates)")),
        "all listed"
    );
    assert!(home.contains("sent → applied at the ATS"), "time to event");

    let rehearsal = outage();
    let page = dom(&browser, &rehearsal.html(), "");
    let chart = element(&page, "outages-body");
    assert!(
        chart.contains("class=\"queue-chart\""),
        "the queue-depth chart"
    );
    assert!(chart.contains("<path d=\"M"), "a plotted queue");
    assert!(
        chart.contains("kill switch tripped"),
        "the trip on the timeline"
    );
    screenshot(&browser, &rehearsal.html(), "", "outage.png", 2600);
}
