//! 21 CFR Part 11 electronic signatures (§11.50, §11.70, §11.200): who signed, when and meaning what, bound to
//! the manifest of an export by the engine's Ed25519 key.
//!
//! # Signing an export
//!
//! An export request may carry a [`SignatureRequest`]: a [`Meaning`] (`review`, `approval`, `responsibility`,
//! `authorship`) and the signer's password, the second component after the credential (§11.200(a)(1)). Two kinds of
//! export require one, and fail with EXP003 `signature_required` without it: a bulk export with `package = "ectd"`
//! (a regulatory submission) and any export with `identifiable = true` (data leaving without de-identification).
//!
//! The engine checks the password when the request arrives, before a job exists; the signer is always the
//! authenticated principal: a request cannot name another signer (the request has no such field), so no role,
//! `admin` included, can sign as someone else (§11.200(a)(2)-(3)). A wrong password is EXP003 `signature_invalid`
//! and counts as a failed attempt; after [`SigningSettings::max_failed_attempts`] (default 5) consecutive failures
//! signing is locked for that signer (EXP003 `signing_locked`) until an administrator resets it, and a security
//! event `security.signing_locked` is written to the audit trail before the call returns (§11.300(d)). A signer
//! without a password gets EXP003 `signing_not_enrolled`.
//!
//! Each attempt's change of the signer's credential ([`crate::signer::SignerCredential`]) commits with its audit
//! events (write-ahead, see [`crate::store`]): a failed attempt's count (and the lock it reaches) with the call's
//! refusal and `security.signing_locked`; a verified attempt's (failed attempts back to 0, the studies the signer
//! holds now) with the change the signature enables (the job of a signed export, a new password). The password is
//! checked outside the store's transactions (PBKDF2 is slow by design); when the credential changed meanwhile (a
//! new password, a lock, a reset), the attempt is checked again against the new one, so no failure is counted for
//! a password that is gone. The password is never serialized: the stored job, its
//! manifest and the audit trail keep the meaning only.
//!
//! # Credential controls (§11.100, §11.300)
//!
//! - A password follows [`check_password_policy`]: 12 characters or more, not a common password, not containing
//!   the signer's id or printed name (NIST SP 800-63B §5.1.1.2).
//! - Nobody resets their own signing credential, and a reset needs the collaboration of a second person
//!   (§11.200(a)(3)): [`crate::engine::Session::reset_signing`] refuses the signer themselves, and anyone holding a
//!   key the signer created; the resetter needs what revoking the signer's API key needs (`keys:manage` in the
//!   same organization and every study of the signer).
//! - A reset removes the password and marks the credential: signing is refused with EXP003
//!   `password_reset_required` until the signer sets a new password (no current password is asked then). With a
//!   host's [`SignatureVerifier`], whose secrets live elsewhere, a reset clears the failed attempts and the lock
//!   only.
//!
//! When the job succeeds, the engine signs each manifest it writes (the job's `manifest.json`, and the one inside
//! a zip package) and appends a [`SignatureRecord`] to its `signatures`; the same records go to the audit trail
//! (`job.signed`, with the signer as actor).
//!
//! # What is signed
//!
//! - `manifest_sha256`: the SHA-256 (hex) of the canonical JSON ([`crate::audit::canonical_json`], the JSON
//!   Canonicalization Scheme of RFC 8785: keys sorted, no white space) of the manifest without its `signatures`
//!   member. The manifest holds the job id, the request,
//!   the principal and every file's SHA-256, so the hash covers every byte of every artifact.
//! - the signature: Ed25519 over `trialport.esignature.v1\n` followed by the canonical JSON of the record
//!   without its `signature` member (signer id, printed name, organization, meaning, time, job id, manifest
//!   hash, algorithm, key id and public key).
//!
//! A record copied onto another manifest fails (its `manifest_sha256` is not that manifest's), as does any
//! change to a record field, to the manifest, or to an artifact byte (the file no longer matches the manifest).
//!
//! # Trust
//!
//! Each record carries the public key that verifies it. Checked against that key alone, a package proves its
//! integrity (nothing changed since it was signed) but not its origin: whoever rewrites a package can sign it
//! again with a key of their own. Origin needs the engine's public key obtained out of band (from the engine's
//! operator: `trialport signing public-key`, `openssl pkey -in signing.key -pubout`) and given to
//! [`verify_signatures`] (`trialport verify PACKAGE --public-key FILE`): then a record signed by any other key
//! fails. The audit trail keeps every record as a second, hash-chained copy.

