//! Studies belong to organizations (DESIGN.md §12), through the binary: `init --org` binds the studies of its
//! source, the `operator` role manages the bindings (`trialport studies list | add | remove`) and keys of any
//! organization but reads no study data, and every operation on a study (or a job) of another organization, or on
//! an unbound study, answers exactly as one that does not exist: the same error JSON and the same audit event,
//! compared field by field.
#![allow(clippy::unwrap_used)]

mod common;

use common::{error_object, home_args, run, stdout_json, write_source};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use std::fs;
use std::path::PathBuf;

const SECRET: &[u8] = b"tenancy-test-hs256-secret-of-32-bytes-or-more";

/// A home of organization `acme` over a source with studies S1, S2 and S3, accepting HS256 tokens.
struct Setup {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    admin: String,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let dm = "STUDYID,USUBJID,AGE\nS,S-001,40\nS,S-002,50\n";
        for study in ["S1", "S2", "S3"] {
            write_source(tmp.path(), study, &[("DM.csv", dm)]);
        }
        let secret = tmp.path().join("jwt.secret");
        fs::write(&secret, SECRET).unwrap();
        fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let home = tmp.path().join("home");
        let v = stdout_json(&run(&[
            "--home",
            home.to_str().unwrap(),
            "init",
            "--source",
            tmp.path().join("source").to_str().unwrap(),
            "--org",
            "acme",
            "--jwt-hs256-secret-file",
            secret.to_str().unwrap(),
        ]));
        let admin = format!("ApiKey {}", v["api_key"].as_str().unwrap());
        Setup {
            _tmp: tmp,
            home,
            admin,
        }
    }

    fn run(&self, cred: &str, args: &[&str]) -> std::process::Output {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        run(&home_args(&self.home, cred, &all))
    }

    fn ok(&self, cred: &str, args: &[&str]) -> Value {
        stdout_json(&self.run(cred, args))
    }

    /// A new key made by `by` (`keys create`).
    fn key(&self, by: &str, org: &str, roles: &str, studies: &str) -> String {
        let v = self.ok(
            by,
            &[
                "keys",
                "create",
                "--name",
                "k",
                "--org",
                org,
                "--roles",
                roles,
                "--studies",
                studies,
            ],
        );
        format!("ApiKey {}", v["api_key"].as_str().unwrap())
    }

    /// Every audit event of every organization, from the home's archive (`audit.log`, one event per line).
    fn events(&self) -> Vec<Value> {
        fs::read_to_string(self.home.join("audit.log"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect()
    }
}

/// A bearer token of `org` with `roles` on every study.
fn token(org: &str, roles: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"sub": format!("eve@{org}"), "name": "Eve", "org": org, "roles": roles,
        "studies": ["*"], "iat": now, "exp": now + 3600});
    let t = jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    format!("Bearer {t}")
}

/// The error object of a refused run with what differs between any two calls taken out (time, request id) and
/// `name` replaced by `NAME` (the study or job the caller named).
fn refusal(out: &std::process::Output, name: &str) -> Value {
    let mut e = error_object(out);
    let o = e.as_object_mut().unwrap();
    o.remove("timestamp");
    o.remove("request_id");
    serde_json::from_str(&e.to_string().replace(name, "NAME")).unwrap()
}

/// The audit event of the refused call with request id `request_id`, with what differs between any two events
/// taken out (sequence, hashes, ids, time) and `name` replaced by `NAME`.
fn audited(setup: &Setup, request_id: &str, name: &str) -> Value {
    let found: Vec<Value> = setup
        .events()
        .into_iter()
        .filter(|e| e["request_id"] == request_id)
        .collect();
    assert_eq!(found.len(), 1, "one event for {request_id}: {found:?}");
    let mut e = found[0].clone();
    let o = e.as_object_mut().unwrap();
    for k in [
        "seq",
        "event_id",
        "timestamp",
        "request_id",
        "prev_hash",
        "hash",
    ] {
        o.remove(k);
    }
    serde_json::from_str(&e.to_string().replace(name, "NAME")).unwrap()
}

/// Runs `args_of(foreign)` and `args_of(unknown)` as `cred` and checks that both are refused alike: the same error
/// JSON and the same audit event, field by field (the names aside). Returns the error.
fn same_refusal(
    setup: &Setup,
    cred: &str,
    foreign: &str,
    unknown: &str,
    args_of: &dyn Fn(&str) -> Vec<String>,
) -> Value {
    let go = |name: &str| {
        let args = args_of(name);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = setup.run(cred, &args);
        let e = error_object(&out);
        let rid = e["request_id"].as_str().unwrap().to_string();
        (refusal(&out, name), audited(setup, &rid, name))
    };
    let (e_foreign, a_foreign) = go(foreign);
    let (e_unknown, a_unknown) = go(unknown);
    assert_eq!(
        e_foreign, e_unknown,
        "the refusals differ ({foreign} vs {unknown})"
    );
    assert_eq!(
        a_foreign, a_unknown,
        "the audit events differ ({foreign} vs {unknown})"
    );
    e_foreign
}

