//! `trialport serve` on a loopback port, exercised through a real HTTP client (reqwest): every endpoint and status
//! code of the contract, API keys and JWTs (minted by the independent `jsonwebtoken` crate), downloads against the
//! CLI's bytes and the manifest's SHA-256, ranges, rate limits shared by two processes of one home, metrics, the
//! request id in the audit trail, and SIGTERM.

#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use common::{command, home_args, run, stdout_json, write_source};
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const DM_CSV: &str = "USUBJID,AGE,SEX\nS1-001,34,F\nS1-002,51,M\nS1-003,47,F\nS1-004,62,M\n";
const AE_CSV: &str = "USUBJID,AESEQ,AETERM\nS1-001,1,HEADACHE\nS1-002,1,NAUSEA\n";
const JWT_SECRET: &[u8] = b"serve-test-jwt-secret-with-more-than-32-bytes";

/// A running `trialport serve`: killed when dropped unless it was stopped.
struct Server {
    child: Option<Child>,
    base: String,
    metrics: Option<String>,
}

impl Server {
    fn start(home: &Path, extra: &[&str]) -> Server {
        let mut args = vec![
            "--home",
            home.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut child = command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("serve printed no ready line ({e}): {line:?}"));
        Server {
            child: Some(child),
            base: format!("http://{}", ready["listen"].as_str().unwrap()),
            metrics: ready["metrics"].as_str().map(|m| format!("http://{m}")),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then the exit status (within `limit`).
    fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("serve did not exit within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    home: PathBuf,
    admin: String,
}

impl Setup {
    fn new(extra_init: &[&str]) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let source = write_source(&dir, "S1", &[("DM.csv", DM_CSV), ("AE.csv", AE_CSV)]);
        std::fs::write(dir.join("jwt.secret"), JWT_SECRET).unwrap();
        // An HS256 secret file must be its owner's only.
        std::fs::set_permissions(
            dir.join("jwt.secret"),
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .unwrap();
        let home = dir.join("home");
        let jwt = dir.join("jwt.secret");
        let mut args = vec![
            "--home",
            home.to_str().unwrap(),
            "init",
            "--source",
            source.to_str().unwrap(),
            "--org",
            "acme",
            "--jwt-hs256-secret-file",
            jwt.to_str().unwrap(),
        ];
        args.extend_from_slice(extra_init);
        let v = stdout_json(&run(&args));
        let admin = format!("ApiKey {}", v["api_key"].as_str().unwrap());
        Setup {
            _tmp: tmp,
            dir,
            home,
            admin,
        }
    }

    /// A new API key with `roles` on study S1.
    fn key(&self, roles: &str) -> String {
        let v = stdout_json(&run(&home_args(
            &self.home,
            &self.admin,
            &[
                "--json",
                "keys",
                "create",
                "--name",
                "k",
                "--roles",
                roles,
                "--studies",
                "S1",
            ],
        )));
        format!("ApiKey {}", v["api_key"].as_str().unwrap())
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn hs256(claims: &Value) -> String {
    let t = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET),
    )
    .unwrap();
    format!("Bearer {t}")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn header<'a>(r: &'a Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header: {:?}", r.headers()))
        .to_str()
        .unwrap()
}

/// The standard error JSON of a response, checked: its shape, its code, and that its request id is the
/// response's `X-Request-Id`.
fn error(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "{:?}", r.headers());
    assert_eq!(header(&r, "content-type"), "application/json");
    let id = header(&r, "x-request-id").to_string();
    let v: Value = r.json().unwrap();
    let e = v["error"].clone();
    assert_eq!(e["code"], code, "{v}");
    for k in ["message", "details", "timestamp", "request_id"] {
        assert!(e.get(k).is_some(), "no {k} in {v}");
    }
    assert!(e["details"]["reason"].is_string(), "{v}");
    assert_eq!(e["request_id"], id.as_str(), "{v}");
    e
}

fn get(c: &Client, url: &str, cred: &str) -> Response {
    c.get(url).header("authorization", cred).send().unwrap()
}

fn post_json(c: &Client, url: &str, cred: &str, body: &Value) -> Response {
    c.post(url)
        .header("authorization", cred)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Polls a job until it has finished.
fn wait_job(c: &Client, s: &Server, cred: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = get(c, &s.url(&format!("/api/v1/exports/jobs/{id}")), cred);
        assert_eq!(r.status(), StatusCode::OK);
        let job: Value = r.json().unwrap();
        if !["queued", "running"].contains(&job["state"].as_str().unwrap()) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish: {job}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The audit trail as JSON values.
fn audit_events(setup: &Setup) -> Vec<Value> {
    let out = run(&home_args(&setup.home, &setup.admin, &["audit", "export"]));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_endpoint_answers_as_the_contract_says() {
    let setup = Setup::new(&[]);
    let mut s = Server::start(&setup.home, &["--workers", "1"]);
    let c = client();
    let admin = setup.admin.as_str();

    // Probes and the document: no credential.
    let r = c.get(s.url("/healthz")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(
        c.get(s.url("/readyz")).send().unwrap().status(),
        StatusCode::OK
    );
    let served: Value = c
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        served, committed,
        "docs/openapi.json differs from the served document"
    );
    assert_eq!(served["openapi"], "3.1.0");

    // 401 without a credential or with a wrong one, with the challenge; 200 with a key.
    let r = c.get(s.url("/api/v1/exports/formats")).send().unwrap();
    assert!(header(&r, "www-authenticate").contains("ApiKey"));
    error(r, 401, "EXP003");
    let r = get(
        &c,
        &s.url("/api/v1/exports/formats"),
        "ApiKey tp_000000000000_wrong",
    );
    error(r, 401, "EXP003");
    let r = get(&c, &s.url("/api/v1/exports/formats"), admin);
    assert_eq!(r.status(), StatusCode::OK);
    let formats: Value = r.json().unwrap();
    assert!(formats.as_array().unwrap().iter().any(|f| f["id"] == "csv"));

    // JWTs: a valid token passes, an expired one is 401.
    let claims = |exp: i64| {
        json!({"sub": "ada@example.org", "name": "Ada", "org": "acme", "roles": ["statistician"],
            "studies": ["S1"], "iat": now() - 10, "exp": exp})
    };
    let r = get(
        &c,
        &s.url("/api/v1/exports/formats"),
        &hs256(&claims(now() + 600)),
    );
    assert_eq!(r.status(), StatusCode::OK);
    let r = get(
        &c,
        &s.url("/api/v1/exports/formats"),
        &hs256(&claims(now() - 600)),
    );
    error(r, 401, "EXP003");

    // 403: authenticated, not permitted (a monitor may not export data).
    let monitor = setup.key("monitor");
    let body = json!({"study": "S1", "datasets": ["DM"], "format": "csv"});
    let r = post_json(&c, &s.url("/api/v1/exports/data"), &monitor, &body);
    assert!(r.headers().get("www-authenticate").is_none());
    let e = error(r, 403, "EXP003");
    assert_eq!(e["details"]["reason"], "permission_denied");

    // Bodies: 415 not JSON, 413 too large, 400 not a request, 404 unknown study.
    let r = c
        .post(s.url("/api/v1/exports/data"))
        .header("authorization", admin)
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .unwrap();
    error(r, 415, "EXP002");
    let big = json!({"study": "S1", "datasets": ["DM"], "format": "csv", "idempotency_key": "x".repeat(2 << 20)});
    error(
        post_json(&c, &s.url("/api/v1/exports/data"), admin, &big),
        413,
        "EXP002",
    );
    let r = c
        .post(s.url("/api/v1/exports/data"))
        .header("authorization", admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    error(r, 400, "EXP002");
    let e = error(
        post_json(
            &c,
            &s.url("/api/v1/exports/report"),
            admin,
            &json!({"format": "html", "datasets": []}),
        ),
        400,
        "EXP002",
    );
    assert_eq!(e["details"]["reason"], "invalid_request");
    let unknown = json!({"study": "NOPE", "datasets": ["DM"], "format": "csv"});
    error(
        post_json(&c, &s.url("/api/v1/exports/data"), admin, &unknown),
        404,
        "EXP001",
    );

    // 202 + Location, with our request id in the answer and in the audit trail.
    let r = c
        .post(s.url("/api/v1/exports/data"))
        .header("authorization", admin)
        .header("content-type", "application/json")
        .header("x-request-id", "it-export-1")
        .header("idempotency-key", "key-1")
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "x-request-id"), "it-export-1");
    let location = header(&r, "location").to_string();
    let job: Value = r.json().unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/v1/exports/jobs/{id}"));
    assert_eq!(job["idempotency_key"], "key-1");
    // The same key and request: the same job; another request with the key: 409.
    let again = c
        .post(s.url("/api/v1/exports/data"))
        .header("authorization", admin)
        .header("content-type", "application/json")
        .header("idempotency-key", "key-1")
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.json::<Value>().unwrap()["id"], id.as_str());
    let other = json!({"study": "S1", "datasets": ["AE"], "format": "csv"});
    let r = c
        .post(s.url("/api/v1/exports/data"))
        .header("authorization", admin)
        .header("content-type", "application/json")
        .header("idempotency-key", "key-1")
        .body(other.to_string())
        .send()
        .unwrap();
    error(r, 409, "EXP004");

    let job = wait_job(&c, &s, admin, &id);
    assert_eq!(job["state"], "succeeded", "{job}");
    let artifact = job["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "dm.csv")
        .unwrap()
        .clone();
    let sha = artifact["sha256"].as_str().unwrap();

    // Download: the CLI's bytes, the record's and the manifest's SHA-256, the headers.
    let url = s.url(&format!(
        "/api/v1/exports/jobs/{id}/download?artifact=dm.csv"
    ));
    let r = get(&c, &url, admin);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "etag"), format!("\"{sha}\""));
    assert_eq!(
        header(&r, "content-type"),
        artifact["media_type"].as_str().unwrap()
    );
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert!(header(&r, "content-disposition").contains("filename=\"dm.csv\""));
    let digest = base64::engine::general_purpose::STANDARD.encode(
        (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&sha[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>(),
    );
    assert_eq!(header(&r, "repr-digest"), format!("sha-256=:{digest}:"));
    let bytes = r.bytes().unwrap().to_vec();
    assert_eq!(sha256_hex(&bytes), sha);
    let cli_file = setup.dir.join("cli-dm.csv");
    let out = run(&home_args(
        &setup.home,
        admin,
        &[
            "download",
            &id,
            "-o",
            cli_file.to_str().unwrap(),
            "--artifact",
            "dm.csv",
        ],
    ));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&cli_file).unwrap(), bytes);
    let manifest: Value = get(
        &c,
        &s.url(&format!(
            "/api/v1/exports/jobs/{id}/download?artifact=manifest.json"
        )),
        admin,
    )
    .json()
    .unwrap();
    assert!(
        manifest.to_string().contains(sha),
        "the manifest does not list the artifact's SHA-256: {manifest}"
    );
    // Without a name, the one data artifact.
    let r = get(
        &c,
        &s.url(&format!("/api/v1/exports/jobs/{id}/download")),
        admin,
    );
    assert_eq!(r.bytes().unwrap().to_vec(), bytes);

    // Conditional and range requests: 304; ranges of 7 bytes reassemble the file; 416 past the end.
    let r = c
        .get(&url)
        .header("authorization", admin)
        .header("if-none-match", format!("\"{sha}\""))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let mut whole = Vec::new();
    let size = bytes.len();
    for first in (0..size).step_by(7) {
        let last = (first + 6).min(size - 1);
        let r = c
            .get(&url)
            .header("authorization", admin)
            .header("range", format!("bytes={first}-{last}"))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes {first}-{last}/{size}")
        );
        whole.extend_from_slice(&r.bytes().unwrap());
    }
    assert_eq!(whole, bytes);
    let r = c
        .get(&url)
        .header("authorization", admin)
        .header("range", format!("bytes={size}-"))
        .send()
        .unwrap();
    assert_eq!(header(&r, "content-range"), format!("bytes */{size}"));
    error(r, 416, "EXP002");
    // A stale If-Range: the whole file.
    let r = c
        .get(&url)
        .header("authorization", admin)
        .header("range", "bytes=0-0")
        .header("if-range", "\"stale\"")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Unknown artifact 404; a job of several datasets needs a name (400).
    error(
        get(
            &c,
            &s.url(&format!(
                "/api/v1/exports/jobs/{id}/download?artifact=nope.csv"
            )),
            admin,
        ),
        404,
        "EXP001",
    );

    // Jobs: pages and links, filters, bad parameters.
    let two = json!({"study": "S1", "datasets": ["DM", "AE"], "format": "csv"});
    let r = post_json(&c, &s.url("/api/v1/exports/data"), admin, &two);
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id2 = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_job(&c, &s, admin, &id2);
    error(
        get(
            &c,
            &s.url(&format!("/api/v1/exports/jobs/{id2}/download")),
            admin,
        ),
        400,
        "EXP002",
    );
    let r = get(&c, &s.url("/api/v1/exports/jobs?limit=1"), admin);
    assert_eq!(r.status(), StatusCode::OK);
    let link = header(&r, "link").to_string();
    assert!(
        link.contains("</api/v1/exports/jobs?page=2&limit=1>; rel=\"next\""),
        "{link}"
    );
    let page: Value = r.json().unwrap();
    assert_eq!(
        (
            page["page"].as_u64(),
            page["limit"].as_u64(),
            page["total"].as_u64()
        ),
        (Some(1), Some(1), Some(2))
    );
    assert_eq!(page["items"][0]["id"], id2.as_str());
    let page: Value = get(&c, &s.url("/api/v1/exports/jobs"), admin)
        .json()
        .unwrap();
    assert_eq!(page["limit"], 20);
    let page: Value = get(
        &c,
        &s.url("/api/v1/exports/jobs?status=queued&study=S1"),
        admin,
    )
    .json()
    .unwrap();
    assert_eq!(page["total"], 0);
    for bad in [
        "limit=0",
        "limit=101",
        "page=0",
        "status=bogus",
        "limit=ten",
    ] {
        let e = error(
            get(&c, &s.url(&format!("/api/v1/exports/jobs?{bad}")), admin),
            400,
            "EXP002",
        );
        assert!(e["field"].is_string(), "{bad}: {e}");
    }
    error(
        get(&c, &s.url("/api/v1/exports/jobs/not-a-uuid"), admin),
        404,
        "EXP001",
    );
    error(
        get(
            &c,
            &s.url("/api/v1/exports/jobs/0190f3a1-c2d3-7e5f-8a9b-0c1d2e3f4a5b"),
            admin,
        ),
        404,
        "EXP001",
    );
    // Cancelling a finished job is a conflict.
    let r = c
        .post(s.url(&format!("/api/v1/exports/jobs/{id}/cancel")))
        .header("authorization", admin)
        .send()
        .unwrap();
    error(r, 409, "EXP004");

    // 405 with Allow, and unknown paths, in the error JSON.
    let r = c.delete(s.url("/api/v1/exports/formats")).send().unwrap();
    assert!(header(&r, "allow").contains("GET"));
    error(r, 405, "EXP002");
    error(
        c.get(s.url("/api/v2/nothing")).send().unwrap(),
        404,
        "EXP001",
    );

    // The request id of the export is the audit event's.
    let events = audit_events(&setup);
    let e = events
        .iter()
        .find(|e| e["request_id"] == "it-export-1")
        .expect("no audit event with the request id");
    assert_eq!(e["action"], "export_data");

    // Metrics on their own listener: route templates, never raw paths.
    let text = c
        .get(format!("{}/metrics", s.metrics.as_ref().unwrap()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(text.contains(
        "http_server_request_duration_seconds_bucket{http_route=\"/api/v1/exports/jobs/{job_id}\",http_request_method=\"GET\",http_response_status_code=\"200\""
    ), "{text}");
    assert!(!text.contains(&id), "a raw path in the metrics");
    assert!(
        text.contains("trialport_jobs{state=\"succeeded\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("trialport_audit_events_total{outcome=\"denied\"}"),
        "{text}"
    );
    assert!(
        text.contains("trialport_job_duration_seconds_bucket{kind=\"data\",format=\"csv\""),
        "{text}"
    );
    assert!(
        text.contains("trialport_export_bytes_total{format=\"csv\"}"),
        "{text}"
    );
    // Not on the API listener.
    error(c.get(s.url("/metrics")).send().unwrap(), 404, "EXP001");

    assert_eq!(s.terminate(Duration::from_secs(20)).code(), Some(0));
    let out = run(&home_args(&setup.home, admin, &["audit", "verify"]));
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn queued_jobs_are_cancelled_and_workers_zero_keeps_them_queued() {
    let setup = Setup::new(&[]);
    let mut s = Server::start(&setup.home, &["--workers", "0"]);
    let c = client();
    let admin = setup.admin.as_str();
    let r = post_json(
        &c,
        &s.url("/api/v1/exports/bulk"),
        admin,
        &json!({"study": "S1", "format": "csv"}),
    );
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    error(
        get(
            &c,
            &s.url(&format!("/api/v1/exports/jobs/{id}/download")),
            admin,
        ),
        409,
        "EXP004",
    );
    let r = c
        .post(s.url(&format!("/api/v1/exports/jobs/{id}/cancel")))
        .header("authorization", admin)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().unwrap()["state"], "cancelled");
    // Reports and dashboards are queued the same way.
    let report = json!({"report": {"study": "S1", "title": "T", "sections": [{"type": "text", "body": "x"}]},
        "format": "html"});
    assert_eq!(
        post_json(&c, &s.url("/api/v1/exports/report"), admin, &report).status(),
        StatusCode::ACCEPTED
    );
    let dashboard = json!({"dashboard": {"study": "S1", "title": "T",
        "tiles": [{"label": "n", "dataset": "DM", "measure": "count"}]}, "format": "html"});
    assert_eq!(
        post_json(&c, &s.url("/api/v1/exports/dashboard"), admin, &dashboard).status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(s.terminate(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn one_rate_limit_per_credential_across_the_processes_of_a_home() {
    let setup = Setup::new(&["--rate-limit", "3/60"]);
    let a = Server::start(&setup.home, &["--workers", "0"]);
    let b = Server::start(&setup.home, &["--workers", "0"]);
    let c = client();
    let admin = setup.admin.as_str();
    let other = setup.key("auditor");
    let formats = |s: &Server, cred: &str| get(&c, &s.url("/api/v1/exports/formats"), cred);
    for (server, remaining) in [(&a, 2), (&b, 1), (&a, 0)] {
        let r = formats(server, &other);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "ratelimit-policy"), "\"default\";q=3;w=60");
        assert!(
            header(&r, "ratelimit").starts_with(&format!("\"default\";r={remaining};t=")),
            "{:?}",
            r.headers()
        );
    }
    // The fourth call, on either process, is refused.
    let r = formats(&b, &other);
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(header(&r, "ratelimit").starts_with("\"default\";r=0;t="));
    let e = error(r, 429, "EXP006");
    assert!(e["details"]["retry_after_ms"].as_u64().unwrap() > 0);
    // Another credential has its own quota (creating its key was an admin call, counted for the admin).
    let r = formats(&a, admin);
    assert_eq!(r.status(), StatusCode::OK);
    // Responses that made no call still state the policy.
    let r = c.get(a.url("/healthz")).send().unwrap();
    assert_eq!(header(&r, "ratelimit-policy"), "\"default\";q=3;w=60");
    assert!(r.headers().get("ratelimit").is_none());
}

#[test]
fn plain_http_is_refused_off_loopback_and_bad_tls_files_are_reported() {
    let setup = Setup::new(&[]);
    let out = run(&[
        "--home",
        setup.home.to_str().unwrap(),
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--metrics-listen",
        "off",
    ]);
    let e = common::error_json(&out, "EXP002");
    assert_eq!(e["details"]["reason"], "insecure_listen");
    let missing = setup.dir.join("missing.pem");
    let out = run(&[
        "--home",
        setup.home.to_str().unwrap(),
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        missing.to_str().unwrap(),
        "--tls-key",
        missing.to_str().unwrap(),
    ]);
    let e = common::error_json(&out, "EXP002");
    assert_eq!(e["details"]["reason"], "invalid_tls");
    // A bad --rate-limit at init.
    let out = run(&[
        "--home",
        setup.dir.join("h2").to_str().unwrap(),
        "init",
        "--rate-limit",
        "10/0",
    ]);
    let e = common::error_json(&out, "EXP002");
    assert_eq!(e["details"]["reason"], "invalid_rate_limit");
}

/// Headers a client may send are read as given: an invalid request id is replaced by a fresh one.
#[test]
fn invalid_request_ids_are_replaced() {
    let setup = Setup::new(&[]);
    let s = Server::start(&setup.home, &["--workers", "0"]);
    let c = client();
    let mut h = HeaderMap::new();
    h.insert("x-request-id", HeaderValue::from_static("has space"));
    let r = c
        .get(s.url("/api/v1/exports/formats"))
        .headers(h)
        .send()
        .unwrap();
    let id = header(&r, "x-request-id").to_string();
    assert!(id.starts_with("req_") && id.len() == 36, "{id}");
    error(r, 401, "EXP003");
}

/// Damaged artifacts: the response starts (200, headers) but never ends as complete. In a home without
/// encryption the damage shows only as a SHA-256 mismatch at the end of the file; with encryption, as a segment
/// that does not authenticate, mid-file. Both fail the body, and the trail records `download.failed`.
#[test]
fn a_damaged_artifact_aborts_the_download_instead_of_completing_it() {
    for encrypted in [false, true] {
        let setup = if encrypted {
            Setup::new(&[])
        } else {
            Setup::new(&["--no-encryption"])
        };
        // About 1 MB of CSV: many chunks.
        let mut lb = String::from("USUBJID,LBSEQ,LBTESTCD,LBORRES\n");
        for i in 0..30_000 {
            lb.push_str(&format!("S1-{:03},{i},GLUC,{}\n", i % 500, 70 + i % 50));
        }
        std::fs::write(setup.dir.join("source/S1/LB.csv"), lb).unwrap();
        let s = Server::start(&setup.home, &["--workers", "1"]);
        let c = client();
        let admin = setup.admin.as_str();
        let body = json!({"study": "S1", "datasets": ["LB"], "format": "csv"});
        let r = post_json(&c, &s.url("/api/v1/exports/data"), admin, &body);
        let id = r.json::<Value>().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let job = wait_job(&c, &s, admin, &id);
        assert_eq!(job["state"], "succeeded", "{job}");
        let url = s.url(&format!(
            "/api/v1/exports/jobs/{id}/download?artifact=lb.csv"
        ));
        // Intact, it downloads whole.
        let whole = get(&c, &url, admin).bytes().unwrap();
        assert_eq!(
            sha256_hex(&whole),
            job["artifacts"][0]["sha256"].as_str().unwrap()
        );
        // Flip one byte in the middle of the stored file (same size).
        let stored = common::files_under(&setup.home.join("artifacts"))
            .into_iter()
            .find(|p| {
                p.to_string_lossy().contains(&id) && p.file_name().is_some_and(|n| n == "lb.csv")
            })
            .unwrap();
        let mut bytes = std::fs::read(&stored).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(&stored, &bytes).unwrap();
        let r = get(&c, &url, admin);
        assert_eq!(r.status(), StatusCode::OK, "encrypted={encrypted}");
        let declared: usize = header(&r, "content-length").parse().unwrap();
        match r.bytes() {
            Err(_) => {}
            Ok(b) => panic!(
                "encrypted={encrypted}: a damaged artifact downloaded as complete ({} of {declared} bytes)",
                b.len()
            ),
        }
        let failed = audit_events(&setup).into_iter().any(|e| {
            e["action"] == "download.failed" && e["details"]["reason"] == "integrity_violation"
        });
        assert!(failed, "encrypted={encrypted}: no download.failed event");
    }
}

/// TLS: 1.2 and 1.3 handshakes succeed (with ALPN h2 and http/1.1), 1.1 is refused by the server, checked by
/// Python's `ssl` module (OpenSSL) against a certificate made here by the `openssl` command.
#[test]
fn tls_1_2_and_1_3_are_served_and_1_1_is_refused() {
    let setup = Setup::new(&[]);
    let cert = setup.dir.join("cert.pem");
    let key = setup.dir.join("key.pem");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args([
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .output()
        .expect("the openssl command is needed for this test");
    assert!(out.status.success(), "{out:?}");
    let s = Server::start(
        &setup.home,
        &[
            "--workers",
            "0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let addr = s.base.trim_start_matches("http://").to_string();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = std::process::Command::new("python3")
        .args(["-c", TLS_PROBE, host, port, cert.to_str().unwrap()])
        .output()
        .expect("python3 is needed for this test");
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tls12"]["version"], "TLSv1.2", "{v}");
    assert_eq!(v["tls12"]["status_line"], "HTTP/1.1 200 OK", "{v}");
    assert_eq!(v["tls13"]["version"], "TLSv1.3", "{v}");
    assert_eq!(v["tls13"]["alpn"], "h2", "{v}");
    assert_eq!(v["tls13_http1"]["alpn"], "http/1.1", "{v}");
    assert_eq!(v["tls11"]["ok"], false, "{v}");
    // An alert received from the server (rustls answers a TLS 1.1-only hello with handshake_failure), not a
    // client that could not offer TLS 1.1 (OpenSSL would say NO_PROTOCOLS_AVAILABLE).
    let reason = v["tls11"]["error"].as_str().unwrap();
    assert!(
        [
            "SSLV3_ALERT_HANDSHAKE_FAILURE",
            "TLSV1_ALERT_PROTOCOL_VERSION"
        ]
        .contains(&reason),
        "{v}"
    );
}

/// Handshakes with the server from Python's `ssl`: prints one JSON object.
const TLS_PROBE: &str = r#"
import json, socket, ssl, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def attempt(version, alpn=None, request=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if version == ssl.TLSVersion.TLSv1_1:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = version
    ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    try:
        with socket.create_connection((host, port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                out = {"ok": True, "version": t.version(), "alpn": t.selected_alpn_protocol()}
                if request:
                    t.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    data = b""
                    while b"\r\n" not in data:
                        chunk = t.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    out["status_line"] = data.split(b"\r\n")[0].decode()
                return out
    except ssl.SSLError as e:
        return {"ok": False, "error": e.reason}
print(json.dumps({
    "tls12": attempt(ssl.TLSVersion.TLSv1_2, request=True),
    "tls13": attempt(ssl.TLSVersion.TLSv1_3, alpn=["h2", "http/1.1"]),
    "tls13_http1": attempt(ssl.TLSVersion.TLSv1_3, alpn=["http/1.1"]),
    "tls11": attempt(ssl.TLSVersion.TLSv1_1),
}))
"#;

/// HTTP/2 without TLS needs prior knowledge; the same answers as HTTP/1.1.
#[test]
fn http2_prior_knowledge_is_served() {
    let setup = Setup::new(&[]);
    let s = Server::start(&setup.home, &["--workers", "0"]);
    let c = Client::builder().http2_prior_knowledge().build().unwrap();
    let r = get(&c, &s.url("/api/v1/exports/formats"), &setup.admin);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-request-id"));
}

/// The study registry through HTTP: a study of another organization answers 404 EXP001 exactly as an unknown one
/// (an export of it, a job list filtered by it), and once the operator moves a study to another organization, its
/// earlier jobs answer 404 to their own organization too (and are left out of its job list).
#[test]
fn another_organizations_study_is_404_as_an_unknown_one() {
    let setup = Setup::new(&[]);
    let s = Server::start(&setup.home, &["--workers", "1"]);
    let c = client();
    let admin = setup.admin.as_str();
    let globex = hs256(
        &json!({"sub": "gus@globex.example", "name": "Gus", "org": "globex",
        "roles": ["admin"], "studies": ["*"], "iat": now() - 10, "exp": now() + 600}),
    );
    let export = |cred: &str, study: &str| {
        post_json(
            &c,
            &s.url("/api/v1/exports/data"),
            cred,
            &json!({"study": study, "datasets": ["DM"], "format": "csv"}),
        )
    };
    let r = export(admin, "S1");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wait_job(&c, &s, admin, &id)["state"], "succeeded");

    // globex asks for acme's S1: the answer of a study no source has.
    let foreign = error(export(&globex, "S1"), 404, "EXP001");
    let unknown = error(export(&globex, "NOPE"), 404, "EXP001");
    assert_eq!(foreign["details"], unknown["details"]);
    assert_eq!(foreign["field"], unknown["field"]);
    assert_eq!(
        foreign["message"].as_str().unwrap().replace("S1", "NOPE"),
        unknown["message"].as_str().unwrap()
    );
    let list =
        |cred: &str, query: &str| get(&c, &s.url(&format!("/api/v1/exports/jobs{query}")), cred);
    let foreign = error(list(&globex, "?study=S1"), 404, "EXP001");
    let unknown = error(list(&globex, "?study=NOPE"), 404, "EXP001");
    assert_eq!(foreign["details"], unknown["details"]);
    error(
        get(&c, &s.url(&format!("/api/v1/exports/jobs/{id}")), &globex),
        404,
        "EXP001",
    );
    let r = list(admin, "?study=S1");
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = r.json().unwrap();
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id.as_str()),
        "{page}"
    );

    // The operator moves S1 to globex (through the CLI, on the served home).
    let op = stdout_json(&run(&home_args(
        &setup.home,
        admin,
        &[
            "--json",
            "keys",
            "create",
            "--name",
            "op",
            "--roles",
            "operator",
            "--studies",
            "*",
        ],
    )));
    let op = format!("ApiKey {}", op["api_key"].as_str().unwrap());
    stdout_json(&run(&home_args(
        &setup.home,
        &op,
        &["--json", "studies", "remove", "S1"],
    )));
    stdout_json(&run(&home_args(
        &setup.home,
        &op,
        &["--json", "studies", "add", "S1", "--org", "globex"],
    )));
    // acme's job of S1 is now unknown to acme, and still to globex (it is not globex's job).
    for cred in [admin, globex.as_str()] {
        error(
            get(&c, &s.url(&format!("/api/v1/exports/jobs/{id}")), cred),
            404,
            "EXP001",
        );
        error(
            get(
                &c,
                &s.url(&format!(
                    "/api/v1/exports/jobs/{id}/download?artifact=dm.csv"
                )),
                cred,
            ),
            404,
            "EXP001",
        );
    }
    error(list(admin, "?study=S1"), 404, "EXP001");
    let r = list(admin, "");
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = r.json().unwrap();
    assert!(
        !page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id.as_str()),
        "{page}"
    );
    // And globex may export its study now.
    assert_eq!(export(&globex, "S1").status(), StatusCode::ACCEPTED);
}
