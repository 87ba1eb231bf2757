//! trialport-benches: a synthetic SDTM LB (laboratory results) table for benchmarks, and the small process
//! helpers the benchmark binaries share.
//!
//! # The table
//!
//! [`lb_schema`] has exactly the 20 columns of `../shared/bench/gen_lb.py` (13 `Utf8`, 6 `Float64`, `LBDT` as
//! `Date32`), and [`lb_batches`] yields its rows with the same shape: 40 laboratory tests x 12 visits = 480 rows
//! per subject, subjects `CDISCPILOT01-01-<site>-<number>` on 18 sites, results drawn from a normal distribution
//! around each test's reference range and formatted with the test's number of decimals, about 5% of results
//! missing (null `LBSTRESN`, empty `LBORRES`/`LBSTRESC`/`LBNRIND`), study days with a +/-2 day jitter per visit,
//! collection date-times between 07:00 and 11:59 and reference start dates between 2012-07-01 and 2014-06-30.
//!
//! The values are generated here, in Rust, with their own splitmix64 generator and a fixed seed: the table has
//! the same columns, types, cardinalities and value shapes as gen_lb.py's, but it is **not byte-identical** to it
//! (numpy's generator is not reproduced). Generation is counter-based (every random draw is a pure function of the
//! seed, a stream number and a row, subject or visit index), so the rows are the same whatever the batch size, and
//! it is streaming: only the batch being built is in memory.
//!
//! # The source
//!
//! [`LbSource`] offers that table as dataset `LB` of study `BENCH` to the engine, generating batches as the job
//! reads them (for the job-path benchmark and the memory check).

use arrow::array::{ArrayRef, Date32Array, Float64Array, StringArray, StringBuilder};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use trialport_core::error::Result;
use trialport_core::meta::DatasetMeta;
use trialport_core::source::{
    unknown_dataset, unknown_study, BatchStream, DataSource, DatasetInfo,
};

/// The generator's fixed seed (the same number as gen_lb.py's; the generators differ).
pub const SEED: u64 = 20_240_601;
/// The study [`LbSource`] offers.
pub const STUDY: &str = "BENCH";
/// The dataset [`LbSource`] offers.
pub const DATASET: &str = "LB";
/// The dataset label carried in the schema metadata of [`lb_dataset_schema`].
pub const DATASET_LABEL: &str = "Laboratory Test Results";
/// Laboratory tests per visit.
pub const TESTS_PER_VISIT: usize = 40;
/// Visits per subject.
pub const VISITS_PER_SUBJECT: usize = 12;
/// Rows per subject (every test at every visit).
pub const ROWS_PER_SUBJECT: usize = TESTS_PER_VISIT * VISITS_PER_SUBJECT;
/// Rows per batch when none is given: 8,192, the batch size of trialport's file readers
/// (`trialport_formats::read::BATCH_SIZE`), so generated data reaches the encoders as read data does.
pub const DEFAULT_BATCH_ROWS: usize = 8_192;

/// One laboratory test: code, name, category, unit, reference range and decimals of the reported result.
struct LabTest {
    code: &'static str,
    name: &'static str,
    category: &'static str,
    unit: &'static str,
    low: f64,
    high: f64,
    decimals: usize,
}

const fn test(
    code: &'static str,
    name: &'static str,
    category: &'static str,
    unit: &'static str,
    low: f64,
    high: f64,
    decimals: usize,
) -> LabTest {
    LabTest {
        code,
        name,
        category,
        unit,
        low,
        high,
        decimals,
    }
}

const CHEM: &str = "CHEMISTRY";
const HEMA: &str = "HEMATOLOGY";
const URIN: &str = "URINALYSIS";