/// The arguments of one operation on a study or job named by its argument.
type Args = Box<dyn Fn(&str) -> Vec<String>>;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The finding: a JWT of another organization exported a study it named. It now answers as for an unknown study,
/// with the same error and audit event, while the study's own organization still exports it.
#[test]
fn a_token_of_another_organization_cannot_export_a_study_it_names() {
    let s = Setup::new();
    let export = |study: &str| {
        strings(&[
            "export",
            "data",
            "--study",
            study,
            "--datasets",
            "DM",
            "--format",
            "csv",
        ])
    };
    let evil = token("evilcorp", &["admin"]);
    let e = same_refusal(&s, &evil, "S1", "NOPE", &export);
    assert_eq!(e["code"], "EXP001", "{e}");
    assert_eq!(e["field"], "study", "{e}");
    // acme's own token exports it.
    let own = token("acme", &["admin"]);
    let args = export("S1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(s.ok(&own, &args)["state"], "queued");
}

#[test]
fn init_binds_the_source_studies_and_the_operator_manages_bindings_but_reads_no_data() {
    let s = Setup::new();
    let listed = s.ok(&s.admin, &["studies", "list"]);
    let pairs: Vec<(String, String)> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["study"].as_str().unwrap().to_string(),
                r["org"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let acme = |st: &str| (st.to_string(), "acme".to_string());
    assert_eq!(pairs, vec![acme("S1"), acme("S2"), acme("S3")]);
    let bound: Vec<Value> = s
        .events()
        .into_iter()
        .filter(|e| e["action"] == "bind_study")
        .collect();
    assert_eq!(bound.len(), 3, "one bind_study event per study: {bound:?}");
    assert_eq!(
        bound[0]["details"],
        json!({"org": "acme", "reason": "init"})
    );

    // An organization's admin manages no binding, and cannot make itself the operator of the platform.
    let e = error_object(&s.run(&s.admin, &["studies", "add", "S9", "--org", "acme"]));
    assert_eq!(
        (e["code"].as_str(), e["details"]["scope"].as_str()),
        (Some("EXP003"), Some("role"))
    );
    let scoped = s.key(&s.admin, "acme", "admin", "S1");
    let e = error_object(&s.run(
        &scoped,
        &[
            "keys",
            "create",
            "--name",
            "x",
            "--roles",
            "operator",
            "--studies",
            "S1",
        ],
    ));
    assert_eq!(e["code"], "EXP003", "{e}");

    // The home's unscoped admin makes an operator, which moves S2 to globex and gives globex an admin.
    let op = s.key(&s.admin, "acme", "operator", "*");
    s.ok(&op, &["studies", "remove", "S2"]);
    let added = s.ok(&op, &["studies", "add", "S2", "--org", "globex"]);
    assert_eq!(
        (added["study"].as_str(), added["org"].as_str()),
        (Some("S2"), Some("globex"))
    );
    let e = error_object(&s.run(&op, &["studies", "add", "S2", "--org", "acme"]));
    assert_eq!(
        (e["code"].as_str(), e["details"]["reason"].as_str()),
        (Some("EXP004"), Some("study_exists"))
    );
    let globex = s.key(&op, "globex", "admin", "*");
    // The move is audited in globex's scope.
    let add_event = s
        .events()
        .into_iter()
        .find(|e| e["action"] == "add_study" && e["outcome"] == "success")
        .unwrap();
    assert_eq!(
        (add_event["org"].as_str(), add_event["study"].as_str()),
        (Some("globex"), Some("S2"))
    );

    // Keys of another organization are listed by the operator only, as they are created and revoked.
    let globex_keys = s.ok(&op, &["keys", "list", "--org", "globex"]);
    let listed = globex_keys["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{globex_keys}");
    assert_eq!(listed[0]["org"], "globex", "{globex_keys}");
    let e = error_object(&s.run(&s.admin, &["keys", "list", "--org", "globex"]));
    assert_eq!(
        (e["code"].as_str(), e["details"]["scope"].as_str()),
        (Some("EXP003"), Some("organization")),
        "{e}"
    );
    let own = s.ok(&globex, &["keys", "list"]);
    assert_eq!(own["keys"], globex_keys["keys"]);

    // The operator reads no study data.
    for args in [
        vec![
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "DM",
            "--format",
            "csv",
        ],
        vec!["jobs", "list"],
        vec!["audit", "export"],
    ] {
        let e = error_object(&s.run(&op, &args));
        assert_eq!(e["code"], "EXP003", "{args:?}: {e}");
    }
    // Each organization exports its own study.
    let j2 = s.ok(
        &globex,
        &[
            "export",
            "data",
            "--study",
            "S2",
            "--datasets",
            "DM",
            "--format",
            "csv",
            "--wait",
        ],
    );
    assert_eq!(j2["state"], "succeeded", "{j2}");
    let e = error_object(&s.run(
        &s.admin,
        &[
            "export",
            "data",
            "--study",
            "S2",
            "--datasets",
            "DM",
            "--format",
            "csv",
        ],
    ));
    assert_eq!(e["code"], "EXP001", "{e}");
}

#[test]
fn every_operation_on_another_organizations_study_or_job_answers_as_an_unknown_one() {
    let s = Setup::new();
    let op = s.key(&s.admin, "acme", "operator", "*");
    s.ok(&op, &["studies", "remove", "S2"]);
    s.ok(&op, &["studies", "add", "S2", "--org", "globex"]);
    let globex = s.key(&op, "globex", "admin", "*");
    // acme's job on S1, and acme's earlier job on S3, whose binding is then removed.
    let j1 = s.ok(
        &s.admin,
        &[
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "DM",
            "--format",
            "csv",
            "--wait",
        ],
    );
    assert_eq!(j1["state"], "succeeded", "{j1}");
    let j1 = j1["id"].as_str().unwrap().to_string();
    let j3 = s.ok(
        &s.admin,
        &[
            "export",
            "data",
            "--study",
            "S3",
            "--datasets",
            "DM",
            "--format",
            "csv",
            "--wait",
        ],
    );
    let j3 = j3["id"].as_str().unwrap().to_string();
    s.ok(&op, &["studies", "remove", "S3"]);
    let nobody = "0190c1d2-0000-7000-8000-000000000000";
    let out = s
        .home
        .parent()
        .unwrap()
        .join("never.csv")
        .to_str()
        .unwrap()
        .to_string();

    // Study operations: a study of another organization, and an unbound one with data in the source, answer as an
    // unknown one.
    let study_ops: Vec<(&str, Args)> = vec![
        (
            "export data",
            Box::new(|st: &str| {
                strings(&[
                    "export",
                    "data",
                    "--study",
                    st,
                    "--datasets",
                    "DM",
                    "--format",
                    "csv",
                ])
            }),
        ),
        (
            "export bulk",
            Box::new(|st: &str| {
                strings(&[
                    "export",
                    "bulk",
                    "--study",
                    st,
                    "--datasets",
                    "DM",
                    "--format",
                    "csv",
                ])
            }),
        ),
        (
            "jobs list",
            Box::new(|st: &str| strings(&["jobs", "list", "--study", st])),
        ),
        (
            "keys create",
            Box::new(|st: &str| {
                strings(&[
                    "keys",
                    "create",
                    "--name",
                    "k",
                    "--roles",
                    "monitor",
                    "--studies",
                    st,
                ])
            }),
        ),
    ];
    for (what, args) in &study_ops {
        let e = same_refusal(&s, &globex, "S1", "NOPE", args.as_ref());
        assert_eq!(e["code"], "EXP001", "{what}: {e}");
        let e = same_refusal(&s, &s.admin, "S3", "NOPE", args.as_ref());
        assert_eq!(e["code"], "EXP001", "{what} of an unbound study: {e}");
    }
    // Job operations: another organization's job, and a job of a study no longer bound, answer as a job that
    // does not exist.
    let job_ops: Vec<(&str, Args)> = vec![
        (
            "jobs show",
            Box::new(|id: &str| strings(&["jobs", "show", id])),
        ),
        (
            "jobs cancel",
            Box::new(|id: &str| strings(&["jobs", "cancel", id])),
        ),
        (
            "jobs wait",
            Box::new(|id: &str| strings(&["jobs", "wait", id])),
        ),
        (
            "download",
            Box::new(move |id: &str| strings(&["download", id, "-o", &out])),
        ),
    ];
    for (what, args) in &job_ops {
        let e = same_refusal(&s, &globex, &j1, nobody, args.as_ref());
        assert_eq!(e["code"], "EXP001", "{what}: {e}");
        let e = same_refusal(&s, &s.admin, &j3, nobody, args.as_ref());
        assert_eq!(e["code"], "EXP001", "{what} of an unbound study's job: {e}");
    }
    // Listings leave the other organization's jobs out; the audit trail read by globex holds none of acme's events.
    let page = s.ok(&globex, &["jobs", "list"]);
    assert_eq!(page["total"], 0, "{page}");
    let audit = String::from_utf8(s.run(&globex, &["audit", "export"]).stdout).unwrap();
    for line in audit.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        assert!(
            e["org"] == "globex" || e["org"] == "",
            "globex reads another organization's event: {e}"
        );
        assert_ne!(
            e["action"], "bind_study",
            "globex reads acme's bindings: {e}"
        );
    }
    // acme's list leaves out its job of the study no longer bound, as `jobs show` does.
    let page = s.ok(&s.admin, &["jobs", "list"]);
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["items"][0]["id"], j1.as_str());
    // The owner still sees its job on a study it holds.
    assert_eq!(s.ok(&s.admin, &["jobs", "show", &j1])["id"], j1.as_str());
}

