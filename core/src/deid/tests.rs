#![allow(clippy::unwrap_used)]

use super::transform::{offset, pseudonym, shift_text, text_year};
use super::*;
use crate::meta::ColumnMeta;
use arrow::array::{
    ArrayRef, AsArray, Date32Array, Float64Array, Int64Array, StringArray, TimestampSecondArray,
};
use arrow::datatypes::{Date32Type, Float64Type, Int32Type, TimestampSecondType};
use arrow::record_batch::RecordBatch;
use chrono::{NaiveDate, TimeZone, Utc};
use std::sync::Arc;

fn policy(profiles: &str) -> Policy {
    Policy::new(Some(&Deidentify::from_list(profiles)), false).unwrap()
}

fn spec(json: &str) -> Deidentify {
    serde_json::from_str(json).unwrap()
}

fn reference() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap()
}

fn col(name: &str, privacy: PrivacyClass) -> ColumnMeta {
    ColumnMeta {
        name: name.into(),
        privacy,
        ..ColumnMeta::default()
    }
}

fn days(y: i32, m: u32, d: u32) -> i32 {
    (NaiveDate::from_ymd_opt(y, m, d).unwrap() - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
        .num_days() as i32
}

/// A dataset with a column of each class, two subjects over three rows.
fn dm() -> (Arc<Schema>, DatasetMeta, RecordBatch) {
    let schema = Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("NAME", DataType::Utf8, true),
        Field::new("BRTHDTC", DataType::Utf8, true),
        Field::new("RFSTDT", DataType::Date32, true),
        Field::new("AGE", DataType::Int64, true),
        Field::new("ZIP", DataType::Utf8, true),
        Field::new("COMMENT", DataType::Utf8, true),
        Field::new("SEX", DataType::Utf8, true),
    ]);
    let meta = DatasetMeta {
        name: "DM".into(),
        columns: vec![
            ColumnMeta {
                length: Some(8),
                display_format: Some("$8.".into()),
                ..col("USUBJID", PrivacyClass::SubjectId)
            },
            col("NAME", PrivacyClass::DirectIdentifier),
            col("BRTHDTC", PrivacyClass::Date),
            col("RFSTDT", PrivacyClass::Date),
            col("AGE", PrivacyClass::Age),
            col("ZIP", PrivacyClass::Zip),
            col("COMMENT", PrivacyClass::FreeText),
        ],
        ..DatasetMeta::default()
    };
    let schema = meta.apply_to(&schema).unwrap();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["S1-001", "S1-002", "S1-001"])),
        Arc::new(StringArray::from(vec![
            Some("Ann Lee"),
            Some("Bo Park"),
            None,
        ])),
        Arc::new(StringArray::from(vec![
            Some("1935-03-04"),
            Some("1936-12-31"),
            Some("1980-07"),
        ])),
        Arc::new(Date32Array::from(vec![
            Some(days(2021, 1, 1)),
            Some(days(2021, 12, 31)),
            None,
        ])),
        Arc::new(Int64Array::from(vec![Some(89), Some(90), Some(120)])),
        Arc::new(StringArray::from(vec![
            Some("03601"),
            Some("02134-1234"),
            Some("SW1A 1AA"),
        ])),
        Arc::new(StringArray::from(vec!["call me at 555-0100", "n/a", "x"])),
        Arc::new(StringArray::from(vec!["F", "M", "F"])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    (schema, meta, batch)
}

fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    b.column_by_name(name)
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

