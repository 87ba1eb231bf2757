//! The engine commands: `init`, `export`, `jobs`, `download`, `keys` and `purge` (`audit` is in `audit_cmds`). Each
//! translates its arguments into one engine operation and prints the result; every decision (validation,
//! permissions) is the engine's.

use crate::args::{
    DocumentArgs, DownloadArgs, ExportBulkArgs, ExportCommand, ExportCommonArgs, ExportDataArgs,
    InitArgs, JobsCommand, JobsListArgs, KeysCommand, KeysCreateArgs, StudiesCommand, WaitArgs,
};
use crate::output;
use crate::wait::{self, Finished};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use trialport_core::access::Role;
use trialport_core::auth::NewApiKey;
use trialport_core::deid::Deidentify;
use trialport_core::engine::Engine;
use trialport_core::error::Reason;
use trialport_core::format::FormatOptions;
use trialport_core::home::{Home, HomeConfig, RetentionSettings};
use trialport_core::job::{Job, JobKind};
use trialport_core::jwt::{Algorithm, JwtConfig, JwtKeyConfig, JwtVerifier};
use trialport_core::request::{
    DatasetSelection, ExportRequest, ListJobsRequest, PackageContainer, PackageKind,
};
use trialport_core::source::{Filter, FilterOp};
use trialport_core::{Error, Result};
use trialport_formats::convert::{copy_to_file_expecting, Written};
use uuid::Uuid;

/// Exit status when `--timeout` passed before the job finished.
pub const EXIT_TIMEOUT: u8 = 3;

/// What every engine command shares: the home, the credential and the output mode.
#[derive(Debug)]
pub struct Ctx {
    home: Option<PathBuf>,
    credential: String,
    json: bool,
}

impl Ctx {
    /// The context from the global options; a bare `tp_...` key becomes `ApiKey tp_...`.
    pub fn new(home: Option<PathBuf>, credential: Option<String>, json: bool) -> Self {
        let credential = credential.unwrap_or_default().trim().to_string();
        let credential = if credential.starts_with("tp_") {
            format!("ApiKey {credential}")
        } else {
            credential
        };
        Ctx {
            home,
            credential,
            json,
        }
    }

    pub(crate) fn home(&self) -> Result<&Path> {
        self.home.as_deref().ok_or_else(|| {
            Error::validation(
                Reason::MissingHome,
                "no home directory: give --home DIR or set TRIALPORT_HOME",
            )
            .with_field("home")
        })
    }

    /// Opens the engine on the home without workers: a command runs at most the one job it waits for
    /// ([`run_and_report`]), so a quick `jobs list` never starts and then abandons someone's job.
    pub(crate) fn engine(&self) -> Result<Engine> {
        let engine = trialport_formats::home::engine_builder(self.home()?)?
            .workers(0)
            .build()?;
        // Loose modes on the home are said on stderr, whatever the output mode (stdout stays machine-readable).
        for w in engine.warnings() {
            output::warning(w);
        }
        Ok(engine)
    }

    pub(crate) fn cred(&self) -> &str {
        &self.credential
    }

    /// Whether output is JSON.
    pub(crate) fn json(&self) -> bool {
        self.json
    }
}

