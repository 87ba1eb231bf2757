//! The manifest of a finished job: what was asked, by whom, and every artifact with its SHA-256, size and rows.

use crate::error::Reason;
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

/// Whether a package is signed, and by whom, as [`verify_package`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SignatureStatus {
    /// Signed, and every signature verified with the trusted public key given: integrity and origin.
    Signed,
    /// Signed, and every signature verified with the public key it carries, no trusted key being given:
    /// integrity only, since whoever rewrites a package can sign it again with a key of their own.
    Untrusted,
    /// No e-signature at all.
    Unsigned,
}

impl SignatureStatus {
    /// `SIGNED`, `UNTRUSTED` or `UNSIGNED`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureStatus::Signed => "SIGNED",
            SignatureStatus::Untrusted => "UNTRUSTED",
            SignatureStatus::Unsigned => "UNSIGNED",
        }
    }
}

/// Why a package must carry a valid e-signature (`details.required_for` of the EXP003 `signature_required` of an
/// unsigned one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureRequirement {
    /// A trusted public key was given: at least one signature made by it is required.
    PublicKey,
    /// The manifest describes an eCTD package (a regulatory submission), which is always signed.
    EctdPackage,
}

impl SignatureRequirement {
    /// `public_key` or `ectd_package`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureRequirement::PublicKey => "public_key",
            SignatureRequirement::EctdPackage => "ectd_package",
        }
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
    /// Whether the package is signed, and with which key its signatures verified.
    pub signature_status: SignatureStatus,
    /// Why the package must be signed, when it must.
    pub signature_required: Option<SignatureRequirement>,
}

impl VerifyReport {
    /// `Ok` unless the package must be signed (see [`SignatureRequirement`]) and carries no signature.
    ///
    /// # Errors
    /// EXP003 `signature_required` with field `package` and details `signature_status` (`UNSIGNED`) and
    /// `required_for` (`public_key` or `ectd_package`).
    pub fn require_signature(&self) -> crate::Result<()> {
        match (self.signature_status, self.signature_required) {
            (SignatureStatus::Unsigned, Some(why)) => Err(crate::Error::unauthorized(
                Reason::SignatureRequired,
                match why {
                    SignatureRequirement::PublicKey => {
                        "the package is UNSIGNED: a trusted public key was given, so a signature made by it is required"
                    }
                    SignatureRequirement::EctdPackage => {
                        "the package is UNSIGNED: an eCTD package must carry a valid e-signature"
                    }
                },
            )
            .with_field("package")
            .with_detail("signature_status", SignatureStatus::Unsigned.as_str())
            .with_detail("required_for", why.as_str())),
            _ => Ok(()),
        }
    }
}

fn integrity(message: &str, path: &str) -> crate::Error {
    crate::Error::server(Reason::IntegrityViolation, message.to_string()).with_detail("path", path)
}

/// Verifies the e-signatures of a manifest's bytes.
fn check_signatures(
    bytes: &[u8],
    trusted: Option<&crate::signature::PublicKey>,
) -> crate::Result<Vec<crate::signature::VerifiedSignature>> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| {
        crate::Error::validation(Reason::InvalidManifest, "manifest.json cannot be read")
            .with_field("package")
    })?;
    crate::signature::verify_signatures(&value, trusted)
}

fn read_manifest(bytes: &[u8]) -> crate::Result<Manifest> {
    serde_json::from_slice(bytes).map_err(|_| {
        crate::Error::validation(Reason::InvalidManifest, "manifest.json cannot be read")
            .with_field("package")
    })
}

/// Whether a manifest describes an eCTD package: its request asked for `package: "ectd"`, or it lists files of
/// the eCTD Module 5 tree (`m5/...`), so that rewriting the request alone does not make a submission unsigned.
pub fn is_ectd_manifest(manifest: &Manifest) -> bool {
    manifest
        .request
        .get("package")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|p| p.eq_ignore_ascii_case("ectd"))
        || manifest.files.iter().any(|f| f.path.starts_with("m5/"))
}

