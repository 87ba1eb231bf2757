//! Runs the store conformance suite against the memory and SQLite stores (one test per check and store), plus
//! SQLite-specific tests: restart, two connections on one file, schema version, corrupt and altered rows, and
//! the audit archive against its anchor.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use trialport_core::audit::{AuditEvent, AuditReads, GENESIS_HASH};
use trialport_core::auth::{KeyReads, KeyRows};
use trialport_core::error::ErrorCode;
use trialport_core::job::{FinishedQuery, Job, JobQuery, JobReads, JobRows, JobState};
use trialport_core::signer::{SignerCredential, SignerReads, SignerRows};
use trialport_core::store::conformance::{self, at, sample_event, sample_job, write, Stores};
use trialport_core::store::{MemoryStore, SqliteOptions, SqliteStore, Store, Tx, Witness, Work};
use trialport_core::study::StudyReads;
use trialport_core::Result;
use uuid::Uuid;

/// One `#[test]` per conformance check, for a store made by `$make`.
macro_rules! per_check {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;
            per_check!(@tests $make;
                jobs_insert_get, jobs_update_is_conditional, jobs_list_filters, jobs_list_pagination,
                jobs_idempotency, jobs_claim_order, jobs_concurrent_claims, jobs_expired_leases,
                jobs_list_finished, jobs_list_finished_walk, keys_contract, signers_contract, studies_contract, audit_append_and_read,
                audit_concurrent_appends, transactions_are_atomic, transactions_read_their_writes);
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

/// A SQLite store as a home opens it: row MACs and the audit archive.
fn sqlite_home_store() -> (tempfile::TempDir, Stores) {
    let dir = tempfile::tempdir().unwrap();
    let store = home_store(dir.path());
    (dir, Stores::from_one(store))
}

const ROW_KEY: [u8; 32] = [42; 32];

fn home_store(dir: &Path) -> SqliteStore {
    SqliteStore::open_with(
        &dir.join("trialport.db"),
        SqliteOptions {
            archive: Some(&dir.join("audit.log")),
            row_key: Some(&ROW_KEY),
        },
    )
    .unwrap()
}

per_check!(memory_store, memory());
per_check!(sqlite_store, sqlite_file());
per_check!(sqlite_home, sqlite_home_store());
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
    /// Commit what the work did even when it fails.
    partial_commits: bool,
}

/// The transaction of a [`BrokenStore`].
struct BrokenTx<'a> {
    tx: &'a mut dyn Tx,
    ignore_versions: bool,
}

impl JobRows for BrokenTx<'_> {
    fn job(&mut self, id: Uuid) -> Result<Option<Job>> {
        self.tx.job(id)
    }
    fn insert_job(&mut self, job: &Job) -> Result<Job> {
        self.tx.insert_job(job)
    }
    fn update_job(&mut self, job: &Job) -> Result<Job> {
        if self.ignore_versions {
            let mut j = job.clone();
            if let Some(current) = self.tx.job(job.id)? {
                j.version = current.version;
            }
            return self.tx.update_job(&j);
        }
        self.tx.update_job(job)
    }
    fn job_by_idempotency_key(&mut self, o: &str, r: &str, k: &str) -> Result<Option<Job>> {
        self.tx.job_by_idempotency_key(o, r, k)
    }
    fn oldest_queued(&mut self) -> Result<Option<Job>> {
        self.tx.oldest_queued()
    }
    fn expired_leases(
        &mut self,
        now: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<Job>> {
        self.tx.expired_leases(now, limit)
    }
}
impl KeyRows for BrokenTx<'_> {
    fn key(&mut self, id: &str) -> Result<Option<trialport_core::auth::ApiKeyRecord>> {
        self.tx.key(id)
    }
    fn insert_key(&mut self, k: &trialport_core::auth::ApiKeyRecord) -> Result<()> {
        self.tx.insert_key(k)
    }
    fn update_key(&mut self, k: &trialport_core::auth::ApiKeyRecord) -> Result<()> {
        self.tx.update_key(k)
    }
    fn org_has_keys(&mut self, org: &str) -> Result<bool> {
        self.tx.org_has_keys(org)
    }
}
impl trialport_core::study::StudyRows for BrokenTx<'_> {
    fn study(&mut self, s: &str) -> Result<Option<trialport_core::study::StudyRecord>> {
        self.tx.study(s)
    }
    fn insert_study(&mut self, r: &trialport_core::study::StudyRecord) -> Result<()> {
        self.tx.insert_study(r)
    }
    fn delete_study(&mut self, s: &str) -> Result<()> {
        self.tx.delete_study(s)
    }
}
impl SignerRows for BrokenTx<'_> {
    fn signer(&mut self, org: &str, subject: &str) -> Result<Option<SignerCredential>> {
        self.tx.signer(org, subject)
    }
    fn put_signer(&mut self, c: &SignerCredential) -> Result<()> {
        self.tx.put_signer(c)
    }
}
impl trialport_core::audit::AuditRows for BrokenTx<'_> {
    fn audit_head(&mut self) -> Result<Option<(u64, String)>> {
        self.tx.audit_head()
    }
    fn stage_event(&mut self, e: &AuditEvent) -> Result<()> {
        self.tx.stage_event(e)
    }
}

