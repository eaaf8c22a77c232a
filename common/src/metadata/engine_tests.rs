//! Fast tests of the metadata statements, beside them, on both engines: SQLite in a temporary
//! directory always, PostgreSQL (a fresh database, `registry_tests::TestDatabase`) when
//! `TEST_DATABASE_URL` is set. The races between instances are in `common/tests/metadata_contract.rs`.

use super::*;
use crate::config::DbConfig;
use crate::oci::{Digest, ParsedManifest, RepositoryName, Tag, UploadId};

/// Keeps an engine's database alive for the test.
#[expect(dead_code, reason = "held only for its Drop")]
pub(super) enum Guard {
    Sqlite(tempfile::TempDir),
    Postgres(registry_tests::TestDatabase),
}

fn db_config() -> DbConfig {
    DbConfig {
        database_url: None,
        db_max_connections: 4,
        db_min_connections: 0,
        db_acquire_timeout_secs: 30,
        db_idle_timeout_secs: 60,
        db_migrate_on_start: true,
    }
}

/// A migrated, empty database per engine available.
pub(super) async fn engines() -> Vec<(&'static str, Metadata, Guard)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("meta.db").display());
    let sqlite = Metadata::connect(&url, &db_config()).await.expect("sqlite");
    let mut engines = vec![("sqlite", sqlite, Guard::Sqlite(dir))];
    if std::env::var_os("TEST_DATABASE_URL").is_some() {
        let database = registry_tests::TestDatabase::create().await;
        let postgres = Metadata::connect(database.url(), &db_config())
            .await
            .expect("postgres");
        engines.push(("postgres", postgres, Guard::Postgres(database)));
    }
    engines
}

pub(super) fn repo(name: &str) -> RepositoryName {
    RepositoryName::parse(name).expect("valid name")
}

pub(super) fn tag(name: &str) -> Tag {
    Tag::parse(name).expect("valid tag")
}

/// Records a blob in the repository, as a finished upload does.
pub(super) async fn blob(meta: &Metadata, name: &RepositoryName, bytes: &[u8]) -> (Digest, u64) {
    let digest = Digest::sha256_of(bytes);
    let mut lock = meta.lock_blob(&digest).await.expect("lock");
    lock.record(name, bytes.len() as u64).await.expect("record");
    lock.commit().await.expect("commit");
    (digest, bytes.len() as u64)
}

/// An image manifest with `config` as its config and `layer` as its one layer.
pub(super) fn image(config: &(Digest, u64), layer: &(Digest, u64), note: &str) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0.to_string(), "size": config.1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.0.to_string(), "size": layer.1}],
        "annotations": {"note": note},
    })
    .to_string()
    .into_bytes()
}

pub(super) async fn put(
    meta: &Metadata,
    name: &RepositoryName,
    payload: &[u8],
    tag: Option<&Tag>,
) -> (Digest, ManifestPut) {
    let parsed = ParsedManifest::parse(None, payload).expect("valid manifest");
    let digest = Digest::sha256_of(payload);
    let new = NewManifest {
        digest: &digest,
        media_type: parsed.kind.media_type(),
        payload,
        parsed: &parsed,
    };
    let put = meta.put_manifest(name, new, tag, &[]).await.expect("put");
    (digest, put)
}

