//! The archive of a SQLite home's audit trail: `audit.log`, an append-only file, one event per line in the
//! canonical encoding of [`crate::audit`] (the text its hash covers, plus `hash`), each append fsynced.
//!
//! # Format
//!
//! UTF-8 text; every record is `canonical_json(event) + "\n"`. Canonical JSON never holds a raw line feed, so
//! records are delimited by line feeds alone. A record is *whole* when it ends with a line feed, is at most
//! [`MAX_RECORD`] bytes and parses as an event (no unknown or duplicate members); it is *intact* when it is also,
//! byte for byte, that event's canonical encoding (checked on every read, so by `verify`). The log is read, by any
//! tool, as JSON Lines.
//!
//! # The archive and the database
//!
//! Events are committed in the database (with the changes they report, see [`super::SqliteStore`]) and copied
//! here right after, in sequence order; the database keeps each event until the archive holds it. So the archive
//! may lag the database by the events of a crash (copied again at the next open), and never leads it.
//!
//! # Opening: fast, and strict about the end
//!
//! Opening reads only the end of the file: bytes after the last line feed are a *torn tail* (an append that a
//! crash interrupted, whose event the database still holds) and are cut away; the last line must be a whole
//! record, or the archive refuses to open (EXP005 `integrity_violation`, `details.check` = `record`): a complete
//! line is never cut, since a real torn write has no final line feed. The database then checks the archive's last
//! event against its anchor. The whole file is read only to serve reads, through a sparse index built on first
//! use (and by `verify`, which reads every record).
//!
//! # Several processes
//!
//! Several archives, in one process or several, may share the file. Each append, and each look at records others
//! appended, holds an exclusive advisory lock on the file (`flock`), so appends are serialized across processes
//! and a look never sees another process's half-written line as torn. The kernel releases the lock when a process
//! dies.
//!
//! # Failures
//!
//! A failed write or fsync poisons the archive: the kernel may have dropped the dirty pages and will not report it
//! again, so nothing more is appended through it until it is opened again, which looks at what reached the disk.
//! Its events stay in the database meanwhile: nothing is lost. The file is created with mode 0600 (on Unix) and
//! its directory fsynced.

use crate::audit::AuditEvent;
use crate::error::Reason;
use crate::error::{Error, Result};
use crate::fsutil::sync_dir;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// The longest record the log accepts or reads, line feed included (16 MiB).
pub const MAX_RECORD: usize = 16 << 20;

/// Records between two entries of the offset index.
const STRIDE: u64 = 64;

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

/// The archive; see the module docs.
pub(crate) struct Archive {
    state: Mutex<State>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").finish_non_exhaustive()
    }
}

struct State {
    file: Box<dyn LogFile>,
    /// Bytes of the whole records known: the file's valid prefix.
    len: u64,
    /// Sequence number and hash of the last of them.
    last: Option<(u64, String)>,
    /// The sparse index, once a read needed it.
    index: Option<Index>,
    poisoned: bool,
}

/// Where every [`STRIDE`]-th record starts, up to `len`.
struct Index {
    /// `offsets[i]`: the offset of record `i * STRIDE` (0-based).
    offsets: Vec<u64>,
    /// Records indexed.
    count: u64,
    /// Bytes indexed.
    len: u64,
}

/// EXP005 `integrity_violation` for a record that is not whole (or, read back, not intact).
fn corrupt(seq: u64, offset: u64, message: &str) -> Error {
    Error::server(Reason::IntegrityViolation, message.to_string())
        .with_detail("seq", seq)
        .with_detail("offset", offset)
        .with_detail("check", "record")
}

