//! The store conformance suite: the contracts of [`JobStore`], [`KeyStore`] and [`AuditStore`] stated as code.
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
//! `SqliteStore::open` on the same file) and spread their threads over them, to check that claims and audit
//! sequence checks are atomic across connections as well.
//!
//! The checks use the helpers [`sample_job`], [`sample_key`] and [`sample_event`] to build records, and fixed
//! times from [`base_time`] spaced out so every ordering is deterministic.

use super::{AuditStore, FinishedQuery, JobQuery, JobStore, KeyStore};
use crate::audit::{Actor, AuditEvent, Outcome, GENESIS_HASH};
use crate::auth::{ApiKeyRecord, Role};
use crate::error::{ErrorCode, Result};
use crate::job::{Artifact, Job, JobKind, JobState, Progress};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use std::collections::HashSet;
use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use uuid::Uuid;

/// The three store views one check runs against; they may be one object (see [`Stores::from_one`]).
#[derive(Clone)]
pub struct Stores {
    /// The job store.
    pub jobs: Arc<dyn JobStore>,
    /// The key store.
    pub keys: Arc<dyn KeyStore>,
    /// The audit store.
    pub audit: Arc<dyn AuditStore>,
}

impl Stores {
    /// Three views of one store that implements all three traits.
    pub fn from_one<S: JobStore + KeyStore + AuditStore + 'static>(store: S) -> Self {
        let store = Arc::new(store);
        Stores {
            jobs: store.clone(),
            keys: store.clone(),
            audit: store,
        }
    }
}

/// One named check of the suite.
#[derive(Clone, Copy)]
pub struct Check {
    /// The check's name: the name of its function.
    pub name: &'static str,
    /// Runs the check against fresh, empty stores; panics on failure.
    pub run: fn(&Stores),
}

/// Every check, in the order [`run_all`] runs them.
pub const CHECKS: &[Check] = &[
    Check {
        name: "jobs_insert_get",
        run: |s| jobs_insert_get(&*s.jobs),
    },
    Check {
        name: "jobs_update_is_conditional",
        run: |s| jobs_update_is_conditional(&*s.jobs),
    },
    Check {
        name: "jobs_list_filters",
        run: |s| jobs_list_filters(&*s.jobs),
    },
    Check {
        name: "jobs_list_pagination",
        run: |s| jobs_list_pagination(&*s.jobs),
    },
    Check {
        name: "jobs_idempotency",
        run: |s| jobs_idempotency(&*s.jobs),
    },
    Check {
        name: "jobs_claim_order",
        run: |s| jobs_claim_order(&*s.jobs),
    },
    Check {
        name: "jobs_concurrent_claims",
        run: |s| jobs_concurrent_claims(&*s.jobs),
    },
    Check {
        name: "jobs_requeue_running",
        run: |s| jobs_requeue_running(&*s.jobs),
    },
    Check {
        name: "jobs_list_finished",
        run: |s| jobs_list_finished(&*s.jobs),
    },
    Check {
        name: "jobs_list_finished_walk",
        run: |s| jobs_list_finished_walk(&*s.jobs),
    },
    Check {
        name: "keys_contract",
        run: |s| keys_contract(&*s.keys),
    },
    Check {
        name: "audit_append_and_read",
        run: |s| audit_append_and_read(&*s.audit),
    },
    Check {
        name: "audit_concurrent_appends",
        run: |s| audit_concurrent_appends(&*s.audit),
    },
];

/// Runs every check of [`CHECKS`], each against new stores from `make`, and panics after the last one if any
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
        version: 1,
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