#[test]
fn request_forms_parse_to_the_same_spec_and_serialize_as_an_object() {
    let a = spec(r#""safe-harbor, date-shift""#);
    let b = spec(r#"["safe-harbor","date-shift"]"#);
    let c = spec(r#"{"profiles":["safe-harbor","date-shift"]}"#);
    assert_eq!((&a, &b), (&c, &c));
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        json!({"profiles": ["safe-harbor", "date-shift"]})
    );
    let d = spec(r#"{"profiles":[],"drop":["SITEID"],"keep":["AGE"]}"#);
    assert_eq!(
        serde_json::to_value(&d).unwrap(),
        json!({"profiles": [], "drop": ["SITEID"], "keep": ["AGE"]})
    );
    assert!(serde_json::from_str::<Deidentify>(r#"{"profile":["x"]}"#).is_err());
    assert!(serde_json::from_str::<Deidentify>("12").is_err());
}

#[test]
fn policies_are_checked() {
    let p = policy("date-shift,safe-harbor,safe-harbor");
    assert_eq!(p.profiles(), [Profile::SafeHarbor, Profile::DateShift]);
    assert!(p.needs_key() && !p.identifiable() && !p.is_empty());
    assert!(Policy::new(None, false).unwrap().is_empty());
    let e = Policy::new(Some(&Deidentify::from_list("safe-harbour")), false).unwrap_err();
    assert_eq!(
        (e.code().as_str(), e.reason()),
        ("EXP002", "unknown_profile")
    );
    assert_eq!(e.field(), Some("deidentify"));
    assert_eq!(e.details()["known"].as_array().unwrap().len(), 4);
    let e = Policy::new(
        Some(&Deidentify::from_list("safe-harbor,pseudonymize")),
        false,
    );
    assert_eq!(e.unwrap_err().reason(), "conflicting_profiles");
    let e = Policy::new(Some(&spec(r#"{"drop":["age"],"keep":["AGE"]}"#)), false);
    assert_eq!(e.unwrap_err().reason(), "conflicting_columns");
    let e = Policy::new(Some(&spec(r#"{"drop":[""]}"#)), false).unwrap_err();
    assert_eq!(
        (e.reason(), e.field()),
        ("invalid_column", Some("deidentify.drop"))
    );
}

#[test]
fn iso_dates_give_their_year_and_shift_by_days() {
    for (s, y) in [
        ("2021", Some(2021)),
        ("2021-03", Some(2021)),
        ("2021-03-04", Some(2021)),
        (" 2021-03-04T10:15:30 ", Some(2021)),
        ("2021-03-04T10:15+01:00", Some(2021)),
        ("2021---04", Some(2021)),
        ("2021-13", None),
        ("2021-02-30", None),
        ("2021-03-04 10:15", None),
        ("04MAR2021", None),
        ("03/04/2021", None),
        ("202", None),
        ("", None),
        ("20210304", None),
    ] {
        assert_eq!(text_year(s), y, "{s}");
    }
    assert_eq!(shift_text("2021-03-04", 30).as_deref(), Some("2021-04-03"));
    assert_eq!(shift_text("2020-02-28", 1).as_deref(), Some("2020-02-29"));
    assert_eq!(shift_text("2021-01-01", -1).as_deref(), Some("2020-12-31"));
    assert_eq!(
        shift_text("2021-03-04T10:15", -365).as_deref(),
        Some("2020-03-04T10:15")
    );
    for partial in [
        "2021-03",
        "2021",
        "2021---04",
        "2021-03-04 10:15",
        "2021-02-30",
    ] {
        assert_eq!(shift_text(partial, 5), None, "{partial}");
    }
}

#[test]
fn plans_follow_the_class_table() {
    let (schema, meta, _) = dm();
    let actions = |p: &Policy| -> Vec<&'static str> {
        p.plan("DM", &schema, &meta)
            .unwrap()
            .columns
            .iter()
            .map(|c| c.action.as_str())
            .collect()
    };
    assert_eq!(
        actions(&policy("safe-harbor")),
        [
            "surrogate",
            "dropped",
            "birth_year",
            "year",
            "age_90_plus",
            "zip3",
            "dropped",
            "kept"
        ]
    );
    assert_eq!(
        actions(&policy("safe-harbor,date-shift")),
        [
            "surrogate",
            "dropped",
            "shift_then_birth_year",
            "shift_then_year",
            "age_90_plus",
            "zip3",
            "dropped",
            "kept"
        ]
    );
    assert_eq!(
        actions(&policy("pseudonymize,date-shift,drop-free-text")),
        [
            "pseudonym",
            "kept",
            "shift",
            "shift",
            "kept",
            "kept",
            "dropped",
            "kept"
        ]
    );
    assert_eq!(
        actions(&Policy::new(None, false).unwrap()),
        ["kept"; 8].to_vec()
    );
    let listed = Policy::new(
        Some(&spec(
            r#"{"profiles":["safe-harbor"],"keep":["usubjid","AGE","NAME"]}"#,
        )),
        false,
    )
    .unwrap();
    let plan = listed.plan("DM", &schema, &meta).unwrap();
    let reasons: Vec<Option<DropReason>> = plan
        .columns
        .iter()
        .map(|c| match c.action {
            Action::Drop(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(reasons[0], None);
    assert_eq!(
        reasons[1],
        Some(DropReason::DirectIdentifier),
        "keep never exempts"
    );
    assert_eq!(reasons[2], Some(DropReason::NotInKeep));
    assert_eq!(reasons[4], None);
}

#[test]
fn identifying_columns_need_the_flag() {
    let (schema, meta, _) = dm();
    let none = Policy::new(None, false).unwrap();
    let plan = none.plan("DM", &schema, &meta).unwrap();
    let e = none
        .check_identifiable(std::slice::from_ref(&plan))
        .unwrap_err();
    assert_eq!(
        (e.code().as_str(), e.reason()),
        ("EXP002", "identifiable_data")
    );
    let cols = e.details()["columns"].as_array().unwrap();
    assert_eq!(cols.len(), 7);
    assert_eq!(
        cols[0],
        json!({"dataset": "DM", "column": "USUBJID", "privacy": "subject_id"})
    );
    assert!(e.message().contains("DM.NAME"));
    // The flag allows it; a profile that covers every class needs no flag.
    let flagged = Policy::new(None, true).unwrap();
    flagged.check_identifiable(&[plan]).unwrap();
    let sh = policy("safe-harbor");
    sh.check_identifiable(&[sh.plan("DM", &schema, &meta).unwrap()])
        .unwrap();
    // Pseudonyms alone leave names, dates, ages, ZIP codes and free text.
    let ps = policy("pseudonymize");
    let e = ps
        .check_identifiable(&[ps.plan("DM", &schema, &meta).unwrap()])
        .unwrap_err();
    assert_eq!(e.details()["columns"].as_array().unwrap().len(), 6);
    // Dropping what is left is enough.
    let dropped = Policy::new(
        Some(&spec(
            r#"{"profiles":["pseudonymize","date-shift"],"drop":["NAME","AGE","ZIP","COMMENT"]}"#,
        )),
        false,
    )
    .unwrap();
    dropped
        .check_identifiable(&[dropped.plan("DM", &schema, &meta).unwrap()])
        .unwrap();
}

#[test]
fn plans_refuse_what_they_cannot_do() {
    let (schema, meta, _) = dm();
    // Dates to shift need a subject id column.
    let no_subject = Arc::new(schema.project(&[3]).unwrap());
    let e = policy("date-shift")
        .plan("DM", &no_subject, &meta)
        .unwrap_err();
    assert_eq!(e.reason(), "date_shift_needs_subject_id");
    assert_eq!(e.details()["dataset"], "DM");
    policy("safe-harbor")
        .plan("DM", &no_subject, &meta)
        .unwrap();
    // A numeric date needs a SAS date format to be read.
    let numeric = Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("D", DataType::Float64, true),
    ]);
    let mut m = DatasetMeta {
        columns: vec![
            col("USUBJID", PrivacyClass::SubjectId),
            col("D", PrivacyClass::Date),
        ],
        ..DatasetMeta::default()
    };
    let e = policy("safe-harbor").plan("X", &numeric, &m).unwrap_err();
    assert_eq!(
        (e.reason(), e.details()["column"].as_str()),
        ("unsupported_column_type", Some("D"))
    );
    m.columns[1].display_format = Some("TIME8.".into());
    assert!(policy("safe-harbor").plan("X", &numeric, &m).is_err());
    m.columns[1].display_format = Some("yymmdd10.".into());
    policy("safe-harbor").plan("X", &numeric, &m).unwrap();
    // Binary subject ids cannot be coded; dropping everything leaves nothing.
    let binary = Schema::new(vec![Field::new("USUBJID", DataType::Binary, false)]);
    assert!(policy("pseudonymize").plan("X", &binary, &m).is_err());
    let all = Policy::new(Some(&spec(r#"{"drop":["USUBJID"]}"#)), false).unwrap();
    assert_eq!(
        all.plan("X", &binary, &m).unwrap_err().reason(),
        "no_columns_left"
    );
    // Lists must name a column of some dataset.
    let listed = Policy::new(Some(&spec(r#"{"keep":["USUBJID","NOPE"]}"#)), true).unwrap();
    let plans = [listed.plan("DM", &schema, &meta).unwrap()];
    let e = listed.check_columns(&plans).unwrap_err();
    assert_eq!(
        (e.reason(), e.field()),
        ("unknown_column", Some("deidentify.keep"))
    );
}

#[test]
fn safe_harbor_transforms_every_class() {
    let (schema, meta, batch) = dm();
    let d = Deidentifier::new(policy("safe-harbor"), None, "S1", reference()).unwrap();
    let t = d.dataset("DM", &schema, &meta).unwrap();
    let out = t.apply(&batch).unwrap();
    let out_schema = out.schema();
    let names: Vec<&str> = out_schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["USUBJID", "BRTHDTC", "RFSTDT", "AGE", "ZIP", "SEX"]);
    let ids = strings(&out, "USUBJID");
    assert_eq!(ids[0], ids[2]);
    assert_ne!(ids[0], ids[1]);
    for id in ids.iter().flatten() {
        assert!(id.starts_with("SH") && id.len() == 12, "{id}");
        assert!(id[2..].bytes().all(|b| b.is_ascii_digit()));
        assert!(!id.contains("001") || !id.ends_with("001"));
    }
    // 2025 - 1935 = 90: suppressed; 1936 kept; a partial date keeps its year.
    assert_eq!(
        strings(&out, "BRTHDTC"),
        [None, Some("1936".into()), Some("1980".into())]
    );
    let years = out
        .column_by_name("RFSTDT")
        .unwrap()
        .as_primitive::<Int32Type>();
    assert_eq!(
        years.iter().collect::<Vec<_>>(),
        [Some(2021), Some(2021), None]
    );
    assert_eq!(
        strings(&out, "AGE"),
        [Some("89".into()), Some("90+".into()), Some("90+".into())]
    );
    assert_eq!(
        strings(&out, "ZIP"),
        [Some("000".into()), Some("021".into()), None]
    );
    // The metadata follows the values.
    let m = t.meta();
    let usubjid = m.column("USUBJID").unwrap();
    assert_eq!(
        (usubjid.length, usubjid.display_format.as_deref()),
        (Some(12), None)
    );
    assert_eq!(
        m.column("RFSTDT").unwrap().data_type.as_deref(),
        Some("integer")
    );
    assert_eq!(m.column("ZIP").unwrap().length, Some(3));
    assert!(m.column("NAME").is_none());
    assert_eq!(
        DatasetMeta::from_schema(t.schema()).column("USUBJID"),
        Some(usubjid)
    );
    // A second dataset of the same job reuses the codes.
    let ae_schema = Arc::new(Schema::new(vec![Field::new(
        "USUBJID",
        DataType::Utf8,
        false,
    )]));
    let ae_meta = DatasetMeta {
        name: "AE".into(),
        columns: vec![col("USUBJID", PrivacyClass::SubjectId)],
        ..DatasetMeta::default()
    };
    let ae = d.dataset("AE", &ae_schema, &ae_meta).unwrap();
    let ae_batch = RecordBatch::try_new(
        ae_schema.clone(),
        vec![Arc::new(StringArray::from(vec!["S1-002", "S1-001"])) as ArrayRef],
    )
    .unwrap();
    let ae_ids = strings(&ae.apply(&ae_batch).unwrap(), "USUBJID");
    assert_eq!(ae_ids, [ids[1].clone(), ids[0].clone()]);
    // Another export draws other codes.
    let other = Deidentifier::new(policy("safe-harbor"), None, "S1", reference()).unwrap();
    let again = strings(
        &other
            .dataset("DM", &schema, &meta)
            .unwrap()
            .apply(&batch)
            .unwrap(),
        "USUBJID",
    );
    assert_ne!(again[0], ids[0]);
    // The description names the policy, the list version and each column.
    let v = d.describe();
    assert_eq!(v["profiles"], json!(["safe-harbor"]));
    assert_eq!(v["restricted_zip3"]["version"], "hhs-2000-census");
    assert_eq!(v["reference_year"], 2025);
    assert!(v.get("key_id").is_none());
    assert_eq!(v["datasets"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["datasets"][0]["columns"][1],
        json!({"name": "NAME", "privacy": "direct_identifier", "action": "dropped",
            "reason": "direct_identifier"})
    );
}

#[test]
fn pseudonyms_follow_the_documented_construction() {
    let (schema, meta, batch) = dm();
    let key = DeidKey::from_bytes([7; 32]);
    let p = Policy::new(Some(&Deidentify::from_list("pseudonymize")), true).unwrap();
    let d = Deidentifier::new(p.clone(), Some(&key), "S1", reference()).unwrap();
    let out = d
        .dataset("DM", &schema, &meta)
        .unwrap()
        .apply(&batch)
        .unwrap();
    let ids = strings(&out, "USUBJID");
    // HMAC-SHA256(HMAC-SHA256(key, "trialport.deid.pseudonym.v1"), len ‖ "S1" ‖ len ‖ id), first 16 bytes.
    let sub = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7; 32]),
        b"trialport.deid.pseudonym.v1",
    );
    let mut msg = vec![0, 0, 0, 2];
    msg.extend_from_slice(b"S1");
    msg.extend_from_slice(&[0, 0, 0, 6]);
    msg.extend_from_slice(b"S1-001");
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, sub.as_ref()),
        &msg,
    );
    let expected = format!("PS{}", crate::codec::hex(&tag.as_ref()[..16]));
    assert_eq!(ids[0].as_deref(), Some(expected.as_str()));
    assert_eq!(ids[0], ids[2]);
    // Stable with the key, different with another key or study.
    let again = Deidentifier::new(p.clone(), Some(&key), "S1", reference()).unwrap();
    let ids2 = strings(
        &again
            .dataset("DM", &schema, &meta)
            .unwrap()
            .apply(&batch)
            .unwrap(),
        "USUBJID",
    );
    assert_eq!(ids, ids2);
    let other_key = DeidKey::from_bytes([8; 32]);
    let other = Deidentifier::new(p.clone(), Some(&other_key), "S1", reference()).unwrap();
    let ids3 = strings(
        &other
            .dataset("DM", &schema, &meta)
            .unwrap()
            .apply(&batch)
            .unwrap(),
        "USUBJID",
    );
    assert_ne!(ids[0], ids3[0]);
    assert_ne!(
        pseudonym(&key.subkey("pseudonym"), "S2", "S1-001"),
        expected
    );
    assert_eq!(d.describe()["key_id"], key.id());
    // Without a key, the profile cannot run.
    let e = Deidentifier::new(p, None, "S1", reference()).unwrap_err();
    assert_eq!(
        (e.code().as_str(), e.reason()),
        ("EXP005", "key_unavailable")
    );
}

#[test]
fn offsets_are_in_range_never_zero_and_use_both_directions() {
    let key = DeidKey::from_bytes([3; 32]).subkey("date-shift");
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..5000 {
        let o = offset(&key, "S1", &format!("S1-{i:05}"));
        assert!((1..=365).contains(&o.abs()), "{o}");
        seen.insert(o);
    }
    assert!(seen.iter().any(|o| *o < -300) && seen.iter().any(|o| *o > 300));
    assert!(seen.len() > 600, "{}", seen.len());
}

#[test]
fn date_shift_moves_every_date_of_a_subject_alike() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("SUBJID", DataType::Int64, true),
        Field::new("USUBJID", DataType::Utf8, true),
        Field::new("DTC", DataType::Utf8, true),
        Field::new("DT", DataType::Date32, true),
        Field::new(
            "TS",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Second, Some("+00:00".into())),
            true,
        ),
        Field::new("SASDT", DataType::Float64, true),
        Field::new("SASDTM", DataType::Float64, true),
    ]));
    let meta = DatasetMeta {
        name: "LB".into(),
        columns: vec![
            col("SUBJID", PrivacyClass::SubjectId),
            col("USUBJID", PrivacyClass::SubjectId),
            col("DTC", PrivacyClass::Date),
            col("DT", PrivacyClass::Date),
            col("TS", PrivacyClass::Date),
            ColumnMeta {
                display_format: Some("DATE9.".into()),
                ..col("SASDT", PrivacyClass::Date)
            },
            ColumnMeta {
                display_format: Some("E8601DT19.".into()),
                ..col("SASDTM", PrivacyClass::Date)
            },
        ],
        ..DatasetMeta::default()
    };
    let base = NaiveDate::from_ymd_opt(2021, 3, 4).unwrap();
    let sas = (base - NaiveDate::from_ymd_opt(1960, 1, 1).unwrap()).num_days() as f64;
    let unix = days(2021, 3, 4);
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![Some(9), Some(8), Some(9), Some(7)])),
            Arc::new(StringArray::from(vec![
                Some("A"),
                Some("B"),
                Some("A"),
                None,
            ])),
            Arc::new(StringArray::from(vec![
                Some("2021-03-04T08:00"),
                Some("2021-03-04"),
                Some("2021-03"),
                Some("2021-03-04"),
            ])),
            Arc::new(Date32Array::from(vec![
                Some(unix),
                Some(unix),
                Some(unix + 10),
                Some(unix),
            ])),
            Arc::new(
                TimestampSecondArray::from(vec![Some(i64::from(unix) * 86_400 + 3600); 4])
                    .with_timezone("+00:00"),
            ),
            Arc::new(Float64Array::from(vec![
                Some(sas),
                Some(sas),
                None,
                Some(sas),
            ])),
            Arc::new(Float64Array::from(vec![Some(sas * 86_400.0 + 60.0); 4])),
        ],
    )
    .unwrap();
    let key = DeidKey::from_bytes([5; 32]);
    let p = Policy::new(Some(&Deidentify::from_list("date-shift")), true).unwrap();
    let d = Deidentifier::new(p.clone(), Some(&key), "S1", reference()).unwrap();
    let t = d.dataset("LB", &schema, &meta).unwrap();
    let out = t.apply(&batch).unwrap();
    let sub = key.subkey("date-shift");
    // USUBJID is the subject (preferred over SUBJID).
    let (a, b) = (offset(&sub, "S1", "A"), offset(&sub, "S1", "B"));
    let dtc = strings(&out, "DTC");
    let shifted = |o: i32| {
        (base + chrono::Duration::days(i64::from(o)))
            .format("%Y-%m-%d")
            .to_string()
    };
    assert_eq!(dtc[0], Some(format!("{}T08:00", shifted(a))));
    assert_eq!(dtc[1], Some(shifted(b)));
    assert_eq!(dtc[2], None, "a partial date cannot be shifted");
    assert_eq!(dtc[3], None, "no subject, no shift");
    let dt = out
        .column_by_name("DT")
        .unwrap()
        .as_primitive::<Date32Type>();
    assert_eq!(
        dt.iter().collect::<Vec<_>>(),
        [Some(unix + a), Some(unix + b), Some(unix + 10 + a), None]
    );
    let ts = out
        .column_by_name("TS")
        .unwrap()
        .as_primitive::<TimestampSecondType>();
    assert_eq!(
        ts.value(0),
        (i64::from(unix) + i64::from(a)) * 86_400 + 3600
    );
    assert_eq!(ts.timezone(), Some("+00:00"));
    let sasdt = out
        .column_by_name("SASDT")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(sasdt.value(1), sas + f64::from(b));
    let sasdtm = out
        .column_by_name("SASDTM")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(sasdtm.value(0), (sas + f64::from(a)) * 86_400.0 + 60.0);
    // Another dataset of another export with the same key: the same shift for subject A.
    let again = Deidentifier::new(p, Some(&key), "S1", reference()).unwrap();
    let vs_schema = Arc::new(schema.project(&[1, 3]).unwrap());
    let vs_meta = DatasetMeta {
        name: "VS".into(),
        columns: vec![
            col("USUBJID", PrivacyClass::SubjectId),
            col("DT", PrivacyClass::Date),
        ],
        ..DatasetMeta::default()
    };
    let vs = RecordBatch::try_new(
        vs_schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["A"])) as ArrayRef,
            Arc::new(Date32Array::from(vec![unix + 100])),
        ],
    )
    .unwrap();
    let vs_out = again
        .dataset("VS", &vs_schema, &vs_meta)
        .unwrap()
        .apply(&vs)
        .unwrap();
    assert_eq!(
        vs_out.column(1).as_primitive::<Date32Type>().value(0),
        unix + 100 + a
    );
    let v = d.describe();
    assert_eq!(v["date_shift"]["max_days"], 365);
    assert_eq!(v["key_id"], key.id());
    assert_eq!(v["identifiable"], true);
}

