//! Studies and organizations (DESIGN.md §12, **contract**): every study belongs to exactly one organization.
//!
//! The registry is a store's table of [`StudyRecord`]s (study, organization, when and by whom it was bound), changed
//! only in transactions ([`StudyRows`]) and read outside them ([`StudyReads`]). An engine that keeps a registry
//! (every engine on a home; see [`crate::engine::EngineBuilder::study_registry`]) resolves the study of every
//! operation through it: a study of another organization, or one bound to none, answers exactly as a study that
//! does not exist (EXP001).

use crate::error::Reason;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One study's binding to its organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyRecord {
    /// The study id (as a source names it, e.g. `S1`).
    pub study: String,
    /// The organization the study belongs to.
    pub org: String,
    /// When the binding was made.
    pub added_at: DateTime<Utc>,
    /// Subject of who made it (`system` for `init` and the upgrade of an older home).
    pub added_by: String,
}

/// The study operations of a store's transaction ([`crate::store::Tx`]).
///
/// # Contract
/// `insert_study` of a study already bound is EXP004 `study_exists`; `delete_study` of an unbound study is EXP001;
/// reads see the transaction's own writes.
pub trait StudyRows {
    /// The binding of `study`, if any.
    ///
    /// # Errors
    /// EXP005.
    fn study(&mut self, study: &str) -> Result<Option<StudyRecord>>;

    /// Binds a study to its organization.
    ///
    /// # Errors
    /// EXP004 `study_exists`; EXP005.
    fn insert_study(&mut self, record: &StudyRecord) -> Result<()>;

    /// Removes the binding of `study`.
    ///
    /// # Errors
    /// EXP001; EXP005.
    fn delete_study(&mut self, study: &str) -> Result<()>;

    /// Ends the adoption of an upgraded store's studies (see [`crate::store::Store::studies_to_adopt`]), with the
    /// bindings it made; nothing when there is none. The default: nothing (a store without upgrades).
    ///
    /// # Errors
    /// EXP005.
    fn studies_adopted(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Reading the registry outside a transaction: `get_study` of an unbound study is `Ok(None)`; a change is seen by
/// the next read.
pub trait StudyReads: Send + Sync {
    /// The binding of `study`.
    ///
    /// # Errors
    /// EXP005.
    fn get_study(&self, study: &str) -> Result<Option<StudyRecord>>;

    /// Every binding, of one organization or (with `None`) of all, ordered by study id.
    ///
    /// # Errors
    /// EXP005.
    fn list_studies(&self, org: Option<&str>) -> Result<Vec<StudyRecord>>;
}

/// The error of an `insert_study` of a bound study.
pub(crate) fn study_exists() -> Error {
    Error::conflict(
        Reason::StudyExists,
        "the study is already bound to an organization",
    )
    .with_field("study")
}

/// The error of a study that is not bound (the same as [`crate::source::unknown_study`], so that a study of
/// another organization is not told from an unknown one).
pub(crate) fn unbound_study(study: &str) -> Error {
    crate::source::unknown_study(study)
}
