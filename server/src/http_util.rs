//! Small HTTP pieces: JSON bodies with a size limit, the mount prefix, `Range`, `Content-Disposition`,
//! `Repr-Digest` and pagination links.

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::OriginalUri;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use base64::Engine as _;
use trialport_core::error::Reason;
use trialport_core::Error;

/// Reads a JSON request body of at most `limit` bytes as text.
///
/// # Errors
/// 415 EXP002 `unsupported_media_type` unless `Content-Type` is `application/json` (or a `+json` type); 413
/// EXP002 `body_too_large` past `limit`; 400 EXP002 `invalid_request` for a body that is not UTF-8.
pub(crate) async fn json_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    request_id: &str,
) -> Result<String, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let essence = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"))
        })
        .unwrap_or(false);
    if !is_json {
        return Err(ApiError::made(
            Error::validation(
                Reason::UnsupportedMediaType,
                "the request body must be JSON (Content-Type: application/json)",
            )
            .with_field("Content-Type"),
            request_id,
        )
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    let too_large = || {
        ApiError::made(
            Error::validation(
                Reason::BodyTooLarge,
                format!("the request body is larger than {limit} bytes"),
            )
            .with_detail("max_bytes", limit as u64),
            request_id,
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large());
                }
                source = s.source();
            }
            return Err(ApiError::made(
                Error::validation(Reason::InvalidRequest, "the request body could not be read"),
                request_id,
            ));
        }
    };
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        ApiError::made(
            Error::validation(Reason::InvalidRequest, "the request body is not UTF-8 text"),
            request_id,
        )
    })
}

/// The path prefix the router is mounted under (empty when it is served at the root): the original path less the
/// path the router saw.
pub(crate) fn mount_prefix(original: &OriginalUri, uri: &Uri) -> String {
    let full = original.0.path();
    let own = uri.path();
    full.strip_suffix(own).unwrap_or("").to_string()
}

/// A byte range of a representation of `size` bytes, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteRange {
    pub(crate) first: u64,
    pub(crate) last: u64,
}

/// What a `Range` header asks of a representation of `size` bytes (RFC 9110 §14).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeAsk {
    /// No range, or one the service ignores (several ranges, another unit, bad syntax): the whole representation.
    Whole,
    /// One satisfiable range: 206.
    Part(ByteRange),
    /// One range that starts past the end: 416.
    Unsatisfiable,
}

/// Parses a `Range` header value for a representation of `size` bytes. Only a single `bytes` range is served;
/// RFC 9110 lets a server ignore other forms and send the whole representation.
pub(crate) fn parse_range(value: &str, size: u64) -> RangeAsk {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim().is_empty(), num(a), num(b)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part(ByteRange {
                    first: size.saturating_sub(n),
                    last: size - 1,
                })
            }
        }
        (false, Some(first), last) if b.trim().is_empty() || last.is_some() => {
            if last.is_some_and(|l| l < first) {
                return RangeAsk::Whole;
            }
            if first >= size {
                return RangeAsk::Unsatisfiable;
            }
            RangeAsk::Part(ByteRange {
                first,
                last: last.map_or(size - 1, |l| l.min(size - 1)),
            })
        }
        _ => RangeAsk::Whole,
    }
}

/// `attachment; filename="NAME"; filename*=UTF-8''NAME` for an artifact (the last part of its path), with
/// anything outside a safe ASCII set replaced in the plain form and percent-encoded in the extended one.
pub(crate) fn content_disposition(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let plain: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+ ()".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut extended = String::new();
    for b in base.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            extended.push(b as char);
        } else {
            extended.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{extended}")
}

/// `Repr-Digest: sha-256=:<base64>:` (RFC 9530) of a lowercase hex SHA-256; `None` for text that is not one.
pub(crate) fn repr_digest(sha256_hex: &str) -> Option<String> {
    if sha256_hex.len() != 64 {
        return None;
    }
    let bytes = trialport_core::codec::hex_decode(sha256_hex)?;
    Some(format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// Whether an `If-None-Match` value matches the strong entity tag `etag` (weak comparison, RFC 9110 §13.1.2).
pub(crate) fn none_match(value: &str, etag: &str) -> bool {
    let bare = etag.trim_start_matches("W/");
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let p = |v: &str| parse_range(v, 100);
        let part = |first, last| RangeAsk::Part(ByteRange { first, last });
        assert_eq!(p("bytes=0-9"), part(0, 9));
        assert_eq!(p("bytes=90-"), part(90, 99));
        assert_eq!(p("bytes=90-200"), part(90, 99));
        assert_eq!(p("bytes=-10"), part(90, 99));
        assert_eq!(p("bytes=-500"), part(0, 99));
        assert_eq!(p("bytes=100-"), RangeAsk::Unsatisfiable);
        assert_eq!(p("bytes=-0"), RangeAsk::Unsatisfiable);
        assert_eq!(p("bytes=0-1,5-6"), RangeAsk::Whole);
        assert_eq!(p("items=0-1"), RangeAsk::Whole);
        assert_eq!(p("bytes=5-1"), RangeAsk::Whole);
        assert_eq!(p("bytes=a-1"), RangeAsk::Whole);
        assert_eq!(p("bytes=+1-2"), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=0-", 0), RangeAsk::Unsatisfiable);
    }

    #[test]
    fn headers() {
        assert_eq!(
            content_disposition("m5/datasets/dm.xpt"),
            "attachment; filename=\"dm.xpt\"; filename*=UTF-8''dm.xpt"
        );
        assert_eq!(
            content_disposition("a\"b é.csv"),
            "attachment; filename=\"a_b _.csv\"; filename*=UTF-8''a%22b%20%C3%A9.csv"
        );
        // SHA-256 of the empty string.
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            repr_digest(empty).unwrap(),
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
        );
        assert!(repr_digest("xyz").is_none());
        assert!(none_match("\"a\", \"b\"", "\"b\""));
        assert!(none_match("W/\"b\"", "\"b\""));
        assert!(none_match("*", "\"b\""));
        assert!(!none_match("\"c\"", "\"b\""));
    }
}
