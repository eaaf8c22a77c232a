//! The variables configuration is parsed from, and the error naming the one at fault.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

/// A configuration error; its message names the variable it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset.
    #[error("invalid configuration: {0} must be set")]
    Missing(String),
    /// A variable's value does not parse (envy's message names the variable and the value).
    #[error("invalid configuration: {0}")]
    Malformed(String),
    /// The values parse but cannot be used together, or one is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl From<envy::Error> for ConfigError {
    fn from(error: envy::Error) -> Self {
        match error {
            envy::Error::MissingValue(field) => ConfigError::Missing(field.to_uppercase()),
            envy::Error::Custom(message) => ConfigError::Malformed(message),
        }
    }
}

/// Environment variables by name: what every `from_vars` reads, so that parsing is a pure
/// function of them (tests build one from a list; `K_SERVICE` is a variable like the others).
#[derive(Debug, Clone, Default)]
pub struct Vars(BTreeMap<String, String>);

impl Vars {
    /// The process environment. Each binary calls this once, in its config's `from_env`.
    /// A name or value that is not UTF-8 is read lossily (the variables read here are ASCII
    /// names; a path that is not UTF-8 is not supported).
    pub fn from_env() -> Vars {
        Vars(
            std::env::vars_os()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    )
                })
                .collect(),
        )
    }

    /// The value of `name` (as envy matches names: case-insensitively), when set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` (replacing a value set under any case of the name).
    pub(crate) fn set(&mut self, name: &str, value: impl Into<String>) {
        self.remove(name);
        self.0.insert(name.to_owned(), value.into());
    }

    /// Removes `name` (any case), returning its value.
    pub(crate) fn remove(&mut self, name: &str) -> Option<String> {
        let key = self
            .0
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))?
            .clone();
        self.0.remove(&key)
    }

    /// The names set, as given.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Whether the process runs on Cloud Run, which sets `K_SERVICE` for every service.
    pub fn on_cloud_run(&self) -> bool {
        self.get("K_SERVICE").is_some_and(|v| !v.is_empty())
    }

    /// The struct whose fields (in snake case) are the variables' names.
    pub(crate) fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        Ok(envy::from_iter(
            self.0.iter().map(|(k, v)| (k.clone(), v.clone())),
        )?)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Vars {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Vars(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}
