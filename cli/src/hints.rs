//! How to fix an error, in the CLI's words: the engine's messages name request fields (`deidentify`, `filters`,
//! `signature.password`) because the same engine serves Rust, Python, C and HTTP; a CLI user needs the flag,
//! variable or command that fixes it. [`for_error`] picks one from the error's reason and field; the error JSON
//! carries it as `error.hint`, and a person reading a terminal sees it on its own line.
//!
//! The reasons come first (they say what went wrong); the field is the fallback (it says where).
//! `cli/tests/newcomer.rs` runs the newcomer review's steps and follows the hints they print.

use trialport_core::error::Reason;
use trialport_core::Error;

/// Which command raised the error: the same engine field maps to different flags (`format` is `--format` for an
/// export, `--to` for `convert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `convert`, `formats`, `verify`: no home, no credential.
    Files,
    /// Every command that works on a home.
    Home,
}

/// The hint for `e` raised by a command of `surface`, if one applies.
pub fn for_error(e: &Error, surface: Surface) -> Option<String> {
    by_reason(e, surface).or_else(|| e.field().and_then(|f| by_field(f, surface)))
}

fn by_reason(e: &Error, surface: Surface) -> Option<String> {
    let field = e.field().unwrap_or_default();
    let reason = Reason::parse(e.reason())?;
    let text = match reason {
        Reason::MissingHome | Reason::NotAHome | Reason::IncompleteHome => {
            "give --home DIR or set TRIALPORT_HOME; make a home with `trialport --home DIR init --source DATA --org ORG`"
        }
        Reason::MissingCredential => {
            "give --credential 'ApiKey tp_...' or set TRIALPORT_CREDENTIAL (init printed the first admin key; \
             `trialport keys create` makes more)"
        }
        Reason::InvalidCredential => {
            "--credential and TRIALPORT_CREDENTIAL take 'ApiKey tp_...', a bare 'tp_...' key or 'Bearer <jwt>': \
             check the key was copied whole"
        }
        Reason::UnknownKey | Reason::KeyRevoked | Reason::KeyExpired | Reason::Expired => {
            "this key cannot be used: ask an administrator for a new one (`trialport keys create --name NAME --roles \
             ROLES --studies STUDIES`)"
        }
        Reason::UnsupportedCredential => {
            "this home takes API keys only: use --credential 'ApiKey tp_...', or make the home with --jwt-hs or \
             --jwt-public-key-file"
        }
        Reason::PermissionDenied => {
            "your key's roles do not allow this: see docs/permissions.md, and ask an administrator for a key with \
             the role (`trialport keys create --roles ROLE`)"
        }
        Reason::IdentifiableData => {
            "add --deidentify safe-harbor (or another profile, e.g. pseudonymize,date-shift) for de-identified data, \
             or --identifiable --sign approval (needs the data:identifiable permission and TRIALPORT_SIGN_PASSWORD)"
        }
        Reason::SignatureRequired => {
            "sign it: add --sign approval (or authorship, review, responsibility) with your password in \
             TRIALPORT_SIGN_PASSWORD; set the password once with `trialport signing set-password`"
        }
        Reason::SigningNotEnrolled | Reason::PasswordResetRequired => {
            "set your signing password with `trialport signing set-password` (read from standard input)"
        }
        Reason::SignatureInvalid => {
            "TRIALPORT_SIGN_PASSWORD must hold your signing password; repeated failures lock signing until an \
             administrator runs `trialport signing reset`"
        }
        Reason::SigningLocked => {
            "signing is locked after failed attempts: another administrator runs `trialport signing reset SUBJECT`"
        }
        Reason::WeakPassword => {
            "choose a signing password of 12 or more characters that is not a common password and does not \
             contain your id or name"
        }
        Reason::UnknownProfile => {
            "--deidentify takes profiles separated by commas: safe-harbor, pseudonymize, date-shift, drop-free-text"
        }
        Reason::InvalidFilter => {
            "--filter COLUMN:OP:VALUE, OP one of eq, ne, lt, le, gt, ge, in (VALUE a comma-separated list), \
             is_null, is_not_null; repeat --filter for several"
        }
        Reason::UnknownOption | Reason::InvalidOption => {
            return Some(match field.strip_prefix("options.") {
                Some(name) => format!(
                    "format options are --option {name}=VALUE; `trialport formats` lists each format's options and \
                     their values"
                ),
                None => "format options are --option NAME=VALUE; `trialport formats` lists them".into(),
            })
        }
        Reason::UnsupportedByFormat | Reason::UnsupportedByKind if field == "deidentify" || field == "identifiable" =>
        {
            "this export carries no rows to de-identify (a metadata document such as define-xml, or a report): \
             leave out --deidentify and --identifiable"
        }
        Reason::UnknownOutputFormat | Reason::UnsupportedByFormat | Reason::UnsupportedByKind => {
            return Some(match surface {
                Surface::Files => "name the output format with --to FORMAT; `trialport formats` lists them".into(),
                Surface::Home => "name the format with --format FORMAT; `trialport formats` lists them".into(),
            })
        }
        Reason::MissingDatasets => "name the datasets with --datasets DM,AE (the study's files under the home's source)",
        Reason::AlreadyInitialized => "this home exists already: use it with --home, or give init a new directory",
        Reason::NotFound if field == "study" && matches!(surface, Surface::Home) => {
            "no study of your organization has this id: `trialport studies list` shows the ones you may use"
        }
        Reason::StudyExists => {
            "the study belongs to an organization already (`trialport studies list`): to move it, run \
             `trialport studies remove STUDY`, then `trialport studies add STUDY --org ORG`"
        }
        Reason::CurrentPasswordRequired => {
            "changing your signing password needs the current one in TRIALPORT_SIGN_PASSWORD"
        }
        Reason::InvalidMeaning => "--sign takes review, approval, responsibility or authorship",
        Reason::IdempotencyConflict => {
            "this --idempotency-key was used for a different request: choose a new key"
        }
        Reason::NotARegularFile | Reason::OutputIsDirectory => {
            "-o names the file to write: a new or regular file, or an existing directory for the artifact's name"
        }
        Reason::ArtifactRequired => {
            "the job has several artifacts: name one with --artifact NAME, or take them all with --all -o DIR"
        }
        Reason::UnsafePackage | Reason::InvalidPackage | Reason::IntegrityViolation if field == "package" && matches!(surface, Surface::Files) =>
        {
            "this package is not what trialport wrote, or it changed since: do not use it; download the job again \
             with `trialport download JOB --all -o DIR` and verify that"
        }
        Reason::OutOfRange if field == "limit" => "--limit takes 1 to 100",
        Reason::OutOfRange if field == "page" => "--page counts from 1",
        _ => return None,
    };
    Some(text.to_string())
}

