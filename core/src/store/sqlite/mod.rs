//! The SQLite store: jobs, API keys, signers' credentials and the audit trail in one file (WAL,
//! `synchronous=FULL`), shared safely by several connections and processes; for a home, the trail archived in
//! `audit.log` beside it ([`archive`]).
//!
//! # Records
//!
//! Each record is kept whole as JSON in a `body` column (the source of truth, so fields can be added without a
//! migration); the other columns are copies used for lookups, uniqueness, ordering and the optimistic lock, and a
//! record whose columns disagree with its body is refused. With a row key ([`SqliteOptions::row_key`], a home's),
//! every job, key and signer row also carries a MAC (HMAC-SHA256 of the table, the id and the body) checked on
//! every read: a row edited outside trialport is EXP005 `integrity_violation`, never trusted.
//!
//! Signers' credentials ([`crate::signer::SignerCredential`]) are rows of `signing_credentials`, keyed by
//! organization and subject. Versions before schema 4 kept that table in another form, written outside the
//! store's transactions (one column per field, no body, no MAC); [`migrate`] converts it in place.
//!
//! # Transactions and the audit trail
//!
//! [`Store::write`] runs in one `BEGIN IMMEDIATE` transaction: the changes, the events staged with them
//! (`audit_events`) and the chain's anchor (`audit_anchor`: the last event's sequence number and hash, under the
//! row key's MAC) commit together. With an archive, the committed events are then appended to `audit.log`, and
//! removed from the table once the log holds them; so the table holds at most the events of a crash between the
//! commit and the copy, which the next open copies. Without an archive, the table is the whole trail.
//!
//! Opening checks the archive against the anchor, reading only the ends: the archive's last event must be the
//! anchor's, or an earlier one followed in the table by every event up to the anchor's. A log that holds events the
//! database never committed (forged appends), lost events the database no longer holds (a cut tail), or whose last
//! event differs (a rewritten chain) makes the store refuse to open (EXP005 `integrity_violation` with
//! `details.check` = `anchor`).

mod archive;

use super::memory::{
    check_next, duplicate_id, idempotency_conflict, key_exists, next_version, version_conflict,
};
use super::{Store, Witness, Work};
use crate::audit::{AuditEvent, AuditReads, AuditRows};
use crate::auth::{ApiKeyRecord, KeyReads, KeyRows};
use crate::error::Error;
use crate::error::Reason;
use crate::error::Result;
use crate::job::{check_finished_limit, FinishedQuery, Job, JobPage, JobQuery, JobReads, JobRows};
use crate::signer::{PasswordHash, SignerCredential, SignerReads, SignerRows};
use crate::study::{study_exists, StudyReads, StudyRecord, StudyRows};
use archive::Archive;
use chrono::{DateTime, Utc};
use ring::hmac;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use uuid::Uuid;

/// The schema version written to `PRAGMA user_version`: 1, the first; 2 added `jobs.finished_at` and its index;
/// 3 added row MACs, the audit anchor and the lease columns; 4 moved signers' credentials into the store
/// (`signing_credentials` as records with a body and a MAC); 5 added the study registry (see [`migrate`]).
const SCHEMA_VERSION: i64 = 5;

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
CREATE TABLE IF NOT EXISTS studies (
    study TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL,
    body TEXT NOT NULL,
    mac TEXT
);
CREATE INDEX IF NOT EXISTS studies_org ON studies (org, study);
CREATE TABLE IF NOT EXISTS studies_adoption (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    body TEXT NOT NULL,
    mac TEXT
);
CREATE TABLE IF NOT EXISTS audit_anchor (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    mac TEXT
);
";

/// The body of the `studies_adoption` row: a file upgraded to the study registry whose studies are still to be
/// bound (see [`Store::studies_to_adopt`]).
const ADOPTION_BODY: &str = "upgrade";

/// The table of signers' credentials (schema version 4): created here, or converted from its older form by
/// [`migrate`].
const SIGNERS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS signing_credentials (
    org TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    mac TEXT,
    PRIMARY KEY (org, subject)
);
";

/// The columns and indexes of schema versions 2 and 3, created once their columns exist (after [`migrate`]).
const SCHEMA_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS jobs_state_finished ON jobs (state, finished_at, id);
CREATE INDEX IF NOT EXISTS jobs_state_lease ON jobs (state, lease_expires_at);
";

/// How a [`SqliteStore`] is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteOptions<'a> {
    /// Archive the audit trail in this append-only file (a home's `audit.log`).
    pub archive: Option<&'a Path>,
    /// The key of row MACs (at least 32 bytes; a home derives it from its secret). Without one, rows carry no MAC.
    pub row_key: Option<&'a [u8]>,
}

/// Jobs, keys and the audit trail in one SQLite file (see the module docs).
///
/// One connection behind a mutex; open several stores (or processes) on the same file to share it: transactions
/// are serialized across all of them.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    mac: Option<hmac::Key>,
    archive: Option<Archive>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// EXP005 `store_error` for a SQLite failure: the context and SQLite's error code, never the values involved.
fn db(context: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| {
        let mut err = Error::server(Reason::StoreError, format!("SQLite store: {context}"));
        if let Some(code) = e.sqlite_error_code() {
            err = err.with_detail("sqlite_error", format!("{code:?}"));
        }
        err
    }
}

/// EXP005 `corrupt_record`: a stored row that cannot be read back.
fn corrupt(table: &'static str) -> Error {
    Error::server(
        Reason::CorruptRecord,
        format!("a stored {table} record cannot be read"),
    )
    .with_detail("table", table)
}

/// EXP005 `integrity_violation`: a row whose MAC does not hold (edited outside trialport).
fn tampered(table: &'static str) -> Error {
    Error::server(
        Reason::IntegrityViolation,
        format!("a stored {table} record was altered outside trialport"),
    )
    .with_detail("table", table)
    .with_detail("check", "row_mac")
}

/// EXP005 `integrity_violation` (check `anchor`): the archive disagrees with the database's anchor.
fn anchor_violation(message: &str, archived: u64, anchored: u64) -> Error {
    Error::server(Reason::IntegrityViolation, message.to_string())
        .with_detail("check", "anchor")
        .with_detail("archive_seq", archived)
        .with_detail("anchor_seq", anchored)
}

/// Sortable text for a time: RFC 3339 UTC with nine fraction digits (lexical order is time order).
fn time_key(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// A `u64` as SQLite's signed integer.
fn to_i64(v: u64, what: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| {
        Error::server(
            Reason::StoreError,
            format!("{what} is too large for the SQLite store"),
        )
    })
}

