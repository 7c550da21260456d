//! Which policy scopes an image falls under, per transport, as each
//! containers/image transport's `PolicyConfigurationIdentity` and
//! `PolicyConfigurationNamespaces` say, and which scope keys a policy may use
//! (`ValidatePolicyConfigurationScope`).

use kpod_plugin_sdk::reference::Reference;
use kpod_plugin_sdk::scope::{docker_identity, docker_namespaces};
use std::path::{Component, Path, PathBuf};

/// The repository of `ostree:` references without `@/repo`.
pub const DEFAULT_OSTREE_REPO: &str = "/ostree/repo";

/// An image as the policy sees it: its transport, its scope identity and the
/// wider namespaces to try, and the docker reference it is known by (if any:
/// `signedIdentity` rules other than `exactReference`/`exactRepository` need one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyReference {
    /// Transport name, e.g. `docker`, `containers-storage`, `dir`.
    pub transport: String,
    /// The image's own scope (e.g. `quay.io/ns/app:1`, `/abs/dir`).
    pub identity: String,
    /// Wider scopes, most specific first (`""` is not listed: it always applies last).
    pub namespaces: Vec<String>,
    /// The docker reference of the image, if it has one.
    pub docker_reference: Option<Reference>,
}

impl PolicyReference {
    /// `docker://REF`, and the transports that name images the same way
    /// (`atomic`, `docker-daemon` by name).
    pub fn docker_like(transport: &str, reference: &Reference) -> Result<Self, String> {
        Ok(PolicyReference {
            transport: transport.to_string(),
            identity: docker_identity(reference).map_err(|e| e.message.to_string())?,
            namespaces: docker_namespaces(reference),
            docker_reference: Some(reference.clone()),
        })
    }

    /// `docker://REF`.
    pub fn docker(reference: &Reference) -> Result<Self, String> {
        Self::docker_like("docker", reference)
    }

    /// An image of containers/storage in the store `driver@graph_root`, known by
    /// `name` (e.g. `docker.io/library/app:1`) and/or its 64-hex `id`.
    pub fn containers_storage(
        driver: &str,
        graph_root: &Path,
        name: Option<&Reference>,
        id: Option<&str>,
    ) -> Self {
        let root = graph_root.display();
        let store = format!("[{driver}@{root}]");
        let mut identity = store.clone();
        let mut namespaces = Vec::new();
        if let Some(name) = name {
            identity.push_str(&name.to_string());
            if id.is_some() {
                namespaces.push(format!("{store}{name}"));
            }
            if let (Some(tag), Some(_)) = (name.tag(), name.digest()) {
                namespaces.push(format!("{store}{}:{tag}", name.name()));
            }
            let mut components: Vec<&str> = Vec::new();
            let full = name.name();
            components.extend(full.split('/'));
            while !components.is_empty() {
                namespaces.push(format!("{store}{}", components.join("/")));
                components.pop();
            }
        }
        if let Some(id) = id {
            identity.push('@');
            identity.push_str(id);
        }
        namespaces.push(store);
        namespaces.push(format!("[{root}]"));
        PolicyReference {
            transport: "containers-storage".into(),
            identity,
            namespaces,
            docker_reference: name.cloned(),
        }
    }

    /// `dir:PATH`: the resolved path, then its parent directories (not `/`).
    pub fn dir(path: &Path) -> Result<Self, String> {
        let resolved = resolve_path(path)?;
        let mut namespaces = Vec::new();
        let mut p = resolved.as_str();
        while let Some(i) = p.rfind('/').filter(|i| *i > 0) {
            p = &p[..i];
            namespaces.push(p.to_string());
        }
        Ok(PolicyReference {
            transport: "dir".into(),
            identity: resolved,
            namespaces,
            docker_reference: None,
        })
    }

