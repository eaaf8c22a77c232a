//! `INTERNAL_SECRET`: the scheduled jobs as HTTP endpoints (`POST /internal/…`), for
//! schedulers that call URLs rather than start Cloud Run Jobs (the Deploys.app registry's
//! settings, which this registry reads unchanged).

use serde::Deserialize;

use super::{ConfigError, JobsConfig, Secret, Vars};

/// The least length of `INTERNAL_SECRET`: shorter ones are guessable.
pub const MIN_INTERNAL_SECRET_BYTES: usize = 16;

/// The internal job endpoints: on when `INTERNAL_SECRET` is set, with the jobs' settings.
#[derive(Debug, Clone, Default)]
pub struct InternalConfig {
    /// `INTERNAL_SECRET`: the Bearer token every `/internal/` request must carry. Unset:
    /// the endpoints are not served (404).
    pub secret: Option<Secret<String>>,
    /// The jobs' settings (`GC_GRACE_SECS`, …), read only when the endpoints are on.
    pub jobs: Option<JobsConfig>,
}

#[derive(Debug, Deserialize)]
struct InternalVars {
    #[serde(default)]
    internal_secret: Option<Secret<String>>,
}

impl InternalConfig {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let raw: InternalVars = vars.parse()?;
        let Some(secret) = raw.internal_secret else {
            return Ok(InternalConfig::default());
        };
        if secret.expose().len() < MIN_INTERNAL_SECRET_BYTES {
            return Err(ConfigError::Invalid(format!(
                "INTERNAL_SECRET must be at least {MIN_INTERNAL_SECRET_BYTES} bytes long"
            )));
        }
        Ok(InternalConfig {
            secret: Some(secret),
            jobs: Some(JobsConfig::from_vars(vars)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_unless_the_secret_is_set() {
        let config = InternalConfig::from_vars(&Vars::default()).unwrap();
        assert!(config.secret.is_none() && config.jobs.is_none());
    }

    #[test]
    fn on_with_the_jobs_settings() {
        let vars: Vars = [
            ("INTERNAL_SECRET", "0123456789abcdef-long"),
            ("GC_GRACE_SECS", "60"),
        ]
        .into_iter()
        .collect();
        let config = InternalConfig::from_vars(&vars).unwrap();
        assert_eq!(config.secret.unwrap().expose(), "0123456789abcdef-long");
        assert_eq!(config.jobs.unwrap().gc_grace_secs, 60);
    }

    #[test]
    fn a_short_secret_stops_the_start() {
        let vars: Vars = [("INTERNAL_SECRET", "short")].into_iter().collect();
        let error = InternalConfig::from_vars(&vars).unwrap_err().to_string();
        assert!(error.contains("INTERNAL_SECRET"), "{error}");
    }
}
