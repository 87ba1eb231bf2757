//! The audit trail in an append-only file (`audit.log` in a home): one event per line, in the canonical encoding
//! of [`crate::audit`] (the text its hash covers, plus `hash`), each line fsynced before `append` returns.
//!
//! # Format
//!
//! UTF-8 text; every record is `canonical_json(event) + "\n"`. Canonical JSON never holds a raw line feed, so
//! records are delimited by line feeds alone. A record is *whole* when it ends with a line feed, is at most
//! [`MAX_RECORD`] bytes and parses as an event (no unknown or duplicate members); it is *intact* when it is also,
//! byte for byte, that event's canonical encoding (checked on every read, so by `verify`). The log is read, by any
//! tool, as JSON Lines.
//!
//! # Opening: torn tails and corruption
//!
//! When the log is opened (and whenever it has grown through another process), it is scanned from the last known
//! whole record to its end:
//! - records that are not whole *followed by a whole one* are corruption: the store refuses to open (EXP005
//!   `integrity_violation`, `details.seq` the position of the first bad record, `details.offset` its byte offset,
//!   `details.check` = `record`). Nothing is ever skipped silently.
//! - bytes after the last whole record that form no whole record are a *torn tail*: the remains of an append
//!   that a crash (or a failed write) interrupted. Such an append was never acknowledged, because `append` returns
//!   only after the whole line is fsynced; so the bytes are cut away (truncate, fsync), and the repair is reported
//!   through [`AuditStore::take_recoveries`] for the auditor to record as an `audit.recovered` event naming their
//!   offset, length and SHA-256. No acknowledged event can be lost this way.
//!
//! # Several processes
//!
//! Several stores, in one process or several, may share the file (a home opened by the CLI while a service runs).
//! Each append, and each scan for records others appended, holds an exclusive advisory lock on the file (`flock`),
//! so appends are serialized across processes, the sequence check is atomic, and a scan never sees another
//! process's half-written line as torn. The lock is released by the kernel when a process dies.
//!
//! # Failures
//!
//! A failed write or fsync poisons the store: the kernel may have dropped the dirty pages and will not report it
//! again, so every later `append` fails (EXP005 `audit_poisoned`) until the log is opened again, which re-reads
//! and re-checks what reached the disk. The file is created with mode 0600 (on Unix) and its directory fsynced.
//!
//! # Memory
//!
//! The store keeps the byte offset of every 64th record, so reading from any sequence number seeks to the nearest
//! one and parses at most 63 records to skip: 8 bytes per 64 events in memory, however long the trail.

use super::memory::sequence_conflict;
use super::{AuditRecovery, AuditStore};
use crate::audit::AuditEvent;
use crate::error::{Error, Result};
use crate::sink::{hex, sync_dir};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The longest record the log accepts or reads, line feed included (16 MiB).
pub const MAX_RECORD: usize = 16 << 20;

/// Records between two entries of the offset index.
const STRIDE: u64 = 64;

/// Events imported at a time by [`AuditFileStore::import`].
const IMPORT_BATCH: usize = 1000;

/// The file operations the log needs: a seam for fault-injection tests.
pub(crate) trait LogFile: Send {
    /// The file's length.
    fn len(&mut self) -> io::Result<u64>;
    /// Reads from `offset` into `buf`; 0 at the end.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `bytes` at the end.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes what was written durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Takes the exclusive lock shared with other processes (blocking).
    fn lock(&mut self) -> io::Result<()>;
    /// Releases it.
    fn unlock(&mut self) -> io::Result<()>;
}

/// The log on disk.
struct DiskFile {
    file: File,
}

impl LogFile for DiskFile {
    fn len(&mut self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        // Opened for appending: writes go to the end whatever this position is.
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.read(buf)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn lock(&mut self) -> io::Result<()> {
        self.file.lock()
    }

    fn unlock(&mut self) -> io::Result<()> {
        self.file.unlock()
    }
}

/// The audit trail as an append-only file; see the module docs.
pub struct AuditFileStore {
    path: PathBuf,
    state: Mutex<State>,
}

impl std::fmt::Debug for AuditFileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditFileStore").finish_non_exhaustive()
    }
}

struct State {
    file: Box<dyn LogFile>,
    /// Bytes of the whole records known: the file's valid prefix.
    len: u64,
    /// Intact records known.
    count: u64,
    /// Sequence number and hash of the last of them.
    last: Option<(u64, String)>,
    /// `index[i]`: the offset of record `i * STRIDE` (0-based).
    index: Vec<u64>,
    poisoned: bool,
    recoveries: Vec<AuditRecovery>,
}

