//! Configuration, read from environment variables once per binary at start-up into that
//! binary's struct ([`ServiceConfig`] for `blob`, `manifest`, `upload` and `api`,
//! [`RegistryConfig`], [`JobsBinaryConfig`]), each made of one sub-struct per concern. The
//! parts are passed down; nothing else reads the environment. Parsing is a pure function of
//! a map of variables ([`Vars`], `K_SERVICE` included), and each error names its variable.
//! Every variable is listed with its default in the README's configuration table.
//!
//! This module depends on no other part of the crate but the domain's value types
//! (`oci::RepositoryName`, `events::Action`): the `auth` module builds on [`AuthConfig`], not
//! the other way round.

mod api;
mod auth;
mod binaries;
mod dropin;
mod events;
mod internal;
mod jobs;
mod json_file;
mod s3;
pub(crate) mod secret;
mod server;
mod storage;
#[cfg(test)]
mod tests;
mod upstreams;
mod vars;
mod webhooks;

pub use api::{ApiConfig, CorsOrigins};
pub use auth::{AuthConfig, AuthMode, MIN_JWT_SECRET_BYTES};
pub use binaries::{JobsBinaryConfig, RegistryConfig, ServiceConfig};
pub use events::{EventsConfig, JetStreamMode, NatsConfig, NatsCredentials};
pub use internal::{InternalConfig, MIN_INTERNAL_SECRET_BYTES};
pub use jobs::JobsConfig;
pub use s3::{S3Config, StaticCredentials};
pub use secret::Secret;
pub use server::{LimitsConfig, LogConfig, ServerConfig};
pub use storage::{DbConfig, GcsConfig, StorageBackend, StorageConfig};
pub use upstreams::{
    DEFAULT_TAG_TTL_SECS, UPSTREAMS_FILE, UPSTREAMS_JSON, UpstreamConfig, UpstreamCredentials,
    UpstreamsConfig,
};
pub use vars::{ConfigError, Vars};
pub use webhooks::{DEFAULT_WEBHOOK_TIMEOUT_SECS, WEBHOOKS_FILE, WebhookEndpoint, parse_webhooks};
