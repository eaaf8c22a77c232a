//! `UPSTREAMS_FILE`: the format, the defaults, and every error naming file, upstream, field.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::json_file::glob_matches;
use crate::config::{JobsBinaryConfig, RegistryConfig, ServiceConfig};

const FILE: &str = "/etc/u.json";

fn parse(text: &str, pairs: &[(&str, &str)]) -> Result<UpstreamsConfig, String> {
    let vars: Vars = pairs.iter().copied().collect();
    UpstreamsConfig::parse(Path::new(FILE), text, &vars).map_err(|e| e.to_string())
}

/// One upstream (`hub`, prefix `cache/hub`) with `extra` JSON members added.
fn one(extra: &str) -> String {
    format!(
        r#"{{"upstreams": [{{"name": "hub", "url": "https://registry-1.docker.io/",
            "prefix": "cache/hub"{extra}}}]}}"#
    )
}

#[track_caller]
fn refused(text: &str, pairs: &[(&str, &str)], needles: &[&str]) {
    match parse(text, pairs) {
        Ok(config) => panic!("accepted: {config:?}\n{text}"),
        Err(e) => {
            assert!(
                e.starts_with(&format!("invalid configuration: UPSTREAMS_FILE {FILE}: ")),
                "{e}"
            );
            for needle in needles {
                assert!(e.contains(needle), "{needle:?} not in: {e}");
            }
        }
    }
}

#[test]
fn the_issue_example_parses_with_its_defaults() {
    let text = r#"{"upstreams": [
        {"name": "hub", "url": "https://registry-1.docker.io", "prefix": "cache/hub",
         "host": "Docker.io", "fallback": false, "username": "me", "password_env": "HUB_TOKEN",
         "tag_ttl_secs": 60, "repositories": ["library/*", "grafana/*"], "max_bytes": 1000},
        {"name": "ghcr", "url": "https://ghcr.io/", "fallback": true}
    ]}"#;
    let config = parse(text, &[("HUB_TOKEN", "s3cret")]).unwrap();
    assert_eq!(config.upstreams.len(), 2);
    let hub = &config.upstreams[0];
    assert_eq!(hub.name, "hub");
    assert_eq!(hub.url, "https://registry-1.docker.io");
    assert_eq!(hub.prefix.as_deref(), Some("cache/hub"));
    assert_eq!(
        hub.host.as_deref(),
        Some("docker.io"),
        "hosts are lowercased"
    );
    assert_eq!(hub.tag_ttl, Duration::from_secs(60));
    assert_eq!(hub.max_bytes, Some(1000));
    let credentials = hub.credentials.as_ref().unwrap();
    assert_eq!(credentials.username, "me");
    assert_eq!(credentials.password.expose(), "s3cret");
    assert!(!format!("{config:?}").contains("s3cret"));

    let ghcr = &config.upstreams[1];
    assert_eq!(ghcr.url, "https://ghcr.io", "no trailing slash");
    assert!(ghcr.fallback && ghcr.prefix.is_none() && ghcr.host.is_none());
    assert!(ghcr.credentials.is_none());
    assert_eq!(ghcr.tag_ttl, Duration::from_secs(DEFAULT_TAG_TTL_SECS));
    assert!(ghcr.repositories.is_empty() && ghcr.max_bytes.is_none());

    assert_eq!(config.by_name("ghcr").unwrap().name, "ghcr");
    assert_eq!(config.by_host("DOCKER.IO").unwrap().name, "hub");
    assert!(config.by_host("ghcr.io").is_none());
}