impl Store for BrokenStore {
    fn write(&self, work: &mut Work<'_>, witness: &Witness<'_>) -> Result<Vec<AuditEvent>> {
        let mut failure = None;
        let events = self.inner.write(
            &mut |tx| {
                let mut broken = BrokenTx {
                    tx,
                    ignore_versions: self.ignore_versions,
                };
                match work(&mut broken) {
                    Err(e) if self.partial_commits => {
                        failure = Some(e);
                        Ok(())
                    }
                    other => other,
                }
            },
            witness,
        )?;
        match failure {
            Some(e) => Err(e),
            None => Ok(events),
        }
    }
}
impl JobReads for BrokenStore {
    fn get_job(&self, id: Uuid) -> Result<Job> {
        self.inner.get_job(id)
    }
    fn list_jobs(&self, q: &JobQuery) -> Result<trialport_core::job::JobPage> {
        self.inner.list_jobs(q)
    }
    fn list_finished(&self, q: &FinishedQuery) -> Result<Vec<Job>> {
        self.inner.list_finished(q)
    }
}
impl KeyReads for BrokenStore {
    fn get_key(&self, id: &str) -> Result<Option<trialport_core::auth::ApiKeyRecord>> {
        self.inner.get_key(id)
    }
    fn list_keys(&self, org: &str) -> Result<Vec<trialport_core::auth::ApiKeyRecord>> {
        self.inner.list_keys(org)
    }
}
impl trialport_core::study::StudyReads for BrokenStore {
    fn get_study(&self, s: &str) -> Result<Option<trialport_core::study::StudyRecord>> {
        self.inner.get_study(s)
    }
    fn list_studies(&self, org: Option<&str>) -> Result<Vec<trialport_core::study::StudyRecord>> {
        self.inner.list_studies(org)
    }
}
impl SignerReads for BrokenStore {
    fn get_signer(&self, org: &str, subject: &str) -> Result<Option<SignerCredential>> {
        self.inner.get_signer(org, subject)
    }
}
impl AuditReads for BrokenStore {
    fn audit_last(&self) -> Result<Option<(u64, String)>> {
        self.inner.audit_last()
    }
    fn audit_read(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        self.inner.audit_read(from, limit)
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
                partial_commits: false,
            })
        })
    });
    assert!(msg.contains("jobs_update_is_conditional"), "{msg}");
    assert!(!msg.contains("keys_contract"), "{msg}");
}

#[test]
fn the_suite_catches_a_partial_commit() {
    let msg = failure_message(|| {
        conformance::run_all(&|| {
            Stores::from_one(BrokenStore {
                inner: MemoryStore::new(),
                ignore_versions: false,
                partial_commits: true,
            })
        })
    });
    assert!(msg.contains("transactions_are_atomic"), "{msg}");
    assert!(!msg.contains("jobs_list_filters"), "{msg}");
}

// ------------------------------------------------------------------------------------------------------------
// SQLite specifics

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).unwrap()
}

fn insert(store: &dyn Store, job: &Job) -> Job {
    write(store, |tx| tx.insert_job(job)).unwrap()
}

