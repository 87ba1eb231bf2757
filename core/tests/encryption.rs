//! Encryption at rest end to end: what is stored hides the data, a download gives back exactly what was written,
//! and any change to a stored artifact (a flipped byte anywhere, a cut at any length, segments swapped, dropped,
//! repeated or appended, an artifact moved onto another's path, a missing or wrong key) fails the download with
//! EXP005 `integrity_violation`, audited, leaving nothing at the download's destination. Rotation keeps old
//! artifacts readable; 2 GB stream through with flat memory.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use arrow::array::{Float64Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use common::*;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use trialport_core::access::Role;
use trialport_core::audit::{Outcome, RecordingHook};
use trialport_core::crypto::{
    DecryptingReader, EncryptedSink, EncryptingWriter, FileKeyProvider, KeyProvider,
};
use trialport_core::engine::{download_error, Engine};
use trialport_core::error::Error;
use trialport_core::hashing::sha256_of;
use trialport_core::home::Home;
use trialport_core::job::JobState;
use trialport_core::request::ExportRequest;
use trialport_core::sink::{MemorySink, Sink};
use trialport_core::source::MemorySource;
use uuid::Uuid;

const WAIT: Option<Duration> = Some(Duration::from_secs(30));
/// A value placed in the data; it must never appear in stored bytes.
const MARKER: &str = "PLAINTEXT-MARKER-Q7";
/// The tag bytes per stored segment.
const TAG: usize = 16;

