//! Contract of the metadata layer, run against both engines: SQLite (a temp file) and a real
//! PostgreSQL server (a fresh database on `TEST_DATABASE_URL`). Every behaviour, including the
//! races, must be the same on both.

use std::sync::Arc;

use registry_common::config::DbConfig;
use registry_common::metadata::{Deletion, ManifestPut, Metadata, NewManifest, PartRecord};
use registry_common::oci::{Digest, ParsedManifest, RepositoryName, Tag, UploadId};
use registry_tests::TestDatabase;

/// Keeps an engine's database alive for the test.
#[allow(dead_code, reason = "held only for its Drop")]
enum Guard {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase),
}

fn db_config() -> DbConfig {
    DbConfig {
        database_url: None,
        db_max_connections: 8,
        db_min_connections: 0,
        db_acquire_timeout_secs: 30,
        db_idle_timeout_secs: 60,
        db_migrate_on_start: true,
    }
}

/// A migrated, empty database per engine.
async fn engines() -> Vec<(&'static str, Metadata, Guard)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("meta.db").display());
    let sqlite = Metadata::connect(&url, &db_config())
        .await
        .expect("open sqlite");
    let database = TestDatabase::create().await;
    let postgres = Metadata::connect(database.url(), &db_config())
        .await
        .expect("open postgres");
    vec![
        ("sqlite", sqlite, Guard::Sqlite(dir)),
        ("postgres", postgres, Guard::Postgres(database)),
    ]
}

fn repo(name: &str) -> RepositoryName {
    RepositoryName::parse(name).expect("valid name")
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).expect("valid tag")
}

fn digest_of(bytes: &[u8]) -> Digest {
    Digest::sha256_of(bytes)
}

/// An image manifest naming the given blobs (digest, size), with an optional subject.
fn image(blobs: &[(&Digest, u64)], subject: Option<&Digest>, artifact: Option<&str>) -> Vec<u8> {
    let layers: Vec<_> = blobs[1..]
        .iter()
        .map(|(d, s)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": s}))
        .collect();
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blobs[0].0.to_string(), "size": blobs[0].1},
        "layers": layers,
    });
    if let Some(subject) = subject {
        m["subject"] = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject.to_string(), "size": 1});
    }
    if let Some(artifact) = artifact {
        m["artifactType"] = artifact.into();
    }
    m.to_string().into_bytes()
}

fn index(children: &[(&Digest, u64)]) -> Vec<u8> {
    let manifests: Vec<_> = children
        .iter()
        .map(|(d, s)| serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d.to_string(), "size": s}))
        .collect();
    serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})
        .to_string()
        .into_bytes()
}

async fn put(
    meta: &Metadata,
    name: &RepositoryName,
    payload: &[u8],
    tag: Option<&Tag>,
) -> ManifestPut {
    let parsed = ParsedManifest::parse(None, payload).expect("valid manifest");
    let digest = digest_of(payload);
    let new = NewManifest {
        digest: &digest,
        media_type: parsed.kind.media_type(),
        payload,
        parsed: &parsed,
    };
    meta.put_manifest(name, new, tag, &[])
        .await
        .expect("put manifest")
}

/// Records a blob under its lock, as a finished upload does.
async fn record_blob(
    meta: &Metadata,
    name: &RepositoryName,
    digest: &Digest,
    size: u64,
) -> Result<(), registry_common::metadata::MetadataError> {
    let mut lock = meta.lock_blob(digest).await?;
    lock.record(name, size).await?;
    lock.commit().await
}

/// Closes a session and records its blob, as a finished upload does; false when the session
/// is not at `offset`.
async fn finish_upload(
    meta: &Metadata,
    id: &UploadId,
    offset: u64,
    repository_id: i64,
    digest: &Digest,
    size: u64,
) -> bool {
    let mut lock = meta.lock_blob(digest).await.expect("metadata");
    if !lock.close_session(id, offset).await.expect("metadata") {
        return false;
    }
    lock.record_in(repository_id, size).await.expect("metadata");
    lock.commit().await.expect("metadata");
    true
}