/// The report of a package whose files matched: its signatures verified, its status and requirement.
fn report(
    manifest: &Manifest,
    manifest_bytes: &[u8],
    trusted: Option<&crate::signature::PublicKey>,
) -> crate::Result<VerifyReport> {
    let signatures = check_signatures(manifest_bytes, trusted)?;
    let signature_status = match (signatures.is_empty(), trusted.is_some()) {
        (true, _) => SignatureStatus::Unsigned,
        (false, true) => SignatureStatus::Signed,
        (false, false) => SignatureStatus::Untrusted,
    };
    let signature_required = if trusted.is_some() {
        Some(SignatureRequirement::PublicKey)
    } else if is_ectd_manifest(manifest) {
        Some(SignatureRequirement::EctdPackage)
    } else {
        None
    };
    Ok(VerifyReport {
        job_id: manifest.job_id,
        files_verified: manifest.files.len(),
        signatures,
        signature_status,
        signature_required,
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
    crate::Error::validation(Reason::UnsafePackage, message.to_string())
        .with_field("package")
        .with_detail("path", path)
}

/// Checks a package against its manifest and its e-signatures, strictly: a bulk zip (with `manifest.json`
/// inside) or a job's artifact directory (with `manifest.json` beside the files).
///
/// - Files: every listed file must exist with its recorded size and SHA-256, and the package may hold nothing
///   else: no file or folder the manifest does not list (folders on the way to a listed file excepted), besides
///   `manifest.json` itself. In a directory, nothing may be a symbolic link (file or folder, at any depth; the
///   path given may itself be one) or anything but a regular file or a folder, and each file must still be the
///   one the walk saw when it is read.
/// - Signatures: every e-signature must belong to this manifest and verify with the key it carries, which must be
///   `trusted` when given (see the trust model in [`crate::signature`]: a key in the package proves integrity,
///   a key obtained out of band proves origin). A manifest whose request asked for a signature must carry one.
/// - A signature is required (see [`VerifyReport::require_signature`]) when `trusted` is given, and for an eCTD
///   package ([`is_ectd_manifest`]) even without it: then the key the signature carries verifies it, and the
///   report says [`SignatureStatus::Untrusted`] (signed, but by a key nobody vouched for). Any other package may
///   be [`SignatureStatus::Unsigned`].
///
/// A zip is read defensively: at most [`MAX_PACKAGE_ENTRIES`] entries, each name a safe relative path (no `..`,
/// absolute path, backslash or control character: no zip-slip), no two entries sharing bytes (overlapping entries
/// are how the smallest zip bombs are built), no entry inflating more than [`MAX_COMPRESSION_RATIO`] times, a
/// manifest of at most [`MAX_MANIFEST_BYTES`], and never more bytes read from an entry than its manifest records
/// plus one: a bomb costs the time to read its recorded size, not its inflated size. A directory is held to the
/// same entry count and manifest size.
///
/// # Errors
/// EXP005 `integrity_violation` with `details.path` of the first bad, missing or unlisted file or folder, or with
/// `details.signature` and `details.problem` for a signature that fails; EXP003 `signature_required` for an
/// unsigned package that must be signed; EXP002 `invalid_manifest`, `invalid_package`, or `unsafe_package` (a
/// limit above, a symbolic link, a special file); EXP001 when the path does not exist.
pub fn verify_package(path: &std::path::Path) -> crate::Result<VerifyReport> {
    verify_package_with(path, None)
}

/// [`verify_package`] with a trusted public key (obtained out of band): every signature must be made by it, and
/// at least one is required.
///
/// # Errors
/// As [`verify_package`].
pub fn verify_package_with(
    path: &std::path::Path,
    trusted: Option<&crate::signature::PublicKey>,
) -> crate::Result<VerifyReport> {
    let report = inspect_package(path, trusted)?;
    report.require_signature()?;
    Ok(report)
}

/// [`verify_package_with`], except that a package that must be signed but carries no signature is reported, not
/// refused: the report says [`SignatureStatus::Unsigned`] with its [`VerifyReport::signature_required`], and
/// [`VerifyReport::require_signature`] gives the error. For callers that show the report before failing (the
/// CLI); anything that acts on a package should call [`verify_package_with`].
///
/// # Errors
/// As [`verify_package`], but for EXP003 `signature_required`.
pub fn inspect_package(
    path: &std::path::Path,
    trusted: Option<&crate::signature::PublicKey>,
) -> crate::Result<VerifyReport> {
    use std::io::Read;
    if !path.exists() {
        return Err(crate::Error::not_found("the package does not exist").with_field("package"));
    }
    if path.is_dir() {
        return inspect_directory(path, trusted);
    }
    let file =
        std::fs::File::open(path).map_err(|e| crate::Error::io("cannot open the package", &e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|_| {
        crate::Error::validation(
            Reason::InvalidPackage,
            "the package is not a zip file or a directory",
        )
        .with_field("package")
    })?;
    let spans = check_zip_layout(&mut zip)?;
    check_zip_bounds(path, &zip, spans)?;
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
        let (bytes, sha) = crate::hashing::sha256_of(f.take(entry.bytes.saturating_add(1)))
            .map_err(|_| integrity("a file in the package is damaged", &entry.path))?;
        check_entry(entry, bytes, &sha)?;
    }
    report(&manifest, &text, trusted)
}

/// What identifies a file across two looks at it (device and inode on Unix), so that a file swapped between the
/// walk and the read is noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    #[cfg(unix)]
    dev: u64,
    #[cfg(unix)]
    ino: u64,
}

impl FileIdentity {
    fn of(meta: &std::fs::Metadata) -> FileIdentity {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileIdentity {
                dev: meta.dev(),
                ino: meta.ino(),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            FileIdentity {}
        }
    }
}

/// A directory package: `manifest.json` (a regular file), then a walk of the whole tree, then each listed file.
fn inspect_directory(
    root: &std::path::Path,
    trusted: Option<&crate::signature::PublicKey>,
) -> crate::Result<VerifyReport> {
    use std::io::Read;
    let manifest_path = root.join("manifest.json");
    match std::fs::symlink_metadata(&manifest_path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(unsafe_package(
                "the package holds a symbolic link",
                "manifest.json",
            ))
        }
        Ok(m) if !m.is_file() => {
            return Err(unsafe_package(
                "the package's manifest is not a regular file",
                "manifest.json",
            ))
        }
        Ok(_) => {}
        Err(_) => return Err(integrity("the package has no manifest", "manifest.json")),
    }
    let mut manifest_bytes = Vec::new();
    std::fs::File::open(&manifest_path)
        .and_then(|f| {
            f.take(MAX_MANIFEST_BYTES + 1)
                .read_to_end(&mut manifest_bytes)
        })
        .map_err(|_| integrity("the package's manifest cannot be read", "manifest.json"))?;
    if manifest_bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(unsafe_package(
            "the package's manifest is larger than any trialport writes",
            "manifest.json",
        ));
    }
    let manifest = read_manifest(&manifest_bytes)?;
    for entry in &manifest.files {
        crate::name::validate_path(&entry.path)?;
    }
    let seen = walk_directory(root, &manifest)?;
    for entry in &manifest.files {
        let Some(identity) = seen.get(entry.path.as_str()) else {
            return Err(integrity(
                "a file listed in the manifest is missing",
                &entry.path,
            ));
        };
        let file = std::fs::File::open(root.join(&entry.path))
            .map_err(|_| integrity("a file listed in the manifest is missing", &entry.path))?;
        let meta = file
            .metadata()
            .map_err(|e| crate::Error::io("cannot read a package file", &e))?;
        if !meta.is_file() || FileIdentity::of(&meta) != *identity {
            return Err(unsafe_package(
                "a file of the package changed while it was checked",
                &entry.path,
            ));
        }
        // One byte more than recorded is enough to tell a mismatch.
        let (bytes, sha) = crate::hashing::sha256_of(file.take(entry.bytes.saturating_add(1)))
            .map_err(|e| crate::Error::io("cannot read a package file", &e))?;
        check_entry(entry, bytes, &sha)?;
    }
    report(&manifest, &manifest_bytes, trusted)
}