/// Study S1, dataset DM: `n` subjects whose ids carry the marker.
fn marker_source(n: usize) -> Arc<MemorySource> {
    let s = MemorySource::new();
    let batch = RecordBatch::try_new(
        dm_schema(),
        vec![
            Arc::new(StringArray::from(
                (0..n)
                    .map(|i| format!("{MARKER}-{i:04}"))
                    .collect::<Vec<_>>(),
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
    .unwrap();
    s.add("S1", "DM", dm_schema(), vec![batch]).unwrap();
    Arc::new(s)
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// An engine whose memory sink is wrapped in an encrypting sink of `segment` plaintext bytes per segment.
struct Encrypted {
    engine: Engine,
    admin: String,
    raw: MemorySink,
    keys: Arc<FileKeyProvider>,
    hook: RecordingHook,
    _dir: tempfile::TempDir,
}

fn encrypted(segment: u32, subjects: usize) -> Encrypted {
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(FileKeyProvider::create(dir.path().join("keys")).unwrap());
    let raw = MemorySink::new();
    let sink = EncryptedSink::new(Arc::new(raw.clone()), keys.clone())
        .with_segment_size(segment)
        .unwrap();
    let hook = RecordingHook::new();
    let engine = Engine::builder()
        .formats(registry())
        .source(marker_source(subjects))
        .sink(Arc::new(sink))
        .audit_hook(Arc::new(hook.clone()))
        .workers(1)
        .build()
        .unwrap();
    let admin = format!(
        "ApiKey {}",
        engine.create_initial_admin_key("acme").unwrap()
    );
    Encrypted {
        engine,
        admin,
        raw,
        keys,
        hook,
        _dir: dir,
    }
}

impl Encrypted {
    /// Exports DM; returns the job id.
    fn export(&self) -> Uuid {
        let job = self
            .engine
            .export_data(&self.admin, ExportRequest::data("S1", &["DM"], "lines"))
            .unwrap();
        let done = self.engine.wait(&self.admin, job.id, WAIT).unwrap();
        assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
        job.id
    }

    /// Replaces the stored bytes at `path`.
    fn store(&self, path: &str, bytes: &[u8]) {
        self.raw.delete(path).unwrap();
        let mut w = self.raw.create(path).unwrap();
        w.write_all(bytes).unwrap();
        w.complete().unwrap();
    }

    /// Downloads the job's data artifact to memory.
    fn download(&self, job: Uuid) -> Result<Vec<u8>, Error> {
        self.engine.download(&self.admin, job, None)?.into_bytes()
    }
}

/// The byte length of an encrypted artifact's header (format in `trialport_core::crypto`).
fn header_len(stored: &[u8]) -> usize {
    let k = stored[13] as usize;
    let w = u16::from_be_bytes([stored[21 + k], stored[22 + k]]) as usize;
    23 + k + w
}

/// The key id named in an encrypted artifact's header.
fn key_id(stored: &[u8]) -> String {
    let k = stored[13] as usize;
    String::from_utf8(stored[14..14 + k].to_vec()).unwrap()
}

#[track_caller]
fn assert_integrity(result: Result<Vec<u8>, Error>, what: &str) {
    match result {
        Ok(_) => panic!("{what}: a damaged artifact was downloaded"),
        Err(e) => assert_eq!(
            (e.code().as_str(), e.reason()),
            ("EXP005", "integrity_violation"),
            "{what}: {e}"
        ),
    }
}

#[test]
fn stored_bytes_hide_the_data_and_a_download_returns_it_exactly() {
    let enc = encrypted(64 * 1024, 50);
    let job = enc.export();
    // The same export without encryption is the oracle for the bytes.
    let plain_sink = MemorySink::new();
    let plain = Engine::builder()
        .formats(registry())
        .source(marker_source(50))
        .sink(Arc::new(plain_sink.clone()))
        .workers(1)
        .build()
        .unwrap();
    let admin = format!("ApiKey {}", plain.create_initial_admin_key("acme").unwrap());
    let pj = plain
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    plain.wait(&admin, pj.id, WAIT).unwrap();
    let expected = plain_sink.get(&format!("{}/1/dm.txt", pj.id)).unwrap();
    assert!(contains(&expected, MARKER), "the oracle holds the marker");

    for name in ["dm.txt", "manifest.json"] {
        let stored = enc.raw.get(&format!("{job}/1/{name}")).unwrap();
        assert!(stored.starts_with(b"TPCRYPT\x01\x01"), "{name}");
        assert!(!contains(&stored, MARKER), "{name} stores the marker");
        assert!(
            !contains(&stored, "USUBJID"),
            "{name} stores the header row"
        );
    }
    let back = enc.download(job).unwrap();
    assert_eq!(back, expected);
    let record = enc.engine.get_job(&enc.admin, job).unwrap();
    let (n, sha) = sha256_of(&back[..]).unwrap();
    assert_eq!(
        (n, sha),
        (
            record.artifacts[0].bytes,
            record.artifacts[0].sha256.clone()
        )
    );
    // The manifest decrypts to JSON naming the same SHA-256.
    let manifest = enc
        .engine
        .download(&enc.admin, job, Some("manifest.json"))
        .unwrap()
        .into_bytes()
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(m["files"][0]["sha256"], record.artifacts[0].sha256.as_str());
}

#[test]
fn round_trips_at_every_segment_edge() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(FileKeyProvider::create(dir.path()).unwrap());
    let raw = MemorySink::new();
    let sink = EncryptedSink::new(Arc::new(raw.clone()), keys)
        .with_segment_size(64)
        .unwrap();
    for (i, len) in [
        0usize,
        1,
        15,
        16,
        63,
        64,
        65,
        127,
        128,
        129,
        64 * 9 + 5,
        4096,
    ]
    .into_iter()
    .enumerate()
    {
        let data: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
        let path = format!("job{i}/a.bin");
        let mut w = sink.create(&path).unwrap();
        // Uneven writes: the segmenting must not depend on them.
        for chunk in data.chunks(7 + i) {
            w.write_all(chunk).unwrap();
        }
        let receipt = w.complete().unwrap();
        assert_eq!(
            (receipt.bytes, receipt.sha256.clone()),
            sha256_of(&data[..]).unwrap(),
            "{len}"
        );
        let stored = raw.get(&path).unwrap();
        let segments = len.div_ceil(64).max(1);
        assert_eq!(
            stored.len(),
            header_len(&stored) + len + TAG * segments,
            "{len}"
        );
        let mut back = Vec::new();
        sink.open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, data, "{len}");
        // Reads of one byte at a time give the same.
        let mut r = sink.open(&path).unwrap();
        let mut one = [0u8; 1];
        let mut slow = Vec::new();
        while r.read(&mut one).unwrap() == 1 {
            slow.push(one[0]);
        }
        assert_eq!(slow, data, "{len}");
    }
    // Aborted and dropped writers leave nothing, as the inner sink's contract says.
    let mut w = sink.create("x/aborted").unwrap();
    w.write_all(&[1; 300]).unwrap();
    w.abort();
    let mut w = sink.create("x/dropped").unwrap();
    w.write_all(&[1; 300]).unwrap();
    drop(w);
    assert!(raw.paths().iter().all(|p| !p.starts_with("x/")));
    assert_eq!(
        sink.open("x/aborted").err().unwrap().code().as_str(),
        "EXP001"
    );
}

#[test]
fn every_flipped_byte_fails_the_download() {
    let enc = encrypted(32, 10);
    let job = enc.export();
    let path = format!("{job}/1/dm.txt");
    let original = enc.raw.get(&path).unwrap();
    let header = header_len(&original);
    assert!(original.len() - header > 5 * (32 + TAG), "several segments");
    for i in 0..original.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = original.clone();
            bad[i] ^= bit;
            enc.store(&path, &bad);
            assert_integrity(enc.download(job), &format!("byte {i} ^ {bit:#x}"));
        }
    }
    enc.store(&path, &original);
    assert!(contains(&enc.download(job).unwrap(), MARKER));
}

#[test]
fn a_cut_at_any_length_fails_the_download() {
    let enc = encrypted(32, 10);
    let job = enc.export();
    let path = format!("{job}/1/dm.txt");
    let original = enc.raw.get(&path).unwrap();
    let header = header_len(&original);
    // Every proper prefix: inside the header, at each segment boundary, and inside each segment.
    for cut in 0..original.len() {
        enc.store(&path, &original[..cut]);
        let at_boundary = cut >= header && (cut - header).is_multiple_of(32 + TAG);
        assert_integrity(
            enc.download(job),
            &format!("cut at {cut} (boundary: {at_boundary})"),
        );
    }
}

#[test]
fn swapped_dropped_repeated_or_appended_segments_fail() {
    let enc = encrypted(32, 10);
    let job = enc.export();
    let path = format!("{job}/1/dm.txt");
    let original = enc.raw.get(&path).unwrap();
    let header = header_len(&original);
    let head = &original[..header];
    let segs: Vec<&[u8]> = original[header..].chunks(32 + TAG).collect();
    let n = segs.len();
    assert!(n >= 5);
    let build = |order: &[usize]| -> Vec<u8> {
        let mut b = head.to_vec();
        for &i in order {
            b.extend_from_slice(segs[i]);
        }
        b
    };
    let all: Vec<usize> = (0..n).collect();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    let mut swap01 = all.clone();
    swap01.swap(0, 1);
    cases.push(("swap 0 and 1".into(), build(&swap01)));
    let mut swap_mid = all.clone();
    swap_mid.swap(1, n - 2);
    cases.push(("swap 1 and n-2".into(), build(&swap_mid)));
    let mut swap_last = all.clone();
    swap_last.swap(n - 2, n - 1);
    cases.push(("swap the last two".into(), build(&swap_last)));
    let mut dropped = all.clone();
    dropped.remove(2);
    cases.push(("drop segment 2".into(), build(&dropped)));
    let mut dropped_last = all.clone();
    dropped_last.pop();
    cases.push(("drop the last segment".into(), build(&dropped_last)));
    let mut repeated = all.clone();
    repeated.insert(1, 0);
    cases.push(("repeat segment 0".into(), build(&repeated)));
    let mut appended = all.clone();
    appended.push(n - 1);
    cases.push(("append the last segment again".into(), build(&appended)));
    let mut extra = original.clone();
    extra.extend_from_slice(&[0u8; 48]);
    cases.push(("append bytes".into(), extra));
    let mut reversed = all.clone();
    reversed.reverse();
    cases.push(("reverse".into(), build(&reversed)));
    for (what, bytes) in cases {
        enc.store(&path, &bytes);
        assert_integrity(enc.download(job), &what);
    }
}

#[test]
fn an_artifact_moved_onto_another_jobs_path_fails() {
    let enc = encrypted(32, 10);
    let (a, b) = (enc.export(), enc.export());
    let ra = enc.engine.get_job(&enc.admin, a).unwrap();
    let rb = enc.engine.get_job(&enc.admin, b).unwrap();
    // Same data, same size and SHA-256: only the path bound into each artifact tells them apart.
    assert_eq!(ra.artifacts[0].sha256, rb.artifacts[0].sha256);
    let (pa, pb) = (format!("{a}/1/dm.txt"), format!("{b}/1/dm.txt"));
    let (sa, sb) = (enc.raw.get(&pa).unwrap(), enc.raw.get(&pb).unwrap());
    assert_ne!(sa, sb, "fresh keys and nonces per artifact");
    enc.store(&pa, &sb);
    enc.store(&pb, &sa);
    assert_integrity(enc.download(a), "b's artifact at a's path");
    assert_integrity(enc.download(b), "a's artifact at b's path");
    // The manifest moved onto the data artifact's path fails too.
    enc.store(&pa, &enc.raw.get(&format!("{a}/1/manifest.json")).unwrap());
    assert_integrity(enc.download(a), "manifest at the data path");
}

#[test]
fn a_plain_file_a_missing_key_or_another_key_fails() {
    let enc = encrypted(64 * 1024, 10);
    let job = enc.export();
    let path = format!("{job}/1/dm.txt");
    let stored = enc.raw.get(&path).unwrap();
    // No fallback to plaintext: a plain file where an encrypted one belongs is refused.
    enc.store(&path, b"USUBJID|SEX|AGE|WEIGHT\n");
    assert_integrity(enc.download(job), "plain file");
    enc.store(&path, &stored);

    let inner: Arc<dyn Sink> = Arc::new(enc.raw.clone());
    let open = |keys: Arc<dyn KeyProvider>| -> Error {
        EncryptedSink::new(inner.clone(), keys)
            .open(&path)
            .err()
            .unwrap()
    };
    // Another key directory with a key of the same id.
    let other = tempfile::tempdir().unwrap();
    let e = open(Arc::new(FileKeyProvider::create(other.path()).unwrap()));
    assert_eq!(
        (e.code().as_str(), e.reason()),
        ("EXP005", "integrity_violation")
    );
    // A key directory without the artifact's key.
    let empty = tempfile::tempdir().unwrap();
    let e = open(Arc::new(FileKeyProvider::new(empty.path())));
    assert_eq!(e.reason(), "integrity_violation");
    assert_eq!(e.details()["cause"], "unknown_key");
    assert_eq!(e.details()["key_id"], "kek-0001");
    // The right keys still open it.
    let mut back = Vec::new();
    EncryptedSink::new(inner, enc.keys.clone())
        .open(&path)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(contains(&back, MARKER));
}

#[test]
fn failures_while_reading_are_audited_and_save_to_leaves_nothing() {
    let enc = encrypted(32, 10);
    let job = enc.export();
    let path = format!("{job}/1/dm.txt");
    let original = enc.raw.get(&path).unwrap();
    let out = tempfile::tempdir().unwrap();

    // A good download saves exactly the artifact, into a directory under its own name.
    let saved = enc
        .engine
        .download(&enc.admin, job, None)
        .unwrap()
        .save_to(out.path())
        .unwrap();
    assert_eq!(saved.path, out.path().join("dm.txt"));
    let record = enc.engine.get_job(&enc.admin, job).unwrap();
    assert_eq!(
        (saved.bytes, saved.sha256.clone()),
        (
            record.artifacts[0].bytes,
            record.artifacts[0].sha256.clone()
        )
    );
    assert_eq!(
        sha256_of(std::fs::File::open(&saved.path).unwrap())
            .unwrap()
            .1,
        saved.sha256
    );

    // `save_new` never replaces a file, and saves where nothing is.
    let err = enc
        .engine
        .download(&enc.admin, job, None)
        .unwrap()
        .save_new(&saved.path)
        .unwrap_err();
    assert_eq!(
        (err.code().as_str(), err.reason()),
        ("EXP004", "output_exists")
    );
    let copy = enc
        .engine
        .download(&enc.admin, job, None)
        .unwrap()
        .save_new(&out.path().join("copy.txt"))
        .unwrap();
    assert_eq!(
        std::fs::read(&copy.path).unwrap(),
        std::fs::read(&saved.path).unwrap()
    );
    std::fs::remove_file(&copy.path).unwrap();

    // A byte of the last segment altered: `download` opens, the read fails at the end.
    let mut bad = original.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    enc.store(&path, &bad);
    let target = out.path().join("new.txt");
    let err = enc
        .engine
        .download(&enc.admin, job, None)
        .unwrap()
        .save_to(&target)
        .unwrap_err();
    assert_eq!(
        (err.code().as_str(), err.reason()),
        ("EXP005", "integrity_violation")
    );
    let names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["dm.txt"], "no file and no temp file is left");
    // An existing file at the target is left as it was.
    let before = std::fs::read(&saved.path).unwrap();
    let err = enc
        .engine
        .download(&enc.admin, job, None)
        .unwrap()
        .save_to(&saved.path)
        .unwrap_err();
    assert_eq!(err.reason(), "integrity_violation");
    assert_eq!(std::fs::read(&saved.path).unwrap(), before);

    // Audit: the download succeeded (opened), then its read failed, under the same request id.
    let events = enc.hook.events();
    let n = events.len();
    let (open, failed) = (&events[n - 2], &events[n - 1]);
    assert_eq!(
        (open.action.as_str(), open.outcome),
        ("download", Outcome::Success)
    );
    assert_eq!(
        (failed.action.as_str(), failed.outcome),
        ("download.failed", Outcome::Failed)
    );
    assert_eq!(failed.request_id, open.request_id);
    assert_eq!(err.request_id(), Some(open.request_id.as_str()));
    assert_eq!(failed.target, format!("job:{job}"));
    assert_eq!(failed.details["reason"], "integrity_violation");
    assert_eq!(failed.details["code"], "EXP005");
    assert_eq!(failed.details["artifact"], "dm.txt");
    assert_eq!(failed.actor.subject, open.actor.subject);
    assert_eq!((&failed.org, &failed.study), (&open.org, &open.study));
    assert!(failed.study.is_some(), "the failure names the job's study");

    // A header altered: the download call itself fails, audited as failed.
    let mut bad = original.clone();
    bad[20] ^= 1;
    enc.store(&path, &bad);
    let err = enc.engine.download(&enc.admin, job, None).unwrap_err();
    assert_eq!(err.reason(), "integrity_violation");
    let last = enc.hook.events().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome),
        ("download", Outcome::Failed)
    );
    assert_eq!(last.details["reason"], "integrity_violation");
    // Reading a failed stream again repeats the failure (and is audited once).
    enc.store(&path, &{
        let mut b = original.clone();
        let i = b.len() - 1;
        b[i] ^= 1;
        b
    });
    let mut d = enc.engine.download(&enc.admin, job, None).unwrap();
    let mut sink = Vec::new();
    let e1 = d.reader.read_to_end(&mut sink).unwrap_err();
    let e2 = d.reader.read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(download_error(&e1).reason(), "integrity_violation");
    assert_eq!(download_error(&e2).reason(), "integrity_violation");
    let failures = enc
        .hook
        .events()
        .iter()
        .filter(|e| e.action == "download.failed")
        .count();
    assert_eq!(failures, 3);
}

