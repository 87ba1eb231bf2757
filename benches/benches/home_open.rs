//! Criterion benchmark of opening a home whose audit trail holds 10,000, 100,000 and 1,000,000 events.
//!
//! * `home_open/engine/<events>`: `Engine::builder().home(dir)` and `build` with no workers, then drop: what every
//!   CLI command does before its operation (the store opened and its archived trail checked against the anchor in
//!   the database, the keys, the lease keeper started and stopped).
//!
//! Each home is made once before timing: `Home::init`, then the events appended through the home's store in
//! transactions of 10,000, exactly as an engine records them (hash-chained, anchored, copied to `audit.log`).
//! Opening must not grow with the trail: only the log's tail is read (the full check is `audit verify`). Run with
//! `cargo bench -p trialport-benches --bench home_open`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use serde_json::json;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use trialport_core::audit::{Actor, AuditRecord, AuditScope, Auditor, Outcome};
use trialport_core::clock::SystemClock;
use trialport_core::engine::Engine;
use trialport_core::home::Home;
use trialport_core::store::Store;

/// Trail sizes measured.
const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];

/// Events per transaction while making a home.
const BATCH: u64 = 10_000;

/// Makes a home in `dir` whose trail holds `events` events of an ordinary mix (listings and downloads).
fn make_home(dir: &Path, events: u64) {
    let home = Home::init(dir, "acme", None).expect("init");
    let store = home.open_store().expect("store");
    let auditor = Auditor::new(vec![], Arc::new(SystemClock));
    let actor = Actor {
        subject: "apikey:0123456789ab".into(),
        name: "analyst".into(),
        org: "acme".into(),
    };
    let scope = AuditScope::new("acme", Some("S1"));
    let mut written = 0;
    while written < events {
        let n = BATCH.min(events - written);
        store
            .write(
                &mut |tx| {
                    for i in 0..n {
                        let record = AuditRecord {
                            actor: actor.clone(),
                            action: if i % 2 == 0 { "list_jobs" } else { "download" }.into(),
                            target: format!("study:S1/{}", written + i),
                            outcome: Outcome::Success,
                            details: json!({"page": 1, "limit": 20, "total": written + i}),
                            request_id: format!("req_{:032x}", written + i),
                        };
                        auditor.record(tx, &record, &scope)?;
                    }
                    Ok(())
                },
                &|_| Ok(()),
            )
            .expect("append");
        written += n;
    }
}

fn open(c: &mut Criterion) {
    let mut group = c.benchmark_group("home_open");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for events in SIZES {
        let dir = tempfile::tempdir().expect("tempdir");
        make_home(dir.path(), events);
        let log = std::fs::metadata(dir.path().join("audit.log")).map_or(0, |m| m.len());
        eprintln!("home_open: {events} events, audit.log {} MiB", log >> 20);
        group.bench_with_input(BenchmarkId::new("engine", events), &events, |b, _| {
            b.iter(|| {
                let engine = Engine::builder()
                    .home(dir.path())
                    .expect("home")
                    .workers(0)
                    .build()
                    .expect("build");
                black_box(&engine);
                drop(engine);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
