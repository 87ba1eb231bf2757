//! `trialport export data|bulk --deidentify ... [--identifiable]`, run as a user would, on a source directory whose
//! `DM.meta.json` classes the columns.

#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::Output;

/// The signing password of the admin: an identifiable export needs an e-signature.
const PASSWORD: &str = "correct horse battery";

mod common;
use common::{
    command, error_json, home_args, init_home, set_password, set_signing_config, stdout_json,
    stdout_text, write_source, PASSWORD_ENV,
};

const DM_CSV: &str = "USUBJID,NAME,ZIP,BRTHDTC,RFSTDTC,AGE,COMMENT,SEX\n\
S1-001,Ann Lee,03601,1935-03-04,2024-01-08,89,lives alone,F\n\
S1-002,Bo Park,02134-1234,1950-07-01,2024-02-14,90,,M\n\
S1-003,Cy Diaz,89301,1988-12-31,2024-03-01,36,call after 5,F\n";

const DM_META: &str = r#"{"name": "DM", "columns": [
  {"name": "USUBJID", "privacy": "subject_id"},
  {"name": "NAME", "privacy": "direct_identifier"},
  {"name": "ZIP", "privacy": "zip"},
  {"name": "BRTHDTC", "privacy": "date"},
  {"name": "RFSTDTC", "privacy": "date"},
  {"name": "AGE", "privacy": "age"},
  {"name": "COMMENT", "privacy": "free_text"}]}"#;

const AE_CSV: &str = "USUBJID,AESTDTC,AETERM\n\
S1-003,2024-03-09,HEADACHE\n\
S1-001,2024-01-20,NAUSEA\n";

const AE_META: &str = r#"{"columns": [{"name": "USUBJID", "privacy": "subject_id"},
  {"name": "AESTDTC", "privacy": "date"}]}"#;

struct Home {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    cred: String,
}

impl Home {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let source = write_source(
            tmp.path(),
            "S1",
            &[
                ("DM.csv", DM_CSV),
                ("DM.meta.json", DM_META),
                ("AE.csv", AE_CSV),
                ("AE.meta.json", AE_META),
            ],
        );
        let dir = tmp.path().join("home");
        let cred = init_home(&dir, &source);
        // Fewer PBKDF2 iterations than the production default keep the test quick.
        set_signing_config(
            &dir,
            serde_json::json!({"pbkdf2_iterations": 1000, "max_failed_attempts": 5}),
        );
        stdout_text(&set_password(&dir, &cred, PASSWORD, None));
        Home { tmp, dir, cred }
    }

    fn run(&self, args: &[&str]) -> Output {
        command(&home_args(&self.dir, &self.cred, args))
            .env(PASSWORD_ENV, PASSWORD)
            .output()
            .unwrap()
    }

    /// `export data --study S1 --datasets DATASETS --format csv --wait --json` plus `extra`: the finished job.
    fn export(&self, datasets: &str, extra: &[&str]) -> Value {
        let mut args = vec![
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            datasets,
            "--format",
            "csv",
            "--wait",
            "--json",
        ];
        args.extend_from_slice(extra);
        let job = stdout_json(&self.run(&args));
        assert_eq!(job["state"], "succeeded", "{job}");
        job
    }

    fn download(&self, job: &Value, artifact: &str) -> Vec<u8> {
        let target = self
            .tmp
            .path()
            .join(format!("{}-{artifact}", job["id"].as_str().unwrap()));
        stdout_json(&self.run(&[
            "download",
            job["id"].as_str().unwrap(),
            "-o",
            target.to_str().unwrap(),
            "--artifact",
            artifact,
            "--json",
        ]));
        fs::read(&target).unwrap()
    }

    fn csv(&self, job: &Value, artifact: &str) -> Vec<Vec<String>> {
        String::from_utf8(self.download(job, artifact))
            .unwrap()
            .lines()
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect()
    }

    fn key_file(&self) -> PathBuf {
        self.dir.join("deid.key")
    }
}

fn column<'a>(rows: &'a [Vec<String>], name: &str) -> Vec<&'a str> {
    let i = rows[0].iter().position(|h| h == name).unwrap();
    rows[1..].iter().map(|r| r[i].as_str()).collect()
}

