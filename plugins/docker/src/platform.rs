//! Platforms (`os/arch[/variant]` in Go's naming) and choosing the instance of
//! an OCI image index or Docker manifest list that suits one, as
//! containers/image does.

use kpod_plugin_sdk::{Digest, PluginError};
use serde::Deserialize;
use std::fmt;

/// A platform in the naming of Go's `GOOS`/`GOARCH` (and OCI's `variant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, `windows`, ...
    pub os: String,
    /// `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, ...
    pub architecture: String,
    /// `v8` for arm64, `v7` for arm, ...; empty when it does not matter.
    pub variant: String,
}

impl Platform {
    /// The platform kpod runs on: linux and the running architecture.
    pub fn running() -> Self {
        let (architecture, variant) = go_arch(std::env::consts::ARCH);
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: variant.to_string(),
        }
    }

    /// Parses `os/arch[/variant]` (e.g. `linux/arm64/v8`).
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let parts: Vec<&str> = text.split('/').collect();
        let bad = || {
            PluginError::invalid_input(format!(
                "platform {text:?}: expected os/arch[/variant], as in linux/arm64/v8"
            ))
        };
        if parts
            .iter()
            .any(|p| p.is_empty() || p.contains(char::is_whitespace))
        {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: String::new(),
            }),
            [os, arch, variant] => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: variant.to_string(),
            }),
            _ => Err(bad()),
        }
    }

    /// Instance variants this platform can run, best first; an instance without
    /// a variant always qualifies (after these).
    fn compatible_variants(&self) -> Vec<&str> {
        let chain: &[&str] = match (self.architecture.as_str(), self.variant.as_str()) {
            ("arm", "v8") => &["v8", "v7", "v6", "v5"],
            ("arm", "v7") => &["v7", "v6", "v5"],
            ("arm", "v6") => &["v6", "v5"],
            ("arm64", "v8" | "") => &["v8"],
            ("amd64", "" | "v1") => &["v1"],
            _ => &[],
        };
        if chain.is_empty() && !self.variant.is_empty() {
            vec![self.variant.as_str()]
        } else {
            chain.to_vec()
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// Go's name (and the default variant) of a Rust `target_arch`.
fn go_arch(rust_arch: &str) -> (&str, &str) {
    let little = cfg!(target_endian = "little");
    match rust_arch {
        "x86_64" => ("amd64", ""),
        "x86" => ("386", ""),
        "aarch64" => ("arm64", "v8"),
        "arm" => ("arm", "v7"),
        "powerpc64" if little => ("ppc64le", ""),
        "powerpc64" => ("ppc64", ""),
        "mips64" if little => ("mips64le", ""),
        "mips" if little => ("mipsle", ""),
        "loongarch64" => ("loong64", ""),
        other => (other, ""),
    }
}

#[derive(Deserialize)]
struct IndexDoc {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct IndexEntry {
    #[serde(default, rename = "mediaType")]
    media_type: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    platform: Option<EntryPlatform>,
}

#[derive(Deserialize)]
struct EntryPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: String,
}

/// The instance of an index that [`select_instance`] chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Its manifest digest.
    pub digest: Digest,
    /// Its media type as the index lists it (possibly empty).
    pub media_type: String,
}

/// Chooses the manifest of `index` (an OCI image index or Docker manifest
/// list, raw JSON) for `want`: same OS and architecture, and a variant `want`
/// can run (an exact variant first, then older ones, then none). Among equally
/// good instances the first listed wins. `what` names the index in errors;
/// when nothing fits, the error lists the platforms the index has.
pub fn select_instance(index: &[u8], want: &Platform, what: &str) -> Result<Instance, PluginError> {
    let doc: IndexDoc = serde_json::from_slice(index).map_err(|e| {
        PluginError::invalid_input(format!("{what}: the manifest list is not valid JSON: {e}"))
    })?;
    let variants = want.compatible_variants();
    let rank = |p: &EntryPlatform| -> Option<usize> {
        if p.os != want.os || p.architecture != want.architecture {
            return None;
        }
        if p.variant.is_empty() {
            return Some(variants.len());
        }
        variants.iter().position(|v| *v == p.variant)
    };
    let best = doc
        .manifests
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.platform.as_ref().and_then(rank).map(|r| (r, i, e)))
        .min_by_key(|(r, i, _)| (*r, *i));
    match best {
        Some((_, _, entry)) => {
            let digest = Digest::parse(&entry.digest)
                .map_err(|e| e.context(format!("{what}: the entry for {want}")))?;
            Ok(Instance {
                digest,
                media_type: entry.media_type.clone(),
            })
        }
        None => {
            let mut have: Vec<String> = doc
                .manifests
                .iter()
                .filter_map(|e| e.platform.as_ref())
                .map(|p| {
                    Platform {
                        os: p.os.clone(),
                        architecture: p.architecture.clone(),
                        variant: p.variant.clone(),
                    }
                    .to_string()
                })
                .collect();
            have.dedup();
            let have = if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            };
            Err(PluginError::not_found(format!(
                "{what}: no image for {want} in the manifest list (it has: {have})"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str)]) -> Vec<u8> {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .enumerate()
            .map(|(i, (platform, _))| {
                let parts: Vec<&str> = platform.split('/').collect();
                let mut p = serde_json::json!({"os": parts[0], "architecture": parts[1]});
                if let Some(v) = parts.get(2) {
                    p["variant"] = (*v).into();
                }
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": Digest::from_hex(&i.to_string().repeat(64)).unwrap().to_string(),
                    "size": 1, "platform": p,
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap()
    }

    fn pick(entries: &[(&str, &str)], want: &str) -> Result<usize, PluginError> {
        let want = Platform::parse(want).unwrap();
        let chosen = select_instance(&index(entries), &want, "test")?;
        Ok(chosen.digest.hex()[..1].parse().unwrap())
    }

    #[test]
    fn chooses_by_os_arch_and_variant() {
        let list = [
            ("linux/amd64", ""),
            ("linux/arm/v6", ""),
            ("linux/arm/v7", ""),
            ("linux/arm64/v8", ""),
            ("windows/amd64", ""),
        ];
        assert_eq!(pick(&list, "linux/amd64").unwrap(), 0);
        assert_eq!(pick(&list, "linux/arm/v7").unwrap(), 2);
        assert_eq!(pick(&list, "linux/arm/v6").unwrap(), 1);
        assert_eq!(pick(&list, "linux/arm64").unwrap(), 3);
        assert_eq!(pick(&list, "linux/arm64/v8").unwrap(), 3);
        assert_eq!(pick(&list, "windows/amd64").unwrap(), 4);
        // An arm64 entry without a variant fits arm64/v8.
        assert_eq!(pick(&[("linux/arm64", "")], "linux/arm64/v8").unwrap(), 0);
        // An exact variant beats none.
        assert_eq!(
            pick(&[("linux/arm", ""), ("linux/arm/v7", "")], "linux/arm/v7").unwrap(),
            1
        );
    }

    #[test]
    fn no_match_lists_what_there_is() {
        let e = pick(
            &[("linux/s390x", ""), ("linux/arm64/v8", "")],
            "linux/arm/v7",
        );
        let e = e.unwrap_err();
        assert_eq!(e.kind, kpod_plugin_sdk::ErrorKind::NotFound);
        assert!(
            e.message.contains("no image for linux/arm/v7")
                && e.message.contains("(it has: linux/s390x, linux/arm64/v8)"),
            "{e}"
        );
        // arm/v7 runs arm/v5 images, but not arm/v8 ones.
        assert_eq!(pick(&[("linux/arm/v5", "")], "linux/arm/v7").unwrap(), 0);
        assert!(pick(&[("linux/arm/v8", "")], "linux/arm/v7").is_err());
        let e = select_instance(b"not json", &Platform::running(), "x").unwrap_err();
        assert!(e
            .message
            .starts_with("x: the manifest list is not valid JSON"));
    }

    #[test]
    fn platforms() {
        let p = Platform::running();
        assert_eq!(p.os, "linux");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(p.to_string(), "linux/amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
        for bad in ["linux", "linux/", "a/b/c/d", "/amd64", "linux/amd 64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }
}
