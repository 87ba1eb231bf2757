//! Operations on the encryption of artifacts at rest (the key provider is set with
//! [`super::EngineBuilder::encryption`], or by a home whose configuration turns encryption on).

use super::call::Done;
use super::{EngineBuilder, Session};
use crate::auth::{authorize, Permission, Principal};
use crate::error::{Error, Result};
use serde_json::json;

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
                "permission_denied",
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
    /// the new key id (never key material).
    ///
    /// # Errors
    /// EXP003 `permission_denied`; EXP002 `encryption_disabled` when the engine does not encrypt (told to a
    /// `keys:manage` holder of the caller's organization before the home-wide rule is checked),
    /// `rotation_unsupported` when its key provider rotates elsewhere; EXP005 for I/O.
    pub fn rotate_encryption_key(&self) -> Result<String> {
        self.call("rotate_encryption_key", "encryption".to_string(), |call| {
            let p = call.principal();
            authorize(p, Permission::KeysManage, &p.org, None)?;
            let keys = self.inner.key_provider.as_ref().ok_or_else(|| {
                Error::validation(
                    "encryption_disabled",
                    "this engine does not encrypt artifacts at rest",
                )
            })?;
            authorize_home_wide(p, self.inner.home_org.as_deref())?;
            let previous = keys.current_key_id().ok();
            let id = keys.rotate()?;
            Ok(Done {
                target: format!("kek:{id}"),
                details: json!({"key_id": id, "previous_key_id": previous}),
                value: id,
            })
        })
    }
}
