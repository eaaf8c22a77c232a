//! Shared core of the registry: the OCI domain, configuration, errors, authentication, the
//! metadata repository layer, storage, domain services and the HTTP bootstrap. Handlers live
//! in the `functions/*` crates and only parse, call a service and answer.

pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod error;
pub mod events;
/// The fuzz targets' way in (`fuzz/`); not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metadata;
pub mod oci;
pub mod services;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod upstream;
