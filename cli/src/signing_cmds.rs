//! The e-signature commands: `signing set-password|reset|public-key`, the `--sign MEANING` of the export commands,
//! and the signatures that `verify` reports. Every decision (who may sign, which exports need a signature) is the
//! engine's; this only gathers the password and prints.

use crate::args::{SignArgs, SigningCommand};
use crate::engine_cmds::Ctx;
use crate::output;
use serde_json::json;
use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;
use trialport_core::error::Reason;
use trialport_core::manifest::{SignatureRequirement, SignatureStatus, VerifyReport};
use trialport_core::signature::{Meaning, PublicKey, SignatureRequest};
use trialport_core::{Error, Result};

/// The environment variable holding the signing password (else it is asked for on the terminal).
pub const PASSWORD_ENV: &str = "TRIALPORT_SIGN_PASSWORD";

impl SignArgs {
    /// The signature of the request: `None` without `--sign`.
    ///
    /// # Errors
    /// EXP002 `invalid_meaning` with field `sign`; EXP003 `signature_required` when there is no password.
    pub fn request(&self) -> Result<Option<SignatureRequest>> {
        let Some(meaning) = &self.sign else {
            return Ok(None);
        };
        let meaning = Meaning::parse(meaning).map_err(|e| e.with_field("sign"))?;
        let password = password(&format!("signing password ({meaning}): "))?;
        Ok(Some(SignatureRequest::new(meaning, password)))
    }
}

/// The password from [`PASSWORD_ENV`], else asked for on the terminal.
fn password(prompt: &str) -> Result<String> {
    if let Some(p) = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()) {
        return Ok(p);
    }
    rpassword::prompt_password(prompt).map_err(|_| {
        Error::unauthorized(
            Reason::SignatureRequired,
            format!(
                "a signature needs the signing password: set {PASSWORD_ENV} or run in a terminal"
            ),
        )
        .with_field("signature.password")
    })
}

/// The new password: one line of standard input, or asked for twice on a terminal.
fn new_password() -> Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("new signing password: ")
            .map_err(|e| Error::io("cannot read the password", &e))?;
        let again = rpassword::prompt_password("new signing password again: ")
            .map_err(|e| Error::io("cannot read the password", &e))?;
        if first != again {
            return Err(
                Error::validation(Reason::PasswordMismatch, "the two passwords differ")
                    .with_field("password"),
            );
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("cannot read the password from standard input", &e))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_string())
}

/// `trialport signing set-password|reset|public-key`.
///
/// # Errors
/// The engine's errors.
pub fn signing(ctx: &Ctx, cmd: &SigningCommand) -> Result<ExitCode> {
    match cmd {
        SigningCommand::SetPassword => {
            let new = new_password()?;
            let engine = ctx.engine()?;
            let current = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
            match engine
                .session(ctx.cred())
                .set_signing_password(&new, current.as_deref())
            {
                Err(e) if e.reason() == "current_password_required" && current.is_none() => {
                    let Ok(current) = rpassword::prompt_password("current signing password: ")
                    else {
                        return Err(e);
                    };
                    engine
                        .session(ctx.cred())
                        .set_signing_password(&new, Some(&current))?;
                }
                other => other?,
            }
            if ctx.json() {
                output::json(&json!({"signing_password": "set"}))?;
            } else {
                output::line("signing password set")?;
            }
        }
        SigningCommand::Reset(a) => {
            ctx.engine()?
                .session(ctx.cred())
                .reset_signing(&a.subject)?;
            if ctx.json() {
                output::json(&json!({"subject": a.subject, "reset": true}))?;
            } else {
                output::line(&format!(
                    "signing reset for {}: they must set a new password",
                    a.subject
                ))?;
            }
        }
        SigningCommand::PublicKey(a) => {
            let key = ctx.engine()?.signing_public_key();
            match &a.output {
                Some(path) => {
                    output::write_file(path, key.to_pem().as_bytes())?;
                    if ctx.json() {
                        output::json(&json!({"key_id": key.id(), "path": path}))?;
                    } else {
                        output::line(&format!("public key {} written", key.id()))?;
                    }
                }
                None if ctx.json() => output::json(
                    &json!({"key_id": key.id(), "public_key": key.to_base64(), "pem": key.to_pem()}),
                )?,
                None => output::line(key.to_pem().trim_end())?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a public key file of `verify --public-key`: PEM (as `signing public-key` or OpenSSL write it) or the
/// base64 of the key's 32 bytes.
///
/// # Errors
/// EXP001 when the file does not exist; EXP002 `invalid_public_key`.
pub fn read_public_key(path: &Path) -> Result<PublicKey> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::not_found("the public key file does not exist").with_field("public_key")
        }
        _ => Error::io("cannot read the public key file", &e),
    })?;
    PublicKey::parse(&text)
}

/// Prints what `verify` checked: the files, each signature with its manifestation (§11.50: printed name, time,
/// meaning) and whether its key was the trusted one, then the signature status (`SIGNED`, `UNTRUSTED` or
/// `UNSIGNED`) and, for an unsigned package that must be signed, that it fails.
///
/// # Errors
/// EXP005 when standard output fails.
pub fn print_verified(report: &VerifyReport, json: bool) -> Result<()> {
    let refused = report.require_signature().is_err();
    if json {
        return output::json(&json!({
            "verified": !refused,
            "signature_status": report.signature_status,
            "signature_required": report.signature_required,
            "job_id": report.job_id,
            "files": report.files_verified,
            "signatures": report.signatures,
        }));
    }
    output::line(&format!(
        "files verified: {} files match the manifest of job {}",
        report.files_verified, report.job_id
    ))?;
    for s in &report.signatures {
        let trust = if s.key_trusted {
            "the trusted key"
        } else {
            "the key the package carries (integrity only; give --public-key to check origin)"
        };
        output::line(&format!(
            "signed by {} ({}, {}) at {} meaning {}; signature verified with key {}, {trust}",
            s.printed_name,
            s.signer_id,
            s.org,
            trialport_core::clock::format_utc(s.signed_at),
            s.meaning,
            s.key_id
        ))?;
    }
    let required = match report.signature_required {
        Some(SignatureRequirement::PublicKey) => {
            "a trusted public key was given, so a signature by it is required"
        }
        Some(SignatureRequirement::EctdPackage) => "an eCTD package must be signed",
        None => "no signature is required (no --public-key, not an eCTD package)",
    };
    let verdict = match report.signature_status {
        SignatureStatus::Signed => {
            "SIGNED: every signature verified with the trusted public key: package verified".to_string()
        }
        SignatureStatus::Untrusted => "UNTRUSTED: signed, but verified only with the key the package carries, which \
            proves integrity, not who signed: package verified; give --public-key to check its origin"
            .to_string(),
        SignatureStatus::Unsigned if refused => {
            format!("UNSIGNED: the package carries no e-signature, and {required}: package NOT verified")
        }
        SignatureStatus::Unsigned => {
            format!("UNSIGNED: the package carries no e-signature; {required}: package verified")
        }
    };
    output::line(&verdict)
}
