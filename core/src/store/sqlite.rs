//! SQLite stores: jobs, API keys and audit events in one file (WAL, `synchronous=FULL`), shared safely by several
//! connections and processes.
//!
//! Each record is kept whole as JSON in a `body` column (the source of truth, so fields can be added without a
//! migration); the other columns are copies used for lookups, uniqueness, ordering and the optimistic lock. Every
//! write runs in a `BEGIN IMMEDIATE` transaction, so checks and writes are atomic across connections.
use super::memory::{
    duplicate_id, idempotency_conflict, requeue, sequence_conflict, version_conflict,
};
use super::*;
use crate::audit::AuditEvent;
use crate::auth::ApiKeyRecord;
use crate::error::Error;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The schema version written to `PRAGMA user_version`: 1, the first; 2 added `jobs.finished_at` and its index
/// (see [`migrate_to_2`]).
const SCHEMA_VERSION: i64 = 2;

/// How long a connection waits for another one's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL,
    study TEXT NOT NULL,
    state TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    idempotency_key TEXT,
    request_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS jobs_org_created ON jobs (org, created_at);
CREATE INDEX IF NOT EXISTS jobs_state_created ON jobs (state, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency
    ON jobs (org, requested_by, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS api_keys_org_created ON api_keys (org, created_at);
CREATE TABLE IF NOT EXISTS audit_events (
    seq INTEGER PRIMARY KEY NOT NULL,
    event_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    actor_subject TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    request_id TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    body TEXT NOT NULL
);
";

/// The indexes of schema version 2, created once its columns exist (after [`migrate_to_2`] on an older file).
const SCHEMA_2_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS jobs_state_finished ON jobs (state, finished_at, id);
";

/// Jobs, keys and audit events in one SQLite file.
///
/// One connection behind a mutex; open several stores (or processes) on the same file to share it: claims,
/// conditional updates, idempotency checks and audit sequence checks are atomic across all of them.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// EXP005 `store_error` for a SQLite failure: the context and SQLite's error code, never the values involved.
fn db(context: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| {
        let mut err = Error::server("store_error", format!("SQLite store: {context}"));
        if let Some(code) = e.sqlite_error_code() {
            err = err.with_detail("sqlite_error", format!("{code:?}"));
        }
        err
    }
}

/// EXP005 `corrupt_record`: a stored row that cannot be read back.
fn corrupt(table: &'static str) -> Error {
    Error::server(
        "corrupt_record",
        format!("a stored {table} record cannot be read"),
    )
    .with_detail("table", table)
}

/// Sortable text for a time: RFC 3339 UTC with nine fraction digits (lexical order is time order).
fn time_key(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// A `u64` as SQLite's signed integer.
fn to_i64(v: u64, what: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| {
        Error::server(
            "store_error",
            format!("{what} is too large for the SQLite store"),
        )
    })
}

fn encode<T: serde::Serialize>(value: &T, table: &'static str) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|_| Error::server("store_error", format!("a {table} record cannot be encoded")))
}

/// Decodes a job body and checks it against its row's id and version columns.
fn decode_job(id: &str, version: i64, body: &str) -> Result<Job> {
    let job: Job = serde_json::from_str(body).map_err(|_| corrupt("jobs"))?;
    if job.id.to_string() != id || i64::try_from(job.version).ok() != Some(version) {
        return Err(corrupt("jobs"));
    }
    Ok(job)
}

/// Reads `(id, version, body)` rows into jobs.
fn jobs_from(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    context: &'static str,
) -> Result<Vec<Job>> {
    let rows = stmt
        .query_map(params, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(db(context))?;
    let mut jobs = Vec::new();
    for row in rows {
        let (id, version, body) = row.map_err(read_err("jobs", context))?;
        jobs.push(decode_job(&id, version, &body)?);
    }
    Ok(jobs)
}

/// Maps a row-reading error: a column of the wrong type is a corrupt record, anything else a store error.
fn read_err(table: &'static str, context: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| match e {
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => corrupt(table),
        other => db(context)(other),
    }
}

/// Writes every column of `job` (insert or replace by id).
fn write_job(tx: &rusqlite::Transaction<'_>, job: &Job, insert: bool) -> Result<usize> {
    let body = encode(job, "jobs")?;
    let version = to_i64(job.version, "job version")?;
    let id = job.id.to_string();
    let created = time_key(job.created_at);
    let finished = job.finished_at.map(time_key);
    let result = if insert {
        tx.execute(
            "INSERT INTO jobs (id, org, study, state, requested_by, idempotency_key, request_hash, created_at, \
             version, body, finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                id,
                job.org,
                job.study,
                job.state.as_str(),
                job.requested_by,
                job.idempotency_key,
                job.request_hash,
                created,
                version,
                body,
                finished
            ],
        )
    } else {
        let previous = to_i64(job.version.saturating_sub(1), "job version")?;
        tx.execute(
            "UPDATE jobs SET org = ?2, study = ?3, state = ?4, requested_by = ?5, idempotency_key = ?6, \
             request_hash = ?7, created_at = ?8, version = ?9, body = ?10, finished_at = ?12 \
             WHERE id = ?1 AND version = ?11",
            params![
                id,
                job.org,
                job.study,
                job.state.as_str(),
                job.requested_by,
                job.idempotency_key,
                job.request_hash,
                created,
                version,
                body,
                previous,
                finished
            ],
        )
    };
    result.map_err(|e| {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
            // The only constraints are the primary key and the idempotency index.
            if insert {
                duplicate_id()
            } else {
                idempotency_conflict()
            }
        } else {
            db("writing a job")(e)
        }
    })
}

