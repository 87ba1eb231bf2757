//! De-identification through the engine: generated study data holding each of the 18 HIPAA Safe Harbor identifier
//! kinds, exported under each profile, read back and checked value by value.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use arrow::array::{ArrayRef, BinaryArray, Date32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, NaiveDate};
use common::registry;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use trialport_core::audit::RecordingHook;
use trialport_core::clock::FixedClock;
use trialport_core::deid::{DeidKey, Deidentify};
use trialport_core::engine::Engine;
use trialport_core::job::{Job, JobState};
use trialport_core::meta::{ColumnMeta, DatasetMeta, PrivacyClass};
use trialport_core::request::{DatasetSelection, ExportRequest};
use trialport_core::signature::{Meaning, SignatureRequest, SigningSettings};
use trialport_core::source::MemorySource;
use uuid::Uuid;

const WAIT: Option<Duration> = Some(Duration::from_secs(30));
const SUBJECTS: usize = 120;
/// The admin's signing password: an export of identifiable data needs an e-signature.
const PASSWORD: &str = "correct horse battery";

/// The 17 restricted prefixes of the HHS guidance (2000 Census), typed in from the guidance.
const RESTRICTED: [&str; 17] = [
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
    "879", "884", "890", "893",
];

/// One DM column: name, class, Safe Harbor item, type.
const DM_COLUMNS: [(&str, PrivacyClass, &str); 28] = [
    ("USUBJID", PrivacyClass::SubjectId, "R subject id"),
    ("SUBJID", PrivacyClass::SubjectId, "R subject id (number)"),
    ("NAME", PrivacyClass::DirectIdentifier, "A names"),
    ("STREET", PrivacyClass::DirectIdentifier, "B street address"),
    ("CITY", PrivacyClass::DirectIdentifier, "B city"),
    ("ZIP", PrivacyClass::Zip, "B ZIP code"),
    ("BRTHDTC", PrivacyClass::Date, "C birth date"),
    ("RFSTDT", PrivacyClass::Date, "C admission date"),
    ("DTHDTC", PrivacyClass::Date, "C death date"),
    ("AGE", PrivacyClass::Age, "C age"),
    ("PHONE", PrivacyClass::DirectIdentifier, "D telephone"),
    ("FAX", PrivacyClass::DirectIdentifier, "E fax"),
    ("EMAIL", PrivacyClass::DirectIdentifier, "F email"),
    ("SSN", PrivacyClass::DirectIdentifier, "G SSN"),
    (
        "MRN",
        PrivacyClass::DirectIdentifier,
        "H medical record number",
    ),
    (
        "HPBN",
        PrivacyClass::DirectIdentifier,
        "I health plan beneficiary number",
    ),
    (
        "ACCOUNT",
        PrivacyClass::DirectIdentifier,
        "J account number",
    ),
    (
        "LICENSE",
        PrivacyClass::DirectIdentifier,
        "K license number",
    ),
    ("VEHICLE", PrivacyClass::DirectIdentifier, "L license plate"),
    ("DEVICE", PrivacyClass::DirectIdentifier, "M device serial"),
    ("URL", PrivacyClass::DirectIdentifier, "N URL"),
    ("IP", PrivacyClass::DirectIdentifier, "O IP address"),
    ("FINGER", PrivacyClass::DirectIdentifier, "P biometric"),
    ("PHOTO", PrivacyClass::DirectIdentifier, "Q photograph"),
    (
        "BADGE",
        PrivacyClass::DirectIdentifier,
        "R other unique code",
    ),
    ("COMMENT", PrivacyClass::FreeText, "free text"),
    ("SEX", PrivacyClass::None, "not identifying"),
    ("ARM", PrivacyClass::None, "not identifying"),
];

fn epoch_days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
}

/// The generated subject `i`: every value derives from `i`, so tests know each row's original.
struct Subject {
    usubjid: String,
    subjid: i64,
    zip: String,
    birth: NaiveDate,
    start: NaiveDate,
    death: Option<NaiveDate>,
    age: i64,
}

