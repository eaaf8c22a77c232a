//! Authentication to an upstream: the `WWW-Authenticate` challenges, the Docker token flow
//! and the per-scope token cache. See the module contract in `super`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::UpstreamError;
use crate::config::{Secret, UpstreamCredentials};

/// Lifetime of a token whose answer gives no `expires_in` (the token spec's default).
const DEFAULT_TOKEN_SECS: u64 = 60;
/// Most tokens kept: one per repository pulled; expired ones go first.
const MAX_TOKENS: usize = 1024;

/// What a `401` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic,
}

/// Parses `WWW-Authenticate` values; `Bearer` wins over `Basic` when both are offered.
pub(crate) fn parse_challenges<'a>(values: impl Iterator<Item = &'a str>) -> Option<Challenge> {
    let mut basic = false;
    for value in values {
        for (scheme, params) in split_challenges(value) {
            if scheme.eq_ignore_ascii_case("bearer") {
                let get = |name: &str| {
                    params
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                };
                if let Some(realm) = get("realm") {
                    return Some(Challenge::Bearer {
                        realm,
                        service: get("service"),
                    });
                }
            } else if scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

type Params = Vec<(String, String)>;

/// `Scheme k=v, k="v", Other k=v` → each scheme with its parameters (RFC 9110 §11.6.1).
fn split_challenges(value: &str) -> Vec<(String, Params)> {
    let mut out: Vec<(String, Params)> = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        let end = rest.find([' ', '=', ',']).unwrap_or(rest.len());
        let (word, after) = rest.split_at(end);
        if word.is_empty() {
            break;
        }
        let after_trim = after.trim_start();
        if let Some(value_part) = after_trim.strip_prefix('=') {
            // A parameter of the current scheme.
            let (param, remaining) = read_value(value_part.trim_start());
            if let Some((_, params)) = out.last_mut() {
                params.push((word.to_owned(), param));
            }
            rest = remaining;
        } else {
            out.push((word.to_owned(), Vec::new()));
            rest = after;
        }
    }
    out
}

/// A token or a quoted string (with `\` escapes), and what follows it.
fn read_value(input: &str) -> (String, &str) {
    if let Some(quoted) = input.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => return (value, &quoted[i + 1..]),
                _ => value.push(c),
            }
        }
        (value, "")
    } else {
        let end = input.find([',', ' ']).unwrap_or(input.len());
        (input[..end].to_owned(), &input[end..])
    }
}

/// The header to send, when any.
#[derive(Debug, Clone)]
pub(crate) enum Authorization {
    Bearer(Secret<String>),
    Basic,
}

#[derive(Debug, Default)]
struct State {
    /// The upstream asked for Basic before: send it up front.
    basic: bool,
    /// The last Bearer challenge: a scope without a token fetches one up front.
    bearer: Option<(String, Option<String>)>,
    tokens: HashMap<String, (Secret<String>, Instant)>,
}

/// What the client remembers about authenticating to its upstream.
#[derive(Debug, Default)]
pub(crate) struct AuthCache(Mutex<State>);

