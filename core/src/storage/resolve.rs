//! Image resolution as podman (libimage) does it, over a list of images:
//!
//! 1. `sha256:<64 hex>` or 64 hex: the image with that ID, nothing else.
//! 2. The name as a reference: a short name (no registry) is tried as
//!    `localhost/NAME` and then `docker.io/library/NAME` (`docker.io/NAME` for
//!    `user/repo`); a missing tag means `:latest`; `name@digest` matches an image
//!    with that repository among its names and that manifest digest.
//! 3. A unique prefix of an image ID (an ambiguous one is an error listing the
//!    candidates).
//! 4. A short name matching the end of exactly one image's repository on a path
//!    boundary (`app` finds `quay.io/team/app:latest`).

use super::image::Image;
use crate::{Error, Result};

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host, if the input had one.
    pub domain: Option<String>,
    /// Repository path without the registry.
    pub path: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// `algo:hex` digest, if any.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `[domain/]path[:tag][@digest]`. Returns `None` for text that is
    /// no valid reference (e.g. upper-case repository names).
    pub fn parse(s: &str) -> Option<Reference> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let (algo, hex) = d.split_once(':')?;
                if algo.is_empty() || hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return None;
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => {
                (&rest[..i], Some(rest[i + 1..].to_string()))
            }
            _ => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return None;
            }
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (Some(first.to_string()), rest)
            }
            _ => (None, name),
        };
        let valid_path = !path.is_empty()
            && path.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
                    && c.as_bytes()[0].is_ascii_alphanumeric()
            });
        if !valid_path {
            return None;
        }
        let (domain, path) = match domain.as_deref() {
            // Docker Hub's names are normalised as docker does.
            Some("docker.io" | "index.docker.io") if !path.contains('/') => {
                (Some("docker.io".to_string()), format!("library/{path}"))
            }
            Some("index.docker.io") => (Some("docker.io".to_string()), path.to_string()),
            _ => (domain, path.to_string()),
        };
        Some(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// True when the reference names no registry.
    pub fn is_short(&self) -> bool {
        self.domain.is_none()
    }

    /// `domain/path`.
    fn repository_in(&self, domain: &str) -> String {
        format!("{domain}/{}", self.path)
    }

    /// The fully qualified candidates podman tries, in order.
    pub fn candidates(&self) -> Vec<String> {
        let repos = match &self.domain {
            Some(d) => vec![self.repository_in(d)],
            None => {
                let docker = if self.path.contains('/') {
                    format!("docker.io/{}", self.path)
                } else {
                    format!("docker.io/library/{}", self.path)
                };
                vec![self.repository_in("localhost"), docker]
            }
        };
        repos.into_iter().map(|r| self.with_suffix(&r)).collect()
    }

    fn with_suffix(&self, repo: &str) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("{repo}@{d}"),
            (None, Some(t)) => format!("{repo}:{t}"),
            (None, None) => format!("{repo}:latest"),
        }
    }
}

/// Splits a stored name into (repository, tag-or-digest): `a/b:1` gives
/// (`a/b`, Some(`1`)), `a/b@sha256:..` gives (`a/b`, None) and the digest.
pub fn split_name(name: &str) -> (String, Option<String>, Option<String>) {
    let (rest, digest) = match name.split_once('@') {
        Some((r, d)) => (r, Some(d.to_string())),
        None => (name, None),
    };
    match rest.rfind(':') {
        Some(i) if !rest[i + 1..].contains('/') => (
            rest[..i].to_string(),
            Some(rest[i + 1..].to_string()),
            digest,
        ),
        _ => (rest.to_string(), None, digest),
    }
}

fn has_digest(image: &Image, digest: &str) -> bool {
    image.digest.as_deref() == Some(digest)
        || image.digests.iter().any(|d| d == digest)
        || image
            .big_data_digests
            .iter()
            .any(|(k, v)| k.starts_with("manifest") && v == digest)
}