fn encode<T: serde::Serialize>(value: &T, table: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|_| {
        Error::server(
            Reason::StoreError,
            format!("a {table} record cannot be encoded"),
        )
    })
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

/// What a row's MAC covers: the table name, the id and the body, each length-prefixed.
fn mac_input(table: &str, id: &str, body: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(table.len() + id.len() + body.len() + 24);
    for part in [table, id, body] {
        v.extend_from_slice(&(part.len() as u64).to_be_bytes());
        v.extend_from_slice(part.as_bytes());
    }
    v
}

/// The MAC of a row: HMAC-SHA256 of [`mac_input`], lowercase hex.
fn row_mac(key: &hmac::Key, table: &str, id: &str, body: &str) -> String {
    crate::codec::hex(hmac::sign(key, &mac_input(table, id, body)).as_ref())
}

/// Checks a row's MAC (when the store has a row key), in constant time.
fn check_mac(
    key: Option<&hmac::Key>,
    table: &'static str,
    id: &str,
    body: &str,
    mac: Option<&str>,
) -> Result<()> {
    let Some(key) = key else { return Ok(()) };
    let given = mac
        .and_then(crate::codec::hex_decode)
        .ok_or_else(|| tampered(table))?;
    hmac::verify(key, &mac_input(table, id, body), &given).map_err(|_| tampered(table))
}

/// A job row as read: `(id, version, body, mac)` plus the lookup columns checked against the body.
struct JobRow {
    id: String,
    version: i64,
    org: String,
    study: String,
    state: String,
    body: String,
    mac: Option<String>,
}

const JOB_COLUMNS: &str = "id, version, org, study, state, body, mac";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        version: r.get(1)?,
        org: r.get(2)?,
        study: r.get(3)?,
        state: r.get(4)?,
        body: r.get(5)?,
        mac: r.get(6)?,
    })
}

/// Decodes a job row: its MAC, then its body, which must agree with the row's columns.
fn decode_job(key: Option<&hmac::Key>, row: &JobRow) -> Result<Job> {
    check_mac(key, "jobs", &row.id, &row.body, row.mac.as_deref())?;
    let job: Job = serde_json::from_str(&row.body).map_err(|_| corrupt("jobs"))?;
    if job.id.to_string() != row.id
        || i64::try_from(job.version).ok() != Some(row.version)
        || job.org != row.org
        || job.study != row.study
        || job.state.as_str() != row.state
    {
        return Err(Error::server(
            Reason::IntegrityViolation,
            "a stored jobs record disagrees with its columns",
        )
        .with_detail("table", "jobs")
        .with_detail("check", "columns"));
    }
    Ok(job)
}

/// Reads job rows of a query into jobs.
fn jobs_from(
    key: Option<&hmac::Key>,
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    context: &'static str,
) -> Result<Vec<Job>> {
    let rows = stmt.query_map(params, job_row).map_err(db(context))?;
    let mut jobs = Vec::new();
    for row in rows {
        let row = row.map_err(read_err("jobs", context))?;
        jobs.push(decode_job(key, &row)?);
    }
    Ok(jobs)
}

/// The stored job with `id`, if any.
fn load_job(conn: &Connection, key: Option<&hmac::Key>, id: &str) -> Result<Option<Job>> {
    let row = conn
        .query_row(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
            [id],
            job_row,
        )
        .optional()
        .map_err(read_err("jobs", "reading a job"))?;
    row.map(|row| decode_job(key, &row)).transpose()
}

/// Writes every column of `job` (insert, or replace where the stored version is `job.version - 1`); returns the
/// rows changed.
fn write_job(
    tx: &rusqlite::Transaction<'_>,
    key: Option<&hmac::Key>,
    job: &Job,
    insert: bool,
) -> Result<usize> {
    let body = encode(job, "jobs")?;
    let version = to_i64(job.version, "job version")?;
    let id = job.id.to_string();
    let mac = key.map(|k| row_mac(k, "jobs", &id, &body));
    let created = time_key(job.created_at);
    let finished = job.finished_at.map(time_key);
    let lease = job.lease.as_ref().map(|l| time_key(l.expires_at));
    let result = if insert {
        tx.execute(
            "INSERT INTO jobs (id, org, study, state, requested_by, idempotency_key, request_hash, created_at, \
             version, body, finished_at, lease_expires_at, mac) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
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
                finished,
                lease,
                mac
            ],
        )
    } else {
        let previous = to_i64(job.version.saturating_sub(1), "job version")?;
        tx.execute(
            "UPDATE jobs SET org = ?2, study = ?3, state = ?4, requested_by = ?5, idempotency_key = ?6, \
             request_hash = ?7, created_at = ?8, version = ?9, body = ?10, finished_at = ?12, \
             lease_expires_at = ?13, mac = ?14 WHERE id = ?1 AND version = ?11",
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
                finished,
                lease,
                mac
            ],
        )
    };
    result.map_err(|e| {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
            // The only constraints are the primary key and the idempotency index.
            if insert
                && load_job(tx, None, &job.id.to_string())
                    .ok()
                    .flatten()
                    .is_some()
            {
                duplicate_id()
            } else {
                idempotency_conflict()
            }
        } else {
            db("writing a job")(e)
        }
    })
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, Option<String>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

/// Decodes a key row `(key_id, org, body, mac)`.
fn decode_key(
    key: Option<&hmac::Key>,
    (key_id, org, body, mac): &(String, String, String, Option<String>),
) -> Result<ApiKeyRecord> {
    check_mac(key, "api_keys", key_id, body, mac.as_deref())?;
    let rec: ApiKeyRecord = serde_json::from_str(body).map_err(|_| corrupt("api_keys"))?;
    if rec.key_id != *key_id || rec.org != *org {
        return Err(Error::server(
            Reason::IntegrityViolation,
            "a stored api_keys record disagrees with its columns",
        )
        .with_detail("table", "api_keys")
        .with_detail("check", "columns"));
    }
    Ok(rec)
}

fn load_key(
    conn: &Connection,
    key: Option<&hmac::Key>,
    key_id: &str,
) -> Result<Option<ApiKeyRecord>> {
    let row = conn
        .query_row(
            "SELECT key_id, org, body, mac FROM api_keys WHERE key_id = ?1",
            [key_id],
            key_row,
        )
        .optional()
        .map_err(read_err("api_keys", "reading a key"))?;
    row.map(|r| decode_key(key, &r)).transpose()
}

fn study_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, Option<String>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

