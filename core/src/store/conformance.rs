//! The store conformance suite: the contracts of [`Store`] and of the record operations it carries
//! ([`crate::job::JobRows`], [`crate::job::JobReads`], [`crate::auth::KeyRows`], [`crate::auth::KeyReads`],
//! [`crate::signer::SignerRows`], [`crate::signer::SignerReads`], [`crate::audit::AuditRows`],
//! [`crate::audit::AuditReads`]) stated as code.
//!
//! Every store implementation must pass every check. Each check is a public function that takes a **fresh, empty**
//! store and panics (with a message naming what went wrong) when the store breaks its contract, so a test can run
//! one check per `#[test]` and a failure names the check. [`run_all`] runs every check of [`CHECKS`] against a new
//! store from a factory and panics at the end with the names of all checks that failed.
//!
//! ```no_run
//! use trialport_core::store::{conformance, MemoryStore};
//! conformance::run_all(&|| conformance::Stores::from_one(MemoryStore::new()));
//! ```
//!
//! The `*_across` variants take several stores that share one backing database (for example two
//! `SqliteStore::open` on the same file) and spread their threads over them, to check that transactions are
//! isolated across connections as well.
//!
//! The checks use the helpers [`sample_job`], [`sample_key`], [`sample_signer`] and [`sample_event`] to build
//! records, and fixed times from [`base_time`] spaced out so every ordering is deterministic.

use super::{Store, Tx};
use crate::access::Role;
use crate::audit::{Actor, AuditEvent, Outcome, GENESIS_HASH};
use crate::auth::ApiKeyRecord;
use crate::error::Reason;
use crate::error::{Error, ErrorCode, Result};
use crate::job::{Artifact, FinishedQuery, Job, JobKind, JobQuery, JobState, Lease, Progress};
use crate::signer::{PasswordHash, SignerCredential, PASSWORD_SCHEME};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use std::collections::HashSet;
use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use uuid::Uuid;

/// The store one check runs against.
#[derive(Clone)]
pub struct Stores {
    /// The store.
    pub store: Arc<dyn Store>,
}

impl Stores {
    /// A store to check.
    pub fn from_one<S: Store + 'static>(store: S) -> Self {
        Stores {
            store: Arc::new(store),
        }
    }
}

/// One named check of the suite.
#[derive(Clone, Copy)]
pub struct Check {
    /// The check's name: the name of its function.
    pub name: &'static str,
    /// Runs the check against a fresh, empty store; panics on failure.
    pub run: fn(&Stores),
}

/// Every check, in the order [`run_all`] runs them.
pub const CHECKS: &[Check] = &[
    Check {
        name: "jobs_insert_get",
        run: |s| jobs_insert_get(&*s.store),
    },
    Check {
        name: "jobs_update_is_conditional",
        run: |s| jobs_update_is_conditional(&*s.store),
    },
    Check {
        name: "jobs_list_filters",
        run: |s| jobs_list_filters(&*s.store),
    },
    Check {
        name: "jobs_list_pagination",
        run: |s| jobs_list_pagination(&*s.store),
    },
    Check {
        name: "jobs_idempotency",
        run: |s| jobs_idempotency(&*s.store),
    },
    Check {
        name: "jobs_claim_order",
        run: |s| jobs_claim_order(&*s.store),
    },
    Check {
        name: "jobs_concurrent_claims",
        run: |s| jobs_concurrent_claims(&*s.store),
    },
    Check {
        name: "jobs_expired_leases",
        run: |s| jobs_expired_leases(&*s.store),
    },
    Check {
        name: "jobs_list_finished",
        run: |s| jobs_list_finished(&*s.store),
    },
    Check {
        name: "jobs_list_finished_walk",
        run: |s| jobs_list_finished_walk(&*s.store),
    },
    Check {
        name: "keys_contract",
        run: |s| keys_contract(&*s.store),
    },
    Check {
        name: "signers_contract",
        run: |s| signers_contract(&*s.store),
    },
    Check {
        name: "studies_contract",
        run: |s| studies_contract(&*s.store),
    },
    Check {
        name: "audit_append_and_read",
        run: |s| audit_append_and_read(&*s.store),
    },
    Check {
        name: "audit_concurrent_appends",
        run: |s| audit_concurrent_appends(&*s.store),
    },
    Check {
        name: "transactions_are_atomic",
        run: |s| transactions_are_atomic(&*s.store),
    },
    Check {
        name: "transactions_read_their_writes",
        run: |s| transactions_read_their_writes(&*s.store),
    },
];

/// Runs every check of [`CHECKS`], each against a new store from `make`, and panics after the last one if any
/// failed, naming every failed check and its message.
///
/// # Panics
/// When a check fails.
pub fn run_all(make: &dyn Fn() -> Stores) {
    let mut failures = Vec::new();
    for check in CHECKS {
        let stores = make();
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (check.run)(&stores))) {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".to_string());
            failures.push(format!("{}: {message}", check.name));
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} store conformance check(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

/// A fixed time (2025-01-21T10:00:00.123456789Z) from which the checks space out their records.
pub fn base_time() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
        + Duration::seconds(1_737_453_600)
        + Duration::nanoseconds(123_456_789)
}

/// `base_time() + secs` seconds.
pub fn at(secs: i64) -> DateTime<Utc> {
    base_time() + Duration::seconds(secs)
}

/// A queued job (version 1, a new UUIDv7, no idempotency key) with every other field filled in, so a round trip
/// through a store checks them all.
pub fn sample_job(org: &str, study: &str, requested_by: &str, created_at: DateTime<Utc>) -> Job {
    Job {
        id: Uuid::now_v7(),
        kind: JobKind::Data,
        study: study.to_string(),
        org: org.to_string(),
        requested_by: requested_by.to_string(),
        requested_by_name: format!("{requested_by} (printed name)"),
        request: json!({"study": study, "datasets": ["dm", "ae"], "format": "csv",
            "options": {"zip": false, "nested": {"b": 1, "a": [1, 2, 3]}}}),
        format: "csv".to_string(),
        state: JobState::Queued,
        progress: Progress {
            rows_written: 0,
            bytes_written: 0,
            datasets_done: 0,
            datasets_total: 2,
        },
        created_at,
        started_at: None,
        finished_at: None,
        artifacts: Vec::new(),
        error: None,
        idempotency_key: None,
        request_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
            .to_string(),
        cancel_requested: false,
        attempt: 0,
        lease: None,
        version: 1,
        identifiable: true,
        succeeded_seq: Some(42),
        literals: Some("p1.00.00".into()),
    }
}

/// An API key record of `org` created at `created_at`, not revoked.
pub fn sample_key(key_id: &str, org: &str, created_at: DateTime<Utc>) -> ApiKeyRecord {
    ApiKeyRecord {
        key_id: key_id.to_string(),
        secret_hash: format!("{:0>64}", key_id),
        name: format!("key {key_id}"),
        org: org.to_string(),
        roles: vec![Role::DataManager, Role::Auditor],
        studies: vec!["S1".to_string(), "S2".to_string()],
        created_by: "alice".to_string(),
        created_at,
        expires_at: Some(created_at + Duration::days(90)),
        revoked_at: None,
    }
}