/// Walks a directory package without following links; returns the regular files it holds by their relative
/// path. Refuses a symbolic link or special file anywhere, a file the manifest does not list (but
/// `manifest.json` at the top), a folder that leads to no listed file, and more than [`MAX_PACKAGE_ENTRIES`]
/// entries.
fn walk_directory(
    root: &std::path::Path,
    manifest: &Manifest,
) -> crate::Result<std::collections::BTreeMap<String, FileIdentity>> {
    use std::collections::{BTreeMap, BTreeSet};
    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    // Every folder on the way to a listed file.
    let mut folders: BTreeSet<&str> = BTreeSet::new();
    for path in &listed {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            folders.insert(&path[..end]);
            end += 1;
        }
    }
    let mut files = BTreeMap::new();
    let mut entries = 0usize;
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let cannot =
            |e: std::io::Error| crate::Error::io("cannot read a folder of the package", &e);
        let mut names = Vec::new();
        for item in std::fs::read_dir(&dir).map_err(cannot)? {
            entries += 1;
            if entries > MAX_PACKAGE_ENTRIES {
                return Err(
                    unsafe_package("the package holds more entries than allowed", "-")
                        .with_detail("limit", MAX_PACKAGE_ENTRIES),
                );
            }
            names.push(item.map_err(cannot)?.file_name());
        }
        // Sorted, so that the first problem reported is the same on every run and every file system.
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let Some(name) = name.to_str() else {
                return Err(integrity(
                    "the package holds a file its manifest does not list",
                    &format!("{prefix}{}", name.to_string_lossy()),
                ));
            };
            let rel = format!("{prefix}{name}");
            let meta = std::fs::symlink_metadata(&path).map_err(cannot)?;
            let kind = meta.file_type();
            if kind.is_symlink() {
                return Err(unsafe_package("the package holds a symbolic link", &rel));
            } else if kind.is_dir() {
                if !folders.contains(rel.as_str()) {
                    return Err(integrity(
                        "the package holds a folder its manifest does not list",
                        &rel,
                    ));
                }
                pending.push((path, format!("{rel}/")));
            } else if kind.is_file() {
                if !listed.contains(rel.as_str()) && rel != "manifest.json" {
                    return Err(integrity(
                        "the package holds a file its manifest does not list",
                        &rel,
                    ));
                }
                files.insert(rel, FileIdentity::of(&meta));
            } else {
                return Err(unsafe_package(
                    "the package holds something that is neither a file nor a folder",
                    &rel,
                ));
            }
        }
    }
    Ok(files)
}

