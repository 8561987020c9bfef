//! Who may use the dashboard: a token or a password hash, browser sessions with CSRF tokens,
//! bearer tokens for programs.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use base64::Engine as _;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::DashboardError;

/// A secret (the dashboard's token, a password): never shown by `Debug` or `Display`, never
/// logged, never rendered.
///
/// ```
/// use cutover_dashboard::Secret;
/// let token = Secret::new("a-long-random-token-from-your-vault");
/// assert_eq!(format!("{token:?}"), "Secret(..)");
/// assert_eq!(token.expose(), "a-long-random-token-from-your-vault");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// A random token: 32 bytes from the operating system's generator, URL-safe base64
    /// (43 characters).
    pub fn generate() -> Result<Self, DashboardError> {
        Ok(Secret(random_token()?))
    }

    /// The secret itself, to hand to the person who needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// 32 random bytes as URL-safe base64 without padding.
pub(crate) fn random_token() -> Result<String, DashboardError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| DashboardError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Hashes a password for [`DashboardBuilder::password_hash`](crate::DashboardBuilder::password_hash):
/// Argon2id with a random salt, as a PHC string (`$argon2id$v=19$...`).
///
/// ```
/// let hash = cutover_dashboard::hash_password("correct horse battery staple")?;
/// assert!(hash.starts_with("$argon2id$"));
/// # Ok::<(), cutover_dashboard::DashboardError>(())
/// ```
pub fn hash_password(password: &str) -> Result<String, DashboardError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| DashboardError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| DashboardError::Random(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| DashboardError::PasswordHash(e.to_string()))
}

/// How people and programs prove they may use the dashboard.
#[derive(Clone)]
pub(crate) enum Credentials {
    /// A shared token: the login form's password and the API's bearer token.
    Token(Secret),
    /// An Argon2 (PHC string) hash of a password.
    PasswordHash(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Token(..)"),
            Credentials::PasswordHash(_) => f.write_str("PasswordHash(..)"),
        }
    }
}

impl Credentials {
    /// Checks a credential: in constant time for the token (both sides hashed first, so not
    /// even the length leaks), by Argon2 for the password hash.
    pub(crate) fn accepts(&self, given: &str) -> bool {
        match self {
            Credentials::Token(token) => {
                let expected = Sha256::digest(token.expose().as_bytes());
                let given = Sha256::digest(given.as_bytes());
                bool::from(expected.as_slice().ct_eq(given.as_slice()))
            }
            Credentials::PasswordHash(phc) => PasswordHash::new(phc).is_ok_and(|hash| {
                argon2::Argon2::default()
                    .verify_password(given.as_bytes(), &hash)
                    .is_ok()
            }),
        }
    }
}

/// The name of the session cookie.
pub(crate) const COOKIE_NAME: &str = "cutover_session";
/// How long a browser session lasts.
pub(crate) const SESSION_TTL: Duration = Duration::from_hours(12);
/// At most this many live sessions; the oldest goes when a new one would pass it.
const MAX_SESSIONS: usize = 10_000;

/// A signed-in browser.
#[derive(Clone)]
pub(crate) struct Session {
    /// Who signed in: recorded as the `by` of every command sent.
    pub(crate) who: String,
    /// The token every form post must carry.
    pub(crate) csrf: String,
    expires: Instant,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

/// Browser sessions by the SHA-256 of their cookie (the store never holds a usable cookie).
#[derive(Default)]
pub(crate) struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("live", &self.by_hash.lock().len())
            .finish()
    }
}