impl AuthCache {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What to send for `scope` before any challenge: a cached token, Basic, or (when the
    /// upstream challenged with Bearer before) the realm to fetch a token from.
    pub(crate) fn before(&self, scope: &str) -> Result<Option<Authorization>, Challenge> {
        let state = self.state();
        if let Some((token, until)) = state.tokens.get(scope)
            && Instant::now() < *until
        {
            return Ok(Some(Authorization::Bearer(token.clone())));
        }
        if state.basic {
            return Ok(Some(Authorization::Basic));
        }
        match &state.bearer {
            Some((realm, service)) => Err(Challenge::Bearer {
                realm: realm.clone(),
                service: service.clone(),
            }),
            None => Ok(None),
        }
    }

    pub(crate) fn remember_basic(&self) {
        self.state().basic = true;
    }

    fn store(
        &self,
        scope: &str,
        realm: &str,
        service: Option<&str>,
        token: Secret<String>,
        ttl: Duration,
    ) {
        let mut state = self.state();
        state.bearer = Some((realm.to_owned(), service.map(str::to_owned)));
        if state.tokens.len() >= MAX_TOKENS {
            let now = Instant::now();
            state.tokens.retain(|_, (_, until)| *until > now);
            if state.tokens.len() >= MAX_TOKENS {
                state.tokens.clear();
            }
        }
        state
            .tokens
            .insert(scope.to_owned(), (token, Instant::now() + ttl));
    }

    /// Forgets the token of `scope` (the upstream refused it).
    pub(crate) fn forget(&self, scope: &str) {
        self.state().tokens.remove(scope);
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<Secret<String>>,
    #[serde(default)]
    access_token: Option<Secret<String>>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// How long to use a token the realm says lives `expires_in` seconds: a margin before the end,
/// so that a request never leaves with a token about to expire.
pub(crate) fn usable_for(expires_in: u64) -> Duration {
    let margin = (expires_in / 2).min(10);
    Duration::from_secs(expires_in - margin)
}

/// One upstream's side of a token request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Requester<'a> {
    pub client: &'a reqwest_tls::Client,
    pub cache: &'a AuthCache,
    /// Names the upstream in errors.
    pub label: &'a str,
    pub upstream_is_https: bool,
    pub credentials: Option<&'a UpstreamCredentials>,
}

/// Fetches a token for `scope` from `realm` (with Basic credentials when configured) and
/// caches it.
pub(crate) async fn fetch_token(
    requester: Requester<'_>,
    realm: &str,
    service: Option<&str>,
    scope: &str,
) -> Result<Secret<String>, UpstreamError> {
    let Requester {
        client,
        cache,
        label,
        upstream_is_https,
        credentials,
    } = requester;
    let invalid = |why: String| UpstreamError::Invalid {
        reason: format!("{label}: token endpoint: {why}"),
    };
    let url =
        reqwest_tls::Url::parse(realm).map_err(|_| invalid("the realm is not a URL".into()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the realm is not http(s)".into()));
    }
    let mut query: Vec<(&str, &str)> = vec![("scope", scope)];
    if let Some(service) = service {
        query.insert(0, ("service", service));
    }
    let mut request = client.get(url.clone()).query(&query);
    if let Some(credentials) = credentials {
        // A password in clear over http only to an upstream configured as http itself.
        if url.scheme() == "http" && upstream_is_https {
            return Err(invalid(
                "refusing to send the credentials to an http:// realm of an https:// upstream"
                    .into(),
            ));
        }
        request = request.basic_auth(&credentials.username, Some(credentials.password.expose()));
    }
    let response = request
        .send()
        .await
        .map_err(|e| UpstreamError::Unavailable {
            reason: format!(
                "{label}: token endpoint: {}",
                crate::error::ErrorChain(&e.without_url())
            ),
        })?;
    let status = response.status().as_u16();
    match status {
        200..=299 => {}
        401 | 403 => return Err(UpstreamError::Denied { status }),
        429 | 500..=599 => {
            return Err(UpstreamError::Unavailable {
                reason: format!("{label}: token endpoint answered HTTP {status}"),
            });
        }
        _ => return Err(invalid(format!("answered HTTP {status}"))),
    }
    let answer: TokenAnswer = response
        .json()
        .await
        .map_err(|e| invalid(format!("unreadable answer: {}", e.without_url())))?;
    let token = answer
        .token
        .filter(|t| !t.expose().is_empty())
        .or(answer.access_token.filter(|t| !t.expose().is_empty()))
        .ok_or_else(|| invalid("no token in the answer".into()))?;
    let ttl = usable_for(answer.expires_in.unwrap_or(DEFAULT_TOKEN_SECS));
    cache.store(scope, realm, service, token.clone(), ttl);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_as_docker_hub_and_distribution_send_them() {
        let hub = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        assert_eq!(
            parse_challenges([hub].into_iter()),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        assert_eq!(
            parse_challenges([r#"Basic realm="registry""#].into_iter()),
            Some(Challenge::Basic)
        );
        // Both offered (in one value or two): Bearer wins.
        let both = r#"Basic realm="x", Bearer realm="http://a/t\"q",service=svc"#;
        assert_eq!(
            parse_challenges([both].into_iter()),
            Some(Challenge::Bearer {
                realm: "http://a/t\"q".into(),
                service: Some("svc".into())
            })
        );
        assert_eq!(
            parse_challenges([r#"Basic realm="x""#, r#"bearer realm="r""#].into_iter()),
            Some(Challenge::Bearer {
                realm: "r".into(),
                service: None
            })
        );
        assert_eq!(parse_challenges(["Negotiate"].into_iter()), None);
        assert_eq!(
            parse_challenges([r#"Bearer service="s""#].into_iter()),
            None
        );
        assert_eq!(parse_challenges(std::iter::empty()), None);
    }

    #[test]
    fn tokens_are_used_until_a_margin_before_they_expire() {
        assert_eq!(usable_for(300), Duration::from_secs(290));
        assert_eq!(usable_for(60), Duration::from_secs(50));
        assert_eq!(usable_for(4), Duration::from_secs(2));
        assert_eq!(usable_for(0), Duration::ZERO);
    }

    #[test]
    fn the_cache_answers_per_scope() {
        let cache = AuthCache::default();
        assert!(matches!(cache.before("repository:a:pull"), Ok(None)));
        cache.store(
            "repository:a:pull",
            "http://realm",
            Some("svc"),
            Secret::new("t".into()),
            Duration::from_secs(60),
        );
        assert!(matches!(
            cache.before("repository:a:pull"),
            Ok(Some(Authorization::Bearer(t))) if t.expose() == "t"
        ));
        // Another scope: fetch a token from the realm seen before, without a 401 first.
        assert_eq!(
            cache.before("repository:b:pull").err(),
            Some(Challenge::Bearer {
                realm: "http://realm".into(),
                service: Some("svc".into())
            })
        );
        cache.forget("repository:a:pull");
        assert!(cache.before("repository:a:pull").is_err());
        cache.remember_basic();
        assert!(matches!(
            cache.before("repository:b:pull"),
            Ok(Some(Authorization::Basic))
        ));
    }
}
