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

#[cfg(test)]
mod tests {
    use registry_common::metadata::PartRecord;
    use registry_common::oci::UploadId;

    use crate::Job;
    use crate::test_support::{Engine, HOUR, config, engines, repo, report};

    /// A session with one part of `bytes` recorded, as a `PATCH` leaves it.
    async fn session(e: &Engine, bytes: &[u8]) -> UploadId {
        let id = UploadId::new();
        let meta = &e.ctx.metadata;
        meta.create_upload(&repo("p/up"), &id, b"s")
            .await
            .expect("session");
        let part = e
            .put_part(id.clone(), "00000000000000000000-x", bytes)
            .await;
        let record = PartRecord {
            name: part.part.to_string(),
            size: bytes.len() as u64,
        };
        let to = bytes.len() as u64;
        assert!(
            meta.advance_upload(&id, 0, to, b"h", &[record])
                .await
                .expect("advance")
        );
        id
    }

    async fn parts_in_storage(e: &Engine, id: &UploadId) -> usize {
        let uploads = e.ctx.storage.list_uploads().await.expect("list uploads");
        uploads
            .iter()
            .filter(|u| &u.upload == id)
            .map(|u| u.parts.len())
            .sum()
    }

    #[tokio::test]
    async fn sessions_past_the_maximum_age_go_with_their_parts_and_fresh_ones_stay() {
        for e in engines(config(HOUR, 1)).await {
            let first = session(&e, b"half an upload").await;
            let second = session(&e, b"another").await;

            let fresh = report(Job::UploadCleanup, &e.ctx).await;
            assert_eq!((fresh.changed, fresh.failures), (0, 0), "{e:?}");
            for id in [&first, &second] {
                assert!(e.ctx.metadata.upload_exists(id).await.expect("q"), "{e:?}");
                assert_eq!(parts_in_storage(&e, id).await, 1, "{e:?}");
            }

            // Batches of one: both sessions go within the run.
            let stale = report(Job::UploadCleanup, &e.with(config(0, 1))).await;
            assert_eq!(
                (stale.examined, stale.changed, stale.bytes, stale.failures),
                (2, 2, 14 + 7, 0),
                "{e:?}"
            );
            for id in [&first, &second] {
                assert!(!e.ctx.metadata.upload_exists(id).await.expect("q"), "{e:?}");
                assert_eq!(parts_in_storage(&e, id).await, 0, "{e:?}");
            }
            let again = report(Job::UploadCleanup, &e.with(config(0, 1))).await;
            assert_eq!((again.examined, again.changed), (0, 0), "{e:?}");
        }
    }

    /// Parts whose session row is gone (a crash between the row's delete and theirs).
    #[tokio::test]
    async fn parts_without_a_session_go_after_the_maximum_age() {
        for e in engines(config(HOUR, 100)).await {
            let id = UploadId::new();
            e.put_part(id.clone(), "00000000000000000000-y", b"left behind")
                .await;

            assert_eq!(report(Job::UploadCleanup, &e.ctx).await.changed, 0, "{e:?}");
            assert_eq!(parts_in_storage(&e, &id).await, 1, "{e:?}");

            let later = report(Job::UploadCleanup, &e.with(config(0, 100))).await;
            assert_eq!((later.examined, later.changed), (1, 1), "{e:?}");
            assert_eq!(parts_in_storage(&e, &id).await, 0, "{e:?}");
        }
    }
}
