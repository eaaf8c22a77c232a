//! `AUTH_MODE=delegated`: a permission service (a hosting platform's API) says, for the
//! caller's Basic credentials, whether they hold a permission on a project.
//!
//! The contract, for each question the registry asks:
//!
//! ```text
//! POST <DELEGATED_PERMISSION_URL>
//! Authorization: <the caller's Authorization header, as received>
//! Content-Type: application/json
//!
//! {"project": "alpha", "permission": "registry.pull"}
//! ```
//!
//! `permission` is `registry.<action>` (`pull` for reads, `push` for writes and deletes,
//! `list`, `get`: the Deploys.app API's names, so that its service answers unchanged), or
//! `registry.login` with `"project": null` for `GET /v2/` (are these credentials valid at all?).
//! The service answers `200` with `{"allowed": true|false}` (or that object as `result` of a
//! `{"ok": true, "result": …}` envelope), `401` when the credentials are not valid, `403` when
//! they are valid but lack the permission. Any other answer, a timeout, or a connection error
//! is a failure: the caller gets `503`, never access. Answers (not failures) are cached for
//! `AUTH_CACHE_TTL_SECS`, keyed by a salted digest of the header, project and permission.

use std::time::Duration;

use serde::Deserialize;

use super::cache::TtlCache;
use super::secret::Secret;

/// What the permission service said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Allowed,
    Denied,
    /// The credentials are not valid.
    Unauthenticated,
}

/// The permission service could not answer.
#[derive(Debug, thiserror::Error)]
#[error("permission service: {0}")]
pub struct Unavailable(pub String);

/// The client of the permission service, with its cache.
#[derive(Debug)]
pub struct Delegated {
    client: reqwest_tls::Client,
    url: String,
    cache: TtlCache<Answer>,
}

#[derive(Debug, Deserialize)]
struct Reply {
    allowed: Option<bool>,
    result: Option<Box<Reply>>,
}

impl Reply {
    fn allowed(&self) -> Option<bool> {
        self.allowed
            .or_else(|| self.result.as_ref().and_then(|r| r.allowed))
    }
}

impl Delegated {
    pub fn new(url: &str, timeout: Duration, cache_ttl: Duration) -> Result<Self, String> {
        let client = reqwest_tls::Client::builder()
            .timeout(timeout)
            // Credentials go to the configured URL only, never to wherever it redirects.
            .redirect(reqwest_tls::redirect::Policy::none())
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Delegated {
            client,
            url: url.to_owned(),
            cache: TtlCache::new(cache_ttl),
        })
    }

    /// Whether `authorization` holds `permission` on `project` (`None`: just valid).
    pub async fn ask(
        &self,
        authorization: &Secret<String>,
        project: Option<&str>,
        permission: &str,
    ) -> Result<Answer, Unavailable> {
        let key = self.cache.key(&[
            authorization.expose().as_bytes(),
            project.unwrap_or("\0").as_bytes(),
            permission.as_bytes(),
        ]);
        if let Some(answer) = self.cache.get(&key) {
            return Ok(answer);
        }
        let answer = self.request(authorization, project, permission).await;
        match &answer {
            Ok(answer) => self.cache.insert(key, *answer),
            Err(e) => tracing::warn!(error = %e, project, permission, "permission check failed"),
        }
        answer
    }

    async fn request(
        &self,
        authorization: &Secret<String>,
        project: Option<&str>,
        permission: &str,
    ) -> Result<Answer, Unavailable> {
        let response = self
            .client
            .post(&self.url)
            .header(http::header::AUTHORIZATION, authorization.expose().as_str())
            .header(http::header::ACCEPT, "application/json")
            .json(&serde_json::json!({ "project": project, "permission": permission }))
            .send()
            .await
            .map_err(|e| Unavailable(e.without_url().to_string()))?;
        match response.status().as_u16() {
            401 => return Ok(Answer::Unauthenticated),
            403 => return Ok(Answer::Denied),
            200..=299 => {}
            status => return Err(Unavailable(format!("answered {status}"))),
        }
        let reply: Reply = response
            .json()
            .await
            .map_err(|e| Unavailable(format!("unreadable answer: {}", e.without_url())))?;
        match reply.allowed() {
            Some(true) => Ok(Answer::Allowed),
            Some(false) => Ok(Answer::Denied),
            None => Err(Unavailable("answer without `allowed`".to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Reply;

    #[test]
    fn both_answer_shapes() {
        let parse = |s: &str| {
            serde_json::from_str::<Reply>(s)
                .ok()
                .and_then(|r| r.allowed())
        };
        assert_eq!(parse(r#"{"allowed":true}"#), Some(true));
        assert_eq!(
            parse(r#"{"ok":true,"result":{"allowed":false}}"#),
            Some(false)
        );
        assert_eq!(parse(r#"{"ok":false,"error":{"message":"x"}}"#), None);
        assert_eq!(parse(r#"{"allowed":"yes"}"#), None);
    }
}