#[tokio::test]
async fn an_upload_moves_only_from_the_offset_its_request_started_at() {
    for (engine, meta, _guard) in engines().await {
        let name = repo("p/app");
        let id = UploadId::new();
        meta.create_upload(&name, &id, b"h0").await.expect("create");
        let part = |n: &str, size| PartRecord {
            name: n.into(),
            size,
        };
        let first = [part("0-a", 4)];
        assert!(
            meta.advance_upload(&id, 0, 4, b"h4", &first)
                .await
                .expect("advance")
        );
        // A request that started at 0 too lost the race: it changes nothing.
        let stale = [part("0-b", 9)];
        assert!(
            !meta
                .advance_upload(&id, 0, 9, b"h9", &stale)
                .await
                .expect("stale"),
            "{engine}"
        );
        let row = meta
            .upload(&name, &id)
            .await
            .expect("read")
            .expect("session");
        assert_eq!(
            (row.offset, row.hash_state.as_slice(), row.parts.as_slice()),
            (4, &b"h4"[..], &first[..]),
            "{engine}"
        );
        let both = [part("0-a", 4), part("4-c", 2)];
        assert!(
            meta.advance_upload(&id, 4, 6, b"h6", &both)
                .await
                .expect("advance")
        );
        let row = meta
            .upload(&name, &id)
            .await
            .expect("read")
            .expect("session");
        assert_eq!((row.offset, row.parts.len()), (6, 2), "{engine}");
        // A session is only found in its own repository, and a deleted one moves no more.
        assert!(
            meta.upload(&repo("p/other"), &id)
                .await
                .expect("read")
                .is_none()
        );
        assert!(
            meta.delete_upload(&repo("p/other"), &id)
                .await
                .expect("delete")
                .is_none()
        );
        assert_eq!(
            meta.delete_upload(&name, &id)
                .await
                .expect("delete")
                .map(|p| p.len()),
            Some(2)
        );
        assert!(
            !meta
                .advance_upload(&id, 6, 8, b"h8", &[])
                .await
                .expect("gone"),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn the_first_upload_creates_its_repository() {
    for (engine, meta, _guard) in engines().await {
        let name = repo("new/repo");
        assert_eq!(
            meta.repository_id(&name).await.expect("read"),
            None,
            "{engine}"
        );
        meta.create_upload(&name, &UploadId::new(), b"")
            .await
            .expect("create");
        let id = meta
            .repository_id(&name)
            .await
            .expect("read")
            .expect("created");
        // The second session finds it: one repository, the same id.
        let second = UploadId::new();
        meta.create_upload(&name, &second, b"")
            .await
            .expect("create");
        let row = meta
            .upload(&name, &second)
            .await
            .expect("read")
            .expect("session");
        assert_eq!(row.repository_id, id, "{engine}");
        // A repository holds no manifest yet, so the catalog does not list it.
        assert!(
            meta.catalog(None, 10).await.expect("catalog").is_empty(),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn a_tag_moves_to_the_last_manifest_put_under_it() {
    for (engine, meta, _guard) in engines().await {
        let name = repo("p/app");
        let config = blob(&meta, &name, b"config").await;
        let layer = blob(&meta, &name, b"layer").await;
        let latest = tag("latest");
        let (one, stored) = put(&meta, &name, &image(&config, &layer, "one"), Some(&latest)).await;
        assert!(
            matches!(stored, ManifestPut::Stored),
            "{engine}: {stored:?}"
        );
        let (two, stored) = put(&meta, &name, &image(&config, &layer, "two"), Some(&latest)).await;
        assert!(
            matches!(stored, ManifestPut::Stored),
            "{engine}: {stored:?}"
        );
        let tagged = meta
            .manifest_by_tag(&name, &latest)
            .await
            .expect("read")
            .expect("tagged");
        assert_eq!(tagged.digest.to_string(), two.to_string(), "{engine}");
        // The first manifest stays, by digest, untagged.
        let untagged = meta.manifest_by_digest(&name, &one).await.expect("read");
        assert!(untagged.is_some(), "{engine}");
        let id = meta
            .repository_id(&name)
            .await
            .expect("read")
            .expect("repo");
        assert_eq!(
            meta.list_tags(id, None, 10).await.expect("tags"),
            ["latest"],
            "{engine}"
        );
        assert!(
            meta.delete_tag(&name, &latest, &[]).await.expect("delete"),
            "{engine}"
        );
        assert!(
            !meta.delete_tag(&name, &latest, &[]).await.expect("delete"),
            "{engine}"
        );
        assert!(
            meta.manifest_by_tag(&name, &latest)
                .await
                .expect("read")
                .is_none()
        );
    }
}

#[tokio::test]
async fn a_manifest_needs_the_rows_it_references() {
    for (engine, meta, _guard) in engines().await {
        let name = repo("p/app");
        let config = blob(&meta, &name, b"config").await;
        let missing = (Digest::sha256_of(b"never uploaded"), 14);
        let (digest, stored) = put(&meta, &name, &image(&config, &missing, "x"), None).await;
        assert!(
            matches!(&stored, ManifestPut::MissingBlob(d) if *d == missing.0),
            "{engine}: {stored:?}"
        );
        assert!(
            meta.manifest_by_digest(&name, &digest)
                .await
                .expect("read")
                .is_none()
        );
        // A blob of another repository is not this one's.
        let elsewhere = blob(&meta, &repo("p/other"), b"layer").await;
        let (_, stored) = put(&meta, &name, &image(&config, &elsewhere, "y"), None).await;
        assert!(
            matches!(stored, ManifestPut::MissingBlob(_)),
            "{engine}: {stored:?}"
        );
        // An index needs its children.
        let child = Digest::sha256_of(b"no such manifest");
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": child.to_string(), "size": 1}],
        })
        .to_string()
        .into_bytes();
        let (_, stored) = put(&meta, &name, &index, None).await;
        assert!(
            matches!(&stored, ManifestPut::MissingChild(d) if *d == child),
            "{engine}: {stored:?}"
        );
    }
}

#[tokio::test]
async fn pages_continue_after_their_last_key() {
    for (engine, meta, _guard) in engines().await {
        for name in ["b/x", "a/x", "c/x"] {
            let name = repo(name);
            let config = blob(&meta, &name, b"config").await;
            let layer = blob(&meta, &name, b"layer").await;
            for t in ["v2", "v1", "v10"] {
                put(&meta, &name, &image(&config, &layer, t), Some(&tag(t))).await;
            }
        }
        assert_eq!(
            meta.catalog(None, 2).await.expect("page"),
            ["a/x", "b/x"],
            "{engine}"
        );
        assert_eq!(
            meta.catalog(Some("b/x"), 2).await.expect("page"),
            ["c/x"],
            "{engine}"
        );
        assert!(
            meta.catalog(Some("c/x"), 2).await.expect("page").is_empty(),
            "{engine}"
        );
        // A key that is not listed still places the page.
        assert_eq!(
            meta.catalog(Some("a/y"), 5).await.expect("page"),
            ["b/x", "c/x"],
            "{engine}"
        );
        let id = meta
            .repository_id(&repo("b/x"))
            .await
            .expect("read")
            .expect("repo");
        assert_eq!(
            meta.list_tags(id, None, 2).await.expect("page"),
            ["v1", "v10"],
            "{engine}"
        );
        assert_eq!(
            meta.list_tags(id, Some("v10"), 2).await.expect("page"),
            ["v2"],
            "{engine}"
        );
        assert_eq!(
            meta.list_tags(id, Some("v0"), 1).await.expect("page"),
            ["v1"],
            "{engine}"
        );
    }
}

#[tokio::test]
async fn management_pages_walk_every_row_once_in_keyset_order() {
    for (engine, meta, _guard) in engines().await {
        for name in ["p/b", "p/a", "q/a", "p/c"] {
            let name = repo(name);
            let config = blob(&meta, &name, b"config").await;
            let layer = blob(&meta, &name, b"layer").await;
            for t in ["t2", "t1", "t3"] {
                put(&meta, &name, &image(&config, &layer, t), Some(&tag(t))).await;
            }
        }
        // Repositories of project `p`: between `p/` and `p0` (the byte after `/`).
        let first = meta
            .repositories_between("p/", "p0", 2)
            .await
            .expect("page");
        let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["p/a", "p/b"], "{engine}");
        let rest = meta
            .repositories_between("p/b", "p0", 2)
            .await
            .expect("page");
        assert_eq!(rest.len(), 1, "{engine}");
        assert_eq!(rest[0].0, "p/c", "{engine}");

        let id = meta
            .repository_id(&repo("p/a"))
            .await
            .expect("read")
            .expect("repo");
        let tags = meta.tag_rows(id, "t1", 10).await.expect("page");
        let names: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["t2", "t3"], "{engine}");

        // Pages of one, each after the last row's keyset: every manifest once, newest first
        // (ties on the millisecond broken by digest).
        let mut seen = Vec::new();
        let mut after: Option<(i64, String)> = None;
        loop {
            let keyset = after.as_ref().map(|(at, d)| (*at, d.as_str()));
            let page = meta.manifest_rows(id, keyset, 1).await.expect("page");
            let Some(row) = page.into_iter().next() else {
                break;
            };
            after = Some((row.created_at, row.digest.to_string()));
            seen.push((row.created_at, row.digest.to_string()));
            assert!(seen.len() <= 3, "{engine}: {seen:?}");
        }
        let mut expected = seen.clone();
        expected.sort_by(|a, b| b.cmp(a));
        expected.dedup();
        assert_eq!((seen.len(), &seen), (3, &expected), "{engine}");
    }
}

#[tokio::test]
async fn sqlite_commits_are_synced_before_they_return() {
    let (engine, meta, _guard) = engines().await.swap_remove(0);
    assert_eq!(engine, "sqlite");
    for pool in [&meta.write, &meta.read] {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .expect("journal mode");
        assert_eq!(mode, "wal");
        // 2 is FULL: the WAL is fsync'd at every commit, so an acknowledged push survives a
        // power loss (NORMAL, 1, syncs only at checkpoints).
        let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(pool)
            .await
            .expect("synchronous");
        assert_eq!(level, 2);
    }
}

#[tokio::test]
async fn import_items_are_found_by_source_and_moved_tags_recorded_anew() {
    for (engine, meta, _guard) in engines().await {
        let app = repo("team/app");
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        let item = |digest: &Digest, size| ImportedItem {
            digest: digest.clone(),
            size,
        };
        assert_eq!(
            meta.imported_item("http://src", &app, ImportKind::Tag, "v1")
                .await
                .expect("select"),
            None,
            "{engine}"
        );
        meta.record_imported_item("http://src", &app, ImportKind::Tag, "v1", &item(&a, 0))
            .await
            .expect("record");
        meta.record_imported_item("http://src", &app, ImportKind::Tag, "v1", &item(&b, 0))
            .await
            .expect("record again");
        let blob_item = item(&a, 1);
        meta.record_imported_item(
            "http://src",
            &app,
            ImportKind::Blob,
            &a.to_string(),
            &blob_item,
        )
        .await
        .expect("record blob");
        let found = |source: &'static str, kind, key: String| {
            let (meta, app) = (meta.clone(), app.clone());
            async move {
                meta.imported_item(source, &app, kind, &key)
                    .await
                    .expect("select")
            }
        };
        assert_eq!(
            found("http://src", ImportKind::Tag, "v1".into()).await,
            Some(item(&b, 0)),
            "{engine}"
        );
        assert_eq!(
            found("http://other", ImportKind::Tag, "v1".into()).await,
            None,
            "{engine}"
        );
        assert_eq!(
            found("http://src", ImportKind::Manifest, a.to_string()).await,
            None,
            "{engine}"
        );
        assert_eq!(
            found("http://src", ImportKind::Blob, a.to_string()).await,
            Some(blob_item),
            "{engine}"
        );
    }
}
