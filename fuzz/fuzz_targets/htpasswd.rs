//! htpasswd files (`AUTH_HTPASSWD_FILE`): a file that loads has, on every line that is not
//! blank or a comment, a non-empty user, a bcrypt hash and no user twice; a refusal names a
//! line of the file.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use registry_common::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match fuzzing::htpasswd(text) {
        Ok(()) => {
            let mut users = HashSet::new();
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (user, hash) = line.split_once(':').expect("a loaded line has a ':'");
                assert!(!user.is_empty());
                assert!(
                    ["$2a$", "$2b$", "$2x$", "$2y$"]
                        .iter()
                        .any(|p| hash.starts_with(p))
                );
                assert!(users.insert(user), "user {user:?} twice");
            }
        }
        Err((line, reason)) => {
            assert!(
                line >= 1 && line <= text.lines().count(),
                "line {line}: {reason}"
            );
        }
    }
});
