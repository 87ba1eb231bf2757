//! `trialport demo`: a complete tour on the generated fictional study `DEMO01` (see [`data`]).
//!
//! It writes the study as CSV files into `DIR/source/DEMO01/`, creates a home in `DIR/home` serving that
//! directory, and then, through the engine and its admin key, exports DM in every data format, renders a report
//! and a dashboard (HTML and PDF), renders the three report templates of `examples/reports/` (demographics by
//! arm, adverse events by system organ class and preferred term, laboratory values out of range by visit) as
//! HTML, PDF and XLSX (identifiable, so e-signed by the demo's admin), packages all four datasets in a zip, lists the jobs,
//! downloads one artifact into `DIR/downloads/`, verifies the audit trail and tells where everything is. The
//! specs it renders are written to `DIR/specs/`, ready for `trialport export report --spec`.

pub mod data;

use crate::args::DemoArgs;
use crate::output::{self, Table};
use data::{Dataset, STUDY};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use trialport_core::document::{
    ChartKind, ChartSpec, DashboardSpec, Measure, ReportSpec, SectionSpec, TableSpec, TileSpec,
};
use trialport_core::error::Reason;
use trialport_core::format::{Capability, FormatOptions};
use trialport_core::home::Home;
use trialport_core::job::{Job, JobState};
use trialport_core::request::{ExportRequest, ListJobsRequest};
use trialport_core::signature::{Meaning, SignatureRequest};
use trialport_core::source::{Filter, FilterOp, SortKey};
use trialport_core::{Error, Result};
use trialport_formats::convert::OutputFile;

/// The organization of the demo home.
const ORG: &str = "demo";

/// The report templates of `examples/reports/`, by file name: the demo renders each as HTML, PDF and XLSX.
const TEMPLATES: [(&str, &str); 3] = [
    (
        "demographics-by-arm.json",
        include_str!("../../../examples/reports/demographics-by-arm.json"),
    ),
    (
        "adverse-events-by-soc-pt.json",
        include_str!("../../../examples/reports/adverse-events-by-soc-pt.json"),
    ),
    (
        "lab-out-of-range-by-visit.json",
        include_str!("../../../examples/reports/lab-out-of-range-by-visit.json"),
    ),
];

/// The formats each template is rendered in.
const TEMPLATE_FORMATS: [&str; 3] = ["html", "pdf", "xlsx"];

/// The report templates, parsed.
///
/// # Errors
/// EXP005 when a template does not parse (a bug: the tests parse them).
pub fn templates() -> Result<Vec<(&'static str, ReportSpec)>> {
    TEMPLATES
        .iter()
        .map(|(name, text)| {
            serde_json::from_str::<ReportSpec>(text)
                .map(|spec| (*name, spec))
                .map_err(|_| {
                    Error::server(
                        Reason::Internal,
                        "a report template of the demo cannot be read",
                    )
                    .with_detail("template", *name)
                })
        })
        .collect()
}

