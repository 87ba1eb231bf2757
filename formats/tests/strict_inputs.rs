//! Strict inputs (attack review H7, L1 and its unclear items): damaged XPT files are refused instead of read short
//! or padded with phantom rows, inputs that are not regular files are refused without blocking, CSV fields and
//! records have limits reached with bounded memory, and a CSV header may not name a column twice. Through
//! `read::open` (`convert`, Python's `read`) and the directory source alike.
//!
//! The XPT cases damage the SAS-written files of `../shared/conformance` (the oracle nobody here wrote) as well
//! as files of our own writer. Where that folder is absent the conformance cases say so and pass, unless
//! `TRIALPORT_REQUIRE_CONFORMANCE` is set or `CI=true`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use trialport_core::source::DataSource;
use trialport_core::ErrorCode;
use trialport_formats::convert::{convert, ConvertOptions};
use trialport_formats::read::{self, ReadOptions};
use trialport_formats::source::DirectorySource;
use trialport_formats::xpt;

mod common;
use common::conformance_dir;

fn conformance_xpt() -> Vec<PathBuf> {
    let Some(dir) = conformance_dir() else {
        return vec![];
    };
    let mut out = vec![];
    for sub in [
        "phuse-cdiscpilot01/sdtm",
        "phuse-cdiscpilot01/adam",
        "datasetjson-examples/sdtm",
        "datasetjson-examples/adam",
    ] {
        for e in fs::read_dir(dir.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "xpt") {
                out.push(p);
            }
        }
    }
    out.sort();
    assert_eq!(out.len(), 13, "the 13 SAS files of formats.md §8");
    out
}

/// Every row of `path`, or the first error (of opening or of any batch).
fn rows(path: &Path) -> trialport_core::Result<usize> {
    let stream = read::open(path, None)?;
    Ok(stream.collect()?.iter().map(|b| b.num_rows()).sum())
}

fn rows_with(path: &Path, options: &ReadOptions) -> trialport_core::Result<usize> {
    let stream = read::open_with_options(path, None, options)?;
    Ok(stream.collect()?.iter().map(|b| b.num_rows()).sum())
}

/// The XPT file the attack review made: AE with 5 rows (observations of 18 bytes: STUDYID $2, AESEQ, AETERM $8).
fn review_ae(dir: &Path) -> PathBuf {
    let csv = dir.join("AE.csv");
    let mut text = String::from("STUDYID,AESEQ,AETERM\nS1,1,HEADACHE\n");
    for i in 2..=5 {
        text.push_str(&format!("S1,{i},E{i}\n"));
    }
    fs::write(&csv, text).unwrap();
    let out = dir.join("a.xpt");
    let options = ConvertOptions {
        dataset: Some("AE".into()),
        ..ConvertOptions::default()
    };
    convert(&csv, &out, &options).unwrap();
    out
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

#[test]
fn an_xpt_file_cut_inside_the_data_is_refused_naming_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let a = review_ae(dir.path());
    assert_eq!(rows(&a).unwrap(), 5);
    let bytes = fs::read(&a).unwrap();
    // The review's cut: 100 bytes off the end (3 of 5 rows were read, exit 0).
    let t = write(&dir.path().join("t.xpt"), &bytes[..bytes.len() - 100]);
    let e = rows(&t).unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (ErrorCode::Validation, "truncated_file")
    );
    assert_eq!(e.details()["offset"], (bytes.len() - 100) as u64);
    // The same bytes from a reader of unknown length: refused at the end, never a short read.
    let e = xpt::read_xpt_from(
        std::io::Cursor::new(bytes[..bytes.len() - 100].to_vec()),
        &xpt::XptReadOptions::default(),
    )
    .and_then(|s| s.collect())
    .unwrap_err();
    assert_eq!(e.reason(), "truncated_file");
    // `convert` writes nothing from it.
    let out = dir.path().join("t.csv");
    let e = convert(&t, &out, &ConvertOptions::default()).unwrap_err();
    assert_eq!(e.reason(), "truncated_file");
    assert!(!out.exists());
}