fn subject(i: usize) -> Subject {
    let zip = if i < RESTRICTED.len() {
        format!("{}{:02}", RESTRICTED[i], i % 100)
    } else if i.is_multiple_of(3) {
        format!("{:05}-{:04}", 10_000 + i * 37, i)
    } else {
        format!("{:05}", 10_000 + i * 37)
    };
    let start = NaiveDate::from_ymd_opt(2021, 1, 1).unwrap() + chrono::Duration::days(i as i64 * 2);
    let birth = NaiveDate::from_ymd_opt(
        1925 + (i % 70) as i32,
        1 + (i % 12) as u32,
        1 + (i % 28) as u32,
    )
    .unwrap();
    Subject {
        usubjid: format!("S1-{i:04}"),
        subjid: 1000 + i as i64,
        zip,
        birth,
        start,
        death: i
            .is_multiple_of(10)
            .then(|| start + chrono::Duration::days(200)),
        // 80 to 100: both sides of 90.
        age: 80 + (i % 21) as i64,
    }
}

fn direct_value(col: &str, i: usize) -> String {
    match col {
        "NAME" => format!("Patient Name{i:04}"),
        "STREET" => format!("{i} Elm Street"),
        "CITY" => format!("Springfield{i:04}"),
        "PHONE" => format!("555-01{i:04}"),
        "FAX" => format!("555-02{i:04}"),
        "EMAIL" => format!("person{i:04}@example.org"),
        "SSN" => format!("900-{:02}-{i:04}", i % 100),
        "MRN" => format!("MRN{i:07}"),
        "HPBN" => format!("HPB{i:08}"),
        "ACCOUNT" => format!("ACCT{i:08}"),
        "LICENSE" => format!("LIC{i:06}"),
        "VEHICLE" => format!("PLATE{i:04}"),
        "DEVICE" => format!("DEV-SN-{i:06}"),
        "URL" => format!("https://example.org/p/{i:04}"),
        "IP" => format!("10.1.{}.{}", i / 250, i % 250),
        "BADGE" => format!("BADGE{i:05}"),
        "COMMENT" => format!("Seen by Dr Who{i:04} at home"),
        _ => unreachable!(),
    }
}

fn dm() -> (SchemaRef, RecordBatch) {
    let subjects: Vec<Subject> = (0..SUBJECTS).map(subject).collect();
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    let text = |f: &dyn Fn(usize, &Subject) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(
            subjects
                .iter()
                .enumerate()
                .map(|(i, s)| f(i, s))
                .collect::<Vec<_>>(),
        ))
    };
    for (name, _, _) in DM_COLUMNS {
        let (ty, array): (DataType, ArrayRef) = match name {
            "USUBJID" => (DataType::Utf8, text(&|_, s| Some(s.usubjid.clone()))),
            "SUBJID" => (
                DataType::Int64,
                Arc::new(Int64Array::from(
                    subjects.iter().map(|s| s.subjid).collect::<Vec<_>>(),
                )),
            ),
            "ZIP" => (DataType::Utf8, text(&|_, s| Some(s.zip.clone()))),
            "BRTHDTC" => (DataType::Utf8, text(&|_, s| Some(s.birth.to_string()))),
            "RFSTDT" => (
                DataType::Date32,
                Arc::new(Date32Array::from(
                    subjects
                        .iter()
                        .map(|s| epoch_days(s.start))
                        .collect::<Vec<_>>(),
                )),
            ),
            "DTHDTC" => (
                DataType::Utf8,
                text(&|_, s| s.death.map(|d| format!("{d}T10:30"))),
            ),
            "AGE" => (
                DataType::Int64,
                Arc::new(Int64Array::from(
                    subjects.iter().map(|s| s.age).collect::<Vec<_>>(),
                )),
            ),
            "FINGER" | "PHOTO" => (
                DataType::Binary,
                Arc::new(BinaryArray::from_iter_values(
                    (0..SUBJECTS).map(|i| format!("{name}-bytes-{i}").into_bytes()),
                )),
            ),
            "SEX" => (
                DataType::Utf8,
                text(&|i, _| Some(if i % 2 == 0 { "F" } else { "M" }.into())),
            ),
            "ARM" => (DataType::Utf8, text(&|i, _| Some(format!("ARM{}", i % 3)))),
            other => (DataType::Utf8, text(&|i, _| Some(direct_value(other, i)))),
        };
        fields.push(Field::new(name, ty, true));
        arrays.push(array);
    }
    let meta = DatasetMeta {
        name: "DM".into(),
        columns: DM_COLUMNS
            .iter()
            .map(|(name, privacy, label)| ColumnMeta {
                name: name.to_string(),
                label: Some(label.to_string()),
                privacy: *privacy,
                ..ColumnMeta::default()
            })
            .collect(),
        ..DatasetMeta::default()
    };
    let schema = meta.apply_to(&Schema::new(fields)).unwrap();
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    (schema, batch)
}

