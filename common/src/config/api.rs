//! The management API's settings.

use serde::Deserialize;

use super::{ConfigError, Vars};

/// The management API (`/api/`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiConfig {
    /// `API_CORS_ORIGINS`: the dashboards allowed to call the management API from a browser,
    /// with the user's credentials: comma-separated origins (`https://dash.example.com`).
    #[serde(default)]
    pub api_cors_origins: CorsOrigins,
}

impl ApiConfig {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        vars.parse()
    }
}

/// Origins (`scheme://host[:port]`) allowed to call the management API from a browser; an
/// origin may start its host with one wildcard label (`https://*.example.com`: any one label
/// in its place, as the eddisonso registry allows its dashboards).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsOrigins(std::sync::Arc<[CorsOrigin]>);

/// One allowed origin, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CorsOrigin {
    Exact(String),
    /// `scheme://*.rest`: `scheme` is `https://`, `rest` is `.example.com[:port]`.
    AnyLabel {
        scheme: String,
        rest: String,
    },
}

impl CorsOrigins {
    /// Parses a comma-separated list. `*` alone is refused: the API takes credentials, and
    /// browsers send none to a wildcard; so is a wildcard over a whole top-level domain.
    pub fn parse(raw: &str) -> Result<CorsOrigins, String> {
        let mut origins = Vec::new();
        for origin in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let lower = origin.to_ascii_lowercase();
            let scheme = ["https://", "http://"]
                .into_iter()
                .find(|s| lower.starts_with(s));
            let host = scheme.map(|s| &lower[s.len()..]);
            let host_chars = |h: &str| {
                !h.is_empty()
                    && h.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                    })
            };
            let parsed = match (scheme, host) {
                (Some(scheme), Some(host)) => match host.strip_prefix('*') {
                    // `.example.com`: a dot, then at least two labels.
                    Some(rest)
                        if rest.starts_with('.')
                            && host_chars(rest)
                            && rest[1..].split(':').next().is_some_and(|d| {
                                d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
                            }) =>
                    {
                        Some(CorsOrigin::AnyLabel {
                            scheme: scheme.to_owned(),
                            rest: rest.to_owned(),
                        })
                    }
                    Some(_) => None,
                    None if host_chars(host) => Some(CorsOrigin::Exact(lower.clone())),
                    None => None,
                },
                _ => None,
            };
            let Some(parsed) = parsed else {
                return Err(format!(
                    "API_CORS_ORIGINS: {origin:?} is not an origin; expected scheme://host[:port] \
                     without a path, e.g. https://dash.example.com, or one wildcard label \
                     leading the host, e.g. https://*.example.com (`*` alone is not allowed: \
                     the API takes credentials)"
                ));
            };
            origins.push(parsed);
        }
        Ok(CorsOrigins(origins.into()))
    }

    /// Whether a request's `Origin` is one of them.
    pub fn allows(&self, origin: &[u8]) -> bool {
        let Ok(origin) = std::str::from_utf8(origin) else {
            return false;
        };
        let origin = origin.to_ascii_lowercase();
        self.0.iter().any(|allowed| match allowed {
            CorsOrigin::Exact(exact) => *exact == origin,
            CorsOrigin::AnyLabel { scheme, rest } => origin
                .strip_prefix(scheme.as_str())
                .and_then(|host| host.strip_suffix(rest.as_str()))
                .is_some_and(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for CorsOrigins {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        CorsOrigins::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::CorsOrigins;

    #[test]
    fn one_leading_wildcard_label_admits_one_label() {
        let origins =
            CorsOrigins::parse("https://*.cloud.example.com, https://cloud.example.com").unwrap();
        for yes in [
            "https://dash.cloud.example.com",
            "https://Dash-2.cloud.example.com",
            "https://cloud.example.com",
        ] {
            assert!(origins.allows(yes.as_bytes()), "{yes}");
        }
        for no in [
            "https://a.b.cloud.example.com",
            "https://.cloud.example.com",
            "http://dash.cloud.example.com",
            "https://dash.cloud.example.com:8443",
            "https://evilcloud.example.com",
            "https://dash.cloud.example.com.evil.io",
        ] {
            assert!(!origins.allows(no.as_bytes()), "{no}");
        }
        let with_port = CorsOrigins::parse("http://*.localtest.me:3000").unwrap();
        assert!(with_port.allows(b"http://ui.localtest.me:3000"));
        assert!(!with_port.allows(b"http://ui.localtest.me"));
        for bad in [
            "*",
            "https://*",
            "https://*.com",
            "https://a.*.example.com",
            "https://*example.com",
        ] {
            assert!(CorsOrigins::parse(bad).is_err(), "{bad}");
        }
    }
}
