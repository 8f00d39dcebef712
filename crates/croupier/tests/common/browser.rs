//! Running a browser check: a script of tests/browser (node + playwright-core driving Debian's
//! chromium, headless) that prints one JSON line of what it saw and exits non-zero on the first
//! failed expectation.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails the test, saying how to install them, when chromium or playwright-core is missing.
pub fn require_browser() {
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/test.sh (or npm ci --prefix {})",
        browser_dir().display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "chromium is missing: run scripts/test.sh (or apt-get install chromium)"
    );
}

/// Runs `tests/browser/{script}` with `args` (`--name value` pairs); returns its JSON line.
pub fn run_browser(script: &str, args: &[&str]) -> Value {
    require_browser();
    let run = Command::new("node")
        .arg(browser_dir().join(script))
        .args(args)
        .output()
        .expect("node runs");
    assert!(
        run.status.success(),
        "the browser check {script} failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(
        run.stdout
            .split(|b| *b == b'\n')
            .find(|l| l.starts_with(b"{"))
            .expect("a JSON line"),
    )
    .unwrap()
}