/// The 40 tests of gen_lb.py, in its order.
static TESTS: [LabTest; TESTS_PER_VISIT] = [
    test("ALB", "Albumin", CHEM, "g/L", 33.0, 49.0, 0),
    test("ALP", "Alkaline Phosphatase", CHEM, "U/L", 35.0, 115.0, 0),
    test("ALT", "Alanine Aminotransferase", CHEM, "U/L", 6.0, 34.0, 0),
    test(
        "AST",
        "Aspartate Aminotransferase",
        CHEM,
        "U/L",
        10.0,
        40.0,
        0,
    ),
    test("BILI", "Bilirubin", CHEM, "umol/L", 2.0, 21.0, 1),
    test("BUN", "Blood Urea Nitrogen", CHEM, "mmol/L", 1.4, 8.6, 2),
    test("CA", "Calcium", CHEM, "mmol/L", 2.1, 2.6, 2),
    test("CHOL", "Cholesterol", CHEM, "mmol/L", 3.9, 7.2, 2),
    test("CK", "Creatine Kinase", CHEM, "U/L", 18.0, 198.0, 0),
    test("CL", "Chloride", CHEM, "mmol/L", 98.0, 108.0, 0),
    test("CREAT", "Creatinine", CHEM, "umol/L", 53.0, 115.0, 0),
    test(
        "GGT",
        "Gamma Glutamyl Transferase",
        CHEM,
        "U/L",
        4.0,
        49.0,
        0,
    ),
    test("GLUC", "Glucose", CHEM, "mmol/L", 3.9, 6.4, 2),
    test("K", "Potassium", CHEM, "mmol/L", 3.4, 5.4, 1),
    test("PHOS", "Phosphate", CHEM, "mmol/L", 0.8, 1.6, 2),
    test("PROT", "Protein", CHEM, "g/L", 61.0, 84.0, 0),
    test("SODIUM", "Sodium", CHEM, "mmol/L", 135.0, 145.0, 0),
    test("URATE", "Urate", CHEM, "umol/L", 125.0, 494.0, 0),
    test("TRIG", "Triglycerides", CHEM, "mmol/L", 0.5, 2.3, 2),
    test("LDH", "Lactate Dehydrogenase", CHEM, "U/L", 120.0, 246.0, 0),
    test("MG", "Magnesium", CHEM, "mmol/L", 0.7, 1.0, 2),
    test("HBA1C", "Hemoglobin A1C", CHEM, "%", 4.0, 6.0, 1),
    test("HGB", "Hemoglobin", HEMA, "mmol/L", 7.5, 10.0, 2),
    test("HCT", "Hematocrit", HEMA, "%", 35.0, 49.0, 1),
    test("RBC", "Erythrocytes", HEMA, "10^12/L", 3.8, 5.8, 2),
    test("WBC", "Leukocytes", HEMA, "10^9/L", 3.8, 10.7, 2),
    test("PLAT", "Platelets", HEMA, "10^9/L", 140.0, 400.0, 0),
    test("NEUT", "Neutrophils", HEMA, "10^9/L", 1.96, 7.23, 2),
    test("LYM", "Lymphocytes", HEMA, "10^9/L", 0.91, 4.28, 2),
    test("MONO", "Monocytes", HEMA, "10^9/L", 0.12, 0.92, 2),
    test("EOS", "Eosinophils", HEMA, "10^9/L", 0.0, 0.57, 2),
    test("BASO", "Basophils", HEMA, "10^9/L", 0.0, 0.2, 2),
    test(
        "MCV",
        "Ery. Mean Corpuscular Volume",
        HEMA,
        "fL",
        80.0,
        100.0,
        0,
    ),
    test(
        "MCH",
        "Ery. Mean Corpuscular Hemoglobin",
        HEMA,
        "fmol(Fe)",
        1.65,
        2.05,
        2,
    ),
    test(
        "MCHC",
        "Ery. Mean Corpuscular HGB Concentration",
        HEMA,
        "mmol/L",
        19.0,
        22.0,
        1,
    ),
    test(
        "ANISO",
        "Anisocytes Erythrocytes Count, Absolute",
        HEMA,
        "10^12/L",
        0.0,
        0.3,
        2,
    ),
    test("PH", "pH", URIN, "", 5.0, 8.0, 1),
    test("SPGRAV", "Specific Gravity", URIN, "", 1.006, 1.03, 3),
    test("UROBIL", "Urobilinogen", URIN, "umol/L", 3.2, 16.0, 1),
    test(
        "KETONES",
        "Ketones in Urine by Test Strip, Quantif.",
        URIN,
        "mmol/L",
        0.0,
        0.5,
        1,
    ),
];

