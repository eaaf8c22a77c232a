//! The event bodies: distribution's envelope fields, as its consumers parse them.

use super::*;
use crate::oci::ParsedManifest;

fn recorder() -> EventRecorder {
    EventRecorder::new(
        EventSource {
            addr: "registry-7:5000".to_owned(),
            instance_id: "0f6c3e3a-instance".to_owned(),
        },
        false,
    )
}

fn origin() -> EventOrigin {
    EventOrigin {
        request_id: "req-1".to_owned(),
        addr: "10.0.0.9:4711".to_owned(),
        host: "registry.example.com".to_owned(),
        scheme: "https".to_owned(),
        method: "PUT".to_owned(),
        user_agent: "docker/27.0".to_owned(),
        actor: Some("alice".to_owned()),
    }
}

fn body(events: &[NewEvent]) -> serde_json::Value {
    assert_eq!(events.len(), 1);
    serde_json::from_str(&events[0].body).expect("JSON")
}

fn name() -> RepositoryName {
    RepositoryName::parse("team/app").expect("name")
}

#[test]
fn a_manifest_push_carries_the_envelope_fields_distribution_sends() {
    let layer = Digest::sha256_of(b"layer");
    let config = Digest::sha256_of(b"config");
    let payload = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 6},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": 5}],
    })
    .to_string();
    let parsed = ParsedManifest::parse(None, payload.as_bytes()).expect("manifest");
    let digest = Digest::sha256_of(payload.as_bytes());
    let tag = Tag::parse("v1").expect("tag");
    let target = ManifestTarget {
        digest: &digest,
        media_type: parsed.kind.media_type(),
        size: payload.len() as u64,
        parsed: Some(&parsed),
    };
    let events = recorder().manifest_pushed(&origin(), &name(), target, Some(&tag));
    let event = body(&events);
    assert_eq!(events[0].action, Action::Push);
    assert_eq!(events[0].repository, "team/app");
    assert_eq!(event["id"], events[0].id.as_str());
    assert_eq!(event["action"], "push");
    let timestamp = event["timestamp"].as_str().expect("timestamp");
    assert!(
        timestamp.parse::<jiff::Timestamp>().is_ok() && timestamp.ends_with('Z'),
        "{event}"
    );
    let target = &event["target"];
    assert_eq!(
        target["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(target["digest"], digest.to_string());
    assert_eq!(target["size"], payload.len());
    assert_eq!(target["length"], payload.len());
    assert_eq!(target["repository"], "team/app");
    assert_eq!(target["tag"], "v1");
    assert_eq!(
        target["url"],
        format!("https://registry.example.com/v2/team/app/manifests/{digest}")
    );
    let references: Vec<&str> = target["references"]
        .as_array()
        .expect("references")
        .iter()
        .map(|r| r["digest"].as_str().expect("digest"))
        .collect();
    assert_eq!(references, [config.to_string(), layer.to_string()]);
    // An ordinary image is no artifact.
    assert!(target.get("artifactType").is_none(), "{event}");
    assert_eq!(
        event["request"],
        serde_json::json!({"id": "req-1", "addr": "10.0.0.9:4711", "host": "registry.example.com",
            "method": "PUT", "useragent": "docker/27.0"})
    );
    assert_eq!(event["actor"], serde_json::json!({"name": "alice"}));
    assert_eq!(
        event["source"],
        serde_json::json!({"addr": "registry-7:5000", "instanceID": "0f6c3e3a-instance"})
    );
}

#[test]
fn an_artifact_push_names_its_artifact_type_and_subject() {
    let subject = Digest::sha256_of(b"the image");
    let blob = Digest::sha256_of(b"sbom");
    let empty = Digest::sha256_of(b"{}");
    let payload = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": blob.to_string(), "size": 4}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject.to_string(), "size": 9},
    })
    .to_string();
    let parsed = ParsedManifest::parse(None, payload.as_bytes()).expect("manifest");
    let digest = Digest::sha256_of(payload.as_bytes());
    let target = ManifestTarget {
        digest: &digest,
        media_type: parsed.kind.media_type(),
        size: payload.len() as u64,
        parsed: Some(&parsed),
    };
    let event = body(&recorder().manifest_pushed(&origin(), &name(), target, None));
    assert_eq!(event["target"]["artifactType"], "application/spdx+json");
    assert_eq!(event["target"]["subject"]["digest"], subject.to_string());
    assert!(event["target"].get("tag").is_none(), "{event}");
}

#[test]
fn deletes_and_mounts_name_what_went_and_where_from() {
    let digest = Digest::sha256_of(b"x");
    let recorder = recorder();
    let tag = Tag::parse("old").expect("tag");
    let deleted = body(&recorder.tag_deleted(&origin(), &name(), &tag));
    assert_eq!(deleted["action"], "delete");
    assert_eq!(
        deleted["target"],
        serde_json::json!({"repository": "team/app", "tag": "old"})
    );
    let deleted = body(&recorder.manifest_deleted(&origin(), &name(), &digest));
    assert_eq!(
        deleted["target"],
        serde_json::json!({"repository": "team/app", "digest": digest.to_string()})
    );
    let repository = body(&recorder.repository_deleted(&origin(), &name()));
    assert_eq!(
        repository["target"],
        serde_json::json!({"repository": "team/app"})
    );
    let from = RepositoryName::parse("team/base").expect("name");
    let mounted = body(&recorder.blob_mounted(&origin(), &name(), &from, &digest, 1));
    assert_eq!(mounted["action"], "mount");
    assert_eq!(mounted["target"]["fromRepository"], "team/base");
    assert_eq!(mounted["target"]["mediaType"], "application/octet-stream");
    assert_eq!(mounted["target"]["size"], 1);
}

#[test]
fn an_anonymous_change_has_no_actor_and_an_off_recorder_records_nothing() {
    let mut anonymous = origin();
    anonymous.actor = None;
    let digest = Digest::sha256_of(b"x");
    let event = body(&recorder().blob_pushed(&anonymous, &name(), &digest, 1));
    assert!(event.get("actor").is_none(), "{event}");
    assert!(
        EventRecorder::off()
            .blob_pushed(&origin(), &name(), &digest, 1)
            .is_empty()
    );
}