/// AE: three events per subject, dates after the subject's start, with free text.
fn ae_row(r: usize) -> (usize, NaiveDate) {
    let i = (r * 7) % SUBJECTS;
    (i, subject(i).start + chrono::Duration::days(10 + r as i64))
}

fn ae() -> (SchemaRef, RecordBatch) {
    let rows: Vec<(usize, NaiveDate)> = (0..SUBJECTS * 3).map(ae_row).collect();
    let meta = DatasetMeta {
        name: "AE".into(),
        columns: vec![
            ColumnMeta {
                name: "USUBJID".into(),
                privacy: PrivacyClass::SubjectId,
                ..ColumnMeta::default()
            },
            ColumnMeta {
                name: "AESTDTC".into(),
                privacy: PrivacyClass::Date,
                ..ColumnMeta::default()
            },
            ColumnMeta {
                name: "AECOMM".into(),
                privacy: PrivacyClass::FreeText,
                ..ColumnMeta::default()
            },
        ],
        ..DatasetMeta::default()
    };
    let schema = meta
        .apply_to(&Schema::new(vec![
            Field::new("USUBJID", DataType::Utf8, false),
            Field::new("AESTDTC", DataType::Utf8, true),
            Field::new("AETERM", DataType::Utf8, true),
            Field::new("AECOMM", DataType::Utf8, true),
        ]))
        .unwrap();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|(i, _)| subject(*i).usubjid)
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|(_, d)| d.to_string()).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(vec!["HEADACHE"; rows.len()])),
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|(i, _)| format!("called Patient Name{i:04} at home"))
                    .collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    (schema, batch)
}

fn source() -> Arc<MemorySource> {
    let s = MemorySource::new();
    let (schema, batch) = dm();
    // Two batches, so that the state across batches is exercised.
    s.add(
        "S1",
        "DM",
        schema,
        vec![batch.slice(0, 50), batch.slice(50, SUBJECTS - 50)],
    )
    .unwrap();
    let (schema, batch) = ae();
    s.add("S1", "AE", schema, vec![batch]).unwrap();
    Arc::new(s)
}

struct Setup {
    engine: Engine,
    admin: String,
    audit: Arc<RecordingHook>,
}

