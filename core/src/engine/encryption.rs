//! Operations on the encryption of artifacts at rest (the key provider is set with
//! [`super::EngineBuilder::encryption`], or by a home whose configuration turns encryption on).
//!
//! A rotation of the key-encryption key is a recorded, verifiable intent (see [`crate::crypto::PendingKey`] and
//! the states of `crypto::keys`): the provider prepares the new KEK as a pending key, the event
//! `rotate_encryption_key` (naming the new key id and a random rotation id) commits, and only then is the key made
//! current. A pending key whose process died is resolved when an engine is built and before any rotation
//! ([`resolve_rotations`]): made current when the trail holds its rotation's committed event, removed when it does
//! not.

use super::call::Done;
use super::{EngineBuilder, Session};
use crate::access::{authorize, Permission, Principal};
use crate::audit::{AuditReads, Outcome};
use crate::crypto::{KeyProvider, PendingKey};
use crate::error::Reason;
use crate::error::{Error, Result};
use serde_json::json;

/// The audit action of a rotation (the event that commits it).
const ROTATE_ACTION: &str = "rotate_encryption_key";

/// Events read at a time when looking for a rotation's event.
const TRAIL_PAGE: usize = 256;

/// Whether `trail` holds the committed event of the rotation of `pending`: a successful `rotate_encryption_key`
/// naming its rotation id and key id, after the sequence number the pending key recorded.
///
/// # Errors
/// The trail's errors.
fn rotation_committed(trail: &dyn AuditReads, pending: &dyn PendingKey) -> Result<bool> {
    let mut from = pending.after_seq().saturating_add(1);
    loop {
        let page = trail.audit_read(from, TRAIL_PAGE)?;
        if page.iter().any(|e| {
            e.action == ROTATE_ACTION
                && e.outcome == Outcome::Success
                && e.details["rotation_id"].as_str() == Some(pending.rotation_id())
                && e.details["key_id"].as_str() == Some(pending.key_id())
        }) {
            return Ok(true);
        }
        match page.last() {
            Some(last) if page.len() == TRAIL_PAGE => from = last.seq.saturating_add(1),
            _ => return Ok(false),
        }
    }
}

/// Resolves the rotations that processes left pending (they died, or gave up, between preparing the key and
/// making it current): each key whose rotation's event `trail` holds is made current, every other is removed.
/// Pending keys a live rotation holds are left alone.
///
/// # Errors
/// The key provider's and the trail's errors.
pub(super) fn resolve_rotations(trail: &dyn AuditReads, keys: &dyn KeyProvider) -> Result<()> {
    for pending in keys.stranded_rotations()? {
        if rotation_committed(trail, pending.as_ref())? {
            pending.publish()?;
        } else {
            pending.discard()?;
        }
    }
    Ok(())
}

impl EngineBuilder {
    /// The organization that owns what the whole engine shares, such as its key-encryption keys (default: none;
    /// a home's `config.json` `org` with [`EngineBuilder::home`]). Without it nobody may rotate the KEK.
    pub fn home_org(mut self, org: impl Into<String>) -> Self {
        self.home_org = Some(org.into());
        self
    }
}

/// Whether `p` may act on what the whole home shares, across organizations (its key-encryption keys): the
/// `operator`, or an admin (`keys:manage`) whose studies are `*` in the home's own organization. The one place this
/// rule lives.
///
/// # Errors
/// EXP003 `permission_denied` (scope `role`, `organization` or `study`), with `details.requires`.
pub(super) fn authorize_home_wide(p: &Principal, home_org: Option<&str>) -> Result<()> {
    let requires = |e: Error| e.with_detail("requires", "home_admin");
    // The platform's operator acts on what the whole home shares.
    if p.operates(Permission::KeysManage) {
        return Ok(());
    }
    let Some(org) = home_org else {
        return Err(requires(
            Error::unauthorized(
                Reason::PermissionDenied,
                "this engine names no home organization: nobody may act on its shared keys",
            )
            .with_detail("permission", Permission::KeysManage.as_str())
            .with_detail("scope", "organization"),
        ));
    };
    authorize(p, Permission::KeysManage, org, Some("*")).map_err(requires)
}

impl Session<'_> {
    /// Rotates the key-encryption key: new artifacts are wrapped under a new KEK, old ones keep opening under
    /// theirs. Returns the new key id. The KEK protects every organization's artifacts in the home, so only an
    /// admin of every study (`*`) of the home's own organization may rotate it ([`EngineBuilder::home_org`]; an
    /// admin of another organization, or of some studies, is refused). Audited as `rotate_encryption_key` with
    /// the new key id, the previous one and a random `rotation_id` (never key material).
    ///
    /// Write-ahead: the new key is prepared as a pending key, the event commits, then the key becomes current (see
    /// the module docs); a process stopped in between leaves a pending key that the next engine makes current, or
    /// removes when the event did not commit.
    ///
    /// # Errors
    /// EXP003 `permission_denied`; EXP002 `encryption_disabled` when the engine does not encrypt (told to a
    /// `keys:manage` holder of the caller's organization before the home-wide rule is checked),
    /// `rotation_unsupported` when its key provider rotates elsewhere; EXP004 `rotation_in_progress` while another
    /// process rotates; EXP005 for I/O (after the event committed, the key is made current when an engine next
    /// opens the home, and the error is recorded by no second event).
    pub fn rotate_encryption_key(&self) -> Result<String> {
        self.call("rotate_encryption_key", "encryption".to_string(), |call| {
            let p = call.principal();
            authorize(p, Permission::KeysManage, &p.org, None)?;
            let keys = self.inner.key_provider.as_ref().ok_or_else(|| {
                Error::validation(
                    Reason::EncryptionDisabled,
                    "this engine does not encrypt artifacts at rest",
                )
            })?;
            authorize_home_wide(p, self.inner.home_org.as_deref())?;
            resolve_rotations(&*self.inner.store, keys.as_ref())?;
            let previous = keys.current_key_id().ok();
            let head = self.inner.store.audit_last()?.map_or(0, |(seq, _)| seq);
            let pending = keys.prepare_rotation(head)?;
            crate::failpoint::hit("kek.pending.after");
            let id = pending.key_id().to_string();
            let target = format!("kek:{id}");
            let details = json!({"key_id": id, "previous_key_id": previous,
                "rotation_id": pending.rotation_id()});
            if let Err(e) = self
                .inner
                .write(|tx| call.record_success(tx, &target, &details))
            {
                call.rolled_back();
                // Never current: remove it now (or, failing that, the next engine does, finding no event).
                let _ = pending.discard();
                return Err(e);
            }
            crate::failpoint::hit("kek.event.after");
            if let Err(e) = pending.publish() {
                // The rotation is committed (its event); the key stays pending and the next engine makes it
                // current. The error is no event of its own.
                call.failed_after_commit();
                return Err(e);
            }
            Ok(Done {
                target,
                details,
                value: id,
            })
        })
    }
}