/// EXP005 `integrity_violation` for a record that is not whole (or, read back, not intact).
fn corrupt(seq: u64, offset: u64, message: &str) -> Error {
    Error::server("integrity_violation", message.to_string())
        .with_detail("seq", seq)
        .with_detail("offset", offset)
        .with_detail("check", "record")
}

fn poisoned() -> Error {
    Error::server(
        "audit_poisoned",
        "an earlier write to the audit log failed: open the log again",
    )
}

fn io_error(context: &'static str) -> impl Fn(io::Error) -> Error {
    move |e| Error::io(context, &e)
}

/// Reads a [`LogFile`] from a position up to an end.
struct FileReader<'a> {
    file: &'a mut dyn LogFile,
    pos: u64,
    end: u64,
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end.saturating_sub(self.pos)).unwrap_or(usize::MAX);
        let n = buf.len().min(left);
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(self.pos, &mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

/// One line as [`next_line`] found it.
struct Line {
    /// Bytes it took in the file, line feed included.
    consumed: u64,
    /// Whether it ends with a line feed.
    complete: bool,
    /// Whether it is longer than [`MAX_RECORD`] (then `buf` is empty).
    oversized: bool,
}

/// The next line into `buf` (line feed included), keeping at most [`MAX_RECORD`] bytes; `None` at the end.
fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<Line>> {
    buf.clear();
    let mut consumed = 0u64;
    let mut oversized = false;
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Ok((consumed > 0).then_some(Line {
                consumed,
                complete: false,
                oversized,
            }));
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if !oversized {
            if buf.len() + take > MAX_RECORD {
                oversized = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&avail[..take]);
            }
        }
        r.consume(take);
        consumed += take as u64;
        if done {
            return Ok(Some(Line {
                consumed,
                complete: true,
                oversized,
            }));
        }
    }
}

/// The event of a line that is a whole record and parses as an event, `None` for any other line. With
/// `canonical`, also only if the line is byte for byte the event's canonical encoding: a line that merely reads as
/// the same event (an upper-case UUID, members in another order) is damage, so that every verifier, whether it
/// hashes the line or the parsed event, agrees. Scans at open skip that check (it costs three times the parse);
/// every read makes it, so `verify` finds such a line.
fn parse(line: &Line, buf: &[u8], canonical: bool) -> Option<AuditEvent> {
    if !line.complete || line.oversized {
        return None;
    }
    let text = buf.strip_suffix(b"\n")?;
    let event: AuditEvent = serde_json::from_slice(text).ok()?;
    (!canonical || event.canonical().as_bytes() == text).then_some(event)
}

impl State {
    /// Runs `f` holding the file lock shared with other processes.
    fn locked<T>(&mut self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        self.file
            .lock()
            .map_err(io_error("cannot lock the audit log"))?;
        let result = f(self);
        // The lock also goes when the file is closed; a failed unlock changes nothing written.
        let _ = self.file.unlock();
        result
    }

    fn register(&mut self, start: u64, end: u64, seq: u64, hash: String) {
        if self.count.is_multiple_of(STRIDE) {
            self.index.push(start);
        }
        self.count += 1;
        self.last = Some((seq, hash));
        self.len = end;
    }

