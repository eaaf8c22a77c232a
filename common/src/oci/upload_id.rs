//! Upload session identifiers: a UUID, parsed strictly so it is safe in storage keys.

use std::fmt;

use crate::error::RegistryError;

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

    /// Parses an id from a URL; anything that is not a UUID is an unknown upload.
    pub fn parse(raw: &str) -> Result<Self, RegistryError> {
        uuid::Uuid::try_parse(raw)
            .map(UploadId)
            .map_err(|_| RegistryError::upload_unknown())
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}
