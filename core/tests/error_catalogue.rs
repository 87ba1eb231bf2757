//! `docs/errors.md` lists every error reason of the catalogue, with its codes, HTTP statuses and meaning, exactly
//! as [`Reason::catalogue_markdown`] renders them. `TRIALPORT_BLESS=1` rewrites the table after a change.

use std::path::PathBuf;
use trialport_core::error::Reason;

const BEGIN: &str = "<!-- reasons:begin -->\n";
const END: &str = "<!-- reasons:end -->";

#[test]
fn docs_errors_md_lists_the_catalogue() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/errors.md");
    let text = std::fs::read_to_string(&path).expect("docs/errors.md");
    let start = text.find(BEGIN).expect("the begin marker") + BEGIN.len();
    let end = text.find(END).expect("the end marker");
    let table = Reason::catalogue_markdown();
    if std::env::var_os("TRIALPORT_BLESS").is_some() {
        let updated = format!("{}{table}{}", &text[..start], &text[end..]);
        std::fs::write(&path, updated).expect("write docs/errors.md");
        return;
    }
    assert!(
        text[start..end] == table,
        "docs/errors.md does not list the catalogue of core/src/error/reason.rs: \
         run TRIALPORT_BLESS=1 cargo test -p trialport-core --test error_catalogue"
    );
}

#[test]
fn every_reason_is_documented_with_its_codes() {
    let table = Reason::catalogue_markdown();
    for r in Reason::ALL {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", r.as_str())))
            .unwrap_or_else(|| panic!("{} has no row", r.as_str()));
        for code in r.codes() {
            assert!(row.contains(code.as_str()), "{row}");
        }
    }
    // The one reason answered with 403 rather than 401.
    let denied = table
        .lines()
        .find(|l| l.starts_with("| `permission_denied` |"))
        .unwrap();
    assert!(denied.contains("| EXP003 | 403 |"), "{denied}");
}
