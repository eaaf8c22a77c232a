//! One configuration per binary, each made of the sub-structs it uses and nothing else (the
//! `jobs` binary reads no server or authentication settings, so it cannot fail on them).
//! `from_env` is the one place each binary reads the environment; `from_vars` is pure.

use super::dropin::translate;
use super::{
    ApiConfig, AuthConfig, ConfigError, DbConfig, EventsConfig, InternalConfig, JobsConfig,
    LimitsConfig, LogConfig, ServerConfig, StorageConfig, UpstreamsConfig, Vars,
};

/// A Cloud Run service binary: `blob`, `manifest`, `upload` or `api`.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub db: DbConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub api: ApiConfig,
    /// The pull-through cache's upstreams (`UPSTREAMS_FILE`).
    pub upstreams: UpstreamsConfig,
    /// Events: their destinations (`NATS_*`, `WEBHOOKS_FILE`) and delivery (`EVENTS_*`).
    pub events: EventsConfig,
    /// The job endpoints `POST /internal/…` (`INTERNAL_SECRET`), served by `api` and the
    /// single binary.
    pub internal: InternalConfig,
}

impl ServiceConfig {
    /// Reads the process environment (once, at start-up).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::from_env())
    }

    /// From `vars`, other registries' names among them (see `dropin`).
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let translated = translate(vars)?;
        let vars = &translated.vars;
        let server = ServerConfig::from_vars(vars)?;
        let auth = AuthConfig::from_vars(vars, server.host)?;
        Ok(ServiceConfig {
            storage: StorageConfig::from_vars(vars)?,
            db: DbConfig::from_vars(vars)?,
            limits: LimitsConfig::from_vars(vars)?,
            log: LogConfig::from_vars(vars)?.with_notes(translated.notes.clone()),
            api: ApiConfig::from_vars(vars)?,
            upstreams: UpstreamsConfig::from_vars(vars)?,
            events: EventsConfig::from_vars(vars)?,
            internal: InternalConfig::from_vars(vars)?,
            server,
            auth,
        })
    }

    /// The database URL in force: `DATABASE_URL`, or the SQLite file under `DATA_DIR`.
    pub fn database_url(&self) -> String {
        self.db.url_in(&self.storage.data_dir)
    }
}

/// The single `registry` binary: every service, and the jobs on a timer.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub service: ServiceConfig,
    pub jobs: JobsConfig,
}

impl RegistryConfig {
    /// Reads the process environment (once, at start-up).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::from_env())
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(RegistryConfig {
            service: ServiceConfig::from_vars(vars)?,
            jobs: JobsConfig::from_vars(&translate(vars)?.vars)?,
        })
    }
}

/// The `jobs` binary: the database, the byte store, logging and the jobs' own settings.
#[derive(Debug, Clone)]
pub struct JobsBinaryConfig {
    pub storage: StorageConfig,
    pub db: DbConfig,
    pub log: LogConfig,
    pub jobs: JobsConfig,
    /// The upstreams (`UPSTREAMS_FILE`): their size caps drive the cache's eviction.
    pub upstreams: UpstreamsConfig,
    /// Events: `deliver-events` sends them to these destinations, retries and prunes them.
    pub events: EventsConfig,
}

impl JobsBinaryConfig {
    /// Reads the process environment (once, at start-up).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::from_env())
    }

    /// From `vars`, other registries' names among them (see `dropin`).
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let translated = translate(vars)?;
        let vars = &translated.vars;
        Ok(JobsBinaryConfig {
            storage: StorageConfig::from_vars(vars)?,
            db: DbConfig::from_vars(vars)?,
            log: LogConfig::from_vars(vars)?.with_notes(translated.notes.clone()),
            jobs: JobsConfig::from_vars(vars)?,
            upstreams: UpstreamsConfig::from_vars(vars)?,
            events: EventsConfig::from_vars(vars)?,
        })
    }

    /// The database URL in force: `DATABASE_URL`, or the SQLite file under `DATA_DIR`.
    pub fn database_url(&self) -> String {
        self.db.url_in(&self.storage.data_dir)
    }
}
