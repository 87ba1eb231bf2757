//! `GET /jobs` (paginated, with `Link` headers), `GET /jobs/{job_id}`, `POST /jobs/{job_id}/cancel` and
//! `GET /formats`.

use super::job_id;
use crate::context::{credential, RequestCtx};
use crate::error::ApiError;
use crate::http_util::mount_prefix;
use crate::AppState;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use trialport_core::error::Reason;
use trialport_core::request::ListJobsRequest;
use trialport_core::Error;

/// `GET /api/v1/exports/jobs?page=&limit=&status=&study=`.
pub(crate) async fn list_jobs(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestCtx>,
    original: OriginalUri,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let request = list_request(query.as_deref().unwrap_or(""), &ctx)?;
        let asked = request.clone();
        let page = ctx
            .call(&state, credential(&headers), move |s| s.list_jobs(asked))
            .await?;
        let links = page_links(
            &format!("{}/api/v1/exports/jobs", mount_prefix(&original, &uri)),
            &request,
            page.page,
            page.limit,
            page.total,
        );
        let mut response = Json(page).into_response();
        if let Ok(v) = HeaderValue::from_str(&links) {
            if !links.is_empty() {
                response.headers_mut().insert(header::LINK, v);
            }
        }
        Ok::<_, ApiError>(response)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The list request of a query string: `page` and `limit` as whole numbers (their ranges are the engine's to
/// check), `status` and `study` as given; other parameters are ignored.
fn list_request(query: &str, ctx: &RequestCtx) -> Result<ListJobsRequest, ApiError> {
    let mut request = ListJobsRequest::default();
    let number = |field: &str, value: &str| {
        value.trim().parse::<i64>().map_err(|_| {
            ApiError::made(
                Error::validation(
                    Reason::InvalidRequest,
                    format!("{field} must be a whole number"),
                )
                .with_field(field),
                &ctx.request_id,
            )
        })
    };
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "page" if request.page.is_none() => request.page = Some(number("page", &v)?),
            "limit" if request.limit.is_none() => request.limit = Some(number("limit", &v)?),
            "status" if request.status.is_none() => request.status = Some(v.into_owned()),
            "study" if request.study.is_none() => request.study = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(request)
}

/// The `Link` header (RFC 8288) of a page: `first`, `prev`, `next` and `last`, keeping the filters.
fn page_links(base: &str, request: &ListJobsRequest, page: u32, limit: u32, total: u64) -> String {
    let url = |p: u64| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("page", &p.to_string());
        q.append_pair("limit", &limit.to_string());
        if let Some(s) = &request.status {
            q.append_pair("status", s);
        }
        if let Some(s) = &request.study {
            q.append_pair("study", s);
        }
        format!("{base}?{}", q.finish())
    };
    let limit64 = u64::from(limit.max(1));
    let last = total.div_ceil(limit64).max(1);
    let page = u64::from(page);
    let mut links = vec![format!("<{}>; rel=\"first\"", url(1))];
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", url((page - 1).min(last))));
    }
    if page < last {
        links.push(format!("<{}>; rel=\"next\"", url(page + 1)));
    }
    links.push(format!("<{}>; rel=\"last\"", url(last)));
    links.join(", ")
}

/// `GET /api/v1/exports/jobs/{job_id}`.
pub(crate) async fn get_job(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let id = job_id(&id, &ctx)?;
        let job = ctx
            .call(&state, credential(&headers), move |s| s.get_job(id))
            .await?;
        Ok::<_, ApiError>(Json(job).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /api/v1/exports/jobs/{job_id}/cancel` (a body, if any, is ignored).
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let id = job_id(&id, &ctx)?;
        let job = ctx
            .call(&state, credential(&headers), move |s| s.cancel(id))
            .await?;
        Ok::<_, ApiError>(Json(job).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /api/v1/exports/formats`.
pub(crate) async fn formats(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
) -> Response {
    match ctx
        .call(&state, credential(&headers), |s| s.formats())
        .await
    {
        Ok(formats) => Json(formats).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_the_filters() {
        let r = ListJobsRequest {
            status: Some("queued".into()),
            study: Some("S 1".into()),
            ..Default::default()
        };
        let l = page_links("/j", &r, 2, 10, 35);
        assert_eq!(
            l,
            "</j?page=1&limit=10&status=queued&study=S+1>; rel=\"first\", \
             </j?page=1&limit=10&status=queued&study=S+1>; rel=\"prev\", \
             </j?page=3&limit=10&status=queued&study=S+1>; rel=\"next\", \
             </j?page=4&limit=10&status=queued&study=S+1>; rel=\"last\""
        );
        let l = page_links("/j", &ListJobsRequest::default(), 1, 20, 0);
        assert_eq!(
            l,
            "</j?page=1&limit=20>; rel=\"first\", </j?page=1&limit=20>; rel=\"last\""
        );
    }
}
