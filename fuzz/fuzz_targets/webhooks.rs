//! The webhooks file (`WEBHOOKS_FILE`, `parse_webhooks`): input `<action> <repository>\n<file
//! JSON>`. A file that loads has unique, well-formed names, `http(s)` URLs, timeouts within
//! 1–300 s and a secret exactly when `secret_env` named one; an endpoint without filters
//! wants every event, and one wants an event only if its actions list it (or is empty).
#![no_main]

use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use registry_common::config::{Vars, parse_webhooks};
use registry_common::events::Action;

fn vars() -> &'static Vars {
    static VARS: OnceLock<Vars> = OnceLock::new();
    VARS.get_or_init(|| [("CI_HOOK_SECRET", "fuzz-secret")].into_iter().collect())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (event, file) = text.split_once('\n').unwrap_or(("push team/app", text));
    let (action, repository) = event.split_once(' ').unwrap_or((event, "team/app"));
    let action = Action::parse(action).unwrap_or(Action::Push);
    for pulls in [false, true] {
        let Ok(endpoints) = parse_webhooks(Path::new("webhooks.json"), file, vars(), pulls) else {
            continue;
        };
        let mut names = HashSet::new();
        for endpoint in &endpoints {
            assert!(
                names.insert(endpoint.name.clone()),
                "{} twice",
                endpoint.name
            );
            assert!(
                !endpoint.name.is_empty()
                    && endpoint.name.len() <= 64
                    && endpoint
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "{:?}",
                endpoint.name
            );
            assert!(
                endpoint.url.starts_with("http://") || endpoint.url.starts_with("https://"),
                "{}",
                endpoint.url
            );
            assert!(
                (Duration::from_secs(1)..=Duration::from_secs(300)).contains(&endpoint.timeout),
                "{:?}",
                endpoint.timeout
            );
            if !pulls {
                assert!(!endpoint.actions.contains(&Action::Pull));
            }
            if endpoint.actions.is_empty() && endpoint.repositories.is_empty() {
                assert!(endpoint.wants(action, repository));
            }
            if endpoint.wants(action, repository) {
                assert!(endpoint.actions.is_empty() || endpoint.actions.contains(&action));
            }
        }
    }
});