mod base64;
mod key;
mod verifier;

pub use key::{PublicKey, SigningKey, PUBLIC_KEY_LEN};
pub use verifier::{
    check_password_policy, is_common_password, SignatureVerifier, SigningSettings,
    DEFAULT_MAX_FAILED_ATTEMPTS, DEFAULT_PBKDF2_ITERATIONS, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS,
    MIN_PBKDF2_ITERATIONS,
};

use crate::access::Principal;
use crate::audit::canonical_json;
use crate::codec::hex;
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::signer::SignerCredential;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;
use zeroize::Zeroizing;

/// The algorithm of every signature record.
pub const SIGNATURE_ALGORITHM: &str = "Ed25519";

/// What the signed bytes start with (domain separation: these signatures cannot be replayed as anything else).
pub const SIGNED_PAYLOAD_PREFIX: &[u8] = b"trialport.esignature.v1\n";

/// The meaning of a signature (§11.50(a)(3)): a closed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Meaning {
    /// The signer reviewed the export.
    Review,
    /// The signer approves it.
    Approval,
    /// The signer takes responsibility for it.
    Responsibility,
    /// The signer is its author.
    Authorship,
}

impl Meaning {
    /// All meanings.
    pub const ALL: [Meaning; 4] = [
        Meaning::Review,
        Meaning::Approval,
        Meaning::Responsibility,
        Meaning::Authorship,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Meaning::Review => "review",
            Meaning::Approval => "approval",
            Meaning::Responsibility => "responsibility",
            Meaning::Authorship => "authorship",
        }
    }

    /// Parses the name (ASCII case-insensitive).
    ///
    /// # Errors
    /// EXP002 `invalid_meaning` with field `signature.meaning`.
    pub fn parse(s: &str) -> Result<Self> {
        Meaning::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::validation(
                    Reason::InvalidMeaning,
                    "a signature's meaning is review, approval, responsibility or authorship",
                )
                .with_field("signature.meaning")
            })
    }
}

impl std::fmt::Display for Meaning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signer's password as it arrives in a request: cleared from memory when dropped, `***` in `Debug`, and never
/// serialized (a request serialized for storage loses it).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SigningPassword(Zeroizing<String>);

impl SigningPassword {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        SigningPassword(Zeroizing::new(password.into()))
    }

    /// The password.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty (absent from the request).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SigningPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for SigningPassword {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(SigningPassword::new)
    }
}

/// An e-signature asked for in an export request: `{"meaning": "approval", "password": "..."}`. The signer is
/// the caller; there is no field to name anyone else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRequest {
    /// What the signature means.
    pub meaning: Meaning,
    /// The signer's password (re-authentication). Never serialized: a stored request keeps the meaning only.
    #[serde(default, skip_serializing)]
    pub password: SigningPassword,
}

impl SignatureRequest {
    /// A request to sign with `meaning`, re-authenticating with `password`.
    pub fn new(meaning: Meaning, password: impl Into<String>) -> Self {
        SignatureRequest {
            meaning,
            password: SigningPassword::new(password),
        }
    }
}

/// One e-signature bound to a manifest (in its `signatures` list and in the audit trail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRecord {
    /// The signer's subject id.
    pub signer_id: String,
    /// The signer's printed name (§11.50(a)(1)).
    pub printed_name: String,
    /// The signer's organization.
    pub org: String,
    /// The meaning (§11.50(a)(3)).
    pub meaning: Meaning,
    /// When the signer re-authenticated: the time of the request, from the engine clock, UTC (§11.50(a)(2)).
    pub signed_at: DateTime<Utc>,
    /// The job whose manifest is signed.
    pub job_id: Uuid,
    /// SHA-256 (hex) of the manifest's canonical JSON without `signatures`.
    pub manifest_sha256: String,
    /// `Ed25519`.
    pub algorithm: String,
    /// The id of the engine key that signed ([`PublicKey::id`]).
    pub key_id: String,
    /// That key's public key, standard base64.
    pub public_key: String,
    /// The Ed25519 signature of the record's payload (see the module documentation), standard base64.
    pub signature: String,
}

