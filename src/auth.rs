//! Authentication: Flight Handshake with Basic credentials returns a signed, expiring bearer
//! token (HS256 JWT) in the `authorization` response header — what pyarrow's
//! `authenticate_basic_token` and the ADBC/JDBC drivers expect. Every other Flight call must carry
//! `authorization: Bearer <token>`: such a JWT, or one of the static API tokens.
//!
//! Credentials and keys come from files (or env vars naming them), never from the source tree.
//! Without any credentials configured, Bridge is anonymous — allowed only on a loopback address
//! or with `--allow-anonymous`.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{
    alphabet::STANDARD,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::{metadata::MetadataMap, Status};

use crate::{
    config::Config,
    error::{Error, Result},
};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
}

/// Who may call, and how tokens are signed.
pub struct Auth {
    /// user → password (from `--basic-users-file`).
    users: HashMap<String, String>,
    /// Static bearer tokens (from `--api-tokens-file`).
    api_tokens: Vec<String>,
    /// Bearer tokens of operators on the admin port's status API (from `--admin-tokens-file`):
    /// they see every query's SQL. Not valid on the data ports.
    admin_tokens: Vec<String>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("users", &self.users.len()).field("api_tokens", &self.api_tokens.len()).finish()
    }
}

fn read_secret_file(what: &str, path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::invalid(format!("cannot read {what} {}: {e}", path.display())))
}

/// Compares without an early exit, so timing does not reveal how much of a secret matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Base64 of Basic credentials, padded or not: ADBC's Go driver sends them without the padding.
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn unauthenticated() -> Status {
    // One message for every failure: which part was wrong is not the caller's business.
    Status::unauthenticated("authentication required: Handshake with Basic credentials, then send the bearer token")
}

impl Auth {
    /// The configured authentication, None when Bridge runs anonymously (refused on a
    /// non-loopback address unless `--allow-anonymous`).
    pub fn from_config(config: &Config) -> Result<Option<Auth>> {
        let mut users = HashMap::new();
        if let Some(path) = &config.basic_users_file {
            for (n, line) in read_secret_file("the users file", path)?.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (user, password) = line.split_once(':').ok_or_else(|| {
                    Error::invalid(format!("{} line {}: expected user:password", path.display(), n + 1))
                })?;
                users.insert(user.to_string(), password.to_string());
            }
        }
        let tokens = |what: &str, path: &Option<std::path::PathBuf>| -> Result<Vec<String>> {
            let Some(path) = path else { return Ok(Vec::new()) };
            let text = read_secret_file(what, path)?;
            Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
        };
        let api_tokens = tokens("the API tokens file", &config.api_tokens_file)?;
        let admin_tokens = tokens("the admin tokens file", &config.admin_tokens_file)?;
        if users.is_empty() && api_tokens.is_empty() {
            if !config.allow_anonymous && !config.listen.ip().is_loopback() {
                return Err(Error::invalid(format!(
                    "refusing to serve {} without authentication: set --basic-users-file and/or --api-tokens-file, \
                     or pass --allow-anonymous",
                    config.listen
                )));
            }
            return Ok(None);
        }
        let secret = match &config.jwt_secret_file {
            Some(path) => read_secret_file("the JWT secret file", path)?.trim().as_bytes().to_vec(),
            // Tokens then last as long as this process: fine for one instance.
            None => (0..4).flat_map(|_| rand::random::<u64>().to_le_bytes()).collect(),
        };
        if secret.len() < 16 {
            return Err(Error::invalid("the JWT secret must be at least 16 bytes"));
        }
        Ok(Some(Auth {
            users,
            api_tokens,
            admin_tokens,
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            ttl: config.token_ttl,
        }))
    }

    /// Handshake: checks `authorization: Basic …` and returns the `Bearer …` header value.
    pub fn handshake(&self, md: &MetadataMap) -> std::result::Result<String, Status> {
        let header = md.get("authorization").and_then(|v| v.to_str().ok()).ok_or_else(unauthenticated)?;
        let encoded = header.strip_prefix("Basic ").ok_or_else(unauthenticated)?;
        let decoded = BASIC.decode(encoded.trim()).map_err(|_| unauthenticated())?;
        let text = String::from_utf8(decoded).map_err(|_| unauthenticated())?;
        let (user, password) = text.split_once(':').ok_or_else(unauthenticated)?;
        let known = self.users.get(user).is_some_and(|p| same(p.as_bytes(), password.as_bytes()));
        if !known {
            tracing::warn!(user, "handshake refused");
            return Err(unauthenticated());
        }
        let iat = now();
        let claims = Claims { sub: user.to_string(), iat, exp: iat + self.ttl.as_secs().max(1) };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Status::from(crate::error::Error::internal(format!("cannot sign a token: {e}"))))?;
        Ok(format!("Bearer {token}"))
    }

    /// Every other call: a valid bearer token (JWT or static API token), or UNAUTHENTICATED.
    /// Returns who called: the JWT's user, or `token-<hash>` for a static token.
    pub fn check(&self, md: &MetadataMap, peer: Option<SocketAddr>) -> std::result::Result<String, Status> {
        let Some(token) = bearer(md) else {
            return Err(unauthenticated());
        };
        if self.api_tokens.iter().any(|t| same(t.as_bytes(), token.as_bytes())) {
            return Ok(token_principal(token));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        match decode::<Claims>(token, &self.decoding, &validation) {
            Ok(data) => Ok(data.claims.sub),
            Err(e) => {
                tracing::info!(peer = ?peer, error = %e, "refused a bearer token");
                Err(unauthenticated())
            }
        }
    }
}

/// The bearer token of a request, if it sent one.
fn bearer(md: &MetadataMap) -> Option<&str> {
    md.get("authorization").and_then(|v| v.to_str().ok()).and_then(|h| h.strip_prefix("Bearer ")).map(str::trim)
}

/// The principal of a static token: `token-` and the first 8 hex digits of its SHA-256 (so logs
/// and the status page can tell tokens apart without showing them).
pub fn token_principal(token: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("token-{}", &hex::encode(Sha256::digest(token.as_bytes()))[..8])
}

impl Auth {
    /// Whether the request carries an admin token (`--admin-tokens-file`).
    pub fn is_admin(&self, md: &MetadataMap) -> bool {
        bearer(md).is_some_and(|token| self.admin_tokens.iter().any(|t| same(t.as_bytes(), token.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
    }

    #[test]
    fn basic_credentials_decode_with_or_without_padding() {
        // "analyst:s3cret-password" is 23 bytes: one `=` of padding, which ADBC leaves out.
        for encoded in ["YW5hbHlzdDpzM2NyZXQtcGFzc3dvcmQ=", "YW5hbHlzdDpzM2NyZXQtcGFzc3dvcmQ"] {
            assert_eq!(BASIC.decode(encoded).expect("decodes"), b"analyst:s3cret-password");
        }
        assert!(BASIC.decode("YW5h*").is_err());
    }
}