/// The stored `(version, job)` with `id`, if any.
fn load_job(conn: &Connection, id: &str) -> Result<Option<Job>> {
    let row = conn
        .query_row(
            "SELECT id, version, body FROM jobs WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .optional()
        .map_err(read_err("jobs", "reading a job"))?;
    row.map(|(id, version, body)| decode_job(&id, version, &body))
        .transpose()
}

/// Upgrades a schema version 1 file (or a new one) to version 2: adds `jobs.finished_at` when missing and fills it
/// from each job's record. A record that cannot be read is left without it (reading that job reports it corrupt
/// anyway; it is never listed by `list_finished`).
fn migrate_to_2(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    let has_column = tx
        .prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'finished_at'")
        .and_then(|mut stmt| stmt.exists([]))
        .map_err(db("reading the jobs table"))?;
    if !has_column {
        tx.execute("ALTER TABLE jobs ADD COLUMN finished_at TEXT", [])
            .map_err(db("adding jobs.finished_at"))?;
    }
    let mut stmt = tx
        .prepare("SELECT id, body FROM jobs WHERE finished_at IS NULL")
        .map_err(db("upgrading jobs"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(db("upgrading jobs"))?;
    let mut finished = Vec::new();
    for row in rows {
        let (id, body) = match row.map_err(read_err("jobs", "upgrading jobs")) {
            Ok(row) => row,
            Err(e) if e.reason() == "corrupt_record" => continue,
            Err(e) => return Err(e),
        };
        let Ok(job) = serde_json::from_str::<Job>(&body) else {
            continue;
        };
        if let Some(at) = job.finished_at {
            finished.push((id, time_key(at)));
        }
    }
    drop(stmt);
    for (id, at) in finished {
        tx.execute(
            "UPDATE jobs SET finished_at = ?2 WHERE id = ?1",
            params![id, at],
        )
        .map_err(db("upgrading jobs"))?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating when missing) the store in the SQLite file at `path`: WAL journal, `synchronous=FULL`, a
    /// busy timeout so several connections and processes can share the file, and the schema (version 2 in
    /// `PRAGMA user_version`). A file of schema version 1 is upgraded in place, in one transaction: its jobs get
    /// the `finished_at` column, filled from their records, and its index. A newer version is refused, so that an
    /// older trialport never writes rows without the columns it does not know.
    ///
    /// # Errors
    /// EXP005 `store_error` when the file cannot be opened or has a newer schema version.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(db("opening the database file"))?;
        Self::setup(conn, true)
    }

    /// A store in a private in-memory database (for tests; nothing survives the store).
    ///
    /// # Errors
    /// EXP005 `store_error` when SQLite fails.
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(db("opening an in-memory database"))?;
        Self::setup(conn, false)
    }

    fn setup(mut conn: Connection, file: bool) -> Result<Self> {
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db("setting the busy timeout"))?;
        if file {
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                .map_err(db("enabling WAL"))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::server(
                    "store_error",
                    "SQLite store: the database cannot use WAL journaling",
                ));
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db("setting synchronous=FULL"))?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("starting the schema transaction"))?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db("reading the schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(Error::server(
                "store_error",
                "SQLite store: the database was written by a newer trialport (schema version too new)",
            )
            .with_detail("schema_version", version));
        }
        tx.execute_batch(SCHEMA)
            .map_err(db("creating the schema"))?;
        if version < 2 {
            migrate_to_2(&tx)?;
        }
        tx.execute_batch(SCHEMA_2_INDEXES)
            .map_err(db("creating the schema"))?;
        if version < SCHEMA_VERSION {
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(db("writing the schema version"))?;
        }
        tx.commit().map_err(db("committing the schema"))?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    /// The schema version of the open database (`PRAGMA user_version`).
    ///
    /// # Errors
    /// EXP005 `store_error` when SQLite fails.
    pub fn schema_version(&self) -> Result<i64> {
        self.lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db("reading the schema version"))
    }

    /// The connection. A poisoned lock is taken over: an interrupted transaction was rolled back when dropped.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction and commits when it succeeds (rolls back otherwise).
    fn write<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("starting a write transaction"))?;
        let value = f(&tx)?;
        tx.commit().map_err(db("committing"))?;
        Ok(value)
    }
}