#[test]
fn a_cut_at_a_record_boundary_inside_an_observation_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // Observations of 90 bytes: 5 rows are 450 bytes, padded to 480. Cut to 400: 4 whole rows and 40 bytes of
    // the fifth, a multiple of 80 all the same.
    let csv = write(
        &dir.path().join("x.csv"),
        b"C\naaaa\nbbbb\ncccc\ndddd\neeee\n",
    );
    let meta = trialport_core::meta::DatasetMeta::from_json(
        r#"{"name": "X", "columns": [{"name": "C", "length": 90}]}"#,
    )
    .unwrap();
    let full = dir.path().join("x.xpt");
    let options = ConvertOptions {
        meta: Some(meta),
        ..ConvertOptions::default()
    };
    convert(&csv, &full, &options).unwrap();
    let bytes = fs::read(&full).unwrap();
    let data = bytes.len() - 480;
    let cut = write(&dir.path().join("cut.xpt"), &bytes[..data + 400]);
    let e = rows(&cut).unwrap_err();
    assert_eq!(e.reason(), "truncated_file");
    assert_eq!(e.details()["observation"], 5);
    // Cut to 320: 3 whole rows and 50 bytes of the fourth, which are not blank padding.
    let cut = write(&dir.path().join("cut.xpt"), &bytes[..data + 320]);
    assert_eq!(rows(&cut).unwrap_err().details()["observation"], 4);
}

#[test]
fn nul_bytes_after_the_data_are_refused_not_read_as_rows() {
    let dir = tempfile::tempdir().unwrap();
    let a = review_ae(dir.path());
    let mut bytes = fs::read(&a).unwrap();
    // The review's 240 NULs (they became phantom rows of 3.69e-40 and empty strings).
    bytes.extend_from_slice(&[0u8; 240]);
    let p = write(&dir.path().join("p.xpt"), &bytes);
    let e = rows(&p).unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (ErrorCode::Validation, "invalid_padding")
    );
    // Through the directory source as well: an export from it fails instead of counting phantom rows.
    let study = dir.path().join("src/S1");
    fs::create_dir_all(&study).unwrap();
    fs::copy(&p, study.join("AE.xpt")).unwrap();
    let src = DirectorySource::new(dir.path().join("src"));
    let e = src.scan("S1", "AE").and_then(|s| s.collect()).unwrap_err();
    assert_eq!(e.reason(), "invalid_padding");

    // A numeric-only member whose observations (8 bytes) divide 80: the blank padding after the data is whole
    // observations, then the NULs are too; the blank ones inside the data give it away.
    let csv = write(&dir.path().join("n.csv"), b"N\n1\n2\n3\n4\n5\n");
    let n = dir.path().join("n.xpt");
    convert(&csv, &n, &ConvertOptions::default()).unwrap();
    let mut bytes = fs::read(&n).unwrap();
    bytes.extend_from_slice(&[0u8; 240]);
    let padded = write(&dir.path().join("n2.xpt"), &bytes);
    let e = rows(&padded).unwrap_err();
    assert_eq!(e.reason(), "invalid_padding");
    assert_eq!(e.details()["observation"], 6);
}

#[test]
fn nul_padding_of_the_last_record_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let a = review_ae(dir.path());
    let mut bytes = fs::read(&a).unwrap();
    // 5 rows of 18 bytes end 10 bytes into the second data record: 70 bytes of blank padding, made NULs here.
    let n = bytes.len();
    assert!(bytes[n - 70..].iter().all(|&b| b == b' '));
    bytes[n - 70..].fill(0);
    let p = write(&dir.path().join("nul.xpt"), &bytes);
    let e = rows(&p).unwrap_err();
    assert_eq!(e.reason(), "invalid_padding");
    assert_eq!(e.details()["offset"], (n - 70) as u64);
    let lenient = ReadOptions {
        xpt_allow_nul_padding: true,
        ..ReadOptions::default()
    };
    assert_eq!(rows_with(&p, &lenient).unwrap(), 5);
}

#[test]
fn every_sas_file_still_reads_and_every_damaged_copy_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for path in conformance_xpt() {
        let name = path.file_name().unwrap().to_str().unwrap();
        let good = rows(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let members = xpt::read_xpt_members(&path).unwrap();
        assert_eq!(good as u64, members[0].observations, "{name}");
        let bytes = fs::read(&path).unwrap();
        let cut = write(&dir.path().join("cut.xpt"), &bytes[..bytes.len() - 100]);
        assert_eq!(rows(&cut).unwrap_err().reason(), "truncated_file", "{name}");
        let mut nuls = bytes.clone();
        nuls.extend_from_slice(&[0u8; 240]);
        let nuls = write(&dir.path().join("nuls.xpt"), &nuls);
        let e = rows(&nuls).unwrap_err();
        assert!(
            matches!(e.reason(), "invalid_padding" | "truncated_file"),
            "{name}: {e}"
        );
    }
}