/// Runs the tour; exits 1 (after the summary) when any demo job failed.
///
/// # Errors
/// EXP004 `directory_not_empty` when the output directory has files; the engine's errors.
pub fn run(args: &DemoArgs, json: bool) -> Result<ExitCode> {
    let started = Instant::now();
    let dir = prepare_dir(args.out.as_deref())?;
    let say = |text: &str| -> Result<()> {
        if json {
            Ok(())
        } else {
            output::line(text)
        }
    };
    say(&format!(
        "trialport demo: a tour on {STUDY}, a generated fictional study\n  directory {}\n",
        dir.display()
    ))?;

    // 1. The study, as CSV files a directory source serves.
    let datasets = data::generate()?;
    let source = dir.join("source");
    let study_dir = source.join(STUDY);
    fs::create_dir_all(&study_dir)
        .map_err(|e| Error::io("cannot create the demo source directory", &e))?;
    for d in &datasets {
        write_csv(&study_dir, d)?;
    }
    say(&format!(
        "1. wrote {STUDY} as CSV: {}",
        datasets
            .iter()
            .map(|d| format!("{} ({} rows)", d.name, d.batch.num_rows()))
            .collect::<Vec<_>>()
            .join(", ")
    ))?;

    // 2. A home serving that directory, and its admin key.
    let home_dir = dir.join("home");
    Home::init(&home_dir, ORG, Some(&source))?;
    let engine = trialport_formats::home::engine_builder(&home_dir)?.build()?;
    let key = engine.create_initial_admin_key(ORG)?;
    let key_file = dir.join("demo.key");
    write_secret(&key_file, &key)?;
    let cred = format!("ApiKey {key}");
    say(&format!(
        "2. created the home {} with an admin API key (saved in {}, mode 0600)",
        home_dir.display(),
        key_file.display()
    ))?;

    // The specs the tour renders, as files `trialport export report|dashboard --spec` takes.
    let specs_dir = dir.join("specs");
    fs::create_dir_all(&specs_dir)
        .map_err(|e| Error::io("cannot create the demo specs directory", &e))?;
    let templates = templates()?;
    write_spec(&specs_dir.join("report.json"), &report_spec())?;
    write_spec(&specs_dir.join("dashboard.json"), &dashboard_spec())?;
    for (name, spec) in &templates {
        write_spec(&specs_dir.join(name), spec)?;
    }
    // The template PDFs are e-signed by the admin: a signing password of its own, used once and never shown.
    let password = format!("demo-{}", uuid::Uuid::now_v7().simple());
    engine
        .session(&cred)
        .set_signing_password(&password, None)?;

    // 3. Jobs: DM in every data format, a report, a dashboard, the report templates, a bulk package.
    let mut submitted: Vec<(String, Result<Job>)> = Vec::new();
    let data_formats: Vec<&'static str> = engine
        .formats(&cred)?
        .into_iter()
        .filter(|f| f.can(Capability::Data))
        .map(|f| f.id)
        .collect();
    for id in &data_formats {
        // ODM clinical data is organised by subject and visit: DM has no visits, vital signs do.
        let dataset = if *id == "odm-xml" { "VS" } else { "DM" };
        submitted.push((
            format!("{dataset} as {id}"),
            engine.export_data(
                &cred,
                ExportRequest {
                    // HIPAA Safe Harbor: no identifiable data leaves the tour.
                    deidentify: Some(trialport_core::deid::Deidentify::from_list("safe-harbor")),
                    // The study OID of ODM, when the rows carry no STUDYID.
                    options: if *id == "odm-xml" {
                        FormatOptions::new().with("study_oid", STUDY)
                    } else {
                        FormatOptions::new()
                    },
                    ..ExportRequest::data(STUDY, &[dataset], id)
                },
            ),
        ));
    }
    // The report, the dashboard and the templates show subjects' ids, adverse event terms, dates and ages as
    // they are: identifiable data, which the privacy policy gives only to a holder of data:identifiable who asks
    // for it and e-signs (each signature re-authenticates: PBKDF2, a fraction of a second).
    let identifiable = |mut request: ExportRequest| {
        request.identifiable = true;
        request.signature = Some(SignatureRequest::new(Meaning::Approval, password.as_str()));
        request
    };
    submitted.push((
        "report (html, signed)".into(),
        engine.export_report(
            &cred,
            identifiable(ExportRequest::report(report_spec(), "html")),
        ),
    ));
    for format in ["html", "pdf"] {
        submitted.push((
            format!("dashboard ({format}, signed)"),
            engine.export_dashboard(
                &cred,
                identifiable(ExportRequest::dashboard(dashboard_spec(), format)),
            ),
        ));
    }
    for (name, spec) in &templates {
        for format in TEMPLATE_FORMATS {
            submitted.push((
                format!(
                    "template {} ({format}, signed)",
                    name.trim_end_matches(".json")
                ),
                engine.export_report(
                    &cred,
                    identifiable(ExportRequest::report(spec.clone(), format)),
                ),
            ));
        }
    }
    submitted.push((
        "bulk zip of DM, AE, LB, VS (csv)".into(),
        engine.bulk_export(
            &cred,
            ExportRequest {
                deidentify: Some(trialport_core::deid::Deidentify::from_list("safe-harbor")),
                ..ExportRequest::bulk(
                    STUDY,
                    &datasets.iter().map(|d| d.name).collect::<Vec<_>>(),
                    "csv",
                )
            },
        ),
    ));
    say(&format!(
        "3. started {} jobs: DM in {} data formats ({}; VS for ODM), a report, a dashboard (HTML, PDF), \
         the {} report templates as {} (identifiable, so e-signed, meaning approval) and a bulk package",
        submitted.len(),
        data_formats.len(),
        data_formats.join(", "),
        templates.len(),
        TEMPLATE_FORMATS.join(", ")
    ))?;

    // 4. Wait for each.
    let mut results: Vec<(String, Result<Job>)> = Vec::new();
    for (what, job) in submitted {
        let done = job.and_then(|j| engine.wait(&cred, j.id, None));
        results.push((what, done));
    }
    // The home keeps artifacts encrypted at rest: the tour downloads each (decrypted, SHA-256 verified) into
    // `files/<job id>/` so that they can be opened.
    let artifacts_dir = dir.join("files");
    for (_, r) in &results {
        let Ok(job) = r else { continue };
        if job.state != JobState::Succeeded {
            continue;
        }
        let job_dir = artifacts_dir.join(job.id.to_string());
        fs::create_dir_all(&job_dir)
            .map_err(|e| Error::io("cannot create the files directory", &e))?;
        for a in &job.artifacts {
            crate::engine_cmds::download_to(
                &engine,
                &cred,
                job.id,
                Some(&a.name),
                &job_dir.join(&a.name),
            )?;
        }
    }
    let mut t = Table::new(&["JOB", "STATE", "ARTIFACT", "ROWS", "SIZE"]);
    for (what, r) in &results {
        match r {
            Ok(job) => {
                let main: Vec<_> = job
                    .artifacts
                    .iter()
                    .filter(|a| a.name != "manifest.json")
                    .collect();
                if main.is_empty() {
                    t.row(vec![
                        what.clone(),
                        job.state.to_string(),
                        String::new(),
                        String::new(),
                        String::new(),
                    ]);
                }
                for a in main {
                    t.row(vec![
                        what.clone(),
                        job.state.to_string(),
                        artifacts_dir
                            .join(job.id.to_string())
                            .join(&a.name)
                            .display()
                            .to_string(),
                        a.rows.map(|r| r.to_string()).unwrap_or_default(),
                        output::bytes(a.bytes),
                    ]);
                }
            }
            Err(e) => t.row(vec![
                what.clone(),
                format!("not started ({})", e.code()),
                String::new(),
                String::new(),
                String::new(),
            ]),
        }
    }
    say("4. waited for every job:\n")?;
    if !json {
        t.print()?;
    }

    // 5. The job list, as `trialport jobs list` shows it.
    let page = engine.list_jobs(
        &cred,
        ListJobsRequest {
            limit: Some(100),
            ..ListJobsRequest::default()
        },
    )?;
    say(&format!("\n5. the job list ({} jobs):\n", page.total))?;
    if !json {
        output::jobs_table(&page.items).print()?;
    }

    // 6. Download one artifact (DM as CSV), verified against its SHA-256.
    let downloads = dir.join("downloads");
    fs::create_dir_all(&downloads)
        .map_err(|e| Error::io("cannot create the downloads directory", &e))?;
    let pick = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .filter(|j| j.state == JobState::Succeeded && j.kind == trialport_core::job::JobKind::Data)
        .min_by_key(|j| j.format != "csv");
    let download = match pick {
        Some(job) => {
            let d = crate::engine_cmds::download_to(&engine, &cred, job.id, None, &downloads)?;
            say(&format!(
                "\n6. downloaded {} to {} (sha256 {} matches the job's record)",
                d["artifact"].as_str().unwrap_or(""),
                d["path"].as_str().unwrap_or(""),
                d["sha256"].as_str().unwrap_or("")
            ))?;
            Some(d)
        }
        None => {
            say("\n6. no data job succeeded: nothing to download")?;
            None
        }
    };

    // 7. The audit trail.
    let events = engine.session(&cred).verify_audit()?;
    say(&format!(
        "7. audit trail verified: {events} events, hash chain intact"
    ))?;

    let failures: Vec<Error> = results
        .iter()
        .filter_map(|(what, r)| match r {
            Ok(job) => match crate::wait::outcome(job) {
                crate::wait::Finished::Err(e) => Some(e.with_detail("demo_step", what.as_str())),
                _ => None,
            },
            Err(e) => Some(e.clone().with_detail("demo_step", what.as_str())),
        })
        .collect();
    let seconds = started.elapsed().as_secs_f64();

    if json {
        output::json(&json!({
            "directory": dir,
            "source": study_dir,
            "home": home_dir,
            "key_file": key_file,
            "specs": specs_dir,
            "jobs": results.iter().map(|(what, r)| job_json(what, r, &artifacts_dir)).collect::<Vec<_>>(),
            "download": download,
            "audit_events": events,
            "failed": failures.len(),
            "seconds": (seconds * 10.0).round() / 10.0,
        }))?;
    } else {
        summary(
            &dir,
            &home_dir,
            &key_file,
            &results,
            &artifacts_dir,
            seconds,
        )?;
    }
    match failures.into_iter().next() {
        None => Ok(ExitCode::SUCCESS),
        Some(first) => Err(first),
    }
}

