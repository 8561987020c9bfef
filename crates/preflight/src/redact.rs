//! URLs that may carry tokens: shown without their secrets.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A URL that may hold a secret (user info, a token in the query). `Debug`, `Display` and
/// [`SecretUrl::redacted`] show it without the password and with query values replaced by
/// `***`; only [`SecretUrl::expose`] gives the real one, to make the call.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps `url`.
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The URL to call. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without user info and with every query value replaced by `***`.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let userinfo = if authority.contains('@') { "***@" } else { "" };
        let path = match path.split_once('?') {
            Some((p, query)) => {
                let query: Vec<String> = query
                    .split('&')
                    .map(|kv| match kv.split_once('=') {
                        Some((k, _)) => format!("{k}=***"),
                        None => kv.to_owned(),
                    })
                    .collect();
                format!("{p}?{}", query.join("&"))
            }
            None => path.to_owned(),
        };
        if scheme.is_empty() {
            format!("{userinfo}{host}{path}")
        } else {
            format!("{scheme}://{userinfo}{host}{path}")
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretUrl)
    }
}

#[cfg(test)]
mod tests {
    use super::SecretUrl;

    #[test]
    fn secrets_are_redacted() {
        let url = SecretUrl::new("https://bot:s3cr3t@hooks.example.com/x/y?token=abc&flag&b=2");
        assert_eq!(
            url.redacted(),
            "https://***@hooks.example.com/x/y?token=***&flag&b=***"
        );
        assert!(!format!("{url:?}").contains("s3cr3t"));
        assert!(!url.to_string().contains("abc"));
        assert_eq!(SecretUrl::new("http://h:80/p").redacted(), "http://h:80/p");
    }
}
