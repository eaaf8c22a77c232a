//! Errors of the S3 backend: [`S3Error`] carries the operation, the object and the cause, and
//! is folded into the storage trait's [`StorageError`] at the trait boundary; [`OpenError`] is
//! what stops the start.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use registry_common::storage::StorageError;

/// A failed S3 operation on one object (or prefix).
#[derive(Debug, thiserror::Error)]
pub(crate) enum S3Error {
    #[error("{object} not found")]
    NotFound { object: String },
    /// The service answered with an error (after the SDK's retries).
    #[error("{operation} {object}: HTTP {status} {code}: {message}")]
    Service {
        operation: &'static str,
        object: String,
        status: u16,
        code: String,
        message: String,
    },
    /// No answer: the endpoint is unreachable, timed out, or the credentials could not be
    /// loaded (after the SDK's retries).
    #[error("{operation} {object}")]
    Transport {
        operation: &'static str,
        object: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A request that could not be built (an SDK builder refused its input).
    #[error("{operation} {object}: {message}")]
    Request {
        operation: &'static str,
        object: String,
        message: String,
    },
    #[error("reading {object}")]
    Read {
        object: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl S3Error {
    /// Classifies an SDK error of `operation` on `object`.
    pub(crate) fn sdk<E>(
        operation: &'static str,
        object: &str,
        error: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = match &error {
            SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
                error.raw_response().map(|r| r.status().as_u16())
            }
            _ => None,
        };
        let object = object.to_owned();
        match status {
            Some(status) => {
                let code = error.code().unwrap_or("").to_owned();
                let message = error.message().unwrap_or("").to_owned();
                if status == 404 && code != "NoSuchBucket" && code != "NoSuchUpload" {
                    return S3Error::NotFound { object };
                }
                S3Error::Service {
                    operation,
                    object,
                    status,
                    code,
                    message,
                }
            }
            None => S3Error::Transport {
                operation,
                object,
                source: Box::new(error),
            },
        }
    }

    /// The HTTP status the service answered with, if it answered.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            S3Error::Service { status, .. } => Some(*status),
            S3Error::NotFound { .. } => Some(404),
            _ => None,
        }
    }

    fn object(&self) -> &str {
        match self {
            S3Error::NotFound { object }
            | S3Error::Service { object, .. }
            | S3Error::Transport { object, .. }
            | S3Error::Request { object, .. }
            | S3Error::Read { object, .. } => object,
        }
    }

    /// Worth a retryable answer to the client: throttling or a service that is down, still so
    /// after the SDK's retries, or a service that cannot be reached.
    fn is_unavailable(&self) -> bool {
        match self {
            S3Error::Service { status, .. } => *status == 429 || *status >= 500,
            S3Error::Transport { .. } => true,
            _ => false,
        }
    }
}

impl From<S3Error> for StorageError {
    fn from(error: S3Error) -> Self {
        match error {
            S3Error::NotFound { object } => StorageError::NotFound { key: object },
            other => {
                let key = other.object().to_owned();
                if other.is_unavailable() {
                    StorageError::Unavailable {
                        key,
                        source: std::io::Error::other(other),
                    }
                } else {
                    StorageError::Io {
                        key,
                        source: std::io::Error::other(other),
                    }
                }
            }
        }
    }
}

/// Why the S3 backend could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The start-up check of the bucket failed: wrong bucket, credentials or endpoint.
    #[error(
        "S3 bucket {bucket} at {endpoint} is not usable (check S3_BUCKET, S3_ENDPOINT, S3_REGION and the AWS credentials)"
    )]
    Bucket {
        bucket: String,
        endpoint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
