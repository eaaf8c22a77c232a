//! The upload service against the filesystem storage and a SQLite metadata in a temp dir.

use super::*;
use crate::config::DbConfig;
use crate::storage::FsStorage;

struct Fixture {
    service: UploadService,
    storage: Arc<dyn Storage>,
    metadata: Metadata,
    name: RepositoryName,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("meta.db").display());
    let config = DbConfig {
        database_url: None,
        db_max_connections: 2,
        db_min_connections: 0,
        db_acquire_timeout_secs: 30,
        db_idle_timeout_secs: 60,
        db_migrate_on_start: true,
    };
    let metadata = Metadata::connect(&url, &config).await.unwrap();
    metadata.migrate().await.unwrap();
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::new(dir.path().join("blobs")));
    Fixture {
        service: UploadService::new(metadata.clone(), storage.clone(), EventRecorder::off()),
        storage,
        metadata,
        name: RepositoryName::parse("p/app").unwrap(),
        _dir: dir,
    }
}

fn body(bytes: &'static [u8]) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    futures_util::stream::iter([Ok(Bytes::from_static(bytes))])
}

fn empty() -> impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    futures_util::stream::iter(Vec::<std::io::Result<Bytes>>::new())
}

#[tokio::test]
async fn a_sha512_session_is_rehashed_from_its_parts() {
    let f = fixture().await;
    let id = f.service.start(&f.name).await.unwrap();
    let at = f
        .service
        .append(&f.name, &id, None, None, body(b"hello "))
        .await
        .unwrap();
    assert_eq!(at.offset, 6);
    let wrong = Digest::of(Algorithm::Sha512, b"hello there");
    let refused = f
        .service
        .finish(
            &f.name,
            &id,
            &wrong,
            None,
            Some(5),
            body(b"world"),
            &EventOrigin::internal("PUT"),
        )
        .await;
    let expected = Digest::of(Algorithm::Sha512, b"hello world");
    match refused {
        Err(UploadError::DigestMismatch { provided, computed }) => {
            assert_eq!(provided, wrong);
            assert_eq!(computed, expected);
        }
        other => panic!("{other:?}"),
    }
    // The session stays where it was; the right digest then makes the blob.
    assert_eq!(f.service.status(&f.name, &id).await.unwrap().offset, 6);
    f.service
        .finish(
            &f.name,
            &id,
            &expected,
            None,
            Some(5),
            body(b"world"),
            &EventOrigin::internal("PUT"),
        )
        .await
        .unwrap();
    let key = BlobKey(expected.clone());
    assert_eq!(f.storage.stat(&key).await.unwrap(), Some(11));
    let linked = f.metadata.linked_blob_size(&f.name, &expected).await;
    assert_eq!(linked.unwrap(), Some(11));
    let gone = f.service.status(&f.name, &id).await;
    assert!(matches!(gone, Err(UploadError::UnknownSession)), "{gone:?}");
}

#[tokio::test]
async fn ensure_object_reassembles_a_vanished_blob() {
    let f = fixture().await;
    let upload = UploadId::new();
    let mut hasher = DigestHasher::new(Algorithm::Sha256);
    let part = f
        .service
        .write_part(&upload, 0, &mut hasher, None, body(b"layer bytes"))
        .await
        .unwrap();
    let digest = hasher.finish();
    let key = BlobKey(digest.clone());
    let parts = [part.key];
    f.storage.assemble(&parts, &key).await.unwrap();
    f.storage.delete_blob(&key).await.unwrap();
    assert_eq!(f.storage.stat(&key).await.unwrap(), None);
    f.service.ensure_object(&digest, &parts).await.unwrap();
    assert_eq!(f.storage.stat(&key).await.unwrap(), Some(11));
    // Present: nothing to do.
    f.service.ensure_object(&digest, &parts).await.unwrap();
    assert_eq!(f.storage.stat(&key).await.unwrap(), Some(11));
}

#[tokio::test]
async fn a_chunk_elsewhere_than_the_offset_says_where_the_session_is() {
    let f = fixture().await;
    let id = f.service.start(&f.name).await.unwrap();
    f.service
        .append(&f.name, &id, None, None, body(b"abc"))
        .await
        .unwrap();
    let range = Some(ContentRange { start: 5, end: 7 });
    let refused = f
        .service
        .append(&f.name, &id, range, None, body(b"def"))
        .await;
    match refused {
        Err(UploadError::OffsetMismatch { at }) => {
            assert_eq!(
                (at.repository, at.id, at.offset),
                (f.name.clone(), id.clone(), 3)
            );
        }
        other => panic!("{other:?}"),
    }
    let range = Some(ContentRange { start: 3, end: 5 });
    let short = f
        .service
        .append(&f.name, &id, range, Some(2), body(b"de"))
        .await;
    assert!(
        matches!(
            short,
            Err(UploadError::RangeLengthMismatch {
                content_length: 2,
                range_length: 3
            })
        ),
        "{short:?}"
    );
    let cut = f
        .service
        .append(&f.name, &id, range, None, body(b"de"))
        .await;
    assert!(
        matches!(
            cut,
            Err(UploadError::LengthMismatch {
                declared: 3,
                received: 2
            })
        ),
        "{cut:?}"
    );
    let at = f.service.append(&f.name, &id, range, None, empty()).await;
    assert!(
        matches!(at, Err(UploadError::LengthMismatch { .. })),
        "{at:?}"
    );
    assert_eq!(f.service.status(&f.name, &id).await.unwrap().offset, 3);
}