fn setup(key: Option<[u8; 32]>) -> Setup {
    let audit = Arc::new(RecordingHook::new());
    let created = chrono::DateTime::parse_from_rfc3339("2025-06-01T09:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut b = Engine::builder()
        .formats(registry())
        .source(source())
        .clock(Arc::new(FixedClock::new(created)))
        .audit_hook(audit.clone())
        .signing_settings(SigningSettings {
            pbkdf2_iterations: 1000,
            max_failed_attempts: 5,
        })
        .workers(1);
    if let Some(k) = key {
        b = b.deid_key(DeidKey::from_bytes(k));
    }
    let engine = b.build().unwrap();
    let admin = format!(
        "ApiKey {}",
        engine.create_initial_admin_key("acme").unwrap()
    );
    engine
        .session(&admin)
        .set_signing_password(PASSWORD, None)
        .unwrap();
    Setup {
        engine,
        admin,
        audit,
    }
}

fn request(datasets: &[&str], deidentify: Option<&str>, identifiable: bool) -> ExportRequest {
    ExportRequest {
        deidentify: deidentify.map(Deidentify::from_list),
        identifiable,
        signature: identifiable.then(signature),
        ..ExportRequest::data("S1", datasets, "lines")
    }
}

fn signature() -> SignatureRequest {
    SignatureRequest::new(Meaning::Approval, PASSWORD)
}

fn run(s: &Setup, req: ExportRequest) -> Job {
    let job = s.engine.export_data(&s.admin, req).unwrap();
    let done = s.engine.wait(&s.admin, job.id, WAIT).unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    done
}

fn artifact(s: &Setup, job: Uuid, name: &str) -> Vec<u8> {
    let mut d = s.engine.download(&s.admin, job, Some(name)).unwrap();
    let mut buf = Vec::new();
    d.reader.read_to_end(&mut buf).unwrap();
    buf
}

/// A `lines` artifact as rows of column → cell.
fn table(bytes: &[u8]) -> Vec<BTreeMap<String, String>> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('|').collect();
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split('|').collect();
            assert_eq!(cells.len(), header.len(), "{l}");
            header
                .iter()
                .zip(cells)
                .map(|(h, c)| (h.to_string(), c.to_string()))
                .collect()
        })
        .collect()
}

fn columns(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    text.lines()
        .next()
        .unwrap()
        .split('|')
        .map(str::to_string)
        .collect()
}

fn manifest(s: &Setup, job: Uuid) -> Value {
    serde_json::from_slice(&artifact(s, job, "manifest.json")).unwrap()
}

/// Every original identifying value of the generated data (direct identifiers, free text, subject ids).
fn identifying_values() -> Vec<String> {
    let mut v = Vec::new();
    for i in 0..SUBJECTS {
        for (name, privacy, _) in DM_COLUMNS {
            if matches!(
                privacy,
                PrivacyClass::DirectIdentifier | PrivacyClass::FreeText
            ) && !matches!(name, "FINGER" | "PHOTO")
            {
                v.push(direct_value(name, i));
            }
        }
        v.push(format!("{name}-bytes-{i}", name = "FINGER"));
        v.push(format!("{name}-bytes-{i}", name = "PHOTO"));
        v.push(subject(i).usubjid);
    }
    v
}