#[test]
fn safe_harbor_from_the_command_line() {
    let home = Home::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(home.key_file()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let job = home.export("DM,AE", &["--deidentify", "safe-harbor"]);
    let dm = home.csv(&job, "dm.csv");
    assert_eq!(
        dm[0],
        ["USUBJID", "ZIP", "BRTHDTC", "RFSTDTC", "AGE", "SEX"]
    );
    let text = String::from_utf8(home.download(&job, "dm.csv")).unwrap();
    for v in [
        "Ann Lee",
        "Bo Park",
        "S1-00",
        "lives alone",
        "1935",
        "-03-04",
        "03601",
    ] {
        assert!(!text.contains(v), "{v} in {text}");
    }
    assert_eq!(column(&dm, "ZIP"), ["000", "021", "000"]);
    assert_eq!(column(&dm, "AGE"), ["89", "90+", "36"]);
    // Born in 1935: at least 90 years before the export's year, so suppressed; later births keep their year.
    assert_eq!(column(&dm, "BRTHDTC"), ["", "1950", "1988"]);
    assert_eq!(column(&dm, "RFSTDTC"), ["2024", "2024", "2024"]);
    let codes = column(&dm, "USUBJID");
    assert!(codes.iter().all(|c| c.starts_with("SH") && c.len() == 12));
    let ae = home.csv(&job, "ae.csv");
    assert_eq!(column(&ae, "USUBJID"), [codes[2], codes[0]]);
    assert_eq!(column(&ae, "AESTDTC"), ["2024", "2024"]);
    let manifest: Value = serde_json::from_slice(&home.download(&job, "manifest.json")).unwrap();
    assert_eq!(
        manifest["deidentification"]["profiles"],
        serde_json::json!(["safe-harbor"])
    );
    assert_eq!(
        manifest["deidentification"]["restricted_zip3"]["version"],
        "hhs-2000-census"
    );
}

#[test]
fn identifying_exports_need_a_profile_or_identifiable() {
    let home = Home::new();
    let e = error_json(
        &home.run(&[
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "DM",
            "--format",
            "csv",
        ]),
        "EXP002",
    );
    assert_eq!(e["details"]["reason"], "identifiable_data");
    assert_eq!(e["field"], "deidentify");
    assert!(e["message"].as_str().unwrap().contains("DM.NAME"));
    let e = error_json(
        &home.run(&[
            "export",
            "bulk",
            "--study",
            "S1",
            "--format",
            "csv",
            "--deidentify",
            "safe-harbour",
        ]),
        "EXP002",
    );
    assert_eq!(e["details"]["reason"], "unknown_profile");
    // The flag passes de-identification's check; the engine then wants an e-signature for identifiable data.
    let e = error_json(
        &home.run(&[
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "DM",
            "--format",
            "csv",
            "--identifiable",
        ]),
        "EXP003",
    );
    assert_eq!(e["details"]["reason"], "signature_required");
    let job = home.export("DM", &["--identifiable", "--sign", "approval"]);
    assert_eq!(column(&home.csv(&job, "dm.csv"), "NAME")[0], "Ann Lee");
}

#[test]
fn pseudonyms_follow_the_home_key() {
    let a = Home::new();
    // Only columns that pseudonyms and shifts cover: no identifying column is left, so no flag is needed.
    let args = [
        "--deidentify",
        "pseudonymize,date-shift",
        "--columns",
        "USUBJID,BRTHDTC,RFSTDTC,SEX",
    ];
    let first = a.csv(&a.export("DM", &args), "dm.csv");
    let second = a.csv(&a.export("DM", &args), "dm.csv");
    assert_eq!(first, second);
    let ids = column(&first, "USUBJID");
    assert!(ids.iter().all(|p| p.starts_with("PS") && p.len() == 34));
    assert_ne!(
        column(&first, "RFSTDTC"),
        ["2024-01-08", "2024-02-14", "2024-03-01"]
    );
    assert_eq!(
        column(&first, "SEX"),
        ["F", "M", "F"],
        "only subject ids and dates change"
    );
    // Another home has another key; given the first home's key file, it gives the first home's pseudonyms.
    let b = Home::new();
    let other = b.csv(&b.export("DM", &args), "dm.csv");
    assert!(column(&other, "USUBJID").iter().all(|p| !ids.contains(p)));
    fs::copy(a.key_file(), b.key_file()).unwrap();
    let shared = b.csv(&b.export("DM", &args), "dm.csv");
    assert_eq!(shared, first);
    // The bulk package uses the same pseudonyms.
    let job = stdout_json(&a.run(&[
        "export",
        "bulk",
        "--study",
        "S1",
        "--format",
        "csv",
        "--deidentify",
        "pseudonymize,date-shift",
        "--identifiable",
        "--sign",
        "approval",
        "--wait",
        "--json",
    ]));
    assert_eq!(job["state"], "succeeded", "{job}");
    let bytes = a.download(&job, "s1_package.zip");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut text = String::new();
    zip.by_name("S1/dm.csv")
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let rows: Vec<Vec<String>> = text
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert_eq!(column(&rows, "USUBJID"), ids);
}
