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

#[cfg(test)]
mod tests {
    use registry_common::oci::{Digest, ParsedManifest};

    use crate::test_support::{config, empty_index, engines, image, repo, report};
    use crate::{Job, JobError};

    /// The reference rows of a manifest that references nothing: a manifest stored with them
    /// is as an import leaves it, unindexed.
    fn no_references() -> ParsedManifest {
        ParsedManifest::parse(None, &empty_index("none")).expect("index")
    }

    #[tokio::test]
    async fn manifests_without_references_get_them_once() {
        for e in engines(config(0, 1)).await {
            let name = repo("p/imported");
            let config_blob = e.push_blob(&name, b"imported config").await;
            let layer = e.push_blob(&name, b"imported layer").await;
            let manifest = image(&config_blob, 15, &[(&layer, 14)]);
            e.put_manifest_as(&name, &manifest, &no_references(), "v1")
                .await;
            // An index that lists nothing has no rows to write, and is looked at every run.
            e.put_manifest(&name, &empty_index("empty"), "empty").await;

            let run = report(Job::IndexManifests, &e.ctx).await;
            assert_eq!(
                (run.examined, run.changed, run.failures),
                (2, 1, 0),
                "{e:?}"
            );
            let again = report(Job::IndexManifests, &e.ctx).await;
            assert_eq!((again.examined, again.changed), (1, 0), "{e:?}");

            // The rows protect the manifest's blobs from the collector.
            assert_eq!(report(Job::BlobGc, &e.ctx).await.changed, 0, "{e:?}");
            for digest in [&config_blob, &layer] {
                assert!(e.linked(&name, digest).await, "{e:?}");
                assert!(e.on_disk(digest).await, "{e:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_manifest_naming_a_blob_its_repository_lacks_is_a_failure() {
        for e in engines(config(0, 100)).await {
            let name = repo("p/broken");
            let missing = Digest::sha256_of(b"never pushed");
            let manifest = image(&missing, 12, &[]);
            e.put_manifest_as(&name, &manifest, &no_references(), "v1")
                .await;

            let run = report(Job::IndexManifests, &e.ctx).await;
            assert_eq!(
                (run.examined, run.changed, run.failures),
                (1, 0, 1),
                "{e:?}"
            );
            match crate::run(Job::IndexManifests, &e.ctx).await {
                Err(JobError::ItemsFailed { reports }) => {
                    assert_eq!(reports.len(), 1, "{e:?}");
                    assert_eq!(reports[0].failures, 1, "{e:?}");
                }
                other => panic!("{e:?}: expected a failed item, got {other:?}"),
            }
        }
    }
}