fn job_json(what: &str, r: &Result<Job>, artifacts_dir: &Path) -> Value {
    match r {
        Ok(job) => json!({
            "step": what,
            "id": job.id,
            "kind": job.kind,
            "format": job.format,
            "state": job.state,
            "artifacts": job.artifacts.iter().map(|a| json!({
                "name": a.name,
                "path": artifacts_dir.join(job.id.to_string()).join(&a.name),
                "bytes": a.bytes,
                "rows": a.rows,
                "sha256": a.sha256,
            })).collect::<Vec<_>>(),
            "error": job.error,
        }),
        Err(e) => json!({"step": what, "state": "not_started", "error": e.render()["error"]}),
    }
}

fn summary(
    dir: &Path,
    home: &Path,
    key_file: &Path,
    results: &[(String, Result<Job>)],
    artifacts_dir: &Path,
    seconds: f64,
) -> Result<()> {
    let find = |kind: trialport_core::job::JobKind| {
        results
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .find(|j| j.kind == kind && j.state == JobState::Succeeded)
    };
    let path_of = |job: Option<&Job>| {
        job.and_then(|j| {
            j.artifacts
                .iter()
                .find(|a| a.name != "manifest.json")
                .map(|a| artifacts_dir.join(j.id.to_string()).join(&a.name))
        })
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(failed)".into())
    };
    let tp = command_name();
    let lines = [
        String::new(),
        format!("Done in {seconds:.1} s. Everything is in {}:", dir.display()),
        format!("  source/{STUDY}/      the study as CSV (DM, AE, LB, VS)"),
        "  specs/              the report and dashboard specs rendered (export report --spec FILE)".into(),
        "  home/               the trialport home: trialport.db (jobs, keys, signers), audit.log (the audit \
         trail), config.json, artifacts/ (each job's files, encrypted at rest)"
            .into(),
        "  files/              every job's artifacts decrypted for you to open: <job id>/<artifact>".into(),
        "  downloads/          the artifact fetched with `trialport download`".into(),
        "  demo.key            the demo home's admin API key (keep it private)".into(),
        String::new(),
        format!("  report:     {}", path_of(find(trialport_core::job::JobKind::Report))),
        format!("  dashboard:  {}", path_of(find(trialport_core::job::JobKind::Dashboard))),
        format!(
            "  templates:  {}",
            path_of(
                results
                    .iter()
                    .filter_map(|(_, r)| r.as_ref().ok())
                    .find(|j| j.format == "pdf" && j.kind == trialport_core::job::JobKind::Report)
            )
        ),
        format!("  package:    {}", path_of(find(trialport_core::job::JobKind::Bulk))),
        String::new(),
        "Explore it with the CLI:".into(),
        format!("  export TRIALPORT_HOME={}", home.display()),
        format!("  export TRIALPORT_CREDENTIAL=\"$(cat {})\"", key_file.display()),
        format!("  {tp} jobs list"),
        format!(
            "  {tp} export data --study {STUDY} --datasets AE --format csv --deidentify safe-harbor \
             --filter AESER:eq:Y --wait"
        ),
        format!("  {tp} audit verify"),
    ];
    for l in lines {
        output::line(&l)?;
    }
    Ok(())
}

