//! `trialport export bulk --package ectd` from a source directory of SAS-written XPT files (the CDISC example
//! study in `../shared/conformance`, copied into a temporary source directory at test time), then `download` and
//! `verify`; and the FDA checks failing a package with every violation listed.
//!
//! Where `../shared/conformance` is absent the tests say so and pass, unless `TRIALPORT_REQUIRE_CONFORMANCE` is
//! set or `CI=true`.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

mod common;
use common::{
    command, conformance_dir, error_json, files_under, home_args, init_home, run, set_password,
    set_signing_config, stdout_json, stdout_text, PASSWORD_ENV,
};
use std::process::Output;

/// The signing password of the home's admin: an eCTD package needs an e-signature (`--sign`).
const PASSWORD: &str = "correct horse battery";

struct Home {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    cred: String,
}

impl Home {
    fn new(conformance: &Path, extra: &[(&str, &[u8])]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let study = tmp.path().join("source").join("CDISCPILOT01");
        fs::create_dir_all(&study).unwrap();
        for f in ["sdtm/dm.xpt", "sdtm/ae.xpt", "adam/adsl.xpt"] {
            let from = conformance.join("datasetjson-examples").join(f);
            let name = Path::new(f).file_name().unwrap();
            fs::copy(from, study.join(name)).unwrap();
        }
        for (name, bytes) in extra {
            fs::write(study.join(name), bytes).unwrap();
        }
        let dir = tmp.path().join("home");
        let cred = init_home(&dir, &tmp.path().join("source"));
        set_signing_config(&dir, serde_json::json!({"pbkdf2_iterations": 1000}));
        stdout_text(&set_password(&dir, &cred, PASSWORD, None));
        Home { tmp, dir, cred }
    }

    fn run(&self, args: &[&str]) -> Output {
        command(&home_args(&self.dir, &self.cred, args))
            .env(PASSWORD_ENV, PASSWORD)
            .output()
            .unwrap()
    }
}

#[test]
fn export_bulk_package_ectd_downloads_and_verifies() {
    let Some(conformance) = conformance_dir() else {
        return;
    };
    let home = Home::new(&conformance, &[]);
    let job = stdout_json(&home.run(&[
        "export",
        "bulk",
        "--study",
        "CDISCPILOT01",
        "--datasets",
        "DM,AE,ADSL",
        "--format",
        "xpt",
        "--package",
        "ectd",
        "--sign",
        "approval",
        "--wait",
        "--json",
    ]));
    assert_eq!(job["state"], "succeeded", "{job}");
    let id = job["id"].as_str().unwrap();
    let zip_path = home.tmp.path().join("submission.zip");
    stdout_json(&home.run(&["download", id, "-o", zip_path.to_str().unwrap(), "--json"]));
    let v = stdout_json(&run(&["verify", zip_path.to_str().unwrap(), "--json"]));
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["files"], 5, "{v}");
    let mut zip = zip::ZipArchive::new(fs::File::open(&zip_path).unwrap()).unwrap();
    let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "m5/datasets/cdiscpilot01/analysis/adam/datasets/adsl.xpt",
            "m5/datasets/cdiscpilot01/analysis/adam/datasets/define.xml",
            "m5/datasets/cdiscpilot01/tabulations/sdtm/ae.xpt",
            "m5/datasets/cdiscpilot01/tabulations/sdtm/define.xml",
            "m5/datasets/cdiscpilot01/tabulations/sdtm/dm.xpt",
            "manifest.json",
        ]
    );
    // The SDTM DM in the package reads back with the rows and columns of the source file.
    let mut dm = Vec::new();
    zip.by_name("m5/datasets/cdiscpilot01/tabulations/sdtm/dm.xpt")
        .unwrap()
        .read_to_end(&mut dm)
        .unwrap();
    let extracted = home.tmp.path().join("dm_from_package.xpt");
    fs::write(&extracted, &dm).unwrap();
    let csv_out = home.tmp.path().join("dm.csv");
    let original_csv = home.tmp.path().join("dm_original.csv");
    stdout_json(&run(&[
        "convert",
        extracted.to_str().unwrap(),
        "-o",
        csv_out.to_str().unwrap(),
        "--json",
    ]));
    let original = conformance.join("datasetjson-examples/sdtm/dm.xpt");
    stdout_json(&run(&[
        "convert",
        original.to_str().unwrap(),
        "-o",
        original_csv.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(
        fs::read_to_string(csv_out).unwrap(),
        fs::read_to_string(original_csv).unwrap()
    );
}

#[test]
fn an_ectd_package_with_fda_violations_fails_listing_them_all() {
    let Some(conformance) = conformance_dir() else {
        return;
    };
    // A dataset with a lowercase, over-long column name and a value over 200 bytes.
    let long = "y".repeat(201);
    let csv = format!("STUDYID,bad_name_too_long\nS1,{long}\n");
    let home = Home::new(&conformance, &[("XX.csv", csv.as_bytes())]);
    let out = home.run(&[
        "export",
        "bulk",
        "--study",
        "CDISCPILOT01",
        "--datasets",
        "DM,XX",
        "--format",
        "xpt",
        "--package",
        "ectd",
        "--sign",
        "approval",
        "--wait",
        "--json",
    ]);
    let error = &error_json(&out, "EXP002");
    assert_eq!(error["details"]["reason"], "fda_check_failed", "{error}");
    let rules: Vec<&str> = error["details"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["rule"].as_str().unwrap())
        .collect();
    assert!(rules.len() >= 2, "{rules:?}");
    // Nothing was written: no file at all under the home's artifacts.
    assert!(files_under(&home.dir.join("artifacts")).is_empty());
}