/// Decodes a study row `(study, org, body, mac)`.
fn decode_study(
    key: Option<&hmac::Key>,
    (study, org, body, mac): &(String, String, String, Option<String>),
) -> Result<StudyRecord> {
    check_mac(key, "studies", study, body, mac.as_deref())?;
    let rec: StudyRecord = serde_json::from_str(body).map_err(|_| corrupt("studies"))?;
    if rec.study != *study || rec.org != *org {
        return Err(Error::server(
            Reason::IntegrityViolation,
            "a stored studies record disagrees with its columns",
        )
        .with_detail("table", "studies")
        .with_detail("check", "columns"));
    }
    Ok(rec)
}

/// The id a signer row's MAC covers: the organization's length, a colon, the organization and the subject (so
/// that no two (organization, subject) pairs share an id).
fn signer_id(org: &str, subject: &str) -> String {
    format!("{}:{org}{subject}", org.len())
}

/// Decodes a signer row `(org, subject, body, mac)`: its MAC, then its body, which must name the row's
/// organization and subject.
fn decode_signer(
    key: Option<&hmac::Key>,
    (org, subject, body, mac): &(String, String, String, Option<String>),
) -> Result<SignerCredential> {
    check_mac(
        key,
        "signing_credentials",
        &signer_id(org, subject),
        body,
        mac.as_deref(),
    )?;
    let rec: SignerCredential =
        serde_json::from_str(body).map_err(|_| corrupt("signing_credentials"))?;
    if rec.org != *org || rec.subject != *subject {
        return Err(Error::server(
            Reason::IntegrityViolation,
            "a stored signing_credentials record disagrees with its columns",
        )
        .with_detail("table", "signing_credentials")
        .with_detail("check", "columns"));
    }
    Ok(rec)
}

fn load_study(
    conn: &Connection,
    key: Option<&hmac::Key>,
    study: &str,
) -> Result<Option<StudyRecord>> {
    let row = conn
        .query_row(
            "SELECT study, org, body, mac FROM studies WHERE study = ?1",
            [study],
            study_row,
        )
        .optional()
        .map_err(read_err("studies", "reading a study"))?;
    row.map(|r| decode_study(key, &r)).transpose()
}

fn load_signer(
    conn: &Connection,
    key: Option<&hmac::Key>,
    org: &str,
    subject: &str,
) -> Result<Option<SignerCredential>> {
    let row = conn
        .query_row(
            "SELECT org, subject, body, mac FROM signing_credentials WHERE org = ?1 AND subject = ?2",
            [org, subject],
            key_row,
        )
        .optional()
        .map_err(read_err("signing_credentials", "reading a signer"))?;
    row.map(|r| decode_signer(key, &r)).transpose()
}

/// Inserts or replaces the row of `body` (a signer's record, encoded) under its MAC.
fn put_signer_row(
    conn: &Connection,
    key: Option<&hmac::Key>,
    org: &str,
    subject: &str,
    body: &str,
) -> Result<()> {
    let mac = key.map(|k| row_mac(k, "signing_credentials", &signer_id(org, subject), body));
    conn.execute(
        "INSERT INTO signing_credentials (org, subject, body, mac) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (org, subject) DO UPDATE SET body = excluded.body, mac = excluded.mac",
        params![org, subject, body, mac],
    )
    .map_err(db("writing a signer"))?;
    Ok(())
}

fn decode_event(seq: i64, body: &str) -> Result<AuditEvent> {
    let event: AuditEvent = serde_json::from_str(body).map_err(|_| corrupt("audit_events"))?;
    if i64::try_from(event.seq).ok() != Some(seq) {
        return Err(corrupt("audit_events"));
    }
    Ok(event)
}

/// Events of the table with `seq >= from`, at most `limit`.
fn table_events(conn: &Connection, from: u64, limit: usize) -> Result<Vec<AuditEvent>> {
    let Ok(from) = i64::try_from(from) else {
        return Ok(Vec::new());
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
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

/// The anchor: the last committed event's sequence number and hash, its MAC checked.
fn load_anchor(conn: &Connection, key: Option<&hmac::Key>) -> Result<Option<(u64, String)>> {
    let row = conn
        .query_row(
            "SELECT seq, hash, mac FROM audit_anchor WHERE id = 1",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            },
        )
        .optional()
        .map_err(read_err("audit_anchor", "reading the audit anchor"))?;
    let Some((seq, hash, mac)) = row else {
        return Ok(None);
    };
    let seq_text = seq.to_string();
    check_mac(key, "audit_anchor", &seq_text, &hash, mac.as_deref())?;
    let seq = u64::try_from(seq).map_err(|_| corrupt("audit_anchor"))?;
    Ok(Some((seq, hash)))
}

fn write_anchor(
    tx: &rusqlite::Transaction<'_>,
    key: Option<&hmac::Key>,
    seq: u64,
    hash: &str,
) -> Result<()> {
    let seq_i = to_i64(seq, "audit sequence number")?;
    let mac = key.map(|k| row_mac(k, "audit_anchor", &seq.to_string(), hash));
    tx.execute(
        "INSERT INTO audit_anchor (id, seq, hash, mac) VALUES (1, ?1, ?2, ?3) \
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac",
        params![seq_i, hash, mac],
    )
    .map_err(db("writing the audit anchor"))?;
    Ok(())
}

fn insert_event(tx: &rusqlite::Transaction<'_>, e: &AuditEvent) -> Result<()> {
    let line = e.canonical();
    if line.len() + 1 > archive::MAX_RECORD {
        return Err(Error::validation(
            Reason::AuditRecordTooLarge,
            "the audit event is larger than the audit trail accepts",
        )
        .with_detail("max_bytes", archive::MAX_RECORD));
    }
    let outcome = e.outcome.as_str();
    tx.execute(
        "INSERT INTO audit_events (seq, event_id, timestamp, actor_subject, action, target, outcome, \
         request_id, prev_hash, hash, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            to_i64(e.seq, "audit sequence number")?,
            e.event_id.to_string(),
            time_key(e.timestamp),
            e.actor.subject,
            e.action,
            e.target,
            outcome,
            e.request_id,
            e.prev_hash,
            e.hash,
            line
        ],
    )
    .map_err(db("staging an audit event"))?;
    Ok(())
}