/// Checks a zip's central directory before anything is inflated: entry count, entry names, compression ratios and
/// overlapping entries.
/// The bytes a data descriptor may take after an entry's data (signature, CRC-32 and two 64-bit sizes).
const MAX_DATA_DESCRIPTOR: u64 = 24;

/// Checks that a zip package is its entries (`spans`: each entry's local header to the end of its data, from
/// [`check_zip_layout`]) and nothing else, as trialport writes it: no bytes before the first
/// entry, none between entries but a data descriptor, none between the last entry and the central directory but
/// one, no archive comment, and the end-of-central-directory record as the file's last 22 bytes. Bytes outside
/// every entry are covered by no hash of the manifest: a package that carries them (a polyglot, smuggled data)
/// is refused, EXP002 `unsafe_package`.
///
/// # Errors
/// EXP002 `unsafe_package`; EXP005 when the file cannot be read.
fn check_zip_bounds<R: std::io::Read + std::io::Seek>(
    path: &std::path::Path,
    zip: &zip::ZipArchive<R>,
    mut spans: Vec<(u64, u64)>,
) -> crate::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let outside = |message: &str| unsafe_package(message, "-");
    if zip.offset() != 0 {
        return Err(outside("the package has bytes before its zip archive"));
    }
    if !zip.comment().is_empty() {
        return Err(outside("the package's zip archive has a comment"));
    }
    let mut file =
        std::fs::File::open(path).map_err(|e| crate::Error::io("cannot open the package", &e))?;
    let len = file
        .metadata()
        .map_err(|e| crate::Error::io("cannot read the package", &e))?
        .len();
    let mut tail = [0u8; 22];
    if len < tail.len() as u64 {
        return Err(outside("the package is too short for a zip archive"));
    }
    file.seek(SeekFrom::Start(len - tail.len() as u64))
        .and_then(|_| file.read_exact(&mut tail))
        .map_err(|e| crate::Error::io("cannot read the package", &e))?;
    if tail[..4] != *b"PK\x05\x06" || tail[20..] != [0, 0] {
        return Err(outside("the package has bytes after its zip archive"));
    }
    spans.sort_unstable();
    let mut covered = 0u64;
    for (start, end) in spans {
        if start < covered || start - covered > if covered == 0 { 0 } else { MAX_DATA_DESCRIPTOR } {
            return Err(outside(
                "the package has bytes between the entries of its zip archive",
            ));
        }
        covered = end;
    }
    let directory = zip.central_directory_start();
    if directory < covered || directory - covered > MAX_DATA_DESCRIPTOR {
        return Err(outside(
            "the package has bytes between its last entry and its zip directory",
        ));
    }
    Ok(())
}

fn check_zip_layout<R: std::io::Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
) -> crate::Result<Vec<(u64, u64)>> {
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
        if crate::name::validate_path(&name).is_err() {
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
        // Reading the entry located its data after the local header; without it, the package is not what
        // trialport writes.
        let end = entry
            .data_start()
            .ok_or_else(|| integrity("the package is damaged", &name))?
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
    Ok(ranges
        .into_iter()
        .map(|(start, end, _)| (start, end))
        .collect())
}
