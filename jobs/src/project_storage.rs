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