fn update(store: &dyn Store, job: &Job) -> Result<Job> {
    write(store, |tx| tx.update_job(job))
}

fn append(store: &dyn Store, e: &AuditEvent) {
    write(store, |tx| tx.stage_event(e)).unwrap();
}

/// A chain of `n` sample events.
fn chain(n: u64) -> Vec<AuditEvent> {
    let mut prev = GENESIS_HASH.to_string();
    (1..=n)
        .map(|seq| {
            let e = sample_event(seq, &prev);
            prev = e.hash.clone();
            e
        })
        .collect()
}

#[test]
fn sqlite_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let mut inserted = Vec::new();
    let events = chain(3);
    {
        let store = open(&path);
        for i in 0..5 {
            let mut job = sample_job("org-a", "S1", "alice", at(i));
            job.idempotency_key = Some(format!("key-{i}"));
            inserted.push(insert(&store, &job));
        }
        let mut progressing = inserted[0].clone();
        progressing.progress.rows_written = 42;
        inserted[0] = update(&store, &progressing).unwrap();
        write(&store, |tx| {
            tx.insert_key(&conformance::sample_key("abcdefabcdef", "org-a", at(0)))
        })
        .unwrap();
        for e in &events {
            append(&store, e);
        }
        // The store is dropped here, as when the process ends.
    }
    let store = open(&path);
    assert_eq!(store.schema_version().unwrap(), 5);
    assert!(
        !store.studies_to_adopt().unwrap(),
        "a file made by this version adopts nothing"
    );
    for job in &inserted {
        assert_eq!(
            &store.get_job(job.id).unwrap(),
            job,
            "jobs survive with their data"
        );
    }
    // Idempotency keys still hold after the restart.
    let mut again = sample_job("org-a", "S1", "alice", at(50));
    again.idempotency_key = Some("key-2".into());
    assert_eq!(
        write(&store, |tx| tx.insert_job(&again))
            .unwrap_err()
            .reason(),
        "idempotency_conflict"
    );
    assert!(store.get_key("abcdefabcdef").unwrap().is_some());
    assert_eq!(store.audit_read(1, 10).unwrap(), events);
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
fn two_home_stores_keep_the_audit_sequence_and_one_archive() {
    let dir = tempfile::tempdir().unwrap();
    let a = home_store(dir.path());
    let b = home_store(dir.path());
    conformance::concurrent_appends_across(&[&a, &b]);
    // Every event reached the archive, once, in order; the table holds none of them any more.
    let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let seqs: Vec<u64> = text
        .lines()
        .map(|l| serde_json::from_str::<AuditEvent>(l).unwrap().seq)
        .collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    drop((a, b));
    let conn = rusqlite::Connection::open(dir.path().join("trialport.db")).unwrap();
    let left: i64 = conn
        .query_row("SELECT COUNT(*) FROM audit_events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "archived events leave the table");
}

#[test]
fn sqlite_two_connections_see_each_others_writes_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a = open(&path);
    let b = open(&path);
    let job = insert(&a, &sample_job("org-a", "S1", "alice", at(0)));
    let mut via_b = b.get_job(job.id).unwrap();
    via_b.progress.rows_written = 1;
    update(&b, &via_b).unwrap();
    let err = update(&a, &job).unwrap_err();
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
                assert_eq!(store.schema_version().unwrap(), 5);
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
    assert_eq!(version, 5);
    conn.pragma_update(None, "user_version", 6).unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Server);
}

