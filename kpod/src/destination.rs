//! Splitting a destination `TRANSPORT:DETAILS` and finding the plugin for it.

use anyhow::{bail, Result};
use kpod_core::plugin_host::{LoadedPlugin, PluginSet};

/// A destination parsed far enough to dispatch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The transport name, e.g. `dir`.
    pub transport: String,
    /// What follows `transport:`, e.g. `/tmp/x` or `//registry/repo:tag`.
    pub details: String,
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.transport, self.details)
    }
}

/// Whether `name` can be a transport name: letters, digits, `-` and `_`.
fn is_transport_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
}

/// Splits `text` into transport and details. `None` when it has no transport
/// prefix and looks like a registry reference (`host:5000/img`, `reg.io/img:tag`),
/// which podman users push without `docker://`.
pub fn split(text: &str) -> Option<Destination> {
    let (prefix, details) = text.split_once(':')?;
    if !is_transport_name(prefix) {
        return None;
    }
    // `localhost:5000/img` is a registry host with a port, not a transport.
    if details.starts_with(|c: char| c.is_ascii_digit()) && !details.starts_with("//") {
        let port: String = details.chars().take_while(char::is_ascii_digit).collect();
        if details[port.len()..].starts_with('/') {
            return None;
        }
    }
    Some(Destination {
        transport: prefix.to_string(),
        details: details.to_string(),
    })
}

/// Parses the user's destination (or the default `docker://IMAGE`) and finds
/// the plugin that claims its transport.
pub fn resolve<'a>(
    plugins: &'a PluginSet,
    destination: Option<&str>,
    image: &str,
) -> Result<(Destination, &'a LoadedPlugin)> {
    let dest = match destination {
        None => Destination {
            transport: "docker".into(),
            details: format!("//{image}"),
        },
        Some(text) => match split(text) {
            Some(dest) => dest,
            None if !text.contains(':') && !text.contains('/') => bail!(
                "invalid destination {text:?}: expected TRANSPORT:DETAILS (e.g. dir:/tmp/img, docker://registry/img:tag)"
            ),
            None => Destination {
                transport: "docker".into(),
                details: format!("//{text}"),
            },
        },
    };
    let plugin = find_plugin(
        plugins,
        &dest,
        destination.unwrap_or(&dest.to_string()),
        "destination",
    )?;
    Ok((dest, plugin))
}

/// The plugin that claims `place`'s transport; `what` is "source" or
/// "destination" and `shown` what the user typed, for the error.
pub fn find_plugin<'a>(
    plugins: &'a PluginSet,
    place: &Destination,
    shown: &str,
    what: &str,
) -> Result<&'a LoadedPlugin> {
    if let Some(plugin) = plugins.plugin_for(&place.transport) {
        for s in plugins
            .shadowed()
            .iter()
            .filter(|s| s.transport == place.transport)
        {
            log::info!(
                "transport {:?} of {} is shadowed by {}",
                s.transport,
                s.path.display(),
                s.winner.display()
            );
        }
        return Ok(plugin);
    }
    let installed = plugins.transport_names();
    let installed = if installed.is_empty() {
        "none".to_string()
    } else {
        installed.join(", ")
    };
    let searched: Vec<String> = plugins
        .searched
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    bail!(
        "unknown transport {:?} in {what} {shown:?}: installed transports: {installed}; plugin directories searched: {}",
        place.transport,
        searched.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_transports() {
        let d = split("dir:/tmp/x").unwrap();
        assert_eq!(
            (d.transport.as_str(), d.details.as_str()),
            ("dir", "/tmp/x")
        );
        let d = split("docker://reg/x:1").unwrap();
        assert_eq!(
            (d.transport.as_str(), d.details.as_str()),
            ("docker", "//reg/x:1")
        );
        let d = split("oci:rel/path:tag").unwrap();
        assert_eq!(d.details, "rel/path:tag");
    }

    #[test]
    fn registry_references_have_no_transport() {
        assert_eq!(split("localhost:5000/img:1"), None);
        assert_eq!(split("reg.example.com/img:1"), None);
        assert_eq!(split("/abs/path"), None);
    }

    #[test]
    fn unknown_transport_is_still_split() {
        let d = split("nosuch:foo").unwrap();
        assert_eq!(d.transport, "nosuch");
    }
}