/// A home-wired engine over `dir` with the marker data.
fn home_engine(dir: &Path) -> Engine {
    Engine::builder()
        .formats(registry())
        .source(marker_source(20))
        .home(dir)
        .unwrap()
        .workers(1)
        .build()
        .unwrap()
}

#[test]
fn a_new_home_encrypts_and_rotation_keeps_old_artifacts_readable() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::init(dir.path(), "acme", None).unwrap();
    assert!(home.config().encryption);
    let kek = dir.path().join("keys/kek-0001.key");
    assert!(kek.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&kek).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let e = home_engine(dir.path());
    let admin = format!("ApiKey {}", e.create_initial_admin_key("acme").unwrap());
    let export = |e: &Engine| {
        let j = e
            .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
            .unwrap();
        assert_eq!(
            e.wait(&admin, j.id, WAIT).unwrap().state,
            JobState::Succeeded
        );
        j.id
    };
    let on_disk = |job: Uuid| {
        std::fs::read(
            dir.path()
                .join("artifacts")
                .join(job.to_string())
                .join("1")
                .join("dm.txt"),
        )
        .unwrap()
    };
    let first = export(&e);
    assert_eq!(key_id(&on_disk(first)), "kek-0001");
    assert!(!contains(&on_disk(first), MARKER));

    // Only an admin rotates; the rotation is audited with the key ids.
    let stat = key(&e, &admin, &[Role::Statistician], &["S1"]);
    assert_eq!(
        e.session(&stat)
            .rotate_encryption_key()
            .unwrap_err()
            .code()
            .as_str(),
        "EXP003"
    );
    assert_eq!(
        e.session(&admin).rotate_encryption_key().unwrap(),
        "kek-0002"
    );
    let ev = e.session(&admin).audit_events(1, 1000).unwrap();
    let rot = ev
        .iter()
        .find(|x| x.action == "rotate_encryption_key" && x.outcome == Outcome::Success)
        .unwrap();
    assert_eq!(rot.details["key_id"], "kek-0002");
    assert_eq!(rot.details["previous_key_id"], "kek-0001");

    let second = export(&e);
    assert_eq!(key_id(&on_disk(second)), "kek-0002");
    let a = e
        .download(&admin, first, None)
        .unwrap()
        .into_bytes()
        .unwrap();
    let b = e
        .download(&admin, second, None)
        .unwrap()
        .into_bytes()
        .unwrap();
    assert_eq!(a, b);
    assert!(contains(&a, MARKER));
    // Another process (a new engine on the home) reads both.
    drop(e);
    let e = home_engine(dir.path());
    assert_eq!(
        e.download(&admin, first, None)
            .unwrap()
            .into_bytes()
            .unwrap(),
        a
    );
    assert_eq!(
        e.download(&admin, second, None)
            .unwrap()
            .into_bytes()
            .unwrap(),
        a
    );
    // Deleting a KEK makes its artifacts unreadable (crypto-shredding), not the others.
    std::fs::remove_file(&kek).unwrap();
    drop(e);
    let e = home_engine(dir.path());
    let err = e.download(&admin, first, None).unwrap_err();
    assert_eq!(
        (err.reason(), err.details()["cause"].as_str()),
        ("integrity_violation", Some("unknown_key"))
    );
    assert_eq!(
        e.download(&admin, second, None)
            .unwrap()
            .into_bytes()
            .unwrap(),
        a
    );
}

