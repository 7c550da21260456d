//! `signedIdentity`: which docker reference a signature may claim for an image
//! (containers/image's `policy_reference_match.go`).

use kpod_plugin_sdk::reference::Reference;
use std::fmt;

/// A `signedIdentity` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityMatch {
    /// The signature names exactly the image's reference (both with a tag or digest).
    MatchExact,
    /// As `MatchExact`, but for an image referenced by digest any tag or digest of
    /// the same repository is accepted (the default).
    MatchRepoDigestOrExact,
    /// The same repository, any tag or digest.
    MatchRepository,
    /// The signature names exactly this reference, whatever the image's.
    ExactReference(String),
    /// The signature names this repository, any tag or digest.
    ExactRepository(String),
    /// As `MatchRepoDigestOrExact`, after the image's reference starting with
    /// `prefix` has it replaced by `signed_prefix`.
    RemapIdentity {
        /// The namespace of the image's reference to replace.
        prefix: String,
        /// What the signatures name instead.
        signed_prefix: String,
    },
}

fn is_name_only(r: &Reference) -> bool {
    r.tag().is_none() && r.digest().is_none()
}

/// `reference.ParseNormalizedNamed`.
fn parse(text: &str) -> Option<Reference> {
    Reference::parse_name_only_ok(text).ok()
}

fn repo_digest_or_exact(intended: &Reference, signature: &Reference) -> bool {
    if is_name_only(signature) {
        return false;
    }
    if intended.tag().is_some() {
        signature.to_string() == intended.to_string()
    } else if intended.digest().is_some() {
        signature.name() == intended.name()
    } else {
        false
    }
}

impl IdentityMatch {
    /// Whether a signature claiming `signed` is accepted for an image known as
    /// `image` (`None`: the image has no docker reference; only the `exact*`
    /// rules can then accept).
    pub fn matches(&self, image: Option<&Reference>, signed: &str) -> Result<(), String> {
        let refused = || Err(format!("Signature for identity {signed:?} is not accepted"));
        let Some(signature) = parse(signed) else {
            return refused();
        };
        let needs_image = || {
            image.ok_or_else(|| {
                "Docker reference match attempted on an image with no known Docker reference identity"
                    .to_string()
            })
        };
        let ok = match self {
            IdentityMatch::MatchExact => {
                let intended = needs_image()?;
                !is_name_only(intended)
                    && !is_name_only(&signature)
                    && signature.to_string() == intended.to_string()
            }
            IdentityMatch::MatchRepoDigestOrExact => {
                repo_digest_or_exact(needs_image()?, &signature)
            }
            IdentityMatch::MatchRepository => signature.name() == needs_image()?.name(),
            IdentityMatch::ExactReference(reference) => parse(reference).is_some_and(|intended| {
                !is_name_only(&intended)
                    && !is_name_only(&signature)
                    && signature.to_string() == intended.to_string()
            }),
            IdentityMatch::ExactRepository(repository) => {
                parse(repository).is_some_and(|intended| signature.name() == intended.name())
            }
            IdentityMatch::RemapIdentity {
                prefix,
                signed_prefix,
            } => {
                let intended = needs_image()?;
                remap(intended, prefix, signed_prefix)
                    .is_some_and(|remapped| repo_digest_or_exact(&remapped, &signature))
            }
        };
        if ok {
            Ok(())
        } else {
            refused()
        }
    }

    /// Checks the values of `exactReference`, `exactRepository` and
    /// `remapIdentity` as containers/image does when reading a policy.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match self {
            IdentityMatch::ExactReference(r) => {
                let parsed = Reference::parse_name_only_ok(r).map_err(|e| {
                    format!("Invalid format of dockerReference {r:?}: {}", e.message)
                })?;
                if is_name_only(&parsed) {
                    return Err(format!(
                        "dockerReference {r:?} contains neither a tag nor digest"
                    ));
                }
                Ok(())
            }
            IdentityMatch::ExactRepository(r) => Reference::parse_name_only_ok(r)
                .map(|_| ())
                .map_err(|e| format!("Invalid format of dockerRepository {r:?}: {}", e.message)),
            IdentityMatch::RemapIdentity {
                prefix,
                signed_prefix,
            } => {
                for p in [prefix, signed_prefix] {
                    if !valid_remap_prefix(p) {
                        return Err(format!("prefix {p:?} is not valid"));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// `prmRemapIdentity.remapReferencePrefix`: `None` when the result is no
/// valid (canonical) reference.
fn remap(intended: &Reference, prefix: &str, signed_prefix: &str) -> Option<Reference> {
    let name = intended.name();
    let matches = name == prefix
        || (name.len() > prefix.len()
            && name.starts_with(prefix)
            && name.as_bytes()[prefix.len()] == b'/');
    if !matches {
        return Some(intended.clone());
    }
    let text = intended.to_string().replacen(prefix, signed_prefix, 1);
    // reference.ParseNamed: only the canonical form is accepted.
    Reference::parse_name_only_ok(&text)
        .ok()
        .filter(|r| r.to_string() == text)
}

/// A host (`[A-Za-z0-9-.]+` labels, optional `:port`, or `[IPv6]:port`), or a
/// repository name that starts with one.
fn valid_remap_prefix(p: &str) -> bool {
    let (host, path) = match p.split_once('/') {
        Some((h, rest)) => (h, Some(rest)),
        None => (p, None),
    };
    if !valid_host(host) {
        return false;
    }
    match path {
        None => true,
        Some(path) => Reference::parse_name_only_ok(p).is_ok() && !path.is_empty(),
    }
}

fn valid_host(host: &str) -> bool {
    let port_ok =
        |p: Option<&str>| p.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.split_once(']') {
            Some((ip, rest)) => {
                ip.parse::<std::net::Ipv6Addr>().is_ok()
                    && (rest.is_empty() || port_ok(rest.strip_prefix(':').or(Some(""))))
            }
            None => false,
        };
    }
    let (name, port) = match host.split_once(':') {
        Some((n, port)) => (n, Some(port)),
        None => (host, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    name.split('.').all(label_ok) && port_ok(port)
}

impl fmt::Display for IdentityMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityMatch::MatchExact => f.write_str("matchExact"),
            IdentityMatch::MatchRepoDigestOrExact => f.write_str("matchRepoDigestOrExact"),
            IdentityMatch::MatchRepository => f.write_str("matchRepository"),
            IdentityMatch::ExactReference(r) => write!(f, "exactReference {r}"),
            IdentityMatch::ExactRepository(r) => write!(f, "exactRepository {r}"),
            IdentityMatch::RemapIdentity {
                prefix,
                signed_prefix,
            } => write!(f, "remapIdentity {prefix} -> {signed_prefix}"),
        }
    }
}