#[test]
fn safe_harbor_removes_or_generalizes_each_of_the_18_identifiers() {
    let s = setup(None);
    let job = run(&s, request(&["DM", "AE"], Some("safe-harbor"), false));
    let dm_bytes = artifact(&s, job.id, "dm.txt");
    let ae_bytes = artifact(&s, job.id, "ae.txt");
    assert_eq!(
        columns(&dm_bytes),
        ["USUBJID", "SUBJID", "ZIP", "BRTHDTC", "RFSTDT", "DTHDTC", "AGE", "SEX", "ARM"]
    );
    assert_eq!(columns(&ae_bytes), ["USUBJID", "AESTDTC", "AETERM"]);
    // No identifying value is left anywhere, not even inside another value.
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&dm_bytes),
        String::from_utf8_lossy(&ae_bytes)
    );
    for v in identifying_values() {
        assert!(!all.contains(&v), "{v} leaked");
    }
    let dm = table(&dm_bytes);
    assert_eq!(dm.len(), SUBJECTS);
    let mut codes = BTreeMap::new();
    let mut seen_codes = BTreeSet::new();
    let mut restricted_seen = 0;
    for (i, row) in dm.iter().enumerate() {
        let subj = subject(i);
        let code = &row["USUBJID"];
        assert!(code.len() == 12 && code.starts_with("SH"), "{code}");
        assert!(code[2..].bytes().all(|b| b.is_ascii_digit()));
        assert!(
            seen_codes.insert(code.clone()),
            "codes are unique per subject"
        );
        codes.insert(subj.usubjid.clone(), code.clone());
        // The numeric subject id is coded too.
        assert!(row["SUBJID"].starts_with("SH") && row["SUBJID"].len() == 12);
        assert_ne!(row["SUBJID"], subj.subjid.to_string());
        // ZIP: first three digits, 000 for each restricted prefix.
        let prefix = &subj.zip[..3];
        let expected = if RESTRICTED.contains(&prefix) {
            restricted_seen += 1;
            "000"
        } else {
            prefix
        };
        assert_eq!(row["ZIP"], expected, "{}", subj.zip);
        // Dates: the year only; a birth year implying 90+ at 2025 is suppressed.
        let by = subj.birth.year();
        let expected_birth = if 2025 - by >= 90 {
            String::new()
        } else {
            by.to_string()
        };
        assert_eq!(row["BRTHDTC"], expected_birth, "born {}", subj.birth);
        assert_eq!(row["RFSTDT"], subj.start.year().to_string());
        assert_eq!(
            row["DTHDTC"],
            subj.death.map(|d| d.year().to_string()).unwrap_or_default()
        );
        // Ages over 89 become 90+; 89 and under stay.
        let age = if subj.age >= 90 {
            "90+".to_string()
        } else {
            subj.age.to_string()
        };
        assert_eq!(row["AGE"], age);
    }
    assert_eq!(restricted_seen, 17);
    assert!(dm.iter().any(|r| r["AGE"] == "89") && dm.iter().any(|r| r["AGE"] == "90+"));
    assert!(
        dm.iter().any(|r| r["BRTHDTC"].is_empty()) && dm.iter().any(|r| !r["BRTHDTC"].is_empty())
    );
    // The same subject has the same code in AE.
    for (r, row) in table(&ae_bytes).iter().enumerate() {
        let (i, date) = ae_row(r);
        assert_eq!(row["USUBJID"], codes[&subject(i).usubjid]);
        assert_eq!(row["AESTDTC"], date.year().to_string());
    }
    // The manifest records the policy, the list version and what happened to each column.
    let m = manifest(&s, job.id);
    let d = &m["deidentification"];
    assert_eq!(d["profiles"], json!(["safe-harbor"]));
    assert_eq!(d["restricted_zip3"]["version"], "hhs-2000-census");
    assert_eq!(d["reference_year"], 2025);
    assert!(d.get("key_id").is_none());
    let dm_plan = &d["datasets"][0];
    assert_eq!(dm_plan["dataset"], "DM");
    let action = |col: &str| {
        dm_plan["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == col)
            .unwrap()["action"]
            .clone()
    };
    assert_eq!(action("USUBJID"), "surrogate");
    assert_eq!(action("BRTHDTC"), "birth_year");
    assert_eq!(action("PHOTO"), "dropped");
    assert_eq!(action("ZIP"), "zip3");
    // The audit trail: the request and the finished job record the policy, never a value.
    let events = s.audit.events();
    let requested = events.iter().find(|e| e.action == "export_data").unwrap();
    assert_eq!(
        requested.details["deidentification"],
        json!({"profiles": ["safe-harbor"], "identifiable": false})
    );
    let finished = events.iter().find(|e| e.action == "job.succeeded").unwrap();
    assert_eq!(finished.details["deidentification"], *d);
    let trail = serde_json::to_string(&events).unwrap();
    for v in identifying_values() {
        assert!(!trail.contains(&v));
    }
}