#[test]
fn unset_means_no_upstreams_and_the_binaries_read_it() {
    assert!(
        UpstreamsConfig::from_vars(&Vars::default())
            .unwrap()
            .is_empty()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.json");
    std::fs::write(&path, one("")).unwrap();
    let pairs = [("UPSTREAMS_FILE", path.to_str().unwrap())];
    let vars: Vars = pairs.iter().copied().collect();
    let service = ServiceConfig::from_vars(&vars).unwrap();
    assert_eq!(service.upstreams.upstreams[0].name, "hub");
    let jobs = JobsBinaryConfig::from_vars(&vars).unwrap();
    assert_eq!(jobs.upstreams.upstreams[0].name, "hub");
    let registry = RegistryConfig::from_vars(&vars).unwrap();
    assert_eq!(registry.service.upstreams.upstreams.len(), 1);
}

#[test]
fn a_missing_file_is_named() {
    let vars: Vars = [("UPSTREAMS_FILE", "/nonexistent/u.json")]
        .into_iter()
        .collect();
    let e = UpstreamsConfig::from_vars(&vars).unwrap_err().to_string();
    assert!(
        e.starts_with("invalid configuration: UPSTREAMS_FILE /nonexistent/u.json: cannot read it"),
        "{e}"
    );
    let e = ServiceConfig::from_vars(&vars).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/u.json"), "{e}");
}

#[test]
fn bad_json_names_line_and_column() {
    refused(
        "{\"upstreams\": [\n  {\"name\": \"hub\",}\n]}",
        &[],
        &["line 2 column"],
    );
    refused("", &[], &["EOF", "line 1 column 0"]);
    refused(
        "{\"upstreams\": []} x",
        &[],
        &["trailing characters", "line 1"],
    );
    refused(r#"{"upstream": []}"#, &[], &["unknown field `upstream`"]);
    refused(r#"{}"#, &[], &["missing field `upstreams`"]);
}

#[test]
fn unknown_and_mistyped_fields_name_the_upstream_and_the_field() {
    refused(
        &one(r#", "prefx": "x""#),
        &[],
        &["upstream \"hub\"", "unknown field `prefx`", "line 2"],
    );
    refused(
        &one(r#", "tag_ttl_secs": "5m""#),
        &[],
        &["upstream \"hub\"", "tag_ttl_secs", "invalid type"],
    );
    refused(
        r#"{"upstreams": [{"url": "https://a.io", "fallback": true}]}"#,
        &[],
        &["upstreams[0]", "missing field `name`"],
    );
    refused(
        r#"{"upstreams": [{"name": "a", "url": "https://a.io", "fallback": true},
                         {"name": "b", "url": 5}]}"#,
        &[],
        &["upstream \"b\"", "url", "invalid type"],
    );
}

#[test]
fn names_must_be_present_and_unique() {
    refused(
        r#"{"upstreams": [{"name": "", "url": "https://a.io", "fallback": true}]}"#,
        &[],
        &["upstreams[0]: name must not be empty"],
    );
    refused(
        r#"{"upstreams": [{"name": "a", "url": "https://a.io", "fallback": true},
                         {"name": "a", "url": "https://b.io", "fallback": true}]}"#,
        &[],
        &["upstream \"a\": name: another upstream has this name"],
    );
}

#[test]
fn urls_are_http_with_a_host_and_no_query() {
    for (url, why) in [
        ("registry-1.docker.io", "is not a URL"),
        ("ftp://a.io", "must be http:// or https://"),
        ("https://a.io/?x=1", "no query"),
        ("https://a.io/#x", "no query or fragment"),
        ("https://me:pw@a.io", "must not hold credentials"),
        ("file:///x", "must be http:// or https://"),
    ] {
        let text =
            format!(r#"{{"upstreams": [{{"name": "a", "url": "{url}", "fallback": true}}]}}"#);
        refused(&text, &[], &["upstream \"a\": url", why]);
    }
    let text =
        r#"{"upstreams": [{"name": "a", "url": "http://127.0.0.1:5000", "fallback": true}]}"#;
    assert_eq!(
        parse(text, &[]).unwrap().upstreams[0].url,
        "http://127.0.0.1:5000"
    );
}

#[test]
fn prefixes_are_repository_names_that_do_not_overlap() {
    let text = r#"{"upstreams": [{"name": "hub", "url": "https://a.io", "prefix": "cache/Hub"}]}"#;
    refused(
        text,
        &[],
        &[
            "UPSTREAMS_FILE /etc/u.json: upstream \"hub\": prefix \"cache/Hub\" is not a repository name",
        ],
    );
    for (a, b, ok) in [
        ("cache/hub", "cache/hub", false),
        ("cache", "cache/hub", false),
        ("cache/hub/x", "cache/hub", false),
        ("cache/hub", "cache/hubx", true),
        ("cache/hub", "cache/ghcr", true),
    ] {
        let text = format!(
            r#"{{"upstreams": [{{"name": "a", "url": "https://a.io", "prefix": "{a}"}},
                              {{"name": "b", "url": "https://b.io", "prefix": "{b}"}}]}}"#
        );
        if ok {
            assert!(parse(&text, &[]).is_ok(), "{a} {b}");
        } else {
            refused(
                &text,
                &[],
                &["upstream \"b\": prefix", "overlaps", "upstream \"a\""],
            );
        }
    }
}

#[test]
fn hosts_are_host_port_and_unique() {
    for ok in [
        "docker.io",
        "registry.example.com:5000",
        "localhost",
        "[::1]:5000",
        "[::1]",
    ] {
        let text =
            format!(r#"{{"upstreams": [{{"name": "a", "url": "https://a.io", "host": "{ok}"}}]}}"#);
        assert!(parse(&text, &[]).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "docker.io/library",
        "a..b",
        "-a.io",
        "a.io:0",
        "a.io:99999",
        "a.io:x",
        "[zz]:1",
        "a b",
    ] {
        let text = format!(
            r#"{{"upstreams": [{{"name": "a", "url": "https://a.io", "host": "{bad}"}}]}}"#
        );
        refused(
            &text,
            &[],
            &["upstream \"a\": host", "is not a host[:port]"],
        );
    }
    refused(
        r#"{"upstreams": [{"name": "a", "url": "https://a.io", "host": "docker.io"},
                         {"name": "b", "url": "https://b.io", "host": "Docker.IO"}]}"#,
        &[],
        &["upstream \"b\": host \"docker.io\": another upstream has this host"],
    );
}

