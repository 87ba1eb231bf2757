//! What the format tests share: the conformance corpus beside the repository.

use std::path::{Path, PathBuf};

/// The conformance corpus (`../shared/conformance`, real files written by SAS and CDISC), or `None` with a
/// message when it is not there. Where it must be (in CI, or with `TRIALPORT_REQUIRE_CONFORMANCE` set) its
/// absence fails the test instead of skipping it.
pub fn conformance_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    if dir.is_dir() {
        return Some(dir);
    }
    let required = std::env::var_os("TRIALPORT_REQUIRE_CONFORMANCE").is_some()
        || std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !required,
        "the conformance corpus is missing at {}",
        dir.display()
    );
    eprintln!(
        "skipped: the conformance corpus is not at {} (set TRIALPORT_REQUIRE_CONFORMANCE to fail instead)",
        dir.display()
    );
    None
}
