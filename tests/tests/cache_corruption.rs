//! Bytes corrupted in the upstream's storage (distribution serves what its files hold) are
//! never served as the blob nor stored: the cache notices the wrong digest only at the end of
//! the transfer, so it must hold the last bytes back until it has checked, and break the
//! connection instead of ending a 200 of the wrong bytes (docs/api.md, "Pull-through cache").

use registry_tests::clients::ACCEPT_MANIFESTS;
use registry_tests::oci_layout::Image;
use registry_tests::upstream::{Distribution, Flavour, Upstreams, assert_body};
use registry_tests::{Registry, Reply, send};
use sha2::{Digest as _, Sha256};

async fn cache_of(dist: &Distribution) -> (Registry, Upstreams) {
    let mut upstreams = Upstreams::new();
    upstreams.add("dist", dist, serde_json::json!({"prefix": "cache/dist"}));
    let reg = upstreams.start_registry().await;
    (reg, upstreams)
}

async fn get(reg: &Registry, path: &str) -> Reply {
    send(
        reg.client
            .get(reg.url(path))
            .header("Accept", ACCEPT_MANIFESTS),
    )
    .await
}

/// How a GET ended: its status, and the size and digest of a body read to its end, or why
/// the body broke.
async fn try_stream(reg: &Registry, path: &str) -> (u16, Result<(u64, String), String>) {
    let mut resp = reg
        .client
        .get(reg.url(path))
        .send()
        .await
        .expect("send GET");
    let status = resp.status().as_u16();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                size += chunk.len() as u64;
                hasher.update(&chunk);
            }
            Ok(None) => break,
            Err(e) => return (status, Err(format!("broke after {size} bytes: {e}"))),
        }
    }
    let digest = format!("sha256:{}", registry_tests::hex(&hasher.finalize()));
    (status, Ok((size, digest)))
}

/// Flips one byte in the middle of a file (same size).
fn corrupt(path: &std::path::Path) -> Vec<u8> {
    let good = std::fs::read(path).expect("read the upstream's file");
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x55;
    std::fs::write(path, &bad).expect("corrupt the upstream's file");
    good
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_upstream_blob_is_neither_served_whole_nor_stored() {
    let dist = Distribution::start(Flavour::Open).await;
    let image = Image::generate("amd64", 601, &[256 << 10]);
    dist.push_image("team/app", Some("1"), &image).await;
    let (reg, _upstreams) = cache_of(&dist).await;
    let layer = &image.layers[0];
    let good = corrupt(&dist.blob_file(&layer.digest));
    let path = format!("/v2/cache/dist/team/app/blobs/{}", layer.digest);

    // The cache notices the mismatch only at the end of the bytes: it must hold the last of
    // them back until the digest is checked, and break the connection when it is wrong, so
    // that no client takes a complete 200 of the wrong bytes.
    for attempt in ["first", "second"] {
        let (status, body) = try_stream(&reg, &path).await;
        assert!(
            status != 200 || body.is_err(),
            "{attempt} GET of a corrupted upstream blob: {status}, complete body {body:?}, \
             want the blob {}",
            layer.digest
        );
    }
    assert_eq!(
        dist.settled_count_ok("GET", "/v2/team/app/blobs/").await,
        2,
        "the wrong bytes were not stored: each GET went upstream"
    );
    std::fs::write(dist.blob_file(&layer.digest), good).expect("repair the upstream's file");
    let reply = get(&reg, &path).await;
    assert_body(
        &reply,
        &layer.bytes,
        "the blob once the upstream serves it right",
    );
}

/// The same with clients waiting on one fetch, on two instances: none of them takes the wrong
/// bytes as a complete 200 (the ones waiting are served from storage, where nothing went).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_waiting_on_a_corrupted_fetch_get_no_complete_200_either() {
    let dist = Distribution::start(Flavour::Open).await;
    let big = dist.push_big_image("team/big", "1", 8, 611).await;
    let (reg, _upstreams) = cache_of(&dist).await;
    let peer = reg.start_peer().await;
    let manifest = get(&reg, "/v2/cache/dist/team/big/manifests/1").await;
    assert_body(&manifest, &big.manifest.bytes, "the manifest");
    let good = corrupt(&dist.blob_file(&big.layer_digest));
    let path = format!("/v2/cache/dist/team/big/blobs/{}", big.layer_digest);

    let outcomes = futures_util::future::join_all((0..6).map(|i| {
        let reg = if i % 2 == 0 { &reg } else { &peer };
        try_stream(reg, &path)
    }))
    .await;
    for (i, (status, body)) in outcomes.iter().enumerate() {
        assert!(
            *status != 200 || body.is_err(),
            "client {i}: {status}, complete body {body:?}, want the blob {}",
            big.layer_digest
        );
    }
    std::fs::write(dist.blob_file(&big.layer_digest), good).expect("repair");
    let (status, body) = try_stream(&peer, &path).await;
    assert_eq!(status, 200);
    assert_eq!(body, Ok((big.layer_size, big.layer_digest.clone())));
}
