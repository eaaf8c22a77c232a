//! What the JSON configuration files (`UPSTREAMS_FILE`, `WEBHOOKS_FILE`) share: parsing with
//! the path of the field at fault, naming a list entry by its `name` (else its index), and the
//! repository patterns both filter on.

use serde::de::DeserializeOwned;

/// The file parsed, or the index of the list entry at fault (when the error is inside one) and
/// the message: the field's path, serde's reason, and the line and column.
pub(super) fn parse_json<T: DeserializeOwned>(text: &str) -> Result<T, (Option<usize>, String)> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let raw: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let index = e.path().iter().find_map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => Some(*index),
            _ => None,
        });
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." || inner.is_syntax() || inner.is_eof() {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        };
        (index, message)
    })?;
    deserializer.end().map_err(|e| (None, e.to_string()))?;
    Ok(raw)
}

/// How entry `index` of the list `list` is named in an error: `<noun> "<name>"` when the file
/// gives it a name, else `<list>[<index>]`.
pub(super) fn label(text: &str, list: &str, noun: &str, index: usize) -> String {
    let name = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| {
            v.get(list)?
                .get(index)?
                .get("name")?
                .as_str()
                .map(str::to_owned)
        })
        .filter(|name| !name.is_empty());
    match name {
        Some(name) => format!("{noun} {name:?}"),
        None => format!("{list}[{index}]"),
    }
}

/// `*` matches any run of characters (`/` included); everything else matches itself.
pub(crate) fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative wildcard matching: on a mismatch, retry from the last `*` one byte further.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Checks each entry of a `repositories` list; the message names the one at fault.
pub(super) fn check_repository_patterns(patterns: &[String]) -> Result<(), String> {
    for pattern in patterns {
        let valid = !pattern.is_empty()
            && pattern.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b'-' | b'/' | b'*')
            });
        if !valid {
            return Err(format!(
                "repositories: {pattern:?} is not a pattern of repository names (lowercase \
                 letters, digits, . _ - / and * for any run of characters)"
            ));
        }
    }
    Ok(())
}

/// Whether `name` matches one of `patterns`; an empty list admits every name.
pub(crate) fn any_pattern_matches(patterns: &[String], name: &str) -> bool {
    patterns.is_empty()
        || patterns
            .iter()
            .any(|pattern| glob_matches(pattern.as_bytes(), name.as_bytes()))
}
