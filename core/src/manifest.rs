//! The manifest of a finished job: what was asked, by whom, and every artifact with its SHA-256, size and rows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The manifest schema version.
pub const MANIFEST_VERSION: u32 = 1;

/// One file listed in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path (inside the package, or the artifact name).
    pub path: String,
    /// Media type.
    pub media_type: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Rows written, for datasets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Rows the source yielded for the dataset (equal to `rows`, or the job fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_rows: Option<u64>,
    /// Dataset name, for datasets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

/// Who asked for the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPrincipal {
    /// Subject id.
    pub subject: String,
    /// Printed name.
    pub name: String,
    /// Organization.
    pub org: String,
}

/// A job's manifest (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Schema version of this document.
    pub manifest_version: u32,
    /// `trialport <version>`.
    pub engine: String,
    /// Job id.
    pub job_id: Uuid,
    /// Job kind.
    pub kind: String,
    /// Study id.
    pub study: String,
    /// Format id.
    pub format: String,
    /// Who asked.
    pub requested_by: ManifestPrincipal,
    /// When the job was created.
    pub created_at: DateTime<Utc>,
    /// When the artifacts were completed.
    pub completed_at: DateTime<Utc>,
    /// The full request.
    pub request: serde_json::Value,
    /// De-identification applied (`null`: none).
    pub deidentification: Option<serde_json::Value>,
    /// Files, in order.
    pub files: Vec<ManifestEntry>,
    /// The rendered document of a report or dashboard job (absent for other jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<ManifestDocument>,
    /// Electronic signatures bound to this manifest.
    pub signatures: Vec<serde_json::Value>,
}

/// What the manifest of a report or dashboard job records of its document.
///
/// A rendered document cannot print the SHA-256 of the manifest that signs it (the manifest lists the document's
/// own SHA-256), so it prints this `content_sha256` instead: the hash of the computed content
/// ([`crate::document::Document::content_sha256`]), which the signed manifest records here. A reader of a page,
/// even a printed one, ties it to its manifest by this value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestDocument {
    /// The artifact holding the rendered document, e.g. `report.pdf`.
    pub artifact: String,
    /// The SHA-256 (hex) of the document's computed content, as the document prints it.
    pub content_sha256: String,
}

impl Manifest {
    /// Pretty JSON bytes with a trailing newline (deterministic: struct field order, no maps with random order).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// What [`verify_package`] checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The manifest's job id.
    pub job_id: Uuid,
    /// Files whose size and SHA-256 matched.
    pub files_verified: usize,
    /// The manifest's e-signatures, each verified (see [`crate::signature::verify_signatures`]).
    pub signatures: Vec<crate::signature::VerifiedSignature>,
}

fn integrity(message: &str, path: &str) -> crate::Error {
    crate::Error::server("integrity_violation", message.to_string()).with_detail("path", path)
}

/// Verifies the e-signatures of a manifest's bytes.
fn check_signatures(
    bytes: &[u8],
    trusted: Option<&crate::signature::PublicKey>,
) -> crate::Result<Vec<crate::signature::VerifiedSignature>> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| {
        crate::Error::validation("invalid_manifest", "manifest.json cannot be read")
            .with_field("package")
    })?;
    crate::signature::verify_signatures(&value, trusted)
}

fn read_manifest(bytes: &[u8]) -> crate::Result<Manifest> {
    serde_json::from_slice(bytes).map_err(|_| {
        crate::Error::validation("invalid_manifest", "manifest.json cannot be read")
            .with_field("package")
    })
}

fn check_entry(entry: &ManifestEntry, bytes: u64, sha256: &str) -> crate::Result<()> {
    if bytes != entry.bytes || sha256 != entry.sha256 {
        return Err(integrity(
            "a file does not match the size and SHA-256 in its manifest",
            &entry.path,
        ));
    }
    Ok(())
}

/// The most entries a zip package may hold.
pub const MAX_PACKAGE_ENTRIES: usize = 65_536;
/// The largest `manifest.json` read from a package, in bytes.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;
/// The highest ratio of uncompressed to compressed size of a zip entry (deflate cannot exceed about 1,032:1;
/// anything above this is a crafted entry), checked for entries over 1 MiB.
pub const MAX_COMPRESSION_RATIO: u64 = 1_100;

fn unsafe_package(message: &str, path: &str) -> crate::Error {
    crate::Error::validation("unsafe_package", message.to_string())
        .with_field("package")
        .with_detail("path", path)
}

/// Checks a package against its manifest: a bulk zip (with `manifest.json` inside) or a job's artifact directory
/// (with `manifest.json` beside the files). Every listed file must exist with its recorded size and SHA-256, and
/// a zip may hold no file the manifest does not list. The manifest's e-signatures must verify with the keys they
/// carry (see [`verify_package_with`] to require a trusted key).
///
/// A zip is read defensively: at most [`MAX_PACKAGE_ENTRIES`] entries, each name a safe relative path (no `..`,
/// absolute path, backslash or control character: no zip-slip), no two entries sharing bytes (overlapping entries
/// are how the smallest zip bombs are built), no entry inflating more than [`MAX_COMPRESSION_RATIO`] times, a
/// manifest of at most [`MAX_MANIFEST_BYTES`], and never more bytes read from an entry than its manifest records
/// plus one: a bomb costs the time to read its recorded size, not its inflated size.
///
/// # Errors
/// EXP005 `integrity_violation` with `details.path` of the first bad file; EXP002 `invalid_manifest`,
/// `invalid_package`, or `unsafe_package` for a zip breaking a limit above; EXP001 when the path does not exist.
pub fn verify_package(path: &std::path::Path) -> crate::Result<VerifyReport> {
    verify_package_with(path, None)
}

