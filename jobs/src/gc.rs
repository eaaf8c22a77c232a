//! `blob-gc`: unreferenced links, then unlinked blobs (row and object), then storage objects
//! without a row; see the protocol in the crate docs.

use std::time::SystemTime;

use registry_common::metadata::{LINK_USE_REFRESH, LinkRef, cutoff};
use registry_common::oci::Algorithm;
use registry_common::storage::BlobKey;

use crate::{JobContext, JobError, JobReport};

const JOB: &str = "blob-gc";

pub(crate) async fn run(ctx: &JobContext, report: &mut JobReport) -> Result<(), JobError> {
    let cutoff = cutoff(ctx.grace());
    // Reads refresh a link's last use only when it is older than `LINK_USE_REFRESH`, so the
    // grace period of links counts from that much earlier (no more than the grace period
    // itself: with no grace there is nothing to protect).
    let slack = LINK_USE_REFRESH.min(ctx.grace());
    collect_links(
        ctx,
        report,
        registry_common::metadata::cutoff(ctx.grace() + slack),
    )
    .await?;
    collect_blobs(ctx, report, cutoff).await?;
    collect_orphan_objects(ctx, report).await
}

async fn collect_links(
    ctx: &JobContext,
    report: &mut JobReport,
    cutoff: i64,
) -> Result<(), JobError> {
    let mut after: Option<LinkRef> = None;
    loop {
        let links = ctx
            .metadata
            .unreferenced_links(cutoff, after.as_ref(), ctx.config.job_batch_size)
            .await
            .map_err(JobError::metadata(JOB))?;
        let Some(last) = links.last().cloned() else {
            return Ok(());
        };
        for link in &links {
            report.examined += 1;
            match ctx.metadata.delete_link_if_unreferenced(link, cutoff).await {
                Ok(true) => report.changed += 1,
                Ok(false) => {}
                Err(e) => report.failed(&link.digest, &e),
            }
        }
        after = Some(last);
    }
}

async fn collect_blobs(
    ctx: &JobContext,
    report: &mut JobReport,
    cutoff: i64,
) -> Result<(), JobError> {
    let mut after: Option<String> = None;
    loop {
        let blobs = ctx
            .metadata
            .unlinked_blobs(cutoff, after.as_deref(), ctx.config.job_batch_size)
            .await
            .map_err(JobError::metadata(JOB))?;
        let Some((last, _)) = blobs.last() else {
            return Ok(());
        };
        after = Some(last.to_string());
        for (digest, size) in blobs {
            report.examined += 1;
            let deleted = async {
                let mut lock = ctx
                    .metadata
                    .lock_blob(&digest)
                    .await
                    .map_err(Failure::Metadata)?;
                if !lock
                    .delete_if_unlinked(cutoff)
                    .await
                    .map_err(Failure::Metadata)?
                {
                    return Ok(false);
                }
                // The row's delete commits only once the bytes are gone: a failure here rolls
                // the row back, and the next run tries again.
                ctx.storage
                    .delete_blob(&BlobKey(digest.clone()))
                    .await
                    .map_err(Failure::Storage)?;
                lock.commit().await.map_err(Failure::Metadata)?;
                Ok::<bool, Failure>(true)
            };
            match deleted.await {
                Ok(true) => {
                    report.changed += 1;
                    report.bytes += size;
                }
                Ok(false) => {}
                Err(e) => report.failed(&digest.to_string(), &e),
            }
        }
    }
}

async fn collect_orphan_objects(ctx: &JobContext, report: &mut JobReport) -> Result<(), JobError> {
    let older_than = SystemTime::now() - ctx.grace();
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        for byte in 0..=255u8 {
            let prefix = format!("{byte:02x}");
            let objects = ctx
                .storage
                .list_blobs(algorithm, &prefix)
                .await
                .map_err(JobError::storage(JOB))?;
            for object in objects.into_iter().filter(|o| o.modified <= older_than) {
                report.examined += 1;
                let deleted = async {
                    let mut lock = ctx
                        .metadata
                        .lock_blob(&object.key.0)
                        .await
                        .map_err(Failure::Metadata)?;
                    if lock.exists().await.map_err(Failure::Metadata)? {
                        return Ok(false);
                    }
                    ctx.storage
                        .delete_blob(&object.key)
                        .await
                        .map_err(Failure::Storage)?;
                    lock.commit().await.map_err(Failure::Metadata)?;
                    Ok::<bool, Failure>(true)
                };
                match deleted.await {
                    Ok(true) => {
                        tracing::info!(digest = %object.key.0, size = object.size, "deleted storage object without a metadata row");
                        report.changed += 1;
                        report.bytes += object.size;
                    }
                    Ok(false) => {}
                    Err(e) => report.failed(&object.key.0.to_string(), &e),
                }
            }
        }
    }
    Ok(())
}

/// A per-item failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error("metadata")]
    Metadata(#[source] registry_common::metadata::MetadataError),
    #[error("storage")]
    Storage(#[source] registry_common::storage::StorageError),
}

#[cfg(test)]
mod tests;
