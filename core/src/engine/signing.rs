//! E-signatures in the engine (see [`crate::signature`]): the builder's signing parts, checking a request's
//! signature before its job exists, signing manifests when the job succeeds, and the signing operations.
//!
//! Every change of a signer's credential ([`crate::signer::SignerCredential`], a record of the engine's store)
//! commits in one transaction with the audit events that report it: a new password with `set_signing_password`, a
//! reset with `reset_signing`, a failed attempt's count (and lock) with the call's refusal and
//! `security.signing_locked`, a verified attempt's change with the change it enables (the job of a signed export,
//! a new password). Passwords are hashed and checked before the transaction (PBKDF2 must not hold the store's
//! write lock), against a snapshot of the credential that the transaction reads again.

use super::attempt::{Running, Stop};
use super::call::{Call, Done};
use super::{Engine, EngineBuilder, Inner, Session};
use crate::access::{authorize, Permission};
use crate::audit::{Actor, AuditRecord, AuditScope, Outcome};
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::manifest::{Manifest, ManifestEntry, ManifestPrincipal, MANIFEST_VERSION};
use crate::signature::{
    check_password_policy, requested_meaning, PublicKey, Reauth, SignatureRecord, SignatureRequest,
    SignatureVerifier, Signer, Signing, SigningKey, SigningSettings,
};
use crate::signer::{PasswordHash, SignerCredential};
use crate::store::Tx;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::Arc;

/// The most links followed from a key to the key that created it, and so on, when a reset checks that the signer
/// did not create the resetter's key (chains are short: each link is an administrator creating a key).
const MAX_KEY_CHAIN: usize = 64;

/// How many times an attempt is checked again when the signer's credential changed while its password was being
/// checked (a new password, a lock, a reset) before the call gives up with EXP004 `signer_changed`.
const MAX_RECHECKS: usize = 4;

/// EXP004 `signer_changed`: the credential changed between the check of the password and the commit.
fn signer_changed() -> Error {
    Error::conflict(
        Reason::SignerChanged,
        "the signer's signing credential changed while the request was checked: try again",
    )
}

/// EXP003 `self_reset`.
fn self_reset(message: &str) -> Error {
    Error::unauthorized(Reason::SelfReset, message).with_field("subject")
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

    /// Hashes signing passwords and locks signers as `settings` say (default: [`SigningSettings::default`]; the
    /// home's `config.json` `signing` with [`EngineBuilder::home`]). Signers' credentials are records of the
    /// engine's store (see [`crate::signer`]). Settings out of bounds make [`EngineBuilder::build`] fail with
    /// EXP002 `invalid_signing_settings`.
    pub fn signing_settings(mut self, settings: SigningSettings) -> Self {
        self.signing_settings = Some(settings);
        self
    }

    /// Checks signers' second components with `verifier` instead of the built-in passwords (the engine still
    /// counts failed attempts and locks, in the signers' credentials).
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
        let settings = self.signing_settings.take().unwrap_or_default();
        settings.check()?;
        Ok(Signing::new(key, settings, self.signature_verifier.take()))
    }
}

/// A verified re-authentication whose change of the signer's credential (failed attempts back to 0, the studies the
/// signer holds now) is not committed yet: it commits with the change the signature enables
/// ([`Reauthenticated::commit`]).
pub(super) struct Reauthenticated {
    org: String,
    subject: String,
    studies: Vec<String>,
    at: DateTime<Utc>,
    /// The credential the password verified against.
    seen: Option<SignerCredential>,
}

impl Reauthenticated {
    /// In `tx`, the transaction of the change the signature enables: checks that the signer's credential is still
    /// the one the password verified against, and writes what the verified attempt changes.
    ///
    /// # Errors
    /// EXP004 `signer_changed` when the credential's password, lock or reset changed meanwhile (the request may
    /// be made again); the store's errors.
    pub(super) fn commit(&self, inner: &Inner, tx: &mut dyn Tx) -> Result<()> {
        let current = tx.signer(&self.org, &self.subject)?;
        if !SignerCredential::same_credential(self.seen.as_ref(), current.as_ref()) {
            return Err(signer_changed());
        }
        if let Some(next) = inner
            .signing
            .after_success(current.as_ref(), &self.studies, self.at)
        {
            crate::failpoint::hit("signing.commit.before");
            tx.put_signer(&next)?;
        }
        Ok(())
    }
}

