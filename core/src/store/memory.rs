//! In-memory stores (placeholder: being implemented).
use super::*;
use crate::audit::AuditEvent;
use crate::auth::ApiKeyRecord;

/// Jobs, keys and audit events in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KeyStore for MemoryStore {
    fn insert_key(&self, _key: &ApiKeyRecord) -> Result<()> {
        todo!()
    }
    fn get_key(&self, _key_id: &str) -> Result<Option<ApiKeyRecord>> {
        todo!()
    }
    fn revoke_key(&self, _key_id: &str, _at: DateTime<Utc>) -> Result<()> {
        todo!()
    }
    fn list_keys(&self, _org: &str) -> Result<Vec<ApiKeyRecord>> {
        todo!()
    }
}
impl JobStore for MemoryStore {
    fn insert(&self, _job: &Job) -> Result<Job> {
        todo!()
    }
    fn get(&self, _id: Uuid) -> Result<Job> {
        todo!()
    }
    fn update(&self, _job: &Job) -> Result<Job> {
        todo!()
    }
    fn list(&self, _q: &JobQuery) -> Result<JobPage> {
        todo!()
    }
    fn claim_next(&self, _now: DateTime<Utc>) -> Result<Option<Job>> {
        todo!()
    }
    fn requeue_running(&self) -> Result<Vec<Job>> {
        todo!()
    }
}
impl AuditStore for MemoryStore {
    fn append(&self, _e: &AuditEvent) -> Result<()> {
        todo!()
    }
    fn last(&self) -> Result<Option<(u64, String)>> {
        todo!()
    }
    fn read(&self, _from: u64, _limit: usize) -> Result<Vec<AuditEvent>> {
        todo!()
    }
}
