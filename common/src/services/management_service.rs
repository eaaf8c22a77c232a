//! The management API's operations, for dashboards: a project's repositories, a repository's
//! tags, manifests and size, a project's stored bytes, and deletes.
//!
//! Names arrive as the API spells them: a project (one name component, such as `acme`) and a
//! repository relative to it (`web/api` for `acme/web/api`); see [`super::management_model`]
//! for them, the pages and the answers. Listings are keyset pages over indexed columns.
//!
//! Errors are [`ManagementError`]s; the `api` crate turns them into its envelope, once.

use std::sync::Arc;

use super::Page;
use super::events::EventRecorder;
use super::management_model::{
    DeadLetterItem, Kind, ManifestItem, PageRequest, Project, ProjectRepository, ProjectStorage,
    Replayed, RepositoryInfo, RepositoryItem, RepositoryPage, TagItem, Timestamp,
};
use crate::error::ErrorChain;
use crate::events::EventOrigin;
use crate::metadata::{Deletion, Metadata, MetadataError, NewEvent, PartRecord, RepositoryRow};
use crate::oci::{Digest, RepositoryName, Tag, UploadId};
use crate::storage::{Storage, UploadPartKey};

/// Rows removed per statement while deleting a repository, so that no statement holds the
/// write lock (SQLite) or a transaction (PostgreSQL) for long.
const DELETE_BATCH: u32 = 500;