    /// `oci:DIR[:NAME]` (and `oci-archive:FILE` with `transport` `oci-archive`):
    /// the resolved path, itself and its parents as namespaces; the image name
    /// inside the layout is not part of the scope.
    pub fn oci(transport: &str, path: &Path) -> Result<Self, String> {
        let resolved = resolve_path(path)?;
        let mut namespaces = Vec::new();
        let mut p = resolved.as_str();
        while !p.is_empty() && p != "/" {
            namespaces.push(p.to_string());
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => break,
            }
        }
        Ok(PolicyReference {
            transport: transport.into(),
            identity: resolved,
            namespaces,
            docker_reference: None,
        })
    }

    /// `docker-archive:PATH[:REF]`: only the `""` scope exists.
    pub fn docker_archive(reference: Option<&Reference>) -> Self {
        PolicyReference {
            transport: "docker-archive".into(),
            identity: String::new(),
            namespaces: Vec::new(),
            docker_reference: reference.cloned(),
        }
    }

    /// `ostree:IMAGE@REPO`: `REPO:IMAGE` (with its tag), then `REPO:` each
    /// parent of the image name.
    pub fn ostree(image: &str, repo: &Path) -> Result<Self, String> {
        let named = Reference::parse_name_only_ok(image).map_err(|e| e.message.to_string())?;
        let image = if named.tag().is_none() && named.digest().is_none() {
            format!("{image}:latest")
        } else {
            image.to_string()
        };
        // The default repository need not exist (as in containers/image).
        let repo = match resolve_path(repo) {
            Ok(r) => r,
            Err(_) if repo == Path::new(DEFAULT_OSTREE_REPO) => DEFAULT_OSTREE_REPO.to_string(),
            Err(e) => return Err(e),
        };
        let base = image.rsplit_once(':').map(|(n, _)| n).unwrap_or(&image);
        let mut namespaces = Vec::new();
        let mut name = base;
        loop {
            namespaces.push(format!("{repo}:{name}"));
            match name.rfind('/') {
                Some(i) => name = &name[..i],
                None => break,
            }
        }
        Ok(PolicyReference {
            transport: "ostree".into(),
            identity: format!("{repo}:{image}"),
            namespaces,
            docker_reference: None,
        })
    }

    /// The scope of `TRANSPORT:DETAILS` as containers/image parses each known
    /// transport's references (`containers-storage` needs its store:
    /// [`PolicyReference::containers_storage`]). Another transport's image has only
    /// its exact `DETAILS` scope and `""`.
    pub fn parse(transport: &str, details: &str) -> Result<Self, String> {
        let docker_ref = |text: &str| Reference::parse(text).map_err(|e| e.message.to_string());
        match transport {
            "docker" => {
                let text = details.strip_prefix("//").ok_or_else(|| {
                    format!("{transport}:{details}: a docker reference starts with //")
                })?;
                Self::docker(&docker_ref(text)?)
            }
            "atomic" => Self::docker_like(transport, &docker_ref(details)?),
            "docker-daemon" => {
                if crate::signature::payload::check_digest(details).is_ok() {
                    return Ok(PolicyReference {
                        transport: transport.into(),
                        identity: String::new(),
                        namespaces: Vec::new(),
                        docker_reference: None,
                    });
                }
                Self::docker_like(transport, &docker_ref(details)?)
            }
            "docker-archive" => {
                let named = match details.split_once(':') {
                    Some((_, r)) if !r.is_empty() && !r.starts_with('@') => Some(docker_ref(r)?),
                    _ => None,
                };
                Ok(Self::docker_archive(named.as_ref()))
            }
            "dir" => Self::dir(Path::new(details)),
            "oci" | "oci-archive" => {
                let path = details.split_once(':').map(|(p, _)| p).unwrap_or(details);
                Self::oci(transport, Path::new(path))
            }
            "ostree" => match details.split_once("@/") {
                Some((image, repo)) => Self::ostree(image, &Path::new("/").join(repo)),
                None => Self::ostree(details, Path::new(DEFAULT_OSTREE_REPO)),
            },
            "containers-storage" => Err(
                "containers-storage: the policy scope needs the store (PolicyReference::containers_storage)"
                    .into(),
            ),
            _ => Ok(PolicyReference {
                transport: transport.into(),
                identity: details.into(),
                namespaces: Vec::new(),
                docker_reference: None,
            }),
        }
    }

    /// `transport:identity`, for messages.
    pub fn describe(&self) -> String {
        match &self.docker_reference {
            Some(r) if self.identity.is_empty() => format!("{}:{r}", self.transport),
            _ => format!("{}:{}", self.transport, self.identity),
        }
    }
}

