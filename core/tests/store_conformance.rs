//! Runs the store conformance suite against the memory and SQLite stores (one test per check and store), plus
//! SQLite-specific tests: restart, two connections on one file, schema version, corrupt rows.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use trialport_core::audit::AuditEvent;
use trialport_core::auth::ApiKeyRecord;
use trialport_core::error::ErrorCode;
use trialport_core::job::{Job, JobState};
use trialport_core::store::conformance::{self, at, sample_job, Stores};
use trialport_core::store::{
    AuditStore, FinishedQuery, JobPage, JobQuery, JobStore, KeyStore, MemoryStore, SqliteStore,
};
use trialport_core::Result;
use uuid::Uuid;

/// One `#[test]` per conformance check, for a store made by `$make`.
macro_rules! per_check {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;
            per_check!(@tests $make;
                jobs_insert_get, jobs_update_is_conditional, jobs_list_filters, jobs_list_pagination,
                jobs_idempotency, jobs_claim_order, jobs_concurrent_claims, jobs_requeue_running,
                jobs_list_finished, jobs_list_finished_walk, keys_contract, audit_append_and_read, audit_concurrent_appends);
        }
    };
    (@tests $make:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                let (_guard, stores) = $make;
                let check = conformance::CHECKS
                    .iter()
                    .find(|c| c.name == stringify!($check))
                    .expect("the check is listed in CHECKS");
                (check.run)(&stores);
            }
        )*

        #[test]
        fn every_listed_check_has_a_test() {
            let tested = [$(stringify!($check)),*];
            let listed: Vec<&str> = conformance::CHECKS.iter().map(|c| c.name).collect();
            assert_eq!(listed, tested);
        }
    };
}

fn memory() -> ((), Stores) {
    ((), Stores::from_one(MemoryStore::new()))
}

fn sqlite_file() -> (tempfile::TempDir, Stores) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("trialport.db")).unwrap();
    (dir, Stores::from_one(store))
}

per_check!(memory_store, memory());
per_check!(sqlite_store, sqlite_file());
per_check!(
    sqlite_in_memory,
    ((), Stores::from_one(SqliteStore::open_in_memory().unwrap()))
);

#[test]
fn run_all_passes_for_the_memory_store() {
    conformance::run_all(&|| Stores::from_one(MemoryStore::new()));
}

/// A store that breaks one rule, to show the suite catches it and names the check.
struct BrokenStore {
    inner: MemoryStore,
    /// Ignore the version on update (last writer wins).
    ignore_versions: bool,
    /// Claim without atomicity: read the oldest queued job, then write it (the memory store's lock is released in
    /// between).
    racy_claims: bool,
}

impl JobStore for BrokenStore {
    fn insert(&self, job: &Job) -> Result<Job> {
        self.inner.insert(job)
    }
    fn get(&self, id: Uuid) -> Result<Job> {
        self.inner.get(id)
    }
    fn update(&self, job: &Job) -> Result<Job> {
        if self.ignore_versions {
            let mut j = job.clone();
            j.version = self.inner.get(job.id)?.version;
            return self.inner.update(&j);
        }
        self.inner.update(job)
    }
    fn list(&self, q: &JobQuery) -> Result<JobPage> {
        self.inner.list(q)
    }
    fn claim_next(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Option<Job>> {
        if !self.racy_claims {
            return self.inner.claim_next(now);
        }
        let q = JobQuery {
            org: "org-c".into(),
            studies: None,
            state: Some(JobState::Queued),
            page: 1,
            limit: 100,
        };
        let page = self.inner.list(&q)?;
        let Some(mut job) = page.items.into_iter().last() else {
            return Ok(None);
        };
        std::thread::yield_now();
        job.transition(JobState::Running, now)?;
        job.version = self.inner.get(job.id)?.version;
        Ok(Some(self.inner.update(&job)?))
    }
    fn requeue_running(&self) -> Result<Vec<Job>> {
        self.inner.requeue_running()
    }
    fn list_finished(&self, q: &FinishedQuery) -> Result<Vec<Job>> {
        self.inner.list_finished(q)
    }
}
impl KeyStore for BrokenStore {
    fn insert_key(&self, key: &ApiKeyRecord) -> Result<()> {
        self.inner.insert_key(key)
    }
    fn get_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        self.inner.get_key(key_id)
    }
    fn revoke_key(&self, key_id: &str, at: chrono::DateTime<chrono::Utc>) -> Result<()> {
        self.inner.revoke_key(key_id, at)
    }
    fn list_keys(&self, org: &str) -> Result<Vec<ApiKeyRecord>> {
        self.inner.list_keys(org)
    }
}
impl AuditStore for BrokenStore {
    fn append(&self, e: &AuditEvent) -> Result<()> {
        self.inner.append(e)
    }
    fn last(&self) -> Result<Option<(u64, String)>> {
        self.inner.last()
    }
    fn read(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        self.inner.read(from, limit)
    }
}