#[test]
fn a_home_made_before_encryption_stays_plain() {
    let dir = tempfile::tempdir().unwrap();
    Home::init(dir.path(), "acme", None).unwrap();
    // What an older version wrote: no `encryption` member, no keys.
    let config_path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("encryption");
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    std::fs::remove_dir_all(dir.path().join("keys")).unwrap();
    assert!(!Home::open(dir.path()).unwrap().config().encryption);

    let e = home_engine(dir.path());
    let admin = format!("ApiKey {}", e.create_initial_admin_key("acme").unwrap());
    let j = e
        .export_data(&admin, ExportRequest::data("S1", &["DM"], "lines"))
        .unwrap();
    assert_eq!(
        e.wait(&admin, j.id, WAIT).unwrap().state,
        JobState::Succeeded
    );
    let stored = std::fs::read(
        dir.path()
            .join("artifacts")
            .join(j.id.to_string())
            .join("1")
            .join("dm.txt"),
    )
    .unwrap();
    assert!(contains(&stored, MARKER));
    assert_eq!(
        e.download(&admin, j.id, None)
            .unwrap()
            .into_bytes()
            .unwrap(),
        stored
    );
    let err = e.session(&admin).rotate_encryption_key().unwrap_err();
    assert_eq!(
        (err.code().as_str(), err.reason()),
        ("EXP002", "encryption_disabled")
    );
}