/// A signer's credential of `org` and `subject` with every field set (a password hash, failed attempts, a lock,
/// a reset, studies, times with nanoseconds), so a round trip through a store checks them all.
pub fn sample_signer(org: &str, subject: &str, at: DateTime<Utc>) -> SignerCredential {
    SignerCredential {
        org: org.to_string(),
        subject: subject.to_string(),
        password: Some(PasswordHash {
            scheme: PASSWORD_SCHEME.to_string(),
            iterations: 1_000,
            salt: "000102030405060708090a0b0c0d0e0f".to_string(),
            hash: format!("{:0>64}", "5ac"),
        }),
        failures: 2,
        locked_at: Some(at + Duration::nanoseconds(1)),
        reset_at: Some(at + Duration::seconds(1)),
        reset_by: Some("apikey:0123456789ab".to_string()),
        studies: Some(vec!["S1".to_string(), "Études \"2\"".to_string()]),
        updated_at: at + Duration::seconds(2),
    }
}

/// An audit event with sequence number `seq` chained to `prev_hash`, its hash computed: every member set (the
/// study on odd sequence numbers only), with escapes, non-ASCII text and a fraction in its name and details.
pub fn sample_event(seq: u64, prev_hash: &str) -> AuditEvent {
    let mut event = AuditEvent {
        seq,
        event_id: Uuid::now_v7(),
        timestamp: base_time() + Duration::milliseconds(i64::try_from(seq).unwrap_or(0)),
        actor: Actor {
            subject: "apikey:0123456789ab".to_string(),
            name: "Alice Ex\u{e4}mple \"A\"".to_string(),
            org: "org-a".to_string(),
        },
        org: "org-a".to_string(),
        study: (seq % 2 == 1).then(|| "S1".to_string()),
        action: "export_data".to_string(),
        target: "study:S1".to_string(),
        outcome: Outcome::Success,
        details: json!({"datasets": ["dm"], "n": seq, "ratio": 0.5, "note": "line\nbreak \u{1F600}"}),
        request_id: format!("req_{seq:06}"),
        prev_hash: prev_hash.to_string(),
        hash: String::new(),
    };
    event.hash = event.compute_hash();
    event
}

/// The value of an `Ok`, or a panic naming `what` and the error.
fn ok<T>(result: Result<T>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error: {e}"),
    }
}

/// Panics unless `result` is an error with `code` (and `reason`, when given).
fn fails<T: Debug>(result: Result<T>, code: ErrorCode, reason: Option<&str>, what: &str) {
    match result {
        Ok(v) => panic!("{what}: expected {code} but it succeeded with {v:?}"),
        Err(e) => {
            assert_eq!(e.code(), code, "{what}: wrong error code in {e}");
            if let Some(reason) = reason {
                assert_eq!(e.reason(), reason, "{what}: wrong error reason in {e}");
            }
        }
    }
}

/// One case of [`jobs_list_filters`]: organization, studies, state, expected total.
type ListCase<'a> = (&'a str, Option<&'a [&'a str]>, Option<JobState>, usize);

fn query(org: &str, page: u32, limit: u32) -> JobQuery {
    JobQuery {
        org: org.to_string(),
        studies: None,
        state: None,
        page,
        limit,
    }
}

fn ids(jobs: &[Job]) -> Vec<Uuid> {
    jobs.iter().map(|j| j.id).collect()
}

/// Runs `work` in one transaction with no witness; returns what it returned.
///
/// # Errors
/// The errors of `work` and of the store.
pub fn write<T>(store: &dyn Store, mut work: impl FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
    let mut out = None;
    store.write(
        &mut |tx| {
            out = Some(work(tx)?);
            Ok(())
        },
        &|_| Ok(()),
    )?;
    out.ok_or_else(|| Error::server(Reason::Internal, "the transaction returned nothing"))
}

fn insert(store: &dyn Store, job: &Job) -> Result<Job> {
    write(store, |tx| tx.insert_job(job))
}

fn update(store: &dyn Store, job: &Job) -> Result<Job> {
    write(store, |tx| tx.update_job(job))
}

/// Claims the oldest queued job in one transaction: running, started at `now`, version incremented (what the
/// engine's claim does with these operations, without the lease).
fn claim(store: &dyn Store, now: DateTime<Utc>) -> Result<Option<Job>> {
    write(store, |tx| {
        let Some(mut job) = tx.oldest_queued()? else {
            return Ok(None);
        };
        job.transition(JobState::Running, now)?;
        Ok(Some(tx.update_job(&job)?))
    })
}

fn append(store: &dyn Store, event: &AuditEvent) -> Result<()> {
    write(store, |tx| tx.stage_event(event))
}

/// Inserts `job` and checks the returned copy is the job at version 1.
fn insert_new(store: &dyn Store, job: &Job) -> Job {
    let stored = ok(insert(store, job), "insert");
    assert_eq!(stored.id, job.id, "insert returned another job");
    assert_eq!(stored.version, 1, "a new job has version 1");
    stored
}

// ---------------------------------------------------------------------------------------------------------------
// Jobs

/// `insert` stores every field and sets version 1; `get` returns it; an unknown id is EXP001; a second insert of
/// the same id is EXP004.
///
/// # Panics
/// When the store breaks the contract.
pub fn jobs_insert_get(store: &dyn Store) {
    fails(
        store.get_job(Uuid::now_v7()),
        ErrorCode::NotFound,
        None,
        "get of an unknown id in an empty store",
    );
    let mut job = sample_job("org-a", "S1", "alice", at(0));
    // Every optional field set, so the round trip covers them all.
    job.kind = JobKind::Bulk;
    job.state = JobState::Succeeded;
    job.started_at = Some(at(1) + Duration::nanoseconds(7));
    job.finished_at = Some(at(2));
    job.progress = Progress {
        rows_written: 1234,
        bytes_written: 56789,
        datasets_done: 2,
        datasets_total: 2,
    };
    job.artifacts = vec![
        Artifact {
            name: "dm.csv".into(),
            media_type: "text/csv".into(),
            bytes: 100,
            sha256: "ab".repeat(32),
            rows: Some(10),
        },
        Artifact {
            name: "manifest.json".into(),
            media_type: "application/json".into(),
            bytes: 50,
            sha256: "cd".repeat(32),
            rows: None,
        },
    ];
    job.error =
        Some(json!({"code": "EXP005", "message": "x", "field": null, "details": {"reason": "y"}}));
    job.idempotency_key = Some("key-1".into());
    job.cancel_requested = true;
    job.version = 7;

    let stored = insert_new(store, &job);
    let mut expected = job.clone();
    expected.version = 1;
    assert_eq!(
        stored, expected,
        "insert must return the job as given, at version 1"
    );
    assert_eq!(
        ok(store.get_job(job.id), "get"),
        expected,
        "get must return every field as inserted"
    );

    let other = sample_job("org-a", "S1", "alice", at(3));
    insert_new(store, &other);
    assert_eq!(ok(store.get_job(other.id), "get other").id, other.id);
    assert_eq!(ok(store.get_job(job.id), "get first again"), expected);

    fails(
        store.get_job(Uuid::now_v7()),
        ErrorCode::NotFound,
        Some("not_found"),
        "get of an unknown id",
    );
    let mut dup = sample_job("org-a", "S2", "bob", at(4));
    dup.id = job.id;
    fails(
        insert(store, &dup),
        ErrorCode::Conflict,
        None,
        "insert of an existing id",
    );
    assert_eq!(
        ok(store.get_job(job.id), "get after duplicate insert"),
        expected,
        "a refused insert must not change the stored job"
    );
}