/// Inserts `job` and checks the returned copy is the job at version 1.
fn insert_new(store: &dyn JobStore, job: &Job) -> Job {
    let stored = ok(store.insert(job), "insert");
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
pub fn jobs_insert_get(store: &dyn JobStore) {
    fails(
        store.get(Uuid::now_v7()),
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
        ok(store.get(job.id), "get"),
        expected,
        "get must return every field as inserted"
    );

    let other = sample_job("org-a", "S1", "alice", at(3));
    insert_new(store, &other);
    assert_eq!(ok(store.get(other.id), "get other").id, other.id);
    assert_eq!(ok(store.get(job.id), "get first again"), expected);

    fails(
        store.get(Uuid::now_v7()),
        ErrorCode::NotFound,
        Some("not_found"),
        "get of an unknown id",
    );
    let mut dup = sample_job("org-a", "S2", "bob", at(4));
    dup.id = job.id;
    fails(
        store.insert(&dup),
        ErrorCode::Conflict,
        None,
        "insert of an existing id",
    );
    assert_eq!(
        ok(store.get(job.id), "get after duplicate insert"),
        expected,
        "a refused insert must not change the stored job"
    );
}

/// `update` is conditional on the version, increments it, and rejects stale or unknown jobs.
///
/// # Panics
/// When the store breaks the contract.
pub fn jobs_update_is_conditional(store: &dyn JobStore) {
    let job = insert_new(store, &sample_job("org-a", "S1", "alice", at(0)));
    let stale = job.clone();

    let mut running = job.clone();
    ok(running.transition(JobState::Running, at(10)), "transition");
    running.progress.rows_written = 10;
    let v2 = ok(store.update(&running), "update at the current version");
    assert_eq!(v2.version, 2, "update increments the version");
    assert_eq!(v2.state, JobState::Running);
    assert_eq!(v2.progress.rows_written, 10);
    assert_eq!(v2.started_at, Some(at(10)));
    assert_eq!(
        ok(store.get(job.id), "get after update"),
        v2,
        "get sees the update"
    );

    let mut stale_change = stale.clone();
    stale_change.progress.rows_written = 999;
    fails(
        store.update(&stale_change),
        ErrorCode::Conflict,
        Some("version_conflict"),
        "update with a stale version",
    );
    let mut ahead = v2.clone();
    ahead.version = 99;
    fails(
        store.update(&ahead),
        ErrorCode::Conflict,
        Some("version_conflict"),
        "update with a version ahead of the stored one",
    );
    assert_eq!(
        ok(store.get(job.id), "get after stale updates"),
        v2,
        "a rejected update must not change the job"
    );

    let mut current = v2;
    for expected in 3..=5u64 {
        current.progress.rows_written += 1;
        current = ok(store.update(&current), "successive update");
        assert_eq!(current.version, expected, "versions increment by one");
    }
    assert_eq!(
        ok(store.get(job.id), "get after successive updates"),
        current
    );

    let mut unknown = sample_job("org-a", "S1", "alice", at(1));
    unknown.version = 1;
    fails(
        store.update(&unknown),
        ErrorCode::NotFound,
        None,
        "update of an unknown id",
    );
    fails(
        store.get(unknown.id),
        ErrorCode::NotFound,
        None,
        "an update of an unknown id must not create it",
    );
}

/// `list` filters by organization, studies and state, with totals.
///
/// # Panics
/// When the store breaks the contract.
pub fn jobs_list_filters(store: &dyn JobStore) {
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
        let page = ok(store.list(&q), "list");
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
pub fn jobs_list_pagination(store: &dyn JobStore) {
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
        let result = ok(store.list(&query("org-p", page, 20)), "list page");
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

    let one = ok(store.list(&query("org-p", 2, 7)), "list page 2 by 7");
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
    let result = ok(store.list(&query("org-t", 1, 10)), "list ties");
    assert_eq!(
        ids(&result.items),
        tie_ids,
        "equal creation times order by id descending"
    );
}

/// Idempotency keys: same key and hash returns the existing job; a different hash is EXP004
/// `idempotency_conflict`; the key is scoped to organization and requester.
///
/// # Panics
/// When the store breaks the contract.
pub fn jobs_idempotency(store: &dyn JobStore) {
    let keyed = |org: &str, who: &str, key: &str, hash: &str, t: i64| {
        let mut job = sample_job(org, "S1", who, at(t));
        job.idempotency_key = Some(key.to_string());
        job.request_hash = hash.to_string();
        job
    };
    let h1 = "11".repeat(32);
    let h2 = "22".repeat(32);
    let first = insert_new(store, &keyed("org-a", "alice", "k1", &h1, 0));

    let again = keyed("org-a", "alice", "k1", &h1, 1);
    let returned = ok(store.insert(&again), "repeated request");
    assert_eq!(
        returned, first,
        "a repeated request returns the existing job"
    );
    fails(
        store.get(again.id),
        ErrorCode::NotFound,
        None,
        "a repeated request must not store a new job",
    );

    let different = keyed("org-a", "alice", "k1", &h2, 2);
    fails(
        store.insert(&different),
        ErrorCode::Conflict,
        Some("idempotency_conflict"),
        "same key, different request",
    );
    fails(
        store.get(different.id),
        ErrorCode::NotFound,
        None,
        "a conflicting request must not be stored",
    );

    let other_requester = insert_new(store, &keyed("org-a", "bob", "k1", &h2, 3));
    let other_org = insert_new(store, &keyed("org-b", "alice", "k1", &h2, 4));
    let other_key = insert_new(store, &keyed("org-a", "alice", "k2", &h1, 5));
    for j in [&other_requester, &other_org, &other_key] {
        assert_eq!(ok(store.get(j.id), "get scoped job").id, j.id);
    }

    // Without a key, identical requests are separate jobs.
    let plain1 = insert_new(store, &sample_job("org-a", "S1", "alice", at(6)));
    let plain2 = insert_new(store, &sample_job("org-a", "S1", "alice", at(7)));
    assert_ne!(plain1.id, plain2.id);
    assert_eq!(
        ok(store.list(&query("org-a", 1, 100)), "list org-a").total,
        5,
        "org-a holds the first job, bob's, k2 and the two unkeyed jobs"
    );

    // The existing job is returned as it is now, not as first inserted.
    let mut running = first.clone();
    ok(running.transition(JobState::Running, at(20)), "transition");
    let running = ok(store.update(&running), "update keyed job");
    let replay = ok(
        store.insert(&keyed("org-a", "alice", "k1", &h1, 30)),
        "repeated request after an update",
    );
    assert_eq!(
        replay, running,
        "a repeated request returns the current job"
    );
}

/// `claim_next` takes the oldest queued job (created_at, then id), makes it running with `started_at = now` and
/// the version incremented, and skips jobs in other states.
///
/// # Panics
/// When the store breaks the contract.
pub fn jobs_claim_order(store: &dyn JobStore) {
    assert_eq!(
        ok(store.claim_next(at(1000)), "claim from an empty store"),
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
        let claimed = ok(store.claim_next(now), "claim");
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
            ok(store.get(want.id), "get claimed"),
            want,
            "claim {n}: stored"
        );
    }
    assert_eq!(
        ok(store.claim_next(at(2000)), "claim when none is queued"),
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
pub fn jobs_list_finished(store: &dyn JobStore) {
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
                assert_eq!(job, &ok(store.get(job.id), "get"), "listed jobs are whole");
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
    let mut running = ok(store.get(jobs[6].id), "get running");
    running.state = JobState::Succeeded;
    running.finished_at = Some(at(450));
    let running = ok(store.update(&running), "succeed a running job");
    let mut expiring = ok(store.get(all[0]), "get the oldest succeeded");
    expiring.state = JobState::Expired;
    ok(store.update(&expiring), "expire a job");
    let mut want = all[1..].to_vec();
    let pos = want
        .iter()
        .position(|id| ok(store.get(*id), "get").finished_at > Some(at(450)))
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
pub fn jobs_list_finished_walk(store: &dyn JobStore) {
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
            ok(store.update(&expired), "expire a listed job");
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
pub fn jobs_concurrent_claims(store: &dyn JobStore) {
    concurrent_claims_across(&[store]);
}

/// [`jobs_concurrent_claims`] with the eight threads spread over `stores`, which must share one database; jobs are
/// inserted through the first.
///
/// # Panics
/// When the stores break the contract, or `stores` is empty.
pub fn concurrent_claims_across(stores: &[&dyn JobStore]) {
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
                    while let Some(job) = ok(store.claim_next(now), "concurrent claim") {
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
        ok(stores[0].list(&running), "list running").total,
        JOBS as u64
    );
    assert_eq!(ok(stores[0].claim_next(now), "claim after all"), None);
}

/// `requeue_running` moves every running job back to queued with progress reset (the dataset total kept), no start
/// time, no cancellation request and the version incremented; other jobs are untouched.
///
/// # Panics
/// When the store breaks the contract.
pub fn jobs_requeue_running(store: &dyn JobStore) {
    assert!(
        ok(store.requeue_running(), "requeue in an empty store").is_empty(),
        "nothing to requeue in an empty store"
    );
    // Two jobs made running by claims, with progress and a cancellation request.
    let mut running = Vec::new();
    for i in 0..2 {
        insert_new(store, &sample_job("org-a", "S2", "bob", at(i)));
    }
    for _ in 0..2 {
        let Some(mut job) = ok(store.claim_next(at(20)), "claim") else {
            panic!("a queued job could not be claimed");
        };
        job.progress = Progress {
            rows_written: 500,
            bytes_written: 4096,
            datasets_done: 1,
            datasets_total: 3,
        };
        job.cancel_requested = true;
        running.push(ok(store.update(&job), "update progress"));
    }
    // Jobs in other states, which must stay as they are.
    let mut others = Vec::new();
    for (i, state) in [JobState::Queued, JobState::Succeeded, JobState::Failed]
        .into_iter()
        .enumerate()
    {
        let mut job = sample_job("org-a", "S1", "alice", at(10 + i as i64));
        job.state = state;
        others.push(insert_new(store, &job));
    }

    let requeued = ok(store.requeue_running(), "requeue");
    let mut got = ids(&requeued);
    got.sort();
    let mut want = ids(&running);
    want.sort();
    assert_eq!(got, want, "requeue returns exactly the running jobs");
    for before in &running {
        let mut expected = before.clone();
        expected.state = JobState::Queued;
        expected.started_at = None;
        expected.progress = Progress {
            rows_written: 0,
            bytes_written: 0,
            datasets_done: 0,
            datasets_total: 3,
        };
        expected.cancel_requested = false;
        expected.version = before.version + 1;
        let returned = requeued.iter().find(|j| j.id == before.id);
        assert_eq!(returned, Some(&expected), "requeued job as returned");
        assert_eq!(
            ok(store.get(before.id), "get requeued"),
            expected,
            "requeued job as stored"
        );
    }
    for other in &others {
        assert_eq!(
            &ok(store.get(other.id), "get other"),
            other,
            "jobs not running are untouched"
        );
    }
    assert!(
        ok(store.requeue_running(), "second requeue").is_empty(),
        "nothing left running"
    );
    // The requeued jobs are claimable again, oldest first, before the newer queued job.
    for expected in [running[0].id, running[1].id, others[0].id] {
        let claimed = ok(store.claim_next(at(30)), "reclaim").map(|j| j.id);
        assert_eq!(
            claimed,
            Some(expected),
            "requeued jobs are claimed again in creation order"
        );
    }
    assert_eq!(
        ok(store.claim_next(at(30)), "claim when none is queued"),
        None
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Keys

/// The key store: insert, get (unknown: `None`), duplicate id EXP004, revocation visible on the next get (unknown:
/// EXP001), listing by organization in creation order.
///
/// # Panics
/// When the store breaks the contract.
pub fn keys_contract(store: &dyn KeyStore) {
    assert_eq!(ok(store.get_key("000000000000"), "get unknown key"), None);
    assert!(ok(store.list_keys("org-a"), "list empty").is_empty());
    let k1 = sample_key("aaaaaaaaaaa1", "org-a", at(10));
    let k2 = sample_key("aaaaaaaaaaa2", "org-a", at(5));
    let k3 = sample_key("bbbbbbbbbbb3", "org-b", at(7));
    for k in [&k1, &k2, &k3] {
        ok(store.insert_key(k), "insert key");
    }
    assert_eq!(ok(store.get_key(&k1.key_id), "get key"), Some(k1.clone()));
    assert_eq!(ok(store.get_key(&k3.key_id), "get key"), Some(k3.clone()));
    assert_eq!(ok(store.get_key("ffffffffffff"), "get unknown key"), None);

    let mut dup = sample_key(&k1.key_id, "org-b", at(20));
    dup.name = "impostor".into();
    fails(
        store.insert_key(&dup),
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
    ok(store.revoke_key(&k1.key_id, revoked_at), "revoke");
    let mut k1_revoked = k1.clone();
    k1_revoked.revoked_at = Some(revoked_at);
    assert_eq!(
        ok(store.get_key(&k1.key_id), "get revoked"),
        Some(k1_revoked.clone()),
        "revocation is visible on the next get, other fields unchanged"
    );
    assert_eq!(ok(store.get_key(&k2.key_id), "get other"), Some(k2.clone()));
    fails(
        store.revoke_key("ffffffffffff", revoked_at),
        ErrorCode::NotFound,
        None,
        "revoke of an unknown key",
    );

    assert_eq!(
        ok(store.list_keys("org-a"), "list org-a"),
        vec![k2.clone(), k1_revoked],
        "keys of an organization, by creation"
    );
    assert_eq!(ok(store.list_keys("org-b"), "list org-b"), vec![k3]);
    assert!(ok(store.list_keys("org-c"), "list org-c").is_empty());
}

// ---------------------------------------------------------------------------------------------------------------
// Audit

/// `append` accepts only the next sequence number (1 first), `last` reports the last event, `read` returns events
/// from a sequence number in order, up to a limit.
///
/// # Panics
/// When the store breaks the contract.
pub fn audit_append_and_read(store: &dyn AuditStore) {
    assert_eq!(ok(store.last(), "last of an empty trail"), None);
    assert!(ok(store.read(1, 10), "read an empty trail").is_empty());
    for seq in [0, 2] {
        fails(
            store.append(&sample_event(seq, GENESIS_HASH)),
            ErrorCode::Conflict,
            Some("sequence_conflict"),
            "first event with a sequence number other than 1",
        );
    }
    assert_eq!(ok(store.last(), "last after refused appends"), None);

    let mut events = Vec::new();
    let mut prev = GENESIS_HASH.to_string();
    for seq in 1..=5 {
        let e = sample_event(seq, &prev);
        ok(store.append(&e), "append");
        prev = e.hash.clone();
        events.push(e);
        assert_eq!(ok(store.last(), "last"), Some((seq, prev.clone())));
    }
    for seq in [1, 4, 5, 7, 100] {
        fails(
            store.append(&sample_event(seq, &prev)),
            ErrorCode::Conflict,
            Some("sequence_conflict"),
            &format!("append of seq {seq} after 5"),
        );
    }
    assert_eq!(
        ok(store.last(), "last after conflicts"),
        Some((5, prev.clone()))
    );

    assert_eq!(
        ok(store.read(1, 100), "read all"),
        events,
        "every event, in order, as appended"
    );
    for e in ok(store.read(1, 100), "read all") {
        assert_eq!(
            e.compute_hash(),
            e.hash,
            "seq {}: an event read back hashes as it did when appended",
            e.seq
        );
    }
    assert_eq!(ok(store.read(0, 100), "read from 0"), events);
    assert_eq!(ok(store.read(3, 2), "read 3..=4"), events[2..4].to_vec());
    assert_eq!(ok(store.read(5, 10), "read from 5"), events[4..].to_vec());
    assert!(ok(store.read(6, 10), "read past the end").is_empty());
    assert!(ok(store.read(1, 0), "read none").is_empty());
    assert!(ok(store.read(u64::MAX, 10), "read from u64::MAX").is_empty());

    ok(
        store.append(&sample_event(6, &prev)),
        "append after conflicts",
    );
    assert_eq!(ok(store.read(1, 100), "read all").len(), 6);
}

/// Four threads appending 25 events each, every one reading `last` and retrying on `sequence_conflict`, leave a
/// trail of exactly 100 events numbered 1..=100 with an unbroken hash chain.
///
/// # Panics
/// When the store breaks the contract.
pub fn audit_concurrent_appends(store: &dyn AuditStore) {
    concurrent_appends_across(&[store]);
}

/// [`audit_concurrent_appends`] with the threads spread over `stores`, which must share one database.
///
/// # Panics
/// When the stores break the contract, or `stores` is empty.
pub fn concurrent_appends_across(stores: &[&dyn AuditStore]) {
    const THREADS: usize = 4;
    const EACH: usize = 25;
    assert!(!stores.is_empty(), "at least one store");
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = stores[t % stores.len()];
                scope.spawn(move || {
                    let mut done = 0;
                    while done < EACH {
                        let (seq, prev) =
                            ok(store.last(), "last").unwrap_or((0, GENESIS_HASH.to_string()));
                        match store.append(&sample_event(seq + 1, &prev)) {
                            Ok(()) => done += 1,
                            Err(e) if e.reason() == "sequence_conflict" => {}
                            Err(e) => panic!("concurrent append: unexpected error: {e}"),
                        }
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
    let events = ok(stores[0].read(1, 1000), "read the trail");
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
