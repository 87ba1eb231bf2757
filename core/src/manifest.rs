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
    /// Electronic signatures bound to this manifest.
    pub signatures: Vec<serde_json::Value>,
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
}

fn integrity(message: &str, path: &str) -> crate::Error {
    crate::Error::server("integrity_violation", message.to_string()).with_detail("path", path)
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

/// Checks a package against its manifest: a bulk zip (with `manifest.json` inside) or a job's artifact directory
/// (with `manifest.json` beside the files). Every listed file must exist with its recorded size and SHA-256, and
/// a zip may hold no file the manifest does not list.
///
/// # Errors
/// EXP005 `integrity_violation` with `details.path` of the first bad file; EXP002 `invalid_manifest` or
/// `invalid_package`; EXP001 when the path does not exist.
pub fn verify_package(path: &std::path::Path) -> crate::Result<VerifyReport> {
    use std::io::Read;
    if !path.exists() {
        return Err(crate::Error::not_found("the package does not exist").with_field("package"));
    }
    if path.is_dir() {
        let manifest = std::fs::read(path.join("manifest.json"))
            .map_err(|_| integrity("the package has no manifest", "manifest.json"))?;
        let manifest = read_manifest(&manifest)?;
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
    let mut text = Vec::new();
    zip.by_name("manifest.json")
        .map_err(|_| integrity("the package has no manifest", "manifest.json"))?
        .read_to_end(&mut text)
        .map_err(|e| crate::Error::io("cannot read the manifest", &e))?;
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
        let (bytes, sha) = crate::sink::sha256_of(f)
            .map_err(|_| integrity("a file in the package is damaged", &entry.path))?;
        check_entry(entry, bytes, &sha)?;
    }
    Ok(VerifyReport {
        job_id: manifest.job_id,
        files_verified: manifest.files.len(),
    })
}