/// [`verify_package`], then every e-signature of the manifest: each must belong to this manifest and verify with
/// the key it carries, which must be `trusted` when given (see the trust model in [`crate::signature`]: a key in
/// the package proves integrity, a key obtained out of band proves origin).
///
/// # Errors
/// As [`verify_package`]; EXP005 `integrity_violation` with `details.signature` and `details.problem` for a
/// signature that fails.
pub fn verify_package_with(
    path: &std::path::Path,
    trusted: Option<&crate::signature::PublicKey>,
) -> crate::Result<VerifyReport> {
    use std::io::Read;
    if !path.exists() {
        return Err(crate::Error::not_found("the package does not exist").with_field("package"));
    }
    if path.is_dir() {
        let manifest = std::fs::read(path.join("manifest.json"))
            .map_err(|_| integrity("the package has no manifest", "manifest.json"))?;
        let manifest_bytes = manifest;
        let manifest = read_manifest(&manifest_bytes)?;
        for entry in &manifest.files {
            crate::sink::validate_path(&entry.path)?;
            let file = std::fs::File::open(path.join(&entry.path))
                .map_err(|_| integrity("a file listed in the manifest is missing", &entry.path))?;
            let (bytes, sha) = crate::sink::sha256_of(file)
                .map_err(|e| crate::Error::io("cannot read a package file", &e))?;
            check_entry(entry, bytes, &sha)?;
        }
        return Ok(VerifyReport {
            job_id: manifest.job_id,
            files_verified: manifest.files.len(),
            signatures: check_signatures(&manifest_bytes, trusted)?,
        });
    }
    let file =
        std::fs::File::open(path).map_err(|e| crate::Error::io("cannot open the package", &e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|_| {
        crate::Error::validation(
            "invalid_package",
            "the package is not a zip file or a directory",
        )
        .with_field("package")
    })?;
    check_zip_layout(&mut zip)?;
    let mut text = Vec::new();
    zip.by_name("manifest.json")
        .map_err(|_| integrity("the package has no manifest", "manifest.json"))?
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|_| integrity("the package's manifest is damaged", "manifest.json"))?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(unsafe_package(
            "the package's manifest is larger than any trialport writes",
            "manifest.json",
        ));
    }
    let manifest = read_manifest(&text)?;
    let mut listed: std::collections::BTreeSet<&str> =
        manifest.files.iter().map(|f| f.path.as_str()).collect();
    listed.insert("manifest.json");
    for i in 0..zip.len() {
        let name = zip
            .by_index(i)
            .map_err(|_| integrity("the package is damaged", "-"))?
            .name()
            .map(|n| n.to_string())
            .map_err(|_| integrity("the package is damaged", "-"))?;
        if !listed.contains(name.as_str()) {
            return Err(integrity(
                "the package holds a file its manifest does not list",
                &name,
            ));
        }
    }
    for entry in &manifest.files {
        let f = zip
            .by_name(&entry.path)
            .map_err(|_| integrity("a file listed in the manifest is missing", &entry.path))?;
        // One byte more than recorded is enough to tell a mismatch; nothing beyond is inflated.
        let (bytes, sha) = crate::sink::sha256_of(f.take(entry.bytes.saturating_add(1)))
            .map_err(|_| integrity("a file in the package is damaged", &entry.path))?;
        check_entry(entry, bytes, &sha)?;
    }
    Ok(VerifyReport {
        job_id: manifest.job_id,
        files_verified: manifest.files.len(),
        signatures: check_signatures(&text, trusted)?,
    })
}

/// Checks a zip's central directory before anything is inflated: entry count, entry names, compression ratios and
/// overlapping entries.
fn check_zip_layout<R: std::io::Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
) -> crate::Result<()> {
    if zip.len() > MAX_PACKAGE_ENTRIES {
        return Err(
            unsafe_package("the package holds more entries than allowed", "-")
                .with_detail("entries", zip.len())
                .with_detail("limit", MAX_PACKAGE_ENTRIES),
        );
    }
    let mut ranges = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|_| integrity("the package is damaged", "-"))?;
        let name = entry
            .name()
            .map(|n| n.to_string())
            .map_err(|_| integrity("the package is damaged", "-"))?;
        if crate::sink::validate_path(&name).is_err() {
            return Err(unsafe_package(
                "the package holds an entry whose name is not a safe relative path",
                "-",
            ));
        }
        let (size, compressed) = (entry.size(), entry.compressed_size());
        if size > 1024 * 1024 && size / compressed.max(1) > MAX_COMPRESSION_RATIO {
            return Err(unsafe_package(
                "an entry of the package inflates beyond any real file's compression ratio",
                &name,
            ));
        }
        let start = entry.header_start();
        // The local header is at least 30 bytes and the name; the data follows (the extra field, if any,
        // only makes the entry longer, so this end is a lower bound and any overlap it shows is real).
        let end = entry
            .data_start()
            .unwrap_or(start + 30 + name.len() as u64)
            .saturating_add(compressed);
        ranges.push((start, end, name));
    }
    ranges.sort();
    for pair in ranges.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(unsafe_package(
                "two entries of the package share bytes",
                &pair[1].2,
            ));
        }
    }
    Ok(())
}