    /// Reads the records appended since the last scan (by anyone); cuts a torn tail. Call holding the lock.
    fn catch_up(&mut self) -> Result<()> {
        let end = self
            .file
            .len()
            .map_err(io_error("cannot read the audit log"))?;
        if end < self.len {
            return Err(corrupt(
                self.count,
                end,
                "the audit log lost records it held: it was cut or replaced",
            ));
        }
        if end == self.len {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut pos = self.len;
        let mut bad: Option<(u64, u64)> = None;
        let mut corruption = None;
        let mut found = Vec::new();
        {
            let mut reader = BufReader::with_capacity(
                64 * 1024,
                FileReader {
                    file: &mut *self.file,
                    pos,
                    end,
                },
            );
            while let Some(line) =
                next_line(&mut reader, &mut buf).map_err(io_error("cannot read the audit log"))?
            {
                let start = pos;
                pos += line.consumed;
                match parse(&line, &buf, false) {
                    Some(e) => {
                        if let Some((seq, offset)) = bad {
                            corruption = Some(corrupt(
                                seq,
                                offset,
                                "the audit log is corrupt: a damaged record is followed by whole ones",
                            ));
                            break;
                        }
                        found.push((start, pos, e.seq, e.hash));
                    }
                    None => {
                        if bad.is_none() {
                            bad = Some((self.count + found.len() as u64 + 1, start));
                        }
                    }
                }
            }
        }
        // The whole records before any damage are known either way.
        for (start, end, seq, hash) in found {
            self.register(start, end, seq, hash);
        }
        if let Some(err) = corruption {
            return Err(err);
        }
        if let Some((_, offset)) = bad {
            self.cut_tail(offset, end)?;
        }
        Ok(())
    }

    /// Cuts the torn bytes `[offset, end)` and notes the repair. A cut that fails poisons the store: appending
    /// after the torn bytes would turn them into corruption.
    fn cut_tail(&mut self, offset: u64, end: u64) -> Result<()> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut reader = FileReader {
            file: &mut *self.file,
            pos: offset,
            end,
        };
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = reader
                .read(&mut chunk)
                .map_err(io_error("cannot read the audit log"))?;
            if n == 0 {
                break;
            }
            ctx.update(&chunk[..n]);
        }
        if let Err(e) = self.file.truncate(offset).and_then(|()| self.file.sync()) {
            self.poisoned = true;
            return Err(Error::io("cannot cut the torn end of the audit log", &e));
        }
        self.len = offset;
        self.recoveries.push(AuditRecovery {
            after_seq: self.last.as_ref().map_or(0, |(seq, _)| *seq),
            offset,
            bytes: end - offset,
            sha256: hex(ctx.finish().as_ref()),
        });
        Ok(())
    }

    /// Appends `bytes` and fsyncs; any failure poisons the store.
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Err(e) = self.file.append(bytes).and_then(|()| self.file.sync()) {
            self.poisoned = true;
            return Err(Error::server(
                "audit_write_failed",
                format!("the audit log could not be written durably: {}", e.kind()),
            ));
        }
        Ok(())
    }
}

impl AuditFileStore {
    /// Opens the log at `path`, creating it (mode 0600 on Unix, directory fsynced) when missing, and scans it:
    /// a torn tail is cut away and reported through [`AuditStore::take_recoveries`].
    ///
    /// # Errors
    /// EXP005 `integrity_violation` when a damaged record is followed by whole ones (see the module docs);
    /// EXP005 for I/O.
    pub fn open(path: &Path) -> Result<AuditFileStore> {
        let existed = path.exists();
        let mut options = crate::sink::owner_only_options();
        options.read(true).append(true).create(true);
        let file = options
            .open(path)
            .map_err(io_error("cannot open the audit log"))?;
        if !existed {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            sync_dir(dir).map_err(io_error("cannot sync the audit log's directory"))?;
        }
        Self::with_file(path, Box::new(DiskFile { file }))
    }

