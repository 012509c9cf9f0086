//! HTTP revalidation for the data routes: every 200 carries an `ETag` computed from its body and
//! `Cache-Control: no-cache` (a client may keep the answer but asks again each time: the API
//! promises a commit is visible within a second, which no `max-age` fits). A request whose
//! `If-None-Match` names the current tag gets 304 without a body, so a dashboard that polls costs
//! the network almost nothing while the data does not change.

use std::hash::{Hash, Hasher};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The data routes' bodies are JSON the handlers built whole; none is near this.
const MAX_BODY: usize = 256 << 20;

/// Tags 200 answers and answers 304 when the client's tag matches.
pub async fn revalidate(request: Request, next: Next) -> Response {
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    let response = next.run(request).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let tag = entity_tag(&bytes);
    set_validators(&mut parts.headers, &tag);
    if if_none_match.is_some_and(|value| matches(&value, &tag)) {
        let mut not_modified = StatusCode::NOT_MODIFIED.into_response();
        set_validators(not_modified.headers_mut(), &tag);
        return not_modified;
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn set_validators(headers: &mut HeaderMap, tag: &str) {
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(tag).expect("hex digits in quotes"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

/// A weak tag (`W/"..."`: the same for the gzipped and the plain body) of a body's bytes. A fast
/// hash, not a cryptographic one: it runs on every answer (the cached ones too), and a client
/// that made two bodies collide would only confuse its own cache.
fn entity_tag(body: &[u8]) -> String {
    let mut hasher = rustc_hash::FxHasher::default();
    body.hash(&mut hasher);
    format!("W/\"{:016x}{:08x}\"", hasher.finish(), body.len())
}

/// Whether an `If-None-Match` value names `tag` (weak comparison, as RFC 9110 says for it), or
/// is `*`.
fn matches(value: &HeaderValue, tag: &str) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    value.trim() == "*"
        || value
            .split(',')
            .any(|candidate| opaque(candidate) == opaque(tag))
}

/// A tag without its weakness mark.
fn opaque(tag: &str) -> &str {
    tag.trim().trim_start_matches("W/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists_and_stars() {
        let tag = entity_tag(b"[1,2,3]");
        assert!(tag.starts_with("W/\""));
        assert_ne!(tag, entity_tag(b"[1,2,4]"));
        let opaque = tag.trim_start_matches("W/");
        for value in [tag.as_str(), opaque, &format!("\"x\", {tag}"), "*"] {
            assert!(
                matches(&HeaderValue::from_str(value).unwrap(), &tag),
                "{value}"
            );
        }
        assert!(!matches(&HeaderValue::from_static("\"other\""), &tag));
    }
}
