//! `NATS_*`, `EVENTS_*` and `WEBHOOKS_FILE`: the defaults, the formats, and every error
//! naming the variable, the file, the endpoint and the field.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::{
    DEFAULT_WEBHOOK_TIMEOUT_SECS, JobsBinaryConfig, ServiceConfig, parse_webhooks,
};
use crate::events::Action;

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs.iter().copied().collect()
}

#[track_caller]
fn refused(pairs: &[(&str, &str)], needles: &[&str]) {
    match EventsConfig::from_vars(&vars(pairs)) {
        Err(e) => {
            let e = e.to_string();
            for needle in needles {
                assert!(e.contains(needle), "{pairs:?}: {e:?} lacks {needle:?}");
            }
        }
        Ok(config) => panic!("{pairs:?} accepted: {config:?}"),
    }
}

const FILE: &str = "/etc/hooks.json";

fn hooks(text: &str, pairs: &[(&str, &str)]) -> Result<Vec<Arc<WebhookEndpoint>>, String> {
    parse_webhooks(Path::new(FILE), text, &vars(pairs), false).map_err(|e| e.to_string())
}

#[track_caller]
fn hooks_refused(text: &str, needles: &[&str]) {
    match hooks(text, &[]) {
        Err(e) => {
            assert!(e.contains(FILE), "{e}");
            for needle in needles {
                assert!(e.contains(needle), "{text}: {e:?} lacks {needle:?}");
            }
        }
        Ok(endpoints) => panic!("{text} accepted: {endpoints:?}"),
    }
}

#[test]
fn nothing_set_is_disabled_with_the_documented_defaults() {
    let config = EventsConfig::from_vars(&Vars::default()).unwrap();
    assert!(!config.enabled());
    assert!(config.nats.is_none());
    assert!(config.webhooks.is_empty());
    assert_eq!(config.max_attempts, 12);
    assert_eq!(config.retry_base, Duration::from_secs(2));
    assert_eq!(config.retry_max, Duration::from_secs(900));
    assert_eq!(config.retention, Duration::from_secs(86_400));
    assert_eq!(config.dead_retention, Duration::from_secs(30 * 86_400));
    assert!(!config.pulls);
    let other = EventsConfig::from_vars(&Vars::default()).unwrap();
    assert_ne!(config.source_instance, other.source_instance);
    assert!(uuid::Uuid::parse_str(&config.source_instance).is_ok());
    // Terraform passes optional variables as empty strings.
    let empty = EventsConfig::from_vars(&vars(&[
        ("NATS_URL", ""),
        ("NATS_TOKEN", ""),
        ("WEBHOOKS_FILE", ""),
    ]))
    .unwrap();
    assert!(!empty.enabled());
}