fn failure_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let payload = std::panic::catch_unwind(f).expect_err("the suite must fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn the_suite_catches_an_unconditional_update() {
    let msg = failure_message(|| {
        conformance::run_all(&|| {
            Stores::from_one(BrokenStore {
                inner: MemoryStore::new(),
                ignore_versions: true,
                racy_claims: false,
            })
        })
    });
    assert!(msg.contains("jobs_update_is_conditional"), "{msg}");
    assert!(!msg.contains("keys_contract"), "{msg}");
}

#[test]
fn the_suite_catches_double_claims() {
    // The racy store may get lucky in one run; it cannot in many.
    let caught = (0..20).any(|_| {
        let store = BrokenStore {
            inner: MemoryStore::new(),
            ignore_versions: true,
            racy_claims: true,
        };
        std::panic::catch_unwind(|| conformance::jobs_concurrent_claims(&store)).is_err()
    });
    assert!(
        caught,
        "the concurrent-claims check never caught a racy claim"
    );
}

// ------------------------------------------------------------------------------------------------------------
// SQLite specifics

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).unwrap()
}

#[test]
fn sqlite_survives_a_restart_and_requeues_running_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let mut inserted = Vec::new();
    let claimed;
    {
        let store = open(&path);
        for i in 0..5 {
            let mut job = sample_job("org-a", "S1", "alice", at(i));
            job.idempotency_key = Some(format!("key-{i}"));
            inserted.push(store.insert(&job).unwrap());
        }
        claimed = store.claim_next(at(100)).unwrap().unwrap();
        assert_eq!(claimed.id, inserted[0].id);
        let mut progressing = claimed.clone();
        progressing.progress.rows_written = 42;
        progressing.progress.datasets_done = 1;
        let claimed_v3 = store.update(&progressing).unwrap();
        assert_eq!(claimed_v3.version, 3);
        store
            .insert_key(&conformance::sample_key("abcdefabcdef", "org-a", at(0)))
            .unwrap();
        let e = conformance::sample_event(1, trialport_core::audit::GENESIS_HASH);
        store.append(&e).unwrap();
        // The store is dropped here, as when the process ends.
    }
    let store = open(&path);
    assert_eq!(store.schema_version().unwrap(), 2);
    for job in &inserted[1..] {
        assert_eq!(
            &store.get(job.id).unwrap(),
            job,
            "jobs survive with their data"
        );
    }
    let before = store.get(claimed.id).unwrap();
    assert_eq!(before.state, JobState::Running);
    assert_eq!(before.progress.rows_written, 42);

    let requeued = store.requeue_running().unwrap();
    assert_eq!(requeued.len(), 1);
    let job = &requeued[0];
    assert_eq!(job.id, claimed.id);
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.started_at, None);
    assert_eq!(job.progress.rows_written, 0);
    assert_eq!(job.progress.datasets_done, 0);
    assert_eq!(job.version, 4);
    assert_eq!(&store.get(claimed.id).unwrap(), job);

    // Idempotency keys still hold after the restart.
    let mut again = sample_job("org-a", "S1", "alice", at(50));
    again.idempotency_key = Some("key-2".into());
    assert_eq!(store.insert(&again).unwrap().id, inserted[2].id);
    assert!(store.get_key("abcdefabcdef").unwrap().is_some());
    assert_eq!(store.last().unwrap().map(|(s, _)| s), Some(1));

    // And the re-queued job is claimed first again.
    assert_eq!(store.claim_next(at(200)).unwrap().unwrap().id, claimed.id);
}

#[test]
fn sqlite_two_connections_never_double_claim() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a = open(&path);
    let b = open(&path);
    conformance::concurrent_claims_across(&[&a, &b]);
}

#[test]
fn sqlite_two_connections_keep_the_audit_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a = open(&path);
    let b = open(&path);
    conformance::concurrent_appends_across(&[&a, &b]);
}

#[test]
fn sqlite_two_connections_see_each_others_writes_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a = open(&path);
    let b = open(&path);
    let job = a
        .insert(&sample_job("org-a", "S1", "alice", at(0)))
        .unwrap();
    let mut via_b = b.get(job.id).unwrap();
    via_b.progress.rows_written = 1;
    b.update(&via_b).unwrap();
    let err = a.update(&job).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert_eq!(err.reason(), "version_conflict");
}

#[test]
fn sqlite_many_stores_opening_one_new_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("race.db"));
    let opened = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..6 {
            let path = path.clone();
            let opened = opened.clone();
            s.spawn(move || {
                let store = SqliteStore::open(&path).unwrap();
                assert_eq!(store.schema_version().unwrap(), 2);
                opened.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    assert_eq!(opened.load(Ordering::SeqCst), 6);
}

#[test]
fn sqlite_uses_wal_and_full_sync_and_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pragmas.db");
    drop(open(&path));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    conn.pragma_update(None, "user_version", 3).unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Server);
}

