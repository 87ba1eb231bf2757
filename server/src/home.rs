//! The readiness check and job counts of a home: its SQLite store and its artifact directory.

use crate::{JobCounts, Readiness};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use trialport_core::error::Reason;
use trialport_core::home::Home;
use trialport_core::job::{JobQuery, JobReads, JobState};
use trialport_core::store::SqliteStore;

/// `/readyz` and the `trialport_jobs` gauge for a home: a query on its store, and its artifact directory.
pub struct HomeChecks {
    store: Arc<SqliteStore>,
    artifacts: PathBuf,
    org: String,
}

impl std::fmt::Debug for HomeChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HomeChecks")
            .field("org", &self.org)
            .finish_non_exhaustive()
    }
}

impl HomeChecks {
    /// Opens the home's store for the checks (jobs are counted for the home's organization). Open it after the
    /// home's engine ([`trialport_core::engine::EngineBuilder::home`]): this store has no row key, so it must not be
    /// the one that upgrades a file of an older version (the MACs it would write are none).
    ///
    /// # Errors
    /// EXP001 `not_a_home`; EXP005 when the store cannot be opened.
    pub fn open(dir: &Path) -> trialport_core::Result<Self> {
        let home = Home::open(dir)?;
        Ok(HomeChecks {
            store: Arc::new(SqliteStore::open(&home.database_path())?),
            artifacts: home.artifacts_dir(),
            org: home.config().org.clone(),
        })
    }

    fn total(&self, state: Option<JobState>) -> trialport_core::Result<u64> {
        Ok(self
            .store
            .list_jobs(&JobQuery {
                org: self.org.clone(),
                studies: None,
                state,
                page: 1,
                limit: 1,
            })?
            .total)
    }
}

#[async_trait::async_trait]
impl Readiness for HomeChecks {
    async fn check(&self) -> Result<(), Reason> {
        let store = self.store.clone();
        let org = self.org.clone();
        let artifacts = self.artifacts.clone();
        tokio::task::spawn_blocking(move || {
            if !artifacts.is_dir() {
                return Err(Reason::ArtifactsUnreachable);
            }
            let query = JobQuery {
                org,
                studies: None,
                state: None,
                page: 1,
                limit: 1,
            };
            store
                .list_jobs(&query)
                .map(|_| ())
                .map_err(|_| Reason::StoreUnreachable)
        })
        .await
        .unwrap_or(Err(Reason::CheckFailed))
    }
}

impl JobCounts for HomeChecks {
    fn counts(&self) -> Result<Vec<(&'static str, u64)>, Reason> {
        JobState::ALL
            .into_iter()
            .map(|s| {
                self.total(Some(s))
                    .map(|n| (s.as_str(), n))
                    .map_err(|_| Reason::StoreUnreachable)
            })
            .collect()
    }
}
