//! `trialport audit verify [--checkpoint FILE] | checkpoint [-o FILE] | export --format jsonl|csv [-o FILE]`.
//!
//! Each command is one or more audited engine operations (needing `audit:read`); what the trail holds, how it is
//! hashed and what a checkpoint proves is the core's (`trialport_core::audit`). Exports stream page by page (1,000
//! events at a time), each page read being itself audited; written to a file, the file appears only once
//! complete.

use crate::args::{
    AuditCheckpointArgs, AuditCommand, AuditExportArgs, AuditFormat, AuditVerifyArgs,
};
use crate::engine_cmds::Ctx;
use crate::output;
use serde_json::json;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use trialport_core::audit::{export, AuditEvent, Checkpoint};
use trialport_core::engine::Engine;
use trialport_core::error::Reason;
use trialport_core::format::{Format, FormatOptions};
use trialport_core::meta::DatasetMeta;
use trialport_core::{Error, Result};
use trialport_formats::convert::OutputFile;

/// Events read per engine call.
const PAGE: u64 = 1000;

/// The largest checkpoint file read (a checkpoint is about 120 bytes).
const MAX_CHECKPOINT_BYTES: u64 = 64 * 1024;

/// `trialport audit ...`.
///
/// # Errors
/// The engine's errors (EXP003 without `audit:read`; EXP005 `integrity_violation` naming the first bad event);
/// EXP001/EXP002 for a missing or malformed checkpoint file; EXP005 for I/O.
pub fn audit(ctx: &Ctx, cmd: &AuditCommand) -> Result<ExitCode> {
    let engine = ctx.engine()?;
    match cmd {
        AuditCommand::Verify(a) => verify(ctx, &engine, a),
        AuditCommand::Checkpoint(a) => checkpoint(ctx, &engine, a),
        AuditCommand::Export(a) => export_events(ctx, &engine, a),
    }
}

fn verify(ctx: &Ctx, engine: &Engine, a: &AuditVerifyArgs) -> Result<ExitCode> {
    let cp = a.checkpoint.as_deref().map(read_checkpoint).transpose()?;
    let n = match &cp {
        Some(cp) => engine.session(ctx.cred()).verify_audit_against(cp)?,
        None => engine.session(ctx.cred()).verify_audit()?,
    };
    if ctx.json() {
        let mut v = json!({"verified": true, "events": n});
        if let Some(cp) = &cp {
            v["checkpoint"] =
                json!({"seq": cp.seq, "hash": cp.hash, "signed": cp.signed.is_some()});
        }
        output::json(&v)?;
    } else {
        let mut text = format!("audit trail verified: {n} events, hash chain intact");
        if let Some(cp) = &cp {
            text.push_str(&format!("; matches the checkpoint at event {}", cp.seq));
            text.push_str(if cp.signed.is_some() {
                " (its signature by this engine's key verified)"
            } else {
                " (an unsigned checkpoint of an earlier version)"
            });
        }
        output::line(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a checkpoint file written by `audit checkpoint`.
fn read_checkpoint(path: &Path) -> Result<Checkpoint> {
    let invalid = || {
        Error::validation(
            Reason::InvalidCheckpoint,
            "the file is not an audit checkpoint",
        )
        .with_field("checkpoint")
    };
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            Error::not_found("the checkpoint file does not exist").with_field("checkpoint")
        }
        _ => Error::io("cannot read the checkpoint file", &e),
    })?;
    if !meta.is_file() || meta.len() > MAX_CHECKPOINT_BYTES {
        return Err(invalid());
    }
    let text = std::fs::read(path).map_err(|e| Error::io("cannot read the checkpoint file", &e))?;
    let text = String::from_utf8(text).map_err(|_| invalid())?;
    Checkpoint::from_json(&text)
}