/// Checks an export request's e-signature before its job exists: required for `critical` requests
/// (EXP003 `signature_required`), re-authenticated with the signer's password. Returns what the operation's
/// audit event records of it (never the password), and the verified attempt, to commit with the job
/// ([`Reauthenticated::commit`]).
pub(super) fn check_signature(
    inner: &Inner,
    call: &Call<'_>,
    signature: Option<&SignatureRequest>,
    critical: Option<Critical>,
) -> Result<Option<(Value, Reauthenticated)>> {
    let Some(sig) = signature else {
        return match critical {
            Some(c) => Err(Error::unauthorized(
                Reason::SignatureRequired,
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
            Reason::SignatureRequired,
            "an electronic signature needs the signer's password",
        )
        .with_field("signature.password"));
    }
    let verified = reauthenticate(inner, call, sig.password.expose())?;
    let mut recorded = json!({"meaning": sig.meaning, "signer": call.principal().subject});
    if let Some(c) = critical {
        recorded["required_for"] = json!(c.as_str());
    }
    Ok(Some((recorded, verified)))
}

/// Re-authenticates the caller as a signer. The password is checked against a snapshot of the credential, outside
/// any transaction; a wrong one is counted in a transaction that reads the credential again and commits the count
/// (and the lock it reaches) with the call's refusal event and, for the attempt that locks, the security event
/// `security.signing_locked`, before the call returns. When the credential changed meanwhile (a new password, a
/// lock, a reset), the attempt is checked again against the new one. A verified attempt is returned uncommitted.
///
/// # Errors
/// EXP003 `signature_invalid` (with `details.attempts_left`), `signing_locked`, `password_reset_required` or
/// `signing_not_enrolled`; EXP004 `signer_changed` when the credential kept changing; EXP005.
fn reauthenticate(inner: &Inner, call: &Call<'_>, password: &str) -> Result<Reauthenticated> {
    let p = call.principal();
    let signing = &inner.signing;
    for _ in 0..MAX_RECHECKS {
        let seen = inner.store.get_signer(&p.org, &p.subject)?;
        signing.precheck(p, seen.as_ref())?;
        if signing.verify(p, seen.as_ref(), password)? {
            return Ok(Reauthenticated {
                org: p.org.clone(),
                subject: p.subject.clone(),
                studies: p.studies.clone(),
                at: call.at,
                seen,
            });
        }
        let attempt = inner.write(|tx| {
            let current = tx.signer(&p.org, &p.subject)?;
            if !SignerCredential::same_credential(seen.as_ref(), current.as_ref()) {
                // Checked against a password, lock or reset that is gone: check again.
                return Ok(None);
            }
            let (next, outcome) = signing.count_failure(p, current.as_ref(), call.at);
            let Err(refusal) = outcome.into_result() else {
                return Err(Error::server(
                    Reason::Internal,
                    "a failed attempt was not refused",
                ));
            };
            crate::failpoint::hit("signing.commit.before");
            tx.put_signer(&next)?;
            if let Reauth::LockedNow { failures } = outcome {
                inner.record(
                    tx,
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
            call.record_refusal(tx, &refusal)?;
            Ok(Some(refusal))
        });
        match attempt {
            Ok(Some(refusal)) => {
                crate::failpoint::hit("signing.commit.after");
                return Err(refusal);
            }
            Ok(None) => {}
            Err(e) => {
                call.rolled_back();
                return Err(e);
            }
        }
    }
    Err(signer_changed())
}

impl Session<'_> {
    /// Sets the caller's signing password (the built-in passwords'). Changing a password needs the current one,
    /// checked like a signature (a wrong one counts as a failed attempt); after an administrator's reset
    /// ([`Session::reset_signing`]) there is none, and setting one lifts the reset. The password must follow
    /// [`crate::signature::check_password_policy`]: 12 characters to 1,024 bytes, no control character, not a
    /// common password, not containing the caller's id or printed name. The new credential commits with the call's
    /// audit event. With a host's verifier the host sets the secret ([`SignatureVerifier::set_secret`]).
    ///
    /// # Errors
    /// EXP003 `current_password_required`, `signature_invalid` or `signing_locked`; EXP002 `weak_password`, or
    /// `unsupported` when the engine's verifier takes no passwords; EXP004 `signer_changed` when the credential
    /// changed meanwhile; EXP005.
    pub fn set_signing_password(&self, password: &str, current: Option<&str>) -> Result<()> {
        self.call("set_signing_password", "signer".to_string(), |call| {
            let p = call.principal();
            let inner = self.inner;
            let signing = &inner.signing;
            let seen = inner.store.get_signer(&p.org, &p.subject)?;
            if seen.as_ref().is_some_and(|c| c.locked_at.is_some()) {
                Reauth::Locked.into_result()?;
            }
            // After an administrator's reset the old password is gone: the signer sets a new one without it.
            let enrolled =
                !signing.reset_pending(seen.as_ref()) && signing.enrolled(p, seen.as_ref())?;
            let verified = if enrolled {
                let current = current.filter(|c| !c.is_empty()).ok_or_else(|| {
                    Error::unauthorized(
                        Reason::CurrentPasswordRequired,
                        "changing the signing password needs the current one",
                    )
                    .with_field("current_password")
                })?;
                Some(reauthenticate(inner, call, current)?)
            } else {
                None
            };
            let target = format!("signer:{}", p.subject);
            let details = json!({
                "changed": enrolled,
                "after_reset": seen.as_ref().is_some_and(|c| c.reset_at.is_some())
            });
            if let Some(host) = signing.host_verifier() {
                // The host keeps the secret; what the verified attempt changes commits with the event.
                host.set_secret(p, password, call.at)?;
                inner.write(|tx| {
                    if let Some(v) = &verified {
                        v.commit(inner, tx)?;
                    }
                    call.record_success(tx, &target, &details)
                })?;
            } else {
                check_password_policy(password, p)?;
                let hash = PasswordHash::derive(password, signing.settings().pbkdf2_iterations)?;
                let expected = match &verified {
                    Some(v) => v.seen.clone(),
                    None => seen.clone(),
                };
                inner.write(|tx| {
                    let current = tx.signer(&p.org, &p.subject)?;
                    if current.as_ref().is_some_and(|c| c.locked_at.is_some()) {
                        Reauth::Locked.into_result()?;
                    }
                    if !SignerCredential::same_credential(expected.as_ref(), current.as_ref()) {
                        return Err(signer_changed());
                    }
                    let mut next = current
                        .unwrap_or_else(|| SignerCredential::new(&p.org, &p.subject, call.at));
                    next.password = Some(hash.clone());
                    next.failures = 0;
                    next.reset_at = None;
                    next.reset_by = None;
                    next.studies = Some(p.studies.clone());
                    next.updated_at = call.at;
                    crate::failpoint::hit("signing.commit.before");
                    tx.put_signer(&next)?;
                    call.record_success(tx, &target, &details)
                })?;
                crate::failpoint::hit("signing.commit.after");
            }
            Ok(Done {
                target,
                details,
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
    /// The checks, the change and its audit event are one transaction.
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
            let target = format!("signer:{subject}");
            let details = json!({"org": p.org, "password_reset_required": true});
            self.inner.write(|tx| {
                let current = tx
                    .signer(&p.org, subject)?
                    .filter(SignerCredential::resettable)
                    .ok_or_else(|| {
                        Error::not_found("the signer has no signing password or failed attempts")
                            .with_field("subject")
                    })?;
                for study in signer_studies(tx, &p.org, &current)? {
                    authorize(p, Permission::KeysManage, &p.org, Some(&study))?;
                }
                if created_by_chain(tx, &p.subject)?.iter().any(|c| c == subject) {
                    return Err(self_reset(
                        "the signer created the API key this reset comes from: another administrator must reset it",
                    ));
                }
                let next = current.reset(&p.subject, call.at);
                crate::failpoint::hit("signing.commit.before");
                tx.put_signer(&next)?;
                call.record_success(tx, &target, &details)
            })?;
            crate::failpoint::hit("signing.commit.after");
            Ok(Done {
                target,
                details,
                value: (),
            })
        })
    }
}

/// The studies of a signer, for the scope of a reset: its API key's, else those recorded with its credential,
/// else every study.
fn signer_studies(
    tx: &mut dyn Tx,
    org: &str,
    credential: &SignerCredential,
) -> Result<Vec<String>> {
    if let Some(key_id) = credential.subject.strip_prefix("apikey:") {
        if let Some(rec) = tx.key(key_id)?.filter(|r| r.org == org) {
            return Ok(rec.studies);
        }
    }
    Ok(credential
        .studies
        .clone()
        .unwrap_or_else(|| vec!["*".to_string()]))
}

/// Who created the API key of `subject`, who created theirs, and so on (at most [`MAX_KEY_CHAIN`] links; empty
/// for a subject that is no API key).
fn created_by_chain(tx: &mut dyn Tx, subject: &str) -> Result<Vec<String>> {
    let mut chain = Vec::new();
    let mut next = subject.to_string();
    while chain.len() < MAX_KEY_CHAIN {
        let Some(key_id) = next.strip_prefix("apikey:") else {
            break;
        };
        let Some(rec) = tx.key(key_id)? else {
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
        .map_err(|_| Error::server(Reason::Internal, "cannot serialize the manifest"))?;
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
        .map_err(|_| Error::server(Reason::Internal, "cannot serialize a signature"))?;
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

/// The manifest of a job's `files`, signed when the request asked for an e-signature.
pub(super) fn manifest_of(
    run: &mut Running<'_>,
    files: Vec<ManifestEntry>,
) -> Result<Manifest, Stop> {
    let job = &run.job;
    let mut manifest = Manifest {
        manifest_version: MANIFEST_VERSION,
        engine: format!("trialport {}", super::ENGINE_VERSION),
        job_id: job.id,
        kind: job.kind.as_str().into(),
        study: job.study.clone(),
        format: job.format.clone(),
        requested_by: ManifestPrincipal {
            subject: job.requested_by.clone(),
            name: job.requested_by_name.clone(),
            org: job.org.clone(),
        },
        created_at: job.created_at,
        completed_at: run.inner.clock.now(),
        request: super::literals::open(run.inner, job)?.0,
        deidentification: run.deidentification(),
        files,
        document: run.document.clone(),
        signatures: vec![],
    };
    super::signing::sign_manifest(run, &mut manifest)?;
    Ok(manifest)
}