/// `update` is conditional on the version, increments it, and rejects stale or unknown jobs.
///
/// # Panics
/// When the store breaks the contract.
pub fn jobs_update_is_conditional(store: &dyn Store) {
    let job = insert_new(store, &sample_job("org-a", "S1", "alice", at(0)));
    let stale = job.clone();

    let mut running = job.clone();
    ok(running.transition(JobState::Running, at(10)), "transition");
    running.progress.rows_written = 10;
    let v2 = ok(update(store, &running), "update at the current version");
    assert_eq!(v2.version, 2, "update increments the version");
    assert_eq!(v2.state, JobState::Running);
    assert_eq!(v2.progress.rows_written, 10);
    assert_eq!(v2.started_at, Some(at(10)));
    assert_eq!(
        ok(store.get_job(job.id), "get after update"),
        v2,
        "get sees the update"
    );

    let mut stale_change = stale.clone();
    stale_change.progress.rows_written = 999;
    fails(
        update(store, &stale_change),
        ErrorCode::Conflict,
        Some("version_conflict"),
        "update with a stale version",
    );
    let mut ahead = v2.clone();
    ahead.version = 99;
    fails(
        update(store, &ahead),
        ErrorCode::Conflict,
        Some("version_conflict"),
        "update with a version ahead of the stored one",
    );
    assert_eq!(
        ok(store.get_job(job.id), "get after stale updates"),
        v2,
        "a rejected update must not change the job"
    );

    let mut current = v2;
    for expected in 3..=5u64 {
        current.progress.rows_written += 1;
        current = ok(update(store, &current), "successive update");
        assert_eq!(current.version, expected, "versions increment by one");
    }
    assert_eq!(
        ok(store.get_job(job.id), "get after successive updates"),
        current
    );

    let mut unknown = sample_job("org-a", "S1", "alice", at(1));
    unknown.version = 1;
    fails(
        update(store, &unknown),
        ErrorCode::NotFound,
        None,
        "update of an unknown id",
    );
    fails(
        store.get_job(unknown.id),
        ErrorCode::NotFound,
        None,
        "an update of an unknown id must not create it",
    );
}

/// `list` filters by organization, studies and state, with totals.
///
/// # Panics
/// When the store breaks the contract.
pub fn jobs_list_filters(store: &dyn Store) {
    let mut all: Vec<Job> = Vec::new();
    let mut t = 0;
    let mut add = |org: &str, study: &str, state: JobState, n: usize| {
        for _ in 0..n {
            let mut job = sample_job(org, study, "alice", at(t));
            t += 1;
            job.state = state;
            all.push(insert_new(store, &job));
        }
    };
    add("org-a", "S1", JobState::Queued, 3);
    add("org-a", "S2", JobState::Running, 2);
    add("org-a", "S3", JobState::Succeeded, 1);
    add("org-b", "S1", JobState::Queued, 4);
    add("org-a", "S1", JobState::Failed, 1);

    let expect = |org: &str, studies: Option<&[&str]>, state: Option<JobState>| -> Vec<Uuid> {
        let mut v: Vec<&Job> = all
            .iter()
            .filter(|j| j.org == org)
            .filter(|j| studies.is_none_or(|s| s.contains(&j.study.as_str())))
            .filter(|j| state.is_none_or(|s| j.state == s))
            .collect();
        v.sort_by_key(|j| std::cmp::Reverse((j.created_at, j.id)));
        v.into_iter().map(|j| j.id).collect()
    };
    let cases: Vec<ListCase<'_>> = vec![
        ("org-a", None, None, 7),
        ("org-b", None, None, 4),
        ("org-c", None, None, 0),
        ("org-a", Some(&["S1", "S3"]), None, 5),
        ("org-a", Some(&["S2"]), None, 2),
        ("org-a", Some(&["S9"]), None, 0),
        ("org-a", Some(&[]), None, 0),
        ("org-a", None, Some(JobState::Queued), 3),
        ("org-a", None, Some(JobState::Running), 2),
        ("org-a", None, Some(JobState::Cancelled), 0),
        ("org-a", Some(&["S2"]), Some(JobState::Running), 2),
        ("org-a", Some(&["S1"]), Some(JobState::Running), 0),
        ("org-a", Some(&["S1", "S2"]), Some(JobState::Failed), 1),
        ("org-b", Some(&["S1"]), Some(JobState::Queued), 4),
    ];
    for (org, studies, state, n) in cases {
        let q = JobQuery {
            org: org.to_string(),
            studies: studies.map(|s| s.iter().map(|x| x.to_string()).collect()),
            state,
            page: 1,
            limit: 100,
        };
        let page = ok(store.list_jobs(&q), "list");
        let what = format!("list {q:?}");
        assert_eq!(page.total, n as u64, "{what}: total");
        assert_eq!(
            ids(&page.items),
            expect(org, studies, state),
            "{what}: items, newest first"
        );
        assert_eq!(
            (page.page, page.limit),
            (1, 100),
            "{what}: page and limit echoed"
        );
        for item in &page.items {
            let stored = all.iter().find(|j| j.id == item.id);
            assert_eq!(
                Some(item),
                stored,
                "{what}: listed jobs are the stored jobs"
            );
        }
    }
}

/// `list` pages: 45 jobs by 20 are pages of 20, 20 and 5, newest first, with no overlap; equal creation times
/// order by id, descending.
///
/// # Panics
/// When the store breaks the contract.
pub fn jobs_list_pagination(store: &dyn Store) {
    let mut jobs: Vec<Job> = (0..45)
        .map(|i| sample_job("org-p", "S1", "alice", at(i)))
        .collect();
    // Insert out of order so the store must sort.
    for k in 0..45 {
        insert_new(store, &jobs[(k * 7) % 45]);
    }
    jobs.sort_by_key(|j| std::cmp::Reverse(j.created_at));
    let expected = ids(&jobs);

    let mut seen = Vec::new();
    for (page, size) in [(1u32, 20usize), (2, 20), (3, 5), (4, 0)] {
        let result = ok(store.list_jobs(&query("org-p", page, 20)), "list page");
        assert_eq!(result.total, 45, "page {page}: total");
        assert_eq!(
            (result.page, result.limit),
            (page, 20),
            "page {page}: echoed"
        );
        assert_eq!(result.items.len(), size, "page {page}: number of items");
        seen.extend(ids(&result.items));
    }
    assert_eq!(
        seen, expected,
        "pages concatenated are every job, newest first, each once"
    );
    let unique: HashSet<Uuid> = seen.iter().copied().collect();
    assert_eq!(unique.len(), 45, "no job on two pages");

    let one = ok(store.list_jobs(&query("org-p", 2, 7)), "list page 2 by 7");
    assert_eq!(ids(&one.items), expected[7..14].to_vec(), "page 2 by 7");

    // Ties on created_at: id descending.
    let tie: Vec<Job> = (0..3)
        .map(|_| sample_job("org-t", "S1", "alice", at(100)))
        .collect();
    for job in tie.iter().rev() {
        insert_new(store, job);
    }
    let mut tie_ids = ids(&tie);
    tie_ids.sort();
    tie_ids.reverse();
    let result = ok(store.list_jobs(&query("org-t", 1, 10)), "list ties");
    assert_eq!(
        ids(&result.items),
        tie_ids,
        "equal creation times order by id descending"
    );
}