/// SHA-256 (hex) of a manifest's canonical JSON without its `signatures` member: what a signature binds to.
pub fn manifest_sha256(manifest: &Value) -> String {
    let mut unsigned = manifest.clone();
    if let Some(o) = unsigned.as_object_mut() {
        o.remove("signatures");
    }
    hex(ring::digest::digest(&ring::digest::SHA256, canonical_json(&unsigned).as_bytes()).as_ref())
}

/// The bytes a record's signature covers: [`SIGNED_PAYLOAD_PREFIX`] and the canonical JSON of the record
/// without `signature`.
pub fn signed_payload(record: &Value) -> Vec<u8> {
    let mut unsigned = record.clone();
    if let Some(o) = unsigned.as_object_mut() {
        o.remove("signature");
    }
    let mut out = SIGNED_PAYLOAD_PREFIX.to_vec();
    out.extend_from_slice(canonical_json(&unsigned).as_bytes());
    out
}

/// Who signs, as the job records its requester.
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    /// Subject id.
    pub subject: &'a str,
    /// Printed name.
    pub name: &'a str,
    /// Organization.
    pub org: &'a str,
}

impl SigningKey {
    /// Signs `manifest` (its JSON; any `signatures` member is left out of the hash) for `signer`.
    pub fn sign_manifest(
        &self,
        manifest: &Value,
        job_id: Uuid,
        signer: Signer<'_>,
        meaning: Meaning,
        signed_at: DateTime<Utc>,
    ) -> SignatureRecord {
        let public = self.public_key();
        let mut record = SignatureRecord {
            signer_id: signer.subject.to_string(),
            printed_name: signer.name.to_string(),
            org: signer.org.to_string(),
            meaning,
            signed_at,
            job_id,
            manifest_sha256: manifest_sha256(manifest),
            algorithm: SIGNATURE_ALGORITHM.to_string(),
            key_id: public.id(),
            public_key: public.to_base64(),
            signature: String::new(),
        };
        let payload = signed_payload(&serde_json::to_value(&record).unwrap_or(Value::Null));
        record.signature = base64::encode(&self.sign(&payload));
        record
    }
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedSignature {
    /// The signer's subject id.
    pub signer_id: String,
    /// The signer's printed name.
    pub printed_name: String,
    /// The signer's organization.
    pub org: String,
    /// The meaning.
    pub meaning: Meaning,
    /// When it was signed (UTC).
    pub signed_at: DateTime<Utc>,
    /// The id of the key that signed.
    pub key_id: String,
    /// Whether the key is the one given as trusted (origin proven), not only the one the record carries.
    pub key_trusted: bool,
}

fn bad_signature(index: usize, problem: &str, message: &str) -> Error {
    Error::server(Reason::IntegrityViolation, message.to_string())
        .with_detail("path", "manifest.json")
        .with_detail("signature", index)
        .with_detail("problem", problem)
}

/// Verifies every signature of a manifest (its parsed JSON): each record's hash is this manifest's, its key id
/// names its public key (and, when `trusted` is given, that key is `trusted`), and its Ed25519 signature holds.
/// A manifest whose request asked for a signature but that carries none fails too (a signature cut out).
///
/// # Errors
/// EXP005 `integrity_violation` with details `signature` (the record's index) and `problem`:
/// `malformed_signature`, `manifest_mismatch` (copied from another manifest, or the manifest changed),
/// `job_mismatch`, `key_mismatch`, `untrusted_key`, `bad_signature` or `signature_missing`.
pub fn verify_signatures(
    manifest: &Value,
    trusted: Option<&PublicKey>,
) -> Result<Vec<VerifiedSignature>> {
    let records = match manifest.get("signatures") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => {
            return Err(bad_signature(
                0,
                "malformed_signature",
                "the manifest's signatures are not a list",
            ))
        }
    };
    let asked = manifest
        .get("request")
        .and_then(|r| r.get("signature"))
        .is_some_and(|s| !s.is_null());
    if asked && records.is_empty() {
        return Err(bad_signature(
            0,
            "signature_missing",
            "the manifest's request was signed but the manifest carries no signature",
        ));
    }
    let hash = manifest_sha256(manifest);
    let job_id = manifest.get("job_id").and_then(Value::as_str);
    let mut out = Vec::with_capacity(records.len());
    for (i, raw) in records.iter().enumerate() {
        let record: SignatureRecord = serde_json::from_value(raw.clone()).map_err(|_| {
            bad_signature(
                i,
                "malformed_signature",
                "a signature record cannot be read",
            )
        })?;
        if record.manifest_sha256 != hash {
            return Err(bad_signature(
                i,
                "manifest_mismatch",
                "a signature does not belong to this manifest: it was copied from another, or the manifest changed",
            ));
        }
        if job_id != Some(record.job_id.to_string().as_str()) {
            return Err(bad_signature(
                i,
                "job_mismatch",
                "a signature names another job than its manifest",
            ));
        }
        let embedded = PublicKey::parse(&record.public_key).map_err(|_| {
            bad_signature(
                i,
                "malformed_signature",
                "a signature's public key cannot be read",
            )
        })?;
        if record.algorithm != SIGNATURE_ALGORITHM || embedded.id() != record.key_id {
            return Err(bad_signature(
                i,
                "key_mismatch",
                "a signature's key id does not name its public key",
            ));
        }
        if trusted.is_some_and(|t| *t != embedded) {
            return Err(bad_signature(
                i,
                "untrusted_key",
                "a signature was made by another key than the trusted one",
            ));
        }
        let signature = base64::decode(&record.signature)
            .ok_or_else(|| bad_signature(i, "malformed_signature", "a signature cannot be read"))?;
        if !embedded.verify(&signed_payload(raw), &signature) {
            return Err(bad_signature(
                i,
                "bad_signature",
                "a signature does not verify: its record was changed",
            ));
        }
        out.push(VerifiedSignature {
            signer_id: record.signer_id,
            printed_name: record.printed_name,
            org: record.org,
            meaning: record.meaning,
            signed_at: record.signed_at,
            key_id: record.key_id,
            key_trusted: trusted.is_some(),
        });
    }
    Ok(out)
}