#[test]
fn nats_settings_parse() {
    let config = EventsConfig::from_vars(&vars(&[("NATS_URL", "nats://127.0.0.1:4222")])).unwrap();
    assert!(config.enabled());
    let nats = config.nats.unwrap();
    assert_eq!(nats.url, "nats://127.0.0.1:4222");
    assert_eq!(nats.subject_prefix, "registry");
    assert_eq!(nats.jetstream, JetStreamMode::Auto);
    assert!(matches!(nats.credentials, NatsCredentials::None));

    let config = EventsConfig::from_vars(&vars(&[
        ("NATS_URL", "nats://a:4222, tls://b:4443,c"),
        ("NATS_SUBJECT_PREFIX", "acme.registry"),
        ("NATS_JETSTREAM", "true"),
        ("NATS_USER", "registry"),
        ("NATS_PASSWORD", "hunter2"),
    ]))
    .unwrap();
    let nats = config.nats.unwrap();
    assert_eq!(nats.subject_prefix, "acme.registry");
    assert_eq!(nats.jetstream, JetStreamMode::Required);
    match &nats.credentials {
        NatsCredentials::UserPassword { user, password } => {
            assert_eq!(user, "registry");
            assert_eq!(password.expose(), "hunter2");
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{nats:?}").contains("hunter2"));

    let config = EventsConfig::from_vars(&vars(&[
        ("NATS_URL", "nats://a:4222"),
        ("NATS_JETSTREAM", "false"),
        ("NATS_TOKEN", "s3cret"),
    ]))
    .unwrap();
    let nats = config.nats.unwrap();
    assert_eq!(nats.jetstream, JetStreamMode::Off);
    assert!(matches!(&nats.credentials, NatsCredentials::Token(t) if t.expose() == "s3cret"));
}

#[test]
fn a_creds_file_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("registry.creds");
    std::fs::write(
        &good,
        "-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\nSUAM\n------END USER NKEY SEED------\n",
    )
    .unwrap();
    let config = EventsConfig::from_vars(&vars(&[
        ("NATS_URL", "nats://a:4222"),
        ("NATS_CREDS_FILE", good.to_str().unwrap()),
    ]))
    .unwrap();
    assert!(matches!(
        config.nats.unwrap().credentials,
        NatsCredentials::CredsFile { .. }
    ));
    let bad = dir.path().join("bad.creds");
    std::fs::write(&bad, "not credentials").unwrap();
    refused(
        &[
            ("NATS_URL", "nats://a:4222"),
            ("NATS_CREDS_FILE", bad.to_str().unwrap()),
        ],
        &[
            "NATS_CREDS_FILE",
            "bad.creds",
            "not a NATS credentials file",
        ],
    );
    refused(
        &[
            ("NATS_URL", "nats://a:4222"),
            ("NATS_CREDS_FILE", "/nonexistent/x.creds"),
        ],
        &["NATS_CREDS_FILE /nonexistent/x.creds: cannot read it"],
    );
}

#[test]
fn bad_nats_settings_name_the_variable() {
    let url = ("NATS_URL", "nats://a:4222");
    refused(&[("NATS_URL", "http://a:4222")], &["NATS_URL", "nats://"]);
    refused(
        &[("NATS_URL", "nats://a:4222,,nats://b")],
        &["NATS_URL", "empty"],
    );
    refused(
        &[("NATS_URL", "nats://user:pw@a:4222")],
        &["NATS_URL", "credentials", "***@a:4222"],
    );
    match EventsConfig::from_vars(&vars(&[("NATS_URL", "nats://user:pw@a:4222")])) {
        Err(e) => assert!(!e.to_string().contains("pw"), "{e}"),
        Ok(_) => panic!("accepted"),
    }
    refused(
        &[url, ("NATS_SUBJECT_PREFIX", "a..b")],
        &["NATS_SUBJECT_PREFIX"],
    );
    refused(
        &[url, ("NATS_SUBJECT_PREFIX", "a.>")],
        &["NATS_SUBJECT_PREFIX"],
    );
    refused(
        &[url, ("NATS_SUBJECT_PREFIX", "a b")],
        &["NATS_SUBJECT_PREFIX"],
    );
    refused(
        &[url, ("NATS_JETSTREAM", "yes")],
        &["NATS_JETSTREAM=\"yes\""],
    );
    refused(
        &[url, ("NATS_USER", "u")],
        &["NATS_USER needs NATS_PASSWORD"],
    );
    refused(
        &[url, ("NATS_PASSWORD", "p")],
        &["NATS_PASSWORD needs NATS_USER"],
    );
    refused(
        &[
            url,
            ("NATS_TOKEN", "t"),
            ("NATS_USER", "u"),
            ("NATS_PASSWORD", "p"),
        ],
        &["only one of"],
    );
    refused(
        &[("NATS_TOKEN", "t")],
        &["NATS_TOKEN is set but NATS_URL is not"],
    );
}

#[test]
fn bad_delivery_settings_name_the_variable() {
    refused(&[("EVENTS_MAX_ATTEMPTS", "0")], &["EVENTS_MAX_ATTEMPTS"]);
    refused(
        &[("EVENTS_MAX_ATTEMPTS", "many")],
        &["EVENTS_MAX_ATTEMPTS", "many"],
    );
    refused(
        &[("EVENTS_RETRY_BASE_SECS", "0")],
        &["EVENTS_RETRY_BASE_SECS"],
    );
    refused(
        &[
            ("EVENTS_RETRY_BASE_SECS", "60"),
            ("EVENTS_RETRY_MAX_SECS", "30"),
        ],
        &["EVENTS_RETRY_MAX_SECS (30)", "EVENTS_RETRY_BASE_SECS (60)"],
    );
    refused(&[("EVENTS_PULLS", "sometimes")], &["EVENTS_PULLS"]);
    let config = EventsConfig::from_vars(&vars(&[
        ("EVENTS_MAX_ATTEMPTS", "3"),
        ("EVENTS_RETRY_BASE_SECS", "1"),
        ("EVENTS_RETRY_MAX_SECS", "1"),
        ("EVENTS_RETENTION_SECS", "0"),
        ("EVENTS_DEAD_RETENTION_SECS", "60"),
        ("EVENTS_PULLS", "true"),
    ]))
    .unwrap();
    assert_eq!(config.max_attempts, 3);
    assert_eq!(config.retry_max, Duration::from_secs(1));
    assert_eq!(config.retention, Duration::ZERO);
    assert_eq!(config.dead_retention, Duration::from_secs(60));
    assert!(config.pulls);
}

#[test]
fn the_documented_webhooks_file_parses() {
    let text = r#"{"endpoints": [
        {"name": "ci", "url": "https://ci.example.com/hooks/registry",
         "headers": {"Authorization": "Bearer abc"}, "secret_env": "CI_HOOK_SECRET",
         "actions": ["push"], "repositories": ["team-a/*"], "timeout_secs": 10},
        {"name": "audit", "url": "http://audit.internal:8080/"}
    ]}"#;
    let endpoints = hooks(text, &[("CI_HOOK_SECRET", "shh")]).unwrap();
    let ci = &endpoints[0];
    assert_eq!(ci.name, "ci");
    assert_eq!(ci.url, "https://ci.example.com/hooks/registry");
    assert_eq!(
        ci.headers,
        vec![("Authorization".to_owned(), "Bearer abc".to_owned())]
    );
    assert_eq!(ci.secret.as_ref().unwrap().expose(), "shh");
    assert_eq!(ci.actions, vec![Action::Push]);
    assert_eq!(ci.timeout, Duration::from_secs(10));
    let shown = format!("{ci:?}");
    assert!(!shown.contains("abc") && !shown.contains("shh"), "{shown}");
    assert!(ci.wants(Action::Push, "team-a/app"));
    assert!(ci.wants(Action::Push, "team-a/deep/app"));
    assert!(!ci.wants(Action::Delete, "team-a/app"));
    assert!(!ci.wants(Action::Push, "team-b/app"));
    let audit = &endpoints[1];
    assert!(audit.secret.is_none() && audit.headers.is_empty());
    assert_eq!(
        audit.timeout,
        Duration::from_secs(DEFAULT_WEBHOOK_TIMEOUT_SECS)
    );
    for action in [Action::Push, Action::Delete, Action::Mount] {
        assert!(audit.wants(action, "anything/at/all"));
    }
}

