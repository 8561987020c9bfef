//! The admin API token: sent in a header, never shown.

use std::fmt;

use reqwest::header::HeaderValue;

/// An Unleash admin API token (`*:*.<secret>`) or personal access token (`user:<secret>`).
///
/// It goes into the `Authorization` header of each request, marked sensitive; `Debug` shows
/// `<redacted>`, and no error or log line ever carries it.
///
/// ```
/// use cutover_unleash::AdminToken;
/// let token = AdminToken::new("*:*.s3cr3t");
/// assert_eq!(format!("{token:?}"), "AdminToken(<redacted>)");
/// ```
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// A token from its text.
    pub fn new(token: impl Into<String>) -> Self {
        AdminToken(token.into())
    }

    /// The token from environment variable `var`, or `None` when it is unset or empty.
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var)
            .ok()
            .filter(|t| !t.is_empty())
            .map(AdminToken)
    }

    /// The header value, marked sensitive so that `http` never prints it.
    pub(crate) fn header(&self) -> Option<HeaderValue> {
        let mut value = HeaderValue::from_str(&self.0).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}
