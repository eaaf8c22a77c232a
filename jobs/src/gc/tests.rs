//! The collector's decisions, on each engine: what the grace period keeps, what goes past it,
//! what a manifest protects, marked links, storage objects without a row, and paging.

use registry_common::metadata::Deletion;

use crate::Job;
use crate::test_support::{HOUR, config, engines, image, repo, report};

#[tokio::test]
async fn links_and_blobs_within_the_grace_period_are_kept() {
    for e in engines(config(HOUR, 100)).await {
        let name = repo("p/young");
        let digest = e.push_blob(&name, b"just pushed").await;

        let run = report(Job::BlobGc, &e.ctx).await;
        assert_eq!((run.changed, run.bytes, run.failures), (0, 0, 0), "{e:?}");
        assert!(e.linked(&name, &digest).await, "{e:?}");
        assert!(e.on_disk(&digest).await, "{e:?}");
    }
}

#[tokio::test]
async fn an_unreferenced_link_past_the_grace_period_goes_and_its_blob_with_it() {
    for e in engines(config(0, 100)).await {
        let name = repo("p/app");
        let config_blob = e.push_blob(&name, b"{\"config\":1}").await;
        e.put_manifest(&name, &image(&config_blob, 12, &[]), "v1")
            .await;
        let loose = e.push_blob(&name, b"loose layer").await;

        let run = report(Job::BlobGc, &e.ctx).await;
        // The loose link, then its blob (row and object); the config's object is looked at
        // in storage and kept for its row.
        assert_eq!(
            (run.examined, run.changed, run.bytes, run.failures),
            (3, 2, 11, 0),
            "{e:?}"
        );
        assert!(!e.linked(&name, &loose).await, "{e:?}");
        assert!(!e.on_disk(&loose).await, "{e:?}");
        assert!(e.linked(&name, &config_blob).await, "{e:?}");
        assert!(e.on_disk(&config_blob).await, "{e:?}");
    }
}

#[tokio::test]
async fn a_blob_a_manifest_references_in_any_repository_is_kept() {
    for e in engines(config(0, 100)).await {
        let used = repo("p/used");
        let elsewhere = repo("q/elsewhere");
        let shared = e.push_blob(&used, b"shared config").await;
        e.put_manifest(&used, &image(&shared, 13, &[]), "v1").await;
        assert_eq!(e.push_blob(&elsewhere, b"shared config").await, shared);

        let run = report(Job::BlobGc, &e.ctx).await;
        assert_eq!(
            (run.changed, run.bytes),
            (1, 0),
            "{e:?}: only the idle link"
        );
        assert!(!e.linked(&elsewhere, &shared).await, "{e:?}");
        assert!(e.linked(&used, &shared).await, "{e:?}");
        assert!(e.on_disk(&shared).await, "{e:?}");
    }
}

/// A blob `DELETE` while a manifest uses the blob marks the link; the link goes with that
/// manifest however recent its use, and its blob then follows past the grace period.
#[tokio::test]
async fn a_marked_link_goes_with_its_last_manifest_whatever_its_age() {
    for e in engines(config(HOUR, 100)).await {
        let name = repo("p/marked");
        let config_blob = e.push_blob(&name, b"marked config").await;
        let layer = e.push_blob(&name, b"marked layer").await;
        let manifest = image(&config_blob, 13, &[(&layer, 12)]);
        let digest = e.put_manifest(&name, &manifest, "v1").await;
        let meta = &e.ctx.metadata;
        assert_eq!(
            meta.unlink_blob(&name, &layer, &[]).await.expect("unlink"),
            Deletion::Marked,
            "{e:?}"
        );

        assert_eq!(report(Job::BlobGc, &e.ctx).await.changed, 0, "{e:?}");
        assert!(
            e.linked(&name, &layer).await,
            "{e:?}: the manifest still pulls"
        );

        assert_eq!(
            meta.delete_manifest(&name, &digest, &[])
                .await
                .expect("delete"),
            Deletion::Removed,
            "{e:?}"
        );
        assert!(
            !e.linked(&name, &layer).await,
            "{e:?}: gone with the manifest"
        );
        assert!(e.linked(&name, &config_blob).await, "{e:?}: just orphaned");
        // Within the grace period the orphaned link and the unlinked blob stay.
        assert_eq!(report(Job::BlobGc, &e.ctx).await.changed, 0, "{e:?}");
        assert!(e.on_disk(&layer).await, "{e:?}");

        let later = report(Job::BlobGc, &e.with(config(0, 100))).await;
        // The config's link, then both blobs.
        assert_eq!((later.changed, later.bytes), (3, 25), "{e:?}");
        assert!(!e.on_disk(&layer).await, "{e:?}");
        assert!(!e.on_disk(&config_blob).await, "{e:?}");
    }
}

/// An upload that crashed between writing the object and recording its row.
#[tokio::test]
async fn an_object_without_a_row_goes_only_after_the_grace_period() {
    for e in engines(config(HOUR, 100)).await {
        let orphan = e.put_object(b"crashed finalisation").await;

        assert_eq!(report(Job::BlobGc, &e.ctx).await.changed, 0, "{e:?}");
        assert!(e.on_disk(&orphan).await, "{e:?}");

        let later = report(Job::BlobGc, &e.with(config(0, 100))).await;
        assert_eq!(
            (later.examined, later.changed, later.bytes),
            (1, 1, 20),
            "{e:?}"
        );
        assert!(!e.on_disk(&orphan).await, "{e:?}");
    }
}

/// Batches of one page through all the work within the run; a second run finds nothing.
#[tokio::test]
async fn batches_smaller_than_the_work_finish_and_a_rerun_changes_nothing() {
    for e in engines(config(0, 1)).await {
        let kept = e.push_blob(&repo("a/kept"), b"kept config").await;
        e.put_manifest(&repo("a/kept"), &image(&kept, 11, &[]), "v1")
            .await;
        let mut loose = Vec::new();
        for (name, bytes) in [
            ("a/one", &b"one"[..]),
            ("a/one", b"two"),
            ("b/two", b"three"),
            ("b/two", b"one"),
            ("c/three", b"four"),
        ] {
            loose.push((repo(name), e.push_blob(&repo(name), bytes).await));
        }

        let run = report(Job::BlobGc, &e.ctx).await;
        // Five links, then four distinct blobs ("one" is linked twice).
        assert_eq!((run.changed, run.bytes, run.failures), (9, 15, 0), "{e:?}");
        for (name, digest) in &loose {
            assert!(!e.linked(name, digest).await, "{e:?}: {name} {digest}");
            assert!(!e.on_disk(digest).await, "{e:?}: {digest}");
        }
        assert!(e.on_disk(&kept).await, "{e:?}");

        let again = report(Job::BlobGc, &e.ctx).await;
        assert_eq!(
            (again.examined, again.changed, again.failures),
            (1, 0, 0),
            "{e:?}: only the kept object is looked at"
        );
    }
}
