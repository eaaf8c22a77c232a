//! `index-manifests`: writes the reference rows of manifests that have none (e.g. rows
//! imported from another registry), reading their payloads.

use registry_common::metadata::Indexed;
use registry_common::oci::ParsedManifest;

use crate::{JobContext, JobError, JobReport};

const JOB: &str = "index-manifests";

pub(crate) async fn run(ctx: &JobContext, report: &mut JobReport) -> Result<(), JobError> {
    let mut after: Option<(i64, String)> = None;
    loop {
        let rows = ctx
            .metadata
            .manifests_without_references(
                after.as_ref().map(|(id, d)| (*id, d.as_str())),
                ctx.config.job_batch_size,
            )
            .await
            .map_err(JobError::metadata(JOB))?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = Some((last.repository_id, last.digest.clone()));
        for row in &rows {
            report.examined += 1;
            let parsed = match ParsedManifest::parse(Some(&row.media_type), &row.payload) {
                Ok(parsed) => parsed,
                Err(e) => {
                    report.failed(&row.digest, &e);
                    continue;
                }
            };
            if parsed.blobs.is_empty() && parsed.children.is_empty() {
                continue; // an empty index: nothing to reference
            }
            match ctx.metadata.index_manifest(row, &parsed).await {
                Ok(Indexed::Written) => report.changed += 1,
                Ok(Indexed::MissingReference) => {
                    report.failed(&row.digest, &MissingReference(row.digest.clone()))
                }
                Err(e) => report.failed(&row.digest, &e),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("manifest {0} references a blob or manifest its repository does not have")]
struct MissingReference(String);