/// Runs `f` on a thread and fails (instead of hanging the test run) when it takes longer than 20 s.
fn within_20s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the reader blocked or ran without end")
}

fn not_regular(path: &Path) -> (String, String) {
    let p = path.to_path_buf();
    let e = within_20s(move || rows(&p).unwrap_err());
    assert_eq!(e.code(), ErrorCode::Validation, "{e}");
    assert_eq!(e.reason(), "not_a_regular_file", "{e}");
    (
        e.field().unwrap_or_default().to_string(),
        e.details()["kind"].as_str().unwrap().to_string(),
    )
}

#[cfg(unix)]
#[test]
fn inputs_that_are_not_regular_files_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The review's symlink to /dev/zero (it grew about 700 MB/s until killed).
    std::os::unix::fs::symlink("/dev/zero", d.join("z.csv")).unwrap();
    assert_eq!(
        not_regular(&d.join("z.csv")),
        ("path".into(), "character_device".into())
    );
    std::os::unix::fs::symlink("/dev/zero", d.join("z.xpt")).unwrap();
    assert_eq!(not_regular(&d.join("z.xpt")).1, "character_device");
    // A FIFO without a writer (it blocked forever).
    mkfifo(&d.join("f.csv"));
    assert_eq!(not_regular(&d.join("f.csv")).1, "fifo");
    mkfifo(&d.join("f.parquet"));
    assert_eq!(not_regular(&d.join("f.parquet")).1, "fifo");
    let _socket = std::os::unix::net::UnixListener::bind(d.join("s.ndjson")).unwrap();
    assert_eq!(not_regular(&d.join("s.ndjson")).1, "socket");
    fs::create_dir(d.join("dir.csv")).unwrap();
    assert_eq!(not_regular(&d.join("dir.csv")).1, "directory");
    // A metadata file beside a regular input is held to the same rule.
    fs::write(d.join("dm.csv"), "A\n1\n").unwrap();
    mkfifo(&d.join("dm.meta.json"));
    let p = d.join("dm.csv");
    let e = within_20s(move || rows(&p).unwrap_err());
    assert_eq!(
        (e.reason(), e.field()),
        ("not_a_regular_file", Some("meta"))
    );
    // A missing file stays "not found".
    assert_eq!(
        rows(&d.join("none.csv")).unwrap_err().code(),
        ErrorCode::NotFound
    );
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo failed");
}

#[cfg(unix)]
#[test]
fn the_directory_source_lists_a_fifo_dataset_and_refuses_to_scan_it() {
    let root = tempfile::tempdir().unwrap();
    let s1 = root.path().join("S1");
    fs::create_dir_all(&s1).unwrap();
    fs::write(s1.join("AE.csv"), "A\n1\n").unwrap();
    mkfifo(&s1.join("DM.csv"));
    std::os::unix::fs::symlink("/dev/zero", s1.join("LB.csv")).unwrap();
    let src = DirectorySource::new(root.path());
    let names: Vec<String> = src
        .datasets("S1")
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["AE", "DM", "LB"]);
    for (name, kind) in [("DM", "fifo"), ("LB", "character_device")] {
        let src = src.clone();
        let e = within_20s(move || src.scan("S1", name).unwrap_err());
        assert_eq!(e.reason(), "not_a_regular_file");
        assert_eq!(e.details()["kind"], kind);
    }
    assert_eq!(src.scan("S1", "AE").unwrap().collect().unwrap().len(), 1);
}

