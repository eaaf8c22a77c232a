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

/// Origins (`scheme://host[:port]`) allowed to call the management API from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsOrigins(std::sync::Arc<[String]>);

impl CorsOrigins {
    /// Parses a comma-separated list. `*` is refused: the API takes credentials, and browsers
    /// send none to a wildcard.
    pub fn parse(raw: &str) -> Result<CorsOrigins, String> {
        let mut origins = Vec::new();
        for origin in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            let valid = host.is_some_and(|h| {
                !h.is_empty()
                    && h.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                    })
            });
            if !valid {
                return Err(format!(
                    "API_CORS_ORIGINS: {origin:?} is not an origin; expected scheme://host[:port] \
                     without a path, e.g. https://dash.example.com (`*` is not allowed: the API \
                     takes credentials)"
                ));
            }
            origins.push(origin.to_ascii_lowercase());
        }
        Ok(CorsOrigins(origins.into()))
    }

    /// Whether a request's `Origin` is one of them.
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.0
            .iter()
            .any(|o| o.as_bytes().eq_ignore_ascii_case(origin))
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