/// The meaning a stored request asked to sign with, if any (the request as a job keeps it).
pub fn requested_meaning(request: &Value) -> Option<Meaning> {
    request
        .get("signature")
        .and_then(|s| s.get("meaning"))
        .and_then(|m| serde_json::from_value(m.clone()).ok())
}

/// The outcome of re-authenticating a signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reauth {
    /// The password is right.
    Verified,
    /// Wrong; this many attempts are left before signing locks.
    Rejected {
        /// Attempts left.
        attempts_left: u32,
    },
    /// Wrong, and this attempt locked signing (the engine emits the security event).
    LockedNow {
        /// Consecutive failures.
        failures: u32,
    },
    /// Signing was already locked; the password was not checked.
    Locked,
    /// An administrator reset the credential; the signer must set a new password first (not checked).
    ResetRequired,
    /// The signer has no password.
    NotEnrolled,
}

impl Reauth {
    /// `Ok` for [`Reauth::Verified`], else the EXP003 error of the outcome.
    ///
    /// # Errors
    /// EXP003 `signature_invalid` (with `details.attempts_left`), `signing_locked`, `password_reset_required` or
    /// `signing_not_enrolled`.
    pub fn into_result(self) -> Result<()> {
        match self {
            Reauth::Verified => Ok(()),
            Reauth::Rejected { attempts_left } => Err(Error::unauthorized(
                Reason::SignatureInvalid,
                "the signature's password is wrong",
            )
            .with_field("signature.password")
            .with_detail("attempts_left", attempts_left)),
            Reauth::LockedNow { failures } => {
                Err(verifier::locked().with_detail("failures", failures))
            }
            Reauth::Locked => Err(verifier::locked()),
            Reauth::ResetRequired => Err(verifier::reset_required()),
            Reauth::NotEnrolled => Err(Error::unauthorized(
                Reason::SigningNotEnrolled,
                "the signer has no signing password: set one first ('trialport signing set-password')",
            )),
        }
    }
}

/// The engine's signing parts: its key, the settings of built-in passwords, and a host's verifier of second
/// components if it has one. The credentials themselves are records of the engine's store
/// ([`crate::signer::SignerCredential`]); the methods here decide what an attempt means for one.
pub struct Signing {
    key: SigningKey,
    settings: SigningSettings,
    /// The host's verifier; `None`: the built-in passwords.
    host: Option<Arc<dyn SignatureVerifier>>,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("key", &self.key)
            .field("settings", &self.settings)
            .field("host_verifier", &self.host.is_some())
            .finish()
    }
}

impl Signing {
    /// Signing with `key`, checking passwords with `verifier` (default: the built-in passwords, hashed with
    /// `settings`), counting attempts in the signers' credentials with `settings.max_failed_attempts`.
    pub fn new(
        key: SigningKey,
        settings: SigningSettings,
        verifier: Option<Arc<dyn SignatureVerifier>>,
    ) -> Self {
        Signing {
            key,
            settings,
            host: verifier,
        }
    }

