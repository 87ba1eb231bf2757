//! Test helpers: a minimal line format, demo data, and engines wired for tests.
#![allow(clippy::unwrap_used, dead_code, missing_docs)]

use arrow::array::{Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions as DisplayOptions};

use std::sync::Arc;
use std::time::Duration;
use trialport_core::auth::{NewApiKey, Role};
use trialport_core::document::{Block, Document};
use trialport_core::engine::Engine;
use trialport_core::error::Result;
use trialport_core::format::{
    Capability, EncodeSummary, Encoder, Format, FormatInfo, FormatOptions, FormatRegistry,
    OptionInfo, Output,
};
use trialport_core::meta::DatasetMeta;
use trialport_core::source::{BatchStream, DataSource, DatasetInfo, MemorySource};

/// A tiny text format: a header line of column names, then one line per row, cells joined by `sep`.
/// Documents render as one line per block kind. Enough to test the engine without the formats crate.
pub struct LinesFormat;

impl Format for LinesFormat {
    fn info(&self) -> FormatInfo {
        FormatInfo {
            id: "lines",
            name: "Lines (test)",
            extension: "txt",
            media_type: "text/plain",
            capabilities: vec![
                Capability::Data,
                Capability::Report,
                Capability::Dashboard,
                Capability::Streaming,
            ],
            options: vec![OptionInfo::new("sep", "|", "cell separator")],
        }
    }

    fn encoder<'a>(
        &self,
        schema: &SchemaRef,
        _meta: &DatasetMeta,
        options: &FormatOptions,
        out: Output<'a>,
    ) -> Result<Box<dyn Encoder + 'a>> {
        self.check_options(options)?;
        let sep = options.string("sep", "|");
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        writeln!(out, "{}", names.join(&sep))?;
        Ok(Box::new(LinesEncoder { out, sep, rows: 0 }))
    }

    fn render(&self, doc: &Document, _options: &FormatOptions, out: Output<'_>) -> Result<()> {
        writeln!(out, "title={}", doc.title)?;
        for b in &doc.blocks {
            match b {
                Block::Text { body, .. } => writeln!(out, "text={body}")?,
                Block::Table {
                    rows, total_rows, ..
                } => writeln!(out, "table={}/{}", rows.num_rows(), total_rows)?,
                Block::Tiles(k) => {
                    for kpi in k {
                        writeln!(out, "kpi={}={:?}", kpi.label, kpi.value)?;
                    }
                }
                Block::Chart(c) => writeln!(out, "chart={}={:?}", c.title, c.points)?,
            }
        }
        Ok(())
    }
}

struct LinesEncoder<'a> {
    out: Output<'a>,
    sep: String,
    rows: u64,
}

impl Encoder for LinesEncoder<'_> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let opts = DisplayOptions::default();
        let fmts: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<std::result::Result<_, _>>()?;
        for r in 0..batch.num_rows() {
            let cells: Vec<String> = fmts.iter().map(|f| f.value(r).to_string()).collect();
            writeln!(self.out, "{}", cells.join(&self.sep))?;
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<EncodeSummary> {
        self.out.flush()?;
        Ok(EncodeSummary::rows(self.rows))
    }
}

pub fn registry() -> FormatRegistry {
    let mut r = FormatRegistry::new();
    r.register(Arc::new(LinesFormat)).unwrap();
    r
}

pub fn dm_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("SEX", DataType::Utf8, true),
        Field::new("AGE", DataType::Int64, true),
        Field::new("WEIGHT", DataType::Float64, true),
    ]))
}

/// DM with `n` subjects: sex alternates F/M, ages 20.., weights 50.5..
pub fn dm_batch(n: usize) -> RecordBatch {
    RecordBatch::try_new(
        dm_schema(),
        vec![
            Arc::new(StringArray::from(
                (0..n).map(|i| format!("S1-{i:03}")).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                (0..n)
                    .map(|i| if i % 2 == 0 { "F" } else { "M" })
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                (0..n).map(|i| 20 + i as i64).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                (0..n).map(|i| 50.5 + i as f64).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

/// Study S1 with DM (10 rows) and AE (4 rows); study S2 with DM (3 rows).
pub fn source() -> Arc<MemorySource> {
    let s = MemorySource::new();
    s.add("S1", "DM", dm_schema(), vec![dm_batch(6), dm_batch(4)])
        .unwrap();
    let ae = Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("AESEV", DataType::Utf8, true),
    ]));
    let b = RecordBatch::try_new(
        ae.clone(),
        vec![
            Arc::new(StringArray::from(vec![
                "S1-000", "S1-000", "S1-001", "S1-003",
            ])),
            Arc::new(StringArray::from(vec![
                Some("MILD"),
                Some("SEVERE"),
                Some("MILD"),
                None,
            ])),
        ],
    )
    .unwrap();
    s.add("S1", "AE", ae, vec![b]).unwrap();
    s.add("S2", "DM", dm_schema(), vec![dm_batch(3)]).unwrap();
    Arc::new(s)
}

/// A source whose one dataset (study SLOW, dataset BIG) yields `batches` batches, sleeping between them.
pub struct SlowSource {
    pub batches: usize,
    pub pause: Duration,
}

impl DataSource for SlowSource {
    fn datasets(&self, study: &str) -> Result<Vec<DatasetInfo>> {
        if study != "SLOW" {
            return Err(trialport_core::source::unknown_study(study));
        }
        Ok(vec![DatasetInfo {
            name: "BIG".into(),
            label: None,
        }])
    }

    fn scan(&self, study: &str, dataset: &str) -> Result<BatchStream> {
        if study != "SLOW" || dataset != "BIG" {
            return Err(trialport_core::source::unknown_dataset(study, dataset));
        }
        let pause = self.pause;
        let schema = dm_schema();
        Ok(BatchStream::new(
            schema,
            (0..self.batches).map(move |_| {
                std::thread::sleep(pause);
                Ok(dm_batch(100))
            }),
        ))
    }
}

/// An engine on the test source with `workers` workers; returns it with an admin credential of org `acme`.
pub fn engine(workers: usize) -> (Engine, String) {
    let e = Engine::builder()
        .formats(registry())
        .source(source())
        .workers(workers)
        .build()
        .unwrap();
    let key = e.create_initial_admin_key("acme").unwrap();
    (e, format!("ApiKey {key}"))
}

/// A credential for a new key with `roles` on `studies`, created by `admin`.
pub fn key(engine: &Engine, admin: &str, roles: &[Role], studies: &[&str]) -> String {
    let (text, _) = engine
        .create_api_key(
            admin,
            NewApiKey {
                name: "test key".into(),
                org: "acme".into(),
                roles: roles.to_vec(),
                studies: studies.iter().map(|s| s.to_string()).collect(),
                expires_at: None,
            },
        )
        .unwrap();
    format!("ApiKey {text}")
}