/// A CSV of a header and one row whose single field is `size` bytes of `x`, written in pieces.
fn one_big_field(path: &Path, size: usize, quoted: bool) -> PathBuf {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    f.write_all(b"NOTE\n").unwrap();
    if quoted {
        f.write_all(b"\"").unwrap();
    }
    let chunk = vec![b'x'; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    if quoted {
        f.write_all(b"\"").unwrap();
    }
    f.write_all(b"\n").unwrap();
    path.to_path_buf()
}

#[test]
fn a_csv_field_over_the_limit_is_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    // Over the default limit of 4 MiB, unquoted and quoted.
    for quoted in [false, true] {
        let p = one_big_field(&dir.path().join("big.csv"), 40 << 20, quoted);
        let e = rows(&p).unwrap_err();
        assert_eq!(
            (e.code(), e.reason()),
            (ErrorCode::Validation, "field_too_large")
        );
        assert_eq!(e.details()["limit"], "csv_max_field_bytes");
        assert_eq!(e.details()["max_bytes"], read::DEFAULT_MAX_FIELD_BYTES);
        assert_eq!(e.details()["line"], 2);
        assert!(
            e.message().contains("4194304"),
            "the message names the limit: {e}"
        );
    }
    // At the limit it is read.
    let at = one_big_field(
        &dir.path().join("at.csv"),
        read::DEFAULT_MAX_FIELD_BYTES as usize,
        false,
    );
    assert_eq!(rows(&at).unwrap(), 1);
    // A smaller limit as a read option; a field of doubled quotes counts its text, not its quotes.
    let small = ReadOptions {
        csv_max_field_bytes: 10,
        csv_max_record_bytes: 100,
        ..ReadOptions::default()
    };
    let quotes = write(
        &dir.path().join("q.csv"),
        format!("A,B\n\"{}\",1\n", "\"\"".repeat(10)).as_bytes(),
    );
    assert_eq!(rows_with(&quotes, &small).unwrap(), 1);
    let over = write(
        &dir.path().join("q11.csv"),
        format!("A,B\n\"{}\",1\n", "\"\"".repeat(11)).as_bytes(),
    );
    assert_eq!(
        rows_with(&over, &small).unwrap_err().reason(),
        "field_too_large"
    );
    // A quoted field over several lines is one field.
    let lines = write(&dir.path().join("l.csv"), b"A,B\n\"abc\ndef\nghi\njk\",1\n");
    assert_eq!(
        rows_with(&lines, &small).unwrap_err().reason(),
        "field_too_large"
    );
    // Invalid limits are refused.
    let bad = ReadOptions {
        csv_max_field_bytes: 10,
        csv_max_record_bytes: 5,
        ..ReadOptions::default()
    };
    let e = rows_with(&quotes, &bad).unwrap_err();
    assert_eq!(
        (e.reason(), e.field()),
        ("invalid_option", Some("csv_max_record_bytes"))
    );
}

#[test]
fn a_csv_record_over_the_limit_is_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let small = ReadOptions {
        csv_max_field_bytes: 10,
        csv_max_record_bytes: 30,
        ..ReadOptions::default()
    };
    let ok = write(
        &dir.path().join("ok.csv"),
        b"A,B,C\n0123456789,0123456789,1\n",
    );
    assert_eq!(rows_with(&ok, &small).unwrap(), 1);
    let wide = write(
        &dir.path().join("wide.csv"),
        b"A,B,C,D\n0123456789,0123456789,0123456789,1\n",
    );
    let e = rows_with(&wide, &small).unwrap_err();
    assert_eq!(e.reason(), "record_too_large");
    assert_eq!(
        (
            e.details()["limit"].as_str(),
            e.details()["max_bytes"].as_u64()
        ),
        (Some("csv_max_record_bytes"), Some(30))
    );
    // The header is a record too; TSV has the same limits.
    let tsv = write(
        &dir.path().join("w.tsv"),
        b"A\tB\tC\tD\n0123456789\t0123456789\t0123456789\t1\n",
    );
    assert_eq!(
        rows_with(&tsv, &small).unwrap_err().reason(),
        "record_too_large"
    );
}

#[test]
fn duplicate_csv_column_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir.path().join("d.csv"), b"USUBJID,AGE,AGE\nS1,40,41\n");
    let e = rows(&p).unwrap_err();
    assert_eq!(
        (e.code(), e.reason(), e.field()),
        (ErrorCode::Validation, "duplicate_column", Some("columns"))
    );
    assert_eq!(e.details()["column"], "AGE");
    assert_eq!(e.details()["position"], 3);
    // Names that differ only in case are different columns, as everywhere in Arrow.
    let p = write(&dir.path().join("c.csv"), b"age,AGE\n1,2\n");
    assert_eq!(rows(&p).unwrap(), 1);
    // Through the directory source too.
    let study = dir.path().join("src/S1");
    fs::create_dir_all(&study).unwrap();
    fs::write(study.join("DM.tsv"), "A\tB\tA\n1\t2\t3\n").unwrap();
    let e = DirectorySource::new(dir.path().join("src"))
        .scan("S1", "DM")
        .unwrap_err();
    assert_eq!(e.reason(), "duplicate_column");
}