/// Idempotency keys: `job_by_idempotency_key` finds the job of an organization's requester with a key; a second
/// job with the same organization, requester and key is EXP004 `idempotency_conflict` (whatever its request), and
/// the key is scoped to organization and requester.
///
/// # Panics
/// When the store breaks the contract.
pub fn jobs_idempotency(store: &dyn Store) {
    let keyed = |org: &str, who: &str, key: &str, hash: &str, t: i64| {
        let mut job = sample_job(org, "S1", who, at(t));
        job.idempotency_key = Some(key.to_string());
        job.request_hash = hash.to_string();
        job
    };
    let find = |org: &str, who: &str, key: &str| {
        ok(
            write(store, |tx| tx.job_by_idempotency_key(org, who, key)),
            "find by idempotency key",
        )
    };
    let h1 = "11".repeat(32);
    let h2 = "22".repeat(32);
    assert_eq!(find("org-a", "alice", "k1"), None, "nothing keyed yet");
    let first = insert_new(store, &keyed("org-a", "alice", "k1", &h1, 0));
    assert_eq!(find("org-a", "alice", "k1"), Some(first.clone()));

    for hash in [&h1, &h2] {
        let again = keyed("org-a", "alice", "k1", hash, 1);
        fails(
            insert(store, &again),
            ErrorCode::Conflict,
            Some("idempotency_conflict"),
            "a second job with the same key",
        );
        fails(
            store.get_job(again.id),
            ErrorCode::NotFound,
            None,
            "a refused job must not be stored",
        );
    }

    let other_requester = insert_new(store, &keyed("org-a", "bob", "k1", &h2, 3));
    let other_org = insert_new(store, &keyed("org-b", "alice", "k1", &h2, 4));
    let other_key = insert_new(store, &keyed("org-a", "alice", "k2", &h1, 5));
    for j in [&other_requester, &other_org, &other_key] {
        assert_eq!(ok(store.get_job(j.id), "get scoped job").id, j.id);
    }
    assert_eq!(find("org-a", "bob", "k1"), Some(other_requester));
    assert_eq!(find("org-b", "alice", "k1"), Some(other_org));

    // Without a key, identical requests are separate jobs.
    let plain1 = insert_new(store, &sample_job("org-a", "S1", "alice", at(6)));
    let plain2 = insert_new(store, &sample_job("org-a", "S1", "alice", at(7)));
    assert_ne!(plain1.id, plain2.id);
    assert_eq!(
        ok(store.list_jobs(&query("org-a", 1, 100)), "list org-a").total,
        5,
        "org-a holds the first job, bob's, k2 and the two unkeyed jobs"
    );

    // The key is found on the job as it is now, not as first inserted.
    let mut running = first.clone();
    ok(running.transition(JobState::Running, at(20)), "transition");
    let running = ok(update(store, &running), "update keyed job");
    assert_eq!(find("org-a", "alice", "k1"), Some(running));
}

/// `oldest_queued` is the oldest queued job (created_at, then id), skipping jobs in other states: claiming it in a
/// transaction (running, `started_at = now`, version incremented) goes through the queue in that order.
///
/// # Panics
/// When the store breaks the contract.
pub fn jobs_claim_order(store: &dyn Store) {
    assert_eq!(
        ok(claim(store, at(1000)), "claim from an empty store"),
        None,
        "nothing to claim in an empty store"
    );
    // Older jobs that are not queued must be skipped.
    for (i, state) in [JobState::Running, JobState::Succeeded, JobState::Cancelled]
        .into_iter()
        .enumerate()
    {
        let mut job = sample_job("org-a", "S1", "alice", at(i as i64 - 10));
        job.state = state;
        insert_new(store, &job);
    }
    let t1 = sample_job("org-a", "S1", "alice", at(1));
    let t2 = sample_job("org-b", "S2", "bob", at(2));
    let t3 = sample_job("org-a", "S1", "alice", at(3));
    let tie_a = sample_job("org-a", "S1", "alice", at(0));
    let tie_b = sample_job("org-a", "S1", "alice", at(0));
    let (tie_lo, tie_hi) = if tie_a.id < tie_b.id {
        (tie_a, tie_b)
    } else {
        (tie_b, tie_a)
    };
    for job in [&t3, &tie_hi, &t1, &tie_lo, &t2] {
        insert_new(store, job);
    }
    for (n, expected) in [&tie_lo, &tie_hi, &t1, &t2, &t3].into_iter().enumerate() {
        let now = at(1000 + n as i64);
        let claimed = ok(claim(store, now), "claim");
        let Some(claimed) = claimed else {
            panic!("claim {n}: no job claimed but queued jobs remain");
        };
        let mut want = expected.clone();
        want.state = JobState::Running;
        want.started_at = Some(now);
        want.version = 2;
        assert_eq!(
            claimed, want,
            "claim {n}: the oldest queued job, running, started now, version 2"
        );
        assert_eq!(
            ok(store.get_job(want.id), "get claimed"),
            want,
            "claim {n}: stored"
        );
    }
    assert_eq!(
        ok(claim(store, at(2000)), "claim when none is queued"),
        None,
        "no queued job left"
    );
}

/// A job of `org` in `state`, created at `at(created)` and finished at `finished` (`None`: not finished).
fn finished_job(org: &str, state: JobState, created: i64, finished: Option<DateTime<Utc>>) -> Job {
    let mut job = sample_job(org, "S1", "alice", at(created));
    job.state = state;
    job.started_at = finished.map(|_| at(created));
    job.finished_at = finished;
    job
}

fn finished_query(
    state: JobState,
    finished_by: DateTime<Utc>,
    after: Option<&Job>,
    limit: u32,
) -> FinishedQuery {
    FinishedQuery {
        state,
        finished_by,
        after: after.map(|j| (j.finished_at.unwrap_or(finished_by), j.id)),
        limit,
    }
}

/// The ids of `jobs` in `state` finished at or before `by`, sorted by (finished_at, id): the contract computed
/// from the jobs themselves.
fn expected_finished(jobs: &[Job], state: JobState, by: DateTime<Utc>) -> Vec<Uuid> {
    let mut keys: Vec<(DateTime<Utc>, Uuid)> = jobs
        .iter()
        .filter(|j| j.state == state)
        .filter_map(|j| j.finished_at.map(|f| (f, j.id)))
        .filter(|(f, _)| *f <= by)
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, id)| id).collect()
}