#[test]
fn each_profile_alone_does_its_part_and_only_its_part() {
    let key = [9u8; 32];
    let s = setup(Some(key));
    // drop-free-text: free text gone, everything else as it was.
    let job = run(&s, request(&["DM", "AE"], Some("drop-free-text"), true));
    let dm = artifact(&s, job.id, "dm.txt");
    assert!(!columns(&dm).contains(&"COMMENT".to_string()));
    assert_eq!(columns(&dm).len(), DM_COLUMNS.len() - 1);
    assert_eq!(table(&dm)[3]["NAME"], direct_value("NAME", 3));
    assert_eq!(
        columns(&artifact(&s, job.id, "ae.txt")),
        ["USUBJID", "AESTDTC", "AETERM"]
    );
    // pseudonymize: subject ids only.
    let job = run(&s, request(&["DM"], Some("pseudonymize"), true));
    let rows = table(&artifact(&s, job.id, "dm.txt"));
    for (i, row) in rows.iter().enumerate() {
        let p = &row["USUBJID"];
        assert!(p.len() == 34 && p.starts_with("PS"), "{p}");
        assert!(p[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(p, &subject(i).usubjid);
        assert_eq!(row["AGE"], subject(i).age.to_string());
        assert_eq!(row["ZIP"], subject(i).zip);
        assert_eq!(row["EMAIL"], direct_value("EMAIL", i));
    }
    let m = manifest(&s, job.id);
    assert_eq!(
        m["deidentification"]["key_id"],
        DeidKey::from_bytes(key).id()
    );
    // The key itself is nowhere: not in the manifest, not in the audit trail.
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!m.to_string().contains(&hex));
    assert!(!serde_json::to_string(&s.audit.events())
        .unwrap()
        .contains(&hex));
    // date-shift: dates move, nothing else changes.
    let job = run(&s, request(&["DM"], Some("date-shift"), true));
    let rows = table(&artifact(&s, job.id, "dm.txt"));
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["USUBJID"], subject(i).usubjid);
        let shifted = NaiveDate::parse_from_str(&row["BRTHDTC"], "%Y-%m-%d").unwrap();
        let offset = (shifted - subject(i).birth).num_days();
        assert!((1..=365).contains(&offset.abs()), "{offset}");
        let start = NaiveDate::parse_from_str(&row["RFSTDT"], "%Y-%m-%d").unwrap();
        assert_eq!((start - subject(i).start).num_days(), offset);
    }
}

/// Each subject's date offset in a date-shifted DM and AE: (subject → offset), checking that every date of a
/// subject moved alike.
fn offsets(s: &Setup, job: Uuid) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    let mut put = |pseudonym: &str, offset: i64| {
        assert!((1..=365).contains(&offset.abs()), "{offset}");
        match out.get(pseudonym) {
            Some(o) => assert_eq!(*o, offset, "one offset per subject"),
            None => {
                out.insert(pseudonym.to_string(), offset);
            }
        }
    };
    for (i, row) in table(&artifact(s, job, "dm.txt")).iter().enumerate() {
        let subj = subject(i);
        let birth = NaiveDate::parse_from_str(&row["BRTHDTC"], "%Y-%m-%d").unwrap();
        put(&row["USUBJID"], (birth - subj.birth).num_days());
        let start = NaiveDate::parse_from_str(&row["RFSTDT"], "%Y-%m-%d").unwrap();
        put(&row["USUBJID"], (start - subj.start).num_days());
        if let Some(death) = subj.death {
            let shifted = NaiveDate::parse_from_str(&row["DTHDTC"][..10], "%Y-%m-%d").unwrap();
            assert_eq!(&row["DTHDTC"][10..], "T10:30", "the time is kept");
            put(&row["USUBJID"], (shifted - death).num_days());
        }
    }
    for (r, row) in table(&artifact(s, job, "ae.txt")).iter().enumerate() {
        let (_, date) = ae_row(r);
        let shifted = NaiveDate::parse_from_str(&row["AESTDTC"], "%Y-%m-%d").unwrap();
        put(&row["USUBJID"], (shifted - date).num_days());
    }
    out
}

