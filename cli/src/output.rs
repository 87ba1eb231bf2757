//! What the CLI prints: JSON on stdout, readable tables, and the standard error JSON on stderr.

use serde::Serialize;
use std::io::{IsTerminal, Write};
use trialport_core::error::Reason;
use trialport_core::job::{Job, JobState};
use trialport_core::{Error, Result};

/// Writes one line to stdout; a closed pipe (`trialport ... | head`) is not an error.
///
/// # Errors
/// EXP005 when stdout cannot be written for another reason.
pub fn line(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("cannot write to standard output", &e))
        }
        _ => Ok(()),
    }
}

/// Prints `value` as pretty JSON on stdout.
///
/// # Errors
/// EXP005 when it cannot be serialized or written.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|_| Error::server(Reason::Internal, "cannot serialize the output"))?;
    line(&text)
}

/// Prints `value` as pretty JSON on stdout, for output that must not be lost (a key shown once): unlike [`json`], a
/// closed pipe is an error too.
///
/// # Errors
/// EXP005 when it cannot be serialized, written or flushed.
pub fn json_required<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|_| Error::server(Reason::Internal, "cannot serialize the output"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("cannot write to standard output", &e))
}

/// Prints `value` as one compact JSON line on stdout (JSON lines).
///
/// # Errors
/// EXP005 when it cannot be serialized or written.
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string(value)
        .map_err(|_| Error::server(Reason::Internal, "cannot serialize the output"))?;
    line(&text)
}

/// Writes `bytes` to the file `path` the way every `-o` of the CLI writes: through
/// [`trialport_formats::convert::OutputFile`] (a 0600 temp file beside it, fsync, rename; an existing file
/// replaced; an existing FIFO, device or socket refused; stale temp files of killed runs swept).
///
/// # Errors
/// EXP002 `not_a_regular_file` or `output_is_directory`; EXP001 when the directory does not exist; EXP005 for I/O.
pub fn write_file(
    path: &std::path::Path,
    bytes: &[u8],
) -> Result<trialport_formats::convert::Written> {
    let mut file = trialport_formats::convert::OutputFile::create(path, true)?;
    file.write_all(bytes)
        .map_err(|e| Error::io("cannot write the output file", &e))?;
    file.commit()
}

/// Prints the standard error JSON on stderr, on one line, with `hint` (how to fix it through the CLI, see
/// [`crate::hints`]) as `error.hint`. An error raised before the engine was reached gets a fresh `req_` request
/// id, so every error a user reports can be found by one. On a terminal, without `--json`, the hint follows on a
/// line of its own.
pub fn error(e: &Error, hint: Option<&str>, json: bool) {
    let mut v = e.render();
    if let Some(error) = v
        .get_mut("error")
        .and_then(serde_json::Value::as_object_mut)
    {
        if error.get("request_id").and_then(serde_json::Value::as_str) == Some("") {
            error.insert(
                "request_id".into(),
                format!("req_{}", uuid::Uuid::now_v7().simple()).into(),
            );
        }
        if let Some(h) = hint {
            error.insert("hint".into(), h.into());
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{v}");
    if let Some(h) = hint.filter(|_| !json && err.is_terminal()) {
        let _ = writeln!(err, "hint: {h}");
    }
}

/// Prints a note for people on stderr (never in JSON mode, never data values or secrets).
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// The warnings [`warning`] holds until the command has succeeded.
fn pending() -> &'static std::sync::Mutex<Vec<String>> {
    static PENDING: std::sync::OnceLock<std::sync::Mutex<Vec<String>>> = std::sync::OnceLock::new();
    PENDING.get_or_init(Default::default)
}

/// Keeps a warning for people, printed on stderr as `warning: ...` by [`flush_warnings`] once the command has
/// succeeded (also in JSON mode: stdout stays one document). A failed command prints the standard error JSON
/// alone, so its stderr stays machine-readable.
pub fn warning(text: &str) {
    let mut p = pending().lock().unwrap_or_else(|e| e.into_inner());
    if !p.iter().any(|w| w == text) {
        p.push(text.to_string());
    }
}

/// Prints the warnings kept by [`warning`], each once.
pub fn flush_warnings() {
    let p = std::mem::take(&mut *pending().lock().unwrap_or_else(|e| e.into_inner()));
    let mut err = std::io::stderr().lock();
    for w in p {
        let _ = writeln!(err, "warning: {w}");
    }
}

/// Whether a progress bar may be drawn: stderr is a terminal and the output is not JSON.
pub fn progress_allowed(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// A plain text table: left-aligned columns separated by two spaces.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, without a trailing newline.
    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let fmt = |cells: &[String]| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate().take(n) {
                if i + 1 < n {
                    let pad = widths[i].saturating_sub(c.chars().count());
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad + 2));
                } else {
                    s.push_str(c);
                }
            }
            s.trim_end().to_string()
        };
        let mut lines = vec![fmt(&self.header)];
        lines.extend(self.rows.iter().map(|r| fmt(r)));
        lines.join("\n")
    }

    /// Prints the table on stdout.
    ///
    /// # Errors
    /// EXP005 when stdout cannot be written.
    pub fn print(&self) -> Result<()> {
        line(&self.render())
    }
}