/// Upgrades a file of an older schema version (or a new one) to the current one, in the schema transaction:
/// version 2 added `jobs.finished_at` (filled from each job's record); version 3 added `lease_expires_at` and the
/// row MACs (filled for every row when the store has a row key: the rows are trusted once, at this upgrade);
/// version 4 converted `signing_credentials` to records ([`migrate_signers`]); version 5 added the `studies` table
/// (created by the schema, empty: the engine binds the studies of an upgraded home's sources to its organization,
/// see [`Store::studies_to_adopt`]).
fn migrate(tx: &rusqlite::Transaction<'_>, from: i64, key: Option<&hmac::Key>) -> Result<()> {
    let has_column = |table: &str, column: &str| -> Result<bool> {
        tx.prepare(&format!(
            "SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"
        ))
        .and_then(|mut stmt| stmt.exists([]))
        .map_err(db("reading a table's columns"))
    };
    for (table, column) in [
        ("jobs", "finished_at"),
        ("jobs", "lease_expires_at"),
        ("jobs", "mac"),
        ("api_keys", "mac"),
    ] {
        if !has_column(table, column)? {
            tx.execute(&format!("ALTER TABLE {table} ADD COLUMN {column} TEXT"), [])
                .map_err(db("adding a column"))?;
        }
    }
    migrate_signers(tx, key, &has_column)?;
    if from >= 3 {
        return Ok(());
    }
    // Fill finished_at (version 2) and the MACs (version 3) from each record.
    let mut rows = Vec::new();
    {
        let mut stmt = tx
            .prepare("SELECT id, body FROM jobs")
            .map_err(db("upgrading jobs"))?;
        let found = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(db("upgrading jobs"))?;
        for row in found {
            rows.push(row.map_err(read_err("jobs", "upgrading jobs"))?);
        }
    }
    for (id, body) in rows {
        let finished = serde_json::from_str::<Job>(&body)
            .ok()
            .and_then(|j| j.finished_at)
            .map(time_key);
        let mac = key.map(|k| row_mac(k, "jobs", &id, &body));
        tx.execute(
            "UPDATE jobs SET finished_at = COALESCE(finished_at, ?2), mac = ?3 WHERE id = ?1",
            params![id, finished, mac],
        )
        .map_err(db("upgrading jobs"))?;
    }
    let mut keys = Vec::new();
    {
        let mut stmt = tx
            .prepare("SELECT key_id, body FROM api_keys")
            .map_err(db("upgrading keys"))?;
        let found = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(db("upgrading keys"))?;
        for row in found {
            keys.push(row.map_err(read_err("api_keys", "upgrading keys"))?);
        }
    }
    for (id, body) in keys {
        let mac = key.map(|k| row_mac(k, "api_keys", &id, &body));
        tx.execute(
            "UPDATE api_keys SET mac = ?2 WHERE key_id = ?1",
            params![id, mac],
        )
        .map_err(db("upgrading keys"))?;
    }
    Ok(())
}

/// The columns of the older form of `signing_credentials` (one per field, written by the password store of
/// versions before schema 4), in the order [`migrate_signers`] reads them; the last three were added to that form
/// later, so a table may lack them.
const OLD_SIGNER_COLUMNS: [&str; 12] = [
    "org",
    "subject",
    "scheme",
    "iterations",
    "salt",
    "hash",
    "failures",
    "locked_at",
    "updated_at",
    "reset_at",
    "reset_by",
    "studies",
];

/// One row of the older form of `signing_credentials`, every column as SQLite gives it.
type OldSignerRow = Vec<rusqlite::types::Value>;

/// The record of a row of the older form of `signing_credentials`, or `None` when the row cannot be one (a
/// column of the wrong type, a time or a study list that cannot be read, a hash without its salt or iterations).
fn old_signer_record(row: &OldSignerRow) -> Option<SignerCredential> {
    use rusqlite::types::Value as V;
    let text = |i: usize| match row.get(i) {
        Some(V::Text(t)) => Some(Some(t.clone())),
        Some(V::Null) | None => Some(None),
        _ => None,
    };
    let time = |i: usize| -> Option<Option<DateTime<Utc>>> {
        match text(i)? {
            None => Some(None),
            Some(t) => DateTime::parse_from_rfc3339(&t)
                .ok()
                .map(|t| Some(t.with_timezone(&Utc))),
        }
    };
    let (org, subject) = (text(0)??, text(1)??);
    let password = match (text(2)?, row.get(3), text(4)?, text(5)?) {
        (_, _, _, None) => None,
        (Some(scheme), Some(V::Integer(n)), Some(salt), Some(hash)) => Some(PasswordHash {
            scheme,
            iterations: u32::try_from(*n).ok()?,
            salt,
            hash,
        }),
        _ => return None,
    };
    let failures = match row.get(6) {
        Some(V::Integer(n)) => u32::try_from(*n).ok()?,
        _ => return None,
    };
    let studies = match text(11)? {
        None => None,
        Some(t) => Some(serde_json::from_str::<Vec<String>>(&t).ok()?),
    };
    Some(SignerCredential {
        org,
        subject,
        password,
        failures,
        locked_at: time(7)?,
        reset_at: time(9)?,
        reset_by: text(10)?,
        studies,
        updated_at: time(8)??,
    })
}