/// `list_finished`: across every organization, only the given state, only `finished_at <= finished_by` (to the
/// nanosecond, jobs without `finished_at` never), oldest first by (`finished_at`, `id`), at most `limit`, after
/// the cursor (inside a tie too); `update` moves a job in and out of the listing; a limit outside 1..=1000 is
/// EXP002 `invalid_limit`.
///
/// # Panics
/// When the store breaks the contract.
pub fn jobs_list_finished(store: &dyn Store) {
    let by = at(1000);
    let q = finished_query;
    assert_eq!(
        ok(
            store.list_finished(&q(JobState::Succeeded, by, None, 10)),
            "list_finished of an empty store"
        ),
        Vec::<Job>::new(),
        "nothing finished in an empty store"
    );
    for limit in [0, 1001, u32::MAX] {
        fails(
            store.list_finished(&q(JobState::Succeeded, by, None, limit)),
            ErrorCode::Validation,
            Some("invalid_limit"),
            "list_finished with a limit outside 1..=1000",
        );
    }
    let ns = Duration::nanoseconds(1);
    let mut jobs = Vec::new();
    // Three organizations, every state; finished times out of creation order.
    for (i, org) in ["org-a", "org-b", "org-c"].into_iter().enumerate() {
        let i = i as i64;
        jobs.push(finished_job(
            org,
            JobState::Succeeded,
            i,
            Some(at(500 - i * 100)),
        ));
        jobs.push(finished_job(
            org,
            JobState::Succeeded,
            10 + i,
            Some(at(900 + i * 50)),
        ));
        jobs.push(finished_job(
            org,
            JobState::Failed,
            20 + i,
            Some(at(100 + i)),
        ));
        jobs.push(finished_job(
            org,
            JobState::Cancelled,
            30 + i,
            Some(at(200 + i)),
        ));
        jobs.push(finished_job(
            org,
            JobState::Expired,
            40 + i,
            Some(at(300 + i)),
        ));
        jobs.push(finished_job(org, JobState::Queued, 50 + i, None));
        jobs.push(finished_job(org, JobState::Running, 60 + i, None));
    }
    // The bound to the nanosecond: at `by` is in, one nanosecond later is out.
    let on_bound = finished_job("org-d", JobState::Succeeded, 70, Some(by));
    let past_bound = finished_job("org-d", JobState::Succeeded, 71, Some(by + ns));
    let in_ns = finished_job("org-d", JobState::Succeeded, 72, Some(at(400) + ns));
    jobs.extend([on_bound.clone(), past_bound.clone(), in_ns.clone()]);
    // Three succeeded jobs finished at the same time (ordered by id).
    let ties: Vec<Job> = (0..3)
        .map(|k| finished_job("org-e", JobState::Succeeded, 80 + k, Some(at(600))))
        .collect();
    jobs.extend(ties.iter().cloned());
    // A succeeded job without finished_at (written by hand): never listed.
    jobs.push(finished_job("org-f", JobState::Succeeded, 90, None));
    for k in 0..jobs.len() {
        insert_new(store, &jobs[(k * 5) % jobs.len()]);
    }

    for state in [
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Expired,
    ] {
        for by in [at(0), at(300), at(400) + ns, at(600), by, by + ns, at(5000)] {
            let got = ok(
                store.list_finished(&q(state, by, None, 1000)),
                "list_finished",
            );
            assert_eq!(
                ids(&got),
                expected_finished(&jobs, state, by),
                "{state} jobs finished by {by}: every organization, oldest first by (finished_at, id)"
            );
            for job in &got {
                assert_eq!(
                    job,
                    &ok(store.get_job(job.id), "get"),
                    "listed jobs are whole"
                );
            }
        }
    }
    let all = expected_finished(&jobs, JobState::Succeeded, by);
    assert!(
        all.contains(&on_bound.id),
        "a job finished exactly at the bound is listed"
    );
    assert!(
        !all.contains(&past_bound.id),
        "a job finished a nanosecond after the bound is not"
    );
    assert_eq!(all.len(), 11, "the oracle's own count");
    for queued in [JobState::Queued, JobState::Running] {
        assert_eq!(
            ok(
                store.list_finished(&q(queued, at(5000), None, 1000)),
                "list unfinished"
            ),
            Vec::<Job>::new(),
            "jobs without finished_at are never listed ({queued})"
        );
    }

    // The limit, and the cursor: after each listed job, the rest.
    let first = ok(
        store.list_finished(&q(JobState::Succeeded, by, None, 4)),
        "first 4",
    );
    assert_eq!(ids(&first), all[..4].to_vec(), "the oldest 4");
    let got_all = ok(
        store.list_finished(&q(JobState::Succeeded, by, None, 1000)),
        "all",
    );
    for (n, job) in got_all.iter().enumerate() {
        let rest = ok(
            store.list_finished(&q(JobState::Succeeded, by, Some(job), 1000)),
            "after a job",
        );
        assert_eq!(
            ids(&rest),
            all[n + 1..].to_vec(),
            "after job {n} (ties included)"
        );
    }
    // A cursor that is no stored job: a position in the order, between ties by id.
    let mut tie_ids = ids(&ties);
    tie_ids.sort();
    let mid = FinishedQuery {
        state: JobState::Succeeded,
        finished_by: by,
        after: Some((at(600), tie_ids[0])),
        limit: 2,
    };
    assert_eq!(
        ids(&ok(store.list_finished(&mid), "after the first tie")),
        tie_ids[1..].to_vec(),
        "after (t, id): the jobs finished at t with a greater id first"
    );

    // `update` moves jobs in and out: a running job that succeeds, a succeeded job that expires.
    let mut running = ok(store.get_job(jobs[6].id), "get running");
    running.state = JobState::Succeeded;
    running.finished_at = Some(at(450));
    let running = ok(update(store, &running), "succeed a running job");
    let mut expiring = ok(store.get_job(all[0]), "get the oldest succeeded");
    expiring.state = JobState::Expired;
    ok(update(store, &expiring), "expire a job");
    let mut want = all[1..].to_vec();
    let pos = want
        .iter()
        .position(|id| ok(store.get_job(*id), "get").finished_at > Some(at(450)))
        .unwrap_or(want.len());
    want.insert(pos, running.id);
    assert_eq!(
        ids(&ok(
            store.list_finished(&q(JobState::Succeeded, by, None, 1000)),
            "after updates"
        )),
        want,
        "updates move jobs in and out of the listing, in order"
    );
    assert!(
        ids(&ok(
            store.list_finished(&q(JobState::Expired, by, None, 1000)),
            "expired"
        ))
        .contains(&all[0]),
        "the expired job is listed as expired"
    );
}

/// Walking `list_finished` page by page with the cursor visits every matching job once, oldest first, even while
/// the walker moves each listed job out of the state (as the retention sweep does) and while other jobs finish.
///
/// # Panics
/// When the store breaks the contract.
pub fn jobs_list_finished_walk(store: &dyn Store) {
    let mut jobs = Vec::new();
    for i in 0..250i64 {
        // Finished times repeat (ties across organizations), created out of order.
        let org = ["org-a", "org-b", "org-c", "org-d"][(i % 4) as usize];
        jobs.push(finished_job(
            org,
            JobState::Succeeded,
            (i * 37) % 250,
            Some(at(i / 3)),
        ));
    }
    for job in &jobs {
        insert_new(store, job);
    }
    let by = at(60);
    let want = expected_finished(&jobs, JobState::Succeeded, by);
    assert_eq!(want.len(), 183, "the oracle's own count");
    let mut seen = Vec::new();
    let mut after: Option<Job> = None;
    let mut pages = 0;
    loop {
        let page = ok(
            store.list_finished(&finished_query(JobState::Succeeded, by, after.as_ref(), 7)),
            "a page",
        );
        pages += 1;
        assert!(page.len() <= 7, "a page holds at most the limit");
        seen.extend(ids(&page));
        // Expire every other job of the page, keeping the last: the cursor must not skip or repeat anything.
        for job in page.iter().skip(1).step_by(2) {
            let mut expired = job.clone();
            expired.state = JobState::Expired;
            ok(update(store, &expired), "expire a listed job");
        }
        // A job finishing now, after the bound, is not part of the walk.
        let late = finished_job(
            "org-z",
            JobState::Succeeded,
            1000 + pages,
            Some(by + Duration::seconds(1)),
        );
        insert_new(store, &late);
        let Some(last) = page.last() else { break };
        if page.len() < 7 {
            break;
        }
        after = Some(last.clone());
        assert!(pages < 100, "the walk ends");
    }
    assert_eq!(seen, want, "the walk visits every job once, oldest first");
    assert_eq!(
        pages, 27,
        "183 jobs in pages of 7: 26 full pages and one of 1"
    );
}

/// Eight threads claiming 200 queued jobs never get the same job twice and together get all 200.
///
/// # Panics
/// When the store breaks the contract.
pub fn jobs_concurrent_claims(store: &dyn Store) {
    concurrent_claims_across(&[store]);
}