fn poisoned() -> Error {
    Error::server(
        Reason::AuditPoisoned,
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

    /// Reads `[start, end)` of the file.
    fn read_range(&mut self, start: u64, end: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
        let mut done = 0;
        while done < buf.len() {
            let n = self
                .file
                .read_at(start + done as u64, &mut buf[done..])
                .map_err(io_error("cannot read the audit log"))?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// The offset of the last line feed before `end` (exclusive), reading backwards; `None` when there is none.
    fn last_newline_before(&mut self, end: u64) -> Result<Option<u64>> {
        const CHUNK: u64 = 64 * 1024;
        let mut hi = end;
        while hi > 0 {
            let lo = hi.saturating_sub(CHUNK);
            let bytes = self.read_range(lo, hi)?;
            if let Some(i) = bytes.iter().rposition(|&b| b == b'\n') {
                return Ok(Some(lo + i as u64));
            }
            if end - lo > MAX_RECORD as u64 + CHUNK {
                // A line this long is no record: report the last line as damaged.
                return Ok(None);
            }
            hi = lo;
        }
        Ok(None)
    }

    /// Finds the end of the file from scratch: cuts a torn tail and reads the last record (see the module docs).
    /// Call holding the lock.
    fn read_end(&mut self) -> Result<()> {
        let size = self
            .file
            .len()
            .map_err(io_error("cannot read the audit log"))?;
        // Bytes after the last line feed are an interrupted append.
        let end = match self.last_newline_before(size)? {
            Some(nl) => nl + 1,
            None => 0,
        };
        if end < size {
            self.cut(end)?;
        }
        if end == 0 {
            self.len = 0;
            self.last = None;
            return Ok(());
        }
        let start = match self.last_newline_before(end - 1)? {
            Some(nl) => nl + 1,
            None => 0,
        };
        let bytes = self.read_range(start, end)?;
        let line = Line {
            consumed: end - start,
            complete: true,
            oversized: bytes.len() > MAX_RECORD,
        };
        let event = parse(&line, &bytes, false).ok_or_else(|| {
            corrupt(
                0,
                start,
                "the last line of the audit log is not an audit event: a complete line is never cut",
            )
        })?;
        self.len = end;
        self.last = Some((event.seq, event.hash));
        self.index = None;
        Ok(())
    }

    /// Reads the records appended since the end known (by another process); cuts a torn tail. Call holding the
    /// lock.
    fn catch_up(&mut self) -> Result<()> {
        let size = self
            .file
            .len()
            .map_err(io_error("cannot read the audit log"))?;
        if size < self.len {
            return Err(corrupt(
                self.last.as_ref().map_or(0, |l| l.0),
                size,
                "the audit log lost records it held: it was cut or replaced",
            ));
        }
        if size == self.len {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut pos = self.len;
        let mut found = Vec::new();
        let mut torn_at = None;
        {
            let mut reader = BufReader::with_capacity(
                64 * 1024,
                FileReader {
                    file: &mut *self.file,
                    pos,
                    end: size,
                },
            );
            while let Some(line) =
                next_line(&mut reader, &mut buf).map_err(io_error("cannot read the audit log"))?
            {
                let start = pos;
                pos += line.consumed;
                if !line.complete {
                    torn_at = Some(start);
                    break;
                }
                let event = parse(&line, &buf, false).ok_or_else(|| {
                    corrupt(
                        0,
                        start,
                        "a line of the audit log is not an audit event: a complete line is never cut",
                    )
                })?;
                found.push((start, pos, event.seq, event.hash));
            }
        }
        for (start, end, seq, hash) in found {
            self.register(start, end, seq, hash);
        }
        if let Some(offset) = torn_at {
            self.cut(offset)?;
        }
        Ok(())
    }

    /// Notes a whole record at `[start, end)`.
    fn register(&mut self, start: u64, end: u64, seq: u64, hash: String) {
        if let Some(index) = &mut self.index {
            if index.len == start {
                if index.count.is_multiple_of(STRIDE) {
                    index.offsets.push(start);
                }
                index.count += 1;
                index.len = end;
            }
        }
        self.last = Some((seq, hash));
        self.len = end;
    }

    /// Cuts the torn bytes from `offset` on. A cut that fails poisons the archive: appending after the torn bytes
    /// would turn them into corruption.
    fn cut(&mut self, offset: u64) -> Result<()> {
        if let Err(e) = self.file.truncate(offset).and_then(|()| self.file.sync()) {
            self.poisoned = true;
            return Err(Error::io("cannot cut the torn end of the audit log", &e));
        }
        Ok(())
    }

    /// Appends `bytes` and fsyncs; any failure poisons the archive.
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        crate::failpoint::hit("audit.archive.before_write");
        if let Err(e) = self.file.append(bytes).and_then(|()| self.file.sync()) {
            self.poisoned = true;
            return Err(Error::server(
                Reason::AuditWriteFailed,
                format!("the audit log could not be written durably: {}", e.kind()),
            ));
        }
        Ok(())
    }

    /// Builds (or extends) the sparse index up to the end known. Call holding the lock.
    fn index(&mut self) -> Result<&Index> {
        let mut index = self.index.take().unwrap_or(Index {
            offsets: Vec::new(),
            count: 0,
            len: 0,
        });
        if index.len < self.len {
            let mut buf = Vec::new();
            let mut pos = index.len;
            let mut reader = BufReader::with_capacity(
                64 * 1024,
                FileReader {
                    file: &mut *self.file,
                    pos,
                    end: self.len,
                },
            );
            while let Some(line) =
                next_line(&mut reader, &mut buf).map_err(io_error("cannot read the audit log"))?
            {
                if index.count.is_multiple_of(STRIDE) {
                    index.offsets.push(pos);
                }
                index.count += 1;
                pos += line.consumed;
            }
            index.len = pos;
        }
        Ok(self.index.insert(index))
    }
}

impl Archive {
    /// Opens the archive at `path`, creating it (mode 0600 on Unix, directory fsynced) when missing: reads its
    /// end only, cutting a torn tail (see the module docs).
    ///
    /// # Errors
    /// EXP005 `integrity_violation` when the last line is not a whole record; EXP005 for I/O.
    pub(crate) fn open(path: &Path) -> Result<Archive> {
        let existed = path.exists();
        let mut options = crate::fsutil::owner_only_options();
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
        Self::with_file(Box::new(DiskFile { file }))
    }

    /// An archive over any [`LogFile`] (fault-injection tests).
    pub(crate) fn with_file(file: Box<dyn LogFile>) -> Result<Archive> {
        let mut state = State {
            file,
            len: 0,
            last: None,
            index: None,
            poisoned: false,
        };
        state.locked(State::read_end)?;
        Ok(Archive {
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a failed write poisoned the archive.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.lock().poisoned
    }

    /// The sequence number and hash of the last record (counting what other processes appended).
    ///
    /// # Errors
    /// EXP005 `integrity_violation` for damage found; EXP005 for I/O.
    pub(crate) fn last(&self) -> Result<Option<(u64, String)>> {
        let mut st = self.lock();
        st.locked(State::catch_up)?;
        Ok(st.last.clone())
    }

    /// Appends, in order, those of `events` past the archive's last record (which another process may have
    /// appended already). They must continue the archive: the first one past its end must have the next sequence
    /// number and the last record's hash as `prev_hash`.
    ///
    /// # Errors
    /// EXP005 `audit_poisoned` after an earlier failed write; EXP005 `integrity_violation` (check `sequence`) for
    /// events that do not continue the archive; EXP005 `audit_write_failed` when the write or fsync fails (which
    /// poisons the archive).
    pub(crate) fn append(&self, events: &[AuditEvent]) -> Result<()> {
        let mut st = self.lock();
        if st.poisoned {
            return Err(poisoned());
        }
        st.locked(|s| {
            s.catch_up()?;
            let (mut next, mut prev) = match &s.last {
                Some((seq, hash)) => (seq + 1, hash.clone()),
                None => (1, crate::audit::GENESIS_HASH.to_string()),
            };
            let mut bytes = Vec::new();
            let mut records = Vec::new();
            let first = next;
            for e in events.iter().filter(|e| e.seq >= first) {
                if e.seq != next || e.prev_hash != prev {
                    return Err(Error::server(
                        Reason::IntegrityViolation,
                        "the audit events to archive do not continue the audit log",
                    )
                    .with_detail("seq", next)
                    .with_detail("check", "sequence"));
                }
                let start = s.len + bytes.len() as u64;
                bytes.extend_from_slice(e.canonical().as_bytes());
                bytes.push(b'\n');
                records.push((start, s.len + bytes.len() as u64, e.seq, e.hash.clone()));
                next += 1;
                prev.clone_from(&e.hash);
            }
            if bytes.is_empty() {
                return Ok(());
            }
            s.write(&bytes)?;
            for (start, end, seq, hash) in records {
                s.register(start, end, seq, hash);
            }
            Ok(())
        })
    }

    /// Up to `limit` events with `seq >= from`, in order, each checked to be intact.
    ///
    /// # Errors
    /// EXP005 `integrity_violation` for a record that is not intact or out of place; EXP005 for I/O.
    pub(crate) fn read(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        let mut st = self.lock();
        st.locked(State::catch_up)?;
        let first = from.max(1) - 1;
        let (count, start) = {
            let index = st.index()?;
            let block = first / STRIDE;
            let start = usize::try_from(block)
                .ok()
                .and_then(|i| index.offsets.get(i).copied());
            (index.count, start)
        };
        if limit == 0 || first >= count {
            return Ok(Vec::new());
        }
        let start =
            start.ok_or_else(|| corrupt(first + 1, 0, "the audit log index is inconsistent"))?;
        let want = (count - first).min(limit as u64);
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
        let mut position = (first / STRIDE) * STRIDE;
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audit::GENESIS_HASH;
    use crate::store::conformance::sample_event;
    use std::sync::Arc;

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

    fn reopen(bytes: &Arc<Mutex<Vec<u8>>>) -> Result<Archive> {
        Archive::with_file(Box::new(Faulty {
            bytes: bytes.clone(),
            ..Faulty::default()
        }))
    }

    #[test]
    fn a_failed_fsync_poisons_the_archive_until_it_is_opened_again() {
        let faulty = Faulty::default();
        let bytes = faulty.bytes.clone();
        let fail_sync = faulty.fail_sync.clone();
        let archive = Archive::with_file(Box::new(faulty)).unwrap();
        let events = chain(3);
        archive.append(&events[..1]).unwrap();
        fail_sync.store(true, std::sync::atomic::Ordering::SeqCst);
        let e = archive.append(&events[..2]).unwrap_err();
        assert_eq!(
            (e.code().as_str(), e.reason()),
            ("EXP005", "audit_write_failed")
        );
        assert!(archive.is_poisoned());
        // Even once the disk is well again, this archive appends nothing more.
        fail_sync.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            archive.append(&events).unwrap_err().reason(),
            "audit_poisoned"
        );
        // Opened again, it finds what reached the file (here the whole line: the write itself succeeded), and
        // takes the rest.
        let again = reopen(&bytes).unwrap();
        assert_eq!(again.last().unwrap().map(|l| l.0), Some(2));
        again.append(&events).unwrap();
        assert_eq!(again.read(1, 10).unwrap(), events);
    }

    #[test]
    fn a_short_write_is_cut_at_the_next_open() {
        let faulty = Faulty {
            short: 17,
            ..Faulty::default()
        };
        let bytes = faulty.bytes.clone();
        let fail_write = faulty.fail_write.clone();
        let archive = Archive::with_file(Box::new(faulty)).unwrap();
        let events = chain(2);
        archive.append(&events[..1]).unwrap();
        let intact = bytes.lock().unwrap().len();
        fail_write.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            archive.append(&events).unwrap_err().reason(),
            "audit_write_failed"
        );
        assert_eq!(bytes.lock().unwrap().len(), intact + 17);
        let again = reopen(&bytes).unwrap();
        assert_eq!(
            bytes.lock().unwrap().len(),
            intact,
            "the torn bytes are cut"
        );
        assert_eq!(again.last().unwrap().map(|l| l.0), Some(1));
        again.append(&events).unwrap();
        assert_eq!(again.read(1, 10).unwrap(), events);
    }

    #[test]
    fn a_complete_line_is_never_cut() {
        // Records whose last lines were overwritten with newline-terminated junk.
        let events = chain(4);
        let mut text = Vec::new();
        for e in &events[..2] {
            text.extend_from_slice(e.canonical().as_bytes());
            text.push(b'\n');
        }
        for e in &events[2..] {
            text.extend(std::iter::repeat_n(b'#', e.canonical().len()));
            text.push(b'\n');
        }
        let bytes = Arc::new(Mutex::new(text.clone()));
        let e = reopen(&bytes).unwrap_err();
        assert_eq!(
            (e.reason(), e.details()["check"].as_str()),
            ("integrity_violation", Some("record"))
        );
        assert_eq!(*bytes.lock().unwrap(), text, "nothing was cut");
    }

    #[test]
    fn appended_events_must_continue_the_archive() {
        let archive = Archive::with_file(Box::new(Faulty::default())).unwrap();
        let events = chain(5);
        archive.append(&events[..2]).unwrap();
        // Events it holds already are skipped; a gap or a broken link is refused.
        archive.append(&events[..3]).unwrap();
        let e = archive.append(&events[4..]).unwrap_err();
        assert_eq!(
            (e.reason(), e.details()["check"].as_str()),
            ("integrity_violation", Some("sequence"))
        );
        let mut forged = events[3].clone();
        forged.prev_hash = GENESIS_HASH.to_string();
        assert!(archive.append(&[forged]).is_err());
        archive.append(&events).unwrap();
        assert_eq!(archive.read(1, 10).unwrap(), events);
    }

    #[test]
    fn reads_seek_through_the_sparse_index() {
        let archive = Archive::with_file(Box::new(Faulty::default())).unwrap();
        let events = chain(300);
        archive.append(&events[..100]).unwrap();
        // The index is built at the first read and extended by later appends.
        assert_eq!(archive.read(99, 5).unwrap(), events[98..100].to_vec());
        archive.append(&events).unwrap();
        for from in [1u64, 2, 63, 64, 65, 128, 129, 200, 299, 300] {
            let got = archive.read(from, 70).unwrap();
            let want: Vec<AuditEvent> = events
                .iter()
                .skip(from as usize - 1)
                .take(70)
                .cloned()
                .collect();
            assert_eq!(got, want, "from {from}");
        }
        assert_eq!(
            archive.lock().index.as_ref().map(|i| i.offsets.len()),
            Some(5)
        );
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
