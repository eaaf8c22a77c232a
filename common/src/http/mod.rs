//! The HTTP layer shared by every binary, the only place that speaks HTTP: the route grammar
//! and the `/v2/<name>/…` path rewriting (`route`), typed extractors for the path's parts
//! (`extract`), the request headers read into domain types and the registry's header names
//! (`headers`), the mapping of every domain error to the spec's answer ([`oci_error`]), the
//! authorization of every request (`auth_layer`), the token endpoint's handler (`token`), body
//! streams with idle timeouts, common response headers, request logging, a server that bounds
//! connections, header sizes and header read time, speaks HTTP/1.1 and h2c on one port, and
//! shuts down gracefully, and the `main` every binary calls ([`service_main::run`]).

mod auth_layer;
mod body;
mod extract;
pub mod headers;
mod layers;
pub mod oci_error;
mod origin;
mod route;
mod server;
pub mod service_main;
mod token;

pub use body::{body_stream, content_length, content_type, read_limited};
pub use extract::{DigestPath, MirrorNamespace, ReferencePath, UploadIdPath, WriteReferencePath};
pub use layers::{registry_app, registry_fallbacks};
pub use oci_error::{OciCode, RegistryError};
pub use route::{Endpoint, HEALTHZ_PATH, INTERNAL_PREFIX, RegistryRoute, Repo, TOKEN_PATH};
pub use server::{serve, shutdown_signal};
pub use service_main::Service;
pub use token::token_endpoint;