/// A byte count for people: `812 B`, `14.2 KiB`, `3.1 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A job's progress in one cell: `2/4 datasets, 1200 rows, 14.2 KiB`.
pub fn progress(job: &Job) -> String {
    let p = &job.progress;
    let mut s = format!(
        "{}/{} {}",
        p.datasets_done,
        p.datasets_total,
        if job.kind == trialport_core::job::JobKind::Data
            || job.kind == trialport_core::job::JobKind::Bulk
        {
            "datasets"
        } else {
            "documents"
        }
    );
    if p.rows_written > 0 {
        s.push_str(&format!(", {} rows", p.rows_written));
    }
    if p.bytes_written > 0 {
        s.push_str(&format!(", {}", bytes(p.bytes_written)));
    }
    s
}

/// A UTC time for people: `2025-01-21 10:00:00`.
pub fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The table of jobs: id, kind, study, format, state, progress, created.
pub fn jobs_table<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> Table {
    let mut t = Table::new(&[
        "ID", "KIND", "STUDY", "FORMAT", "STATE", "PROGRESS", "CREATED",
    ]);
    for j in jobs {
        t.row(vec![
            j.id.to_string(),
            j.kind.as_str().to_string(),
            j.study.clone(),
            j.format.clone(),
            j.state.as_str().to_string(),
            progress(j),
            time(&j.created_at),
        ]);
    }
    t
}

/// One job for people: its fields, artifacts and error.
pub fn job_detail(job: &Job) -> String {
    let mut lines = vec![
        format!("id            {}", job.id),
        format!("kind          {}", job.kind.as_str()),
        format!("study         {}", job.study),
        format!("format        {}", job.format),
        format!("state         {}", job.state),
        format!("progress      {}", progress(job)),
        if job.requested_by_name.is_empty() {
            format!("requested by  {}", job.requested_by)
        } else {
            format!(
                "requested by  {} ({})",
                job.requested_by_name, job.requested_by
            )
        },
        format!("created       {}", time(&job.created_at)),
    ];
    if let Some(t) = &job.started_at {
        lines.push(format!("started       {}", time(t)));
    }
    if let Some(t) = &job.finished_at {
        lines.push(format!("finished      {}", time(t)));
    }
    if let Some(k) = &job.idempotency_key {
        lines.push(format!("idempotency   {k}"));
    }
    if job.cancel_requested && !job.state.is_finished() {
        lines.push("cancel        requested".to_string());
    }
    if !job.artifacts.is_empty() {
        let mut t = Table::new(&["ARTIFACT", "MEDIA TYPE", "BYTES", "ROWS", "SHA-256"]);
        for a in &job.artifacts {
            t.row(vec![
                a.name.clone(),
                a.media_type.clone(),
                a.bytes.to_string(),
                a.rows.map(|r| r.to_string()).unwrap_or_default(),
                a.sha256.clone(),
            ]);
        }
        lines.push(String::new());
        lines.push(t.render());
    }
    if let Some(err) = &job.error {
        let code = err.get("code").and_then(|c| c.as_str()).unwrap_or("");
        let msg = err.get("message").and_then(|c| c.as_str()).unwrap_or("");
        lines.push(format!("error         {code}: {msg}"));
    }
    if job.state == JobState::Queued {
        lines.push(String::new());
        lines.push(format!(
            "queued: a `trialport worker` or `trialport serve` of this home runs it; to run it here and wait: \
             trialport jobs wait {}",
            job.id
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["A", "BB"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), "A    BB\nxyz  1");
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(2048), "2.0 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