/// Converts a `signing_credentials` table of the older form (see [`OLD_SIGNER_COLUMNS`]) into records, in the
/// schema transaction, so that homes made by earlier versions keep their signers' passwords, failed attempts, locks
/// and resets; creates the table when there is none. Each row becomes the record of its fields, under a MAC (the
/// rows are trusted once, at this upgrade, as jobs and keys were at version 3). A row that cannot be a record is
/// kept as it was, inside a body no record reads: that signer's credential is then EXP005 `corrupt_record`, as it
/// was before, and nothing is lost. A table already in the current form is left alone.
fn migrate_signers(
    tx: &rusqlite::Transaction<'_>,
    key: Option<&hmac::Key>,
    has_column: &dyn Fn(&str, &str) -> Result<bool>,
) -> Result<()> {
    if has_column("signing_credentials", "body")? || !has_column("signing_credentials", "org")? {
        return tx
            .execute_batch(SIGNERS_TABLE)
            .map_err(db("creating the signers table"));
    }
    let mut select = Vec::new();
    for column in OLD_SIGNER_COLUMNS {
        select.push(if has_column("signing_credentials", column)? {
            column.to_string()
        } else {
            format!("NULL AS {column}")
        });
    }
    let mut rows: Vec<OldSignerRow> = Vec::new();
    {
        let mut stmt = tx
            .prepare(&format!(
                "SELECT {} FROM signing_credentials ORDER BY org, subject",
                select.join(", ")
            ))
            .map_err(db("upgrading signers"))?;
        let found = stmt
            .query_map([], |r| {
                (0..OLD_SIGNER_COLUMNS.len())
                    .map(|i| r.get::<_, rusqlite::types::Value>(i))
                    .collect::<rusqlite::Result<OldSignerRow>>()
            })
            .map_err(db("upgrading signers"))?;
        for row in found {
            rows.push(row.map_err(db("upgrading signers"))?);
        }
    }
    tx.execute_batch("ALTER TABLE signing_credentials RENAME TO signing_credentials_before_v4;")
        .map_err(db("upgrading signers"))?;
    tx.execute_batch(SIGNERS_TABLE)
        .map_err(db("creating the signers table"))?;
    for row in &rows {
        use rusqlite::types::Value as V;
        let text = |i: usize| match row.get(i) {
            Some(V::Text(t)) => t.clone(),
            _ => String::new(),
        };
        let (org, subject) = (text(0), text(1));
        let body = match old_signer_record(row) {
            Some(rec) => encode(&rec, "signing_credentials")?,
            None => {
                // Kept whole for whoever repairs it; not a record, so reading it is `corrupt_record`.
                let columns: serde_json::Map<String, serde_json::Value> = OLD_SIGNER_COLUMNS
                    .iter()
                    .zip(row)
                    .map(|(name, v)| {
                        let v = match v {
                            V::Null => serde_json::Value::Null,
                            V::Integer(n) => serde_json::Value::from(*n),
                            V::Real(x) => serde_json::Value::from(*x),
                            V::Text(t) => serde_json::Value::from(t.clone()),
                            V::Blob(b) => serde_json::Value::from(crate::codec::hex(b)),
                        };
                        (name.to_string(), v)
                    })
                    .collect();
                encode(
                    &serde_json::json!({"unreadable_before_v4": columns}),
                    "signing_credentials",
                )?
            }
        };
        put_signer_row(tx, key, &org, &subject, &body)?;
    }
    tx.execute_batch("DROP TABLE signing_credentials_before_v4;")
        .map_err(db("upgrading signers"))?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating when missing) the store in the SQLite file at `path`, without an archive or row MACs (see
    /// [`SqliteStore::open_with`]).
    ///
    /// # Errors
    /// As [`SqliteStore::open_with`].
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (creating when missing) the store in the SQLite file at `path`: WAL journal, `synchronous=FULL`, a
    /// busy timeout so several connections and processes can share the file, and the schema (version 5 in
    /// `PRAGMA user_version`; older files are upgraded in place, in one transaction). A newer version is refused,
    /// so that an older trialport never writes rows without the columns it does not know. With an archive, checks
    /// it against the anchor and copies to it the events it lacks (see the module docs).
    ///
    /// # Errors
    /// EXP005 `store_error` when the file cannot be opened or has a newer schema version; EXP005
    /// `integrity_violation` when the archive disagrees with the anchor or its last line is not a record; EXP002
    /// `weak_row_key` for a row key under 32 bytes.
    pub fn open_with(path: &Path, options: SqliteOptions<'_>) -> Result<Self> {
        let conn = Connection::open(path).map_err(db("opening the database file"))?;
        Self::setup(conn, true, options)
    }

    /// A store in a private in-memory database (for tests; nothing survives the store).
    ///
    /// # Errors
    /// EXP005 `store_error` when SQLite fails.
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(db("opening an in-memory database"))?;
        Self::setup(conn, false, SqliteOptions::default())
    }

    fn setup(mut conn: Connection, file: bool, options: SqliteOptions<'_>) -> Result<Self> {
        let mac = match options.row_key {
            Some(k) if k.len() < 32 => {
                return Err(Error::validation(
                    Reason::WeakRowKey,
                    "the row key needs at least 32 bytes",
                ))
            }
            Some(k) => Some(hmac::Key::new(hmac::HMAC_SHA256, k)),
            None => None,
        };
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db("setting the busy timeout"))?;
        if file {
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                .map_err(db("enabling WAL"))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::server(
                    Reason::StoreError,
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
                Reason::StoreError,
                "SQLite store: the database was written by a newer trialport (schema version too new)",
            )
            .with_detail("schema_version", version));
        }
        // Whether the file already has a study registry (version 5; or a development build's version 4 that added
        // the registry before the signers' records): checked before the schema creates the table.
        let had_registry = tx
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'studies'")
            .and_then(|mut stmt| stmt.exists([]))
            .map_err(db("reading the schema"))?;
        tx.execute_batch(SCHEMA)
            .map_err(db("creating the schema"))?;
        migrate(&tx, version, mac.as_ref())?;
        tx.execute_batch(SCHEMA_INDEXES)
            .map_err(db("creating the schema"))?;
        if version >= 1 && !had_registry {
            // A file made before the registry: its studies are to be bound by the next engine on the home, whichever
            // process upgraded the file (see [`Store::studies_to_adopt`]).
            let mac = mac
                .as_ref()
                .map(|k| row_mac(k, "studies_adoption", "1", ADOPTION_BODY));
            tx.execute(
                "INSERT OR IGNORE INTO studies_adoption (id, body, mac) VALUES (1, ?1, ?2)",
                params![ADOPTION_BODY, mac],
            )
            .map_err(db("upgrading studies"))?;
        }
        if version < SCHEMA_VERSION {
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(db("writing the schema version"))?;
        }
        tx.commit().map_err(db("committing the schema"))?;
        let archive = options.archive.map(Archive::open).transpose()?;
        let store = SqliteStore {
            conn: Mutex::new(conn),
            mac,
            archive,
        };
        if store.archive.is_some() {
            store.reconcile(version < 3)?;
        }
        Ok(store)
    }

    /// Checks the archive against the anchor and copies to it the committed events it lacks (see the module docs).
    /// `upgrading`: the file predates anchors, so an archive without one is adopted as it is.
    fn reconcile(&self, upgrading: bool) -> Result<()> {
        let Some(archive) = &self.archive else {
            return Ok(());
        };
        // Under the database's write lock, so that no other process commits events or prunes the table while the
        // log, the anchor and the table are compared: read outside it, another process's commit, append and prune
        // between the three reads looked like a cut log. The log itself may still grow meanwhile (appends follow
        // commits, outside this lock), which only ever makes it catch up; appending is idempotent.
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("starting a write transaction"))?;
        let archived = archive.last()?;
        let anchor = load_anchor(&tx, self.mac.as_ref())?;
        let archived_seq = archived.as_ref().map_or(0, |a| a.0);
        match &anchor {
            None => {
                let table_last: Option<i64> = tx
                    .query_row("SELECT MAX(seq) FROM audit_events", [], |r| r.get(0))
                    .map_err(read_err("audit_events", "reading the audit trail"))?;
                if archived.is_some() && !upgrading {
                    return Err(anchor_violation(
                        "the audit log holds events but the database has no anchor: it was removed",
                        archived_seq,
                        0,
                    ));
                }
                // An older home: events its database held (before the log existed) go to the log first; then the
                // anchor starts at the log's end.
                if table_last.is_some_and(|t| u64::try_from(t).unwrap_or(0) > archived_seq) {
                    let pending = table_events(&tx, archived_seq + 1, usize::MAX)?;
                    archive.append(&pending)?;
                }
                if let Some((seq, hash)) = archive.last()? {
                    write_anchor(&tx, self.mac.as_ref(), seq, &hash)?;
                }
            }
            Some((anchor_seq, anchor_hash)) => {
                if archived_seq > *anchor_seq {
                    return Err(anchor_violation(
                        "the audit log holds events the database never committed",
                        archived_seq,
                        *anchor_seq,
                    ));
                }
                if archived_seq == *anchor_seq {
                    if archived.as_ref().map(|a| &a.1) != Some(anchor_hash) && *anchor_seq > 0 {
                        return Err(anchor_violation(
                            "the audit log's last event is not the one the database anchors",
                            archived_seq,
                            *anchor_seq,
                        ));
                    }
                } else {
                    // The log lags: the events after its end must all still be in the table.
                    let pending = table_events(&tx, archived_seq + 1, usize::MAX)?;
                    let complete = pending.first().map(|e| e.seq) == Some(archived_seq + 1)
                        && pending.last().map(|e| (e.seq, &e.hash))
                            == Some((*anchor_seq, anchor_hash));
                    if !complete {
                        return Err(anchor_violation(
                            "the audit log lost events the database no longer holds: its end was cut",
                            archived_seq,
                            *anchor_seq,
                        ));
                    }
                    archive.append(&pending)?;
                }
            }
        }
        Self::prune(&tx, archive)?;
        tx.commit().map_err(db("committing"))?;
        Ok(())
    }

    /// Removes from the table the events the archive holds.
    fn prune(conn: &Connection, archive: &Archive) -> Result<()> {
        let Some((last, _)) = archive.last()? else {
            return Ok(());
        };
        conn.execute(
            "DELETE FROM audit_events WHERE seq <= ?1",
            [to_i64(last, "audit sequence number")?],
        )
        .map_err(db("pruning archived audit events"))?;
        Ok(())
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

    /// Copies to the archive the committed events it lacks. A failure poisons the archive (see [`archive`]); the
    /// events stay in the table meanwhile, so it is reported, not returned: the transaction committed.
    fn archive_committed(&self) {
        let Some(archive) = &self.archive else { return };
        if archive.is_poisoned() {
            return;
        }
        let result = (|| {
            let from = archive.last()?.map_or(1, |(seq, _)| seq + 1);
            let pending = table_events(&self.lock(), from, usize::MAX)?;
            archive.append(&pending)
        })();
        if result.is_err() {
            // The events are durable in the database; the next open copies them.
        }
    }
}