/// How to call this program again: `trialport` when that name on the `PATH` is this executable, else the path
/// this one runs from (after `cargo run` the binary is under `target/`, which is not on the `PATH`).
fn command_name() -> String {
    let me = std::env::current_exe().and_then(fs::canonicalize).ok();
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("trialport"))
            .find(|p| p.is_file())
            .and_then(|p| fs::canonicalize(p).ok())
    });
    match me {
        Some(me) if on_path.as_ref() != Some(&me) => me.display().to_string(),
        _ => "trialport".into(),
    }
}

/// The output directory: `--out`, else `./trialport-demo` (or a temp directory when the current one is not
/// writable). It must not exist or be empty.
fn prepare_dir(out: Option<&Path>) -> Result<PathBuf> {
    let dir = match out {
        Some(p) => p.to_path_buf(),
        None => {
            let here = std::env::current_dir()
                .map(|d| d.join("trialport-demo"))
                .unwrap_or_else(|_| PathBuf::from("trialport-demo"));
            match fs::create_dir_all(&here) {
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    std::env::temp_dir().join(format!("trialport-demo-{}", std::process::id()))
                }
                _ => here,
            }
        }
    };
    if dir.exists() {
        if !dir.is_dir() {
            return Err(Error::validation(
                Reason::NotADirectory,
                "the demo output path exists and is not a directory",
            )
            .with_field("out"));
        }
        let mut entries =
            fs::read_dir(&dir).map_err(|e| Error::io("cannot read the demo directory", &e))?;
        if entries.next().is_some() {
            return Err(Error::conflict(
                Reason::DirectoryNotEmpty,
                "the demo directory is not empty: remove it or choose another with --out DIR",
            )
            .with_field("out"));
        }
    } else {
        fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create the demo directory", &e))?;
    }
    fs::canonicalize(&dir).map_err(|e| Error::io("cannot resolve the demo directory", &e))
}