#[test]
fn a_home_can_be_made_without_encryption_by_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let settings =
        trialport_core::home::HomeConfig::from_settings_json(r#"{"org": "acme"}"#).unwrap();
    assert!(
        settings.encryption,
        "new homes encrypt unless told otherwise"
    );
    let off = trialport_core::home::HomeConfig::from_settings_json(
        r#"{"org": "acme", "encryption": false}"#,
    )
    .unwrap();
    let home = Home::init_with(dir.path(), &off).unwrap();
    assert!(!home.config().encryption);
    assert!(home.key_provider().is_none());
    assert!(!dir.path().join("keys").exists(), "no unused key is left");
    assert!(!Home::open(dir.path()).unwrap().config().encryption);
}

/// Peak resident memory of this process so far, in KiB (`VmHWM`), where the system reports it.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// 2 GiB of plaintext through the writer and back through the reader, over a pipe between two threads, so that
/// neither side can hold it: the peak RSS grows by far less than the data, and the bytes read back hash to what
/// was written.
#[test]
fn two_gigabytes_stream_through_with_flat_memory() {
    const TOTAL: u64 = 2 << 30;
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(FileKeyProvider::create(dir.path()).unwrap());
    let before = peak_rss_kib();
    let (reader, writer) = std::io::pipe().unwrap();
    let wkeys = keys.clone();
    let producer = std::thread::spawn(move || {
        let mut w = EncryptingWriter::new(
            std::io::BufWriter::with_capacity(256 * 1024, writer),
            wkeys.as_ref(),
            "big/lb.csv",
            trialport_core::crypto::DEFAULT_SEGMENT_SIZE,
        )
        .unwrap();
        // 1 MiB of varying text, written 2,048 times with a counter so no two pieces are equal.
        let mut piece: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 23) as u8).collect();
        let mut written = 0u64;
        let mut n = 0u32;
        while written < TOTAL {
            piece[..4].copy_from_slice(&n.to_be_bytes());
            w.write_all(&piece).unwrap();
            written += piece.len() as u64;
            n += 1;
        }
        let (_, bytes, sha) = w.finish().unwrap();
        (bytes, sha)
    });
    let mut r = DecryptingReader::new(
        std::io::BufReader::with_capacity(256 * 1024, reader),
        keys.as_ref(),
        "big/lb.csv",
    )
    .unwrap();
    let (read_bytes, read_sha) = sha256_of(&mut r).unwrap();
    let (bytes, sha) = producer.join().unwrap();
    assert_eq!(bytes, TOTAL);
    assert_eq!((read_bytes, read_sha), (bytes, sha));
    if let (Some(b), Some(a)) = (before, peak_rss_kib()) {
        // Both sides hold a segment and a buffer or two: well under 64 MiB, against 2 GiB of data.
        assert!(
            a.saturating_sub(b) < 64 * 1024,
            "peak RSS grew by {} KiB",
            a - b
        );
    }
}
