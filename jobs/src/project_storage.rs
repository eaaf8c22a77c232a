//! `project-storage`: bytes of the distinct blobs linked in each project's repositories,
//! stored for the management API.

use std::collections::BTreeSet;

use crate::{JobContext, JobError, JobReport};

const JOB: &str = "project-storage";

pub(crate) async fn run(ctx: &JobContext, report: &mut JobReport) -> Result<(), JobError> {
    let run_started = registry_common::metadata::cutoff(std::time::Duration::ZERO);
    let mut projects = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let names = ctx
            .metadata
            .repository_names(after.as_deref(), ctx.config.job_batch_size)
            .await
            .map_err(JobError::metadata(JOB))?;
        let Some(last) = names.last().cloned() else {
            break;
        };
        for name in &names {
            projects.insert(name.split('/').next().unwrap_or(name).to_owned());
        }
        after = Some(last);
    }
    for project in &projects {
        report.examined += 1;
        let stored = async {
            let size = ctx.metadata.project_size(project).await?;
            ctx.metadata
                .store_project_storage(project, size, run_started)
                .await?;
            Ok::<u64, registry_common::metadata::MetadataError>(size)
        };
        match stored.await {
            Ok(size) => {
                report.changed += 1;
                report.bytes += size;
            }
            Err(e) => report.failed(project, &e),
        }
    }
    if report.failures == 0 {
        ctx.metadata
            .forget_projects_before(run_started)
            .await
            .map_err(JobError::metadata(JOB))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::Job;
    use crate::test_support::{Engine, config, engines, repo, report};

    async fn stored(e: &Engine, project: &str) -> Option<u64> {
        let row = e.ctx.metadata.project_storage(project).await.expect("q");
        row.map(|(size, _)| size)
    }

    #[tokio::test]
    async fn each_project_counts_its_distinct_linked_blobs() {
        for e in engines(config(0, 1)).await {
            e.push_blob(&repo("acme/web"), &[1u8; 100]).await;
            e.push_blob(&repo("acme/api"), &[1u8; 100]).await; // the same blob, once
            e.push_blob(&repo("acme/api"), &[2u8; 50]).await;
            e.push_blob(&repo("acme"), &[3u8; 7]).await;
            e.push_blob(&repo("acmecorp/x"), &[4u8; 1000]).await; // another project

            let run = report(Job::ProjectStorage, &e.ctx).await;
            assert_eq!(
                (run.examined, run.changed, run.bytes, run.failures),
                (2, 2, 157 + 1000, 0),
                "{e:?}"
            );
            assert_eq!(stored(&e, "acme").await, Some(157), "{e:?}");
            assert_eq!(stored(&e, "acmecorp").await, Some(1000), "{e:?}");
            assert_eq!(stored(&e, "nobody").await, None, "{e:?}");
        }
    }

    /// An unlinked blob stops counting at the next run, though its bytes are still stored
    /// until the collector removes them.
    #[tokio::test]
    async fn a_rerun_measures_what_is_linked_now() {
        for e in engines(config(0, 100)).await {
            let name = repo("acme/web");
            e.push_blob(&name, &[1u8; 100]).await;
            let gone = e.push_blob(&name, &[2u8; 30]).await;
            assert_eq!(
                report(Job::ProjectStorage, &e.ctx).await.bytes,
                130,
                "{e:?}"
            );

            let unlinked = e.ctx.metadata.unlink_blob(&name, &gone, &[]).await;
            assert_eq!(
                unlinked.expect("unlink"),
                registry_common::metadata::Deletion::Removed,
                "{e:?}"
            );
            let again = report(Job::ProjectStorage, &e.ctx).await;
            assert_eq!((again.changed, again.bytes), (1, 100), "{e:?}");
            assert_eq!(stored(&e, "acme").await, Some(100), "{e:?}");
        }
    }
}