/// The 12 visits of gen_lb.py: number, name, planned study day.
static VISITS: [(f64, &str, i64); VISITS_PER_SUBJECT] = [
    (1.0, "SCREENING 1", -7),
    (2.0, "SCREENING 2", -3),
    (3.0, "BASELINE", 1),
    (4.0, "WEEK 2", 14),
    (5.0, "WEEK 4", 28),
    (7.0, "WEEK 6", 42),
    (8.0, "WEEK 8", 56),
    (9.0, "WEEK 12", 84),
    (10.0, "WEEK 16", 112),
    (11.0, "WEEK 20", 140),
    (12.0, "WEEK 24", 168),
    (13.0, "WEEK 26", 182),
];

/// Days from 1970-01-01 to 2012-07-01, the earliest reference start date.
const RFST_EPOCH_DAYS: i64 = 15_522;
/// Reference start dates spread over this many days.
const RFST_SPAN_DAYS: u64 = 730;
/// Share of missing results.
const MISSING_SHARE: f64 = 0.05;

/// The 20 columns of gen_lb.py with their Arrow types. Only `LBSTRESN` holds nulls; character "missing" is an
/// empty string (SDTM convention), so the other columns are declared non-nullable.
pub fn lb_schema() -> SchemaRef {
    let utf8 = |name: &str| Field::new(name, DataType::Utf8, false);
    let f64 = |name: &str, nullable: bool| Field::new(name, DataType::Float64, nullable);
    Arc::new(Schema::new(vec![
        utf8("STUDYID"),
        utf8("DOMAIN"),
        utf8("USUBJID"),
        f64("LBSEQ", false),
        utf8("LBTESTCD"),
        utf8("LBTEST"),
        utf8("LBCAT"),
        utf8("LBORRES"),
        utf8("LBORRESU"),
        utf8("LBSTRESC"),
        f64("LBSTRESN", true),
        utf8("LBSTRESU"),
        f64("LBSTNRLO", false),
        f64("LBSTNRHI", false),
        utf8("LBNRIND"),
        f64("VISITNUM", false),
        utf8("VISIT"),
        utf8("LBDTC"),
        f64("LBDY", false),
        Field::new("LBDT", DataType::Date32, false),
    ]))
}

/// [`lb_schema`] with the dataset metadata the engine expects (`trialport.dataset = LB` and its label).
pub fn lb_dataset_schema() -> SchemaRef {
    let meta = DatasetMeta {
        name: DATASET.to_string(),
        label: Some(DATASET_LABEL.to_string()),
        columns: vec![],
        ..Default::default()
    };
    let plain = lb_schema();
    // Only a metadata entry naming an unknown column can fail, and there is none.
    meta.apply_to(&plain).unwrap_or(plain)
}

/// The dataset metadata of the table (name `LB` and its label), for calling encoders directly.
pub fn lb_meta() -> DatasetMeta {
    DatasetMeta::from_schema(&lb_dataset_schema())
}

/// `rows` generated rows of [`lb_schema`] in batches of `batch_rows` (the last one may be shorter).
///
/// Deterministic and streaming: each batch is generated when the iterator reaches it.
///
/// # Panics
/// When `batch_rows` is 0 and `rows` is not.
pub fn lb_batches(rows: usize, batch_rows: usize) -> impl Iterator<Item = RecordBatch> + Send {
    LbBatches::new(lb_schema(), rows, batch_rows)
        .map(|b| b.expect("generated columns always match the LB schema (checked by the tests)"))
}

/// The iterator behind [`lb_batches`] and [`LbSource`]: batches of a given schema (the LB columns, with any
/// metadata), each generated when reached.
#[derive(Debug, Clone)]
pub struct LbBatches {
    schema: SchemaRef,
    next: usize,
    end: usize,
    batch_rows: usize,
}

impl LbBatches {
    /// Rows `0..rows` as batches of `batch_rows` rows of `schema`, which must have the columns of [`lb_schema`].
    ///
    /// # Panics
    /// When `batch_rows` is 0 and `rows` is not.
    pub fn new(schema: SchemaRef, rows: usize, batch_rows: usize) -> Self {
        assert!(batch_rows > 0 || rows == 0, "batch_rows must be positive");
        LbBatches {
            schema,
            next: 0,
            end: rows,
            batch_rows,
        }
    }
}

impl Iterator for LbBatches {
    type Item = std::result::Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let len = self.batch_rows.min(self.end - self.next);
        let batch = lb_batch(&self.schema, self.next, len);
        self.next += len;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.end - self.next).div_ceil(self.batch_rows.max(1));
        (left, Some(left))
    }
}