#[test]
fn sqlite_corrupt_rows_are_exp005_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    let store = open(&path);
    let good = insert(&store, &sample_job("org-a", "S1", "alice", at(0)));
    let bad = insert(&store, &sample_job("org-a", "S1", "alice", at(1)));
    write(&store, |tx| {
        tx.insert_key(&conformance::sample_key("abcdefabcdef", "org-a", at(0)))
    })
    .unwrap();
    append(&store, &sample_event(1, GENESIS_HASH));
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
    assert_eq!(store.get_job(good.id).unwrap(), good);
    corrupt(store.get_job(bad.id).map(drop));
    let q = JobQuery {
        org: "org-a".into(),
        studies: None,
        state: None,
        page: 1,
        limit: 10,
    };
    corrupt(store.list_jobs(&q).map(drop));
    // The oldest queued job is the good one; once it runs, the next is the corrupt one.
    let mut first = write(&store, |tx| tx.oldest_queued()).unwrap().unwrap();
    assert_eq!(first.id, good.id);
    first.transition(JobState::Running, at(5)).unwrap();
    update(&store, &first).unwrap();
    corrupt(write(&store, |tx| tx.oldest_queued()).map(drop));
    corrupt(store.get_key("abcdefabcdef").map(drop));
    corrupt(store.audit_read(1, 10).map(drop));
}

#[test]
fn rows_edited_outside_trialport_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = home_store(dir.path());
    let s1 = insert(&store, &sample_job("org-a", "S1", "alice", at(0)));
    let other = insert(&store, &sample_job("org-a", "S1", "alice", at(1)));
    let key = conformance::sample_key("abcdefabcdef", "org-a", at(0));
    write(&store, |tx| tx.insert_key(&key)).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("trialport.db")).unwrap();
    // Moved to another study, column and body alike (finding M4 a).
    conn.execute(
        "UPDATE jobs SET study = 'S2', body = replace(body, '\"study\":\"S1\"', '\"study\":\"S2\"')          WHERE id = ?1",
        [s1.id.to_string()],
    )
    .unwrap();
    // Only the lookup column changed: the body still says S1.
    conn.execute(
        "UPDATE jobs SET org = 'org-b' WHERE id = ?1",
        [other.id.to_string()],
    )
    .unwrap();
    // A key made admin of every study (finding M4 b).
    conn.execute(
        "UPDATE api_keys SET body = json_set(body, '$.roles', json('[\"admin\"]'), '$.studies', json('[\"*\"]'))",
        [],
    )
    .unwrap();
    drop(conn);
    let store = home_store(dir.path());
    let violation = |e: trialport_core::Error| {
        assert_eq!(
            (e.code(), e.reason()),
            (ErrorCode::Server, "integrity_violation"),
            "{e}"
        );
    };
    violation(store.get_job(s1.id).unwrap_err());
    violation(store.get_job(other.id).unwrap_err());
    violation(store.get_key(&key.key_id).unwrap_err());
    // The same edits in a store without row MACs go unnoticed but the column check: that is what the MACs add.
    let plain = open(&dir.path().join("trialport.db"));
    assert_eq!(plain.get_job(s1.id).unwrap().study, "S2");
    violation(plain.get_job(other.id).unwrap_err());
}

/// Appends `n` events through a home store in `dir`, and returns them.
fn trail(dir: &Path, n: u64) -> Vec<AuditEvent> {
    let store = home_store(dir);
    let events = chain(n);
    for e in &events {
        append(&store, e);
    }
    events
}

fn refused_open(dir: &Path) -> trialport_core::Error {
    SqliteStore::open_with(
        &dir.join("trialport.db"),
        SqliteOptions {
            archive: Some(&dir.join("audit.log")),
            row_key: Some(&ROW_KEY),
        },
    )
    .unwrap_err()
}

fn log_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(dir: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(dir.join("audit.log"), text).unwrap();
}