#[test]
fn bad_webhooks_name_the_file_endpoint_and_field() {
    hooks_refused("{", &["EOF"]);
    hooks_refused(r#"{"hooks": []}"#, &["unknown field `hooks`"]);
    hooks_refused(
        r#"{"endpoints": [{"url": "http://a/"}]}"#,
        &["endpoints[0]", "name"],
    );
    hooks_refused(
        r#"{"endpoints": [{"name": "ci", "url": "http://a/", "colour": 1}]}"#,
        &["endpoint \"ci\"", "colour"],
    );
    hooks_refused(
        r#"{"endpoints": [{"name": "ci", "url": "ftp://a/"}]}"#,
        &["endpoint \"ci\"", "url \"ftp://a/\"", "http"],
    );
    hooks_refused(
        r#"{"endpoints": [{"name": "ci", "url": "http://u:p@a/"}]}"#,
        &["endpoint \"ci\"", "credentials"],
    );
    hooks_refused(
        r#"{"endpoints": [{"name": "c i", "url": "http://a/"}]}"#,
        &["name \"c i\""],
    );
    hooks_refused(
        r#"{"endpoints": [{"name": "ci", "url": "http://a/", "actions": ["build"]}]}"#,
        &["endpoint \"ci\"", "actions", "build"],
    );
    hooks_refused(
        r#"{"endpoints": [{"name": "ci", "url": "http://a/", "actions": ["pull"]}]}"#,
        &["endpoint \"ci\"", "EVENTS_PULLS"],
    );
    hooks_refused(
        r#"{"endpoints": [{"name": "ci", "url": "http://a/", "secret_env": "NOPE"}]}"#,
        &["endpoint \"ci\"", "secret_env", "NOPE"],
    );
    hooks_refused(
        r#"{"endpoints": [{"name": "ci", "url": "http://a/", "headers": {"Content-Type": "x"}}]}"#,
        &["endpoint \"ci\"", "Content-Type"],
    );
    hooks_refused(
        r#"{"endpoints": [{"name": "ci", "url": "http://a/", "headers": {"Bad Name": "x"}}]}"#,
        &["\"Bad Name\" is not a header name"],
    );
    hooks_refused(
        r#"{"endpoints": [{"name": "ci", "url": "http://a/", "headers": {"X-T": "a\nb"}}]}"#,
        &["value of \"X-T\""],
    );
    hooks_refused(
        r#"{"endpoints": [{"name": "ci", "url": "http://a/", "repositories": ["Team/*"]}]}"#,
        &["repositories", "Team/*"],
    );
    hooks_refused(
        r#"{"endpoints": [{"name": "ci", "url": "http://a/", "timeout_secs": 0}]}"#,
        &["timeout_secs 0"],
    );
    hooks_refused(
        r#"{"endpoints": [{"name": "ci", "url": "http://a/"}, {"name": "ci", "url": "http://b/"}]}"#,
        &["endpoint \"ci\"", "another endpoint has this name"],
    );
}

/// Found by the `webhooks` fuzz target: `http:/a` is a URL the client reads as `http://a/`;
/// the endpoint holds the URL as it is used.
#[test]
fn a_webhook_url_is_kept_as_the_client_reads_it() {
    let text = r#"{"endpoints": [{"name": "a", "url": "http:/point/a"}, {"name": "b", "url": "HTTPS://Example.COM"}]}"#;
    let endpoints = hooks(text, &[]).unwrap();
    assert_eq!(endpoints[0].url, "http://point/a");
    assert_eq!(endpoints[1].url, "https://example.com/");
}

#[test]
fn pull_actions_are_allowed_when_pulls_are_recorded() {
    let text = r#"{"endpoints": [{"name": "ci", "url": "http://a/", "actions": ["pull"]}]}"#;
    let endpoints = parse_webhooks(Path::new(FILE), text, &Vars::default(), true).unwrap();
    assert!(endpoints[0].wants(Action::Pull, "x"));
}

#[test]
fn the_file_is_read_and_wired_into_the_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hooks.json");
    std::fs::write(
        &path,
        r#"{"endpoints": [{"name": "ci", "url": "http://a/"}]}"#,
    )
    .unwrap();
    let pairs = [
        ("WEBHOOKS_FILE", path.to_str().unwrap()),
        ("NATS_URL", "nats://127.0.0.1:4222"),
    ];
    let service = ServiceConfig::from_vars(&vars(&pairs)).unwrap();
    assert!(service.events.enabled());
    assert_eq!(service.events.webhooks[0].name, "ci");
    let jobs = JobsBinaryConfig::from_vars(&vars(&pairs)).unwrap();
    assert!(jobs.events.nats.is_some());
    match ServiceConfig::from_vars(&vars(&[("WEBHOOKS_FILE", "/nonexistent/hooks.json")])) {
        Err(e) => assert!(
            e.to_string()
                .contains("WEBHOOKS_FILE /nonexistent/hooks.json: cannot read it"),
            "{e}"
        ),
        Ok(_) => panic!("a missing file was accepted"),
    }
}
