//! `upload-cleanup`: upload sessions untouched for `UPLOAD_MAX_AGE_SECS`, and their parts;
//! then parts in storage whose session is gone (a crash between the two), and writes a
//! crashed request left unfinished in storage (S3 multipart uploads).

use std::time::{Duration, SystemTime};

use registry_common::metadata::cutoff;
use registry_common::oci::UploadId;
use registry_common::storage::UploadPartKey;

use crate::{JobContext, JobError, JobReport};

const JOB: &str = "upload-cleanup";

pub(crate) async fn run(ctx: &JobContext, report: &mut JobReport) -> Result<(), JobError> {
    let max_age = Duration::from_secs(ctx.config.upload_max_age_secs);
    let cutoff = cutoff(max_age);
    loop {
        let stale = ctx
            .metadata
            .stale_uploads(cutoff, ctx.config.job_batch_size)
            .await
            .map_err(JobError::metadata(JOB))?;
        if stale.is_empty() {
            break;
        }
        let mut progressed = false;
        for upload in stale {
            report.examined += 1;
            match ctx.metadata.delete_stale_upload(&upload).await {
                Ok(true) => {
                    progressed = true;
                    report.changed += 1;
                    let Ok(id) = UploadId::parse(&upload.id) else {
                        continue;
                    };
                    let parts: Vec<UploadPartKey> = upload
                        .parts
                        .iter()
                        .map(|p| UploadPartKey {
                            upload: id.clone(),
                            part: p.name.as_str().into(),
                        })
                        .collect();
                    report.bytes += upload.parts.iter().map(|p| p.size).sum::<u64>();
                    // Leftovers are found below (or on the next run) as parts without a session.
                    if let Err(e) = ctx.storage.delete_parts(&parts).await {
                        report.failed(&upload.id, &e);
                    }
                }
                Ok(false) => {}
                Err(e) => report.failed(&upload.id, &e),
            }
        }
        if !progressed {
            // Every listed session was touched meanwhile; they are not stale any more.
            break;
        }
    }
    let older_than = SystemTime::now() - max_age;
    let in_storage = ctx
        .storage
        .list_uploads()
        .await
        .map_err(JobError::storage(JOB))?;
    for upload in in_storage.into_iter().filter(|u| u.modified <= older_than) {
        report.examined += 1;
        match ctx.metadata.upload_exists(&upload.upload).await {
            Ok(true) => {}
            Ok(false) => match ctx.storage.delete_parts(&upload.parts).await {
                Ok(()) => report.changed += 1,
                Err(e) => report.failed(&upload.upload.to_string(), &e),
            },
            Err(e) => report.failed(&upload.upload.to_string(), &e),
        }
    }
    match ctx.storage.abort_abandoned_writes(older_than).await {
        Ok(aborted) => report.changed += aborted,
        Err(e) => report.failed("unfinished writes", &e),
    }
    Ok(())
}
