//! Concurrent first pulls of one uncached blob through two instances of the cache (one data
//! directory or bucket, one database): 20 clients pulling a 200 MiB layer cause one upstream
//! fetch (a lease in the database), and every client gets the whole layer, digest-correct.
//! Correctness only: time to first byte, throughput and peak memory are the benchmark's
//! figures (docs/benchmark.md), never asserted here.

use registry_tests::upstream::{Distribution, Flavour, Upstreams, stream_digest};

const LAYER_MIB: u64 = 200;
const CLIENTS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_pulls_of_an_uncached_layer_through_two_instances_fetch_it_once() {
    let dist = Distribution::start(Flavour::Token).await;
    let big = dist.push_big_image("team/big", "1", LAYER_MIB, 401).await;
    let mut upstreams = Upstreams::new();
    upstreams.add("dist", &dist, serde_json::json!({"prefix": "cache/dist"}));
    let first = upstreams.start_registry().await;
    let second = first.start_peer().await;
    let repo = "cache/dist/team/big";

    // The manifest first, as a client pulls: then the layer, which no instance holds yet.
    let manifest = first
        .client
        .get(first.url(&format!("/v2/{repo}/manifests/1")))
        .header("Accept", registry_tests::OCI_MANIFEST)
        .send()
        .await
        .expect("GET manifest");
    assert_eq!(manifest.status(), 200);
    assert_eq!(
        manifest.bytes().await.expect("manifest body").as_ref(),
        big.manifest.bytes.as_slice()
    );
    let layer_path = format!("/v2/team/big/blobs/{}", big.layer_digest);
    assert_eq!(
        dist.count_ok("GET", &layer_path),
        0,
        "the layer is not fetched yet"
    );

    let pulls = (0..CLIENTS).map(|i| {
        let reg = if i % 2 == 0 { &first } else { &second };
        let url = reg.url(&format!("/v2/{repo}/blobs/{}", big.layer_digest));
        let client = reg.client.clone();
        // A task each: the hashing of 20 × 200 MiB spreads over the runtime's threads.
        tokio::spawn(async move { stream_digest(&client, &url).await })
    });
    let results: Vec<_> = futures_util::future::join_all(pulls)
        .await
        .into_iter()
        .map(|joined| joined.expect("pull task"))
        .collect();
    for (i, got) in results.iter().enumerate() {
        assert_eq!(
            got.status,
            200,
            "client {i}:\n{}\n{}",
            first.log(),
            second.log()
        );
        assert_eq!(got.size, big.layer_size, "client {i} got the whole layer");
        assert_eq!(
            got.digest, big.layer_digest,
            "client {i} got the right bytes"
        );
    }
    assert_eq!(
        dist.settled_count_ok("GET", &layer_path).await,
        1,
        "one upstream fetch for {CLIENTS} clients on two instances: {:?}",
        dist.requests("GET", &layer_path)
    );

    // Afterwards it is ordinary cached content on both.
    for reg in [&first, &second] {
        let url = reg.url(&format!("/v2/{repo}/blobs/{}", big.layer_digest));
        let got = stream_digest(&reg.client, &url).await;
        assert_eq!(got.digest, big.layer_digest);
    }
    assert_eq!(dist.count_ok("GET", &layer_path), 1);
}