/// [`jobs_concurrent_claims`] with the eight threads spread over `stores`, which must share one database; jobs are
/// inserted through the first.
///
/// # Panics
/// When the stores break the contract, or `stores` is empty.
pub fn concurrent_claims_across(stores: &[&dyn Store]) {
    const JOBS: usize = 200;
    const THREADS: usize = 8;
    assert!(!stores.is_empty(), "at least one store");
    let jobs: Vec<Job> = (0..JOBS)
        .map(|i| sample_job("org-c", "S1", "alice", at(i as i64)))
        .collect();
    for job in &jobs {
        insert_new(stores[0], job);
    }
    let now = at(10_000);
    let claimed: Vec<Vec<Job>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = stores[t % stores.len()];
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    while let Some(job) = ok(claim(store, now), "concurrent claim") {
                        mine.push(job);
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(v) => v,
                Err(_) => panic!("a claiming thread panicked"),
            })
            .collect()
    });
    let all: Vec<&Job> = claimed.iter().flatten().collect();
    let unique: HashSet<Uuid> = all.iter().map(|j| j.id).collect();
    assert_eq!(unique.len(), all.len(), "a job was claimed twice");
    assert_eq!(all.len(), JOBS, "every queued job is claimed exactly once");
    let expected: HashSet<Uuid> = ids(&jobs).into_iter().collect();
    assert_eq!(unique, expected, "the claimed jobs are the inserted ones");
    for job in &all {
        assert_eq!(job.state, JobState::Running);
        assert_eq!(job.version, 2, "claimed once: version 2");
    }
    let running = JobQuery {
        state: Some(JobState::Running),
        ..query("org-c", 1, 1)
    };
    assert_eq!(
        ok(stores[0].list_jobs(&running), "list running").total,
        JOBS as u64
    );
    assert_eq!(ok(claim(stores[0], now), "claim after all"), None);
}

/// `expired_leases` returns the running jobs whose lease expires at or before `now` (and running jobs without a
/// lease), soonest expiry first, at most `limit`; queued and finished jobs and unexpired leases never.
///
/// # Panics
/// When the store breaks the contract.
pub fn jobs_expired_leases(store: &dyn Store) {
    let expired = |now: DateTime<Utc>, limit: u32| {
        ok(
            write(store, |tx| tx.expired_leases(now, limit)),
            "expired leases",
        )
    };
    assert!(expired(at(1000), 10).is_empty(), "an empty store");
    let leased = |t: i64, until: i64| {
        let mut job = sample_job("org-a", "S1", "alice", at(t));
        job.state = JobState::Running;
        job.started_at = Some(at(t));
        job.attempt = 1;
        job.lease = Some(Lease {
            owner: "host:1:ab".into(),
            epoch: 1,
            expires_at: at(until),
        });
        insert_new(store, &job)
    };
    let late = leased(0, 50);
    let early = leased(1, 20);
    let later = leased(2, 200);
    // Jobs that are not running are never expired, whatever their lease says.
    for state in [JobState::Queued, JobState::Succeeded, JobState::Failed] {
        let mut job = sample_job("org-b", "S1", "bob", at(3));
        job.state = state;
        job.lease = Some(Lease {
            owner: "host:1:ab".into(),
            epoch: 1,
            expires_at: at(0),
        });
        insert_new(store, &job);
    }
    assert!(expired(at(19), 10).is_empty(), "no lease expired yet");
    assert_eq!(
        ids(&expired(at(20), 10)),
        vec![early.id],
        "expiry at `now` counts"
    );
    assert_eq!(ids(&expired(at(100), 10)), vec![early.id, late.id]);
    assert_eq!(ids(&expired(at(100), 1)), vec![early.id], "the limit");
    assert_eq!(
        ids(&expired(at(500), 10)),
        vec![early.id, late.id, later.id]
    );
    // A renewed lease is no longer expired.
    let mut renewed = ok(store.get_job(early.id), "get");
    if let Some(l) = &mut renewed.lease {
        l.expires_at = at(1000);
    }
    ok(update(store, &renewed), "renew");
    assert_eq!(ids(&expired(at(100), 10)), vec![late.id]);
}

/// A failed transaction commits nothing, whether its work or its witness fails: no job, no key and no event of it
/// is visible afterwards, and the next transaction continues the chain from the last committed event.
///
/// # Panics
/// When the store breaks the contract.
pub fn transactions_are_atomic(store: &dyn Store) {
    let e1 = sample_event(1, GENESIS_HASH);
    ok(append(store, &e1), "first event");
    let job = sample_job("org-a", "S1", "alice", at(0));
    let key = sample_key("cccccccccccc", "org-a", at(0));
    let e2 = sample_event(2, &e1.hash);
    // The work fails after writing.
    let failed = write(store, |tx| {
        tx.insert_job(&job)?;
        tx.insert_key(&key)?;
        tx.stage_event(&e2)?;
        Err::<(), _>(Error::validation(
            Reason::InvalidRequest,
            "the work gives up",
        ))
    });
    fails(
        failed,
        ErrorCode::Validation,
        Some("invalid_request"),
        "the failing work",
    );
    // The witness refuses.
    let refused = store.write(
        &mut |tx| {
            tx.insert_job(&job)?;
            tx.insert_key(&key)?;
            tx.stage_event(&e2)
        },
        &|events| {
            assert_eq!(events.len(), 1, "the witness sees the staged event");
            assert_eq!(events[0].seq, 2);
            Err(Error::server(Reason::HookRefused, "the witness refuses"))
        },
    );
    fails(
        refused,
        ErrorCode::Server,
        Some("hook_refused"),
        "the refusing witness",
    );
    fails(
        store.get_job(job.id),
        ErrorCode::NotFound,
        None,
        "no job of a failed transaction",
    );
    assert_eq!(ok(store.get_key(&key.key_id), "get key"), None);
    assert_eq!(
        ok(store.audit_last(), "last"),
        Some((1, e1.hash.clone())),
        "no event of a failed transaction"
    );
    assert_eq!(ok(store.audit_read(1, 10), "read"), vec![e1.clone()]);
    // The same changes commit whole.
    let committed = ok(
        store.write(
            &mut |tx| {
                tx.insert_job(&job)?;
                tx.insert_key(&key)?;
                tx.stage_event(&e2)
            },
            &|_| Ok(()),
        ),
        "the transaction",
    );
    assert_eq!(
        committed,
        vec![e2.clone()],
        "write returns the committed events"
    );
    assert_eq!(ok(store.get_job(job.id), "get").version, 1);
    assert!(ok(store.get_key(&key.key_id), "get key").is_some());
    assert_eq!(ok(store.audit_read(1, 10), "read"), vec![e1, e2]);
}

/// Inside a transaction, reads see its own writes (a job inserted then read and updated, a key inserted then
/// found, the chain's head moved by each staged event).
///
/// # Panics
/// When the store breaks the contract.
pub fn transactions_read_their_writes(store: &dyn Store) {
    let job = sample_job("org-a", "S1", "alice", at(0));
    let key = sample_key("dddddddddddd", "org-z", at(0));
    let e1 = sample_event(1, GENESIS_HASH);
    let e2 = sample_event(2, &e1.hash);
    let result = write(store, |tx| {
        assert_eq!(tx.audit_head()?, None, "an empty trail");
        tx.insert_job(&job)?;
        let mut seen = tx
            .job(job.id)?
            .ok_or_else(|| Error::not_found("own insert"))?;
        assert_eq!(seen.version, 1, "the transaction reads its insert");
        assert_eq!(tx.oldest_queued()?.map(|j| j.id), Some(job.id));
        seen.transition(JobState::Running, at(1))?;
        let updated = tx.update_job(&seen)?;
        assert_eq!(updated.version, 2);
        assert_eq!(tx.job(job.id)?.map(|j| j.state), Some(JobState::Running));
        assert_eq!(
            tx.oldest_queued()?,
            None,
            "the update moved it out of the queue"
        );
        assert!(!tx.org_has_keys("org-z")?);
        tx.insert_key(&key)?;
        assert!(tx.org_has_keys("org-z")?);
        assert_eq!(tx.key(&key.key_id)?, Some(key.clone()));
        tx.stage_event(&e1)?;
        assert_eq!(tx.audit_head()?, Some((1, e1.hash.clone())));
        tx.stage_event(&e2)?;
        assert_eq!(tx.audit_head()?, Some((2, e2.hash.clone())));
        Ok(())
    });
    ok(result, "the transaction");
    assert_eq!(ok(store.get_job(job.id), "get").version, 2);
    assert_eq!(ok(store.audit_last(), "last"), Some((2, e2.hash.clone())));
}

