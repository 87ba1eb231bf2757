//! [`SqliteRateLimitStore`]: the call counts of rate limiting in a SQLite database (a home's `trialport.db`), so
//! that every process of a home enforces one quota per principal.

use crate::error::Reason;
use crate::error::{Error, Result};
use crate::limit::{RateLimitStore, WindowCount};
use rusqlite::{params, Connection};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// The table, created on open if missing: one row per principal and its current window.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS rate_limits (
    key TEXT PRIMARY KEY NOT NULL,
    window_started_ms INTEGER NOT NULL,
    count INTEGER NOT NULL
) WITHOUT ROWID;";

/// One statement counts a call: SQLite runs it as one write transaction, so concurrent hits from any process of
/// the home each see a distinct count. `SET` expressions read the row as it was before the update.
const HIT: &str = "INSERT INTO rate_limits (key, window_started_ms, count) VALUES (?1, ?2, 1)
ON CONFLICT (key) DO UPDATE SET
    count = CASE WHEN window_started_ms + ?3 <= ?2 THEN 1 ELSE count + 1 END,
    window_started_ms = CASE WHEN window_started_ms + ?3 <= ?2 THEN ?2 ELSE window_started_ms END
RETURNING window_started_ms, count";

/// A [`RateLimitStore`] in a SQLite database file, shared by every process that opens the same file.
///
/// It keeps its own connection and its own table (`rate_limits`), so it can sit beside the job store in one
/// database. Counts are not worth an fsync per call: the connection commits with `synchronous=NORMAL`, which in
/// WAL mode keeps the database consistent and may lose the last counts on power loss, never on a process crash.
#[derive(Debug)]
pub struct SqliteRateLimitStore {
    conn: Mutex<Connection>,
}

fn db(context: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |_| Error::server(Reason::StoreError, format!("SQLite rate limits: {context}"))
}

impl SqliteRateLimitStore {
    /// Opens (or creates) the database at `path` in WAL mode and creates the table if missing.
    ///
    /// # Errors
    /// EXP005 `store_error` when SQLite fails.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(db("opening the database file"))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(db("setting the busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db("enabling WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db("setting synchronous"))?;
        conn.execute_batch(SCHEMA)
            .map_err(db("creating the table"))?;
        Ok(SqliteRateLimitStore {
            conn: Mutex::new(conn),
        })
    }

    /// A store in a private in-memory database (for tests).
    ///
    /// # Errors
    /// EXP005 `store_error` when SQLite fails.
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(db("opening an in-memory database"))?;
        conn.execute_batch(SCHEMA)
            .map_err(db("creating the table"))?;
        Ok(SqliteRateLimitStore {
            conn: Mutex::new(conn),
        })
    }
}

impl RateLimitStore for SqliteRateLimitStore {
    fn hit(&self, key: &str, now_ms: i64, window_ms: i64) -> Result<WindowCount> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let (started_ms, count): (i64, i64) = conn
            .prepare_cached(HIT)
            .and_then(|mut s| {
                s.query_row(params![key, now_ms, window_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
            })
            .map_err(db("counting a call"))?;
        Ok(WindowCount {
            started_ms,
            count: count.max(0) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::MemoryRateLimitStore;

    /// The SQLite store counts exactly as the memory store does, call for call.
    #[test]
    fn counts_like_the_memory_store() {
        let sqlite = SqliteRateLimitStore::open_in_memory().unwrap();
        let memory = MemoryRateLimitStore::new();
        let calls = [
            ("a", 0),
            ("a", 10),
            ("b", 20),
            ("a", 999),
            ("a", 1000),
            ("a", 1500),
            ("b", 5000),
        ];
        for (key, now) in calls {
            assert_eq!(
                sqlite.hit(key, now, 1000).unwrap(),
                memory.hit(key, now, 1000).unwrap(),
                "{key} at {now}"
            );
        }
    }

    /// Two stores on one file (two processes of a home) share one count, and concurrent hits each see a distinct
    /// count.
    #[test]
    fn stores_on_one_file_share_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let stores: Vec<_> = (0..4)
            .map(|_| std::sync::Arc::new(SqliteRateLimitStore::open(&path).unwrap()))
            .collect();
        let handles: Vec<_> = stores
            .iter()
            .map(|s| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..25)
                        .map(|_| s.hit("k", 1_000, 60_000).unwrap().count)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut counts: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        counts.sort_unstable();
        assert_eq!(counts, (1..=100).collect::<Vec<u64>>());
    }
}
