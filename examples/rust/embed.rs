//! Embedding trialport in a Rust service, end to end: a home over a folder of study data, an export of two
//! datasets as Parquet run as a job, the wait for it, and a verified download of one artifact.
//!
//! Run it with `cargo run -p trialport-examples --example embed`; it works in a temporary directory and prints
//! what it did.

use std::error::Error;
use std::time::Duration;
use trialport_core::home::{Home, HomeConfig};
use trialport_core::job::JobState;
use trialport_core::request::ExportRequest;

fn main() -> Result<(), Box<dyn Error>> {
    let work = tempfile::tempdir()?;

    // Study data as files: `<source>/<study>/<DATASET>.<ext>` (CSV, Parquet, XPT, Dataset-JSON, ...).
    let source = work.path().join("studies");
    std::fs::create_dir_all(source.join("DEMO01"))?;
    std::fs::write(
        source.join("DEMO01/DM.csv"),
        "STUDYID,USUBJID,AGE,SEX\nDEMO01,DEMO01-001,34,F\nDEMO01,DEMO01-002,51,M\nDEMO01,DEMO01-003,47,F\n",
    )?;
    std::fs::write(
        source.join("DEMO01/AE.csv"),
        "STUDYID,USUBJID,AESEQ,AETERM\nDEMO01,DEMO01-001,1,HEADACHE\nDEMO01,DEMO01-002,1,NAUSEA\n",
    )?;

    // A home (jobs, keys, audit trail, encrypted artifacts) for organization `acme`, and its first admin key,
    // shown once: a service keeps it in its secret store.
    let home_dir = work.path().join("home");
    let mut config = HomeConfig::new("acme");
    config.source = Some(source);
    let (_home, admin_key) = Home::init_with_admin_key(&home_dir, &config)?;

    // The engine, wired with every format, and a session for one credential: every call authenticates,
    // authorizes and is audited.
    let engine = trialport_formats::home::engine_builder(&home_dir)?.build()?;
    let session = engine.session(&format!("ApiKey {admin_key}"));

    let job = session.export(ExportRequest::data("DEMO01", &["DM", "AE"], "parquet"))?;
    let job = session.wait(job.id, Some(Duration::from_secs(60)))?;
    if job.state != JobState::Succeeded {
        return Err(format!("job {} ended {:?}: {:?}", job.id, job.state, job.error).into());
    }
    println!("job {} succeeded", job.id);
    for artifact in &job.artifacts {
        let rows = artifact
            .rows
            .map(|n| format!(", {n} rows"))
            .unwrap_or_default();
        println!(
            "  {} ({} bytes{rows}), sha256 {}",
            artifact.name, artifact.bytes, artifact.sha256
        );
    }

    // Downloads are decrypted and checked against the recorded SHA-256 while they are read.
    let mut download = session.download(job.id, Some("dm.parquet"))?;
    let out = work.path().join("dm.parquet");
    let bytes = std::io::copy(&mut download.reader, &mut std::fs::File::create(&out)?)?;
    println!("downloaded {} ({bytes} bytes)", download.artifact.name);

    engine.shutdown(Duration::from_secs(10));
    Ok(())
}
