//! The rules file (`AUTH_RULES_FILE`) and its evaluation: input `<user>\n<project>\n<rules
//! JSON>`. A file that loads answers every question (a user, anonymous) in bounded time; the
//! rules of a user never depend on anything but the rules, the user and the project (asking
//! twice answers the same).
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_common::fuzzing::{Rules, Who};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let (Some(user), Some(project), Some(json)) = (parts.next(), parts.next(), parts.next()) else {
        let _ = Rules::from_json(text);
        return;
    };
    let Ok(rules) = Rules::from_json(json) else {
        return;
    };
    for who in [Who::User(user), Who::Anonymous] {
        let first = rules.allowed(who, project);
        assert_eq!(first, rules.allowed(who, project));
    }
});