/// M5: the home is made owner-only (0700, its database and secrets 0600), and a home opened up afterwards is
/// warned about on stderr while stdout stays one JSON document.
#[cfg(unix)]
#[test]
fn the_home_is_owner_only_and_looser_modes_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new();
    let mode = |name: &str| {
        fs::metadata(s.home.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    s.ok(&s.admin, &["jobs", "list"]);
    for (name, want) in [
        (".", 0o700),
        ("artifacts", 0o700),
        ("trialport.db", 0o600),
        ("audit.log", 0o600),
        ("secret.key", 0o600),
        ("keys", 0o700),
    ] {
        assert_eq!(mode(name), want, "{name}: {:o}", mode(name));
    }
    let out = s.run(&s.admin, &["jobs", "list"]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chmod = |name: &str, m: u32| {
        fs::set_permissions(s.home.join(name), fs::Permissions::from_mode(m)).unwrap()
    };
    chmod(".", 0o755);
    chmod("trialport.db", 0o644);
    let out = s.run(&s.admin, &["jobs", "list"]);
    let page = stdout_json(&out);
    assert_eq!(page["total"], 0);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("warning: the home directory is open to group or others (mode 0755)"),
        "{err}"
    );
    assert!(
        err.contains("warning: the home's trialport.db is open to group or others (mode 0644)"),
        "{err}"
    );
    // A failing command prints the standard error JSON alone: stderr stays machine-readable.
    let e = error_object(&s.run(
        &s.admin,
        &["jobs", "show", "0190c1d2-0000-7000-8000-000000000000"],
    ));
    assert_eq!(e["code"], "EXP001");
    assert!(
        !err.contains(s.home.to_str().unwrap()),
        "a warning names a path: {err}"
    );
}

/// M5: XLSX worksheets (and Dataset-JSON rows, when spooled) go to the home's owner-only `spool/` folder, never
/// to `$TMPDIR`: while the exports run, no file the process holds open is in `$TMPDIR` and the XLSX writer's are in
/// the spool folder; afterwards no file in `$TMPDIR` holds the distinctive data value.
#[cfg(target_os = "linux")]
#[test]
fn exports_spool_inside_the_home_never_in_tmpdir() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new();
    let tmpdir = s.home.parent().unwrap().join("tmp");
    fs::create_dir_all(&tmpdir).unwrap();
    // About 12 MB of rows: past the Dataset-JSON writer's 8 MiB in memory, and many XLSX rows.
    let value = "Zebulon Quagmire-7731";
    let mut csv = String::from("STUDYID,USUBJID,NOTE,AGE\n");
    for i in 0..160_000 {
        csv.push_str(&format!("S1,S1-{i:06},{value},{}\n", i % 90));
    }
    fs::write(s.home.parent().unwrap().join("source/S1/LB.csv"), csv).unwrap();
    for format in ["xlsx", "dataset-json"] {
        let args = [
            "--home",
            s.home.to_str().unwrap(),
            "--credential",
            &s.admin,
            "--json",
            "export",
            "data",
            "--study",
            "S1",
            "--datasets",
            "LB",
            "--format",
            format,
            "--wait",
        ];
        let mut child = common::command(&args)
            .env("TMPDIR", &tmpdir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let fd_dir = PathBuf::from(format!("/proc/{}/fd", child.id()));
        let mut in_spool = 0;
        while child.try_wait().unwrap().is_none() {
            for fd in fs::read_dir(&fd_dir).into_iter().flatten().flatten() {
                if let Ok(target) = fs::read_link(fd.path()) {
                    assert!(
                        !target.starts_with(&tmpdir),
                        "{format}: a file open in TMPDIR: {target:?}"
                    );
                    if target.starts_with(s.home.join("spool")) {
                        in_spool += 1;
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{format}: {:?}", out.status);
        // The XLSX writer always spools its worksheets (Dataset-JSON spools only rows of an unknown count).
        if format == "xlsx" {
            assert!(
                in_spool > 0,
                "{format}: no spool file was seen in the home's spool folder"
            );
        }
    }
    assert_eq!(
        fs::metadata(s.home.join("spool"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    for f in fs::read_dir(&tmpdir).unwrap().flatten() {
        let bytes = fs::read(f.path()).unwrap_or_default();
        assert!(
            !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
            "{:?} holds the data value",
            f.path()
        );
    }
}
