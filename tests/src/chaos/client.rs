//! What one chaos client does: push images (blobs by every upload method, or by mount), move
//! a tag, delete and push again, abandon sessions; retrying what a kill cut off, as a client
//! would, and counting what was lost or corrupt.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::fleet::{
    Figures, Fleet, Interrupted, Method, Request, Rng, location_path, stored, with_query,
};
use crate::{OCI_MANIFEST, image_manifest_json, pseudo_random_bytes, sha256_digest};

/// Clients pushing side by side, each in a repository of its own (`chaos/c<id>`).
pub const CLIENTS: u64 = 4;
/// Layers of the pool every client's images share.
pub const SHARED_LAYERS: u64 = 6;

/// A session a client left half-way: its bytes, what was acknowledged, and what was in
/// flight when it was cut off (when it was).
#[derive(Debug, Clone)]
pub struct Abandoned {
    pub repo: String,
    pub location: String,
    pub bytes: Arc<Vec<u8>>,
    pub acked: u64,
    pub in_flight: u64,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub repo: String,
    pub tag: String,
    pub manifest: Vec<u8>,
    pub digest: String,
    pub blobs: Vec<Arc<Vec<u8>>>,
}

#[derive(Debug, Default)]
pub struct ClientEnd {
    pub live: BTreeMap<String, Image>,
    pub deleted: BTreeMap<String, Image>,
    pub latest: Option<String>,
    pub repo: String,
    pub abandoned: Vec<Abandoned>,
}

pub async fn blob_linked(fleet: &Fleet, rng: &mut Rng, repo: &str, digest: &str) -> bool {
    let answer = fleet
        .send_until_answered(
            rng,
            &Request::new(Method::Head, format!("/v2/{repo}/blobs/{digest}")),
        )
        .await;
    match answer.status {
        200 => true,
        404 => false,
        other => panic!("HEAD blob {repo}@{digest} answered {other}"),
    }
}

/// Uploads the blob into `repo` by a method picked at random, until it is acknowledged.
pub async fn upload(
    fleet: &Fleet,
    rng: &mut Rng,
    repo: &str,
    bytes: &Arc<Vec<u8>>,
    end: &mut ClientEnd,
) {
    let digest = sha256_digest(bytes);
    loop {
        let done = match rng.below(3) {
            0 => {
                let post = Request::new(
                    Method::Post,
                    format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                )
                .header("Content-Type", "application/octet-stream")
                .body(bytes);
                match fleet.send(rng, &post).await {
                    Ok(a) => {
                        assert_eq!(a.status, 201, "monolithic upload: {:?}", a.body);
                        true
                    }
                    Err(Interrupted) => false,
                }
            }
            1 => streamed(fleet, rng, repo, bytes, &digest, end).await,
            _ => chunked(fleet, rng, repo, bytes, &digest, end).await,
        };
        if done {
            return;
        }
    }
}

pub async fn open_session(fleet: &Fleet, rng: &mut Rng, repo: &str) -> String {
    let answer = fleet
        .send_until_answered(
            rng,
            &Request::new(Method::Post, format!("/v2/{repo}/blobs/uploads/")),
        )
        .await;
    assert_eq!(answer.status, 202, "open session: {:?}", answer.body);
    location_path(&answer.location.expect("Location"))
}

/// `PUT ?digest=` closing a session; true once the blob is known stored.
pub async fn close_session(
    fleet: &Fleet,
    rng: &mut Rng,
    repo: &str,
    location: &str,
    digest: &str,
) -> bool {
    let put = Request::new(
        Method::Put,
        with_query(location, &format!("digest={digest}")),
    );
    let mut first = true;
    loop {
        match fleet.send(rng, &put).await {
            Ok(a) if a.status == 201 => return true,
            Ok(a) if a.status == 404 && first => {
                fleet
                    .figures
                    .problem(&fleet.figures.lost, format!("session {location} vanished"));
                return false;
            }
            // An earlier attempt committed before its instance died: the session is closed
            // (and the blob linked, unless the collector took the link since).
            Ok(a) if a.status == 404 => return blob_linked(fleet, rng, repo, digest).await,
            Ok(a) => panic!("closing a session answered {}: {:?}", a.status, a.body),
            Err(Interrupted) => first = false,
        }
    }
}

/// Where a session stands after a request was cut off: the acknowledged offset, or that plus
/// the chunk in flight. Anything else is a corrupt session.
pub async fn offset_after_cut(
    fleet: &Fleet,
    rng: &mut Rng,
    location: &str,
    acked: u64,
    in_flight: u64,
) -> Option<u64> {
    let answer = fleet
        .send_until_answered(rng, &Request::new(Method::Get, location.to_owned()))
        .await;
    match answer.status {
        204 => {
            let at = stored(&answer);
            if at != acked && at != acked + in_flight {
                fleet.figures.problem(
                    &fleet.figures.corrupt,
                    format!(
                        "session {location} at {at}, acknowledged {acked} (+{in_flight} in flight)"
                    ),
                );
                return None;
            }
            Some(at)
        }
        404 => {
            fleet
                .figures
                .problem(&fleet.figures.lost, format!("session {location} vanished"));
            None
        }
        other => panic!("upload status answered {other}"),
    }
}

