//! `cache-evict`: keeps each upstream's cache under its size cap (`max_bytes` in
//! `UPSTREAMS_FILE`) by deleting its least recently pulled manifests (their tags go with
//! them); `blob-gc` then removes the bytes nothing references any more, after its grace
//! period. Pulls refresh `pulled_at` coarsely (`services::cache`), which is all the order
//! needs. A manifest an index still lists waits for the index. Content copied in by a
//! fallback upstream without a prefix is the repository's own and is never evicted.

use crate::{JobContext, JobError, JobReport};
use registry_common::metadata::{Deletion, MetadataError};
use registry_common::oci::{Digest, RepositoryName};

const JOB: &str = "cache-evict";

pub(crate) async fn run(ctx: &JobContext, report: &mut JobReport) -> Result<(), JobError> {
    for upstream in &ctx.upstreams {
        let (Some(prefix), Some(cap)) = (upstream.prefix.as_deref(), upstream.max_bytes) else {
            continue;
        };
        let mut used = ctx
            .metadata
            .bytes_under(prefix)
            .await
            .map_err(JobError::metadata(JOB))?;
        let mut tried = std::collections::HashSet::new();
        while used > cap {
            let candidates = ctx
                .metadata
                .least_recently_pulled(&upstream.name, ctx.config.job_batch_size)
                .await
                .map_err(JobError::metadata(JOB))?;
            let fresh: Vec<_> = candidates
                .into_iter()
                .filter(|c| tried.insert((c.repository.clone(), c.digest.clone())))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for candidate in fresh {
                report.examined += 1;
                match evict(ctx, &candidate.repository, &candidate.digest).await {
                    Ok(true) => report.changed += 1,
                    Ok(false) => {}
                    Err(e) => report.failed(&candidate.digest, &e),
                }
                used = ctx
                    .metadata
                    .bytes_under(prefix)
                    .await
                    .map_err(JobError::metadata(JOB))?;
                if used <= cap {
                    break;
                }
            }
        }
        report.bytes += used;
        tracing::info!(
            upstream = upstream.name,
            used,
            cap,
            "cache size after eviction"
        );
    }
    Ok(())
}

/// Deletes one cached manifest; `false` when an index still lists it (or it went already).
async fn evict(ctx: &JobContext, repository: &str, digest: &str) -> Result<bool, MetadataError> {
    let (Ok(name), Ok(digest)) = (RepositoryName::parse(repository), Digest::parse(digest)) else {
        return Err(MetadataError::Corrupt(format!(
            "cached manifest {repository}@{digest}"
        )));
    };
    Ok(matches!(
        ctx.metadata.delete_manifest(&name, &digest, &[]).await?,
        Deletion::Removed
    ))
}
