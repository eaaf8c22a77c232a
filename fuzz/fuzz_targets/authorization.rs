//! The `Authorization` header, Basic and Bearer. Basic credentials that are read encode back
//! to the header they came from (the same user and password); a bearer token is the header's
//! rest; one header never reads as none, and two headers are refused.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderValue};
use libfuzzer_sys::fuzz_target;
use registry_common::auth::Credentials;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value.clone());
    let credentials = Credentials::from_headers(&headers);
    match &credentials {
        Credentials::None => panic!("a header read as none"),
        Credentials::Malformed => {}
        Credentials::Basic {
            user,
            password,
            header,
        } => {
            assert!(!user.is_empty() && !user.contains(':'));
            assert_eq!(header.expose().as_bytes(), data);
            // The same pair, encoded as a client does, reads the same.
            let encoded = format!(
                "Basic {}",
                STANDARD.encode(format!("{user}:{}", password.expose()))
            );
            let mut again = HeaderMap::new();
            again.insert(
                AUTHORIZATION,
                HeaderValue::from_str(&encoded).expect("base64 is a header value"),
            );
            match Credentials::from_headers(&again) {
                Credentials::Basic {
                    user: u,
                    password: p,
                    ..
                } => {
                    assert_eq!(&u, user);
                    assert_eq!(p.expose(), password.expose());
                }
                other => panic!("re-encoded Basic read as {other:?}"),
            }
        }
        Credentials::Bearer(token) => {
            let text = value.to_str().expect("a bearer header is text");
            assert!(!token.expose().is_empty());
            assert!(text.trim_end().ends_with(token.expose().as_str()));
        }
    }
    headers.append(AUTHORIZATION, value);
    assert_eq!(Credentials::from_headers(&headers), Credentials::Malformed);
});