#[test]
fn the_archive_is_checked_against_the_anchor_at_open() {
    // Complete lines overwritten with newline-terminated junk: never cut as a torn tail (finding M2 a).
    let dir = tempfile::tempdir().unwrap();
    trail(dir.path(), 8);
    let mut lines = log_lines(dir.path());
    for l in lines.iter_mut().skip(5) {
        *l = "#".repeat(l.len());
    }
    write_lines(dir.path(), &lines);
    let e = refused_open(dir.path());
    assert_eq!(
        (e.reason(), e.details()["check"].as_str()),
        ("integrity_violation", Some("record"))
    );
    assert_eq!(log_lines(dir.path()), lines, "nothing was cut");

    // The tail cut at a record boundary (finding M2 b).
    let dir = tempfile::tempdir().unwrap();
    trail(dir.path(), 8);
    let lines = log_lines(dir.path());
    write_lines(dir.path(), &lines[..5]);
    let e = refused_open(dir.path());
    assert_eq!(
        (e.reason(), e.details()["check"].as_str()),
        ("integrity_violation", Some("anchor"))
    );
    assert_eq!(
        (
            e.details()["archive_seq"].as_u64(),
            e.details()["anchor_seq"].as_u64()
        ),
        (Some(5), Some(8))
    );

    // Events deleted in the middle and the rest chained again (finding M2 c).
    let dir = tempfile::tempdir().unwrap();
    let events = trail(dir.path(), 8);
    let mut prev = events[1].hash.clone();
    let mut forged = Vec::new();
    for (i, e) in events[4..].iter().enumerate() {
        let mut e = e.clone();
        e.seq = 3 + i as u64;
        e.prev_hash = prev.clone();
        e.hash = e.compute_hash();
        prev = e.hash.clone();
        forged.push(e);
    }
    let mut lines: Vec<String> = events[..2].iter().map(AuditEvent::canonical).collect();
    lines.extend(forged.iter().map(AuditEvent::canonical));
    write_lines(dir.path(), &lines);
    assert_eq!(refused_open(dir.path()).details()["check"], "anchor");

    // Forged events appended after the last one (finding M2 c).
    let dir = tempfile::tempdir().unwrap();
    let events = trail(dir.path(), 4);
    let mut lines = log_lines(dir.path());
    let mut prev = events[3].hash.clone();
    for seq in 5..=20 {
        let e = sample_event(seq, &prev);
        prev = e.hash.clone();
        lines.push(e.canonical());
    }
    write_lines(dir.path(), &lines);
    let e = refused_open(dir.path());
    assert_eq!(e.details()["check"], "anchor");
    assert_eq!(e.details()["archive_seq"], 20);

    // The same edits to the anchor itself are refused too: its MAC does not hold.
    let dir = tempfile::tempdir().unwrap();
    trail(dir.path(), 4);
    let conn = rusqlite::Connection::open(dir.path().join("trialport.db")).unwrap();
    conn.execute("UPDATE audit_anchor SET seq = 3", []).unwrap();
    drop(conn);
    let e = refused_open(dir.path());
    assert_eq!(
        (e.reason(), e.details()["check"].as_str()),
        ("integrity_violation", Some("row_mac"))
    );
}

#[test]
fn events_committed_but_not_archived_reach_the_archive_at_the_next_open() {
    // A crash between a commit and the copy to the log leaves the events in the table, and a torn copy.
    let dir = tempfile::tempdir().unwrap();
    let events = trail(dir.path(), 6);
    let lines = log_lines(dir.path());
    {
        // Put the last three back in the table, as the commit left them, and cut the log in the middle of the
        // fourth.
        let conn = rusqlite::Connection::open(dir.path().join("trialport.db")).unwrap();
        for e in &events[3..] {
            conn.execute(
                "INSERT INTO audit_events (seq, event_id, timestamp, actor_subject, action, target, outcome,                  request_id, prev_hash, hash, body) VALUES (?1, '', '', '', '', '', '', '', ?2, ?3, ?4)",
                rusqlite::params![e.seq as i64, e.prev_hash, e.hash, e.canonical()],
            )
            .unwrap();
        }
    }
    let mut text = lines[..3].join("\n");
    text.push('\n');
    text.push_str(&lines[3][..20]);
    std::fs::write(dir.path().join("audit.log"), text).unwrap();
    let store = home_store(dir.path());
    assert_eq!(store.audit_read(1, 100).unwrap(), events);
    assert_eq!(log_lines(dir.path()), lines, "the log is whole again");
}