/// Why a management operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    /// 400: a parameter is not valid (`field` names it as the API spells it).
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// 404.
    #[error("repository not found")]
    RepositoryNotFound,
    /// 404.
    #[error("tag not found")]
    TagNotFound,
    /// 404.
    #[error("manifest not found")]
    ManifestNotFound,
    /// 404: no dead letter of the project has that event id (and destination).
    #[error("no dead letter of this project has that event id")]
    DeadLetterNotFound,
    /// 409: an index of the repository lists the manifest.
    #[error("the manifest is listed by an index of this repository; delete the index first")]
    ManifestInUse,
    /// 500.
    #[error("metadata")]
    Metadata(#[from] MetadataError),
    /// 500: the task deleting a repository panicked or was cancelled.
    #[error("the repository delete task stopped")]
    Task(#[source] tokio::task::JoinError),
}

impl ManagementError {
    pub(super) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ManagementError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// The management operations.
#[derive(Debug, Clone)]
pub struct ManagementService {
    metadata: Metadata,
    storage: Arc<dyn Storage>,
    events: EventRecorder,
}

impl ManagementService {
    pub fn new(metadata: Metadata, storage: Arc<dyn Storage>, events: EventRecorder) -> Self {
        ManagementService {
            metadata,
            storage,
            events,
        }
    }

    /// A page of the project's repositories, by name. A project without repositories has
    /// an empty first page: projects exist outside the registry (the hosting platform's).
    pub async fn list_repositories(
        &self,
        project: &Project,
        page: &PageRequest,
    ) -> Result<Page<RepositoryItem>, ManagementError> {
        let prefix = format!("{}/", project.as_str());
        let after = match page.key(Kind::Repositories)? {
            Some(relative) => format!("{prefix}{relative}"),
            None => prefix.clone(),
        };
        let before = format!("{}0", project.as_str());
        let rows = self
            .metadata
            .repositories_between(&after, &before, page.limit() + 1)
            .await?;
        let relative = |name: &str| name.get(prefix.len()..).unwrap_or_default().to_owned();
        Ok(Page::of_rows(
            rows,
            page.limit(),
            |(name, _)| Kind::Repositories.cursor(&relative(name)),
            |(name, created_at)| RepositoryItem {
                name: relative(&name),
                created_at: Timestamp(created_at),
            },
        ))
    }

    /// The repository's size and creation time.
    pub async fn get_repository(
        &self,
        repository: &ProjectRepository,
    ) -> Result<RepositoryInfo, ManagementError> {
        let row = self.row(repository).await?;
        let size = self.metadata.repository_size(row.id).await?;
        Ok(RepositoryInfo {
            name: repository.relative().to_owned(),
            size,
            created_at: Timestamp(row.created_at),
        })
    }

    /// A page of the repository's tags, by name.
    pub async fn list_tags(
        &self,
        repository: &ProjectRepository,
        page: &PageRequest,
    ) -> Result<RepositoryPage<TagItem>, ManagementError> {
        let after = page.key(Kind::Tags)?.unwrap_or_default();
        let row = self.row(repository).await?;
        let rows = self
            .metadata
            .tag_rows(row.id, &after, page.limit() + 1)
            .await?;
        let page = Page::of_rows(
            rows,
            page.limit(),
            |tag| Kind::Tags.cursor(&tag.name),
            |tag| TagItem {
                tag: tag.name,
                digest: tag.digest,
                created_at: Timestamp(tag.created_at),
                updated_at: Timestamp(tag.updated_at),
            },
        );
        Ok(RepositoryPage {
            name: repository.relative().to_owned(),
            page,
        })
    }

    /// A page of the repository's manifests, newest first.
    pub async fn list_manifests(
        &self,
        repository: &ProjectRepository,
        page: &PageRequest,
    ) -> Result<RepositoryPage<ManifestItem>, ManagementError> {
        let key = page.key(Kind::Manifests)?;
        let after = match &key {
            None => None,
            Some(key) => {
                let (at, digest) = key
                    .split_once(':')
                    .and_then(|(at, digest)| Some((at.parse::<i64>().ok()?, digest)))
                    .ok_or_else(|| {
                        ManagementError::invalid("cursor", "not a cursor of this listing")
                    })?;
                Some((at, digest))
            }
        };
        let row = self.row(repository).await?;
        let rows = self
            .metadata
            .manifest_rows(row.id, after, page.limit() + 1)
            .await?;
        let page = Page::of_rows(
            rows,
            page.limit(),
            |m| Kind::Manifests.cursor(&format!("{}:{}", m.created_at, m.digest)),
            |m| ManifestItem {
                digest: m.digest,
                media_type: m.media_type,
                size: m.size,
                artifact_type: m.artifact_type,
                created_at: Timestamp(m.created_at),
            },
        );
        Ok(RepositoryPage {
            name: repository.relative().to_owned(),
            page,
        })
    }

    /// The project's bytes as the project-storage job last counted them.
    pub async fn project_storage(
        &self,
        project: &Project,
    ) -> Result<ProjectStorage, ManagementError> {
        let stored = self.metadata.project_storage(project.as_str()).await?;
        Ok(match stored {
            Some((size, at)) => ProjectStorage {
                size,
                updated_at: Some(Timestamp(at)),
            },
            None => ProjectStorage {
                size: 0,
                updated_at: None,
            },
        })
    }

    /// A page of the project's dead letters (event deliveries that failed for the last time),
    /// oldest first.
    pub async fn list_dead_letters(
        &self,
        project: &Project,
        page: &PageRequest,
    ) -> Result<Page<DeadLetterItem>, ManagementError> {
        let prefix = format!("{}/", project.as_str());
        let after = match page.key(Kind::DeadLetters)? {
            Some(key) => Some(dead_letter_key(&key)?),
            None => None,
        };
        let after = after
            .as_ref()
            .map(|(seq, destination)| (destination.as_str(), *seq));
        let rows = self
            .metadata
            .dead_letters(&prefix, after, page.limit() + 1)
            .await?;
        Ok(Page::of_rows(
            rows,
            page.limit(),
            |row| Kind::DeadLetters.cursor(&format!("{}:{}", row.seq, row.destination)),
            |row| DeadLetterItem {
                repository: row
                    .repository
                    .get(prefix.len()..)
                    .unwrap_or_default()
                    .to_owned(),
                event: serde_json::from_str(&row.body).unwrap_or(serde_json::Value::Null),
                destination: row.destination,
                event_id: row.event_id,
                action: row.action.as_str().to_owned(),
                attempts: row.attempts,
                last_error: row.last_error,
                failed_at: Timestamp(row.failed_at),
            },
        ))
    }

    /// Sends a dead-lettered event again (to every destination that gave up on it, or to
    /// the one named): its deliveries are pending again, and this process's deliverer starts.
    pub async fn replay_dead_letter(
        &self,
        project: &Project,
        event_id: &str,
        destination: Option<&str>,
    ) -> Result<Replayed, ManagementError> {
        let prefix = format!("{}/", project.as_str());
        let replayed = self
            .metadata
            .replay_dead_letters(&prefix, event_id, destination)
            .await?;
        if replayed == 0 {
            return Err(ManagementError::DeadLetterNotFound);
        }
        self.events.committed();
        Ok(Replayed { replayed })
    }

    /// Removes a tag; its manifest stays.
    pub async fn delete_tag(
        &self,
        repository: &ProjectRepository,
        tag: &Tag,
        origin: &EventOrigin,
    ) -> Result<(), ManagementError> {
        self.row(repository).await?;
        let events = self.events.tag_deleted(origin, repository.name(), tag);
        match self
            .metadata
            .delete_tag(repository.name(), tag, &events)
            .await?
        {
            true => {
                self.events.committed();
                Ok(())
            }
            false => Err(ManagementError::TagNotFound),
        }
    }

    /// Removes a manifest and its tags; the blobs it references are left to garbage
    /// collection. Refused while an index of the repository lists it.
    pub async fn delete_manifest(
        &self,
        repository: &ProjectRepository,
        digest: &Digest,
        origin: &EventOrigin,
    ) -> Result<(), ManagementError> {
        self.row(repository).await?;
        let events = self
            .events
            .manifest_deleted(origin, repository.name(), digest);
        match self
            .metadata
            .delete_manifest(repository.name(), digest, &events)
            .await?
        {
            Deletion::Removed | Deletion::Marked => {
                self.events.committed();
                Ok(())
            }
            Deletion::NotFound => Err(ManagementError::ManifestNotFound),
            Deletion::InUse => Err(ManagementError::ManifestInUse),
        }
    }

    /// Removes the repository and everything in it: tags, manifests, blob links, upload
    /// sessions (and their parts). Blob bytes are left to garbage collection, which frees
    /// those no other repository links. The work runs in a task of its own that the caller
    /// only awaits, so a client that disconnects or times out does not stop it; batches keep
    /// every statement short, and a repeat finishes what an interrupted run (a process that
    /// stopped) left.
    pub async fn delete_repository(
        &self,
        repository: &ProjectRepository,
        origin: &EventOrigin,
    ) -> Result<(), ManagementError> {
        let row = self.row(repository).await?;
        let this = self.clone();
        let name = repository.name().clone();
        let events = self.events.repository_deleted(origin, &name);
        let task = tokio::spawn(async move { this.empty_and_delete(row.id, &name, &events).await });
        Ok(task.await.map_err(ManagementError::Task)??)
    }

    async fn empty_and_delete(
        &self,
        id: i64,
        name: &RepositoryName,
        events: &[NewEvent],
    ) -> Result<(), MetadataError> {
        let (mut tags, mut manifests, mut links, mut uploads) = (0, 0, 0, 0);
        loop {
            match self.metadata.delete_tags_batch(id, DELETE_BATCH).await? {
                0 => break,
                n => tags += n,
            }
        }
        loop {
            match self
                .metadata
                .delete_manifests_batch(id, DELETE_BATCH)
                .await?
            {
                0 => break,
                n => manifests += n,
            }
        }
        loop {
            let sessions = self.metadata.repository_uploads(id, DELETE_BATCH).await?;
            if sessions.is_empty() {
                break;
            }
            for session in sessions {
                if self.metadata.delete_upload_row(&session.id).await? {
                    uploads += 1;
                    self.delete_parts(&session.id, &session.parts).await;
                }
            }
        }
        // A manifest pushed meanwhile keeps its links; the repository row's cascade takes both.
        while let Some(n) = self.metadata.delete_links_batch(id, DELETE_BATCH).await? {
            if n == 0 {
                break;
            }
            links += n;
        }
        if self.metadata.delete_repository_row(id, events).await? {
            self.events.committed();
        }
        tracing::info!(repository = %name, tags, manifests, links, uploads, "repository deleted");
        Ok(())
    }

    /// Removes an upload's parts; a failure is logged, and upload-cleanup finds what is left
    /// (parts without a session).
    async fn delete_parts(&self, id: &str, parts: &[PartRecord]) {
        let Ok(upload) = UploadId::parse(id) else {
            return;
        };
        let keys: Vec<UploadPartKey> = parts
            .iter()
            .map(|part| UploadPartKey {
                upload: upload.clone(),
                part: part.name.as_str().into(),
            })
            .collect();
        if let Err(e) = self.storage.delete_parts(&keys).await {
            tracing::warn!(upload = id, error = %ErrorChain(&e), "upload parts left for upload-cleanup");
        }
    }

    async fn row(&self, repository: &ProjectRepository) -> Result<RepositoryRow, ManagementError> {
        self.metadata
            .repository_row(repository.name())
            .await?
            .ok_or(ManagementError::RepositoryNotFound)
    }
}

/// The `(seq, destination)` a dead-letter cursor carries.
fn dead_letter_key(key: &str) -> Result<(i64, String), ManagementError> {
    let invalid = || ManagementError::invalid("cursor", "not a cursor of this listing");
    let (seq, destination) = key.split_once(':').ok_or_else(invalid)?;
    Ok((seq.parse().map_err(|_| invalid())?, destination.to_owned()))
}