fn key(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

impl Sessions {
    /// Starts a session for `who`; returns its cookie value.
    pub(crate) fn start(&self, who: String) -> Result<(String, Session), DashboardError> {
        let cookie = random_token()?;
        let session = Session {
            who,
            csrf: random_token()?,
            expires: Instant::now() + SESSION_TTL,
        };
        let mut map = self.by_hash.lock();
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(key(&cookie), session.clone());
        Ok((cookie, session))
    }

    /// The live session of a cookie.
    pub(crate) fn get(&self, cookie: &str) -> Option<Session> {
        let mut map = self.by_hash.lock();
        let k = key(cookie);
        match map.get(&k) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub(crate) fn end(&self, cookie: &str) {
        self.by_hash.lock().remove(&key(cookie));
    }
}

/// Who is asking, and how they proved it.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// A browser with a session cookie; form posts must carry its CSRF token.
    Session(Session),
    /// A program with the bearer token; it names who it acts for in each command.
    Bearer,
}

/// The session cookie's value, if the request has one.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_owned())
}

/// Identifies the caller from a bearer token or a session cookie.
pub(crate) fn caller(
    headers: &HeaderMap,
    credentials: &Credentials,
    sessions: &Sessions,
) -> Option<Caller> {
    if let Some(auth) = headers.get(AUTHORIZATION) {
        // A request that offers a token is judged by it alone.
        let token = auth.to_str().ok()?.strip_prefix("Bearer ")?.trim();
        return credentials.accepts(token).then_some(Caller::Bearer);
    }
    let cookie = session_cookie(headers)?;
    let session = sessions.get(&cookie)?;
    Some(Caller::Session(session))
}

/// Whether a form's CSRF token is the session's, in constant time.
pub(crate) fn csrf_ok(session: &Session, given: &str) -> bool {
    let expected = Sha256::digest(session.csrf.as_bytes());
    let given = Sha256::digest(given.as_bytes());
    bool::from(expected.as_slice().ct_eq(given.as_slice()))
}

/// Whether a browser's request comes from the dashboard's own pages: its `Origin` (or, when a
/// browser sends none, its `Referer`) names the host it was sent to. A request with neither
/// is let through (programs and old browsers); the CSRF token still has to match.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let from = headers
        .get(axum::http::header::ORIGIN)
        .or_else(|| headers.get(axum::http::header::REFERER))
        .and_then(|v| v.to_str().ok());
    match from {
        None => true,
        Some(url) => {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            rest.is_some_and(|rest| rest.split('/').next() == Some(host))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        let c = Credentials::Token(Secret::new("s3cret-token-0123456789"));
        assert!(c.accepts("s3cret-token-0123456789"));
        assert!(!c.accepts("s3cret-token-012345678"));
        assert!(!c.accepts("s3cret-token-01234567890"));
        assert!(!c.accepts(""));
    }

    #[test]
    fn password_hashes_verify() {
        let hash = hash_password("hunter2hunter2").unwrap();
        let c = Credentials::PasswordHash(hash);
        assert!(c.accepts("hunter2hunter2"));
        assert!(!c.accepts("hunter2"));
        assert!(!Credentials::PasswordHash("not a hash".into()).accepts("x"));
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = Credentials::Token(Secret::new("visible?"));
        assert!(!format!("{c:?}").contains("visible"));
        let sessions = Sessions::default();
        let (cookie, session) = sessions.start("alice".into()).unwrap();
        assert!(!format!("{session:?}").contains(&session.csrf));
        assert!(!format!("{sessions:?}").contains(&cookie));
    }

    #[test]
    fn sessions_start_and_end() {
        let sessions = Sessions::default();
        let (cookie, session) = sessions.start("alice".into()).unwrap();
        assert_eq!(sessions.get(&cookie).unwrap().who, "alice");
        assert!(csrf_ok(&session, &session.csrf));
        assert!(!csrf_ok(&session, "forged"));
        assert!(sessions.get("another").is_none());
        sessions.end(&cookie);
        assert!(sessions.get(&cookie).is_none());
    }

    #[test]
    fn origins_must_match_the_host() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080.evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("referer", "http://evil.example/127.0.0.1:8080")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("referer", "http://127.0.0.1:8080/rollouts")
        ])));
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(!same_origin(&headers(&[(
            "origin",
            "http://127.0.0.1:8080"
        )])));
    }
}
