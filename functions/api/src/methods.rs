//! One handler per method of the management API: validate the parameters, authorize the
//! caller on the project (`list`, `get` or `push`), call the management service, answer.
//! Parameters are checked before the caller is authorized, so a malformed request is a 400
//! whoever sends it; nothing is looked up before authorization.

use registry_common::auth::Action;
use registry_common::oci::{Digest, Tag};
use registry_common::services::management_model::{PageRequest, Project, ProjectRepository};
use serde::Deserialize;

use crate::envelope::{Answer, ApiError};
use crate::request::Ctx;

/// `{project}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectParams {
    project: String,
}

/// `{project, cursor?, limit?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectPageParams {
    project: String,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// `{project, repository}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryParams {
    project: String,
    repository: String,
}

/// `{project, repository, cursor?, limit?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryPageParams {
    project: String,
    repository: String,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// `{project, repository, tag}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagParams {
    project: String,
    repository: String,
    tag: String,
}

/// `{project, repository, digest}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestParams {
    project: String,
    repository: String,
    digest: String,
}

/// `{project, eventId, destination?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeadLetterParams {
    project: String,
    event_id: String,
    destination: Option<String>,
}

/// The project, once the caller may do `action` on it.
async fn project(ctx: &Ctx, raw: &str, action: Action) -> Result<Project, ApiError> {
    let project = Project::parse(raw)?;
    ctx.caller
        .authorize_project(project.as_str(), action)
        .await?;
    Ok(project)
}

/// The repository, once the caller may do `action` on its project.
async fn repository(
    ctx: &Ctx,
    project: &str,
    repository: &str,
    action: Action,
) -> Result<ProjectRepository, ApiError> {
    let project = Project::parse(project)?;
    let repository = ProjectRepository::parse(&project, repository)?;
    ctx.caller
        .authorize_project(project.as_str(), action)
        .await?;
    Ok(repository)
}

/// `listRepositories`: a page of the project's repositories (`list`).
pub async fn list_repositories(ctx: Ctx, p: ProjectPageParams) -> Result<Answer, ApiError> {
    let page = PageRequest::new(p.cursor, p.limit)?;
    let project = project(&ctx, &p.project, Action::List).await?;
    let listed = ctx.state.management.list_repositories(&project, &page);
    Answer::result(listed.await?)
}

/// `getRepository`: a repository's size and creation time (`get`).
pub async fn get_repository(ctx: Ctx, p: RepositoryParams) -> Result<Answer, ApiError> {
    let repository = repository(&ctx, &p.project, &p.repository, Action::Get).await?;
    Answer::result(ctx.state.management.get_repository(&repository).await?)
}

/// `listTags`: a page of a repository's tags (`get`).
pub async fn list_tags(ctx: Ctx, p: RepositoryPageParams) -> Result<Answer, ApiError> {
    let page = PageRequest::new(p.cursor, p.limit)?;
    let repository = repository(&ctx, &p.project, &p.repository, Action::Get).await?;
    Answer::result(ctx.state.management.list_tags(&repository, &page).await?)
}

/// `listManifests`: a page of a repository's manifests, newest first (`get`).
pub async fn list_manifests(ctx: Ctx, p: RepositoryPageParams) -> Result<Answer, ApiError> {
    let page = PageRequest::new(p.cursor, p.limit)?;
    let repository = repository(&ctx, &p.project, &p.repository, Action::Get).await?;
    Answer::result(
        ctx.state
            .management
            .list_manifests(&repository, &page)
            .await?,
    )
}

/// `getProjectStorage`: the project's bytes as the project-storage job last counted (`get`).
pub async fn get_project_storage(ctx: Ctx, p: ProjectParams) -> Result<Answer, ApiError> {
    let project = project(&ctx, &p.project, Action::Get).await?;
    Answer::result(ctx.state.management.project_storage(&project).await?)
}

/// `deleteTag`: removes a tag; its manifest stays (`push`).
pub async fn delete_tag(ctx: Ctx, p: TagParams) -> Result<Answer, ApiError> {
    deletes_enabled(&ctx)?;
    let tag = Tag::parse(&p.tag).map_err(|_| {
        ApiError::BadRequest("tag: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}".to_owned())
    })?;
    let repository = repository(&ctx, &p.project, &p.repository, Action::Push).await?;
    ctx.state
        .management
        .delete_tag(&repository, &tag, &ctx.origin)
        .await?;
    Answer::done()
}

/// `deleteManifest`: removes a manifest and its tags (`push`); 409 while an index lists it.
pub async fn delete_manifest(ctx: Ctx, p: DigestParams) -> Result<Answer, ApiError> {
    deletes_enabled(&ctx)?;
    let digest = Digest::parse(&p.digest).map_err(|_| {
        ApiError::BadRequest(
            "digest: must be sha256:<64 hex digits> or sha512:<128 hex digits>".to_owned(),
        )
    })?;
    let repository = repository(&ctx, &p.project, &p.repository, Action::Push).await?;
    ctx.state
        .management
        .delete_manifest(&repository, &digest, &ctx.origin)
        .await?;
    Answer::done()
}

/// `deleteRepository`: removes the repository and everything in it (`push`); it runs to the
/// end even when the caller goes away.
pub async fn delete_repository(ctx: Ctx, p: RepositoryParams) -> Result<Answer, ApiError> {
    deletes_enabled(&ctx)?;
    let repository = repository(&ctx, &p.project, &p.repository, Action::Push).await?;
    ctx.state
        .management
        .delete_repository(&repository, &ctx.origin)
        .await?;
    Answer::done()
}

/// `listDeadLetters`: the project's event deliveries that failed for the last time (`get`).
pub async fn list_dead_letters(ctx: Ctx, p: ProjectPageParams) -> Result<Answer, ApiError> {
    let page = PageRequest::new(p.cursor, p.limit)?;
    let project = project(&ctx, &p.project, Action::Get).await?;
    Answer::result(
        ctx.state
            .management
            .list_dead_letters(&project, &page)
            .await?,
    )
}

/// `replayDeadLetter`: sends a dead-lettered event again (`push`).
pub async fn replay_dead_letter(ctx: Ctx, p: DeadLetterParams) -> Result<Answer, ApiError> {
    let project = project(&ctx, &p.project, Action::Push).await?;
    let destination = p.destination.as_deref().filter(|d| !d.is_empty());
    Answer::result(
        ctx.state
            .management
            .replay_dead_letter(&project, &p.event_id, destination)
            .await?,
    )
}

/// Deletes are refused while `DELETE_ENABLED=false`.
fn deletes_enabled(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.state.limits.delete_enabled {
        Ok(())
    } else {
        Err(ApiError::DeletesDisabled)
    }
}