/// A transaction of the SQLite store.
struct SqliteTx<'t> {
    tx: &'t rusqlite::Transaction<'t>,
    mac: Option<&'t hmac::Key>,
    /// The head of the chain: read from the anchor at first use, then moved by each staged event.
    head: Option<Option<(u64, String)>>,
    staged: Vec<AuditEvent>,
}

impl JobRows for SqliteTx<'_> {
    fn job(&mut self, id: Uuid) -> Result<Option<Job>> {
        load_job(self.tx, self.mac, &id.to_string())
    }

    fn insert_job(&mut self, job: &Job) -> Result<Job> {
        if load_job(self.tx, self.mac, &job.id.to_string())?.is_some() {
            return Err(duplicate_id());
        }
        let mut stored = job.clone();
        stored.version = 1;
        write_job(self.tx, self.mac, &stored, true)?;
        Ok(stored)
    }

    fn update_job(&mut self, job: &Job) -> Result<Job> {
        let mut stored = job.clone();
        stored.version = next_version(job.version)?;
        if write_job(self.tx, self.mac, &stored, false)? == 1 {
            return Ok(stored);
        }
        match load_job(self.tx, self.mac, &job.id.to_string())? {
            None => Err(Error::not_found("no job with this id")),
            Some(current) => Err(version_conflict(current.version, job.version)),
        }
    }

    fn job_by_idempotency_key(
        &mut self,
        org: &str,
        requested_by: &str,
        key: &str,
    ) -> Result<Option<Job>> {
        let row = self
            .tx
            .query_row(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs \
                     WHERE org = ?1 AND requested_by = ?2 AND idempotency_key = ?3"
                ),
                params![org, requested_by, key],
                job_row,
            )
            .optional()
            .map_err(read_err("jobs", "looking up an idempotency key"))?;
        row.map(|row| decode_job(self.mac, &row)).transpose()
    }

    fn oldest_queued(&mut self) -> Result<Option<Job>> {
        let mut stmt = self
            .tx
            .prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'queued' \
                 ORDER BY created_at ASC, id ASC LIMIT 1"
            ))
            .map_err(db("finding a queued job"))?;
        Ok(jobs_from(self.mac, &mut stmt, [], "finding a queued job")?
            .into_iter()
            .next())
    }

    fn expired_leases(&mut self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Job>> {
        let mut stmt = self
            .tx
            .prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'running' \
                 AND (lease_expires_at IS NULL OR lease_expires_at <= ?1) \
                 ORDER BY lease_expires_at ASC, id ASC LIMIT ?2"
            ))
            .map_err(db("finding expired leases"))?;
        jobs_from(
            self.mac,
            &mut stmt,
            params![time_key(now), i64::from(limit)],
            "finding expired leases",
        )
    }
}