fn decode_key(key_id: &str, body: &str) -> Result<ApiKeyRecord> {
    let key: ApiKeyRecord = serde_json::from_str(body).map_err(|_| corrupt("api_keys"))?;
    if key.key_id != key_id {
        return Err(corrupt("api_keys"));
    }
    Ok(key)
}

impl KeyStore for SqliteStore {
    fn insert_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let body = encode(key, "api_keys")?;
        self.write(|tx| {
            let exists = tx
                .query_row(
                    "SELECT 1 FROM api_keys WHERE key_id = ?1",
                    [&key.key_id],
                    |_| Ok(()),
                )
                .optional()
                .map_err(db("looking up a key"))?
                .is_some();
            if exists {
                return Err(Error::conflict(
                    "key_exists",
                    "an API key with this id exists",
                ));
            }
            tx.execute(
                "INSERT INTO api_keys (key_id, org, created_at, body) VALUES (?1, ?2, ?3, ?4)",
                params![key.key_id, key.org, time_key(key.created_at), body],
            )
            .map_err(db("inserting a key"))?;
            Ok(())
        })
    }

    fn get_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        let row = self
            .lock()
            .query_row(
                "SELECT key_id, body FROM api_keys WHERE key_id = ?1",
                [key_id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(read_err("api_keys", "reading a key"))?;
        row.map(|(id, body)| decode_key(&id, &body)).transpose()
    }

    fn revoke_key(&self, key_id: &str, at: DateTime<Utc>) -> Result<()> {
        self.write(|tx| {
            let row = tx
                .query_row(
                    "SELECT key_id, body FROM api_keys WHERE key_id = ?1",
                    [key_id],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()
                .map_err(read_err("api_keys", "reading a key"))?;
            let Some((id, body)) = row else {
                return Err(Error::not_found("no API key with this id"));
            };
            let mut key = decode_key(&id, &body)?;
            key.revoked_at = Some(at);
            tx.execute(
                "UPDATE api_keys SET body = ?2 WHERE key_id = ?1",
                params![key_id, encode(&key, "api_keys")?],
            )
            .map_err(db("revoking a key"))?;
            Ok(())
        })
    }

    fn list_keys(&self, org: &str) -> Result<Vec<ApiKeyRecord>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT key_id, body FROM api_keys WHERE org = ?1 ORDER BY created_at ASC, key_id ASC",
            )
            .map_err(db("listing keys"))?;
        let rows = stmt
            .query_map([org], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(db("listing keys"))?;
        let mut keys = Vec::new();
        for row in rows {
            let (id, body) = row.map_err(read_err("api_keys", "listing keys"))?;
            keys.push(decode_key(&id, &body)?);
        }
        Ok(keys)
    }
}