#[test]
fn safe_harbor_with_date_shift_and_sas_dates_keeps_shifted_years() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("USUBJID", DataType::Utf8, false),
        Field::new("BRTHDT", DataType::Float64, true),
        Field::new("AGE", DataType::Float64, true),
        Field::new("ZIP", DataType::Int64, true),
    ]));
    let meta = DatasetMeta {
        name: "DM".into(),
        columns: vec![
            col("USUBJID", PrivacyClass::SubjectId),
            ColumnMeta {
                display_format: Some("DATE9.".into()),
                ..col("BRTHDT", PrivacyClass::Date)
            },
            col("AGE", PrivacyClass::Age),
            col("ZIP", PrivacyClass::Zip),
        ],
        ..DatasetMeta::default()
    };
    let sas = |y, m, d| {
        (NaiveDate::from_ymd_opt(y, m, d).unwrap() - NaiveDate::from_ymd_opt(1960, 1, 1).unwrap())
            .num_days() as f64
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["A", "B", "C"])) as ArrayRef,
            Arc::new(Float64Array::from(vec![
                Some(sas(1950, 7, 1)),
                Some(sas(1930, 7, 1)),
                Some(f64::NAN),
            ])),
            Arc::new(Float64Array::from(vec![
                Some(89.5),
                Some(90.0),
                Some(f64::NAN),
            ])),
            Arc::new(Int64Array::from(vec![Some(3601), Some(2134), Some(-1)])),
        ],
    )
    .unwrap();
    let key = DeidKey::from_bytes([1; 32]);
    let d = Deidentifier::new(
        policy("safe-harbor,date-shift"),
        Some(&key),
        "S1",
        reference(),
    )
    .unwrap();
    let t = d.dataset("DM", &schema, &meta).unwrap();
    let out = t.apply(&batch).unwrap();
    let years = out.column(1).as_primitive::<Int32Type>();
    // The year of the shifted date; 1930 moved by up to a year still implies 90+ and is suppressed.
    let a = offset(&key.subkey("date-shift"), "S1", "A");
    let shifted =
        NaiveDate::from_ymd_opt(1950, 7, 1).unwrap() + chrono::Duration::days(i64::from(a));
    assert_eq!(
        years.iter().collect::<Vec<_>>(),
        [Some(chrono::Datelike::year(&shifted)), None, None]
    );
    assert_eq!(
        t.meta().column("BRTHDT").unwrap().display_format,
        None,
        "a year is not a SAS date"
    );
    assert_eq!(
        strings(&out, "AGE"),
        [Some("89.5".into()), Some("90+".into()), None]
    );
    assert_eq!(
        strings(&out, "ZIP"),
        [Some("000".into()), Some("021".into()), None]
    );
    assert_eq!(t.schema().field(2).data_type(), &DataType::Utf8);
}