fn by_field(field: &str, surface: Surface) -> Option<String> {
    if let Some(name) = field.strip_prefix("options.") {
        return Some(format!(
            "set it with --option {name}=VALUE; `trialport formats` lists each format's options"
        ));
    }
    let flag = match (field, surface) {
        ("format", Surface::Files) | ("to", _) => "--to FORMAT",
        ("format", Surface::Home) => "--format FORMAT",
        ("home", _) => "--home DIR (or TRIALPORT_HOME)",
        ("study", _) => "--study STUDY",
        ("datasets", _) => "--datasets DM,AE",
        ("dataset", Surface::Files) => "--dataset NAME",
        ("columns", _) => "--columns COL1,COL2",
        ("filters", _) => "--filter COLUMN:OP:VALUE",
        ("deidentify", _) => "--deidentify PROFILES (or --identifiable)",
        ("identifiable", _) => "--identifiable",
        ("idempotency_key", _) => "--idempotency-key KEY",
        ("spec", _) => "--spec FILE (see docs/reports.md)",
        ("package", Surface::Home) => "--package zip|ectd",
        ("container", _) => "--container zip|directory",
        ("max_file_bytes", _) => "--max-file-bytes BYTES",
        ("limit", _) => "--limit N",
        ("page", _) => "--page N",
        ("status", _) => "--status STATE",
        ("timeout", _) => "--timeout SECS",
        ("roles", _) => "--roles ROLES",
        ("studies", _) => "--studies STUDIES",
        ("org", _) => "--org ORG",
        ("expires_at", _) => {
            "--expires-at TIME (RFC 3339, in the future, e.g. 2027-01-01T00:00:00Z)"
        }
        ("artifact", _) => "--artifact NAME",
        ("output" | "out", _) => "-o PATH",
        ("source", _) => "init --source DIR",
        ("meta", _) => "--meta FILE",
        ("signature" | "signature.meaning" | "sign", _) => "--sign MEANING",
        ("signature.password" | "password" | "current_password", _) => "TRIALPORT_SIGN_PASSWORD",
        ("retention", _) => "init --retention KIND=DAYS",
        ("jwt" | "jwt_alg", _) => "init --jwt-hs / --jwt-public-key-file with --jwt-alg",
        ("public_key", _) => "verify --public-key FILE",
        ("checkpoint", _) => "audit verify --checkpoint FILE",
        ("credential", _) => "--credential (or TRIALPORT_CREDENTIAL)",
        _ => return None,
    };
    Some(format!("set it with {flag}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_study_points_to_the_registry() {
        let e = trialport_core::source::unknown_study("S9");
        assert!(for_error(&e, Surface::Home)
            .unwrap()
            .contains("trialport studies list"));
        let e = Error::conflict(Reason::StudyExists, "x").with_field("study");
        assert!(for_error(&e, Surface::Home)
            .unwrap()
            .contains("trialport studies remove STUDY"));
    }

    #[test]
    fn a_reason_wins_over_its_field() {
        let e = Error::validation(Reason::IdentifiableData, "x").with_field("deidentify");
        let hint = for_error(&e, Surface::Home).unwrap();
        assert!(
            hint.contains("--deidentify safe-harbor") && hint.contains("--identifiable"),
            "{hint}"
        );
    }

    #[test]
    fn a_field_names_its_flag_by_surface() {
        let e = Error::validation(Reason::InvalidRequest, "x").with_field("format");
        assert!(for_error(&e, Surface::Files).unwrap().contains("--to"));
        assert!(for_error(&e, Surface::Home).unwrap().contains("--format"));
        let e = Error::validation(Reason::InvalidRequest, "x").with_field("options.version");
        assert!(for_error(&e, Surface::Home)
            .unwrap()
            .contains("--option version=VALUE"));
    }

    #[test]
    fn a_reason_without_a_hint_and_without_a_field_has_none() {
        assert_eq!(
            for_error(&Error::server(Reason::IoError, "x"), Surface::Home),
            None
        );
    }
}