/// Writes one dataset as `<NAME>.csv` with the csv format and its metadata as `<NAME>.meta.json`, atomically.
fn write_csv(study_dir: &Path, d: &Dataset) -> Result<()> {
    let registry = trialport_formats::default_formats();
    let csv = registry.get("csv")?;
    let mut file = OutputFile::create(&study_dir.join(format!("{}.csv", d.name)), true)?;
    {
        let mut enc = csv.encoder(&d.schema, &d.meta(), &FormatOptions::new(), &mut file)?;
        enc.write(&d.batch)?;
        enc.finish()?;
    }
    file.commit()?;
    // The labels and types travel in a `<NAME>.meta.json` sidecar, which the directory source layers over the
    // CSV file.
    let meta = serde_json::to_vec_pretty(&d.meta())
        .map_err(|_| Error::server(Reason::Internal, "cannot serialize the demo metadata"))?;
    let mut file = OutputFile::create(&study_dir.join(format!("{}.meta.json", d.name)), true)?;
    file.write_all(&meta)
        .map_err(|e| Error::io("cannot write the demo metadata", &e))?;
    file.commit()?;
    Ok(())
}

/// Writes a spec as pretty JSON.
fn write_spec<T: serde::Serialize>(path: &Path, spec: &T) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(spec)
        .map_err(|_| Error::server(Reason::Internal, "cannot serialize a demo spec"))?;
    text.push(b'\n');
    let mut file = OutputFile::create(path, true)?;
    file.write_all(&text)
        .map_err(|e| Error::io("cannot write a demo spec", &e))?;
    file.commit().map(|_| ())
}

/// Writes the demo key to a file only its owner can read.
fn write_secret(path: &Path, key: &str) -> Result<()> {
    trialport_core::fsutil::create_secret_file(path, format!("{key}\n").as_bytes(), "demo key")
}

fn eq(column: &str, value: &str) -> Filter {
    Filter::new(column, FilterOp::Eq, value)
}

fn asc(column: &str) -> SortKey {
    SortKey {
        column: column.into(),
        descending: false,
    }
}

fn report_spec() -> ReportSpec {
    let parameters = BTreeMap::from([
        (
            "Population".to_string(),
            "Safety: all randomized subjects".to_string(),
        ),
        ("Study".to_string(), STUDY.to_string()),
    ]);
    ReportSpec {
        study: STUDY.into(),
        title: format!("{STUDY} safety overview (fictional data)"),
        data_cutoff: Some("2024-12-31".into()),
        parameters,
        sections: vec![
            SectionSpec::Text {
                heading: Some("About this report".into()),
                body: format!(
                    "This report was rendered by `trialport demo` from {STUDY}, a generated study of {} \
                     fictional subjects in three arms.\n\nNo value in it describes a real person.",
                    data::SUBJECTS
                ),
            },
            SectionSpec::Table(TableSpec {
                heading: Some("Adverse events".into()),
                dataset: "AE".into(),
                columns: Some(
                    ["USUBJID", "AESEQ", "AETERM", "AEDECOD", "AESEV", "AESER", "AESTDTC"]
                        .map(String::from)
                        .to_vec(),
                ),
                filters: vec![],
                sort: vec![asc("USUBJID"), asc("AESEQ")],
                limit: None,
                footnotes: vec![],
            }),
            SectionSpec::Table(TableSpec {
                heading: Some("Alanine aminotransferase (ALT) results".into()),
                dataset: "LB".into(),
                columns: Some(
                    ["USUBJID", "VISITNUM", "LBTESTCD", "LBSTRESN", "LBSTRESU", "LBDT"]
                        .map(String::from)
                        .to_vec(),
                ),
                filters: vec![eq("LBTESTCD", "ALT")],
                sort: vec![asc("USUBJID"), asc("VISITNUM")],
                limit: None,
                footnotes: vec![],
            }),
        ],
    }
}