/// Records a blob of `bytes` (its digest and size) in the repository.
async fn blob(meta: &Metadata, name: &RepositoryName, bytes: &[u8]) -> (Digest, u64) {
    let digest = digest_of(bytes);
    record_blob(meta, name, &digest, bytes.len() as u64)
        .await
        .expect("record blob");
    (digest, bytes.len() as u64)
}

#[tokio::test]
async fn upload_sessions_move_only_from_their_offset() {
    for (engine, meta, _guard) in engines().await {
        let name = repo("p/app");
        let id = UploadId::new();
        meta.create_upload(&name, &id, b"state0").await.unwrap();
        let row = meta.upload(&name, &id).await.unwrap().expect("session");
        assert_eq!(
            (row.offset, row.hash_state.as_slice()),
            (0, &b"state0"[..]),
            "{engine}"
        );
        assert!(
            meta.upload(&repo("p/other"), &id).await.unwrap().is_none(),
            "{engine}: other repo"
        );

        let part = PartRecord {
            name: "0-a".into(),
            size: 10,
        };
        assert!(
            meta.advance_upload(&id, 0, 10, b"s10", std::slice::from_ref(&part))
                .await
                .unwrap()
        );
        assert!(
            !meta.advance_upload(&id, 0, 5, b"s5", &[]).await.unwrap(),
            "{engine}: stale offset"
        );
        let row = meta.upload(&name, &id).await.unwrap().expect("session");
        assert_eq!(
            (row.offset, row.parts.clone()),
            (10, vec![part]),
            "{engine}"
        );

        let d = digest_of(b"0123456789");
        assert!(
            !finish_upload(&meta, &id, 5, row.repository_id, &d, 10).await,
            "{engine}"
        );
        assert!(
            finish_upload(&meta, &id, 10, row.repository_id, &d, 10).await,
            "{engine}"
        );
        assert!(
            meta.upload(&name, &id).await.unwrap().is_none(),
            "{engine}: session closed"
        );
        assert_eq!(
            meta.linked_blob_size(&name, &d).await.unwrap(),
            Some(10),
            "{engine}"
        );
        assert!(
            meta.delete_upload(&name, &id).await.unwrap().is_none(),
            "{engine}"
        );

        let other = UploadId::new();
        meta.create_upload(&name, &other, b"s").await.unwrap();
        assert!(
            meta.delete_upload(&repo("p/other"), &other)
                .await
                .unwrap()
                .is_none(),
            "{engine}"
        );
        assert_eq!(
            meta.delete_upload(&name, &other).await.unwrap(),
            Some(vec![]),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn racing_chunks_on_one_session_apply_exactly_once() {
    for (engine, meta, _guard) in engines().await {
        let meta = Arc::new(meta);
        let name = repo("race/patch");
        for iteration in 0..40 {
            let id = UploadId::new();
            meta.create_upload(&name, &id, b"s").await.unwrap();
            let racers = (1..=6u64).map(|k| {
                let (meta, id) = (meta.clone(), id.clone());
                tokio::spawn(async move {
                    let part = PartRecord {
                        name: format!("0-{k}"),
                        size: k,
                    };
                    let won = meta.advance_upload(&id, 0, k, b"h", &[part]).await.unwrap();
                    (k, won)
                })
            });
            let results: Vec<(u64, bool)> = futures_util::future::join_all(racers)
                .await
                .into_iter()
                .map(|r| r.unwrap())
                .collect();
            let winners: Vec<u64> = results
                .iter()
                .filter(|(_, won)| *won)
                .map(|(k, _)| *k)
                .collect();
            assert_eq!(
                winners.len(),
                1,
                "{engine} iteration {iteration}: {results:?}"
            );
            let row = meta.upload(&name, &id).await.unwrap().expect("session");
            assert_eq!(row.offset, winners[0], "{engine}");
            assert_eq!(row.parts.len(), 1, "{engine}");
            assert_eq!(row.parts[0].size, winners[0], "{engine}");
        }
    }
}

#[tokio::test]
async fn manifests_need_their_blobs_and_children() {
    for (engine, meta, _guard) in engines().await {
        let name = repo("p/img");
        let config = digest_of(b"{}config");
        let missing = image(&[(&config, 8)], None, None);
        assert_eq!(
            put(&meta, &name, &missing, None).await,
            ManifestPut::MissingBlob(config.clone()),
            "{engine}"
        );
        assert!(
            meta.manifest_by_digest(&name, &digest_of(&missing))
                .await
                .unwrap()
                .is_none(),
            "{engine}"
        );

        let (config, size) = blob(&meta, &name, b"{}config").await;
        let wrong_size = image(&[(&config, size + 1)], None, None);
        assert!(
            matches!(
                put(&meta, &name, &wrong_size, None).await,
                ManifestPut::SizeMismatch { .. }
            ),
            "{engine}"
        );

        let (layer, layer_size) = blob(&meta, &name, b"layer bytes").await;
        let good = image(&[(&config, size), (&layer, layer_size)], None, None);
        assert_eq!(
            put(&meta, &name, &good, Some(&tag("v1"))).await,
            ManifestPut::Stored,
            "{engine}"
        );
        assert_eq!(
            put(&meta, &name, &good, Some(&tag("v1"))).await,
            ManifestPut::Stored,
            "{engine}: idempotent"
        );
        let stored = meta
            .manifest_by_tag(&name, &tag("v1"))
            .await
            .unwrap()
            .expect("by tag");
        assert_eq!(stored.payload, good, "{engine}");
        assert_eq!(stored.digest, digest_of(&good), "{engine}");

        // Blobs linked in another repository do not count.
        assert_eq!(
            put(&meta, &repo("q/img"), &good, None).await,
            ManifestPut::MissingBlob(config.clone()),
            "{engine}"
        );

        let child = digest_of(&good);
        let absent = digest_of(b"absent");
        let bad_index = index(&[(&child, good.len() as u64), (&absent, 3)]);
        assert_eq!(
            put(&meta, &name, &bad_index, None).await,
            ManifestPut::MissingChild(absent),
            "{engine}"
        );
        let good_index = index(&[(&child, good.len() as u64)]);
        assert_eq!(
            put(&meta, &name, &good_index, Some(&tag("multi"))).await,
            ManifestPut::Stored,
            "{engine}"
        );
    }
}

#[tokio::test]
async fn deletes_respect_references() {
    for (engine, meta, _guard) in engines().await {
        let name = repo("p/del");
        let (config, size) = blob(&meta, &name, b"cfg").await;
        let (spare, _) = blob(&meta, &name, b"spare").await;
        let manifest = image(&[(&config, size)], None, None);
        assert_eq!(
            put(&meta, &name, &manifest, Some(&tag("a"))).await,
            ManifestPut::Stored
        );
        let digest = digest_of(&manifest);
        let list = index(&[(&digest, manifest.len() as u64)]);
        assert_eq!(
            put(&meta, &name, &list, Some(&tag("i"))).await,
            ManifestPut::Stored
        );

        // A referenced blob is only marked: it stays readable for its manifest.
        assert_eq!(
            meta.unlink_blob(&name, &config, &[]).await.unwrap(),
            Deletion::Marked,
            "{engine}"
        );
        assert!(
            meta.linked_blob_size(&name, &config)
                .await
                .unwrap()
                .is_some(),
            "{engine}: marked link still readable"
        );
        assert_eq!(
            meta.unlink_blob(&name, &spare, &[]).await.unwrap(),
            Deletion::Removed,
            "{engine}"
        );
        assert_eq!(
            meta.unlink_blob(&name, &spare, &[]).await.unwrap(),
            Deletion::NotFound,
            "{engine}"
        );
        assert_eq!(
            meta.delete_manifest(&name, &digest, &[]).await.unwrap(),
            Deletion::InUse,
            "{engine}"
        );

        assert!(
            meta.delete_tag(&name, &tag("i"), &[]).await.unwrap(),
            "{engine}"
        );
        assert!(
            !meta.delete_tag(&name, &tag("i"), &[]).await.unwrap(),
            "{engine}"
        );
        assert_eq!(
            meta.delete_manifest(&name, &digest_of(&list), &[])
                .await
                .unwrap(),
            Deletion::Removed
        );
        assert_eq!(
            meta.delete_manifest(&name, &digest, &[]).await.unwrap(),
            Deletion::Removed,
            "{engine}"
        );
        assert!(
            meta.manifest_by_tag(&name, &tag("a"))
                .await
                .unwrap()
                .is_none(),
            "{engine}: tag went"
        );
        // The marked link went with its last manifest.
        assert!(
            meta.linked_blob_size(&name, &config)
                .await
                .unwrap()
                .is_none(),
            "{engine}: marked link outlived its manifest"
        );
        assert_eq!(
            meta.unlink_blob(&name, &config, &[]).await.unwrap(),
            Deletion::NotFound,
            "{engine}"
        );
    }
}

#[tokio::test]
async fn a_marked_link_stays_while_any_manifest_references_it_and_an_upload_unmarks_it() {
    for (engine, meta, _guard) in engines().await {
        let name = repo("p/marks");
        let (config, size) = blob(&meta, &name, b"shared cfg").await;
        let (layer_a, a) = blob(&meta, &name, b"layer a").await;
        let (layer_b, b) = blob(&meta, &name, b"layer b").await;
        let first = image(&[(&config, size), (&layer_a, a)], None, None);
        let second = image(&[(&config, size), (&layer_b, b)], None, None);
        assert_eq!(put(&meta, &name, &first, None).await, ManifestPut::Stored);
        assert_eq!(put(&meta, &name, &second, None).await, ManifestPut::Stored);
        for digest in [&config, &layer_a] {
            assert_eq!(
                meta.unlink_blob(&name, digest, &[]).await.unwrap(),
                Deletion::Marked
            );
        }
        let linked = |digest: Digest| {
            let (meta, name) = (&meta, &name);
            async move {
                meta.linked_blob_size(name, &digest)
                    .await
                    .unwrap()
                    .is_some()
            }
        };
        assert_eq!(
            meta.delete_manifest(&name, &digest_of(&first), &[])
                .await
                .unwrap(),
            Deletion::Removed
        );
        assert!(
            !linked(layer_a.clone()).await,
            "{engine}: marked, last manifest gone"
        );
        assert!(
            linked(config.clone()).await,
            "{engine}: marked, still referenced"
        );
        assert!(linked(layer_b.clone()).await, "{engine}: never marked");
        // The client uploads the config again: it asks for the link anew.
        blob(&meta, &name, b"shared cfg").await;
        assert_eq!(
            meta.delete_manifest(&name, &digest_of(&second), &[])
                .await
                .unwrap(),
            Deletion::Removed
        );
        assert!(
            linked(config.clone()).await,
            "{engine}: re-uploaded, so unmarked"
        );
        assert!(
            linked(layer_b.clone()).await,
            "{engine}: unmarked links stay for GC"
        );
    }
}

#[tokio::test]
async fn a_blob_delete_racing_its_manifests_delete_leaves_no_link() {
    for (engine, meta, _guard) in engines().await {
        let meta = Arc::new(meta);
        let name = repo("race/marks");
        for iteration in 0..30 {
            let (config, size) = blob(&meta, &name, format!("cfg {iteration}").as_bytes()).await;
            let manifest = image(&[(&config, size)], None, None);
            assert_eq!(
                put(&meta, &name, &manifest, None).await,
                ManifestPut::Stored
            );
            let blob_delete = {
                let (meta, name, config) = (meta.clone(), name.clone(), config.clone());
                tokio::spawn(async move { meta.unlink_blob(&name, &config, &[]).await.unwrap() })
            };
            let manifest_delete = {
                let (meta, name, digest) = (meta.clone(), name.clone(), digest_of(&manifest));
                tokio::spawn(
                    async move { meta.delete_manifest(&name, &digest, &[]).await.unwrap() },
                )
            };
            let (unlinked, deleted) = (blob_delete.await.unwrap(), manifest_delete.await.unwrap());
            assert_eq!(deleted, Deletion::Removed, "{engine} iteration {iteration}");
            assert!(
                matches!(unlinked, Deletion::Removed | Deletion::Marked),
                "{engine} iteration {iteration}: {unlinked:?}"
            );
            assert!(
                meta.linked_blob_size(&name, &config)
                    .await
                    .unwrap()
                    .is_none(),
                "{engine} iteration {iteration}: the link outlived both deletes ({unlinked:?})"
            );
        }
    }
}

#[tokio::test]
async fn tags_and_catalog_sort_by_byte_and_paginate() {
    for (engine, meta, _guard) in engines().await {
        let (config, size) = blob(&meta, &repo("b/x"), b"c").await;
        let manifest = image(&[(&config, size)], None, None);
        for t in ["b", "B", "a", "_x", "A1", "a.b", "a-b"] {
            assert_eq!(
                put(&meta, &repo("b/x"), &manifest, Some(&tag(t))).await,
                ManifestPut::Stored
            );
        }
        let id = meta
            .repository_id(&repo("b/x"))
            .await
            .unwrap()
            .expect("repository");
        let all = meta.list_tags(id, None, 100).await.unwrap();
        assert_eq!(all, ["A1", "B", "_x", "a", "a-b", "a.b", "b"], "{engine}");
        assert_eq!(
            meta.list_tags(id, Some("_x"), 2).await.unwrap(),
            ["a", "a-b"],
            "{engine}"
        );

        for name in ["z", "a/b", "a", "m-n/o"] {
            blob(&meta, &repo(name), b"c").await;
            assert_eq!(
                put(&meta, &repo(name), &manifest, None).await,
                ManifestPut::Stored
            );
        }
        meta.create_upload(&repo("empty/only-upload"), &UploadId::new(), b"s")
            .await
            .unwrap();
        let catalog = meta.catalog(None, 100).await.unwrap();
        assert_eq!(catalog, ["a", "a/b", "b/x", "m-n/o", "z"], "{engine}");
        assert_eq!(
            meta.catalog(Some("a/b"), 2).await.unwrap(),
            ["b/x", "m-n/o"],
            "{engine}"
        );
    }
}

#[tokio::test]
async fn referrers_filter_by_artifact_type() {
    for (engine, meta, _guard) in engines().await {
        let name = repo("p/ref");
        let (config, size) = blob(&meta, &name, b"cfg").await;
        let subject = digest_of(b"the subject");
        let sbom = image(
            &[(&config, size)],
            Some(&subject),
            Some("application/spdx+json"),
        );
        let sig = image(
            &[(&config, size)],
            Some(&subject),
            Some("application/vnd.dev.sigstore"),
        );
        let plain = image(&[(&config, size)], None, None);
        for m in [&sbom, &sig, &plain] {
            assert_eq!(put(&meta, &name, m, None).await, ManifestPut::Stored);
        }
        let all = meta.referrers(&name, &subject, None).await.unwrap();
        let mut digests: Vec<_> = all.iter().map(|r| r.digest.to_string()).collect();
        digests.sort();
        let mut expected = vec![digest_of(&sbom).to_string(), digest_of(&sig).to_string()];
        expected.sort();
        assert_eq!(digests, expected, "{engine}");
        let filtered = meta
            .referrers(&name, &subject, Some("application/spdx+json"))
            .await
            .unwrap();
        assert_eq!(filtered.len(), 1, "{engine}");
        assert_eq!(filtered[0].digest, digest_of(&sbom), "{engine}");
        assert_eq!(filtered[0].size, sbom.len() as u64, "{engine}");
        assert!(
            meta.referrers(&repo("p/other"), &subject, None)
                .await
                .unwrap()
                .is_empty(),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn a_tag_moved_by_two_pushes_at_once_ends_on_one() {
    for (engine, meta, _guard) in engines().await {
        let meta = Arc::new(meta);
        let name = repo("race/tag");
        let (config, size) = blob(&meta, &name, b"cfg").await;
        for iteration in 0..30 {
            let a = image(
                &[(&config, size)],
                None,
                Some(&format!("application/vnd.a{iteration}")),
            );
            let b = image(
                &[(&config, size)],
                None,
                Some(&format!("application/vnd.b{iteration}")),
            );
            let pushes = [a.clone(), b.clone()].map(|payload| {
                let (meta, name) = (meta.clone(), name.clone());
                tokio::spawn(async move { put(&meta, &name, &payload, Some(&tag("moving"))).await })
            });
            for push in pushes {
                assert_eq!(push.await.unwrap(), ManifestPut::Stored, "{engine}");
            }
            let now = meta
                .manifest_by_tag(&name, &tag("moving"))
                .await
                .unwrap()
                .expect("tag");
            assert!(
                now.payload == a || now.payload == b,
                "{engine} iteration {iteration}"
            );
            let id = meta
                .repository_id(&name)
                .await
                .unwrap()
                .expect("repository");
            assert_eq!(
                meta.list_tags(id, None, 10).await.unwrap(),
                ["moving"],
                "{engine}"
            );
        }
    }
}

#[tokio::test]
async fn one_blob_pushed_to_two_repositories_at_once_is_linked_to_both() {
    for (engine, meta, _guard) in engines().await {
        let meta = Arc::new(meta);
        for iteration in 0..30 {
            let bytes = format!("shared blob {iteration}").into_bytes();
            let digest = digest_of(&bytes);
            let names = [
                repo(&format!("one/r{iteration}")),
                repo(&format!("two/r{iteration}")),
            ];
            let pushes = names.clone().map(|name| {
                let (meta, digest, size) = (meta.clone(), digest.clone(), bytes.len() as u64);
                tokio::spawn(async move { record_blob(&meta, &name, &digest, size).await })
            });
            for push in pushes {
                push.await.unwrap().expect("record blob");
            }
            for name in &names {
                let size = meta.linked_blob_size(name, &digest).await.unwrap();
                assert_eq!(size, Some(bytes.len() as u64), "{engine} {name}");
            }
        }
    }
}

#[tokio::test]
async fn a_manifest_push_racing_a_blob_delete_never_dangles() {
    for (engine, meta, _guard) in engines().await {
        let meta = Arc::new(meta);
        let name = repo("race/gc");
        let (mut stored, mut refused) = (0, 0);
        for iteration in 0..40 {
            let (config, size) = blob(&meta, &name, format!("cfg {iteration}").as_bytes()).await;
            let manifest = image(&[(&config, size)], None, None);
            let push = {
                let (meta, name, manifest) = (meta.clone(), name.clone(), manifest.clone());
                tokio::spawn(async move { put(&meta, &name, &manifest, None).await })
            };
            let delete = {
                let (meta, name, config) = (meta.clone(), name.clone(), config.clone());
                tokio::spawn(async move { meta.unlink_blob(&name, &config, &[]).await.unwrap() })
            };
            let (pushed, deleted) = (push.await.unwrap(), delete.await.unwrap());
            match (&pushed, deleted) {
                (ManifestPut::Stored, Deletion::Marked) => stored += 1,
                (ManifestPut::MissingBlob(_), Deletion::Removed) => refused += 1,
                other => panic!("{engine} iteration {iteration}: inconsistent outcome {other:?}"),
            }
            let has_manifest = meta
                .manifest_by_digest(&name, &digest_of(&manifest))
                .await
                .unwrap()
                .is_some();
            let has_blob = meta
                .linked_blob_size(&name, &config)
                .await
                .unwrap()
                .is_some();
            assert!(
                !has_manifest || has_blob,
                "{engine}: manifest points at an unlinked blob"
            );
        }
        assert_eq!(stored + refused, 40, "{engine}");
    }
}
