//! Enrollment tokens: `Authorization: Bearer <token>` → the organisation the
//! token was issued to. Tokens are kept only as SHA-256 hashes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use crate::config::{Config, Organisation};
use crate::error::ApiError;

/// Lower-case hex SHA-256 of a token, as the configuration stores it.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, Clone)]
struct Entry {
    org: Arc<Organisation>,
    revoked: bool,
}

/// Every token of every organisation, by hash.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    by_hash: HashMap<String, Entry>,
}

impl Tokens {
    pub(crate) fn from_config(config: &Config) -> Self {
        let mut by_hash = HashMap::new();
        for org in &config.organisations {
            let shared = Arc::new(org.clone());
            for token in &org.tokens {
                by_hash.insert(
                    token.sha256.clone(),
                    Entry {
                        org: Arc::clone(&shared),
                        revoked: token.revoked,
                    },
                );
            }
        }
        Tokens { by_hash }
    }

    /// The organisation behind the request's bearer token.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Organisation>, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthenticated)?;
        let entry = self
            .by_hash
            .get(&token_hash(token))
            .ok_or(ApiError::UnknownToken)?;
        if entry.revoked {
            return Err(ApiError::RevokedToken);
        }
        Ok(Arc::clone(&entry.org))
    }
}

/// The token of an `Authorization` value with the `Bearer` scheme. The
/// scheme is matched without regard to case (RFC 7235 §2.1), and any run of
/// spaces may separate it from the token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn tokens() -> Tokens {
        let text = format!(
            "machine_id_key = \"0123456789abcdef0123456789abcdef\"\n[kafka]\nbrokers = \"x\"\n\
             [[organisation]]\nid = \"grid\"\nname = \"Grid\"\nconsent_cap = \"optional\"\n\
             [[organisation.token]]\nsha256 = \"{}\"\n\
             [[organisation.token]]\nsha256 = \"{}\"\nrevoked = true\n",
            token_hash("good-token"),
            token_hash("old-token"),
        );
        Tokens::from_config(&Config::from_toml(&text).expect("config"))
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    #[test]
    fn the_token_names_the_organisation() {
        let org = tokens()
            .authenticate(&headers("Bearer good-token"))
            .expect("known");
        assert_eq!(org.id, "grid");
    }

    #[test]
    fn missing_unknown_and_revoked_tokens_fail_differently() {
        let tokens = tokens();
        let code = |h: &HeaderMap| tokens.authenticate(h).expect_err("refused").code();
        assert_eq!(code(&HeaderMap::new()), "unauthenticated");
        assert_eq!(code(&headers("Basic Z29vZA==")), "unauthenticated");
        assert_eq!(code(&headers("Bearer nope")), "unknown_token");
        assert_eq!(code(&headers("Bearer old-token")), "revoked_token");
        assert_eq!(code(&headers("Bearer ")), "unauthenticated");
        assert_eq!(code(&headers("Bearergood-token")), "unauthenticated");
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        let tokens = tokens();
        for value in [
            "bearer good-token",
            "BEARER good-token",
            "bEaReR good-token",
            "Bearer   good-token",
        ] {
            let org = tokens.authenticate(&headers(value)).expect(value);
            assert_eq!(org.id, "grid", "{value}");
        }
    }
}