// ---------------------------------------------------------------------------------------------------------------
// Studies and keys

/// The study registry (see [`crate::study::StudyRows`] and [`crate::study::StudyReads`]): bind, get (unbound:
/// `None`), binding a bound study EXP004 `study_exists` (nothing changed), listing one organization's or every
/// binding by study id, reads of a transaction's own writes, rollback, removal (unbound: EXP001).
///
/// # Panics
/// When the store breaks the contract.
pub fn studies_contract(store: &dyn Store) {
    use crate::study::StudyRecord;
    let rec = |study: &str, org: &str, t: i64| StudyRecord {
        study: study.to_string(),
        org: org.to_string(),
        added_at: at(t),
        added_by: "apikey:0123456789ab".to_string(),
    };
    assert_eq!(ok(store.get_study("S1"), "get unbound study"), None);
    assert!(ok(store.list_studies(None), "list empty").is_empty());
    let (s2, s1, s3) = (
        rec("S2", "org-a", 1),
        rec("S1", "org-a", 2),
        rec("S3", "org-b", 3),
    );
    for r in [&s2, &s1, &s3] {
        ok(write(store, |tx| tx.insert_study(r)), "bind study");
    }
    assert_eq!(ok(store.get_study("S1"), "get study"), Some(s1.clone()));
    assert_eq!(
        ok(store.list_studies(Some("org-a")), "list org-a"),
        vec![s1.clone(), s2.clone()],
        "an organization's studies, by study id"
    );
    assert_eq!(
        ok(store.list_studies(None), "list all"),
        vec![s1.clone(), s2.clone(), s3.clone()]
    );
    assert!(ok(store.list_studies(Some("org-c")), "list org-c").is_empty());
    fails(
        write(store, |tx| tx.insert_study(&rec("S1", "org-b", 9))),
        ErrorCode::Conflict,
        Some("study_exists"),
        "binding a bound study again",
    );
    assert_eq!(
        ok(store.get_study("S1"), "get after refused bind"),
        Some(s1.clone()),
        "a refused bind must not move the study"
    );
    // Reads in a transaction see its own writes; a failed transaction leaves nothing.
    let seen = ok(
        write(store, |tx| {
            tx.delete_study("S1")?;
            let gone = tx.study("S1")?;
            tx.insert_study(&rec("S1", "org-b", 10))?;
            Ok((gone, tx.study("S1")?))
        }),
        "move a study in one transaction",
    );
    assert_eq!(seen, (None, Some(rec("S1", "org-b", 10))));
    fails(
        write(store, |tx| {
            tx.delete_study("S2")?;
            Err::<(), _>(Error::server(Reason::IoError, "injected"))
        }),
        ErrorCode::Server,
        None,
        "a failing transaction",
    );
    assert_eq!(
        ok(store.get_study("S2"), "after rollback"),
        Some(s2.clone())
    );
    fails(
        write(store, |tx| tx.delete_study("S9")),
        ErrorCode::NotFound,
        None,
        "removing an unbound study",
    );
    ok(write(store, |tx| tx.delete_study("S2")), "unbind");
    assert_eq!(ok(store.get_study("S2"), "get unbound"), None);
    assert_eq!(
        ok(store.list_studies(Some("org-a")), "list after unbind"),
        Vec::<StudyRecord>::new()
    );
}

/// Keys: insert, get (unknown: `None`), duplicate id EXP004, an update (a revocation) visible on the next get
/// (unknown: EXP001), `org_has_keys`, listing by organization in creation order.
///
/// # Panics
/// When the store breaks the contract.
pub fn keys_contract(store: &dyn Store) {
    assert_eq!(ok(store.get_key("000000000000"), "get unknown key"), None);
    assert!(ok(store.list_keys("org-a"), "list empty").is_empty());
    let k1 = sample_key("aaaaaaaaaaa1", "org-a", at(10));
    let k2 = sample_key("aaaaaaaaaaa2", "org-a", at(5));
    let k3 = sample_key("bbbbbbbbbbb3", "org-b", at(7));
    for k in [&k1, &k2, &k3] {
        ok(write(store, |tx| tx.insert_key(k)), "insert key");
    }
    assert_eq!(ok(store.get_key(&k1.key_id), "get key"), Some(k1.clone()));
    assert_eq!(ok(store.get_key(&k3.key_id), "get key"), Some(k3.clone()));
    assert_eq!(ok(store.get_key("ffffffffffff"), "get unknown key"), None);

    let mut dup = sample_key(&k1.key_id, "org-b", at(20));
    dup.name = "impostor".into();
    fails(
        write(store, |tx| tx.insert_key(&dup)),
        ErrorCode::Conflict,
        None,
        "insert of an existing key id",
    );
    assert_eq!(
        ok(store.get_key(&k1.key_id), "get after duplicate"),
        Some(k1.clone()),
        "a refused insert must not change the key"
    );

    let revoked_at = at(100);
    let mut k1_revoked = k1.clone();
    k1_revoked.revoked_at = Some(revoked_at);
    ok(write(store, |tx| tx.update_key(&k1_revoked)), "revoke");
    assert_eq!(
        ok(store.get_key(&k1.key_id), "get revoked"),
        Some(k1_revoked.clone()),
        "revocation is visible on the next get, other fields unchanged"
    );
    assert_eq!(ok(store.get_key(&k2.key_id), "get other"), Some(k2.clone()));
    fails(
        write(store, |tx| {
            tx.update_key(&sample_key("ffffffffffff", "org-a", revoked_at))
        }),
        ErrorCode::NotFound,
        None,
        "update of an unknown key",
    );
    assert!(ok(write(store, |tx| tx.org_has_keys("org-a")), "has keys"));
    assert!(!ok(write(store, |tx| tx.org_has_keys("org-c")), "has keys"));

    assert_eq!(
        ok(store.list_keys("org-a"), "list org-a"),
        vec![k2.clone(), k1_revoked],
        "keys of an organization, by creation"
    );
    assert_eq!(ok(store.list_keys("org-b"), "list org-b"), vec![k3]);
    assert!(ok(store.list_keys("org-c"), "list org-c").is_empty());
}

// ---------------------------------------------------------------------------------------------------------------
// Signers