#[test]
fn pseudonyms_and_shifts_are_stable_with_one_key_and_differ_with_another() {
    let profile = Some("pseudonymize,date-shift,drop-free-text");
    let drop = |mut r: ExportRequest| {
        r.deidentify.as_mut().unwrap().drop = DM_COLUMNS
            .iter()
            .filter(|(_, p, _)| matches!(p, PrivacyClass::DirectIdentifier))
            .map(|(n, _, _)| n.to_string())
            .chain(["AGE".to_string(), "ZIP".to_string()])
            .collect();
        r
    };
    let a = setup(Some([1; 32]));
    let first = run(&a, drop(request(&["DM", "AE"], profile, false)));
    let second = run(&a, drop(request(&["AE", "DM"], profile, false)));
    let other = setup(Some([2; 32]));
    let third = run(&other, drop(request(&["DM", "AE"], profile, false)));
    // Another engine with the same key gives the same result: nothing depends on the process.
    let same_key = setup(Some([1; 32]));
    let fourth = run(&same_key, drop(request(&["DM", "AE"], profile, false)));

    let o1 = offsets(&a, first.id);
    let o2 = offsets(&a, second.id);
    let o3 = offsets(&other, third.id);
    let o4 = offsets(&same_key, fourth.id);
    assert_eq!(o1.len(), SUBJECTS);
    assert_eq!(o1, o2, "same key: same pseudonyms and shifts");
    assert_eq!(o1, o4);
    // Another key: every pseudonym differs, and the shifts differ for most subjects (1 in 730 may match).
    let p1: BTreeSet<&String> = o1.keys().collect();
    let p3: BTreeSet<&String> = o3.keys().collect();
    assert!(p1.is_disjoint(&p3));
    let shifts1: Vec<i64> = table(&artifact(&a, first.id, "dm.txt"))
        .iter()
        .map(|r| o1[&r["USUBJID"]])
        .collect();
    let shifts3: Vec<i64> = table(&artifact(&other, third.id, "dm.txt"))
        .iter()
        .map(|r| o3[&r["USUBJID"]])
        .collect();
    let same = shifts1.iter().zip(&shifts3).filter(|(x, y)| x == y).count();
    assert!(
        same < 5,
        "{same} of {SUBJECTS} shifts equal under another key"
    );
    // Shifts go both ways.
    assert!(shifts1.iter().any(|o| *o < 0) && shifts1.iter().any(|o| *o > 0));
}