impl KeyRows for SqliteTx<'_> {
    fn key(&mut self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        load_key(self.tx, self.mac, key_id)
    }

    fn insert_key(&mut self, key: &ApiKeyRecord) -> Result<()> {
        if load_key(self.tx, None, &key.key_id)
            .ok()
            .flatten()
            .is_some()
            || self
                .tx
                .query_row(
                    "SELECT 1 FROM api_keys WHERE key_id = ?1",
                    [&key.key_id],
                    |_| Ok(()),
                )
                .optional()
                .map_err(db("looking up a key"))?
                .is_some()
        {
            return Err(key_exists());
        }
        let body = encode(key, "api_keys")?;
        let mac = self.mac.map(|k| row_mac(k, "api_keys", &key.key_id, &body));
        self.tx
            .execute(
                "INSERT INTO api_keys (key_id, org, created_at, body, mac) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key.key_id, key.org, time_key(key.created_at), body, mac],
            )
            .map_err(db("inserting a key"))?;
        Ok(())
    }

    fn update_key(&mut self, key: &ApiKeyRecord) -> Result<()> {
        let body = encode(key, "api_keys")?;
        let mac = self.mac.map(|k| row_mac(k, "api_keys", &key.key_id, &body));
        let n = self
            .tx
            .execute(
                "UPDATE api_keys SET org = ?2, created_at = ?3, body = ?4, mac = ?5 WHERE key_id = ?1",
                params![key.key_id, key.org, time_key(key.created_at), body, mac],
            )
            .map_err(db("updating a key"))?;
        if n == 0 {
            return Err(Error::not_found("no API key with this id"));
        }
        Ok(())
    }

    fn org_has_keys(&mut self, org: &str) -> Result<bool> {
        self.tx
            .query_row(
                "SELECT 1 FROM api_keys WHERE org = ?1 LIMIT 1",
                [org],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(db("looking up keys"))
    }
}

impl StudyRows for SqliteTx<'_> {
    fn study(&mut self, study: &str) -> Result<Option<StudyRecord>> {
        load_study(self.tx, self.mac, study)
    }

    fn insert_study(&mut self, record: &StudyRecord) -> Result<()> {
        let body = encode(record, "studies")?;
        let mac = self
            .mac
            .map(|k| row_mac(k, "studies", &record.study, &body));
        self.tx
            .execute(
                "INSERT INTO studies (study, org, body, mac) VALUES (?1, ?2, ?3, ?4)",
                params![record.study, record.org, body, mac],
            )
            .map_err(|e| {
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::ConstraintViolation)
                ) {
                    study_exists()
                } else {
                    db("inserting a study")(e)
                }
            })?;
        Ok(())
    }

    fn studies_adopted(&mut self) -> Result<()> {
        self.tx
            .execute("DELETE FROM studies_adoption", [])
            .map_err(db("ending the adoption of studies"))?;
        Ok(())
    }

    fn delete_study(&mut self, study: &str) -> Result<()> {
        let n = self
            .tx
            .execute("DELETE FROM studies WHERE study = ?1", [study])
            .map_err(db("removing a study"))?;
        if n == 0 {
            return Err(Error::not_found("no such study").with_field("study"));
        }
        Ok(())
    }
}

impl SignerRows for SqliteTx<'_> {
    fn signer(&mut self, org: &str, subject: &str) -> Result<Option<SignerCredential>> {
        load_signer(self.tx, self.mac, org, subject)
    }

    fn put_signer(&mut self, credential: &SignerCredential) -> Result<()> {
        let body = encode(credential, "signing_credentials")?;
        put_signer_row(
            self.tx,
            self.mac,
            &credential.org,
            &credential.subject,
            &body,
        )
    }
}

impl AuditRows for SqliteTx<'_> {
    fn audit_head(&mut self) -> Result<Option<(u64, String)>> {
        if let Some(head) = &self.head {
            return Ok(head.clone());
        }
        let head = match load_anchor(self.tx, self.mac)? {
            Some(anchor) => Some(anchor),
            // A store without an anchor yet keeps its whole trail in the table.
            None => self
                .tx
                .query_row(
                    "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
                    [],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()
                .map_err(read_err("audit_events", "reading the last audit event"))?
                .map(|(seq, hash)| (u64::try_from(seq).unwrap_or(0), hash)),
        };
        self.head = Some(head.clone());
        Ok(head)
    }

    fn stage_event(&mut self, event: &AuditEvent) -> Result<()> {
        check_next(self.audit_head()?, event)?;
        insert_event(self.tx, event)?;
        self.head = Some(Some((event.seq, event.hash.clone())));
        self.staged.push(event.clone());
        Ok(())
    }
}

impl Store for SqliteStore {
    fn write(&self, work: &mut Work<'_>, witness: &Witness<'_>) -> Result<Vec<AuditEvent>> {
        let events = {
            let mut conn = self.lock();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db("starting a write transaction"))?;
            let staged = {
                let mut stx = SqliteTx {
                    tx: &tx,
                    mac: self.mac.as_ref(),
                    head: None,
                    staged: Vec::new(),
                };
                work(&mut stx)?;
                if let Some(Some((seq, hash))) = &stx.head {
                    if !stx.staged.is_empty() {
                        write_anchor(&tx, self.mac.as_ref(), *seq, hash)?;
                    }
                }
                std::mem::take(&mut stx.staged)
            };
            witness(&staged)?;
            // The commit failpoints are those of a change with its audit events: a transaction that records none
            // (a lease renewed, progress saved, a rescue that found nothing) is not one, and another thread of the
            // process (the lease keeper) would otherwise meet them first, at an instant nobody chose.
            if !staged.is_empty() {
                crate::failpoint::hit("store.commit.before");
            }
            tx.commit().map_err(db("committing"))?;
            staged
        };
        if !events.is_empty() {
            crate::failpoint::hit("store.commit.after");
        }
        if !events.is_empty() {
            self.archive_committed();
            if let Some(archive) = &self.archive {
                if !archive.is_poisoned() {
                    let _ = Self::prune(&self.lock(), archive);
                }
            }
        }
        Ok(events)
    }

    fn studies_to_adopt(&self) -> Result<bool> {
        let conn = self.lock();
        let row: Option<(String, Option<String>)> = conn
            .query_row(
                "SELECT body, mac FROM studies_adoption WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(read_err(
                "studies_adoption",
                "reading the adoption of studies",
            ))?;
        match row {
            None => Ok(false),
            Some((body, mac)) => {
                check_mac(
                    self.mac.as_ref(),
                    "studies_adoption",
                    "1",
                    &body,
                    mac.as_deref(),
                )?;
                if body != ADOPTION_BODY {
                    return Err(corrupt("studies_adoption"));
                }
                Ok(true)
            }
        }
    }

    fn check_trail(&self) -> Result<()> {
        let Some(archive) = &self.archive else {
            return Ok(());
        };
        // The log first, then the anchor: events are committed before they are archived, so a log read earlier
        // can lag the anchor (checked by reading the trail) but never pass it unless it holds uncommitted events.
        let archived = archive.last()?;
        let conn = self.lock();
        let anchor = load_anchor(&conn, self.mac.as_ref())?;
        drop(conn);
        let archived_seq = archived.as_ref().map_or(0, |a| a.0);
        match anchor {
            Some((seq, hash)) if archived_seq == seq => {
                if archived.map(|a| a.1) != Some(hash) {
                    return Err(anchor_violation(
                        "the audit log's last event is not the one the database anchors",
                        archived_seq,
                        seq,
                    ));
                }
                Ok(())
            }
            Some((seq, _)) if archived_seq > seq => Err(anchor_violation(
                "the audit log holds events the database never committed",
                archived_seq,
                seq,
            )),
            // Lagging by a crash's events (still in the table) is checked by reading the trail.
            _ => Ok(()),
        }
    }
}

