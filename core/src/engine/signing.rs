//! E-signatures in the engine (see [`crate::signature`]): the builder's signing parts, checking a request's
//! signature before its job exists, signing manifests when the job succeeds, and the signing operations.

use super::call::{Call, Done};
use super::run::{Running, Stop};
use super::{Engine, EngineBuilder, Inner, Session};
use crate::audit::{Actor, AuditRecord, AuditScope, Outcome};
use crate::auth::{authorize, Permission};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::manifest::Manifest;
use crate::signature::{
    requested_meaning, PasswordStore, PublicKey, Reauth, SignatureRecord, SignatureRequest,
    SignatureVerifier, Signer, Signing, SigningKey, SigningSettings,
};
use crate::store::Tx;
use serde_json::{json, Value};
use std::sync::Arc;

/// Why an export needs a signature: the detail `required_for` of EXP003 `signature_required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Critical {
    /// A bulk export with `package = "ectd"`.
    EctdPackage,
    /// An export with `identifiable = true`.
    IdentifiableData,
}

impl Critical {
    fn as_str(self) -> &'static str {
        match self {
            Critical::EctdPackage => "ectd_package",
            Critical::IdentifiableData => "identifiable_data",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Critical::EctdPackage => "an eCTD package",
            Critical::IdentifiableData => "an export of identifiable data",
        }
    }
}

impl EngineBuilder {
    /// Signs manifests with `key` (default: a fresh key that lives as long as the engine; a home's `signing.key`
    /// with [`EngineBuilder::home`]).
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.signing_key = Some(key);
        self
    }

    /// Keeps signing passwords and failed attempts in `store` (default: in memory with the default
    /// [`SigningSettings`]; the home's database with [`EngineBuilder::home`]).
    pub fn password_store(mut self, store: Arc<PasswordStore>) -> Self {
        self.password_store = Some(store);
        self
    }

    /// Checks signers' second components with `verifier` instead of the password store (which still counts
    /// failed attempts and locks).
    pub fn signature_verifier(mut self, verifier: Arc<dyn SignatureVerifier>) -> Self {
        self.signature_verifier = Some(verifier);
        self
    }

    /// The signing parts of the engine being built.
    pub(super) fn take_signing(&mut self) -> Result<Signing> {
        let key = match self.signing_key.take() {
            Some(k) => k,
            None => SigningKey::generate()?,
        };
        let store = match self.password_store.take() {
            Some(s) => s,
            None => Arc::new(PasswordStore::in_memory(SigningSettings::default())?),
        };
        Ok(Signing::new(key, store, self.signature_verifier.take()))
    }
}

/// Checks an export request's e-signature before its job exists: required for `critical` requests
/// (EXP003 `signature_required`), re-authenticated with the signer's password. Returns what the operation's
/// audit event records of it (never the password).
pub(super) fn check_signature(
    inner: &Inner,
    call: &Call<'_>,
    signature: Option<&SignatureRequest>,
    critical: Option<Critical>,
) -> Result<Option<Value>> {
    let Some(sig) = signature else {
        return match critical {
            Some(c) => Err(Error::unauthorized(
                "signature_required",
                format!(
                    "{} needs an electronic signature: a meaning and the signer's password",
                    c.what()
                ),
            )
            .with_field("signature")
            .with_detail("required_for", c.as_str())),
            None => Ok(None),
        };
    };
    if sig.password.is_empty() {
        return Err(Error::unauthorized(
            "signature_required",
            "an electronic signature needs the signer's password",
        )
        .with_field("signature.password"));
    }
    reauthenticate(inner, call, sig.password.expose())?;
    let mut recorded = json!({"meaning": sig.meaning, "signer": call.principal().subject});
    if let Some(c) = critical {
        recorded["required_for"] = json!(c.as_str());
    }
    Ok(Some(recorded))
}

/// Re-authenticates the caller as a signer; the attempt that locks signing writes the security event
/// `security.signing_locked` before the call returns.
fn reauthenticate(inner: &Inner, call: &Call<'_>, password: &str) -> Result<()> {
    let p = call.principal();
    let outcome = inner.signing.reauthenticate(p, password, call.at)?;
    if let Reauth::LockedNow { failures } = outcome {
        inner.audit(
            &AuditRecord {
                actor: call.actor(),
                action: "security.signing_locked".into(),
                target: format!("signer:{}", p.subject),
                outcome: Outcome::Denied,
                details: json!({"failures": failures, "operation": call.action}),
                request_id: call.request_id.clone(),
            },
            &AuditScope::new(p.org.clone(), None),
        )?;
    }
    outcome.into_result()
}