/// `trialport init`: creates the home (with its JWT settings, when given) and its first admin key; prints both
/// as JSON.
///
/// # Errors
/// EXP004 `already_initialized`; EXP002 for a bad organization or source, or unusable JWT settings (checked
/// before anything is created); EXP005.
pub fn init(ctx: &Ctx, args: &InitArgs) -> Result<ExitCode> {
    let dir = ctx.home()?;
    let jwt = jwt_config(args)?;
    let mut config = HomeConfig::new(&args.org);
    config.source.clone_from(&args.source);
    config.retention_days = args.retention_days;
    config.retention = retention_settings(&args.retention)?;
    config.encryption = !args.no_encryption;
    config.rate_limit = args
        .rate_limit
        .as_deref()
        .map(trialport_core::home::RateLimitSettings::parse)
        .transpose()?;
    let mut algorithms = None;
    if let Some((jwt, algs)) = jwt {
        config.jwt = Some(jwt);
        algorithms = Some(algs);
    }
    // The key is printed before the home is marked complete (its config.json written): a process that dies in
    // between leaves an init that the next `init` takes up again, never a home whose only key nobody saw.
    Home::init_with_admin_key_then(dir, &config, |key| {
        let home = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut out = json!({"home": home, "api_key": key, "encryption": config.encryption});
        if let Some(algs) = &algorithms {
            out["jwt_algorithms"] = json!(algs);
        }
        output::json_required(&out)
    })?;
    if !ctx.json() {
        let home = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        output::note(&format!(
            "Next: keep the api_key above private; it is shown once. Then\n  export TRIALPORT_HOME={}\n  export \
             TRIALPORT_CREDENTIAL='ApiKey <the api_key above>'\n  trialport export data --study STUDY --datasets DM \
             --format csv --deidentify safe-harbor --wait\n(`trialport keys create` makes keys for other people; \
             `trialport signing set-password` prepares signed exports.)",
            home.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The retention of `init --retention KIND=DAYS` flags (checked further by `Home::init_with`).
fn retention_settings(pairs: &[String]) -> Result<Option<RetentionSettings>> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let bad = || {
        Error::validation(
            Reason::InvalidRetention,
            "--retention is KIND=DAYS: KIND one of data, report, dashboard, bulk; DAYS a positive number",
        )
        .with_field("retention")
    };
    let mut settings = RetentionSettings::default();
    for pair in pairs {
        let (kind, days) = pair.split_once('=').ok_or_else(bad)?;
        let days: u32 = days.trim().parse().map_err(|_| bad())?;
        let slot = match kind.trim() {
            "data" => &mut settings.data_days,
            "report" => &mut settings.report_days,
            "dashboard" => &mut settings.dashboard_days,
            "bulk" => &mut settings.bulk_days,
            _ => return Err(bad()),
        };
        *slot = Some(days);
    }
    Ok(Some(settings))
}

/// `trialport purge`: expires the caller's organization's jobs past their retention time; prints the summary as
/// JSON.
///
/// # Errors
/// The engine's errors (EXP003 without the `retention:purge` permission).
pub fn purge(ctx: &Ctx) -> Result<ExitCode> {
    let summary = ctx.engine()?.session(ctx.cred()).purge()?;
    output::json(&summary)?;
    Ok(ExitCode::SUCCESS)
}

/// The JWT settings of `init`'s flags, with absolute key file paths, checked by loading the keys; with the
/// algorithms the keys verify.
fn jwt_config(args: &InitArgs) -> Result<Option<(JwtConfig, Vec<&'static str>)>> {
    let absolute = |p: &Path, field: &str| {
        std::fs::canonicalize(p).map_err(|_| {
            Error::validation(Reason::InvalidKeyFile, "the JWT key file cannot be found")
                .with_field(field)
        })
    };
    let mut keys = Vec::new();
    if let Some(f) = &args.jwt_hs256_secret_file {
        keys.push(JwtKeyConfig::new(
            absolute(f, "jwt_hs256_secret_file")?,
            Some(Algorithm::Hs256),
        ));
    }
    if let Some(f) = &args.jwt_public_key_file {
        let alg = args
            .jwt_alg
            .as_deref()
            .map(|name| {
                Algorithm::parse(name)
                    .filter(|a| !a.is_hmac())
                    .ok_or_else(|| {
                        Error::validation(
                            Reason::UnsupportedAlg,
                            "--jwt-alg is one of RS256, PS256, ES256 or EdDSA",
                        )
                        .with_field("jwt_alg")
                    })
            })
            .transpose()?;
        keys.push(JwtKeyConfig::new(absolute(f, "jwt_public_key_file")?, alg));
    }
    if keys.is_empty() {
        if !args.jwt_issuers.is_empty()
            || !args.jwt_audiences.is_empty()
            || args.jwt_max_lifetime.is_some()
        {
            return Err(Error::validation(
                Reason::MissingJwtKeys,
                "--jwt-issuer, --jwt-audience and --jwt-max-lifetime need --jwt-hs256-secret-file or \
                 --jwt-public-key-file",
            )
            .with_field("jwt"));
        }
        return Ok(None);
    }
    let config = JwtConfig {
        keys,
        issuers: args.jwt_issuers.clone(),
        audiences: args.jwt_audiences.clone(),
        leeway_secs: None,
        max_lifetime_secs: args.jwt_max_lifetime,
    };
    // The paths are absolute: the base directory is never used.
    let verifier = JwtVerifier::from_config(&config, Path::new("."))?;
    let algs = verifier.algorithms().iter().map(|a| a.as_str()).collect();
    Ok(Some((config, algs)))
}

/// `trialport export data|report|dashboard|bulk`: one request, one engine call ([`trialport_core::engine::Session::export`]).
///
/// # Errors
/// The engine's errors for the operation (and for waiting).
pub fn export(ctx: &Ctx, cmd: &ExportCommand) -> Result<ExitCode> {
    let (request, common) = export_request(cmd)?;
    let engine = ctx.engine()?;
    let job = engine.session(ctx.cred()).export(request)?;
    if common.wait.wait {
        return run_and_report(ctx, &engine, job.id, timeout(&common.wait)?);
    }
    // A queued job's table ends with how to get it run (see `output::job_detail`).
    print_job(ctx, &job)?;
    Ok(ExitCode::SUCCESS)
}

/// The request of an `export` command, and the arguments every export command shares.
fn export_request(cmd: &ExportCommand) -> Result<(ExportRequest, &ExportCommonArgs)> {
    let (mut request, common, deid) = match cmd {
        ExportCommand::Data(a) => (
            ExportRequest::data_selected(&a.study, selections(a)?, &a.format),
            &a.common,
            Some(&a.deid),
        ),
        ExportCommand::Bulk(a) => (bulk_request(a)?, &a.common, Some(&a.deid)),
        ExportCommand::Report(a) | ExportCommand::Dashboard(a) => {
            let kind = match cmd {
                ExportCommand::Report(_) => JobKind::Report,
                _ => JobKind::Dashboard,
            };
            let mut request = document_request(a, kind)?;
            if a.identifiable {
                request.identifiable = true;
            }
            (request, &a.common, None)
        }
    };
    // The command line goes over what a request file said.
    for (k, v) in options(&common.options)?.0 {
        request.options.0.insert(k, v);
    }
    if common.sign.sign.is_some() {
        request.signature = common.sign.request()?;
    }
    if common.idempotency_key.is_some() {
        request.idempotency_key.clone_from(&common.idempotency_key);
    }
    if let Some(d) = deid {
        request.deidentify = d.deidentify.as_deref().map(Deidentify::from_list);
        request.identifiable = d.identifiable;
    }
    Ok((request, common))
}

fn timeout(w: &WaitArgs) -> Result<Option<Duration>> {
    seconds(w.timeout)
}

fn seconds(s: Option<f64>) -> Result<Option<Duration>> {
    s.map(|s| {
        Duration::try_from_secs_f64(s).map_err(|_| {
            Error::validation(
                Reason::OutOfRange,
                "timeout must be a number of seconds, 0 or more",
            )
            .with_field("timeout")
        })
    })
    .transpose()
}

fn options(pairs: &[String]) -> Result<FormatOptions> {
    FormatOptions::from_pairs(pairs.iter().map(String::as_str))
}

/// Parses `COLUMN:OP:VALUE` (`in` takes a comma-separated list; `is_null`/`is_not_null` no value).
///
/// # Errors
/// EXP002 `invalid_filter` with field `filters`.
pub fn parse_filter(text: &str) -> Result<Filter> {
    let bad = |what: &str| {
        Error::validation(
            Reason::InvalidFilter,
            format!("a filter is COLUMN:OP:VALUE: {what}"),
        )
        .with_field("filters")
    };
    let mut parts = text.splitn(3, ':');
    let column = parts.next().unwrap_or_default();
    let op_text = parts.next().ok_or_else(|| bad("the operator is missing"))?;
    let value = parts.next();
    if column.is_empty() {
        return Err(bad("the column is missing"));
    }
    let op: FilterOp = serde_json::from_value(Value::String(op_text.to_ascii_lowercase()))
        .map_err(|_| bad("OP is one of eq, ne, lt, le, gt, ge, in, is_null, is_not_null"))?;
    let value = match (op, value) {
        (FilterOp::In, Some(v)) => {
            Value::Array(v.split(',').map(|s| Value::String(s.to_string())).collect())
        }
        (_, Some(v)) => Value::String(v.to_string()),
        (_, None) => Value::Null,
    };
    Ok(Filter {
        column: column.to_string(),
        op,
        value,
    })
}

/// The dataset selections of `export data`: names, with the columns and filters when given.
fn selections(a: &ExportDataArgs) -> Result<Vec<DatasetSelection>> {
    let filters = a
        .filters
        .iter()
        .map(|f| parse_filter(f))
        .collect::<Result<Vec<_>>>()?;
    Ok(a.datasets
        .iter()
        .map(|name| {
            if a.columns.is_none() && filters.is_empty() {
                DatasetSelection::Name(name.clone())
            } else {
                DatasetSelection::Selected {
                    name: name.clone(),
                    columns: a.columns.clone(),
                    filters: filters.clone(),
                }
            }
        })
        .collect())
}

fn bulk_request(a: &ExportBulkArgs) -> Result<ExportRequest> {
    let package = match &a.package {
        None => PackageKind::default(),
        Some(p) => serde_json::from_value(Value::String(p.to_ascii_lowercase())).map_err(|_| {
            Error::validation(Reason::InvalidPackage, "package is 'zip' or 'ectd'")
                .with_field("package")
        })?,
    };
    let container = match &a.container {
        None => PackageContainer::default(),
        Some(c) => serde_json::from_value(Value::String(c.to_ascii_lowercase())).map_err(|_| {
            Error::validation(
                Reason::InvalidContainer,
                "container is 'zip' or 'directory'",
            )
            .with_field("container")
        })?,
    };
    let datasets: Vec<&str> = a.datasets.iter().map(String::as_str).collect();
    let mut request = ExportRequest::bulk(&a.study, &datasets, &a.format)
        .package(package)
        .container(container);
    if let Some(max) = a.max_file_bytes {
        request = request.max_file_bytes(max);
    }
    Ok(request)
}

/// The request of `export report|dashboard`: the spec file holds a whole request (it has the `report` or
/// `dashboard` member) or only the spec, rendered as HTML unless `--format` says otherwise.
fn document_request(a: &DocumentArgs, kind: JobKind) -> Result<ExportRequest> {
    let text = std::fs::read_to_string(&a.spec).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::not_found("the spec file does not exist").with_field("spec")
        }
        _ => Error::io("cannot read the spec file", &e),
    })?;
    let in_file = |e: Error| {
        Error::validation(
            Reason::InvalidSpec,
            format!("the spec file is invalid: {}", e.message()),
        )
        .with_field("spec")
    };
    let value: Value = trialport_core::request::from_json(&text).map_err(in_file)?;
    let whole = value.get(kind.as_str()).is_some();
    let mut request = if whole {
        ExportRequest::from_value(kind, value).map_err(in_file)?
    } else if kind == JobKind::Report {
        ExportRequest::report(
            trialport_core::request::from_value(value).map_err(in_file)?,
            "html",
        )
    } else {
        ExportRequest::dashboard(
            trialport_core::request::from_value(value).map_err(in_file)?,
            "html",
        )
    };
    if let Some(f) = &a.format {
        request.format.clone_from(f);
    }
    Ok(request)
}