impl JobReads for SqliteStore {
    fn get_job(&self, id: Uuid) -> Result<Job> {
        load_job(&self.lock(), self.mac.as_ref(), &id.to_string())?
            .ok_or_else(|| Error::not_found("no job with this id"))
    }

    fn list_jobs(&self, q: &JobQuery) -> Result<JobPage> {
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
                "SELECT {JOB_COLUMNS} FROM jobs WHERE {filter} \
                 ORDER BY created_at DESC, id DESC LIMIT {} OFFSET {offset}",
                q.limit
            ))
            .map_err(db("listing jobs"))?;
        let items = jobs_from(
            self.mac.as_ref(),
            &mut stmt,
            params_from_iter(args.iter()),
            "listing jobs",
        )?;
        drop(stmt);
        tx.commit().map_err(db("ending a read transaction"))?;
        Ok(JobPage {
            items,
            page: q.page,
            limit: q.limit,
            total: u64::try_from(total).map_err(|_| corrupt("jobs"))?,
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
                    .prepare(&format!(
                        "SELECT {JOB_COLUMNS} FROM jobs WHERE state = ?1 AND finished_at <= ?2 \
                         ORDER BY finished_at ASC, id ASC LIMIT ?3"
                    ))
                    .map_err(db("listing finished jobs"))?;
                jobs_from(
                    self.mac.as_ref(),
                    &mut stmt,
                    params![state, by, limit],
                    "listing finished jobs",
                )
            }
            Some((after_at, after_id)) => {
                let mut stmt = conn
                    .prepare(&format!(
                        "SELECT {JOB_COLUMNS} FROM jobs WHERE state = ?1 AND finished_at <= ?2 \
                         AND (finished_at, id) > (?3, ?4) ORDER BY finished_at ASC, id ASC LIMIT ?5"
                    ))
                    .map_err(db("listing finished jobs"))?;
                jobs_from(
                    self.mac.as_ref(),
                    &mut stmt,
                    params![state, by, time_key(after_at), after_id.to_string(), limit],
                    "listing finished jobs",
                )
            }
        }
    }
}

impl KeyReads for SqliteStore {
    fn get_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        load_key(&self.lock(), self.mac.as_ref(), key_id)
    }

    fn list_keys(&self, org: &str) -> Result<Vec<ApiKeyRecord>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT key_id, org, body, mac FROM api_keys WHERE org = ?1 \
                 ORDER BY created_at ASC, key_id ASC",
            )
            .map_err(db("listing keys"))?;
        let rows = stmt.query_map([org], key_row).map_err(db("listing keys"))?;
        let mut keys = Vec::new();
        for row in rows {
            let row = row.map_err(read_err("api_keys", "listing keys"))?;
            keys.push(decode_key(self.mac.as_ref(), &row)?);
        }
        Ok(keys)
    }
}

impl StudyReads for SqliteStore {
    fn get_study(&self, study: &str) -> Result<Option<StudyRecord>> {
        load_study(&self.lock(), self.mac.as_ref(), study)
    }

    fn list_studies(&self, org: Option<&str>) -> Result<Vec<StudyRecord>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT study, org, body, mac FROM studies WHERE ?1 IS NULL OR org = ?1 ORDER BY study ASC",
            )
            .map_err(db("listing studies"))?;
        let rows = stmt
            .query_map([org], study_row)
            .map_err(db("listing studies"))?;
        let mut out = Vec::new();
        for row in rows {
            let row = row.map_err(read_err("studies", "listing studies"))?;
            out.push(decode_study(self.mac.as_ref(), &row)?);
        }
        Ok(out)
    }
}

impl SignerReads for SqliteStore {
    fn get_signer(&self, org: &str, subject: &str) -> Result<Option<SignerCredential>> {
        load_signer(&self.lock(), self.mac.as_ref(), org, subject)
    }
}

impl AuditReads for SqliteStore {
    fn audit_last(&self) -> Result<Option<(u64, String)>> {
        let conn = self.lock();
        if let Some(anchor) = load_anchor(&conn, self.mac.as_ref())? {
            return Ok(Some(anchor));
        }
        conn.query_row(
            "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()
        .map_err(read_err("audit_events", "reading the last audit event"))?
        .map(|(seq, hash)| {
            u64::try_from(seq)
                .map(|seq| (seq, hash))
                .map_err(|_| corrupt("audit_events"))
        })
        .transpose()
    }

    fn audit_read(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        let from = from.max(1);
        let mut out = Vec::new();
        if let Some(archive) = &self.archive {
            out = archive.read(from, limit)?;
        }
        if out.len() < limit {
            let next = out.last().map_or(from, |e| e.seq + 1);
            out.extend(table_events(&self.lock(), next, limit - out.len())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_as_times() {
        let at = |secs: i64| {
            DateTime::parse_from_rfc3339("2025-01-21T10:00:00.123456789Z")
                .unwrap()
                .with_timezone(&Utc)
                + chrono::Duration::seconds(secs)
        };
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

    #[test]
    fn row_macs_bind_table_id_and_body() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]);
        let mac = row_mac(&key, "jobs", "a", "{}");
        assert!(check_mac(Some(&key), "jobs", "a", "{}", Some(&mac)).is_ok());
        for (table, id, body) in [
            ("api_keys", "a", "{}"),
            ("jobs", "b", "{}"),
            ("jobs", "a", "{ }"),
        ] {
            let e = check_mac(Some(&key), "jobs", id, body, Some(&mac))
                .and_then(|()| check_mac(Some(&key), table, "a", "{}", Some(&mac)));
            if (table, id, body) != ("jobs", "a", "{}") {
                assert!(e.is_err(), "{table} {id} {body}");
            }
        }
        assert_eq!(
            check_mac(Some(&key), "jobs", "a", "{}", None)
                .unwrap_err()
                .reason(),
            "integrity_violation"
        );
    }
}