/// containers/image's `ResolvePathToFullyExplicit`: absolute, symbolic links
/// resolved; a path that does not exist yet keeps its last component.
fn resolve_path(path: &Path) -> Result<String, String> {
    let explicit = |p: &Path| {
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        std::fs::canonicalize(p).map_err(|e| format!("resolving {}: {e}", p.display()))
    };
    let resolved: PathBuf = match std::fs::symlink_metadata(path) {
        Ok(_) => explicit(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let file = match path.components().next_back() {
                Some(Component::Normal(f)) => f.to_owned(),
                _ => return Err(format!("{}: unexpected path", path.display())),
            };
            explicit(path.parent().unwrap_or(Path::new("")))?.join(file)
        }
        Err(e) => return Err(format!("resolving {}: {e}", path.display())),
    };
    resolved
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{}: not UTF-8", resolved.display()))
}

/// Whether `scope` (not `""`) may appear under `transports.<transport>`, as
/// that transport's `ValidatePolicyConfigurationScope` says; transports kpod
/// does not know accept any scope.
pub(crate) fn validate_scope(transport: &str, scope: &str) -> Result<(), String> {
    match transport {
        "docker" | "tarball" => Ok(()),
        "dir" | "oci" | "oci-archive" | "sif" => clean_absolute(scope),
        "docker-archive" => Err(format!(
            r#"{transport}: does not support any scopes except the default "" one"#
        )),
        "docker-daemon" => match crate::signature::payload::check_digest(scope) {
            Ok(()) => Err(format!(
                "{transport}: can not use algo:digest value {scope} as a namespace"
            )),
            Err(_) => Ok(()),
        },
        "atomic" => atomic_scope(scope),
        "ostree" => {
            let (repo, _) = scope
                .split_once(':')
                .ok_or_else(|| format!("Invalid ostree: scope {scope}: Must include a repo"))?;
            clean_absolute(repo).map_err(|e| format!("Invalid ostree: scope {scope}: {e}"))
        }
        "containers-storage" => storage_scope(scope),
        _ => Ok(()),
    }
}

/// An absolute path in Go's `filepath.Clean` form, not `/`.
fn clean_absolute(scope: &str) -> Result<(), String> {
    let Some(rest) = scope.strip_prefix('/') else {
        return Err(format!("Invalid scope {scope}: Must be an absolute path"));
    };
    if rest.is_empty() {
        return Err(r#"Invalid scope "/": Use the generic default scope """#.into());
    }
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!("Invalid scope {scope}: Uses non-canonical format"));
    }
    Ok(())
}

/// `^[^/]*(/[^:/]*(/[^:/]*(:[^:/]*)?)?)?$`: host, namespace, stream, tag.
fn atomic_scope(scope: &str) -> Result<(), String> {
    let bad = || Err(format!("Invalid scope name {scope}"));
    let mut parts = scope.split('/');
    parts.next();
    let ns = parts.next();
    let stream = parts.next();
    if parts.next().is_some() || ns.is_some_and(|n| n.contains(':')) {
        return bad();
    }
    if let Some(stream) = stream {
        if stream.matches(':').count() > 1 {
            return bad();
        }
    }
    Ok(())
}

/// `[driver@/root]` or `[/root]`, then optionally `name[:tag]`, `@digest`, `@id`.
fn storage_scope(scope: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("containers-storage scope {scope:?}: {why}"));
    let Some(rest) = scope.strip_prefix('[') else {
        return bad("must start with [driver@/graph/root]");
    };
    let Some((spec, image)) = rest.split_once(']') else {
        return bad("the store specification has no ]");
    };
    let root = match spec.split_once('@') {
        Some((driver, root)) if !driver.is_empty() && !root.is_empty() => root,
        None if !spec.is_empty() => spec,
        _ => return bad("the store specification must be [driver@/root] or [/root]"),
    };
    if !root.starts_with('/') {
        return bad("the graph root must be an absolute path");
    }
    let fields: Vec<&str> = image.splitn(3, '@').collect();
    let is_id = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let is_digest = |s: &str| crate::signature::payload::check_digest(s).is_ok();
    match fields.as_slice() {
        [_] => Ok(()),
        [_, x] if is_id(x) || is_digest(x) => Ok(()),
        [_, d, id] if is_digest(d) && is_id(id) => Ok(()),
        _ => bad("neither a valid digest nor a valid image ID after @"),
    }
}
