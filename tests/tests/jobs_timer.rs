//! The single binary runs the scheduled jobs itself, every `JOBS_INTERVAL_SECS`.

use std::time::{Duration, Instant};

use registry_tests::Registry;

#[tokio::test]
async fn the_single_binary_collects_garbage_on_its_timer() {
    let reg = Registry::start_with(&[
        ("JOBS_INTERVAL_SECS", "1"),
        ("GC_GRACE_SECS", "0"),
        ("UPLOAD_MAX_AGE_SECS", "0"),
    ])
    .await;
    let image = reg.push_image("timer/app", "v1", &[4096]).await;
    let loose = reg
        .push_blob("timer/app", b"pushed, never referenced")
        .await;
    let session = reg
        .client
        .post(reg.url("/v2/timer/app/blobs/uploads/"))
        .send()
        .await
        .expect("open session");
    let location = session.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let blob = reg
            .client
            .head(reg.url(&format!("/v2/timer/app/blobs/{loose}")))
            .send()
            .await
            .expect("HEAD loose blob");
        let upload = reg
            .client
            .get(reg.url(&location))
            .send()
            .await
            .expect("GET session");
        if blob.status() == 404 && upload.status() == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the timer did not collect within 30 s:\n{}",
            reg.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What the image references stays.
    for (digest, bytes) in &image.layers {
        let got = reg
            .client
            .get(reg.url(&format!("/v2/timer/app/blobs/{digest}")))
            .send()
            .await
            .expect("GET layer");
        assert_eq!(got.bytes().await.expect("body").as_ref(), bytes.as_slice());
    }
    let log = reg.log();
    assert!(log.contains("in-process jobs scheduled"), "{log}");
    assert!(log.contains("job=\"blob-gc\""), "{log}");
}