#[test]
fn text_ages_and_identity_plans() {
    let schema = Arc::new(Schema::new(vec![Field::new("AGE", DataType::Utf8, true)]));
    let meta = DatasetMeta {
        columns: vec![col("AGE", PrivacyClass::Age)],
        ..DatasetMeta::default()
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec![
            Some(" 89 "),
            Some("90"),
            Some("91"),
            Some("unknown"),
            None,
        ])) as ArrayRef],
    )
    .unwrap();
    let d = Deidentifier::new(policy("safe-harbor"), None, "S1", reference()).unwrap();
    let out = d
        .dataset("X", &schema, &meta)
        .unwrap()
        .apply(&batch)
        .unwrap();
    assert_eq!(
        strings(&out, "AGE"),
        [
            Some("89".into()),
            Some("90+".into()),
            Some("90+".into()),
            None,
            None
        ]
    );
    // A plan that changes nothing passes batches through.
    let keep =
        Deidentifier::new(Policy::new(None, true).unwrap(), None, "S1", reference()).unwrap();
    let t = keep.dataset("X", &schema, &meta).unwrap();
    assert!(t.is_identity());
    assert_eq!(t.apply(&batch).unwrap(), batch);
    // Without the flag the dataset is refused at run time too.
    let strict =
        Deidentifier::new(Policy::new(None, false).unwrap(), None, "S1", reference()).unwrap();
    assert_eq!(
        strict.dataset("X", &schema, &meta).unwrap_err().reason(),
        "identifiable_data"
    );
}
