//! `GET /api/v1/exports/jobs/{job_id}/download[?artifact=NAME]`: the artifact's bytes, streamed from the engine's
//! reader (which decrypts and verifies as it goes) through a small channel: no full copy in memory or on disk.
//!
//! The last chunk of what is sent is held back until the reader has reached the end of the artifact and verified
//! its size and SHA-256; for a range, the rest of the artifact is read (and dropped) first. A failed verification
//! therefore never ends a response as complete: the body fails, and the server aborts the connection (HTTP/1.1)
//! or resets the stream (HTTP/2) short of `Content-Length`.

use super::job_id;
use crate::context::{credential, RequestCtx};
use crate::error::ApiError;
use crate::http_util::{content_disposition, none_match, parse_range, repr_digest, RangeAsk};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use std::io::{self, Read};
use trialport_core::error::Reason;
use trialport_core::Error;

/// Bytes per chunk sent.
const CHUNK: usize = 64 * 1024;
/// Chunks buffered between the reading thread and the connection.
const CHANNEL: usize = 4;

/// `GET /api/v1/exports/jobs/{job_id}/download`.
pub(crate) async fn download(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let id = job_id(&id, &ctx)?;
        let artifact = form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "artifact")
            .map(|(_, v)| v.into_owned());
        let dl = ctx
            .call(&state, credential(&headers), move |s| {
                s.download(id, artifact.as_deref())
            })
            .await?;
        Ok::<_, ApiError>(respond(dl, &headers, &ctx))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The response for an opened download and the request's conditional and range headers.
fn respond(
    dl: trialport_core::engine::Download,
    headers: &HeaderMap,
    ctx: &RequestCtx,
) -> Response {
    let a = &dl.artifact;
    let size = a.bytes;
    let etag = format!("\"{}\"", a.sha256);
    let mut common = HeaderMap::new();
    let mut put = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            common.insert(name, v);
        }
    };
    put(header::ETAG, &etag);
    put(header::ACCEPT_RANGES, "bytes");
    put(header::CONTENT_DISPOSITION, &content_disposition(&a.name));
    if let Some(d) = repr_digest(&a.sha256) {
        put(header::HeaderName::from_static("repr-digest"), &d);
    }
    let header_text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());

    if header_text(header::IF_NONE_MATCH).is_some_and(|v| none_match(v, &etag)) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().extend(common);
        return r;
    }
    // A Range applies only while the representation is still the one the client has (If-Range).
    let range_applies = header_text(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let ask = match header_text(header::RANGE) {
        Some(v) if range_applies => parse_range(v, size),
        _ => RangeAsk::Whole,
    };
    let media_type = HeaderValue::from_str(&a.media_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let (status, first, len) = match ask {
        RangeAsk::Whole => (StatusCode::OK, 0, size),
        RangeAsk::Part(r) => (StatusCode::PARTIAL_CONTENT, r.first, r.last - r.first + 1),
        RangeAsk::Unsatisfiable => {
            let mut r = ApiError::made(
                Error::validation(
                    Reason::RangeNotSatisfiable,
                    "the range starts past the end of the artifact",
                )
                .with_field("Range")
                .with_detail("bytes", size),
                &ctx.request_id,
            )
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            .into_response();
            r.headers_mut().extend(common);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let body = stream(dl.reader, first, len, ctx.request_id.to_string());
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.extend(common);
    h.insert(header::CONTENT_TYPE, media_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if status == StatusCode::PARTIAL_CONTENT {
        let range = format!("bytes {first}-{}/{size}", first + len - 1);
        if let Ok(v) = HeaderValue::from_str(&range) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    r
}

/// A body of bytes `first..first + len` of `reader`, read on the blocking pool (see the module docs).
fn stream(reader: Box<dyn Read + Send>, first: u64, len: u64, request_id: String) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(CHANNEL);
    tokio::task::spawn_blocking(move || pump(reader, first, len, &tx, &request_id));
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Reads the whole artifact, sending the bytes of the range, the last chunk only once the reader has verified
/// the artifact at its end. Stops when the client is gone.
fn pump(
    mut reader: Box<dyn Read + Send>,
    first: u64,
    len: u64,
    tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    request_id: &str,
) {
    let end = first.saturating_add(len);
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    let mut held: Option<Bytes> = None;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => {
                if let Some(last) = held.take() {
                    let _ = tx.blocking_send(Ok(last));
                }
                return;
            }
            Ok(n) => {
                let chunk_end = pos + n as u64;
                let from = first.clamp(pos, chunk_end);
                let to = end.clamp(pos, chunk_end);
                if from < to {
                    let part =
                        Bytes::copy_from_slice(&buf[(from - pos) as usize..(to - pos) as usize]);
                    if let Some(previous) = held.replace(part) {
                        if tx.blocking_send(Ok(previous)).is_err() {
                            return;
                        }
                    }
                } else if tx.is_closed() {
                    return;
                }
                pos = chunk_end;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let err = trialport_core::engine::download_error(&e);
                tracing::error!(
                    target: "trialport::http",
                    request_id,
                    code = err.code().as_str(),
                    reason = err.reason(),
                    "download aborted"
                );
                crate::metrics::download_aborted(err.reason());
                let _ = tx.blocking_send(Err(io::Error::other(err.reason().to_string())));
                return;
            }
        }
    }
}