impl JobStore for SqliteStore {
    fn insert(&self, job: &Job) -> Result<Job> {
        let mut stored = job.clone();
        stored.version = 1;
        self.write(|tx| {
            if let Some(key) = &job.idempotency_key {
                let existing = tx
                    .query_row(
                        "SELECT id, version, body FROM jobs \
                         WHERE org = ?1 AND requested_by = ?2 AND idempotency_key = ?3",
                        params![job.org, job.requested_by, key],
                        |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, i64>(1)?,
                                r.get::<_, String>(2)?,
                            ))
                        },
                    )
                    .optional()
                    .map_err(read_err("jobs", "looking up an idempotency key"))?;
                if let Some((id, version, body)) = existing {
                    let existing = decode_job(&id, version, &body)?;
                    if existing.request_hash == job.request_hash {
                        return Ok(existing);
                    }
                    return Err(idempotency_conflict());
                }
            }
            if load_job(tx, &job.id.to_string())?.is_some() {
                return Err(duplicate_id());
            }
            write_job(tx, &stored, true)?;
            Ok(stored)
        })
    }

    fn get(&self, id: Uuid) -> Result<Job> {
        load_job(&self.lock(), &id.to_string())?
            .ok_or_else(|| Error::not_found("no job with this id"))
    }

    fn update(&self, job: &Job) -> Result<Job> {
        let mut stored = job.clone();
        stored.version = job
            .version
            .checked_add(1)
            .ok_or_else(|| Error::server("store_error", "job version overflow"))?;
        self.write(|tx| {
            if write_job(tx, &stored, false)? == 1 {
                return Ok(stored);
            }
            match load_job(tx, &job.id.to_string())? {
                None => Err(Error::not_found("no job with this id")),
                Some(current) => Err(version_conflict(current.version, job.version)),
            }
        })
    }

    fn list(&self, q: &JobQuery) -> Result<JobPage> {
        let mut filter = String::from("org = ?");
        let mut args: Vec<String> = vec![q.org.clone()];
        if let Some(studies) = &q.studies {
            if studies.is_empty() {
                filter.push_str(" AND 0");
            } else {
                filter.push_str(" AND study IN (");
                filter.push_str(&vec!["?"; studies.len()].join(", "));
                filter.push(')');
                args.extend(studies.iter().cloned());
            }
        }
        if let Some(state) = q.state {
            filter.push_str(" AND state = ?");
            args.push(state.as_str().to_string());
        }
        let offset = i64::from(q.page.saturating_sub(1)) * i64::from(q.limit);
        let conn = self.lock();
        // Count and page inside one read transaction so both see the same snapshot.
        let tx = conn
            .unchecked_transaction()
            .map_err(db("starting a read transaction"))?;
        let total: i64 = tx
            .query_row(
                &format!("SELECT COUNT(*) FROM jobs WHERE {filter}"),
                params_from_iter(args.iter()),
                |r| r.get(0),
            )
            .map_err(db("counting jobs"))?;
        let mut stmt = tx
            .prepare(&format!(
                "SELECT id, version, body FROM jobs WHERE {filter} \
                 ORDER BY created_at DESC, id DESC LIMIT {} OFFSET {offset}",
                q.limit
            ))
            .map_err(db("listing jobs"))?;
        let items = jobs_from(&mut stmt, params_from_iter(args.iter()), "listing jobs")?;
        drop(stmt);
        tx.commit().map_err(db("ending a read transaction"))?;
        Ok(JobPage {
            items,
            page: q.page,
            limit: q.limit,
            total: u64::try_from(total).map_err(|_| corrupt("jobs"))?,
        })
    }

    fn claim_next(&self, now: DateTime<Utc>) -> Result<Option<Job>> {
        self.write(|tx| {
            let mut stmt = tx
                .prepare(
                    "SELECT id, version, body FROM jobs WHERE state = 'queued' \
                     ORDER BY created_at ASC, id ASC LIMIT 1",
                )
                .map_err(db("finding a queued job"))?;
            let Some(mut job) = jobs_from(&mut stmt, [], "finding a queued job")?
                .into_iter()
                .next()
            else {
                return Ok(None);
            };
            job.transition(JobState::Running, now)?;
            job.version = job
                .version
                .checked_add(1)
                .ok_or_else(|| Error::server("store_error", "job version overflow"))?;
            if write_job(tx, &job, false)? != 1 {
                // Impossible inside an immediate transaction; refuse rather than hand out a job twice.
                return Err(Error::server(
                    "store_error",
                    "SQLite store: a claimed job changed during its claim",
                ));
            }
            Ok(Some(job))
        })
    }

    fn requeue_running(&self) -> Result<Vec<Job>> {
        self.write(|tx| {
            let mut stmt = tx
                .prepare(
                    "SELECT id, version, body FROM jobs WHERE state = 'running' \
                     ORDER BY created_at ASC, id ASC",
                )
                .map_err(db("finding running jobs"))?;
            let mut jobs = jobs_from(&mut stmt, [], "finding running jobs")?;
            for job in &mut jobs {
                requeue(job)?;
                if write_job(tx, job, false)? != 1 {
                    return Err(Error::server(
                        "store_error",
                        "SQLite store: a job changed while being re-queued",
                    ));
                }
            }
            Ok(jobs)
        })
    }

    fn list_finished(&self, q: &FinishedQuery) -> Result<Vec<Job>> {
        check_finished_limit(q.limit)?;
        let conn = self.lock();
        let limit = i64::from(q.limit);
        let (state, by) = (q.state.as_str(), time_key(q.finished_by));
        match q.after {
            None => {
                let mut stmt = conn
                    .prepare(
                        "SELECT id, version, body FROM jobs WHERE state = ?1 AND finished_at <= ?2 \
                         ORDER BY finished_at ASC, id ASC LIMIT ?3",
                    )
                    .map_err(db("listing finished jobs"))?;
                jobs_from(
                    &mut stmt,
                    params![state, by, limit],
                    "listing finished jobs",
                )
            }
            Some((after_at, after_id)) => {
                let mut stmt = conn
                    .prepare(
                        "SELECT id, version, body FROM jobs WHERE state = ?1 AND finished_at <= ?2 \
                         AND (finished_at, id) > (?3, ?4) ORDER BY finished_at ASC, id ASC LIMIT ?5",
                    )
                    .map_err(db("listing finished jobs"))?;
                jobs_from(
                    &mut stmt,
                    params![state, by, time_key(after_at), after_id.to_string(), limit],
                    "listing finished jobs",
                )
            }
        }
    }
}

