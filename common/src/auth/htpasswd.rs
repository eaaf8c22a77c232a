//! htpasswd files with bcrypt hashes (`htpasswd -B`), the only kind accepted: the others that
//! htpasswd writes (`$apr1$` MD5, `{SHA}`, crypt) are fast to brute-force, so a file holding
//! one is refused at start-up with the line that has it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::cache::TtlCache;
use super::secret::Secret;

/// Why an htpasswd file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}")]
    Invalid {
        path: String,
        line: usize,
        reason: String,
    },
}

/// The bcrypt cost `AUTH_USER`'s password is hashed with at start-up (about 60 ms here;
/// verified passwords are then cached for `AUTH_CACHE_TTL_SECS`).
const AUTH_USER_COST: u32 = 10;

/// Users and their bcrypt hashes, and the recently verified passwords.
#[derive(Debug)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// A hash to check unknown users against, so that they take as long as known ones.
    decoy: Option<String>,
    verified: TtlCache<()>,
}

impl Htpasswd {
    /// Reads an htpasswd file. Verified passwords are remembered for `cache_ttl`.
    pub fn load(path: &Path, cache_ttl: Duration) -> Result<Htpasswd, HtpasswdError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
            path: shown.clone(),
            source,
        })?;
        Htpasswd::parse(&text, cache_ttl).map_err(|(line, reason)| HtpasswdError::Invalid {
            path: shown,
            line,
            reason,
        })
    }

    pub(crate) fn parse(text: &str, cache_ttl: Duration) -> Result<Htpasswd, (usize, String)> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let number = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err((number, "expected <user>:<bcrypt hash>".to_owned()));
            };
            if user.is_empty() {
                return Err((number, "empty user name".to_owned()));
            }
            if let Some(kind) = unsupported_kind(hash) {
                return Err((
                    number,
                    format!(
                        "user {user:?} has a {kind} hash; only bcrypt is accepted \
                         (create the entry with `htpasswd -B`)"
                    ),
                ));
            }
            if users.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err((number, format!("user {user:?} appears twice")));
            }
        }
        let decoy = users.values().next().cloned();
        Ok(Htpasswd {
            users,
            decoy,
            verified: TtlCache::new(cache_ttl),
        })
    }

    /// No users (`AUTH_USER` alone adds one).
    pub fn empty(cache_ttl: Duration) -> Htpasswd {
        Htpasswd {
            users: HashMap::new(),
            decoy: None,
            verified: TtlCache::new(cache_ttl),
        }
    }

    /// With one more user whose password is given in plain text (`AUTH_USER`): hashed here
    /// with bcrypt, so that it is checked like the file's users.
    pub fn with_user(mut self, user: &str, password: &Secret<String>) -> Result<Htpasswd, String> {
        if self.users.contains_key(user) {
            return Err(format!("user {user:?} is also in HTPASSWD_FILE"));
        }
        let hash = bcrypt::hash(password.expose(), AUTH_USER_COST)
            .map_err(|e| format!("hashing the password: {e}"))?;
        self.decoy.get_or_insert_with(|| hash.clone());
        self.users.insert(user.to_owned(), hash);
        Ok(self)
    }

    /// Whether `password` is `user`'s. An unknown user costs as much as a wrong password.
    pub async fn verify(self: &Arc<Self>, user: &str, password: &Secret<String>) -> bool {
        let key = self
            .verified
            .key(&[user.as_bytes(), password.expose().as_bytes()]);
        if self.verified.get(&key).is_some() {
            return true;
        }
        let (hash, known) = match self.users.get(user) {
            Some(hash) => (hash.clone(), true),
            None => match &self.decoy {
                Some(decoy) => (decoy.clone(), false),
                None => return false,
            },
        };
        let password = password.clone();
        let matched = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.expose(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let ok = matched && known;
        if ok {
            self.verified.insert(key, ());
        }
        ok
    }
}

/// The name of a hash kind other than bcrypt, or `None` for bcrypt.
fn unsupported_kind(hash: &str) -> Option<&'static str> {
    let bcrypt = ["$2a$", "$2b$", "$2x$", "$2y$"];
    if bcrypt.iter().any(|p| hash.starts_with(p)) {
        return None;
    }
    Some(if hash.starts_with("$apr1$") {
        "MD5 ($apr1$)"
    } else if hash.starts_with("{SHA}") {
        "SHA-1 ({SHA})"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "SHA-crypt"
    } else if hash.starts_with('$') {
        "non-bcrypt"
    } else {
        "crypt or plain-text"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &[(&str, &str)]) -> String {
        let mut text = String::from("# users\n\n");
        for (user, password) in entries {
            let hash = bcrypt::hash(password, 4).unwrap_or_default();
            text.push_str(&format!("{user}:{hash}\n"));
        }
        text
    }

    #[tokio::test]
    async fn verifies_bcrypt_and_nothing_else() {
        let text = file(&[("alice", "wonderland"), ("bob", "builder")]);
        let users = Arc::new(
            Htpasswd::parse(&text, Duration::from_secs(60))
                .unwrap_or_else(|(line, reason)| panic!("line {line}: {reason}")),
        );
        let secret = |s: &str| Secret::new(s.to_owned());
        assert!(users.verify("alice", &secret("wonderland")).await);
        assert!(users.verify("alice", &secret("wonderland")).await, "cached");
        assert!(!users.verify("alice", &secret("builder")).await);
        assert!(!users.verify("bob", &secret("wonderland")).await);
        // An unknown user is checked against another user's hash and still fails, even with
        // that user's password.
        assert!(!users.verify("mallory", &secret("wonderland")).await);
        assert!(!users.verify("", &secret("")).await);
    }

    #[test]
    fn other_hash_kinds_are_refused_with_their_line() {
        for (line, kind) in [
            ("carol:$apr1$xyz$abc", "MD5"),
            ("carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("carol:$6$salt$hash", "SHA-crypt"),
            ("carol:plaintext", "crypt or plain-text"),
        ] {
            let text = format!("{}{line}\n", file(&[("alice", "x")]));
            match Htpasswd::parse(&text, Duration::ZERO) {
                Err((number, reason)) => {
                    assert_eq!(number, 4, "{reason}");
                    assert!(
                        reason.contains(kind) && reason.contains("htpasswd -B"),
                        "{reason}"
                    );
                }
                Ok(_) => panic!("{line} accepted"),
            }
        }
        assert!(Htpasswd::parse("nocolon\n", Duration::ZERO).is_err());
        assert!(Htpasswd::parse(&format!("{0}{0}", file(&[("a", "x")])), Duration::ZERO).is_err());
    }
}
