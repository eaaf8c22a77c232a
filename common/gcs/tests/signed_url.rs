//! Redirected downloads: with a service-account key, `download_url` gives a V4 signed URL
//! whose signature verifies against the key's public half over a canonical request this test
//! rebuilds itself (so a wrong canonical form in the signer would fail here), which carries
//! the configured lifetime, and which serves the blob (whole and by range) from the emulator.

mod support;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine as _;
use bytes::Bytes;
use registry_common::oci::{Digest, UploadId};
use registry_common::storage::{BlobKey, Storage};
use registry_gcs::GcsStorage;

const EMAIL: &str = "registry-test@example.iam.gserviceaccount.com";
const TTL_SECS: u64 = 120;

/// A fresh RSA key, written as a service-account JSON key file.
fn service_account_key() -> (KeyPair, tempfile::NamedTempFile) {
    let key = KeyPair::generate(KeySize::Rsa2048).expect("RSA key");
    let der: Pkcs8V1Der<'static> = key.as_der().expect("PKCS#8");
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).expect("base64 is ASCII"))
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": "registry-test",
        "private_key_id": "test-key",
        "private_key": pem,
        "client_email": EMAIL,
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), json.to_string()).expect("writing the key");
    (key, file)
}

/// Percent-encoding of the V4 canonical forms: everything but `A-Za-z0-9-._~` (and `/` in
/// paths).
fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char);
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
            out.push(u8::from_str_radix(hex, 16).expect("hex digit"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("UTF-8")
}

fn sha256_hex(text: &str) -> String {
    Digest::sha256_of(text.as_bytes()).hex().to_owned()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex signature"))
        .collect()
}

/// Seconds since the epoch of an `X-Goog-Date` (`YYYYMMDDTHHMMSSZ`), by the civil-date
/// algorithm, so that the test needs no date library.
fn epoch_of(stamp: &str) -> i64 {
    let n = |range: std::ops::Range<usize>| stamp[range].parse::<i64>().expect("date digits");
    let (y, m, d) = (n(0..4), n(4..6), n(6..8));
    let (hh, mm, ss) = (n(9..11), n(11..13), n(13..15));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3600 + mm * 60 + ss
}

async fn storage_with_blob(
    key_file: Option<&std::path::Path>,
    redirect: bool,
) -> (GcsStorage, BlobKey, String, String) {
    let mut config = support::config();
    config.gcs_signing_key_file = key_file.map(std::path::Path::to_path_buf);
    config.gcs_redirect_downloads = redirect;
    config.gcs_signed_url_ttl_secs = TTL_SECS;
    let prefix = config.gcs_prefix.clone();
    let bucket = config.bucket_name.clone();
    let storage = GcsStorage::new(config).await.expect("storage");
    let bytes = Bytes::from_static(b"bytes behind a signed URL");
    let part = support::part(&UploadId::new(), "0-a");
    storage
        .put_part(&part, &mut support::body(vec![bytes.clone()]))
        .await
        .expect("put_part");
    let key = BlobKey(Digest::sha256_of(&bytes));
    storage.assemble(&[part], &key).await.expect("assemble");
    let object = format!("{prefix}/{}", key.path());
    (storage, key, bucket, object)
}

#[tokio::test]
async fn a_signed_url_verifies_carries_its_lifetime_and_serves_the_blob() {
    let (key_pair, key_file) = service_account_key();
    let (storage, key, bucket, object) = storage_with_blob(Some(key_file.path()), true).await;
    let url = storage
        .download_url(&key)
        .await
        .unwrap()
        .expect("a signed URL");

    let endpoint = &support::emulator().endpoint;
    let host = endpoint.trim_start_matches("http://");
    let (base, query) = url.split_once('?').expect("a query");
    let path = format!("/{bucket}/{}", encode(&object, true));
    assert_eq!(base, format!("{endpoint}{path}"));

    let mut params: BTreeMap<String, String> = query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("key=value");
            (decode(k), decode(v))
        })
        .collect();
    let signature = params.remove("X-Goog-Signature").expect("signature");
    assert_eq!(params["X-Goog-Algorithm"], "GOOG4-RSA-SHA256");
    assert_eq!(params["X-Goog-Expires"], TTL_SECS.to_string());
    assert_eq!(params["X-Goog-SignedHeaders"], "host");
    let date = params["X-Goog-Date"].clone();
    let scope = format!("{}/auto/storage/goog4_request", &date[..8]);
    assert_eq!(params["X-Goog-Credential"], format!("{EMAIL}/{scope}"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - epoch_of(&date)).abs() < 300,
        "X-Goog-Date {date} is not now"
    );

    // The V4 canonical request and string to sign, rebuilt from the specification.
    let canonical_query = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k, false), encode(v, false)))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request =
        format!("GET\n{path}\n{canonical_query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    let string_to_sign = format!(
        "GOOG4-RSA-SHA256\n{date}\n{scope}\n{}",
        sha256_hex(&canonical_request)
    );
    let public =
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key_pair.public_key().as_ref());
    let signature = unhex(&signature);
    public
        .verify(string_to_sign.as_bytes(), &signature)
        .expect("the signature verifies with the service account's public key");
    // A longer lifetime is another request: the signature does not cover it.
    let stretched = string_to_sign.replace(
        &sha256_hex(&canonical_request),
        &sha256_hex(&canonical_request.replace("X-Goog-Expires=120", "X-Goog-Expires=604800")),
    );
    assert!(public.verify(stretched.as_bytes(), &signature).is_err());

    // The emulator does not check signatures, but serves the URL as GCS would.
    let client = reqwest_tls::Client::new();
    let whole = client.get(&url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.unwrap(), "bytes behind a signed URL");
    let part = client
        .get(&url)
        .header("Range", "bytes=6-11")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap(), "behind");
}

#[tokio::test]
async fn with_redirects_off_downloads_stream_through_even_with_a_key() {
    let (_key_pair, key_file) = service_account_key();
    let (storage, key, _, _) = storage_with_blob(Some(key_file.path()), false).await;
    assert_eq!(storage.download_url(&key).await.unwrap(), None);
    // Streaming through still works.
    let bytes = support::read_all(storage.read(&key, None).await.unwrap()).await;
    assert_eq!(bytes, b"bytes behind a signed URL");
}

#[tokio::test]
async fn a_key_file_that_is_not_a_key_stops_start_up_with_its_path() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "not json").unwrap();
    let mut config = support::config();
    config.gcs_signing_key_file = Some(file.path().to_path_buf());
    let error = GcsStorage::new(config).await.unwrap_err().to_string();
    assert!(error.contains("GCS_SIGNING_KEY_FILE"), "{error}");
    assert!(
        error.contains(&file.path().display().to_string()),
        "{error}"
    );
}