fn checkpoint(ctx: &Ctx, engine: &Engine, a: &AuditCheckpointArgs) -> Result<ExitCode> {
    let cp = engine.session(ctx.cred()).audit_checkpoint()?;
    let text = serde_json::to_string_pretty(&cp)
        .map_err(|_| Error::server(Reason::Internal, "cannot serialize the checkpoint"))?;
    match &a.output {
        None if ctx.json() => output::json_line(&cp)?,
        None => output::line(&text)?,
        Some(path) => {
            output::write_file(path, format!("{text}\n").as_bytes())?;
            if ctx.json() {
                output::json(&json!({"written": path, "seq": cp.seq, "hash": cp.hash}))?;
            } else {
                output::line(&format!(
                    "checkpoint of event {} written to {}: keep it outside the system, and check the trail \
                     against it with 'trialport audit verify --checkpoint FILE'",
                    cp.seq,
                    path.display()
                ))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Standard output that turns a closed pipe (`trialport audit export | head`) into a quiet stop.
struct Stdout {
    out: BufWriter<io::Stdout>,
    closed: Arc<AtomicBool>,
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        match self.out.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed.store(true, Ordering::Relaxed);
                Ok(buf.len())
            }
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self.out.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed.store(true, Ordering::Relaxed);
                Ok(())
            }
            other => other,
        }
    }
}

/// Where an export goes.
enum Out {
    Stdout(Stdout),
    File(Box<OutputFile>),
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Out::Stdout(s) => s.write(buf),
            Out::File(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Stdout(s) => s.flush(),
            Out::File(f) => f.flush(),
        }
    }
}

fn export_events(ctx: &Ctx, engine: &Engine, a: &AuditExportArgs) -> Result<ExitCode> {
    let closed = Arc::new(AtomicBool::new(false));
    let mut out = match &a.output {
        Some(path) => Out::File(Box::new(OutputFile::create(path, true)?)),
        None => Out::Stdout(Stdout {
            out: BufWriter::with_capacity(256 * 1024, io::stdout()),
            closed: closed.clone(),
        }),
    };
    let stop = || closed.load(Ordering::Relaxed);
    let events = {
        let w: &mut (dyn Write + Send) = &mut out;
        match a.format {
            AuditFormat::Jsonl => pages(ctx, engine, a, &stop, &mut |events| {
                export::write_jsonl(events, w)
            })?,
            AuditFormat::Csv => {
                let csv = trialport_formats::csv::CsvFormat::csv();
                let mut encoder = csv.encoder(
                    &export::table_schema(),
                    &DatasetMeta::default(),
                    &FormatOptions::new(),
                    w,
                )?;
                let n = pages(ctx, engine, a, &stop, &mut |events| {
                    encoder.write(&export::table_batch(events)?)
                })?;
                encoder.finish()?;
                n
            }
        }
    };
    match out {
        Out::Stdout(mut s) => s
            .flush()
            .map_err(|e| Error::io("cannot write to standard output", &e))?,
        Out::File(f) => {
            let written = f.commit()?;
            let format = match a.format {
                AuditFormat::Jsonl => "jsonl",
                AuditFormat::Csv => "csv",
            };
            if ctx.json() {
                output::json(
                    &json!({"written": a.output, "format": format, "events": events,
                    "bytes": written.bytes, "sha256": written.sha256}),
                )?;
            } else {
                output::note(&format!(
                    "{events} audit events written as {format} ({})",
                    output::bytes(written.bytes)
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the events from `a.from`, `a.limit` at most, a page at a time, handing each page to `each`; stops at the
/// first short page, or when `stop` says the reader went away. Returns the number of events read.
fn pages(
    ctx: &Ctx,
    engine: &Engine,
    a: &AuditExportArgs,
    stop: &dyn Fn() -> bool,
    each: &mut dyn FnMut(&[AuditEvent]) -> Result<()>,
) -> Result<u64> {
    let mut from = a.from;
    let mut left = a.limit;
    let mut total = 0u64;
    loop {
        let want = left.map_or(PAGE, |l| l.min(PAGE));
        if want == 0 {
            // Ask the engine anyway: it owns the rule for a limit of 0.
            engine.session(ctx.cred()).audit_events(from, 0)?;
            return Ok(total);
        }
        let events = engine
            .session(ctx.cred())
            .audit_events(from, want as usize)?;
        each(&events)?;
        let n = events.len() as u64;
        total += n;
        if let Some(l) = &mut left {
            *l -= n;
            if *l == 0 {
                return Ok(total);
            }
        }
        match events.last() {
            Some(last) if n == want && !stop() => from = last.seq + 1,
            _ => return Ok(total),
        }
    }
}
