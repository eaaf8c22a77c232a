//! Upload session identifiers: a UUID, parsed strictly so it is safe in storage keys.

use std::fmt;

/// A string that is not an upload id (so no session has it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an upload id")]
pub struct UploadIdError;

/// The id of an upload session, as it appears in `/blobs/uploads/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(uuid::Uuid);

impl UploadId {
    #[expect(
        clippy::new_without_default,
        reason = "a new id is random, not a default"
    )]
    pub fn new() -> Self {
        UploadId(uuid::Uuid::new_v4())
    }

    /// Parses an id from a URL; anything that is not a UUID names no session.
    pub fn parse(raw: &str) -> Result<Self, UploadIdError> {
        uuid::Uuid::try_parse(raw)
            .map(UploadId)
            .map_err(|_| UploadIdError)
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}