    /// The engine's key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The settings of passwords and attempts.
    pub fn settings(&self) -> SigningSettings {
        self.settings
    }

    /// The host's verifier, when second components are checked elsewhere.
    pub fn host_verifier(&self) -> Option<&dyn SignatureVerifier> {
        self.host.as_deref()
    }

    /// Whether an administrator's reset of `credential` still stands between the signer and signing: the
    /// credential was reset and the built-in passwords, not a host's verifier, hold the password.
    pub fn reset_pending(&self, credential: Option<&SignerCredential>) -> bool {
        self.host.is_none() && credential.is_some_and(|c| c.reset_at.is_some())
    }

    /// Whether `signer` (whose credential is `credential`) has a second component.
    ///
    /// # Errors
    /// The host verifier's errors.
    pub fn enrolled(
        &self,
        signer: &Principal,
        credential: Option<&SignerCredential>,
    ) -> Result<bool> {
        match &self.host {
            Some(host) => host.enrolled(signer),
            None => Ok(credential.is_some_and(|c| c.password.is_some())),
        }
    }

    /// What is refused before any password is checked: a locked signer, a reset credential, a signer without a
    /// second component.
    ///
    /// # Errors
    /// EXP003 `signing_locked`, `password_reset_required` or `signing_not_enrolled`; the host verifier's errors.
    pub fn precheck(
        &self,
        signer: &Principal,
        credential: Option<&SignerCredential>,
    ) -> Result<()> {
        if credential.is_some_and(|c| c.locked_at.is_some()) {
            return Reauth::Locked.into_result();
        }
        if self.reset_pending(credential) {
            return Reauth::ResetRequired.into_result();
        }
        if !self.enrolled(signer, credential)? {
            return Reauth::NotEnrolled.into_result();
        }
        Ok(())
    }

    /// Whether `password` is `signer`'s second component: the host's verifier decides, else the hash in
    /// `credential` (slow by design: call it outside any store transaction). Counts nothing.
    ///
    /// # Errors
    /// EXP005 when the verifier fails or the stored hash cannot be used.
    pub fn verify(
        &self,
        signer: &Principal,
        credential: Option<&SignerCredential>,
        password: &str,
    ) -> Result<bool> {
        match &self.host {
            Some(host) => host.verify(signer, password),
            None => match credential.and_then(|c| c.password.as_ref()) {
                Some(hash) => hash.verify(password),
                None => Ok(false),
            },
        }
    }

    /// The credential of `signer` after a failed attempt at `now` (one more failure, locked when the count reaches
    /// the maximum, the signer's studies recorded), and the attempt's outcome: [`Reauth::Rejected`] or
    /// [`Reauth::LockedNow`] (or [`Reauth::Locked`] for a credential already locked, which is not changed).
    pub fn count_failure(
        &self,
        signer: &Principal,
        credential: Option<&SignerCredential>,
        now: DateTime<Utc>,
    ) -> (SignerCredential, Reauth) {
        let mut next = credential
            .cloned()
            .unwrap_or_else(|| SignerCredential::new(&signer.org, &signer.subject, now));
        if next.locked_at.is_some() {
            return (next, Reauth::Locked);
        }
        next.failures = next.failures.saturating_add(1);
        next.studies = Some(signer.studies.clone());
        next.updated_at = now;
        let max = self.settings.max_failed_attempts;
        if next.failures >= max {
            next.locked_at = Some(now);
            let failures = next.failures;
            return (next, Reauth::LockedNow { failures });
        }
        let attempts_left = max - next.failures;
        (next, Reauth::Rejected { attempts_left })
    }

