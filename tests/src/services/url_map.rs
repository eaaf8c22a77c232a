//! The load balancer's route table (`terraform/routes.json`) and a Rust implementation of the
//! matching rules of a global external Application Load Balancer URL map (`routeRules`), so
//! that tests can send a request where the load balancer would.
//!
//! The rules implemented, and where each comes from (Compute Engine API reference for
//! `urlMaps`: `HttpRouteRule`, `HttpRouteRuleMatch`, `HttpHeaderMatch`,
//! `HttpQueryParameterMatch`, as published in Google's client library references, and the
//! path template syntax Envoy documents for the same `pathTemplateMatch` matcher):
//!
//! - Route rules are tried in order of `priority`, lowest number first; the first rule that
//!   matches applies. Priorities are unique, from 0 to 2147483647, and may have gaps
//!   (`HttpRouteRule.priority`). No rule matching: the path matcher's default service.
//! - A rule's `matchRules` have OR semantics: the rule matches when any of them does
//!   (`HttpRouteRule.matchRules`). Within one match rule every criterion must hold
//!   (`HttpRouteRuleMatch`: "All specified criteria must be satisfied").
//! - Exactly one path criterion per match rule: `prefixMatch`, `fullPathMatch`, `regexMatch`
//!   or `pathTemplateMatch`; all are applied to the path "after removing any query parameters
//!   and anchor". Matching is case-sensitive unless `ignoreCase` (default false). `regexMatch`
//!   is not used: the global external load balancer's URL map offers no regular expressions,
//!   so this table rejects it.
//! - `pathTemplateMatch`: at most 5 wildcard operators and at most 5 variable captures, 1 to
//!   255 characters. `*` matches exactly one path segment (one or more characters up to the
//!   next `/`); `**` matches zero or more segments and must be the last operator; `{name}` or
//!   `{name=*}` capture like `*`, `{name=**}` like `**`.
//! - `headerMatches`: all must match. A request's method is matched with the header name
//!   `:method` ("For matching a request's method, use the headerName ':method'"). One of
//!   `exactMatch`, `prefixMatch` or `presentMatch` (the others the API offers are not used).
//! - `queryParameterMatches`: all must match; `presentMatch` "matches if the request contains
//!   the query parameter, irrespective of whether the parameter has a value or not";
//!   `exactMatch` compares the value.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;

/// `terraform/routes.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    pub description: String,
    pub default_service: String,
    pub services: Vec<String>,
    pub route_rules: Vec<RouteRule>,
}

/// One `routeRules[]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    pub priority: u32,
    pub service: String,
    pub description: String,
    pub match_rules: Vec<MatchRule>,
}

/// One `matchRules[]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    pub prefix_match: Option<String>,
    pub full_path_match: Option<String>,
    pub path_template_match: Option<String>,
    #[serde(default)]
    pub header_matches: Vec<HeaderMatch>,
    #[serde(default)]
    pub query_parameter_matches: Vec<QueryParameterMatch>,
}

/// One `headerMatches[]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub header_name: String,
    pub exact_match: Option<String>,
    pub prefix_match: Option<String>,
    pub present_match: Option<bool>,
}

/// One `queryParameterMatches[]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryParameterMatch {
    pub name: String,
    pub exact_match: Option<String>,
    pub present_match: Option<bool>,
}

/// Most operators (`*`, `**`, captures) in one path template.
const MAX_TEMPLATE_OPERATORS: usize = 5;
/// Longest path template.
const MAX_TEMPLATE_CHARS: usize = 255;