#[test]
fn the_archive_opens_without_reading_what_it_holds() {
    // An altered record in the middle does not stop the open (only the ends are read); verifying finds it.
    let dir = tempfile::tempdir().unwrap();
    trail(dir.path(), 10);
    let mut lines = log_lines(dir.path());
    lines[4] = lines[4].replacen("export_data", "export_dat4", 1);
    write_lines(dir.path(), &lines);
    let store = home_store(dir.path());
    let auditor =
        trialport_core::audit::Auditor::new(vec![], Arc::new(trialport_core::clock::SystemClock));
    let e = auditor.verify(&store).unwrap_err();
    assert_eq!(
        (
            e.reason(),
            e.details()["seq"].as_u64(),
            e.details()["check"].as_str()
        ),
        ("integrity_violation", Some(5), Some("hash"))
    );
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
    assert_eq!(store.schema_version().unwrap(), 5);
    // A file made before the study registry has it created empty, and says its studies are still to be bound.
    assert!(store.studies_to_adopt().unwrap());
    assert!(
        trialport_core::study::StudyReads::list_studies(&store, None)
            .unwrap()
            .is_empty()
    );
    // The adoption is the store's until a transaction ends it, whoever opens the file meanwhile.
    assert!(open(&path).studies_to_adopt().unwrap());
    write(&store, |tx| tx.studies_adopted()).unwrap();
    assert!(!open(&path).studies_to_adopt().unwrap());
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
    assert_eq!(store.get_job(queued.id).unwrap(), queued);
    assert_eq!(
        store.get_job(corrupt.id).unwrap_err().reason(),
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
    assert_eq!(open(&path).schema_version().unwrap(), 5);
    // And a job written through the upgraded store keeps its column up to date.
    let store = open(&path);
    let mut j = store.get_job(old.id).unwrap();
    j.state = JobState::Expired;
    update(&store, &j).unwrap();
    assert_eq!(
        store.list_finished(&q(JobState::Succeeded)).unwrap().len(),
        1
    );
    assert_eq!(
        store.list_finished(&q(JobState::Expired)).unwrap()[0].id,
        old.id
    );
}

/// Schema 5 added the study registry on top of version 4 (signers' records): a file of every earlier version, made
/// here by taking a current file back (its `studies` table dropped, its version set), is upgraded to 5 with the
/// registry empty and its studies still to be bound until a transaction ends the adoption; its rows survive. An
/// adoption row edited outside trialport is refused.
#[test]
fn sqlite_upgrades_files_of_versions_2_3_and_4_to_the_study_registry() {
    for from in [2, 3, 4] {
        let dir = tempfile::tempdir().unwrap();
        let store = home_store(dir.path());
        let job = insert(&store, &sample_job("org-a", "S1", "alice", at(0)));
        let ada = conformance::sample_signer("org-a", "ada", at(0));
        write(&store, |tx| tx.put_signer(&ada)).unwrap();
        drop(store);
        let conn = rusqlite::Connection::open(dir.path().join("trialport.db")).unwrap();
        conn.execute_batch(&format!(
            "DROP INDEX studies_org; DROP TABLE studies; PRAGMA user_version = {from};"
        ))
        .unwrap();
        drop(conn);
        let store = home_store(dir.path());
        assert_eq!(store.schema_version().unwrap(), 5, "from {from}");
        assert!(store.studies_to_adopt().unwrap(), "from {from}");
        assert!(StudyReads::list_studies(&store, None).unwrap().is_empty());
        assert_eq!(store.get_job(job.id).unwrap(), job, "from {from}");
        assert_eq!(store.get_signer("org-a", "ada").unwrap().unwrap(), ada);
        drop(store);
        let store = home_store(dir.path());
        assert!(
            store.studies_to_adopt().unwrap(),
            "until a transaction ends it (from {from})"
        );
        write(&store, |tx| tx.studies_adopted()).unwrap();
        drop(store);
        let store = home_store(dir.path());
        assert!(!store.studies_to_adopt().unwrap(), "from {from}");
        assert_eq!(store.schema_version().unwrap(), 5);
    }
    // A development build's version 4 that had the registry before the signers' records: its bindings are kept,
    // nothing is adopted, and its signers' table is converted as any older one.
    let dir = tempfile::tempdir().unwrap();
    let store = home_store(dir.path());
    let record = trialport_core::study::StudyRecord {
        study: "S1".into(),
        org: "org-a".into(),
        added_at: at(0),
        added_by: "system".into(),
    };
    write(&store, |tx| tx.insert_study(&record)).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("trialport.db")).unwrap();
    conn.execute_batch("DROP TABLE signing_credentials; PRAGMA user_version = 4;")
        .unwrap();
    conn.execute_batch(old_signers_table(false)).unwrap();
    drop(conn);
    let store = home_store(dir.path());
    assert_eq!(store.schema_version().unwrap(), 5);
    assert!(!store.studies_to_adopt().unwrap());
    assert_eq!(StudyReads::get_study(&store, "S1").unwrap(), Some(record));
    assert_eq!(store.get_signer("org-a", "ada").unwrap(), None);
    drop(store);
    // An adoption written outside trialport (to have unbound studies bound to the home's organization) is refused.
    let conn = rusqlite::Connection::open(dir.path().join("trialport.db")).unwrap();
    conn.execute(
        "INSERT INTO studies_adoption (id, body, mac) VALUES (1, 'upgrade', NULL)",
        [],
    )
    .unwrap();
    drop(conn);
    let e = home_store(dir.path()).studies_to_adopt().unwrap_err();
    assert_eq!(e.reason(), "integrity_violation", "{e:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Signers' credentials: the row MAC, and the table of versions before schema 4

/// The `signing_credentials` table as versions before schema 4 made it (their password store, outside the store's
/// transactions): one column per field, no body, no MAC. `first` is its first form, without the reset and study
/// columns.
fn old_signers_table(first: bool) -> &'static str {
    if first {
        "CREATE TABLE signing_credentials (org TEXT NOT NULL, subject TEXT NOT NULL, scheme TEXT, \
         iterations INTEGER, salt TEXT, hash TEXT, failures INTEGER NOT NULL DEFAULT 0, locked_at TEXT, \
         updated_at TEXT NOT NULL, PRIMARY KEY (org, subject));"
    } else {
        "CREATE TABLE signing_credentials (org TEXT NOT NULL, subject TEXT NOT NULL, scheme TEXT, \
         iterations INTEGER, salt TEXT, hash TEXT, failures INTEGER NOT NULL DEFAULT 0, locked_at TEXT, \
         updated_at TEXT NOT NULL, reset_at TEXT, reset_by TEXT, studies TEXT, PRIMARY KEY (org, subject));"
    }
}

/// PBKDF2-HMAC-SHA256 of "correct horse battery" with salt 00112233445566778899aabbccddeeff and 1,000
/// iterations, computed by Python's `hashlib.pbkdf2_hmac` (not by trialport).
const OLD_HASH: &str = "7b45bab25588ef932d09a1d56ad6911d7d7c1759dedf18cb663cd6c3034bd67b";
const OLD_SALT: &str = "00112233445566778899aabbccddeeff";

/// Makes `dir/trialport.db` a schema-3 database (what the previous version left) whose `signing_credentials` are
/// of the older form `first` (see [`old_signers_table`]), holding an enrolled signer with a failed attempt, a
/// locked one, and, in the later form, a reset one and a row no record can hold.
fn previous_version_home(dir: &Path, first: bool) {
    drop(home_store(dir));
    let conn = rusqlite::Connection::open(dir.join("trialport.db")).unwrap();
    conn.execute_batch("DROP TABLE signing_credentials; PRAGMA user_version = 3;")
        .unwrap();
    conn.execute_batch(old_signers_table(first)).unwrap();
    let insert = "INSERT INTO signing_credentials (org, subject, scheme, iterations, salt, hash, failures, \
                  locked_at, updated_at) VALUES (?1, ?2, 'pbkdf2-sha256', 1000, ?3, ?4, ?5, ?6, ?7)";
    conn.execute(
        insert,
        rusqlite::params![
            "acme",
            "apikey:aaaaaaaaaaaa",
            OLD_SALT,
            OLD_HASH,
            1,
            None::<String>,
            "2025-01-21T10:00:00.123456789Z"
        ],
    )
    .unwrap();
    conn.execute(
        insert,
        rusqlite::params![
            "acme",
            "bob",
            OLD_SALT,
            OLD_HASH,
            5,
            Some("2025-01-21T11:00:00Z"),
            "2025-01-21T11:00:00Z"
        ],
    )
    .unwrap();
    if !first {
        conn.execute(
            "UPDATE signing_credentials SET studies = '[\"S1\",\"S2\"]' WHERE subject = 'apikey:aaaaaaaaaaaa'",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO signing_credentials (org, subject, failures, updated_at, reset_at, reset_by, studies) \
             VALUES ('acme', 'eve', 0, '2025-01-22T09:00:00Z', '2025-01-22T09:00:00Z', 'apikey:boss', '[\"*\"]')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO signing_credentials (org, subject, hash, failures, updated_at) \
             VALUES ('acme', 'mallory', 'abcd', 0, '2025-01-22T09:00:00Z')",
            [],
        )
        .unwrap();
    }
}

#[test]
fn signing_credentials_of_the_previous_version_become_records() {
    use chrono::{DateTime, Utc};
    let time = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
    for first in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        previous_version_home(dir.path(), first);
        let store = home_store(dir.path());
        assert_eq!(store.schema_version().unwrap(), 5);
        let ada = store
            .get_signer("acme", "apikey:aaaaaaaaaaaa")
            .unwrap()
            .unwrap();
        let hash = ada.password.clone().unwrap();
        assert_eq!(
            (hash.scheme.as_str(), hash.iterations, hash.salt.as_str()),
            ("pbkdf2-sha256", 1000, OLD_SALT)
        );
        assert!(hash.verify("correct horse battery").unwrap());
        assert!(!hash.verify("correct horse batterz").unwrap());
        assert_eq!((ada.failures, ada.locked_at), (1, None));
        assert_eq!(ada.updated_at, time("2025-01-21T10:00:00.123456789Z"));
        let bob = store.get_signer("acme", "bob").unwrap().unwrap();
        assert_eq!(
            (bob.failures, bob.locked_at),
            (5, Some(time("2025-01-21T11:00:00Z")))
        );
        if first {
            assert_eq!((ada.studies, ada.reset_at), (None, None));
        } else {
            assert_eq!(ada.studies, Some(vec!["S1".to_string(), "S2".to_string()]));
            let eve = store.get_signer("acme", "eve").unwrap().unwrap();
            assert_eq!(eve.password, None);
            assert_eq!(
                (eve.reset_at, eve.reset_by.as_deref()),
                (Some(time("2025-01-22T09:00:00Z")), Some("apikey:boss"))
            );
            // A row no record can hold (a hash without salt or iterations) is kept, and refused when read.
            assert_eq!(
                store.get_signer("acme", "mallory").unwrap_err().reason(),
                "corrupt_record"
            );
        }
        drop(store);
        // The old table is gone; opened again, nothing changes.
        let conn = rusqlite::Connection::open(dir.path().join("trialport.db")).unwrap();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'signing%'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(tables, ["signing_credentials"]);
        drop(conn);
        let store = home_store(dir.path());
        assert_eq!(store.get_signer("acme", "bob").unwrap().unwrap(), bob);
    }
}