/// SplitMix64's output function.
const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64's increment.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Independent random streams: each is a SplitMix64 sequence with its own start, read at any index.
#[derive(Clone, Copy)]
enum Stream {
    NormalA = 1,
    NormalB = 2,
    Missing = 3,
    StartDate = 4,
    Jitter = 5,
    Minute = 6,
}

/// The `index`-th 64-bit draw of `stream` (SplitMix64 jumped to `index`).
fn draw(stream: Stream, index: u64) -> u64 {
    let start = mix64(SEED ^ (stream as u64).wrapping_mul(GAMMA));
    mix64(start.wrapping_add(index.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// A uniform draw in `[0, 1)` (53 bits).
fn uniform(stream: Stream, index: u64) -> f64 {
    (draw(stream, index) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal draw for row `index` (Box-Muller).
fn normal(index: u64) -> f64 {
    let u1 = 1.0 - uniform(Stream::NormalA, index); // (0, 1]: ln is finite
    let u2 = uniform(Stream::NormalB, index);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Civil date (year, month, day) of a day count from 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// What all 40 rows of one subject's visit share.
struct VisitRows {
    /// `subject * 12 + visit`.
    key: u64,
    usubjid: String,
    lbdtc: String,
    lbdy: f64,
    lbdt: i32,
}

impl VisitRows {
    fn new(subject: u64, visit: usize) -> Self {
        let key = subject * VISITS_PER_SUBJECT as u64 + visit as u64;
        let site = 701 + subject % 18;
        let usubjid = format!("CDISCPILOT01-01-{site}-{:04}", 1001 + subject);
        let jitter = if visit <= 2 {
            0
        } else {
            (draw(Stream::Jitter, key) % 5) as i64 - 2
        };
        let mut lbdy = VISITS[visit].2 + jitter;
        if lbdy == 0 {
            lbdy = 1; // SDTM has no day 0
        }
        let rfst = RFST_EPOCH_DAYS + (draw(Stream::StartDate, subject) % RFST_SPAN_DAYS) as i64;
        let date = rfst + if lbdy > 0 { lbdy - 1 } else { lbdy };
        let minute = 7 * 60 + draw(Stream::Minute, key) % (5 * 60);
        let (y, m, d) = civil_from_days(date);
        let lbdtc = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}", minute / 60, minute % 60);
        VisitRows {
            key,
            usubjid,
            lbdtc,
            lbdy: lbdy as f64,
            lbdt: date as i32,
        }
    }
}

/// Rows `start..start + len` of the table as one batch of `schema` (the LB columns, with any metadata).
///
/// # Errors
/// When `schema` does not have the columns and types of [`lb_schema`].
pub fn lb_batch(
    schema: &SchemaRef,
    start: usize,
    len: usize,
) -> std::result::Result<RecordBatch, ArrowError> {
    let constant = |v: &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, len)))
    };
    let strings = |bytes_per_row: usize| StringBuilder::with_capacity(len, len * bytes_per_row);
    let mut usubjid = strings(24);
    let mut testcd = strings(6);
    let mut test_name = strings(20);
    let mut category = strings(10);
    let mut orres = strings(5);
    let mut unit = strings(6);
    let mut stresc = strings(5);
    let mut nrind = strings(6);
    let mut visit_name = strings(8);
    let mut lbdtc = strings(16);
    let mut seq = Vec::with_capacity(len);
    let mut stresn = Vec::with_capacity(len);
    let mut valid = Vec::with_capacity(len);
    let mut low = Vec::with_capacity(len);
    let mut high = Vec::with_capacity(len);
    let mut visitnum = Vec::with_capacity(len);
    let mut lbdy = Vec::with_capacity(len);
    let mut lbdt = Vec::with_capacity(len);

    let first = start as u64;
    let mut v = VisitRows::new(
        first / ROWS_PER_SUBJECT as u64,
        (first % ROWS_PER_SUBJECT as u64) as usize / TESTS_PER_VISIT,
    );
    let mut text = String::with_capacity(16);
    for i in start..start + len {
        let row = i as u64;
        let subject = row / ROWS_PER_SUBJECT as u64;
        let within = (row % ROWS_PER_SUBJECT as u64) as usize;
        let visit = within / TESTS_PER_VISIT;
        let t = &TESTS[within % TESTS_PER_VISIT];
        let key = subject * VISITS_PER_SUBJECT as u64 + visit as u64;
        if v.key != key {
            v = VisitRows::new(subject, visit);
        }

        let mid = (t.low + t.high) / 2.0;
        let sd = (t.high - t.low) / 4.0;
        let scale = 10f64.powi(t.decimals as i32);
        let value = ((mid + sd * normal(row)).max(0.0) * scale).round_ties_even() / scale + 0.0;
        let missing = uniform(Stream::Missing, row) < MISSING_SHARE;

        text.clear();
        if !missing {
            // Writing to a String cannot fail.
            let _ = write!(text, "{:.*}", t.decimals, value);
        }
        let indicator = if missing {
            ""
        } else if value < t.low {
            "LOW"
        } else if value > t.high {
            "HIGH"
        } else {
            "NORMAL"
        };

        usubjid.append_value(&v.usubjid);
        seq.push((within + 1) as f64);
        testcd.append_value(t.code);
        test_name.append_value(t.name);
        category.append_value(t.category);
        orres.append_value(&text);
        unit.append_value(t.unit);
        stresc.append_value(&text);
        stresn.push(if missing { 0.0 } else { value });
        valid.push(!missing);
        low.push(t.low);
        high.push(t.high);
        nrind.append_value(indicator);
        visitnum.push(VISITS[visit].0);
        visit_name.append_value(VISITS[visit].1);
        lbdtc.append_value(&v.lbdtc);
        lbdy.push(v.lbdy);
        lbdt.push(v.lbdt);
    }

    let nulls = NullBuffer::from(valid);
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    let unit: ArrayRef = Arc::new(unit.finish());
    let columns: Vec<ArrayRef> = vec![
        constant("CDISCPILOT01"),
        constant("LB"),
        Arc::new(usubjid.finish()),
        Arc::new(Float64Array::from(seq)),
        Arc::new(testcd.finish()),
        Arc::new(test_name.finish()),
        Arc::new(category.finish()),
        Arc::new(orres.finish()),
        unit.clone(),
        Arc::new(stresc.finish()),
        Arc::new(Float64Array::new(stresn.into(), nulls)),
        unit,
        Arc::new(Float64Array::from(low)),
        Arc::new(Float64Array::from(high)),
        Arc::new(nrind.finish()),
        Arc::new(Float64Array::from(visitnum)),
        Arc::new(visit_name.finish()),
        Arc::new(lbdtc.finish()),
        Arc::new(Float64Array::from(lbdy)),
        Arc::new(Date32Array::from(lbdt)),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// Dataset `LB` of study `BENCH`: [`lb_batches`]' rows, generated as the engine reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbSource {
    /// Rows of the dataset.
    pub rows: usize,
    /// Rows per batch.
    pub batch_rows: usize,
}

impl LbSource {
    /// `rows` rows in batches of [`DEFAULT_BATCH_ROWS`].
    pub fn new(rows: usize) -> Self {
        LbSource {
            rows,
            batch_rows: DEFAULT_BATCH_ROWS,
        }
    }
}

impl DataSource for LbSource {
    fn datasets(&self, study: &str) -> Result<Vec<DatasetInfo>> {
        if study != STUDY {
            return Err(unknown_study(study));
        }
        Ok(vec![DatasetInfo {
            name: DATASET.to_string(),
            label: Some(DATASET_LABEL.to_string()),
        }])
    }

    fn scan(&self, study: &str, dataset: &str) -> Result<BatchStream> {
        if study != STUDY {
            return Err(unknown_study(study));
        }
        if dataset != DATASET {
            return Err(unknown_dataset(study, dataset));
        }
        let schema = lb_dataset_schema();
        let batches = LbBatches::new(schema.clone(), self.rows, self.batch_rows.max(1))
            .map(|b| b.map_err(trialport_core::error::Error::from));
        Ok(BatchStream::new(schema, batches))
    }
}

/// Process measurements for the benchmark binaries (Linux `/proc`; `None` or zero elsewhere).
pub mod process {
    /// The process's peak resident set size so far (`VmHWM` of `/proc/self/status`), in KiB.
    pub fn peak_rss_kib() -> Option<u64> {
        status_kib("VmHWM:")
    }

    /// The process's current resident set size (`VmRSS`), in KiB.
    pub fn rss_kib() -> Option<u64> {
        status_kib("VmRSS:")
    }

    fn status_kib(key: &str) -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    /// CPU seconds (user + system, every thread) the process has used.
    pub fn cpu_seconds() -> f64 {
        #[cfg(unix)]
        {
            let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
            t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
        }
        #[cfg(not(unix))]
        {
            0.0
        }
    }
}

/// A benchmark directory: the environment variable `var` when set, else `<temp dir>/<leaf>` (the harness's
/// defaults are `BENCH_DATA` = `<tmpdir>/perfdata` and `BENCH_OUT` = `<tmpdir>/perfout`).
pub fn bench_dir(var: &str, leaf: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => std::env::temp_dir().join(leaf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Float64Type;

    #[test]
    fn schema_has_the_twenty_columns_of_gen_lb() {
        let s = lb_schema();
        assert_eq!(s.fields().len(), 20);
        let count = |t: &DataType| s.fields().iter().filter(|f| f.data_type() == t).count();
        assert_eq!(count(&DataType::Utf8), 13);
        assert_eq!(count(&DataType::Float64), 6);
        assert_eq!(
            s.field_with_name("LBDT").unwrap().data_type(),
            &DataType::Date32
        );
        assert!(s.field_with_name("LBSTRESN").unwrap().is_nullable());
    }

    #[test]
    fn rows_do_not_depend_on_the_batch_size() {
        let one: Vec<RecordBatch> = lb_batches(2_000, 2_000).collect();
        let many: Vec<RecordBatch> = lb_batches(2_000, 333).collect();
        assert_eq!(many.len(), 7);
        let joined = arrow::compute::concat_batches(&lb_schema(), &many).unwrap();
        assert_eq!(joined, one[0]);
    }

    #[test]
    fn values_have_the_shape_of_gen_lb() {
        let b = lb_batches(48_000, 48_000).next().unwrap();
        let s = |name: &str| b.column_by_name(name).unwrap().as_string::<i32>().clone();
        let usubjid = s("USUBJID");
        assert_eq!(usubjid.value(0), "CDISCPILOT01-01-701-1001");
        assert_eq!(usubjid.value(480), "CDISCPILOT01-01-702-1002");
        assert_eq!(s("LBTESTCD").value(41), "ALP");
        assert_eq!(s("VISIT").value(41), "SCREENING 2");
        let lbdtc = s("LBDTC").value(0).to_string();
        assert_eq!(lbdtc.len(), 16);
        assert!(
            lbdtc.as_str() >= "2012-06-24" && lbdtc.as_str() < "2014-07-01",
            "{lbdtc}"
        );
        let stresn = b
            .column_by_name("LBSTRESN")
            .unwrap()
            .as_primitive::<Float64Type>();
        let share = stresn.null_count() as f64 / b.num_rows() as f64;
        assert!((0.04..0.06).contains(&share), "{share}");
        let orres = s("LBORRES");
        let nrind = s("LBNRIND");
        for i in 0..b.num_rows() {
            if stresn.is_null(i) {
                assert_eq!(orres.value(i), "");
                assert_eq!(nrind.value(i), "");
            } else {
                assert_eq!(orres.value(i).parse::<f64>().unwrap(), stresn.value(i));
                assert!(["LOW", "NORMAL", "HIGH"].contains(&nrind.value(i)));
            }
        }
        // Decimals follow the test: SPGRAV (index 37) has three.
        let spgrav = (0..b.num_rows())
            .find(|&i| s("LBTESTCD").value(i) == "SPGRAV" && stresn.is_valid(i))
            .unwrap();
        assert_eq!(orres.value(spgrav).split('.').nth(1).unwrap().len(), 3);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(RFST_EPOCH_DAYS), (2012, 7, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn source_offers_lb_of_bench() {
        let src = LbSource::new(1_000);
        assert_eq!(src.datasets(STUDY).unwrap()[0].name, DATASET);
        assert!(src.datasets("X").is_err());
        assert!(src.scan(STUDY, "DM").is_err());
        let stream = src.scan(STUDY, DATASET).unwrap();
        assert_eq!(stream.meta().name, "LB");
        let rows: usize = stream.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 1_000);
    }
}