    /// A store over any [`LogFile`] (fault-injection tests).
    pub(crate) fn with_file(path: &Path, file: Box<dyn LogFile>) -> Result<AuditFileStore> {
        let mut state = State {
            file,
            len: 0,
            count: 0,
            last: None,
            index: Vec::new(),
            poisoned: false,
            recoveries: Vec::new(),
        };
        state.locked(State::catch_up)?;
        Ok(AuditFileStore {
            path: path.to_path_buf(),
            state: Mutex::new(state),
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a failed write poisoned the store.
    pub fn is_poisoned(&self) -> bool {
        self.lock().poisoned
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Copies into the log, verbatim and in order, the events of `legacy` past the log's last sequence number:
    /// how a home whose trail an earlier version kept in SQLite moves it into its log, once (an interrupted copy
    /// resumes where it stopped). Returns the number of events copied.
    ///
    /// # Errors
    /// EXP005 `integrity_violation` when `legacy` skips a sequence number; the errors of `append` and of
    /// `legacy.read`.
    pub fn import(&self, legacy: &dyn AuditStore) -> Result<u64> {
        let mut st = self.lock();
        if st.poisoned {
            return Err(poisoned());
        }
        st.locked(|s| {
            s.catch_up()?;
            let mut imported = 0u64;
            loop {
                let have = s.last.as_ref().map_or(0, |(seq, _)| *seq);
                let batch = legacy.read(have.saturating_add(1), IMPORT_BATCH)?;
                if batch.is_empty() {
                    return Ok(imported);
                }
                let mut bytes = Vec::new();
                let mut records = Vec::with_capacity(batch.len());
                for (i, e) in batch.into_iter().enumerate() {
                    let want = have.saturating_add(1 + i as u64);
                    if e.seq != want {
                        return Err(Error::server(
                            "integrity_violation",
                            "the audit trail to import skips a sequence number",
                        )
                        .with_detail("seq", want)
                        .with_detail("check", "sequence"));
                    }
                    let start = s.len + bytes.len() as u64;
                    bytes.extend_from_slice(e.canonical().as_bytes());
                    bytes.push(b'\n');
                    records.push((start, s.len + bytes.len() as u64, e.seq, e.hash));
                }
                s.write(&bytes)?;
                imported += records.len() as u64;
                for (start, end, seq, hash) in records {
                    s.register(start, end, seq, hash);
                }
            }
        })
    }
}

impl AuditStore for AuditFileStore {
    fn append(&self, event: &AuditEvent) -> Result<()> {
        let mut line = event.canonical();
        line.push('\n');
        if line.len() > MAX_RECORD {
            return Err(Error::validation(
                "audit_record_too_large",
                "the audit event is larger than the audit log accepts",
            )
            .with_detail("max_bytes", MAX_RECORD));
        }
        let mut st = self.lock();
        if st.poisoned {
            return Err(poisoned());
        }
        st.locked(|s| {
            s.catch_up()?;
            let expected = s.last.as_ref().map_or(1, |(seq, _)| seq + 1);
            if event.seq != expected {
                return Err(sequence_conflict(expected, event.seq));
            }
            s.write(line.as_bytes())?;
            let start = s.len;
            s.register(
                start,
                start + line.len() as u64,
                event.seq,
                event.hash.clone(),
            );
            Ok(())
        })
    }

    fn last(&self) -> Result<Option<(u64, String)>> {
        let mut st = self.lock();
        st.locked(State::catch_up)?;
        Ok(st.last.clone())
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        let mut st = self.lock();
        st.locked(State::catch_up)?;
        let first = from.saturating_sub(1);
        if limit == 0 || first >= st.count {
            return Ok(Vec::new());
        }
        let want = (st.count - first).min(limit as u64);
        let block = first / STRIDE;
        let start = usize::try_from(block)
            .ok()
            .and_then(|i| st.index.get(i).copied())
            .ok_or_else(|| corrupt(first + 1, 0, "the audit log index is inconsistent"))?;
        let end = st.len;
        let mut reader = BufReader::with_capacity(
            64 * 1024,
            FileReader {
                file: &mut *st.file,
                pos: start,
                end,
            },
        );
        let mut out = Vec::with_capacity(usize::try_from(want).unwrap_or(0).min(4096));
        let mut buf = Vec::new();
        let mut position = block * STRIDE;
        let mut offset = start;
        while (out.len() as u64) < want {
            let line = next_line(&mut reader, &mut buf)
                .map_err(io_error("cannot read the audit log"))?
                .ok_or_else(|| corrupt(position + 1, offset, "the audit log was cut"))?;
            position += 1;
            if position <= first {
                offset += line.consumed;
                continue;
            }
            let event = parse(&line, &buf, true).ok_or_else(|| {
                corrupt(
                    position,
                    offset,
                    "a record of the audit log cannot be read back",
                )
            })?;
            offset += line.consumed;
            out.push(event);
        }
        Ok(out)
    }

    fn take_recoveries(&self) -> Vec<AuditRecovery> {
        std::mem::take(&mut self.lock().recoveries)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audit::GENESIS_HASH;
    use crate::store::conformance::{run_all, sample_event, Stores};
    use crate::store::MemoryStore;
    use std::sync::Arc;

    #[test]
    fn file_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicUsize::new(0);
        run_all(&|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let memory = Arc::new(MemoryStore::new());
            Stores {
                jobs: memory.clone(),
                keys: memory,
                audit: Arc::new(
                    AuditFileStore::open(&dir.path().join(format!("{i}.log"))).unwrap(),
                ),
            }
        });
    }

    /// A log in memory that fails the chosen operations: `fail_write` / `fail_sync` fail every call once set.
    #[derive(Default)]
    struct Faulty {
        bytes: Arc<Mutex<Vec<u8>>>,
        fail_write: Arc<std::sync::atomic::AtomicBool>,
        fail_sync: Arc<std::sync::atomic::AtomicBool>,
        /// Bytes a failing write still writes (a short write).
        short: usize,
    }

    impl LogFile for Faulty {
        fn len(&mut self) -> io::Result<u64> {
            Ok(self.bytes.lock().unwrap().len() as u64)
        }
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            let b = self.bytes.lock().unwrap();
            let start = (offset as usize).min(b.len());
            let n = buf.len().min(b.len() - start);
            buf[..n].copy_from_slice(&b[start..start + n]);
            Ok(n)
        }
        fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
            if self.fail_write.load(std::sync::atomic::Ordering::SeqCst) {
                let n = self.short.min(bytes.len());
                self.bytes.lock().unwrap().extend_from_slice(&bytes[..n]);
                return Err(io::Error::new(io::ErrorKind::StorageFull, "no space"));
            }
            self.bytes.lock().unwrap().extend_from_slice(bytes);
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            if self.fail_sync.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(io::Error::other("EIO"));
            }
            Ok(())
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.bytes.lock().unwrap().truncate(len as usize);
            Ok(())
        }
        fn lock(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn unlock(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

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
    fn a_failed_fsync_poisons_the_store_until_it_is_opened_again() {
        let faulty = Faulty::default();
        let bytes = faulty.bytes.clone();
        let fail_sync = faulty.fail_sync.clone();
        let store = AuditFileStore::with_file(Path::new("x"), Box::new(faulty)).unwrap();
        let events = chain(3);
        store.append(&events[0]).unwrap();
        fail_sync.store(true, std::sync::atomic::Ordering::SeqCst);
        let e = store.append(&events[1]).unwrap_err();
        assert_eq!(
            (e.code().as_str(), e.reason()),
            ("EXP005", "audit_write_failed")
        );
        assert!(store.is_poisoned());
        // Even once the disk is well again, this store appends nothing more.
        fail_sync.store(false, std::sync::atomic::Ordering::SeqCst);
        let e = store.append(&events[1]).unwrap_err();
        assert_eq!(e.reason(), "audit_poisoned");
        // Opened again, it finds what reached the file (here the whole line: the write itself succeeded).
        let again = AuditFileStore::with_file(
            Path::new("x"),
            Box::new(Faulty {
                bytes,
                ..Faulty::default()
            }),
        )
        .unwrap();
        assert_eq!(again.last().unwrap().map(|l| l.0), Some(2));
        again.append(&events[2]).unwrap();
        assert_eq!(again.read(1, 10).unwrap(), events);
    }

    #[test]
    fn a_short_write_poisons_and_its_bytes_are_cut_at_the_next_open() {
        let faulty = Faulty {
            short: 17,
            ..Faulty::default()
        };
        let bytes = faulty.bytes.clone();
        let fail_write = faulty.fail_write.clone();
        let store = AuditFileStore::with_file(Path::new("x"), Box::new(faulty)).unwrap();
        let events = chain(2);
        store.append(&events[0]).unwrap();
        let intact = bytes.lock().unwrap().len() as u64;
        fail_write.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            store.append(&events[1]).unwrap_err().reason(),
            "audit_write_failed"
        );
        assert!(store.is_poisoned());
        assert_eq!(bytes.lock().unwrap().len() as u64, intact + 17);
        let again = AuditFileStore::with_file(
            Path::new("x"),
            Box::new(Faulty {
                bytes: bytes.clone(),
                ..Faulty::default()
            }),
        )
        .unwrap();
        let rec = again.take_recoveries();
        assert_eq!(rec.len(), 1);
        assert_eq!(
            (rec[0].after_seq, rec[0].offset, rec[0].bytes),
            (1, intact, 17)
        );
        assert!(again.take_recoveries().is_empty(), "reported once");
        assert_eq!(bytes.lock().unwrap().len() as u64, intact);
        again.append(&events[1]).unwrap();
        assert_eq!(again.read(1, 10).unwrap(), events);
    }

    #[test]
    fn reads_seek_through_the_sparse_index() {
        let store = AuditFileStore::with_file(Path::new("x"), Box::new(Faulty::default())).unwrap();
        let events = chain(300);
        for e in &events {
            store.append(e).unwrap();
        }
        for from in [1u64, 2, 63, 64, 65, 128, 129, 200, 299, 300] {
            let got = store.read(from, 70).unwrap();
            let want: Vec<AuditEvent> = events
                .iter()
                .skip(from as usize - 1)
                .take(70)
                .cloned()
                .collect();
            assert_eq!(got, want, "from {from}");
        }
        assert_eq!(store.lock().index.len(), 5);
    }

    #[test]
    fn oversized_lines_are_never_buffered_whole() {
        let mut data = vec![b'x'; MAX_RECORD + 10];
        data.push(b'\n');
        data.extend_from_slice(b"tail");
        let mut r = BufReader::new(&data[..]);
        let mut buf = Vec::new();
        let line = next_line(&mut r, &mut buf).unwrap().unwrap();
        assert!(line.complete && line.oversized && buf.is_empty());
        assert_eq!(line.consumed as usize, MAX_RECORD + 11);
        let line = next_line(&mut r, &mut buf).unwrap().unwrap();
        assert!(!line.complete && buf == b"tail");
        assert!(next_line(&mut r, &mut buf).unwrap().is_none());
    }
}