#[test]
fn an_altered_signer_row_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = home_store(dir.path());
    let ada = conformance::sample_signer("acme", "ada", at(0));
    write(&store, |tx| tx.put_signer(&ada)).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("trialport.db")).unwrap();
    // Clearing a lock by hand (the failures and the lock out of the body) breaks the MAC.
    conn.execute(
        "UPDATE signing_credentials SET body = json_set(body, '$.failures', 0, '$.locked_at', NULL)",
        [],
    )
    .unwrap();
    drop(conn);
    let store = home_store(dir.path());
    let e = store.get_signer("acme", "ada").unwrap_err();
    assert_eq!(
        (e.reason(), e.details()["check"].as_str()),
        ("integrity_violation", Some("row_mac"))
    );
    // A row moved to another signer is refused too.
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("trialport.db")).unwrap();
    conn.execute("DELETE FROM signing_credentials", []).unwrap();
    drop(conn);
    let store = home_store(dir.path());
    write(&store, |tx| tx.put_signer(&ada)).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("trialport.db")).unwrap();
    conn.execute("UPDATE signing_credentials SET subject = 'bob'", [])
        .unwrap();
    drop(conn);
    let store = home_store(dir.path());
    assert_eq!(
        store.get_signer("acme", "bob").unwrap_err().reason(),
        "integrity_violation"
    );
}
