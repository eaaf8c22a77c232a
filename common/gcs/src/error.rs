//! Errors of the GCS backend: a private enum whose variants carry the operation, the object
//! and the cause, folded into the storage trait's [`StorageError`] at the trait boundary, and
//! the public [`OpenError`] of start-up.

use registry_common::storage::StorageError;

/// A failed GCS operation on one object (or prefix).
#[derive(Debug, thiserror::Error)]
pub(crate) enum GcsError {
    #[error("object {object} not found")]
    NotFound { object: String },
    /// A write or read through the google-cloud-storage client.
    #[error("{operation} {object}")]
    Client {
        operation: &'static str,
        object: String,
        #[source]
        source: google_cloud_storage::Error,
    },
    /// A JSON API call answered with an error status.
    #[error("{operation} {object}: HTTP {status}: {message}")]
    Api {
        operation: &'static str,
        object: String,
        status: u16,
        message: String,
    },
    /// A JSON API call that got no answer, or one that could not be read.
    #[error("{operation} {object}")]
    Transport {
        operation: &'static str,
        object: String,
        #[source]
        source: reqwest_gcs::Error,
    },
    #[error("{operation} {object}: getting credentials")]
    Credentials {
        operation: &'static str,
        object: String,
        #[source]
        source: google_cloud_auth::errors::CredentialsError,
    },
    #[error("signing a download URL for {object}")]
    Sign {
        object: String,
        #[source]
        source: google_cloud_storage::error::SigningError,
    },
    /// The service stored a different number of bytes than were sent.
    #[error("writing {object}: sent {sent} bytes, the service stored {stored}")]
    SizeMismatch {
        object: String,
        sent: u64,
        stored: u64,
    },
}

impl GcsError {
    fn object(&self) -> &str {
        match self {
            GcsError::NotFound { object }
            | GcsError::Client { object, .. }
            | GcsError::Api { object, .. }
            | GcsError::Transport { object, .. }
            | GcsError::Credentials { object, .. }
            | GcsError::Sign { object, .. }
            | GcsError::SizeMismatch { object, .. } => object,
        }
    }
}

impl From<GcsError> for StorageError {
    fn from(error: GcsError) -> Self {
        match error {
            GcsError::NotFound { object } => StorageError::NotFound { key: object },
            other => StorageError::Io {
                key: other.object().to_owned(),
                source: std::io::Error::other(other),
            },
        }
    }
}

/// Why the GCS backend could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The client builder's error type lives in a crate this one does not name.
    #[error("building the GCS client")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("loading Application Default Credentials")]
    Credentials(#[source] google_cloud_auth::build_errors::Error),
    #[error("reading GCS_SIGNING_KEY_FILE {path}")]
    SigningKeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("GCS_SIGNING_KEY_FILE {path} is not a service-account JSON key")]
    SigningKey {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("building the JSON API HTTP client")]
    Http(#[source] reqwest_gcs::Error),
    /// `STORAGE_BACKEND=s3`: the S3 backend's own start-up error.
    #[error(transparent)]
    S3(#[from] registry_s3::OpenError),
}