impl Session<'_> {
    /// Sets the caller's signing password (in the built-in password store). Changing a password needs the current
    /// one, checked like a signature (a wrong one counts as a failed attempt). The password must have 8 to 1,024
    /// characters and no control character.
    ///
    /// # Errors
    /// EXP003 `current_password_required`, `signature_invalid` or `signing_locked`; EXP002 `weak_password`, or
    /// `unsupported` when the engine's verifier takes no passwords; EXP005.
    pub fn set_signing_password(&self, password: &str, current: Option<&str>) -> Result<()> {
        self.call("set_signing_password", "signer".to_string(), |call| {
            let p = call.principal();
            let signing = &self.inner.signing;
            if signing
                .store()
                .status(&p.org, &p.subject)?
                .locked_at
                .is_some()
            {
                Reauth::Locked.into_result()?;
            }
            let enrolled = signing.verifier().enrolled(p)?;
            if enrolled {
                let current = current.filter(|c| !c.is_empty()).ok_or_else(|| {
                    Error::unauthorized(
                        "current_password_required",
                        "changing the signing password needs the current one",
                    )
                    .with_field("current_password")
                })?;
                reauthenticate(self.inner, call, current)?;
            }
            signing.verifier().set_secret(p, password, call.at)?;
            Ok(Done {
                target: format!("signer:{}", p.subject),
                details: json!({"changed": enrolled}),
                value: (),
            })
        })
    }

    /// Removes the signing password, failed attempts and lock of `subject` in the caller's organization, so that
    /// the signer can set a new password (an administrator's act; it cannot set one for them).
    ///
    /// # Errors
    /// EXP003 (needs `keys:manage`); EXP001 when the signer has nothing to reset; EXP005.
    pub fn reset_signing(&self, subject: &str) -> Result<()> {
        self.call("reset_signing", format!("signer:{subject}"), |call| {
            let p = call.principal();
            authorize(p, Permission::KeysManage, &p.org, None)?;
            if !self.inner.signing.store().reset(&p.org, subject)? {
                return Err(Error::not_found(
                    "the signer has no signing password or failed attempts",
                )
                .with_field("subject"));
            }
            Ok(Done {
                target: format!("signer:{subject}"),
                details: json!({"org": p.org}),
                value: (),
            })
        })
    }
}

impl Engine {
    /// The public key of the engine's signing key: what verifies its signatures (public, so no credential).
    pub fn signing_public_key(&self) -> PublicKey {
        *self.inner.signing.key().public_key()
    }
}

/// Signs a manifest being written when the job's request asked for a signature: appends the record to its
/// `signatures` and keeps it for the audit trail.
pub(super) fn sign_manifest(run: &mut Running<'_>, manifest: &mut Manifest) -> Result<(), Stop> {
    let Some(meaning) = requested_meaning(&run.job.request) else {
        return Ok(());
    };
    let job = &run.job;
    let value = serde_json::to_value(&*manifest)
        .map_err(|_| Error::server("internal", "cannot serialize the manifest"))?;
    let record = run.inner.signing.key().sign_manifest(
        &value,
        job.id,
        Signer {
            subject: &job.requested_by,
            name: &job.requested_by_name,
            org: &job.org,
        },
        meaning,
        job.created_at,
    );
    let recorded = serde_json::to_value(&record)
        .map_err(|_| Error::server("internal", "cannot serialize a signature"))?;
    manifest.signatures.push(recorded);
    run.signatures.push(record);
    Ok(())
}

/// Records the signatures of a succeeded job in the transaction of its end: `job.signed`, with the signer as actor.
pub(super) fn record_signatures(
    inner: &Inner,
    tx: &mut dyn Tx,
    job: &Job,
    records: &[SignatureRecord],
) -> Result<()> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    inner.record(
        tx,
        &AuditRecord {
            actor: Actor {
                subject: first.signer_id.clone(),
                name: first.printed_name.clone(),
                org: first.org.clone(),
            },
            action: "job.signed".into(),
            target: format!("job:{}", job.id),
            outcome: Outcome::Success,
            details: json!({"meaning": first.meaning, "signatures": records}),
            request_id: format!("job_{}", job.id.simple()),
        },
        &AuditScope::new(job.org.clone(), Some(&job.study)),
    )?;
    Ok(())
}
