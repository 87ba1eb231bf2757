//! `verify_package` reads zips it did not write: hostile names (zip-slip), zip bombs (a huge inflated entry, a
//! lying central directory, overlapping entries), too many entries and an oversized manifest are refused without
//! inflating them.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{Cursor, Write};
use std::path::Path;
use trialport_core::hashing::sha256_of;
use trialport_core::manifest::{verify_package, MAX_PACKAGE_ENTRIES};
use zip::write::SimpleFileOptions;

fn manifest_for(files: &[(&str, &[u8])]) -> Vec<u8> {
    let entries: Vec<serde_json::Value> = files
        .iter()
        .map(|(path, bytes)| {
            let (n, sha) = sha256_of(*bytes).unwrap();
            serde_json::json!({"path": path, "media_type": "text/csv", "bytes": n, "sha256": sha})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "manifest_version": 1,
        "engine": "trialport test",
        "job_id": "01890000-0000-7000-8000-000000000000",
        "kind": "bulk",
        "study": "S1",
        "format": "csv",
        "requested_by": {"subject": "u", "name": "U", "org": "acme"},
        "created_at": "2026-01-01T00:00:00Z",
        "completed_at": "2026-01-01T00:00:00Z",
        "request": {},
        "deidentification": null,
        "files": entries,
        "signatures": []
    }))
    .unwrap()
}

/// A zip of `(name, bytes)` entries, deflated.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        zip.start_file(*name, opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn verify_bytes(bytes: &[u8]) -> trialport_core::Result<usize> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("package.zip");
    std::fs::write(&path, bytes).unwrap();
    verify_package(&path).map(|r| r.files_verified)
}

fn reason(r: trialport_core::Result<usize>) -> String {
    r.unwrap_err().reason().to_string()
}

/// Offsets of the central directory records (signature `PK\x01\x02`).
fn central_records(bytes: &[u8]) -> Vec<usize> {
    bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"PK\x01\x02")
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn a_well_formed_package_verifies() {
    let data: &[u8] = b"A,B\n1,2\n";
    let zip = zip_of(&[
        ("S1/dm.csv", data),
        ("manifest.json", &manifest_for(&[("S1/dm.csv", data)])),
    ]);
    assert_eq!(verify_bytes(&zip).unwrap(), 1);
}

#[test]
fn an_entry_inflating_far_beyond_its_recorded_size_is_not_inflated() {
    // 32 MiB of zeros deflate to about 32 KiB; the manifest records 8 bytes. Verification reads 9 bytes of it.
    let small: &[u8] = b"A,B\n1,2\n";
    let manifest = manifest_for(&[("S1/dm.csv", small)]);
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("S1/dm.csv", opts).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..32 {
        zip.write_all(&zeros).unwrap();
    }
    zip.start_file("manifest.json", opts).unwrap();
    zip.write_all(&manifest).unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    assert!(bytes.len() < 2 << 20, "{}", bytes.len());
    assert_eq!(reason(verify_bytes(&bytes)), "integrity_violation");
}

#[test]
fn a_central_directory_claiming_an_impossible_ratio_is_refused() {
    let data = vec![b'x'; 4096];
    let manifest = manifest_for(&[("S1/dm.csv", &data)]);
    let mut bytes = zip_of(&[("S1/dm.csv", &data), ("manifest.json", &manifest)]);
    // Claim 3 GB uncompressed for the first entry (central directory offset 24: uncompressed size).
    let rec = central_records(&bytes)[0];
    bytes[rec + 24..rec + 28].copy_from_slice(&3_000_000_000u32.to_le_bytes());
    assert_eq!(reason(verify_bytes(&bytes)), "unsafe_package");
}

#[test]
fn overlapping_entries_are_refused() {
    let a: &[u8] = b"A,B\n1,2\n";
    let manifest = manifest_for(&[("S1/aa.csv", a), ("S1/bb.csv", a)]);
    let mut bytes = zip_of(&[
        ("S1/aa.csv", a),
        ("S1/bb.csv", a),
        ("manifest.json", &manifest),
    ]);
    // Point the second entry's central record at the first entry's local header (offset 42: local header offset).
    let rec = central_records(&bytes)[1];
    bytes[rec + 42..rec + 46].copy_from_slice(&0u32.to_le_bytes());
    let r = reason(verify_bytes(&bytes));
    assert!(r == "unsafe_package" || r == "integrity_violation", "{r}");
}

#[test]
fn entry_names_that_climb_out_or_are_absolute_are_refused() {
    let data: &[u8] = b"x";
    for name in [
        "../evil.csv",
        "/etc/evil.csv",
        "S1/../../evil.csv",
        "S1\\..\\evil.csv",
        "a/\u{1}b.csv",
    ] {
        let manifest = manifest_for(&[("S1/dm.csv", data)]);
        let zip = zip_of(&[
            ("S1/dm.csv", data),
            (name, data),
            ("manifest.json", &manifest),
        ]);
        assert_eq!(reason(verify_bytes(&zip)), "unsafe_package", "{name:?}");
    }
}

#[test]
fn too_many_entries_are_refused_before_reading_any() {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..=MAX_PACKAGE_ENTRIES {
        zip.start_file(format!("f/{i}"), opts).unwrap();
    }
    let bytes = zip.finish().unwrap().into_inner();
    assert_eq!(reason(verify_bytes(&bytes)), "unsafe_package");
}

#[test]
fn an_oversized_manifest_is_not_read_whole() {
    let mut huge = b"{\"files\": [".to_vec();
    huge.extend(std::iter::repeat_n(b' ', 17 << 20));
    let zip = zip_of(&[("manifest.json", &huge)]);
    assert_eq!(reason(verify_bytes(&zip)), "unsafe_package");
}

#[test]
fn a_directory_package_with_a_climbing_path_in_its_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data: &[u8] = b"x";
    std::fs::write(
        dir.path().join("manifest.json"),
        manifest_for(&[("../outside.csv", data)]),
    )
    .unwrap();
    let err = verify_package(Path::new(dir.path())).unwrap_err();
    assert_eq!(err.reason(), "invalid_path");
}