#[test]
fn identifying_exports_need_a_profile_or_the_flag() {
    let s = setup(None);
    let e = s
        .engine
        .export_data(&s.admin, request(&["DM"], None, false))
        .unwrap_err();
    assert_eq!(
        (e.code().as_str(), e.reason()),
        ("EXP002", "identifiable_data")
    );
    assert_eq!(e.field(), Some("deidentify"));
    let cols = e.details()["columns"].as_array().unwrap();
    assert_eq!(cols.len(), DM_COLUMNS.len() - 2);
    assert!(
        cols.contains(&json!({"dataset": "DM", "column": "SSN", "privacy": "direct_identifier"}))
    );
    // The refusal is audited as failed, without values.
    let last = s.audit.events().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.details["reason"].as_str()),
        ("export_data", Some("identifiable_data"))
    );
    // A profile that leaves identifiers (drop-free-text keeps AE's subject ids and dates) is refused too;
    // keeping only what identifies no one is enough.
    let e = s
        .engine
        .export_data(&s.admin, request(&["AE"], Some("drop-free-text"), false))
        .unwrap_err();
    assert_eq!(e.details()["columns"].as_array().unwrap().len(), 2);
    let mut only_term = request(&["AE"], None, false);
    only_term.deidentify = Some(serde_json::from_str(r#"{"keep":["AETERM"]}"#).unwrap());
    let job = run(&s, only_term);
    assert_eq!(columns(&artifact(&s, job.id, "ae.txt")), ["AETERM"]);
    // Bulk exports are checked the same way.
    let bulk = ExportRequest::bulk("S1", &["AE"], "lines");
    let e = s.engine.bulk_export(&s.admin, bulk.clone()).unwrap_err();
    assert_eq!(e.reason(), "identifiable_data");
    // With the flag the data leaves as it is, and the manifest says so.
    let job = run(&s, request(&["DM"], None, true));
    let rows = table(&artifact(&s, job.id, "dm.txt"));
    assert_eq!(rows[5]["SSN"], direct_value("SSN", 5));
    let m = manifest(&s, job.id);
    assert_eq!(m["deidentification"]["identifiable"], true);
    assert_eq!(m["deidentification"]["profiles"], json!([]));
    let bulk_job = s
        .engine
        .bulk_export(
            &s.admin,
            ExportRequest {
                identifiable: true,
                signature: Some(signature()),
                ..bulk
            },
        )
        .unwrap();
    let done = s.engine.wait(&s.admin, bulk_job.id, WAIT).unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
}

#[test]
fn bad_policies_are_refused_before_a_job_exists() {
    let s = setup(None);
    let err = |req: ExportRequest| s.engine.export_data(&s.admin, req).unwrap_err();
    let e = err(request(&["DM"], Some("safe-harbour"), false));
    assert_eq!(
        (e.code().as_str(), e.reason()),
        ("EXP002", "unknown_profile")
    );
    let e = err(request(&["DM"], Some("safe-harbor,pseudonymize"), false));
    assert_eq!(e.reason(), "conflicting_profiles");
    // Pseudonyms and shifts need a key, which this engine lacks.
    let e = err(request(&["DM"], Some("pseudonymize"), true));
    assert_eq!(
        (e.code().as_str(), e.reason()),
        ("EXP005", "key_unavailable")
    );
    // A drop list naming no column of the export.
    let mut r = request(&["AE"], Some("safe-harbor"), false);
    r.deidentify.as_mut().unwrap().drop = vec!["SSN".into()];
    let e = err(r);
    assert_eq!(
        (e.reason(), e.field()),
        ("unknown_column", Some("deidentify.drop"))
    );
    // Dates to shift in a selection without its subject id column.
    let k = setup(Some([4; 32]));
    let mut r = request(&["AE"], Some("date-shift,drop-free-text"), true);
    *r.datasets_mut().unwrap() = vec![DatasetSelection::Selected {
        name: "AE".into(),
        columns: Some(vec!["AESTDTC".into(), "AETERM".into()]),
        filters: vec![],
    }];
    let e = k.engine.export_data(&k.admin, r).unwrap_err();
    assert_eq!(
        (e.reason(), e.details()["dataset"].as_str()),
        ("date_shift_needs_subject_id", Some("AE"))
    );
    // A JSON request in each accepted form.
    for form in [
        r#""safe-harbor""#,
        r#"["safe-harbor"]"#,
        r#"{"profiles": ["safe-harbor"], "drop": ["SEX"]}"#,
    ] {
        let text = format!(
            r#"{{"study": "S1", "datasets": ["DM"], "format": "lines", "deidentify": {form}}}"#
        );
        let req = ExportRequest::from_json(trialport_core::job::JobKind::Data, &text).unwrap();
        s.engine.export_data(&s.admin, req).unwrap();
    }
    let text =
        r#"{"study": "S1", "datasets": ["DM"], "format": "lines", "deidentify": {"profile": "x"}}"#;
    let e = ExportRequest::from_json(trialport_core::job::JobKind::Data, text).unwrap_err();
    assert_eq!(e.reason(), "invalid_request");
}

#[test]
fn a_bulk_package_shares_one_code_per_subject_across_its_datasets() {
    let s = setup(None);
    let job = s
        .engine
        .bulk_export(
            &s.admin,
            ExportRequest {
                deidentify: Some(Deidentify::from_list("safe-harbor")),
                ..ExportRequest::bulk("S1", &[], "lines")
            },
        )
        .unwrap();
    let done = s.engine.wait(&s.admin, job.id, WAIT).unwrap();
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    let bytes = artifact(&s, job.id, "s1_package.zip");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut read = |name: &str| {
        let mut v = Vec::new();
        zip.by_name(name).unwrap().read_to_end(&mut v).unwrap();
        v
    };
    let dm = table(&read("S1/dm.txt"));
    let ae = table(&read("S1/ae.txt"));
    let inner: Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    for (r, row) in ae.iter().enumerate() {
        let (i, _) = ae_row(r);
        assert_eq!(row["USUBJID"], dm[i]["USUBJID"]);
    }
    assert_eq!(
        inner["deidentification"]["profiles"],
        json!(["safe-harbor"])
    );
    let names: Vec<&str> = inner["deidentification"]["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dataset"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["AE", "DM"]);
    assert_eq!(
        manifest(&s, job.id)["deidentification"],
        inner["deidentification"]
    );
}