fn print_job(ctx: &Ctx, job: &Job) -> Result<()> {
    if ctx.json {
        output::json(job)
    } else {
        output::line(&output::job_detail(job))
    }
}

/// Runs the job in this process if it is still queued (only it: no other job is taken from the queue) while
/// waiting for it; prints it, and turns failure into the job's error (exit 1) and a timeout into exit 3. A job
/// another process runs is only waited for. A timeout leaves a job this process runs to finish before exiting.
fn run_and_report(
    ctx: &Ctx,
    engine: &Engine,
    id: Uuid,
    timeout: Option<Duration>,
) -> Result<ExitCode> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let job = std::thread::scope(|s| {
        let runner = s.spawn(|| engine.see_job_through(id, &stop));
        let waited = wait::wait(
            engine,
            ctx.cred(),
            id,
            timeout,
            output::progress_allowed(ctx.json),
        );
        // A wait that ended early (timeout, an error) stops the runner: a job it runs goes back to the queue when
        // the engine shuts down. Errors of the run itself (the store failing at a claim) are the wait's to report.
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = runner.join();
        waited
    })?;
    print_job(ctx, &job)?;
    match wait::outcome(&job) {
        Finished::Ok => Ok(ExitCode::SUCCESS),
        Finished::TimedOut => Ok(ExitCode::from(EXIT_TIMEOUT)),
        Finished::Err(e) => Err(e),
    }
}