/// One `PATCH` of the whole body, no `Content-Range`; a cut-off one leaves the session
/// abandoned (offset 0 or all of it).
pub async fn streamed(
    fleet: &Fleet,
    rng: &mut Rng,
    repo: &str,
    bytes: &Arc<Vec<u8>>,
    digest: &str,
    end: &mut ClientEnd,
) -> bool {
    let location = open_session(fleet, rng, repo).await;
    let patch = Request::new(Method::Patch, location.clone())
        .header("Content-Type", "application/octet-stream")
        .body(bytes);
    match fleet.send(rng, &patch).await {
        Ok(a) => assert_eq!(a.status, 202, "streamed PATCH: {:?}", a.body),
        Err(Interrupted) => {
            end.abandoned.push(Abandoned {
                repo: repo.to_owned(),
                location,
                bytes: bytes.clone(),
                acked: 0,
                in_flight: bytes.len() as u64,
            });
            return false;
        }
    }
    close_session(fleet, rng, repo, &location, digest).await
}

/// `PATCH`es with `Content-Range`, each to an instance picked at random; a cut-off chunk is
/// resumed from where the session says it is. Some sessions are abandoned half-way.
pub async fn chunked(
    fleet: &Fleet,
    rng: &mut Rng,
    repo: &str,
    bytes: &Arc<Vec<u8>>,
    digest: &str,
    end: &mut ClientEnd,
) -> bool {
    let location = open_session(fleet, rng, repo).await;
    let chunk = rng.between(64 * 1024, 512 * 1024);
    let abandon_at = rng.chance(15).then(|| rng.below(bytes.len() as u64));
    let mut offset = 0u64;
    while offset < bytes.len() as u64 {
        if let Some(at) = abandon_at
            && offset >= at
            && offset > 0
        {
            end.abandoned.push(Abandoned {
                repo: repo.to_owned(),
                location,
                bytes: bytes.clone(),
                acked: offset,
                in_flight: 0,
            });
            return false;
        }
        let stop = (offset + chunk).min(bytes.len() as u64);
        let patch = Request::new(Method::Patch, location.clone())
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{offset}-{}", stop - 1))
            .body(&bytes[offset as usize..stop as usize]);
        match fleet.send(rng, &patch).await {
            Ok(a) => {
                assert_eq!(a.status, 202, "chunk PATCH: {:?}", a.body);
                offset = stop;
            }
            Err(Interrupted) => {
                match offset_after_cut(fleet, rng, &location, offset, stop - offset).await {
                    Some(at) => {
                        Figures::add(&fleet.figures.sessions_resumed);
                        offset = at;
                    }
                    None => return false,
                }
            }
        }
    }
    close_session(fleet, rng, repo, &location, digest).await
}

/// Puts a manifest under `reference` until it is acknowledged, uploading its blobs again when
/// the collector took one first.
pub async fn put_manifest(
    fleet: &Fleet,
    rng: &mut Rng,
    image: &Image,
    reference: &str,
    end: &mut ClientEnd,
) {
    let put = Request::new(
        Method::Put,
        format!("/v2/{}/manifests/{reference}", image.repo),
    )
    .header("Content-Type", OCI_MANIFEST)
    .body(&image.manifest);
    loop {
        match fleet.send(rng, &put).await {
            Ok(a) if a.status == 201 => return,
            Ok(a)
                if a.status == 400
                    && String::from_utf8_lossy(&a.body).contains("MANIFEST_BLOB_UNKNOWN") =>
            {
                Figures::add(&fleet.figures.manifest_retries);
                ensure_blobs(fleet, rng, image, end).await;
            }
            Ok(a) => panic!("manifest PUT answered {}: {:?}", a.status, a.body),
            Err(Interrupted) => {}
        }
    }
}

pub async fn ensure_blobs(fleet: &Fleet, rng: &mut Rng, image: &Image, end: &mut ClientEnd) {
    for (i, blob) in image.blobs.iter().enumerate() {
        let digest = sha256_digest(blob);
        if blob_linked(fleet, rng, &image.repo, &digest).await {
            continue;
        }
        // Shared layers: sometimes a cross-repository mount from another client's repository.
        if (1..=2).contains(&i) && rng.chance(40) && mount(fleet, rng, image, blob, end).await {
            continue;
        }
        upload(fleet, rng, &image.repo, blob, end).await;
    }
}

