//! The signature manifestation every human-readable rendering shows (21 CFR 11.50(b)): for each e-signature of
//! the job, the signer's printed name, the meaning and the date and time (UTC); or that the document is not
//! signed. With it, the SHA-256 of the document's computed content, which the job's signed manifest records as
//! `document.content_sha256`: a rendered document cannot print the hash of the manifest that signs it (that
//! manifest lists the document's own SHA-256), so it prints this value, which ties a page, even a printed one, to
//! its manifest.

use trialport_core::clock::format_utc;
use trialport_core::document::Document;
use trialport_core::error::Result;

/// One signature as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// The signer's printed name.
    pub(crate) printed_name: String,
    /// The meaning, e.g. `approval`.
    pub(crate) meaning: String,
    /// The date and time, RFC 3339 in UTC (`2025-01-21T10:00:00Z`).
    pub(crate) signed_at: String,
}

/// What a rendering shows of a document's signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifestation {
    /// The signatures, in order (empty: unsigned).
    pub(crate) lines: Vec<Line>,
    /// [`Document::content_sha256`].
    pub(crate) content_sha256: String,
}

impl Manifestation {
    /// The manifestation of `doc`.
    ///
    /// # Errors
    /// EXP002 when a table column cannot be displayed (the content hash needs its text).
    pub(crate) fn of(doc: &Document) -> Result<Self> {
        Ok(Manifestation {
            lines: doc
                .signatures
                .iter()
                .map(|s| Line {
                    printed_name: s.printed_name.clone(),
                    meaning: s.meaning.as_str().to_string(),
                    signed_at: format_utc(s.signed_at),
                })
                .collect(),
            content_sha256: doc.content_sha256()?,
        })
    }

    /// What an unsigned document says.
    pub(crate) fn unsigned_text(&self) -> &'static str {
        "This document is not electronically signed."
    }

    /// The words before the content hash.
    pub(crate) fn content_label(&self) -> &'static str {
        "Content SHA-256 (recorded as document.content_sha256 in the job's manifest):"
    }
}
