//! What the management API speaks in: a project, a repository relative to it, page requests
//! with their cursors, and the shapes of the answers (serialized as the API answers them).
//!
//! A cursor is the last key of a page, base64url-encoded with its listing's kind, so that a
//! cursor of another listing is refused instead of misread.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::Page;
use super::management_service::ManagementError;
use crate::oci::RepositoryName;

/// Items per page when the caller does not say.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;
/// Most items one page returns.
pub const MAX_PAGE_LIMIT: u32 = 1000;
/// A project: the first component of its repositories' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project(String);

impl Project {
    pub fn parse(raw: &str) -> Result<Project, ManagementError> {
        if raw.contains('/') {
            return Err(ManagementError::invalid(
                "project",
                "a project is one name component, without '/'",
            ));
        }
        RepositoryName::parse(raw).map_err(|_| {
            ManagementError::invalid("project", "must match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*")
        })?;
        Ok(Project(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A repository of a project: `repository` as the API takes it, and the full name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRepository {
    project_len: usize,
    name: RepositoryName,
}

impl ProjectRepository {
    /// `repository` is the name after `<project>/`, e.g. `web/api` in project `acme`.
    pub fn parse(project: &Project, repository: &str) -> Result<Self, ManagementError> {
        if repository.is_empty() {
            return Err(ManagementError::invalid("repository", "must not be empty"));
        }
        let name =
            RepositoryName::parse(&format!("{}/{repository}", project.as_str())).map_err(|e| {
                ManagementError::invalid(
                    "repository",
                    format!(
                        "{} (the name after the project, e.g. \"web/api\")",
                        e.reason
                    ),
                )
            })?;
        Ok(ProjectRepository {
            project_len: project.as_str().len(),
            name,
        })
    }

    /// The full repository name, `<project>/<repository>`.
    pub fn name(&self) -> &RepositoryName {
        &self.name
    }

    /// The name after `<project>/`.
    pub fn relative(&self) -> &str {
        &self.name.as_str()[self.project_len + 1..]
    }
}

/// Which page of a listing to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    cursor: Option<String>,
    limit: u32,
}

impl PageRequest {
    /// `limit` defaults to [`DEFAULT_PAGE_LIMIT`] and must be 1 to [`MAX_PAGE_LIMIT`]; an empty
    /// cursor is no cursor (the first page).
    pub fn new(cursor: Option<String>, limit: Option<u32>) -> Result<Self, ManagementError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE_LIMIT);
        if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
            return Err(ManagementError::invalid(
                "limit",
                format!("must be between 1 and {MAX_PAGE_LIMIT}"),
            ));
        }
        Ok(PageRequest {
            cursor: cursor.filter(|c| !c.is_empty()),
            limit,
        })
    }

    /// Items per page.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The key the cursor carries, checked to be one of the `kind` listing's.
    pub(crate) fn key(&self, kind: Kind) -> Result<Option<String>, ManagementError> {
        let Some(cursor) = &self.cursor else {
            return Ok(None);
        };
        let invalid = || ManagementError::invalid("cursor", "not a cursor of this listing");
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let key = text.strip_prefix(kind.prefix()).ok_or_else(invalid)?;
        Ok(Some(key.to_owned()))
    }
}

/// The listings, each with its own cursors.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Repositories,
    Tags,
    Manifests,
    DeadLetters,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Repositories => "r:",
            Kind::Tags => "t:",
            Kind::Manifests => "m:",
            Kind::DeadLetters => "d:",
        }
    }

    pub(crate) fn cursor(self, key: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}{key}", self.prefix()))
    }
}

/// A unix-millisecond timestamp, serialized as RFC 3339 (`2026-01-15T03:00:00.123Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub i64);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let at = jiff::Timestamp::from_millisecond(self.0).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        serializer.collect_str(&at)
    }
}

/// A page of a repository's tags or manifests, with the repository's name.
#[derive(Debug, Serialize)]
pub struct RepositoryPage<T> {
    pub name: String,
    #[serde(flatten)]
    pub page: Page<T>,
}

/// A repository as listed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryItem {
    pub name: String,
    pub created_at: Timestamp,
}

/// `getRepository`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryInfo {
    pub name: String,
    /// Bytes of the distinct blobs its manifests reference.
    pub size: u64,
    pub created_at: Timestamp,
}

/// A delivery that failed for the last time (`listDeadLetters`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterItem {
    /// `nats` or `webhook:<name>`.
    pub destination: String,
    pub event_id: String,
    /// Relative to the project.
    pub repository: String,
    pub action: String,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub failed_at: Timestamp,
    /// The event as it was sent (one event object of the notification envelope).
    pub event: serde_json::Value,
}

/// What `replayDeadLetter` did.
#[derive(Debug, Serialize)]
pub struct Replayed {
    /// Deliveries made pending again (one per destination that had given up on the event).
    pub replayed: u64,
}

/// A tag as listed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TagItem {
    pub tag: String,
    pub digest: String,
    pub created_at: Timestamp,
    /// When the tag last moved (its creation when it never did).
    pub updated_at: Timestamp,
}

/// A manifest as listed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestItem {
    pub digest: String,
    pub media_type: String,
    /// Bytes of the manifest itself.
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub created_at: Timestamp,
}

/// `getProjectStorage`'s answer: the project-storage job's last figure.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectStorage {
    pub size: u64,
    /// Absent until the job has counted the project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_are_one_name_component() {
        assert!(Project::parse("acme").is_ok());
        assert!(Project::parse("my-team.dev").is_ok());
        for bad in ["", "Acme", "acme/web", "-acme", "a b"] {
            assert!(
                matches!(
                    Project::parse(bad),
                    Err(ManagementError::Invalid {
                        field: "project",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn repositories_are_named_after_their_project() {
        let project = Project::parse("acme").unwrap();
        let repo = ProjectRepository::parse(&project, "web/api").unwrap();
        assert_eq!(repo.name().as_str(), "acme/web/api");
        assert_eq!(repo.relative(), "web/api");
        for bad in ["", "/web", "web/", "Web", "web//api", &"a".repeat(251)] {
            assert!(
                matches!(
                    ProjectRepository::parse(&project, bad),
                    Err(ManagementError::Invalid {
                        field: "repository",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        assert!(ProjectRepository::parse(&project, &"a".repeat(250)).is_ok());
    }

    #[test]
    fn cursors_belong_to_their_listing() {
        let cursor = Kind::Tags.cursor("v1.0");
        let page = PageRequest::new(Some(cursor.clone()), None).unwrap();
        assert_eq!(page.limit, DEFAULT_PAGE_LIMIT);
        assert_eq!(page.key(Kind::Tags).unwrap(), Some("v1.0".to_owned()));
        assert!(page.key(Kind::Repositories).is_err());
        let garbage = PageRequest::new(Some("%%%".to_owned()), Some(5)).unwrap();
        assert!(garbage.key(Kind::Tags).is_err());
        let empty = PageRequest::new(Some(String::new()), Some(1)).unwrap();
        assert_eq!(empty.key(Kind::Tags).unwrap(), None);
        for limit in [0, MAX_PAGE_LIMIT + 1] {
            assert!(PageRequest::new(None, Some(limit)).is_err(), "{limit}");
        }
        assert!(PageRequest::new(None, Some(MAX_PAGE_LIMIT)).is_ok());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let json = |ms| serde_json::to_string(&Timestamp(ms)).unwrap_or_default();
        assert_eq!(json(0), "\"1970-01-01T00:00:00Z\"");
        assert_eq!(json(1_768_446_000_123), "\"2026-01-15T03:00:00.123Z\"");
    }
}
