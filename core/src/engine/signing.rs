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

/// The most links followed from a key to the key that created it, and so on, when a reset checks that the signer
/// did not create the resetter's key (chains are short: each link is an administrator creating a key).
const MAX_KEY_CHAIN: usize = 64;

/// EXP003 `self_reset`.
fn self_reset(message: &str) -> Error {
    Error::unauthorized("self_reset", message).with_field("subject")
}

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
    /// one, checked like a signature (a wrong one counts as a failed attempt); after an administrator's reset
    /// ([`Session::reset_signing`]) there is none, and setting one lifts the reset. The password must follow
    /// [`crate::signature::check_password_policy`]: 12 characters to 1,024 bytes, no control character, not a
    /// common password, not containing the caller's id or printed name.
    ///
    /// # Errors
    /// EXP003 `current_password_required`, `signature_invalid` or `signing_locked`; EXP002 `weak_password`, or
    /// `unsupported` when the engine's verifier takes no passwords; EXP005.
    pub fn set_signing_password(&self, password: &str, current: Option<&str>) -> Result<()> {
        self.call("set_signing_password", "signer".to_string(), |call| {
            let p = call.principal();
            let signing = &self.inner.signing;
            let status = signing.store().status(&p.org, &p.subject)?;
            if status.locked_at.is_some() {
                Reauth::Locked.into_result()?;
            }
            // After an administrator's reset the old password is gone: the signer sets a new one without it.
            let enrolled = !signing.reset_pending(&status) && signing.verifier().enrolled(p)?;
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
                details: json!({"changed": enrolled, "after_reset": status.reset_at.is_some()}),
                value: (),
            })
        })
    }

    /// Resets the signing credential of `subject` in the caller's organization (an administrator's act, 21 CFR
    /// 11.300(b)-(c)): removes its password, failed attempts and lock, and marks it so that signing is refused
    /// (EXP003 `password_reset_required`) until the signer sets a new password themselves; nobody can set one for
    /// them. The rules:
    ///
    /// - the caller holds `keys:manage` in the organization, and every study of the signer, as revoking the
    ///   signer's API key needs ([`Session::revoke_api_key`]): the studies of the signer's API key record for an
    ///   `apikey:` subject, else the studies the signer held when last seen enrolling or signing (`*` when none
    ///   are recorded), so a study administrator cannot reset an organization-wide administrator;
    /// - nobody resets their own credential, nor that of a signer who created (directly or through other keys)
    ///   the API key the caller uses: a reset always takes a second person (§11.200(a)(3)), and a stolen key
    ///   cannot mint a helper key to reset its owner's credential.
    ///
    /// # Errors
    /// EXP003 `permission_denied` (role, or a study of the signer the caller lacks), `self_reset`; EXP001 when the
    /// signer has nothing to reset (no password, failed attempt or lock, or a signer of another organization);
    /// EXP005.
    pub fn reset_signing(&self, subject: &str) -> Result<()> {
        self.call("reset_signing", format!("signer:{subject}"), |call| {
            let p = call.principal();
            authorize(p, Permission::KeysManage, &p.org, None)?;
            if subject == p.subject {
                return Err(self_reset("a signer cannot reset their own signing credential"));
            }
            let store = self.inner.signing.store();
            if !store.status(&p.org, subject)?.resettable() {
                return Err(Error::not_found(
                    "the signer has no signing password or failed attempts",
                )
                .with_field("subject"));
            }
            for study in self.signer_studies(&p.org, subject)? {
                authorize(p, Permission::KeysManage, &p.org, Some(&study))?;
            }
            if self.created_by_chain(&p.subject)?.iter().any(|c| c == subject) {
                return Err(self_reset(
                    "the signer created the API key this reset comes from: another administrator must reset it",
                ));
            }
            store.reset(&p.org, subject, &p.subject, call.at)?;
            Ok(Done {
                target: format!("signer:{subject}"),
                details: json!({"org": p.org, "password_reset_required": true}),
                value: (),
            })
        })
    }

    /// The studies of a signer, for the scope of a reset: its API key's, else those recorded with its credential,
    /// else every study.
    fn signer_studies(&self, org: &str, subject: &str) -> Result<Vec<String>> {
        if let Some(key_id) = subject.strip_prefix("apikey:") {
            if let Some(rec) = self.inner.store.get_key(key_id)?.filter(|r| r.org == org) {
                return Ok(rec.studies);
            }
        }
        Ok(self
            .inner
            .signing
            .store()
            .recorded_studies(org, subject)?
            .unwrap_or_else(|| vec!["*".to_string()]))
    }

    /// Who created the API key of `subject`, who created theirs, and so on (at most [`MAX_KEY_CHAIN`] links;
    /// empty for a subject that is no API key).
    fn created_by_chain(&self, subject: &str) -> Result<Vec<String>> {
        let mut chain = Vec::new();
        let mut next = subject.to_string();
        while chain.len() < MAX_KEY_CHAIN {
            let Some(key_id) = next.strip_prefix("apikey:") else {
                break;
            };
            let Some(rec) = self.inner.store.get_key(key_id)? else {
                break;
            };
            if chain.contains(&rec.created_by) {
                break;
            }
            chain.push(rec.created_by.clone());
            next = rec.created_by;
        }
        Ok(chain)
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