    /// The credential after a verified attempt at `now` by a signer holding `studies`: failed attempts back to 0
    /// and the studies recorded; `None` when that changes nothing (or there is no credential to change).
    pub fn after_success(
        &self,
        credential: Option<&SignerCredential>,
        studies: &[String],
        now: DateTime<Utc>,
    ) -> Option<SignerCredential> {
        let c = credential?;
        if c.failures == 0 && c.studies.as_deref() == Some(studies) {
            return None;
        }
        Some(SignerCredential {
            failures: 0,
            studies: Some(studies.to_vec()),
            updated_at: now,
            ..c.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn manifest(job: Uuid) -> Value {
        json!({"manifest_version": 1, "job_id": job.to_string(), "request": {"study": "S1",
            "signature": {"meaning": "approval"}},
            "files": [{"path": "dm.csv", "sha256": "ab", "bytes": 2}], "signatures": []})
    }

    fn signed(key: &SigningKey, m: &Value, job: Uuid) -> Value {
        let rec = key.sign_manifest(
            m,
            job,
            Signer {
                subject: "ada",
                name: "Ada Lovelace",
                org: "acme",
            },
            Meaning::Approval,
            chrono::DateTime::parse_from_rfc3339("2025-01-21T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        );
        let mut m = m.clone();
        m["signatures"] = json!([rec]);
        m
    }

    #[test]
    fn signed_manifests_verify_and_every_change_fails() {
        let key = SigningKey::generate().unwrap();
        let job = Uuid::now_v7();
        let m = signed(&key, &manifest(job), job);
        let ok = verify_signatures(&m, None).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(
            (
                ok[0].printed_name.as_str(),
                ok[0].meaning,
                ok[0].key_trusted
            ),
            ("Ada Lovelace", Meaning::Approval, false)
        );
        assert!(verify_signatures(&m, Some(key.public_key())).unwrap()[0].key_trusted);
        let problem = |m: &Value, trusted: Option<&PublicKey>| {
            let e = verify_signatures(m, trusted).unwrap_err();
            assert_eq!(e.reason(), "integrity_violation");
            e.details()["problem"].as_str().unwrap().to_string()
        };
        let other = SigningKey::generate().unwrap();
        assert_eq!(problem(&m, Some(other.public_key())), "untrusted_key");
        let mut changed = m.clone();
        changed["files"][0]["sha256"] = json!("ac");
        assert_eq!(problem(&changed, None), "manifest_mismatch");
        for (field, value) in [
            ("printed_name", json!("Eve")),
            ("meaning", json!("review")),
            ("signed_at", json!("2025-01-21T10:00:01Z")),
            ("org", json!("evil")),
        ] {
            let mut forged = m.clone();
            forged["signatures"][0][field] = value;
            assert_eq!(problem(&forged, None), "bad_signature", "{field}");
        }
        // Re-signed by another key: verifies alone, fails against the trusted key.
        let resigned = signed(&other, &manifest(job), job);
        assert!(verify_signatures(&resigned, None).is_ok());
        assert_eq!(problem(&resigned, Some(key.public_key())), "untrusted_key");
        let mut swapped = m.clone();
        swapped["signatures"][0]["public_key"] = json!(other.public_key().to_base64());
        assert_eq!(problem(&swapped, None), "key_mismatch");
        let mut cut = m.clone();
        cut["signatures"] = json!([]);
        assert_eq!(problem(&cut, None), "signature_missing");
        let mut extra = m.clone();
        extra["signatures"][0]["note"] = json!("x");
        assert_eq!(problem(&extra, None), "malformed_signature");
    }

    #[test]
    fn a_record_copied_onto_another_manifest_fails() {
        let key = SigningKey::generate().unwrap();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let signed_a = signed(&key, &manifest(a), a);
        let mut m_b = manifest(b);
        m_b["signatures"] = signed_a["signatures"].clone();
        let e = verify_signatures(&m_b, None).unwrap_err();
        assert_eq!(e.details()["problem"], "manifest_mismatch");
    }

    #[test]
    fn passwords_never_serialize_or_print() {
        let r: SignatureRequest =
            crate::request::from_json(r#"{"meaning": "approval", "password": "hunter2hunter2"}"#)
                .unwrap();
        assert_eq!(r.password.expose(), "hunter2hunter2");
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"meaning":"approval"}"#);
        assert!(!format!("{r:?}").contains("hunter2"));
        let e = crate::request::from_json::<SignatureRequest>(
            r#"{"meaning": "approval", "password": "x", "signer": "bob"}"#,
        )
        .unwrap_err();
        assert_eq!(e.reason(), "invalid_request");
        let e =
            crate::request::from_json::<SignatureRequest>(r#"{"meaning": "witness"}"#).unwrap_err();
        assert_eq!(e.reason(), "invalid_request");
        assert_eq!(Meaning::parse("Approval").unwrap(), Meaning::Approval);
        assert_eq!(
            Meaning::parse("witness").unwrap_err().reason(),
            "invalid_meaning"
        );
    }
}
