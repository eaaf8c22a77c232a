//! Who a request comes from: credentials read from the `Authorization` header, and what they
//! were found to be.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::secret::Secret;
use super::token::VerifiedToken;

/// Credentials as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No `Authorization` header.
    None,
    Basic {
        user: String,
        password: Secret<String>,
        /// The header as received (forwarded to a permission service).
        header: Secret<String>,
    },
    Bearer(Secret<String>),
    /// A header that is neither well-formed Basic nor Bearer.
    Malformed,
}

impl Credentials {
    /// Reads the `Authorization` header.
    pub fn from_headers(headers: &HeaderMap) -> Credentials {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return if headers.contains_key(AUTHORIZATION) {
                Credentials::Malformed
            } else {
                Credentials::None
            };
        };
        let Ok(value) = value.to_str() else {
            return Credentials::Malformed;
        };
        Credentials::parse(value)
    }

    fn parse(value: &str) -> Credentials {
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD
                .decode(rest)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((user, password)) if !user.is_empty() => Credentials::Basic {
                    user: user.to_owned(),
                    password: Secret::new(password.to_owned()),
                    header: Secret::new(value.to_owned()),
                },
                _ => Credentials::Malformed,
            }
        } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            Credentials::Bearer(Secret::new(rest.to_owned()))
        } else {
            Credentials::Malformed
        }
    }
}

/// What the credentials of a request turned out to be.
#[derive(Debug, Clone)]
pub enum Principal {
    /// `AUTH_MODE=none`: anyone may do anything.
    Anyone,
    /// No credentials.
    Anonymous,
    /// A user whose password checked out (`basic`).
    User(String),
    /// A verified bearer token (`token`).
    Token(VerifiedToken),
    /// Well-formed Basic credentials, to be checked by the permission service (`delegated`).
    Delegated {
        user: String,
        header: Secret<String>,
    },
    /// Credentials that were sent but did not check out.
    Rejected,
}

impl Principal {
    /// The user name, when there is one.
    pub fn user(&self) -> Option<&str> {
        match self {
            Principal::User(user) | Principal::Delegated { user, .. } => Some(user),
            Principal::Token(token) if !token.subject.is_empty() => Some(&token.subject),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> String {
        format!("Basic {}", STANDARD.encode(raw))
    }

    #[test]
    fn reads_basic_and_bearer() {
        match Credentials::parse(&basic("alice:pa:ss")) {
            Credentials::Basic {
                user,
                password,
                header,
            } => {
                assert_eq!(user, "alice");
                assert_eq!(password.expose(), "pa:ss");
                assert_eq!(header.expose(), &basic("alice:pa:ss"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Credentials::parse(&basic("alice:")),
            Credentials::Basic { .. }
        ));
        assert_eq!(Credentials::parse(&basic(":x")), Credentials::Malformed);
        assert_eq!(
            Credentials::parse(&basic("nocolon")),
            Credentials::Malformed
        );
        assert_eq!(Credentials::parse("Basic !!!"), Credentials::Malformed);
        assert_eq!(
            Credentials::parse("bearer abc.def.ghi"),
            Credentials::Bearer(Secret::new("abc.def.ghi".to_owned()))
        );
        assert_eq!(Credentials::parse("Bearer "), Credentials::Malformed);
        assert_eq!(Credentials::parse("Digest x"), Credentials::Malformed);
        let mut headers = HeaderMap::new();
        assert_eq!(Credentials::from_headers(&headers), Credentials::None);
        headers.append(AUTHORIZATION, basic("a:b").parse().expect("header"));
        headers.append(AUTHORIZATION, basic("c:d").parse().expect("header"));
        assert_eq!(Credentials::from_headers(&headers), Credentials::Malformed);
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!("{:?}", Credentials::parse(&basic("alice:hunter2")));
        assert!(!shown.contains("hunter2") && !shown.contains(&STANDARD.encode("alice:hunter2")));
    }
}
