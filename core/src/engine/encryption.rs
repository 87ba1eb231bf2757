//! Operations on the encryption of artifacts at rest (the key provider is set with
//! [`super::EngineBuilder::encryption`], or by a home whose configuration turns encryption on).

use super::call::Done;
use super::Session;
use crate::auth::{authorize, Permission};
use crate::error::{Error, Result};
use serde_json::json;

impl Session<'_> {
    /// Rotates the key-encryption key: new artifacts are wrapped under a new KEK, old ones keep opening under
    /// theirs. Returns the new key id. Needs `keys:manage` (the `admin` role); audited as
    /// `rotate_encryption_key` with the new key id (never key material).
    ///
    /// # Errors
    /// EXP003; EXP002 `encryption_disabled` when the engine does not encrypt, `rotation_unsupported` when its key
    /// provider rotates elsewhere; EXP005 for I/O.
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