impl RouteTable {
    /// Path of the table in this workspace.
    pub fn path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../terraform/routes.json")
    }

    /// Reads and validates the table; panics with the reason when it is not deployable.
    pub fn load() -> RouteTable {
        let path = Self::path();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let table: RouteTable = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        if let Err(e) = table.validate() {
            panic!("{}: {e}", path.display());
        }
        table
    }

    /// Checks what the URL map API would refuse, and that every service named exists.
    pub fn validate(&self) -> Result<(), String> {
        let services: BTreeSet<&str> = self.services.iter().map(String::as_str).collect();
        if !services.contains(self.default_service.as_str()) {
            return Err(format!("unknown default service {}", self.default_service));
        }
        let mut priorities = BTreeSet::new();
        for rule in &self.route_rules {
            let context = format!("rule {}", rule.priority);
            if rule.priority > 2_147_483_647 || !priorities.insert(rule.priority) {
                return Err(format!("{context}: priority out of range or not unique"));
            }
            if !services.contains(rule.service.as_str()) {
                return Err(format!("{context}: unknown service {}", rule.service));
            }
            if rule.match_rules.is_empty() || rule.description.len() > 1024 {
                return Err(format!("{context}: no match rule, or description too long"));
            }
            for m in &rule.match_rules {
                m.validate().map_err(|e| format!("{context}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The service the load balancer sends `method path_and_query` to.
    pub fn route(&self, method: &str, path_and_query: &str) -> &str {
        let mut rules: Vec<&RouteRule> = self.route_rules.iter().collect();
        rules.sort_by_key(|r| r.priority);
        rules
            .into_iter()
            .find(|rule| {
                rule.match_rules
                    .iter()
                    .any(|m| m.matches(method, path_and_query))
            })
            .map_or(self.default_service.as_str(), |rule| rule.service.as_str())
    }
}

impl MatchRule {
    fn validate(&self) -> Result<(), String> {
        let paths = [
            self.prefix_match.is_some(),
            self.full_path_match.is_some(),
            self.path_template_match.is_some(),
        ];
        if paths.iter().filter(|p| **p).count() != 1 {
            return Err("each match rule needs exactly one path criterion".to_owned());
        }
        if let Some(template) = &self.path_template_match {
            validate_template(template)?;
        }
        for h in &self.header_matches {
            let kinds = [
                h.exact_match.is_some(),
                h.prefix_match.is_some(),
                h.present_match.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(format!("header match {}: exactly one kind", h.header_name));
            }
        }
        for q in &self.query_parameter_matches {
            if q.exact_match.is_some() == q.present_match.is_some() {
                return Err(format!("query match {}: exactly one kind", q.name));
            }
        }
        Ok(())
    }

    fn matches(&self, method: &str, path_and_query: &str) -> bool {
        let (path, query) = split_target(path_and_query);
        let path_ok = if let Some(prefix) = &self.prefix_match {
            path.starts_with(prefix.as_str())
        } else if let Some(full) = &self.full_path_match {
            path == full
        } else if let Some(template) = &self.path_template_match {
            template_matches(template, path)
        } else {
            false
        };
        path_ok
            && self.header_matches.iter().all(|h| h.matches(method))
            && self
                .query_parameter_matches
                .iter()
                .all(|q| q.matches(query))
    }
}

impl HeaderMatch {
    /// Only `:method` is used by the table: the test requests carry no other header that a
    /// rule could look at.
    fn matches(&self, method: &str) -> bool {
        let value = (self.header_name == ":method").then_some(method);
        match (
            value,
            &self.exact_match,
            &self.prefix_match,
            self.present_match,
        ) {
            (Some(v), Some(exact), _, _) => v == exact,
            (Some(v), _, Some(prefix), _) => v.starts_with(prefix.as_str()),
            (v, _, _, Some(present)) => v.is_some() == present,
            _ => false,
        }
    }
}

impl QueryParameterMatch {
    fn matches(&self, query: Option<&str>) -> bool {
        let mut values = query
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .filter(|(name, _)| *name == self.name)
            .map(|(_, value)| value);
        match (&self.exact_match, self.present_match) {
            (Some(exact), _) => values.any(|v| v == exact),
            (None, Some(present)) => values.next().is_some() == present,
            (None, None) => false,
        }
    }
}

/// Path without query and fragment, and the query.
fn split_target(target: &str) -> (&str, Option<&str>) {
    let target = target.split('#').next().unwrap_or_default();
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// What one template segment is.
#[derive(Debug, PartialEq)]
enum Segment<'a> {
    Literal(&'a str),
    One,
    Rest,
}

fn segments(template: &str) -> Result<Vec<Segment<'_>>, String> {
    template
        .split('/')
        .skip(1)
        .map(|s| match s {
            "*" | "{*}" => Ok(Segment::One),
            "**" => Ok(Segment::Rest),
            _ if s.starts_with('{') && s.ends_with('}') => {
                match s[1..s.len() - 1].split_once('=') {
                    None | Some((_, "*")) => Ok(Segment::One),
                    Some((_, "**")) => Ok(Segment::Rest),
                    Some(_) => Err(format!("unsupported capture {s}")),
                }
            }
            _ if s.contains(['*', '{', '}']) => Err(format!("operator inside segment {s}")),
            _ => Ok(Segment::Literal(s)),
        })
        .collect()
}

fn validate_template(template: &str) -> Result<(), String> {
    if !template.starts_with('/') || template.is_empty() || template.len() > MAX_TEMPLATE_CHARS {
        return Err(format!(
            "template {template}: must start with / and be 1 to 255 chars"
        ));
    }
    let parsed = segments(template)?;
    let operators = parsed
        .iter()
        .filter(|s| !matches!(s, Segment::Literal(_)))
        .count();
    if operators > MAX_TEMPLATE_OPERATORS {
        return Err(format!(
            "template {template}: {operators} operators, at most 5"
        ));
    }
    if let Some(i) = parsed.iter().position(|s| *s == Segment::Rest)
        && i + 1 != parsed.len()
    {
        return Err(format!("template {template}: ** must be the last operator"));
    }
    Ok(())
}

/// Whether a path matches a (valid) template.
fn template_matches(template: &str, path: &str) -> bool {
    let Ok(template) = segments(template) else {
        return false;
    };
    let Some(path) = path.strip_prefix('/') else {
        return false;
    };
    let mut parts = path.split('/');
    for segment in template {
        match segment {
            // `**` stands for the rest of the path after a `/`: zero or more segments, but the
            // slash before it must be there (`/api/**` matches `/api/`, not `/api`).
            Segment::Rest => return parts.next().is_some(),
            Segment::One => match parts.next() {
                Some(part) if !part.is_empty() => {}
                _ => return false,
            },
            Segment::Literal(literal) => {
                if parts.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert!(template_matches("/v2/*/blobs/*", "/v2/a/blobs/sha256:x"));
        assert!(!template_matches("/v2/*/blobs/*", "/v2/a/b/blobs/sha256:x"));
        assert!(!template_matches("/v2/*/blobs/*", "/v2/a/blobs/"));
        assert!(!template_matches("/v2/*/blobs/*", "/v2/a/blobs/x/y"));
        assert!(template_matches("/api/**", "/api/"));
        assert!(template_matches("/api/**", "/api/a/b"));
        assert!(!template_matches("/api/**", "/api"));
        assert!(template_matches(
            "/v2/{name}/blobs/{digest=*}",
            "/v2/a/blobs/d"
        ));
    }

    #[test]
    fn template_limits() {
        assert!(validate_template("/v2/*/*/*/*/blobs/*").is_ok());
        assert!(validate_template("/v2/*/*/*/*/*/blobs/*").is_err());
        assert!(validate_template("/v2/**/blobs/*").is_err());
        assert!(validate_template("/v2/a*/blobs").is_err());
        assert!(validate_template("v2/*").is_err());
    }

    #[test]
    fn query_parameters() {
        let present = QueryParameterMatch {
            name: "digest".to_owned(),
            exact_match: None,
            present_match: Some(true),
        };
        assert!(present.matches(Some("digest=sha256:x")));
        assert!(present.matches(Some("a=1&digest")));
        assert!(!present.matches(Some("digests=1")));
        assert!(!present.matches(None));
    }
}
