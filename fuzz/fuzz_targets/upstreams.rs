//! The upstreams file (`UPSTREAMS_FILE`, `UpstreamsConfig::parse`): input `<repository>\n<file
//! JSON>`. A file that loads has unique names, URLs without a trailing slash and lowercase
//! hosts; an upstream's allow-list admits every repository when empty and each of its own
//! patterns; the upstream-side name of a remainder ends with it. Inputs naming `/dev`, `/proc`
//! or `/sys` are skipped: a `password_file` is read, and those never end.
#![no_main]

use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use registry_common::config::{UpstreamsConfig, Vars};

fn vars() -> &'static Vars {
    static VARS: OnceLock<Vars> = OnceLock::new();
    VARS.get_or_init(|| {
        [("UPSTREAM_PASSWORD", "fuzz-password")]
            .into_iter()
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let (repository, file) = text.split_once('\n').unwrap_or(("library/alpine", text));
    let Ok(config) = UpstreamsConfig::parse(Path::new("upstreams.json"), file, vars()) else {
        return;
    };
    let mut names = HashSet::new();
    for upstream in &config.upstreams {
        assert!(
            names.insert(upstream.name.as_str()),
            "{} twice",
            upstream.name
        );
        assert!(!upstream.url.ends_with('/'), "{}", upstream.url);
        if let Some(host) = &upstream.host {
            assert_eq!(*host, host.to_ascii_lowercase());
            assert!(config.by_host(host).is_some());
        }
        assert!(config.by_name(&upstream.name).is_some());
        if upstream.repositories.is_empty() {
            assert!(upstream.allows(repository));
        }
        for pattern in &upstream.repositories {
            assert!(
                upstream.allows(pattern),
                "{pattern:?} does not admit itself"
            );
        }
        let _ = upstream.allows(repository);
        assert!(upstream.upstream_name(repository).ends_with(repository));
    }
});