/// Signers' credentials: `get` of an unknown signer is `None`; `put` inserts every field and replaces the record of
/// the same organization and subject (one record per pair, organizations apart, no two pairs confused however
/// their names split); a transaction reads its own writes; a failed transaction, or one whose witness refuses,
/// leaves the record as it was; a record commits with the events staged beside it.
///
/// # Panics
/// When the store breaks the contract.
pub fn signers_contract(store: &dyn Store) {
    assert_eq!(ok(store.get_signer("org-a", "ada"), "get unknown"), None);
    let ada = sample_signer("org-a", "ada", at(0));
    ok(write(store, |tx| tx.put_signer(&ada)), "insert");
    assert_eq!(
        ok(store.get_signer("org-a", "ada"), "get"),
        Some(ada.clone()),
        "every field round-trips"
    );
    assert_eq!(ok(store.get_signer("org-b", "ada"), "other org"), None);
    assert_eq!(ok(store.get_signer("org-a", "adam"), "other subject"), None);

    // Pairs whose concatenations agree are different signers.
    let (ab_c, a_bc) = (
        SignerCredential::new("ab", "c", at(1)),
        SignerCredential {
            failures: 1,
            ..SignerCredential::new("a", "bc", at(1))
        },
    );
    ok(
        write(store, |tx| {
            tx.put_signer(&ab_c)?;
            tx.put_signer(&a_bc)
        }),
        "insert two",
    );
    assert_eq!(ok(store.get_signer("ab", "c"), "get"), Some(ab_c.clone()));
    assert_eq!(ok(store.get_signer("a", "bc"), "get"), Some(a_bc.clone()));

    // Replacing, read back inside the transaction.
    let reset = ada.reset("apikey:bbbbbbbbbbbb", at(10));
    let seen = ok(
        write(store, |tx| {
            assert_eq!(tx.signer("org-a", "ada")?, Some(ada.clone()), "before");
            tx.put_signer(&reset)?;
            tx.signer("org-a", "ada")
        }),
        "replace",
    );
    assert_eq!(seen, Some(reset.clone()), "the transaction reads its write");
    assert_eq!(
        ok(store.get_signer("org-a", "ada"), "get"),
        Some(reset.clone())
    );

    // Failed transactions change nothing.
    let mut locked = reset.clone();
    locked.failures = 5;
    locked.locked_at = Some(at(20));
    fails(
        write(store, |tx| {
            tx.put_signer(&locked)?;
            tx.put_signer(&SignerCredential::new("org-a", "bob", at(20)))?;
            Err::<(), _>(Error::validation(
                Reason::InvalidRequest,
                "the work gives up",
            ))
        }),
        ErrorCode::Validation,
        Some("invalid_request"),
        "the failing work",
    );
    let e1 = sample_event(1, GENESIS_HASH);
    fails(
        store.write(
            &mut |tx| {
                tx.put_signer(&locked)?;
                tx.stage_event(&e1)
            },
            &|_| Err(Error::server(Reason::HookRefused, "the witness refuses")),
        ),
        ErrorCode::Server,
        Some("hook_refused"),
        "the refusing witness",
    );
    assert_eq!(
        ok(store.get_signer("org-a", "ada"), "get after failures"),
        Some(reset),
        "a failed transaction leaves the record"
    );
    assert_eq!(ok(store.get_signer("org-a", "bob"), "get"), None);
    assert_eq!(ok(store.audit_last(), "last"), None);

    // The record and its event commit together.
    let committed = ok(
        store.write(
            &mut |tx| {
                tx.put_signer(&locked)?;
                tx.stage_event(&e1)
            },
            &|_| Ok(()),
        ),
        "the transaction",
    );
    assert_eq!(committed, vec![e1.clone()]);
    assert_eq!(ok(store.get_signer("org-a", "ada"), "get"), Some(locked));
    assert_eq!(ok(store.audit_read(1, 10), "read"), vec![e1]);
}

// ---------------------------------------------------------------------------------------------------------------
// Audit

/// `stage_event` accepts only the next event (sequence number one more, `prev_hash` the last hash), `audit_last`
/// reports the last committed event, `audit_read` returns events from a sequence number in order, up to a limit.
///
/// # Panics
/// When the store breaks the contract.
pub fn audit_append_and_read(store: &dyn Store) {
    assert_eq!(ok(store.audit_last(), "last of an empty trail"), None);
    assert!(ok(store.audit_read(1, 10), "read an empty trail").is_empty());
    for seq in [0, 2] {
        fails(
            append(store, &sample_event(seq, GENESIS_HASH)),
            ErrorCode::Conflict,
            Some("sequence_conflict"),
            "first event with a sequence number other than 1",
        );
    }
    assert_eq!(ok(store.audit_last(), "last after refused appends"), None);

    let mut events = Vec::new();
    let mut prev = GENESIS_HASH.to_string();
    for seq in 1..=5 {
        let e = sample_event(seq, &prev);
        ok(append(store, &e), "append");
        prev = e.hash.clone();
        events.push(e);
        assert_eq!(ok(store.audit_last(), "last"), Some((seq, prev.clone())));
    }
    for seq in [1, 4, 5, 7, 100] {
        fails(
            append(store, &sample_event(seq, &prev)),
            ErrorCode::Conflict,
            Some("sequence_conflict"),
            &format!("append of seq {seq} after 5"),
        );
    }
    assert_eq!(
        ok(store.audit_last(), "last after conflicts"),
        Some((5, prev.clone()))
    );

    assert_eq!(
        ok(store.audit_read(1, 100), "read all"),
        events,
        "every event, in order, as appended"
    );
    for e in ok(store.audit_read(1, 100), "read all") {
        assert_eq!(
            e.compute_hash(),
            e.hash,
            "seq {}: an event read back hashes as it did when appended",
            e.seq
        );
    }
    assert_eq!(ok(store.audit_read(0, 100), "read from 0"), events);
    assert_eq!(
        ok(store.audit_read(3, 2), "read 3..=4"),
        events[2..4].to_vec()
    );
    assert_eq!(
        ok(store.audit_read(5, 10), "read from 5"),
        events[4..].to_vec()
    );
    assert!(ok(store.audit_read(6, 10), "read past the end").is_empty());
    assert!(ok(store.audit_read(1, 0), "read none").is_empty());
    assert!(ok(store.audit_read(u64::MAX, 10), "read from u64::MAX").is_empty());

    ok(
        append(store, &sample_event(6, &prev)),
        "append after conflicts",
    );
    assert_eq!(ok(store.audit_read(1, 100), "read all").len(), 6);
}

/// Four threads appending 25 events each, every one in a transaction that reads the head and stages the next
/// event, leave a trail of exactly 100 events numbered 1..=100 with an unbroken hash chain: transactions are
/// isolated.
///
/// # Panics
/// When the store breaks the contract.
pub fn audit_concurrent_appends(store: &dyn Store) {
    concurrent_appends_across(&[store]);
}

/// [`audit_concurrent_appends`] with the threads spread over `stores`, which must share one database.
///
/// # Panics
/// When the stores break the contract, or `stores` is empty.
pub fn concurrent_appends_across(stores: &[&dyn Store]) {
    const THREADS: usize = 4;
    const EACH: usize = 25;
    assert!(!stores.is_empty(), "at least one store");
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = stores[t % stores.len()];
                scope.spawn(move || {
                    for _ in 0..EACH {
                        ok(
                            write(store, |tx| {
                                let (seq, prev) =
                                    tx.audit_head()?.unwrap_or((0, GENESIS_HASH.to_string()));
                                tx.stage_event(&sample_event(seq + 1, &prev))
                            }),
                            "concurrent append",
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            if h.join().is_err() {
                panic!("an appending thread panicked");
            }
        }
    });
    let events = ok(stores[0].audit_read(1, 1000), "read the trail");
    assert_eq!(
        events.len(),
        THREADS * EACH,
        "every successful append is stored once"
    );
    let mut prev = GENESIS_HASH.to_string();
    let mut event_ids = HashSet::new();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "sequence numbers without gaps");
        assert_eq!(
            e.prev_hash, prev,
            "seq {}: chained to its predecessor",
            e.seq
        );
        assert_eq!(e.compute_hash(), e.hash, "seq {}: stored unchanged", e.seq);
        assert!(event_ids.insert(e.event_id), "an event stored twice");
        prev = e.hash.clone();
    }
}