/// The image a fully qualified candidate (`repo:tag` or `repo@digest`) names.
fn by_candidate<'a>(images: &'a [Image], candidate: &str) -> Option<&'a Image> {
    if let Some(img) = images
        .iter()
        .find(|i| i.names.iter().any(|n| n == candidate))
    {
        return Some(img);
    }
    let (repo, _, digest) = split_name(candidate);
    let digest = digest?;
    images
        .iter()
        .find(|img| has_digest(img, &digest) && img.names.iter().any(|n| split_name(n).0 == repo))
}

fn short_ids(images: &[&Image]) -> String {
    images
        .iter()
        .map(|i| i.short_id())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves `input` among `images` (see the module documentation).
pub fn resolve<'a>(images: &'a [Image], input: &str) -> Result<&'a Image> {
    let input = input.trim();
    if input.is_empty() {
        return Err(Error::InvalidInput("empty image reference".into()));
    }
    let not_found = || Error::NotFound(format!("image {input:?} is not in local storage"));
    let is_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };

    // 1. Full IDs.
    if let Some(hex) = input.strip_prefix("sha256:") {
        if hex.len() != 64 || !is_hex(hex) {
            return Err(Error::InvalidInput(format!(
                "{input:?} is not a valid image ID (sha256: and 64 hex digits)"
            )));
        }
        return images.iter().find(|i| i.id == hex).ok_or_else(not_found);
    }
    if input.len() == 64 && is_hex(input) {
        return images.iter().find(|i| i.id == input).ok_or_else(not_found);
    }
    // An exact stored name wins (containers/storage looks names up as they are).
    if let Some(img) = images.iter().find(|i| i.names.iter().any(|n| n == input)) {
        return Ok(img);
    }

    // 2. Reference candidates. Docker compatibility: name:tag@digest ignores the tag.
    let reference = Reference::parse(input).map(|mut r| {
        if r.digest.is_some() {
            r.tag = None;
        }
        r
    });
    if let Some(r) = &reference {
        for candidate in r.candidates() {
            if let Some(img) = by_candidate(images, &candidate) {
                return Ok(img);
            }
        }
    }

    // 3. ID prefix.
    if is_hex(input) {
        let matches: Vec<&Image> = images.iter().filter(|i| i.id.starts_with(input)).collect();
        match matches.len() {
            0 => {}
            1 => return Ok(matches[0]),
            _ => {
                return Err(Error::InvalidInput(format!(
                    "image ID prefix {input:?} is ambiguous: it matches {}",
                    short_ids(&matches)
                )))
            }
        }
    }

    // 4. Short name by repository suffix.
    if let Some(r) = reference.filter(Reference::is_short) {
        let suffix = format!("/{}", r.path);
        let wanted_tag = r.tag.clone().unwrap_or_else(|| "latest".into());
        let matches: Vec<&Image> = images
            .iter()
            .filter(|img| {
                img.names.iter().any(|n| {
                    let (repo, tag, _) = split_name(n);
                    repo.ends_with(&suffix)
                        && match &r.digest {
                            Some(d) => has_digest(img, d),
                            None => tag.as_deref() == Some(wanted_tag.as_str()),
                        }
                })
            })
            .collect();
        match matches.len() {
            0 => {}
            1 => return Ok(matches[0]),
            _ => {
                let names: Vec<String> = matches
                    .iter()
                    .map(|i| {
                        format!(
                            "{} ({})",
                            i.names.first().map_or("", String::as_str),
                            i.short_id()
                        )
                    })
                    .collect();
                return Err(Error::InvalidInput(format!(
                    "short name {input:?} is ambiguous: it matches {}",
                    names.join(", ")
                )));
            }
        }
    }
    Err(not_found())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(id: &str, names: &[&str], digest: Option<&str>) -> Image {
        Image {
            id: id.repeat(64 / id.len()),
            names: names.iter().map(|s| s.to_string()).collect(),
            digest: digest.map(str::to_string),
            ..Default::default()
        }
    }

    fn images() -> Vec<Image> {
        vec![
            img(
                "a1",
                &[
                    "docker.io/library/busybox:latest",
                    "docker.io/library/busybox:1.36",
                ],
                Some("sha256:d1"),
            ),
            img("a2", &["localhost/app:latest", "localhost/app:v2"], None),
            img("b3", &["quay.io/team/tool:latest"], Some("sha256:d3")),
            img("c4", &["quay.io/x/dup:latest"], None),
            img("c5", &["ghcr.io/y/dup:latest"], None),
            img("d6", &["localhost/busybox:latest"], None),
        ]
    }

    fn id_of(r: Result<&Image>) -> String {
        r.map(|i| i.id[..2].to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn resolves_like_podman() {
        let imgs = images();
        let full = "a1".repeat(32);
        assert_eq!(id_of(resolve(&imgs, &full)), "a1");
        assert_eq!(id_of(resolve(&imgs, &format!("sha256:{full}"))), "a1");
        // localhost/ is tried before docker.io/library/.
        assert_eq!(id_of(resolve(&imgs, "busybox")), "d6");
        assert_eq!(id_of(resolve(&imgs, "busybox:1.36")), "a1");
        assert_eq!(id_of(resolve(&imgs, "docker.io/busybox")), "a1");
        assert_eq!(
            id_of(resolve(&imgs, "docker.io/library/busybox:latest")),
            "a1"
        );
        assert_eq!(id_of(resolve(&imgs, "app:v2")), "a2");
        assert_eq!(id_of(resolve(&imgs, "localhost/app")), "a2");
        assert_eq!(id_of(resolve(&imgs, "quay.io/team/tool@sha256:d3")), "b3");
        assert_eq!(
            id_of(resolve(&imgs, "quay.io/team/tool:old@sha256:d3")),
            "b3"
        );
        assert_eq!(id_of(resolve(&imgs, "busybox@sha256:d1")), "a1");
        assert_eq!(id_of(resolve(&imgs, "tool")), "b3");
        assert_eq!(id_of(resolve(&imgs, "team/tool")), "b3");
        assert_eq!(id_of(resolve(&imgs, "b3b")), "b3");
    }

    #[test]
    fn clear_failures() {
        let imgs = images();
        let e = resolve(&imgs, "c").unwrap_err().to_string();
        assert!(
            e.contains("ambiguous") && e.contains("c4c4c4c4c4c4") && e.contains("c5c5c5c5c5c5"),
            "{e}"
        );
        let e = resolve(&imgs, "dup").unwrap_err().to_string();
        assert!(
            e.contains("ambiguous") && e.contains("quay.io/x/dup:latest"),
            "{e}"
        );
        let e = resolve(&imgs, "nothere").unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
        assert!(matches!(
            resolve(&imgs, "tool:v9").unwrap_err(),
            Error::NotFound(_)
        ));
        assert!(matches!(
            resolve(&imgs, "quay.io/team/tool@sha256:ff").unwrap_err(),
            Error::NotFound(_)
        ));
        assert!(matches!(
            resolve(&imgs, "sha256:zz").unwrap_err(),
            Error::InvalidInput(_)
        ));
        assert!(matches!(
            resolve(&imgs, "").unwrap_err(),
            Error::InvalidInput(_)
        ));
        assert!(matches!(
            resolve(&imgs, &"e".repeat(64)).unwrap_err(),
            Error::NotFound(_)
        ));
    }

    #[test]
    fn parses_references() {
        let r = Reference::parse("localhost:5000/a/b:1").unwrap();
        assert_eq!(
            (r.domain.as_deref(), r.path.as_str(), r.tag.as_deref()),
            (Some("localhost:5000"), "a/b", Some("1"))
        );
        assert!(Reference::parse("Bad").is_none());
        assert_eq!(
            split_name("h:5/a:t"),
            ("h:5/a".into(), Some("t".into()), None)
        );
        assert_eq!(split_name("h:5/a"), ("h:5/a".into(), None, None));
    }
}
