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