/// `POST ?mount=&from=`: `201` when the other repository has the blob linked; otherwise the
/// `202` session it opens is left for the end checks to finish (an abandoned empty session).
pub async fn mount(
    fleet: &Fleet,
    rng: &mut Rng,
    image: &Image,
    blob: &Arc<Vec<u8>>,
    end: &mut ClientEnd,
) -> bool {
    let from = format!("chaos/c{}", rng.below(CLIENTS));
    let request = Request::new(
        Method::Post,
        format!(
            "/v2/{}/blobs/uploads/?mount={}&from={from}",
            image.repo,
            sha256_digest(blob)
        ),
    );
    match fleet.send(rng, &request).await {
        Ok(a) if a.status == 201 => {
            Figures::add(&fleet.figures.mounts);
            true
        }
        Ok(a) if a.status == 202 => {
            end.abandoned.push(Abandoned {
                repo: image.repo.clone(),
                location: location_path(&a.location.expect("Location")),
                bytes: blob.clone(),
                acked: 0,
                in_flight: 0,
            });
            false
        }
        Ok(a) => panic!("mount answered {}: {:?}", a.status, a.body),
        Err(Interrupted) => false,
    }
}

pub async fn push(fleet: &Fleet, rng: &mut Rng, image: &Image, end: &mut ClientEnd) {
    ensure_blobs(fleet, rng, image, end).await;
    put_manifest(fleet, rng, image, &image.tag, end).await;
    Figures::add(&fleet.figures.pushes_acked);
}

/// Deletes a manifest by digest until the deletion is acknowledged. A `404` counts as done
/// only after an attempt that may have committed; on a first attempt it is a lost manifest.
pub async fn delete(fleet: &Fleet, rng: &mut Rng, image: &Image) {
    let request = Request::new(
        Method::Delete,
        format!("/v2/{}/manifests/{}", image.repo, image.digest),
    );
    let mut first = true;
    loop {
        match fleet.send(rng, &request).await {
            Ok(a) if a.status == 202 => break,
            Ok(a) if a.status == 404 && !first => break,
            Ok(a) if a.status == 404 => {
                fleet.figures.problem(
                    &fleet.figures.lost,
                    format!("{}@{} was gone before its delete", image.repo, image.digest),
                );
                break;
            }
            Ok(a) => panic!("manifest DELETE answered {}: {:?}", a.status, a.body),
            Err(Interrupted) => first = false,
        }
    }
    Figures::add(&fleet.figures.deletes_acked);
}

pub async fn client(
    fleet: Arc<Fleet>,
    id: u64,
    seed: u64,
    shared: Arc<Vec<Arc<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
) -> ClientEnd {
    let mut rng = Rng(seed ^ (id + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let repo = format!("chaos/c{id}");
    let mut end = ClientEnd {
        repo: repo.clone(),
        ..ClientEnd::default()
    };
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let config = format!(r#"{{"client":{id},"round":{round},"seed":{seed}}}"#).into_bytes();
        let own_len = if rng.chance(25) {
            rng.between(1024 * 1024, 2 * 1024 * 1024)
        } else {
            rng.between(1024, 300 * 1024)
        } as usize;
        let own = pseudo_random_bytes(own_len, seed ^ (id << 32) ^ round);
        let a = rng.below(SHARED_LAYERS) as usize;
        let b = (a + 1 + rng.below(SHARED_LAYERS - 1) as usize) % SHARED_LAYERS as usize;
        let blobs = vec![
            Arc::new(config),
            shared[a].clone(),
            shared[b].clone(),
            Arc::new(own),
        ];
        let layers: Vec<(String, usize)> = blobs[1..]
            .iter()
            .map(|l| (sha256_digest(l), l.len()))
            .collect();
        let manifest =
            image_manifest_json(&(sha256_digest(&blobs[0]), blobs[0].len()), &layers).into_bytes();
        let image = Image {
            repo: repo.clone(),
            tag: format!("r{round}"),
            digest: sha256_digest(&manifest),
            manifest,
            blobs,
        };
        push(&fleet, &mut rng, &image, &mut end).await;
        // The tag move.
        put_manifest(&fleet, &mut rng, &image, "latest", &mut end).await;
        end.latest = Some(image.digest.clone());
        end.live.insert(image.digest.clone(), image);

        if end.live.len() > 2 && rng.chance(35) {
            let victim = end
                .live
                .keys()
                .nth(rng.below(end.live.len() as u64) as usize)
                .cloned()
                .expect("a live image");
            let image = end.live.remove(&victim).expect("live");
            delete(&fleet, &mut rng, &image).await;
            if end.latest.as_deref() == Some(victim.as_str()) {
                end.latest = None;
            }
            end.deleted.insert(victim, image);
        }
        if !end.deleted.is_empty() && rng.chance(20) {
            let again = end
                .deleted
                .keys()
                .nth(rng.below(end.deleted.len() as u64) as usize)
                .cloned()
                .expect("a deleted image");
            let image = end.deleted.remove(&again).expect("deleted");
            push(&fleet, &mut rng, &image, &mut end).await;
            end.live.insert(again, image);
        }
        round += 1;
    }
    end
}
