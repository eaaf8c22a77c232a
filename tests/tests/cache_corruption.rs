//! Bytes corrupted in the upstream's storage (distribution serves what its files hold) are
//! never served as the blob nor stored: the cache notices the wrong digest only at the end of
//! the transfer, so it must hold the last bytes back until it has checked, and break the
//! connection instead of ending a 200 of the wrong bytes (docs/api.md, "Pull-through cache").

use registry_tests::oci_layout::Image;
use registry_tests::upstream::{
    Distribution, Flavour, assert_body, get_accepting_manifests, prefix_cache_of, try_stream,
};

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
    let (reg, _upstreams) = prefix_cache_of(&dist, serde_json::json!({})).await;
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
    let reply = get_accepting_manifests(&reg, &path).await;
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
    let (reg, _upstreams) = prefix_cache_of(&dist, serde_json::json!({})).await;
    let peer = reg.start_peer().await;
    let manifest = get_accepting_manifests(&reg, "/v2/cache/dist/team/big/manifests/1").await;
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
