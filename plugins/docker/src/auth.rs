//! `WWW-Authenticate` challenges and bearer tokens.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One authentication challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lower-cased (`basic`, `bearer`).
    pub scheme: String,
    /// The parameters, keys lower-cased (`realm`, `service`, `scope`, `error`).
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter's value.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }
}

/// Parses a `WWW-Authenticate` header value into its challenges
/// (`Bearer realm="https://a/token",service="reg",scope="repository:x:pull"`).
/// Malformed parts are skipped.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = header.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| -> String {
        let start = *i;
        while *i < b.len() && !matches!(b[*i], b' ' | b'\t' | b',' | b'=' | b'"') {
            *i += 1;
        }
        header[start..*i].to_string()
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let word = token(&mut i);
        if word.is_empty() {
            i += 1;
            continue;
        }
        // Spaces before '=' are tolerated.
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && !out.is_empty() {
            // A parameter of the current challenge.
            i = j + 1;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    // Push whole UTF-8 characters.
                    let ch = header[i..].chars().next().unwrap_or('\u{fffd}');
                    v.push(ch);
                    i += ch.len_utf8();
                }
                i += 1; // closing quote
                v
            } else {
                token(&mut i)
            };
            if let Some(last) = out.last_mut() {
                last.params.insert(word.to_ascii_lowercase(), value);
            }
        } else {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    out
}

/// A bearer token and when it stops being usable.
#[derive(Debug, Clone)]
pub struct Token {
    /// The token text. Never print it.
    pub value: String,
    /// When it expires (with a safety margin already taken off).
    pub expires: Instant,
}

impl Token {
    /// Makes a token that lives `expires_in` seconds (at least 60, as docker
    /// assumes), minus a margin so that it is not used right at its end.
    pub fn new(value: String, expires_in: Option<u64>) -> Self {
        let secs = expires_in.unwrap_or(60).max(60);
        let life = Duration::from_secs(secs).saturating_sub(Duration::from_secs(secs / 10 + 5));
        Token {
            value,
            expires: Instant::now() + life,
        }
    }

    /// Whether the token can still be sent.
    pub fn is_fresh(&self) -> bool {
        Instant::now() < self.expires
    }
}

/// The token endpoint's answer.
#[derive(Debug, serde::Deserialize)]
pub struct TokenAnswer {
    /// The token (docker's name).
    #[serde(default)]
    pub token: Option<String>,
    /// The token (OAuth2's name).
    #[serde(default)]
    pub access_token: Option<String>,
    /// Lifetime in seconds.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// A canonical key for a set of scopes.
pub fn scope_key(scopes: &[String]) -> String {
    let mut v: Vec<&str> = scopes.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.dedup();
    v.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_quoted_params() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push",error="insufficient_scope""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example/token"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn several_challenges_and_tokens() {
        let c = parse_challenges(r#"Basic realm="x y", Bearer realm=https://t/token, service=s"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("x y"));
        assert_eq!(c[1].param("realm"), Some("https://t/token"));
        assert_eq!(c[1].param("service"), Some("s"));
        assert!(parse_challenges("").is_empty());
        assert_eq!(
            parse_challenges(r#"Bearer realm="a\"b""#)[0].param("realm"),
            Some("a\"b")
        );
    }

    #[test]
    fn token_lifetimes() {
        assert!(Token::new("t".into(), Some(300)).is_fresh());
        assert!(Token::new("t".into(), None).is_fresh());
        assert_eq!(scope_key(&["b".into(), "a".into(), "b".into()]), "a b");
    }
}
