//! Listings of an upstream: the catalog and a repository's tags, every page of them (`n=`
//! per page, then the `Link: <…>; rel="next"` the upstream sends, until it sends none). Used
//! by `jobs import`; the pull-through cache never lists.

use http::header::LINK;
use reqwest_tls::{Method, Response};
use serde::Deserialize;

use super::{Upstream, UpstreamError};
use crate::oci::RepositoryName;

/// Entries asked for per page.
const PAGE_SIZE: u32 = 100;
/// Most pages followed for one listing (a loop of `Link`s is an upstream's bug).
const MAX_PAGES: usize = 100_000;
/// Largest page body read.
const PAGE_LIMIT: usize = 16 * 1024 * 1024;

impl Upstream {
    /// Every repository of the upstream's catalog (`GET /v2/_catalog`, scope
    /// `registry:catalog:*`), in the upstream's order.
    pub async fn catalog(&self) -> Result<Vec<String>, UpstreamError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let first = format!("/v2/_catalog?n={PAGE_SIZE}");
        let mut names = Vec::new();
        self.pages(&first, "registry:catalog:*", |body| {
            let page: Page = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            names.extend(page.repositories.unwrap_or_default());
            Ok(())
        })
        .await?;
        Ok(names)
    }

    /// Every tag of the repository (`GET /v2/<name>/tags/list`), in the upstream's order.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, UpstreamError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        RepositoryName::parse(repository).map_err(|e| self.invalid(e.to_string()))?;
        let first = format!("/v2/{repository}/tags/list?n={PAGE_SIZE}");
        let scope = format!("repository:{repository}:pull");
        let mut tags = Vec::new();
        self.pages(&first, &scope, |body| {
            let page: Page = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            tags.extend(page.tags.unwrap_or_default());
            Ok(())
        })
        .await?;
        Ok(tags)
    }

    /// GETs `first` and each page its `Link` names next, handing each body to `each`.
    async fn pages(
        &self,
        first: &str,
        scope: &str,
        mut each: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), UpstreamError> {
        let mut url = self.url(first)?;
        for _ in 0..MAX_PAGES {
            let mut response = self
                .request_url(Method::GET, url.clone(), scope, Some("application/json"))
                .await?;
            let next = next_link(&response);
            let body = self.read_page(&mut response).await?;
            each(&body).map_err(|why| self.invalid(format!("a listing page: {why}")))?;
            match next {
                // Relative to the page's URL (distribution sends an absolute path).
                Some(link) => {
                    url = url
                        .join(&link)
                        .map_err(|_| self.invalid(format!("an unusable Link: {link}")))?;
                }
                None => return Ok(()),
            }
        }
        Err(self.invalid("too many listing pages".to_owned()))
    }

    async fn read_page(&self, response: &mut Response) -> Result<Vec<u8>, UpstreamError> {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            self.unavailable(format!("reading a listing: {}", super::client::describe(e)))
        })? {
            if body.len() + chunk.len() > PAGE_LIMIT {
                return Err(self.invalid("a listing page is too large".to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The target of the `rel="next"` link of a `Link` header (RFC 8288), when there is one.
fn next_link(response: &Response) -> Option<String> {
    response
        .headers()
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_next)
}

/// `<target>; rel="next", <other>; rel="prev"` → `target`.
pub(super) fn parse_next(value: &str) -> Option<String> {
    value.split(',').find_map(|link| {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .any(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim().trim_matches('"').split(' ').any(|r| r == "next")
            })
            .then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::parse_next;

    #[test]
    fn the_next_link_is_found_among_others() {
        assert_eq!(
            parse_next(r#"</v2/_catalog?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(
            parse_next(r#"</a>; rel="prev", </b?n=1>; rel=next"#).as_deref(),
            Some("/b?n=1")
        );
        assert_eq!(parse_next(r#"</a>; rel="prev""#), None);
        assert_eq!(parse_next("garbage"), None);
    }
}
