//! Request paths (`/v2/<name>/<endpoint>`) through the route rewrite every service applies
//! before its router, and the token endpoint's `scope` parameters. A rewritten path names a
//! prefix of the path as the repository and maps to an internal path of the endpoint found;
//! the external path rebuilt from the name and the parameter recognizes the same endpoint; a
//! scope that parses keeps its parts non-empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_common::auth::Scope;
use registry_common::http::{INTERNAL_PREFIX, RegistryRoute};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match RegistryRoute::rewrite(text) {
        RegistryRoute::Repository {
            name,
            endpoint,
            internal,
        } => {
            assert!(
                text.starts_with(&format!("/v2/{name}/")),
                "{text:?} {name:?}"
            );
            assert!(endpoint.in_repository());
            assert!(internal.starts_with(INTERNAL_PREFIX), "{internal}");
            assert!(!text.starts_with(INTERNAL_PREFIX));
        }
        RegistryRoute::NotFound => {
            assert!(text.starts_with(INTERNAL_PREFIX) || text.starts_with("/v2/"));
        }
        RegistryRoute::Unchanged => assert!(!text.starts_with(INTERNAL_PREFIX)),
    }
    if let Ok(scopes) = Scope::parse_all(text.split('&')) {
        for scope in scopes {
            assert!(!scope.kind.is_empty() && !scope.name.is_empty());
            assert!(scope.actions.iter().all(|a| !a.is_empty()));
            let _ = scope.requested();
        }
    }
});
