//! Management API request bodies (`POST /api/<method>`): the JSON object of a method's
//! parameters (`project`, `repository`, `cursor`, `limit`, `tag`, `digest`, as the methods of
//! `functions/api/src/methods.rs` take them) through the checks those methods run, from
//! registry-common's management model. (The parameter structs themselves are serde-derived in
//! registry-api, whose GCS and S3 SDKs this crate does not build.) Invariants: a project or
//! repository that parses names itself back; a page's limit lies within bounds; a cursor is
//! accepted by at most one listing, and a listing's cursor carries back the key it was made of.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_common::fuzzing;
use registry_common::oci::{Digest, Tag};
use registry_common::services::management_model::{
    MAX_PAGE_LIMIT, PageRequest, Project, ProjectRepository,
};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Some(params) = value.as_object() else {
        return;
    };
    let text = |field: &str| params.get(field).and_then(|v| v.as_str());
    let limit = params
        .get("limit")
        .and_then(serde_json::Value::as_u64)
        .and_then(|l| u32::try_from(l).ok());

    if let Some(raw) = text("project")
        && let Ok(project) = Project::parse(raw)
    {
        assert_eq!(project.as_str(), raw);
        assert!(!raw.contains('/'));
        if let Some(repository) = text("repository")
            && let Ok(repo) = ProjectRepository::parse(&project, repository)
        {
            assert_eq!(repo.relative(), repository);
            assert_eq!(repo.name().as_str(), format!("{raw}/{repository}"));
            assert_eq!(repo.name().project(), raw);
        }
    }
    if let Some(raw) = text("tag")
        && let Ok(tag) = Tag::parse(raw)
    {
        assert_eq!(tag.as_str(), raw);
    }
    if let Some(raw) = text("digest")
        && let Ok(digest) = Digest::parse(raw)
    {
        assert_eq!(digest.to_string(), raw);
    }

    let cursor = text("cursor").map(str::to_owned);
    if let Ok(page) = PageRequest::new(cursor.clone(), limit) {
        assert!((1..=MAX_PAGE_LIMIT).contains(&page.limit()));
        let keys = fuzzing::cursor_keys(&page);
        let accepted = keys.iter().filter(|k| matches!(k, Ok(Some(_)))).count();
        if cursor.as_deref().is_none_or(str::is_empty) {
            assert!(keys.iter().all(|k| matches!(k, Ok(None))));
        } else {
            assert!(accepted <= 1, "a cursor of several listings: {cursor:?}");
        }
    }
    // Every string parameter as a listing's last key: its cursor carries it back.
    for key in params.values().filter_map(|v| v.as_str()) {
        for (i, cursor) in fuzzing::cursors(key).into_iter().enumerate() {
            let page = PageRequest::new(Some(cursor), None).expect("a made cursor is a page");
            let keys = fuzzing::cursor_keys(&page);
            for (j, read) in keys.into_iter().enumerate() {
                match read {
                    Ok(Some(read)) => assert!(i == j && read == key),
                    Ok(None) => panic!("a made cursor read as none"),
                    Err(_) => assert_ne!(i, j),
                }
            }
        }
    }
});