fn dashboard_spec() -> DashboardSpec {
    let tile = |label: &str, dataset: &str, measure: Measure, column: Option<&str>| TileSpec {
        label: label.into(),
        dataset: dataset.into(),
        measure,
        column: column.map(String::from),
        filters: vec![],
    };
    DashboardSpec {
        study: STUDY.into(),
        title: format!("{STUDY} dashboard (fictional data)"),
        data_cutoff: Some("2024-12-31".into()),
        tiles: vec![
            tile("Subjects", "DM", Measure::Count, None),
            tile(
                "Subjects with an adverse event",
                "AE",
                Measure::DistinctCount,
                Some("USUBJID"),
            ),
            tile("Mean age", "DM", Measure::Mean, Some("AGE")),
        ],
        tables: vec![TableSpec {
            heading: Some("Serious adverse events".into()),
            dataset: "AE".into(),
            columns: Some(
                ["USUBJID", "AEDECOD", "AESEV", "AESTDTC"]
                    .map(String::from)
                    .to_vec(),
            ),
            filters: vec![eq("AESER", "Y")],
            sort: vec![asc("USUBJID")],
            limit: None,
            footnotes: vec![],
        }],
        charts: vec![
            ChartSpec {
                title: "Adverse events by severity".into(),
                kind: ChartKind::Bar,
                dataset: "AE".into(),
                x: "AESEV".into(),
                measure: Measure::Count,
                column: None,
                filters: vec![],
            },
            ChartSpec {
                title: "Mean ALT by visit".into(),
                kind: ChartKind::Line,
                dataset: "LB".into(),
                x: "VISITNUM".into(),
                measure: Measure::Mean,
                column: Some("LBSTRESN".into()),
                filters: vec![eq("LBTESTCD", "ALT")],
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_name_demo_columns() {
        let t = templates().unwrap_or_default();
        assert_eq!(t.len(), 3);
        let data = data::generate().unwrap_or_default();
        for (name, spec) in t {
            assert_eq!(spec.study, STUDY, "{name}");
            assert!(spec.data_cutoff.is_some(), "{name}");
            // Every column a template names is in the demo data.
            let text = serde_json::to_string(&spec).unwrap_or_default();
            for s in &spec.sections {
                let (dataset, columns): (&str, Vec<&str>) = match s {
                    SectionSpec::Summary(x) => (
                        &x.dataset,
                        x.group_by
                            .iter()
                            .map(String::as_str)
                            .chain(x.measures.iter().filter_map(|m| m.column.as_deref()))
                            .collect(),
                    ),
                    SectionSpec::Table(x) => (
                        &x.dataset,
                        x.columns.iter().flatten().map(String::as_str).collect(),
                    ),
                    SectionSpec::Chart(x) => (&x.dataset, vec![x.x.as_str()]),
                    SectionSpec::Text { .. } => continue,
                };
                let d = data.iter().find(|d| d.name == dataset);
                assert!(d.is_some(), "{name}: {dataset}");
                for c in columns {
                    assert!(
                        d.is_some_and(|d| d.schema.index_of(c).is_ok()),
                        "{name}: {dataset}.{c} in {text}"
                    );
                }
            }
        }
    }

    #[test]
    fn specs_round_trip_as_json() {
        let r = report_spec();
        let text = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(serde_json::from_str::<ReportSpec>(&text).ok(), Some(r));
        let d = dashboard_spec();
        let text = serde_json::to_string(&d).unwrap_or_default();
        assert_eq!(serde_json::from_str::<DashboardSpec>(&text).ok(), Some(d));
    }
}