/// `trialport worker`: runs job workers on the home until SIGTERM or SIGINT, then stops them (each running job
/// stops at its next batch and goes back to the queue) and exits 0.
///
/// # Errors
/// The errors of opening the engine or installing the signal handlers.
pub fn worker(ctx: &Ctx, a: &crate::args::WorkerArgs) -> Result<ExitCode> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| Error::io("cannot install the signal handlers", &e))?;
    }
    let mut b = trialport_formats::home::engine_builder(ctx.home()?)?;
    if let Some(n) = a.workers {
        b = b.workers(n);
    }
    let engine = b.build()?;
    output::note("workers running; stop with SIGTERM or Ctrl-C");
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(engine);
    output::note("workers stopped");
    Ok(ExitCode::SUCCESS)
}

/// Parses a job id; text that is not a UUID names no job (EXP001).
///
/// # Errors
/// EXP001 with field `job_id`.
pub fn job_id(text: &str) -> Result<Uuid> {
    trialport_core::request::job_id(text)
}

/// `trialport jobs list|show|cancel|wait`.
///
/// # Errors
/// The engine's errors.
pub fn jobs(ctx: &Ctx, cmd: &JobsCommand) -> Result<ExitCode> {
    match cmd {
        JobsCommand::List(a) => list(ctx, a),
        JobsCommand::Show(a) => {
            let id = job_id(&a.id)?;
            let job = ctx.engine()?.session(ctx.cred()).get_job(id)?;
            print_job(ctx, &job)?;
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Cancel(a) => {
            let id = job_id(&a.id)?;
            let job = ctx.engine()?.session(ctx.cred()).cancel(id)?;
            print_job(ctx, &job)?;
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Wait(a) => {
            let id = job_id(&a.id)?;
            let engine = ctx.engine()?;
            run_and_report(ctx, &engine, id, seconds(a.timeout)?)
        }
    }
}

fn list(ctx: &Ctx, a: &JobsListArgs) -> Result<ExitCode> {
    let page = ctx
        .engine()?
        .session(ctx.cred())
        .list_jobs(ListJobsRequest {
            page: a.page,
            limit: a.limit,
            status: a.status.clone(),
            study: a.study.clone(),
        })?;
    if ctx.json {
        output::json(&page)?;
    } else {
        output::jobs_table(&page.items).print()?;
        let pages = page.total.div_ceil(u64::from(page.limit.max(1))).max(1);
        output::line(&format!(
            "page {} of {pages} ({} jobs in all, {} per page)",
            page.page, page.total, page.limit
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `trialport download ID -o PATH [--artifact NAME]`: decrypts and verifies the artifact into a temp file beside
/// PATH and renames it into place once complete and verified
/// ([`trialport_formats::convert::copy_to_file_expecting`]).
///
/// # Errors
/// The engine's errors; EXP005 `integrity_violation` when the stored artifact is damaged (nothing is written).
pub fn download(ctx: &Ctx, a: &DownloadArgs) -> Result<ExitCode> {
    let id = job_id(&a.id)?;
    let engine = ctx.engine()?;
    if a.all {
        return download_all(ctx, &engine, id, &a.output);
    }
    let written = download_to(&engine, ctx.cred(), id, a.artifact.as_deref(), &a.output)?;
    if ctx.json {
        output::json(&written)?;
    } else {
        output::line(&format!(
            "downloaded {} to {} ({}, sha256 {} verified)",
            written["artifact"].as_str().unwrap_or(""),
            written["path"].as_str().unwrap_or(""),
            output::bytes(written["bytes"].as_u64().unwrap_or(0)),
            written["sha256"].as_str().unwrap_or("")
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Downloads every artifact of a job under `dir`, each at its artifact path (each verified, written to a temporary
/// file and renamed only once verified).
fn download_all(ctx: &Ctx, engine: &Engine, id: Uuid, dir: &Path) -> Result<ExitCode> {
    let job = engine.session(ctx.cred()).get_job(id)?;
    let mut written = Vec::new();
    for artifact in &job.artifacts {
        trialport_core::name::validate_path(&artifact.name)?;
        let path = dir.join(&artifact.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::io("cannot create the output directory", &e).with_field("output")
            })?;
        }
        written.push(download_to(
            engine,
            ctx.cred(),
            id,
            Some(&artifact.name),
            &path,
        )?);
    }
    if ctx.json {
        output::json(&json!({"job_id": id, "files": written}))?;
    } else {
        output::line(&format!(
            "downloaded {} artifacts of job {id} to {} (each sha256 verified)",
            written.len(),
            dir.display()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Downloads one artifact to `path` (or into `path` when it is a directory); returns a JSON summary.
///
/// # Errors
/// As [`download`].
pub fn download_to(
    engine: &Engine,
    credential: &str,
    id: Uuid,
    artifact: Option<&str>,
    path: &Path,
) -> Result<Value> {
    let dl = engine.session(credential).download(id, artifact)?;
    let name = dl.artifact.name.clone();
    let target = if path.is_dir() {
        path.join(&name)
    } else {
        path.to_path_buf()
    };
    // The one writer of every `-o`: a 0600 temp file, renamed into place only once the whole artifact was read,
    // decrypted and verified (by the reader, and here against the record); never over a FIFO or a device.
    let expected = Written {
        bytes: dl.artifact.bytes,
        sha256: dl.artifact.sha256.clone(),
    };
    let saved = copy_to_file_expecting(dl.reader, &target, true, Some(&expected))?;
    Ok(json!({
        "job_id": id,
        "artifact": name,
        "path": target,
        "bytes": saved.bytes,
        "sha256": saved.sha256,
    }))
}

/// `trialport studies list|add|remove`: with `--json`, `list` prints `{"items": [{"study", "org", "added_at",
/// "added_by"}]}` and `add`/`remove` the binding made or removed.
///
/// # Errors
/// The engine's errors (EXP003 without the operator role for `add` and `remove`; EXP004 `study_exists`; EXP001
/// for removing an unbound study).
pub fn studies(ctx: &Ctx, cmd: &StudiesCommand) -> Result<ExitCode> {
    let engine = ctx.engine()?;
    let session = engine.session(ctx.cred());
    match cmd {
        StudiesCommand::List => {
            let list = session.list_studies()?;
            if ctx.json {
                output::json(&json!({ "items": list }))?;
            } else {
                for r in &list {
                    output::line(&format!("{}\t{}", r.study, r.org))?;
                }
            }
        }
        StudiesCommand::Add(a) => {
            let r = session.add_study(&a.study, &a.org)?;
            if ctx.json {
                output::json(&r)?;
            } else {
                output::line(&format!("study {} belongs to {}", r.study, r.org))?;
            }
        }
        StudiesCommand::Remove(a) => {
            let r = session.remove_study(&a.study)?;
            if ctx.json {
                output::json(&json!({"study": r.study, "org": r.org, "removed": true}))?;
            } else {
                output::line(&format!("study {} no longer belongs to {}", r.study, r.org))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `trialport keys create|list|revoke|rotate-kek`.
///
/// # Errors
/// The engine's errors; EXP002 for a bad role or expiry time.
pub fn keys(ctx: &Ctx, cmd: &KeysCommand) -> Result<ExitCode> {
    match cmd {
        KeysCommand::Create(a) => create_key(ctx, a),
        KeysCommand::RotateKek => {
            let id = ctx.engine()?.session(ctx.cred()).rotate_encryption_key()?;
            if ctx.json {
                output::json(&json!({"key_id": id}))?;
            } else {
                output::line(&format!(
                    "new artifacts are encrypted under key {id}; older ones keep their keys"
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::List(a) => {
            let keys = ctx
                .engine()?
                .session(ctx.cred())
                .list_api_keys(a.org.as_deref())?;
            if ctx.json {
                output::json(&json!({ "keys": keys }))?;
            } else {
                let mut t = output::Table::new(&[
                    "KEY ID", "NAME", "ROLES", "STUDIES", "CREATED", "EXPIRES", "STATUS",
                ]);
                let now = chrono::Utc::now();
                for k in &keys {
                    let status = if k.revoked_at.is_some() {
                        "revoked"
                    } else if k.expires_at.is_some_and(|e| e <= now) {
                        "expired"
                    } else {
                        "active"
                    };
                    t.row(vec![
                        k.key_id.clone(),
                        k.name.clone(),
                        k.roles
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        k.studies.join(","),
                        k.created_at.format("%Y-%m-%d %H:%M").to_string(),
                        k.expires_at
                            .map(|e| e.format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_else(|| "-".into()),
                        status.into(),
                    ]);
                }
                output::line(&t.render())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Revoke(a) => {
            ctx.engine()?
                .session(ctx.cred())
                .revoke_api_key(&a.key_id)?;
            if ctx.json {
                output::json(&json!({"key_id": a.key_id, "revoked": true}))?;
            } else {
                output::line(&format!("revoked API key {}", a.key_id))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn create_key(ctx: &Ctx, a: &KeysCreateArgs) -> Result<ExitCode> {
    let roles = a
        .roles
        .iter()
        .map(|r| Role::parse(r.trim()))
        .collect::<Result<Vec<_>>>()?;
    let expires_at = a
        .expires_at
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    Error::validation(Reason::InvalidTime, "expires-at is an RFC 3339 time")
                        .with_field("expires_at")
                })
        })
        .transpose()?;
    let engine = ctx.engine()?;
    let (text, rec) = engine.session(ctx.cred()).create_api_key(NewApiKey {
        name: a.name.clone(),
        org: a.org.clone(),
        roles,
        studies: a.studies.iter().map(|s| s.trim().to_string()).collect(),
        expires_at,
    })?;
    if ctx.json {
        output::json(&json!({
            "api_key": text,
            "key_id": rec.key_id,
            "name": rec.name,
            "org": rec.org,
            "roles": rec.roles,
            "studies": rec.studies,
            "expires_at": rec.expires_at,
        }))?;
    } else {
        output::line(&text)?;
        output::note(&format!(
            "API key {} created for org {} (roles: {}; studies: {}). It is shown only this once: store it now.",
            rec.key_id,
            rec.org,
            rec.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
            rec.studies.join(", ")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn filters_parse() {
        let f = parse_filter("LBTESTCD:eq:ALT").unwrap();
        assert_eq!(f, Filter::new("LBTESTCD", FilterOp::Eq, "ALT"));
        let f = parse_filter("TIME:ge:2024-01-01T10:00:00").unwrap();
        assert_eq!(f.value, json!("2024-01-01T10:00:00"));
        let f = parse_filter("SEX:in:F,M").unwrap();
        assert_eq!(f.value, json!(["F", "M"]));
        let f = parse_filter("AGE:is_null").unwrap();
        assert_eq!(f.value, Value::Null);
        for bad in ["AGE", ":eq:1", "AGE:like:1"] {
            let e = parse_filter(bad).unwrap_err();
            assert_eq!(e.code().as_str(), "EXP002");
            assert_eq!(e.field(), Some("filters"));
        }
    }

    #[test]
    fn bare_keys_get_the_scheme() {
        let c = Ctx::new(None, Some("tp_abc".into()), false);
        assert_eq!(c.cred(), "ApiKey tp_abc");
        let c = Ctx::new(None, Some("Bearer x".into()), false);
        assert_eq!(c.cred(), "Bearer x");
    }
}