fn decode_event(seq: i64, body: &str) -> Result<AuditEvent> {
    let event: AuditEvent = serde_json::from_str(body).map_err(|_| corrupt("audit_events"))?;
    if i64::try_from(event.seq).ok() != Some(seq) {
        return Err(corrupt("audit_events"));
    }
    Ok(event)
}

impl AuditStore for SqliteStore {
    fn append(&self, e: &AuditEvent) -> Result<()> {
        let body = encode(e, "audit_events")?;
        let seq = to_i64(e.seq, "audit sequence number")?;
        let outcome = encode(&e.outcome, "audit_events")?;
        let outcome = outcome.trim_matches('"').to_string();
        self.write(|tx| {
            let last: Option<i64> = tx
                .query_row("SELECT MAX(seq) FROM audit_events", [], |r| r.get(0))
                .map_err(read_err("audit_events", "reading the last audit event"))?;
            let last = u64::try_from(last.unwrap_or(0)).map_err(|_| corrupt("audit_events"))?;
            let expected = last.saturating_add(1);
            if e.seq != expected {
                return Err(sequence_conflict(expected, e.seq));
            }
            tx.execute(
                "INSERT INTO audit_events (seq, event_id, timestamp, actor_subject, action, target, outcome, \
                 request_id, prev_hash, hash, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    seq,
                    e.event_id.to_string(),
                    time_key(e.timestamp),
                    e.actor.subject,
                    e.action,
                    e.target,
                    outcome,
                    e.request_id,
                    e.prev_hash,
                    e.hash,
                    body
                ],
            )
            .map_err(db("appending an audit event"))?;
            Ok(())
        })
    }

    fn last(&self) -> Result<Option<(u64, String)>> {
        let row = self
            .lock()
            .query_row(
                "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(read_err("audit_events", "reading the last audit event"))?;
        row.map(|(seq, hash)| {
            u64::try_from(seq)
                .map(|seq| (seq, hash))
                .map_err(|_| corrupt("audit_events"))
        })
        .transpose()
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        let Ok(from) = i64::try_from(from) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT seq, body FROM audit_events WHERE seq >= ?1 ORDER BY seq ASC LIMIT ?2")
            .map_err(db("reading audit events"))?;
        let rows = stmt
            .query_map(params![from, limit], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(db("reading audit events"))?;
        let mut events = Vec::new();
        for row in rows {
            let (seq, body) = row.map_err(read_err("audit_events", "reading audit events"))?;
            events.push(decode_event(seq, &body)?);
        }
        Ok(events)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::conformance::{at, run_all, Stores};

    #[test]
    fn sqlite_store_passes_the_conformance_suite_on_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicUsize::new(0);
        run_all(&|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Stores::from_one(SqliteStore::open(&dir.path().join(format!("{i}.db"))).unwrap())
        });
    }

    #[test]
    fn time_keys_sort_as_times() {
        let times = [
            at(-1),
            at(0),
            at(0) + chrono::Duration::nanoseconds(1),
            at(0) + chrono::Duration::microseconds(1),
            at(1),
            at(86_400 * 400),
        ];
        for pair in times.windows(2) {
            assert!(time_key(pair[0]) < time_key(pair[1]), "{pair:?}");
        }
        assert_eq!(time_key(at(0)), "2025-01-21T10:00:00.123456789Z");
    }
}
