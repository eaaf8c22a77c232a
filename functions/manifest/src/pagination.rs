//! `n`/`last` pagination of the tag list and the catalog, and its `Link` header: the
//! distribution API's grammar (`n` may be 0 and is capped, `last` is a raw tag or name), parsed
//! here at the edge. It is not the management API's
//! [`PageRequest`](registry_common::services::management_model::PageRequest) (an opaque cursor
//! and a bounded limit); both answer with the one
//! [`Page`](registry_common::services::Page).

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use registry_common::http::{OciCode, RegistryError};
use serde::Deserialize;

/// The raw query, kept as text so that a bad `n` gets the spec's error, not a framework one.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    n: Option<String>,
    last: Option<String>,
}

/// A validated `n`/`last` request.
#[derive(Debug)]
pub struct NLast {
    pub n: u32,
    pub last: Option<String>,
}

/// Validates `n` (a non-negative integer, capped at `page_max`) and `last` (with `valid_last`,
/// the grammar of what is listed: a tag, a repository name).
pub fn parse(
    query: Result<Query<PageQuery>, QueryRejection>,
    page_max: u32,
    valid_last: impl Fn(&str) -> Result<(), RegistryError>,
) -> Result<NLast, RegistryError> {
    let invalid = |why: &str| {
        RegistryError::new(
            OciCode::PaginationNumberInvalid,
            "invalid number of results requested",
        )
        .with_detail(serde_json::json!({ "reason": why }))
    };
    let Query(query) = query.map_err(|_| invalid("malformed query string"))?;
    let n = match query.n.as_deref() {
        None | Some("") => page_max,
        Some(raw) => raw
            .parse::<u64>()
            .map_err(|_| invalid("n must be a non-negative integer"))?
            .min(u64::from(page_max)) as u32,
    };
    let last = query.last.filter(|l| !l.is_empty());
    if let Some(last) = &last {
        valid_last(last)?;
    }
    Ok(NLast { n, last })
}

/// `Link: <path?n=N&last=X>; rel="next"`.
pub fn link(path: &str, n: u32, last: &str) -> String {
    format!("<{path}?n={n}&last={}>; rel=\"next\"", encode(last))
}

/// Percent-encodes what may not stand in a query value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_encodes_last() {
        assert_eq!(
            link("/v2/a/tags/list", 2, "v1.0"),
            "</v2/a/tags/list?n=2&last=v1.0>; rel=\"next\""
        );
        assert_eq!(
            link("/v2/_catalog", 1, "a b&c"),
            "</v2/_catalog?n=1&last=a%20b%26c>; rel=\"next\""
        );
    }
}
