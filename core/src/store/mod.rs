//! Persistence: the [`Store`] of a deployment keeps its jobs, API keys, signers' credentials and audit trail, and
//! changes them only in transactions that carry their audit events.
//!
//! # Write-ahead audit
//!
//! Every change is made by [`Store::write`]: the work runs against a [`Tx`], which reads and writes the records
//! (through the operations each record's module defines: [`crate::job::JobRows`], [`crate::auth::KeyRows`],
//! [`crate::signer::SignerRows`], [`crate::study::StudyRows`], [`crate::audit::AuditRows`]) and stages the audit
//! events that report them. The store hands the staged events to the witness (the audit hooks) and then commits
//! the changes and the events together, or nothing: no change is ever visible without its event, and no event is
//! stored for a change that did not commit. Reads outside a transaction go through [`crate::job::JobReads`],
//! [`crate::auth::KeyReads`], [`crate::signer::SignerReads`], [`crate::study::StudyReads`] and
//! [`crate::audit::AuditReads`].
//!
//! # Implementations
//!
//! [`MemoryStore`] (tests, embedding without a file) and, with the `sqlite` feature, [`SqliteStore`] (the embedded
//! default: one SQLite file, with the trail archived in an append-only log beside it). One conformance suite
//! ([`conformance`]) states the contracts in code; every implementation must pass it.

use crate::audit::{AuditEvent, AuditReads, AuditRows};
use crate::auth::{KeyReads, KeyRows};
use crate::error::Result;
use crate::job::{JobReads, JobRows};
use crate::signer::{SignerReads, SignerRows};
use crate::study::{StudyReads, StudyRows};

pub mod conformance;
mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_limit;

pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteStore};
#[cfg(feature = "sqlite")]
pub use sqlite_limit::SqliteRateLimitStore;

/// The operations of one transaction: every record kind's, and the audit trail's.
pub trait Tx: JobRows + KeyRows + SignerRows + StudyRows + AuditRows {}

impl<T: JobRows + KeyRows + SignerRows + StudyRows + AuditRows> Tx for T {}

/// The work of a transaction (see [`Store::write`]).
pub type Work<'a> = dyn FnMut(&mut dyn Tx) -> Result<()> + 'a;

/// Receives the events a transaction is about to commit (see [`Store::write`]).
pub type Witness<'a> = dyn Fn(&[AuditEvent]) -> Result<()> + 'a;

/// Where a deployment keeps its jobs, keys, signers' credentials, study registry and audit trail.
///
/// # Contract
/// - `write` runs `work` in one transaction isolated from every other (in this process or another on the same
///   backing storage). When `work` succeeds, the events it staged are handed to `witness`, in sequence order,
///   while no other transaction can commit; if `witness` succeeds, the changes and the events are committed
///   durably together, and the events are returned. If `work`, `witness` or the commit fails, nothing is
///   committed and the error is returned. A transaction that failed because another one committed first may be
///   retried by the store (running `work` again), never partly applied.
/// - What `write` returned is visible to every later read, in this process and in others on the same storage.
/// - Reads never see a transaction's changes before it commits.
pub trait Store: JobReads + KeyReads + SignerReads + StudyReads + AuditReads + Send + Sync {
    /// Runs one transaction (see the contract).
    ///
    /// # Errors
    /// The errors of `work` and `witness`; EXP005 when the storage fails.
    fn write(&self, work: &mut Work<'_>, witness: &Witness<'_>) -> Result<Vec<AuditEvent>>;

    /// Checks what the store keeps beside the chain itself (e.g. an archive of the trail against the anchor in the
    /// database), for `verify_audit`. The default has nothing to check.
    ///
    /// # Errors
    /// EXP005 `integrity_violation` with `details.check` naming what does not hold.
    fn check_trail(&self) -> Result<()> {
        Ok(())
    }

    /// Whether the store was upgraded from a version without a study registry and the studies of its sources are
    /// still to be bound to the home's organization (see [`crate::engine::EngineBuilder::home`]): recorded in the
    /// store by the upgrade, whichever process made it, until a transaction binds them and calls
    /// [`crate::study::StudyRows::studies_adopted`]. The default: no.
    ///
    /// # Errors
    /// EXP005.
    fn studies_to_adopt(&self) -> Result<bool> {
        Ok(false)
    }
}