#[test]
fn an_upstream_needs_a_way_in() {
    refused(
        r#"{"upstreams": [{"name": "a", "url": "https://a.io"}]}"#,
        &[],
        &["upstream \"a\": needs at least one of prefix, host or fallback"],
    );
    refused(
        r#"{"upstreams": [{"name": "a", "url": "https://a.io", "fallback": false}]}"#,
        &[],
        &["needs at least one of prefix, host or fallback"],
    );
}

#[test]
fn credentials_come_in_pairs_from_the_environment_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "from-file\n").unwrap();
    let secret = secret.to_str().unwrap();
    let config = parse(
        &one(&format!(
            r#", "username": "me", "password_file": "{secret}""#
        )),
        &[],
    )
    .unwrap();
    let credentials = config.upstreams[0].credentials.as_ref().unwrap();
    assert_eq!(credentials.password.expose(), "from-file");

    refused(
        &one(r#", "username": "me""#),
        &[],
        &["upstream \"hub\": username needs password_env or password_file"],
    );
    refused(
        &one(r#", "password_env": "PW""#),
        &[("PW", "x")],
        &["upstream \"hub\": password_env needs username"],
    );
    refused(
        &one(&format!(r#", "password_file": "{secret}""#)),
        &[],
        &["password_file needs username"],
    );
    refused(
        &one(&format!(
            r#", "username": "me", "password_env": "PW", "password_file": "{secret}""#
        )),
        &[("PW", "x")],
        &["password_env and password_file: give only one"],
    );
    refused(
        &one(r#", "username": "me", "password_env": "HUB_TOKEN""#),
        &[],
        &["upstream \"hub\": password_env: the variable HUB_TOKEN is not set"],
    );
    refused(
        &one(r#", "username": "me", "password_env": "HUB_TOKEN""#),
        &[("HUB_TOKEN", "")],
        &["HUB_TOKEN is not set (or empty)"],
    );
    refused(
        &one(r#", "username": "", "password_env": "PW""#),
        &[("PW", "x")],
        &["username must not be empty"],
    );
    refused(
        &one(r#", "username": "me", "password_file": "/nonexistent/pw""#),
        &[],
        &["upstream \"hub\": password_file /nonexistent/pw: cannot read it"],
    );
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    refused(
        &one(&format!(
            r#", "username": "me", "password_file": "{}""#,
            empty.display()
        )),
        &[],
        &["password_file", "is empty"],
    );
}

#[test]
fn repository_patterns_and_max_bytes_are_checked() {
    for bad in ["", "Library/*", "library/?", "a b"] {
        refused(
            &one(&format!(r#", "repositories": ["library/*", "{bad}"]"#)),
            &[],
            &["upstream \"hub\": repositories:", "is not a pattern"],
        );
    }
    refused(
        &one(r#", "max_bytes": 0"#),
        &[],
        &["upstream \"hub\": max_bytes must be greater than 0"],
    );
    refused(
        &one(r#", "max_bytes": -1"#),
        &[],
        &["upstream \"hub\"", "max_bytes", "invalid value"],
    );
}

#[test]
fn the_allow_list_matches_whole_names_with_stars() {
    let config = parse(
        &one(r#", "repositories": ["library/*", "grafana/loki", "*/cache-*"]"#),
        &[],
    )
    .unwrap();
    let hub = &config.upstreams[0];
    for yes in [
        "library/alpine",
        "library/a/b",
        "grafana/loki",
        "x/cache-1",
        "a/b/cache-",
    ] {
        assert!(hub.allows(yes), "{yes}");
    }
    for no in [
        "alpine",
        "grafana/loki2",
        "grafana",
        "libraryx/alpine",
        "x/cache",
    ] {
        assert!(!hub.allows(no), "{no}");
    }
    let all = parse(&one(""), &[]).unwrap();
    assert!(all.upstreams[0].allows("anything/at/all"));
    assert!(glob_matches(b"a*b*c", b"aXbYbZc"));
    assert!(glob_matches(b"**", b""));
    assert!(!glob_matches(b"a*b", b"aXbY"));
}

#[test]
fn docker_hub_puts_official_images_under_library() {
    let hub = &parse(&one(""), &[]).unwrap().upstreams[0];
    assert!(hub.is_docker_hub());
    assert_eq!(hub.upstream_name("alpine"), "library/alpine");
    assert_eq!(hub.upstream_name("grafana/loki"), "grafana/loki");
    for (url, host, hub) in [
        ("https://index.docker.io", None, true),
        ("https://mirror.example.com:443", Some("docker.io"), true),
        ("https://ghcr.io", None, false),
        ("http://127.0.0.1:5000", Some("localhost:5000"), false),
    ] {
        let config = UpstreamConfig {
            name: "x".into(),
            url: url.into(),
            prefix: None,
            host: host.map(Into::into),
            fallback: true,
            credentials: None,
            tag_ttl: Duration::from_secs(1),
            repositories: Vec::new(),
            max_bytes: None,
        };
        assert_eq!(config.is_docker_hub(), hub, "{url}");
        let want = if hub { "library/alpine" } else { "alpine" };
        assert_eq!(config.upstream_name("alpine"), want, "{url}");
    }
}
