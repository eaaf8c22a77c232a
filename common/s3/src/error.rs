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
    #[error("{operation} {object}: HTTP {status}{}", detail(code, message))]
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

/// ` Code: message` of a service error, or nothing when the answer had no body (`HEAD`).
fn detail(code: &str, message: &str) -> String {
    match (code.is_empty(), message.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(" {code}"),
        (true, false) => format!(": {message}"),
        (false, false) => format!(" {code}: {message}"),
    }
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
    /// The start-up check of the bucket (`HeadBucket`) failed; [`Problem`] says why, and so
    /// which settings to look at.
    #[error("S3 bucket {bucket} at {endpoint}: {problem}")]
    Bucket {
        bucket: String,
        endpoint: String,
        problem: Problem,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What the start-up check of the bucket ran into, by the service's answer (or its absence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// `403`: the signature or the key was refused, or the key may not use the bucket.
    Credentials,
    /// `404`: no such bucket at that endpoint.
    NoBucket,
    /// `301`: the bucket lives in another region than the one signed for.
    Region,
    /// No answer (connection refused, name unknown, timed out), after the SDK's retries.
    Unreachable,
    /// No request could be made, typically because no credentials were found.
    NoRequest,
    /// Any other answer.
    Other(Option<u16>),
}

impl Problem {
    /// Classifies the SDK's error of the check.
    pub(crate) fn of<E>(error: &SdkError<E, HttpResponse>) -> Self {
        match error {
            SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
                match error.raw_response().map(|r| r.status().as_u16()) {
                    Some(403) => Problem::Credentials,
                    Some(404) => Problem::NoBucket,
                    Some(301) => Problem::Region,
                    status => Problem::Other(status),
                }
            }
            // A connection that failed or timed out; the SDK reports a credential chain that
            // found nothing as a dispatch failure too, but of the "other" kind.
            SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
                Problem::Unreachable
            }
            SdkError::TimeoutError(_) => Problem::Unreachable,
            _ => Problem::NoRequest,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Credentials => f.write_str(
                "the credentials were refused (HTTP 403): check AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY (or AWS_SESSION_TOKEN, AWS_PROFILE, the instance role) \
                 and that the key may use the bucket",
            ),
            Problem::NoBucket => f.write_str(
                "no such bucket (HTTP 404): check S3_BUCKET, and S3_ENDPOINT and S3_REGION",
            ),
            Problem::Region => f.write_str(
                "the bucket is in another region (HTTP 301): check S3_REGION (or AWS_REGION)",
            ),
            Problem::Unreachable => f.write_str(
                "no answer from the endpoint (unreachable or timed out): check S3_ENDPOINT",
            ),
            Problem::NoRequest => f.write_str(
                "no request could be made (no credentials found?): check AWS_ACCESS_KEY_ID \
                 and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, the instance role) and S3_ENDPOINT",
            ),
            Problem::Other(status) => {
                if let Some(status) = status {
                    write!(f, "HTTP {status}: ")?;
                }
                f.write_str("check S3_BUCKET, S3_ENDPOINT, S3_REGION and the AWS credentials")
            }
        }
    }
}