#[test]
fn sqlite_corrupt_rows_are_exp005_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    let store = open(&path);
    let good = store
        .insert(&sample_job("org-a", "S1", "alice", at(0)))
        .unwrap();
    let bad = store
        .insert(&sample_job("org-a", "S1", "alice", at(1)))
        .unwrap();
    store
        .insert_key(&conformance::sample_key("abcdefabcdef", "org-a", at(0)))
        .unwrap();
    store
        .append(&conformance::sample_event(
            1,
            trialport_core::audit::GENESIS_HASH,
        ))
        .unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE jobs SET body = '{not json' WHERE id = ?1",
            [bad.id.to_string()],
        )
        .unwrap();
        conn.execute("UPDATE api_keys SET body = '[]'", []).unwrap();
        conn.execute("UPDATE audit_events SET body = 'null'", [])
            .unwrap();
    }
    let corrupt = |r: std::result::Result<(), trialport_core::Error>| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), ErrorCode::Server, "{e}");
        assert_eq!(e.reason(), "corrupt_record", "{e}");
    };
    assert_eq!(store.get(good.id).unwrap(), good);
    corrupt(store.get(bad.id).map(drop));
    let q = JobQuery {
        org: "org-a".into(),
        studies: None,
        state: None,
        page: 1,
        limit: 10,
    };
    corrupt(store.list(&q).map(drop));
    // The oldest queued job is the good one; the next is the corrupt one.
    assert_eq!(
        store.claim_next(at(5)).unwrap().map(|j| j.id),
        Some(good.id)
    );
    corrupt(store.claim_next(at(5)).map(drop));
    corrupt(store.get_key("abcdefabcdef").map(drop));
    corrupt(store.read(1, 10).map(drop));
}

/// The jobs table of schema version 1, as trialport wrote it before `finished_at` had a column.
const SCHEMA_1_JOBS: &str = "
CREATE TABLE jobs (
    id TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL,
    study TEXT NOT NULL,
    state TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    idempotency_key TEXT,
    request_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX jobs_org_created ON jobs (org, created_at);
CREATE INDEX jobs_state_created ON jobs (state, created_at);
CREATE UNIQUE INDEX jobs_idempotency
    ON jobs (org, requested_by, idempotency_key) WHERE idempotency_key IS NOT NULL;
PRAGMA user_version = 1;
";

#[test]
fn sqlite_upgrades_a_schema_1_file_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let finished = |org: &str, state: JobState, t: Option<i64>| {
        let mut job = sample_job(org, "S1", "alice", at(0));
        job.state = state;
        job.finished_at = t.map(at);
        job
    };
    let old = finished("org-a", JobState::Succeeded, Some(20));
    let older = finished("org-b", JobState::Succeeded, Some(10));
    let failed = finished("org-a", JobState::Failed, Some(5));
    let queued = finished("org-c", JobState::Queued, None);
    let corrupt = finished("org-a", JobState::Succeeded, Some(1));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_1_JOBS).unwrap();
        for job in [&old, &older, &failed, &queued, &corrupt] {
            let body = if job.id == corrupt.id {
                "{not json".to_string()
            } else {
                serde_json::to_string(job).unwrap()
            };
            conn.execute(
                "INSERT INTO jobs (id, org, study, state, requested_by, request_hash, created_at, version, body) \
                 VALUES (?1, ?2, 'S1', ?3, 'alice', 'h', '2025-01-21T10:00:00.000000000Z', 1, ?4)",
                rusqlite::params![job.id.to_string(), job.org, job.state.as_str(), body],
            )
            .unwrap();
        }
    }
    let store = open(&path);
    assert_eq!(store.schema_version().unwrap(), 2);
    let q = |state| FinishedQuery {
        state,
        finished_by: at(100),
        after: None,
        limit: 10,
    };
    let listed: Vec<Uuid> = store
        .list_finished(&q(JobState::Succeeded))
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(
        listed,
        vec![older.id, old.id],
        "old rows are listed from their records; the unreadable one is left out"
    );
    let failed_ids: Vec<Uuid> = store
        .list_finished(&q(JobState::Failed))
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(failed_ids, vec![failed.id]);
    assert_eq!(store.get(queued.id).unwrap(), queued);
    assert_eq!(
        store.get(corrupt.id).unwrap_err().reason(),
        "corrupt_record"
    );
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let index: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'jobs_state_finished'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(index, 1, "the index of schema version 2 exists");
    let plan: String = conn
        .query_row(
            "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE state = 'succeeded' AND finished_at <= 'x' \
             AND (finished_at, id) > ('a', 'b') ORDER BY finished_at, id LIMIT 5",
            [],
            |r| r.get(3),
        )
        .unwrap();
    assert!(plan.contains("jobs_state_finished"), "{plan}");
    drop(conn);
    // Opened again: nothing to upgrade, the version stays.
    assert_eq!(open(&path).schema_version().unwrap(), 2);
    // And a job written through the upgraded store keeps its column up to date.
    let store = open(&path);
    let mut j = store.get(old.id).unwrap();
    j.state = JobState::Expired;
    store.update(&j).unwrap();
    assert_eq!(
        store.list_finished(&q(JobState::Succeeded)).unwrap().len(),
        1
    );
    assert_eq!(
        store.list_finished(&q(JobState::Expired)).unwrap()[0].id,
        old.id
    );
}
