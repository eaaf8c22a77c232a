//! PostgreSQL in production shape: several registry processes on one database and one
//! storage directory behave as one registry, racing requests across them are settled by the
//! database, and the Cloud SQL unix-socket URL form works.

use std::sync::Arc;

use registry_tests::{Registry, TestDatabase, database, pseudo_random_bytes, sha256_digest};
use sqlx::Connection;

/// Two processes sharing one fresh PostgreSQL database and one data directory.
async fn two_instances() -> (Registry, Registry, Arc<TestDatabase>) {
    let db = Arc::new(TestDatabase::create().await);
    let first = Registry::start_with(&[("DATABASE_URL", db.url())]).await;
    let second = first.start_peer().await;
    (first, second, db)
}

async fn open_session(reg: &Registry, repo: &str) -> String {
    let resp = reg
        .client
        .post(reg.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .expect("POST upload");
    assert_eq!(resp.status(), 202);
    resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

/// A `PATCH` on a connection of its own: a racing one that loses is answered `416` before its
/// body is read, and the server then closes the connection, which a pooled client could
/// otherwise hand to the next request (a `BrokenPipe` there, seen under load).
async fn patch(reg: &Registry, location: &str, start: usize, bytes: &[u8]) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    client
        .patch(reg.url(location))
        .header("Content-Type", "application/octet-stream")
        .header(
            "Content-Range",
            format!("{}-{}", start, start + bytes.len() - 1),
        )
        .body(bytes.to_vec())
        .send()
        .await
        .expect("PATCH")
}

#[tokio::test]
async fn an_upload_started_on_one_instance_continues_on_another() {
    let (a, b, _db) = two_instances().await;
    let blob = pseudo_random_bytes(3 * 1024 * 1024 + 17, 42);
    let digest = sha256_digest(&blob);
    let chunks: Vec<&[u8]> = blob.chunks(1024 * 1024).collect();

    let location = open_session(&a, "team/app").await;
    let mut offset = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        let via = if i % 2 == 0 { &b } else { &a };
        let resp = patch(via, &location, offset, chunk).await;
        assert_eq!(resp.status(), 202, "chunk {i}");
        offset += chunk.len();
        assert_eq!(
            resp.headers()["range"],
            format!("0-{}", offset - 1).as_str()
        );
    }
    let status = a.client.get(a.url(&location)).send().await.expect("status");
    assert_eq!(status.status(), 204);
    assert_eq!(
        status.headers()["range"],
        format!("0-{}", blob.len() - 1).as_str()
    );

    let sep = if location.contains('?') { '&' } else { '?' };
    let put = b
        .client
        .put(b.url(&format!("{location}{sep}digest={digest}")))
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status(), 201, "{:?}", put.text().await);

    for reg in [&a, &b] {
        let got = reg
            .client
            .get(reg.url(&format!("/v2/team/app/blobs/{digest}")))
            .send()
            .await
            .expect("GET blob");
        assert_eq!(got.status(), 200);
        assert_eq!(sha256_digest(&got.bytes().await.expect("body")), digest);
    }
}

/// Chunks of 1 KiB, 3 MiB and 7 MiB, alternating between the instances: on S3, the parts
/// straddle the backend's 8 MiB part boundaries every way (inside one chunk, across several).
#[tokio::test]
async fn mixed_chunk_sizes_alternating_between_instances_make_one_blob() {
    let (a, b, _db) = two_instances().await;
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    let sizes = [KIB, 3 * MIB, 7 * MIB, KIB, 7 * MIB, 3 * MIB, KIB, 7 * MIB];
    let blob = pseudo_random_bytes(sizes.iter().sum(), 77);
    let digest = sha256_digest(&blob);

    let location = open_session(&a, "team/mixed").await;
    let mut offset = 0;
    for (i, size) in sizes.iter().enumerate() {
        let via = if i % 2 == 0 { &b } else { &a };
        let resp = patch(via, &location, offset, &blob[offset..offset + size]).await;
        assert_eq!(resp.status(), 202, "chunk {i}");
        offset += size;
        assert_eq!(
            resp.headers()["range"],
            format!("0-{}", offset - 1).as_str()
        );
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = a
        .client
        .put(a.url(&format!("{location}{sep}digest={digest}")))
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status(), 201, "{:?}", put.text().await);

    for reg in [&a, &b] {
        let got = reg
            .client
            .get(reg.url(&format!("/v2/team/mixed/blobs/{digest}")))
            .send()
            .await
            .expect("GET blob");
        assert_eq!(got.status(), 200);
        let body = got.bytes().await.expect("body");
        assert_eq!(body.len(), blob.len());
        assert_eq!(sha256_digest(&body), digest);
    }
}

