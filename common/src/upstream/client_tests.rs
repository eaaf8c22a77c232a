//! The verification of what an upstream sends, which a correct server never gets wrong.

use futures_util::StreamExt;

use super::*;

fn tag(raw: &str) -> Reference {
    Reference::parse(raw).unwrap()
}

#[test]
fn a_manifest_by_digest_must_hash_to_it() {
    let payload = br#"{"schemaVersion":2}"#;
    let digest = Digest::sha256_of(payload);
    let by_digest = Reference::Digest(digest.clone());
    assert_eq!(
        verify_manifest(&by_digest, None, payload),
        Ok(digest.clone())
    );
    let other = Digest::sha256_of(b"other");
    let e = verify_manifest(&Reference::Digest(other.clone()), None, payload).unwrap_err();
    assert!(
        e.contains(&other.to_string()) && e.contains(&digest.to_string()),
        "{e}"
    );
    let sha512 = Digest::of(crate::oci::Algorithm::Sha512, payload);
    assert_eq!(
        verify_manifest(&Reference::Digest(sha512.clone()), None, payload),
        Ok(sha512)
    );
}

#[test]
fn a_manifest_by_tag_must_hash_to_docker_content_digest() {
    let payload = br#"{"schemaVersion":2}"#;
    let digest = Digest::sha256_of(payload);
    assert_eq!(
        verify_manifest(&tag("v1"), None, payload),
        Ok(digest.clone())
    );
    assert_eq!(
        verify_manifest(&tag("v1"), Some(&digest.to_string()), payload),
        Ok(digest.clone())
    );
    let wrong = Digest::sha256_of(b"x").to_string();
    let e = verify_manifest(&tag("v1"), Some(&wrong), payload).unwrap_err();
    assert!(e.contains("hashes to"), "{e}");
    let e = verify_manifest(&tag("v1"), Some("md5:abc"), payload).unwrap_err();
    assert!(e.contains("Docker-Content-Digest"), "{e}");
}

async fn drain(
    chunks: &[&'static [u8]],
    digest: Digest,
    size: u64,
) -> (Vec<u8>, Option<io::Error>) {
    let inner = futures_util::stream::iter(
        chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c)))
            .collect::<Vec<io::Result<Bytes>>>(),
    );
    let mut stream = Verified::new(Box::pin(inner), digest, size, "upstream \"u\"".into());
    let mut bytes = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(e) => {
                assert!(
                    stream.next().await.is_none(),
                    "the stream ends after its error"
                );
                return (bytes, Some(e));
            }
        }
    }
    (bytes, None)
}

#[tokio::test]
async fn a_blob_stream_ends_in_an_error_unless_its_bytes_match() {
    let digest = Digest::sha256_of(b"hello world");
    let (bytes, error) = drain(&[b"hello ", b"world"], digest.clone(), 11).await;
    assert_eq!(bytes, b"hello world");
    assert!(error.is_none(), "{error:?}");

    let (_, error) = drain(&[b"hello ", b"there"], digest.clone(), 11).await;
    let error = error.expect("a mismatch fails");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("upstream \"u\""), "{error}");
    assert!(error.to_string().contains("hash to"), "{error}");

    let (_, error) = drain(&[b"hello"], digest.clone(), 11).await;
    assert!(
        error
            .expect("short")
            .to_string()
            .contains("5 bytes, not the 11")
    );
    let (_, error) = drain(&[b"hello world!"], digest, 11).await;
    assert!(
        error
            .expect("long")
            .to_string()
            .contains("more than the 11")
    );
}

#[test]
fn credentials_stay_on_the_upstreams_origin() {
    let origin = Url::parse("https://registry.example.com").unwrap();
    for (url, same) in [
        ("https://registry.example.com/v2/x", true),
        ("https://registry.example.com:443/v2/x", true),
        ("http://registry.example.com/v2/x", false),
        ("https://registry.example.com:8443/v2/x", false),
        ("https://bucket.s3.amazonaws.com/x?X-Amz-Signature=s", false),
    ] {
        assert_eq!(
            same_origin(&Url::parse(url).unwrap(), &origin),
            same,
            "{url}"
        );
    }
}

#[test]
fn the_media_type_comes_from_the_answer_or_the_payload() {
    let payload = format!(r#"{{"mediaType":"{OCI_INDEX}"}}"#);
    assert_eq!(
        media_type(Some(OCI_MANIFEST.into()), b"{}").as_deref(),
        Some(OCI_MANIFEST)
    );
    for generic in [
        None,
        Some("application/json".to_owned()),
        Some(String::new()),
    ] {
        assert_eq!(
            media_type(generic, payload.as_bytes()).as_deref(),
            Some(OCI_INDEX)
        );
    }
    assert_eq!(media_type(None, b"{}"), None);
    assert!(accept_manifests().contains(DOCKER_MANIFEST_LIST));
}