#[tokio::test]
async fn images_pushed_on_one_instance_pull_from_the_other() {
    let (a, b, _db) = two_instances().await;
    let image = a.push_image("team/web", "v1", &[2048, 4096]).await;
    let manifest = b
        .client
        .get(b.url("/v2/team/web/manifests/v1"))
        .header("Accept", registry_tests::OCI_MANIFEST)
        .send()
        .await
        .expect("GET manifest");
    assert_eq!(manifest.status(), 200);
    assert_eq!(
        manifest.bytes().await.expect("body").as_ref(),
        image.manifest.as_slice()
    );
    for (digest, bytes) in &image.layers {
        let got = b
            .client
            .get(b.url(&format!("/v2/team/web/blobs/{digest}")))
            .send()
            .await
            .expect("GET layer");
        assert_eq!(got.bytes().await.expect("body").as_ref(), bytes.as_slice());
    }
    let tags: serde_json::Value = b
        .client
        .get(b.url("/v2/team/web/tags/list"))
        .send()
        .await
        .expect("tags")
        .json()
        .await
        .expect("json");
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
}

#[tokio::test]
async fn racing_patches_across_instances_apply_exactly_once() {
    let (a, b, _db) = two_instances().await;
    for iteration in 0..25 {
        let location = open_session(&a, "race/patch").await;
        let first = pseudo_random_bytes(64 * 1024, iteration);
        let second = pseudo_random_bytes(96 * 1024, iteration + 1000);
        let (ra, rb) = tokio::join!(
            patch(&a, &location, 0, &first),
            patch(&b, &location, 0, &second)
        );
        let statuses = [ra.status().as_u16(), rb.status().as_u16()];
        let winner = match statuses {
            [202, 416] => &first,
            [416, 202] => &second,
            other => panic!("iteration {iteration}: expected one 202 and one 416, got {other:?}"),
        };
        // The session holds exactly the winner's bytes and finishes with their digest.
        let status = a.client.get(a.url(&location)).send().await.expect("status");
        assert_eq!(
            status.headers()["range"],
            format!("0-{}", winner.len() - 1).as_str()
        );
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = b
            .client
            .put(b.url(&format!("{location}{sep}digest={}", sha256_digest(winner))))
            .send()
            .await
            .expect("PUT");
        assert_eq!(put.status(), 201, "iteration {iteration}");
    }
}

#[tokio::test]
async fn cloud_sql_unix_socket_url_form_works() {
    let db = TestDatabase::create().await;
    // Ask the server where its socket is, and address it the way Cloud Run addresses Cloud SQL:
    // postgres://user@/database?host=/cloudsql/PROJECT:REGION:INSTANCE (a socket directory).
    let mut conn = sqlx::PgConnection::connect(db.url())
        .await
        .expect("connect");
    let (dirs,): (String,) = sqlx::query_as("SELECT current_setting('unix_socket_directories')")
        .fetch_one(&mut conn)
        .await
        .expect("socket dirs");
    let (port,): (String,) = sqlx::query_as("SELECT current_setting('port')")
        .fetch_one(&mut conn)
        .await
        .expect("port");
    let (user,): (String,) = sqlx::query_as("SELECT current_user::text")
        .fetch_one(&mut conn)
        .await
        .expect("user");
    let dir = dirs
        .split(',')
        .next()
        .expect("a socket directory")
        .trim()
        .to_owned();
    assert!(!dir.is_empty(), "the test server listens on no unix socket");
    let url = format!("postgres://{user}@/{}?host={dir}&port={port}", db.name());

    let reg = Registry::start_with(&[("DATABASE_URL", &url)]).await;
    let image = reg.push_image("cloudsql/app", "v1", &[1000]).await;
    let got = reg
        .client
        .get(reg.url("/v2/cloudsql/app/manifests/v1"))
        .send()
        .await
        .expect("GET manifest");
    assert_eq!(
        got.bytes().await.expect("body").as_ref(),
        image.manifest.as_slice()
    );
    // The rows really went to that database.
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM manifests")
        .fetch_one(&mut conn)
        .await
        .expect("count manifests");
    assert_eq!(count, 1);
    drop(reg);
    let _ = conn.close().await;
    assert!(database::with_database(&url, "x").contains("host="));
}
